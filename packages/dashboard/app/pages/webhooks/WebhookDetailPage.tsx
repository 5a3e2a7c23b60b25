import { Alert, Anchor, Breadcrumbs, Button, Card, Group, Loader, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import {
  IconAlertTriangle,
  IconPencil,
  IconPlayerPause,
  IconPlayerPlay,
  IconRefresh,
  IconTrash,
  IconWebhookOff,
} from '@tabler/icons-react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type ReactNode, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { errorMessage, isStatus } from '../../api/errors';
import { type UpdateWebhookInput, useWebhook, type Webhook, webhookQueryKeys } from '../../api/queries';
import { useSession } from '../../api/session';
import { ConfirmDialog } from '../../components/ConfirmDialog';
import { EmptyState } from '../../components/EmptyState';
import { PageHeader } from '../../components/PageHeader';
import { type RevealedKey, RevealKeyDialog } from '../../components/RevealKeyDialog';
import { TimeText } from '../../components/TimeText';
import { WebhookDeliveries } from './WebhookDeliveries';
import { eventTypesOf, WebhookForm, type WebhookValues, webhookValues } from './WebhookForm';
import { EventTypeChips, hostOf, WebhookStateBadge } from './webhookFormat';

function Field({ label, children, wide = false }: { label: string; children: ReactNode; wide?: boolean }) {
  return (
    <Stack gap={2} style={wide ? { gridColumn: '1 / -1' } : undefined} className="kw-field">
      <Text size="xs" c="dimmed" fw={500} component="dt">
        {label}
      </Text>
      <Text size="sm" component="dd" m={0} style={{ overflowWrap: 'anywhere' }}>
        {children}
      </Text>
    </Stack>
  );
}

/** Only what changed (PATCH); nothing when nothing did. */
export function webhookChanges(webhook: Webhook, values: WebhookValues): UpdateWebhookInput {
  const body: UpdateWebhookInput = {};
  if (values.url.trim() !== webhook.url) body.url = values.url.trim();
  if ((values.description.trim() || null) !== webhook.description) body.description = values.description.trim() || null;
  const types = eventTypesOf(values);
  if (JSON.stringify(types) !== JSON.stringify(webhook.event_types)) body.event_types = types;
  if (values.enabled !== webhook.enabled) body.enabled = values.enabled;
  return body;
}

function WebhookFields({ webhook }: { webhook: Webhook }) {
  return (
    <SimpleGrid cols={{ base: 1, xs: 2, md: 3 }} spacing="lg" verticalSpacing="md" component="dl" m={0}>
      <Field label="Endpoint URL" wide>
        <Text span ff="monospace" size="sm">
          {webhook.url}
        </Text>
      </Field>
      <Field label="Description">
        {webhook.description ?? (
          <Text span c="dimmed" size="sm">
            —
          </Text>
        )}
      </Field>
      <Field label="Status">
        <WebhookStateBadge webhook={webhook} withReason />
      </Field>
      <Field label="Id">
        <Text span ff="monospace" size="xs">
          {webhook.id}
        </Text>
      </Field>
      <Field label="Events" wide>
        <EventTypeChips eventTypes={webhook.event_types} max={20} />
      </Field>
      <Field label="Failing since">
        <TimeText value={webhook.failing_since} mode="absolute" empty="Not failing" size="sm" />
      </Field>
      <Field label="Created">
        <TimeText value={webhook.created_at} mode="absolute" size="sm" />
      </Field>
      <Field label="Updated">
        <TimeText value={webhook.updated_at} size="sm" />
      </Field>
    </SimpleGrid>
  );
}

type Confirming = 'disable' | 'roll' | 'delete' | null;

/** One webhook: its fields (edited in place), enable or disable, roll its secret, delete; its deliveries. */
export function WebhookDetailPage() {
  const { id = '' } = useParams();
  const { client } = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [editing, setEditing] = useState(false);
  const [confirming, setConfirming] = useState<Confirming>(null);
  const [revealed, setRevealed] = useState<RevealedKey | null>(null);
  const webhook = useWebhook(id);

  const stored = async (updated: Webhook) => {
    queryClient.setQueryData(webhookQueryKeys.detail(id), updated);
    await queryClient.invalidateQueries({ queryKey: webhookQueryKeys.lists });
  };
  const setEnabled = useMutation({
    mutationFn: (enabled: boolean) => client.updateWebhook(id, { enabled }),
    onSuccess: async (updated) => {
      await stored(updated);
      // Disabling ends the deliveries still due (dead); enabling lets Retry work again.
      await queryClient.invalidateQueries({ queryKey: webhookQueryKeys.deliveries(id) });
      setConfirming(null);
      notifications.show({ color: updated.enabled ? 'teal' : 'gray', message: updated.enabled ? 'Webhook enabled' : 'Webhook disabled' });
    },
    onError: (error) => {
      if (!confirming) notifications.show({ color: 'red', title: 'Not changed', message: errorMessage(error) });
    },
  });
  // The secret goes from the answer to the dialog only: not into the query cache, nor a mutation's state.
  const [rolling, setRolling] = useState(false);
  const [rollError, setRollError] = useState<string | null>(null);
  const rollSecret = async () => {
    setRolling(true);
    setRollError(null);
    try {
      const { secret, ...rest } = await client.rollWebhookSecret(id);
      await stored(rest);
      setConfirming(null);
      setRevealed({ id, key: secret, name: hostOf(rest.url), verb: 'secret rolled', kind: 'webhook-secret' });
    } catch (error) {
      setRollError(errorMessage(error));
    } finally {
      setRolling(false);
    }
  };
  const remove = useMutation({
    mutationFn: () => client.deleteWebhook(id),
    onSuccess: async () => {
      queryClient.removeQueries({ queryKey: webhookQueryKeys.detail(id) });
      await queryClient.invalidateQueries({ queryKey: webhookQueryKeys.all });
      notifications.show({ color: 'gray', message: 'Webhook deleted' });
      navigate('/webhooks');
    },
  });

  if (webhook.isPending) {
    return (
      <Group justify="center" py={96}>
        <Loader size="sm" aria-label="Loading the webhook" />
      </Group>
    );
  }
  if (webhook.isError) {
    return (
      <EmptyState
        icon={<IconWebhookOff size={22} />}
        title={isStatus(webhook.error, 404) ? 'No such webhook' : 'The webhook could not be loaded'}
        action={
          <Button component={Link} to="/webhooks" variant="light">
            Back to webhooks
          </Button>
        }
      >
        {isStatus(webhook.error, 404) ? 'It may have been deleted.' : errorMessage(webhook.error)}
      </EmptyState>
    );
  }
  const w = webhook.data;
  const host = hostOf(w.url);

  const save = async (values: WebhookValues) => {
    const body = webhookChanges(w, values);
    if (Object.keys(body).length > 0) {
      await stored(await client.updateWebhook(w.id, body));
      if (body.enabled !== undefined) await queryClient.invalidateQueries({ queryKey: webhookQueryKeys.deliveries(id) });
      notifications.show({ color: 'teal', message: 'Changes saved' });
    }
    setEditing(false);
  };

  return (
    <>
      <Breadcrumbs mb="sm" fz="sm" aria-label="Breadcrumb">
        <Anchor component={Link} to="/webhooks" size="sm">
          Webhooks
        </Anchor>
        <Text size="sm" c="dimmed" truncate maw={280}>
          {host}
        </Text>
      </Breadcrumbs>
      <PageHeader
        title={host}
        badge={<WebhookStateBadge webhook={w} />}
        description={w.description ?? 'Events POSTed here are signed with this webhook’s secret.'}
        actions={
          <>
            {w.enabled ? (
              <Button variant="default" leftSection={<IconPlayerPause size={16} aria-hidden />} onClick={() => setConfirming('disable')}>
                Disable
              </Button>
            ) : (
              <Button
                variant="default"
                leftSection={<IconPlayerPlay size={16} aria-hidden />}
                onClick={() => setEnabled.mutate(true)}
                loading={setEnabled.isPending && !confirming}
              >
                Enable
              </Button>
            )}
            <Button variant="default" leftSection={<IconRefresh size={16} aria-hidden />} onClick={() => setConfirming('roll')}>
              Roll secret
            </Button>
            <Button variant="light" color="red" leftSection={<IconTrash size={16} aria-hidden />} onClick={() => setConfirming('delete')}>
              Delete
            </Button>
          </>
        }
      />
      <Stack gap="lg">
        {!w.enabled && (
          <Alert
            variant="light"
            color="orange"
            icon={<IconAlertTriangle size={18} aria-hidden />}
            title="This webhook is disabled: it gets no new deliveries"
          >
            {w.disabled_reason ? <>Why: {w.disabled_reason}. </> : null}
            Fix the receiver, enable the webhook, then retry the deliveries you need.
          </Alert>
        )}
        <Card withBorder radius="md" padding="lg">
          <Group justify="space-between" mb="md">
            <Title order={2} fz="md" fw={600}>
              {editing ? 'Edit webhook' : 'Details'}
            </Title>
            {!editing && (
              <Button size="xs" variant="default" leftSection={<IconPencil size={14} aria-hidden />} onClick={() => setEditing(true)}>
                Edit
              </Button>
            )}
          </Group>
          {editing ? (
            <WebhookForm
              label="Edit webhook"
              initial={webhookValues(w)}
              submitLabel="Save changes"
              onSubmit={save}
              onCancel={() => setEditing(false)}
            />
          ) : (
            <WebhookFields webhook={w} />
          )}
        </Card>
        <WebhookDeliveries webhookId={w.id} />
      </Stack>
      <ConfirmDialog
        opened={confirming === 'disable'}
        title={`Disable the webhook to ${host}?`}
        action="Disable"
        color="orange"
        pending={setEnabled.isPending}
        error={confirming === 'disable' && setEnabled.error ? errorMessage(setEnabled.error) : null}
        onClose={() => setConfirming(null)}
        onConfirm={() => setEnabled.mutate(false)}
      >
        No new events are sent to it, and its deliveries still due end as <b>dead</b>. Enable it again to resume, then retry the deliveries
        you need.
      </ConfirmDialog>
      <ConfirmDialog
        opened={confirming === 'roll'}
        title="Roll the signing secret?"
        action="Roll secret"
        color="keyward"
        pending={rolling}
        error={rollError}
        onClose={() => {
          setConfirming(null);
          setRollError(null);
        }}
        onConfirm={() => void rollSecret()}
      >
        A new secret signs every attempt from now on; the current one signs nothing more. Until your receiver has the new secret, deliveries
        fail its check and are retried on schedule.
      </ConfirmDialog>
      <ConfirmDialog
        opened={confirming === 'delete'}
        title={`Delete the webhook to ${host}?`}
        action="Delete"
        pending={remove.isPending}
        error={remove.error ? errorMessage(remove.error) : null}
        onClose={() => setConfirming(null)}
        onConfirm={() => remove.mutate()}
      >
        Nothing more is sent to <b>{w.url}</b>. Its deliveries and their attempts are deleted too. This cannot be undone.
      </ConfirmDialog>
      <RevealKeyDialog revealed={revealed} onClose={() => setRevealed(null)} />
    </>
  );
}
