import { KeywardError } from '@keyward/sdk';
import { Badge, Group, Text, Tooltip, VisuallyHidden } from '@mantine/core';
import type { DeliveryStatus, Webhook, WebhookEventType } from '../../api/queries';

/** A URL's host, for titles ("hooks.example.com"); the URL itself when it does not parse. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

/** Every event type and when it is sent (docs/webhooks.md). A Record, so a type the API adds fails the type check here. */
export const EVENT_TYPE_DESCRIPTION: Record<WebhookEventType, string> = {
  'key.created': 'A key is created, or a roll makes its new key',
  'key.updated': 'A key’s fields, limits or quota change',
  'key.rolled': 'A key is rolled',
  'key.deactivated': 'A key is deactivated',
  'key.activated': 'A deactivated key is activated',
  'key.revoked': 'A key is revoked',
  'key.deleted': 'A key is deleted',
  'key.expiring': 'A key’s expiry is near',
  'key.expired': 'A key’s expiry passes',
  'key.leaked': 'A key is reported leaked, and revoked',
  'quota.low': 'A quota falls to its low mark',
  'quota.exhausted': 'A quota is used up',
  'user.created': 'A user is created',
  'user.updated': 'A user’s email or tier changes',
  'user.deleted': 'A user is deleted',
};

export const EVENT_TYPES = Object.keys(EVENT_TYPE_DESCRIPTION) as WebhookEventType[];

const GROUPS: { group: string; prefix: string }[] = [
  { group: 'Keys', prefix: 'key.' },
  { group: 'Quotas', prefix: 'quota.' },
  { group: 'Users', prefix: 'user.' },
];

/** The event types as grouped options, for a multi-select. */
export const EVENT_TYPE_OPTIONS = GROUPS.map(({ group, prefix }) => ({
  group,
  items: EVENT_TYPES.filter((type) => type.startsWith(prefix)).map((type) => ({ value: type, label: type })),
}));

/** Whether a webhook gets every event (`["*"]`), new types included. */
export const allEvents = (eventTypes: readonly string[]): boolean => eventTypes.includes('*');

/** A webhook's event types as chips, or "All events"; past `max`, a "+N" chip names the rest on hover. */
export function EventTypeChips({ eventTypes, max = 3 }: { eventTypes: readonly string[]; max?: number }) {
  if (allEvents(eventTypes)) {
    return (
      <Badge variant="light" color="keyward" radius="sm" size="sm" tt="none" fw={600}>
        All events
      </Badge>
    );
  }
  const shown = eventTypes.slice(0, max);
  const rest = eventTypes.slice(max);
  return (
    <Group gap={4} wrap="wrap">
      {shown.map((type) => (
        <Badge key={type} variant="default" radius="sm" size="sm" tt="none" fw={500} ff="monospace">
          {type}
        </Badge>
      ))}
      {rest.length > 0 && (
        <Tooltip label={rest.join(', ')} multiline maw={280}>
          <Badge variant="default" radius="sm" size="sm" tt="none" fw={500}>
            +{rest.length}
            <VisuallyHidden>: {rest.join(', ')}</VisuallyHidden>
          </Badge>
        </Tooltip>
      )}
    </Group>
  );
}

/** Enabled, or Disabled with the reason under it when `withReason`. */
export function WebhookStateBadge({ webhook, withReason = false }: { webhook: Webhook; withReason?: boolean }) {
  const failing = webhook.enabled && webhook.consecutive_failures > 0;
  const badge = (
    <Badge
      variant="light"
      color={!webhook.enabled ? 'gray' : failing ? 'orange' : 'teal'}
      radius="sm"
      size="md"
      tt="none"
      fw={600}
      data-webhook-state={!webhook.enabled ? 'disabled' : failing ? 'failing' : 'enabled'}
      leftSection={<span className="kw-status-dot" aria-hidden />}
      style={{ flexShrink: 0, overflow: 'visible' }}
      styles={{ label: { overflow: 'visible' } }}
    >
      {!webhook.enabled ? 'Disabled' : failing ? 'Failing' : 'Enabled'}
    </Badge>
  );
  if (!withReason) return badge;
  const reason = !webhook.enabled
    ? webhook.disabled_reason
    : failing
      ? `${webhook.consecutive_failures} ${webhook.consecutive_failures === 1 ? 'attempt' : 'attempts'} failed in a row`
      : null;
  return (
    <div>
      {badge}
      {reason && (
        <Text size="xs" c="dimmed" mt={4} maw={260} style={{ overflowWrap: 'anywhere' }}>
          {reason}
        </Text>
      )}
    </div>
  );
}

export const DELIVERY_STATUS_LABEL: Record<DeliveryStatus, string> = {
  pending: 'Pending',
  succeeded: 'Succeeded',
  failed: 'Failed',
  dead: 'Dead',
};

const DELIVERY_STATUS_COLOR: Record<DeliveryStatus, string> = {
  pending: 'blue',
  succeeded: 'teal',
  failed: 'orange',
  dead: 'red',
};

export const DELIVERY_STATUSES = Object.keys(DELIVERY_STATUS_LABEL) as DeliveryStatus[];

export function DeliveryStatusBadge({ status }: { status: DeliveryStatus }) {
  return (
    <Badge
      variant="light"
      color={DELIVERY_STATUS_COLOR[status]}
      radius="sm"
      size="sm"
      tt="none"
      fw={600}
      data-delivery-status={status}
      leftSection={<span className="kw-status-dot" aria-hidden />}
      style={{ flexShrink: 0, overflow: 'visible' }}
      styles={{ label: { overflow: 'visible' } }}
    >
      {DELIVERY_STATUS_LABEL[status]}
    </Badge>
  );
}

/** The server's refusal of a webhook's fields, by field (`body.url` → url), and what names no field. */
export function webhookFieldErrors(error: unknown): { url?: string; event_types?: string; description?: string } {
  if (!(error instanceof KeywardError) || error.status !== 400) return {};
  const found: Record<string, string> = {};
  for (const e of error.problem.errors ?? []) {
    const field = e.field.replace(/^body\./, '');
    if ((field === 'url' || field === 'event_types' || field === 'description' || field.startsWith('event_types.')) && !found[field]) {
      found[field.startsWith('event_types') ? 'event_types' : field] = e.message;
    }
  }
  // The refusal says why in its detail too ("body.url: …"), for a server that names no field.
  if (error.code === 'WEBHOOK_URL_NOT_ALLOWED' && !found.url)
    found.url = (error.problem.detail ?? error.problem.title).replace(/^body\.url: /, '');
  return found;
}
