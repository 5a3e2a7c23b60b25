import { type TSchema, Type } from '@fastify/type-provider-typebox';
import type { OpenAPIV3_1 } from 'openapi-types';
import { ref } from '../http/schemas.js';
import { EVENT_TYPES, type EventType } from './catalogue.js';

// Each event's payload, as the OpenAPI document's `webhooks` section (OpenAPI 3.1) shows it: what a receiver
// gets in the body of a delivery, `{type, timestamp, data}`, and the Standard Webhooks headers that sign it.

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Iso = (description?: string) => Type.String({ format: 'date-time', ...(description ? { description } : {}) });

const KEY_EXAMPLE = {
  id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  name: 'Billing service',
  key_prefix: 'kw_3xYkAb12',
  user_id: null,
  is_admin: false,
  lineage_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  expires_at: null,
};
const USER_EXAMPLE = {
  id: '0197a4c8-2f3e-7a1b-9c4d-5e6f7a8b9c0d',
  external_id: 'auth0|64f1c2a9e8b7d6c5b4a39281',
  email: 'ada@example.com',
  tier: 'pro',
};
const ACTOR_EXAMPLE = { type: 'api_key', id: '0197a4d0-11aa-7c2e-8d3f-4b5a6c7d8e9f' };

export const EventKey = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    key_prefix: Type.String({ description: 'The prefix and first characters of the key, safe to display' }),
    user_id: Nullable(Type.String()),
    is_admin: Type.Boolean(),
    lineage_id: Type.String({ description: 'The id of the first key of its roll lineage' }),
    expires_at: Nullable(Iso()),
  },
  { $id: 'EventKey', description: 'A key as events show it: never the key or its hash', examples: [KEY_EXAMPLE] },
);

export const EventUser = Type.Object(
  { id: Type.String(), external_id: Type.String(), email: Nullable(Type.String()), tier: Type.String() },
  { $id: 'EventUser', description: 'A user as events show them', examples: [USER_EXAMPLE] },
);

export const EventActor = Type.Object(
  {
    type: Type.Union([Type.Literal('api_key'), Type.Literal('user'), Type.Literal('system')]),
    id: Type.String({ description: 'A key id, a user id, or the system actor (`cli`, `bootstrap`, `jwt`, `github`, …)' }),
  },
  { $id: 'EventActor', description: 'Who made the change, as the audit log names them', examples: [ACTOR_EXAMPLE] },
);

const Changes = Type.Record(Type.String(), Type.Object({ from: Type.Unknown(), to: Type.Unknown() }), {
  description: 'Each field changed, by its API name: `{from, to}` (never a key or a hash)',
});
const QuotaRefill = Nullable(
  Type.Object(
    { amount: Type.Integer(), interval: Type.Union([Type.Literal('day'), Type.Literal('month')]) },
    { description: 'The refill' },
  ),
);
const key = ref(EventKey);
const actor = ref(EventActor);
const user = ref(EventUser);

interface EventDoc {
  summary: string;
  description: string;
  data: TSchema;
  example: Record<string, unknown>;
}

const DOCS: Record<EventType, EventDoc> = {
  'key.created': {
    summary: 'A key was created',
    description:
      'A key was created (through the API, the CLI, a roll, or the bootstrap admin key); `rolled_from` names the key a roll replaced.',
    data: Type.Object({ key, actor, rolled_from: Type.Optional(Type.String({ description: 'The key this one replaced (a roll)' })) }),
    example: { key: KEY_EXAMPLE, actor: ACTOR_EXAMPLE },
  },
  'key.updated': {
    summary: 'A key was changed',
    description:
      'A key’s name, description, scopes, metadata, expiry, rate limit or quota changed: `changes` says which, from what to what.',
    data: Type.Object({ key, actor, changes: Changes }),
    example: {
      key: KEY_EXAMPLE,
      actor: ACTOR_EXAMPLE,
      changes: { scopes: { from: ['invoices:read'], to: ['invoices:read', 'invoices:write'] } },
    },
  },
  'key.rolled': {
    summary: 'A key was rolled',
    description:
      'A key was replaced by a new one. `key` is the old key (its `expires_at` is the end of its grace period), `new_key` the replacement.',
    data: Type.Object({ key, new_key: key, grace_period_seconds: Type.Integer({ minimum: 0 }), actor }),
    example: {
      key: { ...KEY_EXAMPLE, expires_at: '2025-06-03T09:00:00.000Z' },
      new_key: { ...KEY_EXAMPLE, id: '0197a4e1-1b2c-7d3e-8f4a-5b6c7d8e9f0a', key_prefix: 'kw_9pQrSt34' },
      grace_period_seconds: 3600,
      actor: ACTOR_EXAMPLE,
    },
  },
  'key.deactivated': {
    summary: 'A key was deactivated',
    description: 'A key was deactivated: it stops verifying until activated again.',
    data: Type.Object({ key, actor }),
    example: { key: KEY_EXAMPLE, actor: ACTOR_EXAMPLE },
  },
  'key.activated': {
    summary: 'A key was activated',
    description: 'A deactivated key was activated again.',
    data: Type.Object({ key, actor }),
    example: { key: KEY_EXAMPLE, actor: ACTOR_EXAMPLE },
  },
  'key.revoked': {
    summary: 'A key was revoked',
    description: 'A key was revoked, for good.',
    data: Type.Object({ key, actor }),
    example: { key: KEY_EXAMPLE, actor: ACTOR_EXAMPLE },
  },
  'key.deleted': {
    summary: 'A key was deleted',
    description: 'A key was deleted; `cause` is `user.delete` when it went with its user.',
    data: Type.Object({ key, actor, cause: Type.Optional(Type.Literal('user.delete')) }),
    example: { key: KEY_EXAMPLE, actor: ACTOR_EXAMPLE },
  },
  'key.expiring': {
    summary: 'A key expires soon',
    description: 'A key will expire within `WEBHOOK_KEY_EXPIRING_BEFORE` (default 7 days). Sent once per key and expiry.',
    data: Type.Object({ key, expires_at: Iso(), expires_in_seconds: Type.Integer({ minimum: 0 }) }),
    example: {
      key: { ...KEY_EXAMPLE, expires_at: '2025-06-10T09:30:00.000Z' },
      expires_at: '2025-06-10T09:30:00.000Z',
      expires_in_seconds: 604800,
    },
  },
  'key.expired': {
    summary: 'A key expired',
    description: 'A key reached its `expires_at` (a rolled key, the end of its grace period). Sent once per key and expiry.',
    data: Type.Object({ key, expired_at: Iso() }),
    example: { key: { ...KEY_EXAMPLE, expires_at: '2025-06-10T09:30:00.000Z' }, expired_at: '2025-06-10T09:30:00.000Z' },
  },
  'key.leaked': {
    summary: 'A key was reported leaked and revoked',
    description:
      'A key was found where it should not be (GitHub secret scanning, a public report, `keyward scan --revoke`) and revoked at once. `revoked` is false when it was revoked already.',
    data: Type.Object({
      key,
      source: Type.Union([Type.Literal('github'), Type.Literal('report'), Type.Literal('scan')]),
      url: Type.Optional(Type.String({ description: 'Where it was seen (GitHub’s URL of the match)' })),
      token_type: Type.Optional(Type.String()),
      found_in: Type.Optional(Type.String()),
      location: Type.Optional(Type.String()),
      revoked: Type.Boolean(),
    }),
    example: {
      key: KEY_EXAMPLE,
      source: 'github',
      url: 'https://github.com/octo/app/blob/abc123/.env#L3',
      token_type: 'keyward_api_key',
      revoked: true,
    },
  },
  'quota.low': {
    summary: 'A key’s quota is running low',
    description:
      'A spend took a key’s quota to `WEBHOOK_QUOTA_LOW_FRACTION` (default 0.1) of its refill amount or below. Once per refill period; quotas without a refill send none.',
    data: Type.Object({
      key,
      quota: Type.Object({ remaining: Type.Integer(), refill: QuotaRefill, threshold: Type.Integer() }),
      spent_by_key_id: Type.Optional(Type.String({ description: 'The rolled key, in its grace period, that spent it' })),
    }),
    example: { key: KEY_EXAMPLE, quota: { remaining: 1000, refill: { amount: 10000, interval: 'month' }, threshold: 1000 } },
  },
  'quota.exhausted': {
    summary: 'A key’s quota is used up',
    description: 'A spend took a key’s quota to 0: its verifications answer `USAGE_EXCEEDED` until it refills. Once per refill period.',
    data: Type.Object({
      key,
      quota: Type.Object({ remaining: Type.Integer(), refill: QuotaRefill }),
      spent_by_key_id: Type.Optional(Type.String({ description: 'The rolled key, in its grace period, that spent it' })),
    }),
    example: { key: KEY_EXAMPLE, quota: { remaining: 0, refill: { amount: 10000, interval: 'month' } } },
  },
  'user.created': {
    summary: 'A user was created',
    description: 'A user was created by an admin, or on their first sign-in with a JWT (`source: jwt`).',
    data: Type.Object({ user, actor, source: Type.Optional(Type.Literal('jwt')) }),
    example: { user: USER_EXAMPLE, actor: ACTOR_EXAMPLE },
  },
  'user.updated': {
    summary: 'A user was changed',
    description: 'A user’s email or tier changed.',
    data: Type.Object({ user, actor, changes: Changes }),
    example: { user: { ...USER_EXAMPLE, tier: 'enterprise' }, actor: ACTOR_EXAMPLE, changes: { tier: { from: 'pro', to: 'enterprise' } } },
  },
  'user.deleted': {
    summary: 'A user was deleted',
    description: 'A user was deleted with their keys (each key also sends `key.deleted`).',
    data: Type.Object({ user, actor, keys_deleted: Type.Integer({ minimum: 0 }) }),
    example: { user: USER_EXAMPLE, actor: ACTOR_EXAMPLE, keys_deleted: 2 },
  },
};

/** `key.created` → `KeyCreated` */
const pascal = (type: string): string =>
  type
    .split('.')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');

const EXAMPLE_ID = '0197a4e5-3c4d-7e5f-8a6b-7c8d9e0f1a2b';
const EXAMPLE_TIME = '2025-06-03T08:00:00.000Z';

/** Each event's body, `{type, timestamp, data}`, as a named component (`KeyCreatedEvent`, …). */
const ENVELOPES = EVENT_TYPES.map((type) => {
  const doc = DOCS[type];
  const id = `${pascal(type)}Event`;
  return {
    type,
    doc,
    id,
    schema: Type.Object(
      {
        type: Type.Literal(type),
        timestamp: Iso('When the event happened'),
        data: doc.data,
      },
      { $id: id, description: doc.summary },
    ),
  };
});

/** The events wing's payload components of the OpenAPI document (registered by the app). */
export const EVENT_PAYLOAD_SCHEMAS: TSchema[] = [EventKey, EventUser, EventActor, ...ENVELOPES.map((e) => e.schema)];

const HEADERS: OpenAPIV3_1.ParameterObject[] = [
  {
    name: 'webhook-id',
    in: 'header',
    required: true,
    description: 'The event’s id: the same for every attempt. Receivers deduplicate by it (delivery is at least once).',
    schema: { type: 'string' },
    example: EXAMPLE_ID,
  },
  {
    name: 'webhook-timestamp',
    in: 'header',
    required: true,
    description: 'When this attempt was sent, in unix seconds. Refuse ones too far from now (replays).',
    schema: { type: 'integer' },
    example: 1748937600,
  },
  {
    name: 'webhook-signature',
    in: 'header',
    required: true,
    description:
      '`v1,` and the base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the base64-decoded part of the secret after `whsec_` (Standard Webhooks). Verify it with any Standard Webhooks library.',
    schema: { type: 'string' },
    example: 'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=',
  },
];

/** The OpenAPI document's `webhooks`: one POST per event type, as Keyward sends it to a webhook's URL. */
export const OPENAPI_WEBHOOKS: Record<string, OpenAPIV3_1.PathItemObject> = Object.fromEntries(
  ENVELOPES.map(({ type, doc, id }) => [
    type,
    {
      post: {
        operationId: `${pascal(type).charAt(0).toLowerCase()}${pascal(type).slice(1)}Event`,
        tags: ['Webhooks'],
        summary: doc.summary,
        description: `${doc.description} Sent to each enabled webhook whose \`event_types\` name \`${type}\` (or \`*\`).`,
        security: [],
        parameters: HEADERS,
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { $ref: `#/components/schemas/${id}` },
              example: { type, timestamp: EXAMPLE_TIME, data: doc.example },
            },
          },
        },
        responses: {
          '200': {
            description: 'Any 2xx answer, within 10 s, acknowledges the delivery; anything else (or no answer) is retried with backoff',
          },
        },
      },
    },
  ]),
);
