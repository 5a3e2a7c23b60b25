import { Alert, Button, Group, MultiSelect, Radio, Stack, Switch, Text, Textarea, TextInput } from '@mantine/core';
import { type FormEvent, type ReactNode, useState } from 'react';
import { errorMessage } from '../../api/errors';
import type { Webhook, WebhookEventType } from '../../api/queries';
import { allEvents, EVENT_TYPE_DESCRIPTION, EVENT_TYPE_OPTIONS, EVENT_TYPES, webhookFieldErrors } from './webhookFormat';

export interface WebhookValues {
  url: string;
  description: string;
  /** Every event (`["*"]`, types added later too), or the ones in `eventTypes`. */
  events: 'all' | 'chosen';
  eventTypes: WebhookEventType[];
  enabled: boolean;
}

export type WebhookErrors = Partial<Record<'url' | 'description' | 'event_types', string>>;

export const emptyWebhookValues = (): WebhookValues => ({ url: '', description: '', events: 'all', eventTypes: [], enabled: true });

export function webhookValues(webhook: Webhook): WebhookValues {
  const all = allEvents(webhook.event_types);
  return {
    url: webhook.url,
    description: webhook.description ?? '',
    events: all ? 'all' : 'chosen',
    eventTypes: all ? [] : webhook.event_types.filter((t): t is WebhookEventType => (EVENT_TYPES as string[]).includes(t)),
    enabled: webhook.enabled,
  };
}

/** What the form can tell before asking the server. */
export function validateWebhook(values: WebhookValues): WebhookErrors {
  const errors: WebhookErrors = {};
  const url = values.url.trim();
  if (url === '') errors.url = 'Where should Keyward send events?';
  else if (!/^https?:\/\/[^\s/]+/i.test(url)) errors.url = 'An http:// or https:// URL';
  if (values.events === 'chosen' && values.eventTypes.length === 0) errors.event_types = 'Choose at least one event, or send all events';
  return errors;
}

/** The event types to send: `["*"]`, or the chosen ones in catalogue order. */
export const eventTypesOf = (values: WebhookValues): ('*' | WebhookEventType)[] =>
  values.events === 'all' ? ['*'] : EVENT_TYPES.filter((type) => values.eventTypes.includes(type));

/**
 * A webhook's fields: URL, description, the events it gets (all, or chosen ones), enabled. The server's refusal of
 * a field (a URL at a private address: `WEBHOOK_URL_NOT_ALLOWED`) is shown on that field.
 */
export function WebhookForm({
  initial,
  submitLabel,
  onSubmit,
  onCancel,
  extra,
  label,
}: {
  initial: WebhookValues;
  submitLabel: string;
  onSubmit: (values: WebhookValues) => Promise<void>;
  onCancel: () => void;
  /** Shown under the fields, above the buttons. */
  extra?: ReactNode;
  /** The form's accessible name. */
  label: string;
}) {
  const [values, setValues] = useState<WebhookValues>(initial);
  const [errors, setErrors] = useState<WebhookErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  const set = <K extends keyof WebhookValues>(field: K, value: WebhookValues[K]) => {
    setValues((current) => ({ ...current, [field]: value }));
    const errorField = field === 'eventTypes' || field === 'events' ? 'event_types' : field;
    if (errorField in errors) setErrors((current) => ({ ...current, [errorField]: undefined }));
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const found = validateWebhook(values);
    setErrors(found);
    setFailure(null);
    if (Object.values(found).some(Boolean)) return;
    setPending(true);
    try {
      await onSubmit(values);
    } catch (error) {
      const byField = webhookFieldErrors(error);
      if (Object.keys(byField).length > 0) setErrors(byField);
      else setFailure(errorMessage(error));
    } finally {
      setPending(false);
    }
  };

  return (
    <form onSubmit={submit} noValidate aria-label={label}>
      <Stack gap="md">
        <TextInput
          label="Endpoint URL"
          description="Keyward POSTs each event here, signed. A public address unless the server allows private ones."
          placeholder="https://example.com/hooks/keyward"
          type="url"
          value={values.url}
          onChange={(event) => set('url', event.currentTarget.value)}
          error={errors.url}
          maxLength={2048}
          required
          data-autofocus
          styles={{ input: { fontFamily: 'var(--mantine-font-family-monospace)', fontSize: 13 } }}
        />
        <Textarea
          label="Description"
          placeholder="Optional, e.g. “Security alerts to the on-call channel”"
          autosize
          minRows={2}
          maxRows={4}
          value={values.description}
          onChange={(event) => set('description', event.currentTarget.value)}
          error={errors.description}
        />
        <Radio.Group
          label="Events"
          value={values.events}
          onChange={(value) => set('events', value === 'chosen' ? 'chosen' : 'all')}
          error={values.events === 'all' ? errors.event_types : undefined}
        >
          <Stack gap={8} mt={6}>
            <Radio value="all" label="All events" description="Every event, and those Keyward adds later" />
            <Radio value="chosen" label="Chosen events" />
          </Stack>
        </Radio.Group>
        {values.events === 'chosen' && (
          <MultiSelect
            label="Event types"
            placeholder={values.eventTypes.length ? '' : 'key.revoked, key.leaked…'}
            data={EVENT_TYPE_OPTIONS}
            value={values.eventTypes}
            onChange={(types) => set('eventTypes', types as WebhookEventType[])}
            error={errors.event_types}
            searchable
            clearable
            hidePickedOptions
            maxDropdownHeight={280}
            comboboxProps={{ withinPortal: true }}
            renderOption={({ option }) => (
              <Stack gap={0}>
                <Text size="sm" ff="monospace">
                  {option.value}
                </Text>
                <Text size="xs" c="dimmed">
                  {EVENT_TYPE_DESCRIPTION[option.value as WebhookEventType]}
                </Text>
              </Stack>
            )}
          />
        )}
        <Switch
          label="Enabled"
          description="A disabled webhook gets no new deliveries"
          checked={values.enabled}
          onChange={(event) => set('enabled', event.currentTarget.checked)}
        />
        {extra}
        {failure && (
          <Alert color="red" variant="light" role="alert" title="Not saved">
            {failure}
          </Alert>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onCancel}>
            Cancel
          </Button>
          <Button type="submit" loading={pending}>
            {submitLabel}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
