import { Modal } from '@mantine/core';
import type { CreatedWebhook, CreateWebhookInput } from '../../api/queries';
import { emptyWebhookValues, eventTypesOf, WebhookForm, type WebhookValues } from './WebhookForm';

export function createWebhookBody(values: WebhookValues): CreateWebhookInput {
  return {
    url: values.url.trim(),
    ...(values.description.trim() ? { description: values.description.trim() } : {}),
    event_types: eventTypesOf(values),
    enabled: values.enabled,
  };
}

/**
 * The Create webhook dialog. `onSubmit` calls the API and its answer (with the secret) goes straight to
 * `onCreated`, which shows it once: it is never kept in the query cache.
 */
export function CreateWebhookDialog({
  opened,
  onClose,
  onSubmit,
  onCreated,
}: {
  opened: boolean;
  onClose: () => void;
  onSubmit: (body: CreateWebhookInput) => Promise<CreatedWebhook>;
  onCreated: (created: CreatedWebhook) => void;
}) {
  return (
    <Modal opened={opened} onClose={onClose} title="Create webhook" size="lg" centered>
      {/* Mounted afresh each time it opens: an empty form. */}
      {opened && (
        <WebhookForm
          label="Create webhook"
          initial={emptyWebhookValues()}
          submitLabel="Create webhook"
          onCancel={onClose}
          onSubmit={async (values) => onCreated(await onSubmit(createWebhookBody(values)))}
        />
      )}
    </Modal>
  );
}
