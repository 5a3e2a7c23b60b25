import type { Webhook, WebhookDelivery } from '../../api/queries';

// Webhooks and deliveries as the API returns them, for component tests.

export const webhook = (fields: Partial<Webhook> = {}): Webhook => ({
  id: 'w1',
  url: 'https://hooks.example.com/keyward',
  description: 'Security alerts',
  event_types: ['key.leaked', 'key.revoked'],
  enabled: true,
  disabled_reason: null,
  failing_since: null,
  consecutive_failures: 0,
  created_at: '2026-03-01T09:30:00.000Z',
  updated_at: '2026-03-01T09:30:00.000Z',
  ...fields,
});

export const delivery = (fields: Partial<WebhookDelivery> = {}): WebhookDelivery => ({
  id: 'd1',
  webhook_id: 'w1',
  event_id: 'e1',
  event_type: 'key.revoked',
  status: 'succeeded',
  attempts: 1,
  next_attempt_at: null,
  last_attempt_at: '2026-03-10T14:05:00.120Z',
  last_status_code: 200,
  last_error: null,
  created_at: '2026-03-10T14:05:00.000Z',
  updated_at: '2026-03-10T14:05:00.204Z',
  attempt_log: [{ attempted_at: '2026-03-10T14:05:00.120Z', duration_ms: 84, status_code: 200, error: null }],
  ...fields,
});
