import { type Static, type TSchema, type TUnsafe, Type } from '@fastify/type-provider-typebox';
import type { ApiKey, QuotaInput } from '../domain.js';
import { iso, isoOrNull, keyStatus } from '../domain.js';
import { ERRORS } from '../errors.js';
import {
  ENFORCED_ELSEWHERE,
  enforcedElsewhere,
  MAX_KEY_SEARCH_LENGTH,
  MAX_METADATA_BYTES,
  MAX_METADATA_DEPTH,
  MAX_METADATA_KEY_LENGTH,
  MAX_METADATA_PROPERTIES,
  metadataSizeProblem,
} from '../input-bounds.js';

// Request and response schemas: they drive validation, the TypeScript types and /openapi.json.
//
// A schema with an `$id` is a named component of the OpenAPI document (`#/components/schemas/<$id>`): the app
// registers it with `addSchema` (see `SHARED_SCHEMAS` in app.ts). A response names it with `ref()`; a request
// body keeps it inline (the TypeBox validator resolves no `$ref`), and the document still refers to it by name,
// since @fastify/swagger replaces an inline copy of a registered `$id` with a reference.

/**
 * A reference to the named schema `schema` (registered with `addSchema`), typed as that schema. `description`
 * becomes the response's description and `examples` its example in the OpenAPI document.
 */
export function ref<T extends TSchema>(schema: T, options: { description?: string; examples?: unknown[] } = {}): TUnsafe<Static<T>> {
  const id = (schema as { $id?: unknown }).$id;
  if (typeof id !== 'string') throw new Error('ref() needs a schema with an $id');
  return Type.Unsafe<Static<T>>({ $ref: id, ...options });
}

const Iso = (description: string) => Type.String({ format: 'date-time', description });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const Id = Type.String({ minLength: 1, maxLength: 64, description: 'Resource id (UUIDv7)' });
export const IdParams = Type.Object({ id: Id }, { additionalProperties: false });

export const Scope = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9_.:*/-]+$',
  description: 'A scope such as `inventory:read`; `inventory:*` and `*` are wildcards',
});
export const Scopes = Type.Array(Scope, { maxItems: 100 });
// A refused metadata key is refused at its own path (`body.metadata.rate_limit`), with where the setting lives.
const refusedMetadataKeys = Object.fromEntries(
  Object.entries(ENFORCED_ELSEWHERE).map(([name, setting]) => [
    name,
    Type.Refine(
      Type.Unknown({ description: `Refused: set ${setting} instead` }),
      () => false,
      () => enforcedElsewhere(setting),
    ),
  ]),
);
export const Metadata = Type.Refine(
  Type.Record(Type.String(), Type.Unknown(), {
    maxProperties: MAX_METADATA_PROPERTIES,
    // The key schema of a Record does not reach the JSON Schema (it becomes `patternProperties`): say it here.
    propertyNames: { maxLength: MAX_METADATA_KEY_LENGTH },
    properties: refusedMetadataKeys,
    $id: 'Metadata',
    examples: [{ plan: 'pro', team: 'billing' }],
    description: `Free-form JSON object stored with the key and shown with it, never enforced (never a secret): at most ${MAX_METADATA_PROPERTIES} properties with names of at most ${MAX_METADATA_KEY_LENGTH} characters, ${MAX_METADATA_DEPTH} levels of nested objects and arrays (the object itself is level 1) and ${MAX_METADATA_BYTES} bytes as UTF-8 JSON. \`rate_limit\` and \`quota\` are refused here: they are top-level fields.`,
  }),
  (value) => metadataSizeProblem(value) === null,
  (value) => metadataSizeProblem(value) ?? 'is not valid',
);
export const RateLimitBody = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000 }),
    window_seconds: Type.Integer({ minimum: 1, maximum: 31_536_000 }),
  },
  {
    $id: 'RateLimit',
    additionalProperties: false,
    description: 'At most `limit` verifications per `window_seconds`',
    examples: [{ limit: 100, window_seconds: 60 }],
  },
);
export const QuotaBody = Type.Object(
  {
    remaining: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    refill: Type.Optional(
      Nullable(
        Type.Object(
          {
            amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
            interval: Type.Union([Type.Literal('day'), Type.Literal('month')]),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  {
    $id: 'QuotaInput',
    additionalProperties: false,
    description: 'Verifications left; optionally refilled each day or month',
    examples: [{ remaining: 10000, refill: { amount: 10000, interval: 'month' } }],
  },
);

/** A key's quota as shown: what is left, the refill, and when it last refilled. */
export const QuotaResponse = Type.Object(
  {
    remaining: Type.Integer({ description: 'Verifications left' }),
    refill: Nullable(
      Type.Object({
        amount: Type.Integer({ description: 'What `remaining` is set to at each refill' }),
        interval: Type.Union([Type.Literal('day'), Type.Literal('month')]),
      }),
    ),
    last_refill_at: Nullable(Type.String({ format: 'date-time' })),
  },
  { $id: 'Quota', description: 'The key’s quota: verifications left, refilled each day or month when `refill` is set' },
);

export const Name = Type.String({ minLength: 1, maxLength: 200 });
export const Description = Type.String({ maxLength: 2000 });

export const CreateKeyBody = Type.Object(
  {
    name: Type.Optional(Name),
    description: Type.Optional(Nullable(Description)),
    is_admin: Type.Optional(Type.Boolean()),
    scopes: Type.Optional(Scopes),
    expires_at: Type.Optional(Nullable(Iso('When the key stops working; must be in the future'))),
    metadata: Type.Optional(Metadata),
    user_id: Type.Optional(Nullable(Id)),
    prefix: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 20,
        pattern: '^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*$',
        description: 'Key prefix, e.g. `sk_live`',
      }),
    ),
    rate_limit: Type.Optional(Nullable(RateLimitBody)),
    quota: Type.Optional(Nullable(QuotaBody)),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: 'Billing service',
        description: 'Reads invoices for the billing dashboard',
        scopes: ['invoices:read'],
        metadata: { team: 'billing' },
        rate_limit: { limit: 100, window_seconds: 60 },
        quota: { remaining: 10000, refill: { amount: 10000, interval: 'month' } },
      },
    ],
  },
);
export type CreateKeyBody = Static<typeof CreateKeyBody>;

export const UpdateKeyBody = Type.Object(
  {
    name: Type.Optional(Name),
    description: Type.Optional(Nullable(Description)),
    scopes: Type.Optional(Scopes),
    metadata: Type.Optional(Metadata),
    expires_at: Type.Optional(Nullable(Iso('When the key stops working; null for never'))),
    rate_limit: Type.Optional(Nullable(RateLimitBody)),
    quota: Type.Optional(Nullable(QuotaBody)),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ scopes: ['invoices:read', 'invoices:write'], rate_limit: { limit: 500, window_seconds: 60 } }],
  },
);
export type UpdateKeyBody = Static<typeof UpdateKeyBody>;

export const RollKeyBody = Type.Object(
  {
    grace_period_seconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 2_592_000,
        default: 0,
        description: 'How long the old key keeps working, in seconds (at most 30 days; default 0: it stops at once)',
      }),
    ),
  },
  { additionalProperties: false, examples: [{ grace_period_seconds: 3600 }] },
);

/** `q` of the key lists: a search by name, display prefix or id. */
export const KeySearch = Type.String({
  minLength: 1,
  maxLength: MAX_KEY_SEARCH_LENGTH,
  description: 'Only keys whose name or display prefix (`key_prefix`) contains this text, in any case, or whose id is exactly it',
  examples: ['billing'],
});

/** What the key lists' descriptions say of `q`. */
export const KEY_SEARCH_DOC =
  '`q` searches: `?q=billing` finds keys named `Billing service` or `old-billing`, `?q=kw_3xYk` a display prefix, a full id that one key; `%` and `_` are matched literally. It combines with the other filters and with `cursor`.';

export const ListKeysQuery = Type.Object(
  {
    q: Type.Optional(KeySearch),
    include_inactive: Type.Optional(Type.Boolean({ default: false })),
    user_id: Type.Optional(Id),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

/** An example key, as the API shows it (the examples of the OpenAPI document). */
export const API_KEY_EXAMPLE = {
  id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  name: 'Billing service',
  description: 'Reads invoices for the billing dashboard',
  key_prefix: 'kw_3xYkAb12',
  hash_scheme: 'sha256',
  user_id: null,
  is_admin: false,
  scopes: ['invoices:read'],
  metadata: { team: 'billing' },
  is_active: true,
  status: 'active',
  created_at: '2025-06-01T09:30:00.000Z',
  created_by: '0197a4d0-11aa-7c2e-8d3f-4b5a6c7d8e9f',
  updated_at: '2025-06-01T09:30:00.000Z',
  last_used_at: '2025-06-02T14:05:12.345Z',
  expires_at: null,
  revoked_at: null,
  rolled_from: null,
  lineage_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  rate_limit: { limit: 100, window_seconds: 60 },
  quota: { remaining: 9876, refill: { amount: 10000, interval: 'month' }, last_refill_at: '2025-06-01T00:00:00.000Z' },
} as const;

/** An example of a key as created or rolled: the record, and the key itself, shown once. */
export const CREATED_KEY_EXAMPLE = { key: 'kw_3xYkAb12Qm9rT4vW8zL2pN6sD1fH5jK7', ...API_KEY_EXAMPLE } as const;

export const ApiKeyResponse = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    description: Nullable(Type.String()),
    key_prefix: Type.String({ description: 'The prefix and first characters of the key, safe to display' }),
    hash_scheme: Type.String(),
    user_id: Nullable(Type.String()),
    is_admin: Type.Boolean(),
    scopes: Type.Array(Type.String()),
    metadata: ref(Metadata),
    is_active: Type.Boolean(),
    status: Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('revoked'), Type.Literal('expired')]),
    created_at: Type.String({ format: 'date-time' }),
    created_by: Type.String(),
    updated_at: Type.String({ format: 'date-time' }),
    last_used_at: Nullable(Type.String({ format: 'date-time' })),
    expires_at: Nullable(Type.String({ format: 'date-time' })),
    revoked_at: Nullable(Type.String({ format: 'date-time' })),
    rolled_from: Nullable(Type.String()),
    lineage_id: Type.String({
      description:
        'The id of the first key of this key’s roll lineage: its own `id` until it is rolled; a roll keeps it. Own resources by it, not by the key’s id or hash, which a roll changes',
    }),
    rate_limit: Nullable(ref(RateLimitBody)),
    quota: Nullable(ref(QuotaResponse)),
  },
  { $id: 'ApiKey', description: 'An API key: every stored field but its hash', examples: [API_KEY_EXAMPLE] },
);
export type ApiKeyResponse = Static<typeof ApiKeyResponse>;

export const CreatedKeyResponse = Type.Intersect(
  [
    Type.Object({ key: Type.String({ description: 'The API key. Shown once: store it now, it cannot be retrieved again' }) }),
    ref(ApiKeyResponse),
  ],
  { $id: 'CreatedKey', description: 'A key just created or rolled: its record, and the key itself, shown once' },
);

/** `next_cursor` of every list page. */
export const NextCursor = Nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last page' }));

export const KeyListResponse = Type.Object(
  { data: Type.Array(ref(ApiKeyResponse)), next_cursor: NextCursor },
  { $id: 'ApiKeyPage', description: 'A page of API keys, newest first' },
);

export const ProblemResponse = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    // A string with the catalogue's codes as its `enum` (documentation): serializing never checks it.
    code: Type.String({ description: 'Stable error code, one of the catalogue (`errors.ts`)', enum: Object.keys(ERRORS) }),
    detail: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    request_id: Type.Optional(
      Type.String({ description: 'This request’s id, also sent as `X-Request-Id`: quote it when reporting a failed request' }),
    ),
    key_id: Type.Optional(
      Type.String({ description: 'IDEMPOTENCY_KEY_REUSED: the key created by the first request; KEY_WAS_ROLLED: the live replacement' }),
    ),
    errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
  },
  {
    $id: 'Problem',
    description: 'RFC 9457 problem details',
    examples: [
      {
        type: 'https://keyward.dev/problems/key-not-found',
        title: 'No such API key',
        status: 404,
        code: 'KEY_NOT_FOUND',
        instance: '/v1/api-keys/0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
        request_id: '0197a4d3-0b2c-7d4e-8f5a-6b7c8d9e0f1a',
      },
    ],
  },
);

/** The schemas of the HTTP layer that are named components of the OpenAPI document (registered by the app). */
export const HTTP_SCHEMAS: readonly TSchema[] = [
  ProblemResponse,
  Metadata,
  RateLimitBody,
  QuotaBody,
  QuotaResponse,
  ApiKeyResponse,
  CreatedKeyResponse,
  KeyListResponse,
];

const ProblemRef = ref(ProblemResponse);

/**
 * The error responses a `/v1` route may give, by status, for the OpenAPI document: those named, and those any
 * of them can give — 429 (the brute-force guard, after too many failed authentications from an address) and 503
 * (the database, or a JWT's key set, cannot be reached).
 */
export function problems(...statuses: number[]): Record<number, typeof ProblemRef> {
  return Object.fromEntries([...new Set([...statuses, 429, 503])].sort((a, b) => a - b).map((s) => [s, ProblemRef]));
}

/**
 * Operations whose JSON body may be left out (Fastify's swagger marks every body required): `[method, path]` as
 * the OpenAPI document names them.
 */
export const OPTIONAL_BODIES: readonly (readonly [string, string])[] = [
  ['post', '/v1/api-keys/{id}/roll'],
  ['post', '/v1/users/me/api-keys'],
];

/** {@link problems} for a route that takes a JSON body: also 413 (too large) and 415 (not `application/json`). */
export function bodyProblems(...statuses: number[]): Record<number, typeof ProblemRef> {
  return problems(...statuses, 413, 415);
}

// The routes' one place for how instants are shown (defined beside the domain types, which services share).
export { iso, isoOrNull };
export const msOrNull = (value: string | null | undefined): number | null | undefined =>
  value === undefined || value === null ? value : Date.parse(value);

export function toQuotaInput(quota: Static<typeof QuotaBody> | null | undefined): QuotaInput | null | undefined {
  return quota === undefined || quota === null ? quota : { remaining: quota.remaining, refill: quota.refill ?? null };
}

/** The public view of a key: every stored field but the hash. */
export function apiKeyView(key: ApiKey, now = Date.now()): ApiKeyResponse {
  return {
    id: key.id,
    name: key.name,
    description: key.description,
    key_prefix: key.keyPrefix,
    hash_scheme: key.hashScheme,
    user_id: key.userId,
    is_admin: key.isAdmin,
    scopes: key.scopes,
    metadata: key.metadata,
    is_active: key.isActive,
    status: keyStatus(key, now),
    created_at: iso(key.createdAt),
    created_by: key.createdBy,
    updated_at: iso(key.updatedAt),
    last_used_at: isoOrNull(key.lastUsedAt),
    expires_at: isoOrNull(key.expiresAt),
    revoked_at: isoOrNull(key.revokedAt),
    rolled_from: key.rolledFrom,
    lineage_id: key.lineageId,
    rate_limit: key.rateLimit && { limit: key.rateLimit.limit, window_seconds: key.rateLimit.windowSeconds },
    quota: key.quota && {
      remaining: key.quota.remaining,
      refill: key.quota.refill,
      last_refill_at: isoOrNull(key.quota.lastRefillAt),
    },
  };
}
