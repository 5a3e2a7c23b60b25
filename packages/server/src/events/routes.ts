import { type Static, Type } from '@fastify/type-provider-typebox';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { bodyProblems, Id, IdParams, iso, isoOrNull, NextCursor, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { EVENT_TYPES } from './catalogue.js';
import type { EventRecord, Webhook } from './repository.js';
import { type DeliveryWithAttempts, MAX_URL_LENGTH, MAX_WEBHOOK_DESCRIPTION_LENGTH, type WebhookService } from './service.js';

const tags = ['Webhooks'];

/** The tag of the webhook and event routes, for the OpenAPI document. */
export const WEBHOOKS_TAG = {
  name: 'Webhooks',
  description:
    'Events (key and user changes, expiries, leaks, quotas) sent to your URLs, signed per Standard Webhooks; their deliveries, and the events themselves (admin only).',
};

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const EventTypeName = Type.Union(
  EVENT_TYPES.map((type) => Type.Literal(type)),
  { description: 'An event type' },
);
const Subscription = Type.Union([...EVENT_TYPES.map((type) => Type.Literal(type)), Type.Literal('*')], {
  description: 'An event type, or `*` for every one',
});

const WEBHOOK_EXAMPLE = {
  id: '0197a4e0-5a6b-7c8d-9e0f-1a2b3c4d5e6f',
  url: 'https://hooks.example.com/keyward',
  description: 'Security alerts',
  event_types: ['key.leaked', 'key.revoked', 'key.expiring'],
  enabled: true,
  disabled_reason: null,
  failing_since: null,
  consecutive_failures: 0,
  created_at: '2025-06-01T09:30:00.000Z',
  updated_at: '2025-06-01T09:30:00.000Z',
};
const SECRET_EXAMPLE = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

export const WebhookResponse = Type.Object(
  {
    id: Type.String(),
    url: Type.String(),
    description: Nullable(Type.String()),
    event_types: Type.Array(Type.String(), { description: 'The event types sent, or `["*"]` for every one' }),
    enabled: Type.Boolean(),
    disabled_reason: Nullable(Type.String({ description: 'Why it was disabled: by an admin, or because every attempt failed for a day' })),
    failing_since: Nullable(Type.String({ format: 'date-time', description: 'When the current run of failed attempts began' })),
    consecutive_failures: Type.Integer({ minimum: 0, description: 'Attempts failed in a row' }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  {
    $id: 'Webhook',
    description: 'Where events are sent. Its signing secret is shown only when made or rolled',
    examples: [WEBHOOK_EXAMPLE],
  },
);
type WebhookResponse = Static<typeof WebhookResponse>;

export const CreatedWebhookResponse = Type.Intersect(
  [
    Type.Object({
      secret: Type.String({
        description: 'The signing secret (`whsec_…`). Shown once: store it now. Receivers verify deliveries with it',
      }),
    }),
    ref(WebhookResponse),
  ],
  { $id: 'CreatedWebhook', description: 'A webhook just created, or whose secret was rolled: with its signing secret, shown once' },
);

const WebhookPage = Type.Object(
  { data: Type.Array(ref(WebhookResponse)), next_cursor: NextCursor },
  { $id: 'WebhookPage', description: 'A page of webhooks, newest first' },
);

const DeliveryStatus = Type.Union([Type.Literal('pending'), Type.Literal('failed'), Type.Literal('succeeded'), Type.Literal('dead')], {
  description: '`pending` (not tried yet), `failed` (a retry is due), `succeeded`, or `dead` (no more retries)',
});

const ATTEMPT_EXAMPLE = { attempted_at: '2025-06-03T08:00:00.120Z', duration_ms: 84, status_code: 200, error: null };
const DELIVERY_EXAMPLE = {
  id: '0197a4e5-3c4d-7e5f-8a6b-7c8d9e0f1a3c',
  webhook_id: WEBHOOK_EXAMPLE.id,
  event_id: '0197a4e5-3c4d-7e5f-8a6b-7c8d9e0f1a2b',
  event_type: 'key.revoked',
  status: 'succeeded',
  attempts: 1,
  next_attempt_at: null,
  last_attempt_at: '2025-06-03T08:00:00.120Z',
  last_status_code: 200,
  last_error: null,
  created_at: '2025-06-03T08:00:00.000Z',
  updated_at: '2025-06-03T08:00:00.204Z',
  attempt_log: [ATTEMPT_EXAMPLE],
};

export const DeliveryResponse = Type.Object(
  {
    id: Type.String(),
    webhook_id: Type.String(),
    event_id: Type.String({ description: 'Also the `webhook-id` header of every attempt' }),
    event_type: Type.String(),
    status: DeliveryStatus,
    attempts: Type.Integer({ minimum: 0 }),
    next_attempt_at: Nullable(Type.String({ format: 'date-time', description: 'When the next attempt is due; null once finished' })),
    last_attempt_at: Nullable(Type.String({ format: 'date-time' })),
    last_status_code: Nullable(Type.Integer()),
    last_error: Nullable(Type.String({ description: 'Why the last attempt failed: `HTTP 500`, a connection error, a refused address' })),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
    attempt_log: Type.Array(
      Type.Object({
        attempted_at: Type.String({ format: 'date-time' }),
        duration_ms: Type.Integer({ minimum: 0 }),
        status_code: Nullable(Type.Integer()),
        error: Nullable(Type.String()),
      }),
      { description: 'Every attempt, oldest first' },
    ),
  },
  { $id: 'WebhookDelivery', description: 'One event sent to one webhook, with every attempt', examples: [DELIVERY_EXAMPLE] },
);
type DeliveryResponse = Static<typeof DeliveryResponse>;

const DeliveryPage = Type.Object(
  { data: Type.Array(ref(DeliveryResponse)), next_cursor: NextCursor },
  { $id: 'WebhookDeliveryPage', description: 'A page of deliveries, newest first' },
);

const EVENT_EXAMPLE = {
  id: DELIVERY_EXAMPLE.event_id,
  type: 'key.revoked',
  data: {
    key: {
      id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
      name: 'Billing service',
      key_prefix: 'kw_3xYkAb12',
      user_id: null,
      is_admin: false,
      lineage_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
      expires_at: null,
    },
    actor: { type: 'api_key', id: '0197a4d0-11aa-7c2e-8d3f-4b5a6c7d8e9f' },
  },
  created_at: '2025-06-03T08:00:00.000Z',
};

export const EventResponse = Type.Object(
  {
    id: Type.String({ description: 'The `webhook-id` of its deliveries' }),
    type: Type.String(),
    data: Type.Record(Type.String(), Type.Unknown(), {
      description: 'As delivered (see the `webhooks` section for each type’s): ids, names, display prefixes, what changed',
    }),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Event', description: 'Something that happened, as webhooks receive it', examples: [EVENT_EXAMPLE] },
);
type EventResponse = Static<typeof EventResponse>;

const EventPage = Type.Object(
  { data: Type.Array(ref(EventResponse)), next_cursor: NextCursor },
  { $id: 'EventPage', description: 'A page of events, newest first' },
);

/** The events wing's named components of the OpenAPI document (registered by the app). */
export const WEBHOOK_SCHEMAS = [
  WebhookResponse,
  CreatedWebhookResponse,
  WebhookPage,
  DeliveryResponse,
  DeliveryPage,
  EventResponse,
  EventPage,
];

const Url = Type.String({
  minLength: 1,
  maxLength: MAX_URL_LENGTH,
  format: 'uri',
  description: 'Where events are POSTed: http(s), a public address unless `WEBHOOK_ALLOW_PRIVATE`',
});
const WebhookDescription = Type.String({ maxLength: MAX_WEBHOOK_DESCRIPTION_LENGTH });
const EventTypes = Type.Array(Subscription, { minItems: 1, maxItems: 32 });

const CreateWebhookBody = Type.Object(
  {
    url: Url,
    description: Type.Optional(Nullable(WebhookDescription)),
    event_types: Type.Optional(EventTypes),
    enabled: Type.Optional(Type.Boolean({ default: true })),
  },
  {
    additionalProperties: false,
    examples: [{ url: WEBHOOK_EXAMPLE.url, description: WEBHOOK_EXAMPLE.description, event_types: WEBHOOK_EXAMPLE.event_types }],
  },
);
const UpdateWebhookBody = Type.Object(
  {
    url: Type.Optional(Url),
    description: Type.Optional(Nullable(WebhookDescription)),
    event_types: Type.Optional(EventTypes),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ enabled: true }] },
);
const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: '`next_cursor` from the previous page' })),
};
const ListWebhooksQuery = Type.Object(PageQuery, { additionalProperties: false });
const ListDeliveriesQuery = Type.Object({ status: Type.Optional(DeliveryStatus), ...PageQuery }, { additionalProperties: false });
const ListEventsQuery = Type.Object({ type: Type.Optional(EventTypeName), ...PageQuery }, { additionalProperties: false });
const DeliveryParams = Type.Object({ id: Id, delivery_id: Id }, { additionalProperties: false });

function webhookView(webhook: Webhook): WebhookResponse {
  return {
    id: webhook.id,
    url: webhook.url,
    description: webhook.description,
    event_types: webhook.eventTypes,
    enabled: webhook.enabled,
    disabled_reason: webhook.disabledReason,
    failing_since: isoOrNull(webhook.failingSince),
    consecutive_failures: webhook.consecutiveFailures,
    created_at: iso(webhook.createdAt),
    updated_at: iso(webhook.updatedAt),
  };
}

function deliveryView(delivery: DeliveryWithAttempts): DeliveryResponse {
  return {
    id: delivery.id,
    webhook_id: delivery.webhookId,
    event_id: delivery.eventId,
    event_type: delivery.eventType,
    status: delivery.status,
    attempts: delivery.attempts,
    next_attempt_at: isoOrNull(delivery.nextAttemptAt),
    last_attempt_at: isoOrNull(delivery.lastAttemptAt),
    last_status_code: delivery.lastStatusCode,
    last_error: delivery.lastError,
    created_at: iso(delivery.createdAt),
    updated_at: iso(delivery.updatedAt),
    attempt_log: delivery.attemptLog.map((a) => ({
      attempted_at: iso(a.attemptedAt),
      duration_ms: a.durationMs,
      status_code: a.statusCode,
      error: a.error,
    })),
  };
}

const eventView = (event: EventRecord): EventResponse => ({
  id: event.id,
  type: event.type,
  data: event.data,
  created_at: iso(event.createdAt),
});

/** Webhooks and events (admin only). */
export function webhookRoutes(app: App, deps: { webhooks: WebhookService }): void {
  const { webhooks } = deps;

  app.post(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'createWebhook',
        tags,
        summary: 'Create a webhook',
        description:
          'Admin only. Events of the types named in `event_types` (default `["*"]`, every one) are POSTed to `url`, signed per Standard Webhooks. The answer holds the signing secret (`whsec_…`), shown this once. A URL whose host is (or resolves to) a loopback, private or link-local address is refused with `WEBHOOK_URL_NOT_ALLOWED` unless `WEBHOOK_ALLOW_PRIVATE=true`.',
        security: SECURED,
        body: CreateWebhookBody,
        response: {
          201: ref(CreatedWebhookResponse, {
            description: 'The webhook, with its signing secret (shown once)',
            examples: [{ secret: SECRET_EXAMPLE, ...WEBHOOK_EXAMPLE }],
          }),
          ...bodyProblems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const created = unwrap(
        await webhooks.create(callerOf(request), { url: b.url, description: b.description, eventTypes: b.event_types, enabled: b.enabled }),
      );
      return reply.code(201).send({ secret: created.secret, ...webhookView(created.webhook) });
    },
  );

  app.get(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'listWebhooks',
        tags,
        summary: 'List webhooks',
        description: 'Admin only. Newest first, paginated with `limit` and `cursor`. Secrets are never listed.',
        security: SECURED,
        querystring: ListWebhooksQuery,
        response: {
          200: ref(WebhookPage, { description: 'A page of webhooks', examples: [{ data: [WEBHOOK_EXAMPLE], next_cursor: null }] }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const page = unwrap(await webhooks.list(callerOf(request), { limit: request.query.limit, cursor: request.query.cursor }));
      return { data: page.items.map(webhookView), next_cursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'getWebhook',
        tags,
        summary: 'Get a webhook',
        description:
          'Admin only. `enabled`, and `disabled_reason` when it was disabled (by an admin, or because every attempt failed for a day).',
        security: SECURED,
        params: IdParams,
        response: { 200: ref(WebhookResponse, { description: 'The webhook', examples: [WEBHOOK_EXAMPLE] }), ...problems(401, 403, 404) },
      },
    },
    async (request) => webhookView(unwrap(await webhooks.get(callerOf(request), request.params.id))),
  );

  app.patch(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'updateWebhook',
        tags,
        summary: 'Update a webhook',
        description:
          'Admin only. Changes the URL (checked as on create), the description, the event types, or `enabled`. Enabling a disabled webhook clears `disabled_reason` and its failure count; disabling one ends its deliveries still due (`dead`).',
        security: SECURED,
        params: IdParams,
        body: UpdateWebhookBody,
        response: {
          200: ref(WebhookResponse, { description: 'The webhook as changed', examples: [WEBHOOK_EXAMPLE] }),
          ...bodyProblems(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const b = request.body;
      const updated = unwrap(
        await webhooks.update(callerOf(request), request.params.id, {
          url: b.url,
          description: b.description,
          eventTypes: b.event_types,
          enabled: b.enabled,
        }),
      );
      return webhookView(updated);
    },
  );

  app.delete(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'deleteWebhook',
        tags,
        summary: 'Delete a webhook',
        description: 'Admin only. Deletes the webhook with its deliveries and their attempts; nothing more is sent to it.',
        security: SECURED,
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      unwrap(await webhooks.remove(callerOf(request), request.params.id));
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/webhooks/:id/roll-secret',
    {
      schema: {
        operationId: 'rollWebhookSecret',
        tags,
        summary: 'Roll a webhook’s signing secret',
        description:
          'Admin only. A new signing secret, shown this once; the old one signs nothing more. Attempts that fail while the receiver still checks the old secret are retried on schedule, signed with the new one.',
        security: SECURED,
        params: IdParams,
        response: {
          200: ref(CreatedWebhookResponse, {
            description: 'The webhook, with its new signing secret (shown once)',
            examples: [{ secret: SECRET_EXAMPLE, ...WEBHOOK_EXAMPLE }],
          }),
          ...problems(401, 403, 404),
        },
      },
    },
    async (request) => {
      const rolled = unwrap(await webhooks.rollSecret(callerOf(request), request.params.id));
      return { secret: rolled.secret, ...webhookView(rolled.webhook) };
    },
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      schema: {
        operationId: 'listWebhookDeliveries',
        tags,
        summary: 'List a webhook’s deliveries',
        description:
          'Admin only. Newest first, with every attempt (when, how long, the status code or the error); `status` filters. Retries follow the schedule 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (±20 %), then the delivery is `dead`.',
        security: SECURED,
        params: IdParams,
        querystring: ListDeliveriesQuery,
        response: {
          200: ref(DeliveryPage, { description: 'A page of deliveries', examples: [{ data: [DELIVERY_EXAMPLE], next_cursor: null }] }),
          ...problems(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = unwrap(
        await webhooks.listDeliveries(callerOf(request), request.params.id, { status: q.status, limit: q.limit, cursor: q.cursor }),
      );
      return { data: page.items.map(deliveryView), next_cursor: page.nextCursor };
    },
  );

  app.post(
    '/v1/webhooks/:id/deliveries/:delivery_id/retry',
    {
      schema: {
        operationId: 'retryWebhookDelivery',
        tags,
        summary: 'Retry a delivery',
        description:
          'Admin only. Sends the delivery again now: one more attempt for one that is `dead` or `succeeded`; one still scheduled is brought forward. 409 `WEBHOOK_DISABLED` while the webhook is disabled.',
        security: SECURED,
        params: DeliveryParams,
        response: {
          202: ref(DeliveryResponse, {
            description: 'The delivery, due now',
            examples: [{ ...DELIVERY_EXAMPLE, status: 'pending', next_attempt_at: '2025-06-03T09:00:00.000Z' }],
          }),
          ...problems(401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const delivery = unwrap(await webhooks.retryDelivery(callerOf(request), request.params.id, request.params.delivery_id));
      return reply.code(202).send(deliveryView(delivery));
    },
  );

  app.get(
    '/v1/events',
    {
      schema: {
        operationId: 'listEvents',
        tags,
        summary: 'List events',
        description: `Admin only. Every event written (whether or not a webhook wanted it), newest first; \`type\` filters. Kept \`EVENTS_RETENTION_DAYS\` (default 30).`,
        security: SECURED,
        querystring: ListEventsQuery,
        response: {
          200: ref(EventPage, { description: 'A page of events', examples: [{ data: [EVENT_EXAMPLE], next_cursor: null }] }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = unwrap(await webhooks.listEvents(callerOf(request), { type: q.type, limit: q.limit, cursor: q.cursor }));
      return { data: page.items.map(eventView), next_cursor: page.nextCursor };
    },
  );
}
