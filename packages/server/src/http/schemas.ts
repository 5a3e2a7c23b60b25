import { type Static, Type } from '@fastify/type-provider-typebox';
import type { ApiKey, QuotaInput } from '../domain.js';
import { iso, isoOrNull, keyStatus } from '../domain.js';
import { ERRORS } from '../errors.js';
import {
  ENFORCED_ELSEWHERE,
  enforcedElsewhere,
  MAX_METADATA_BYTES,
  MAX_METADATA_DEPTH,
  MAX_METADATA_KEY_LENGTH,
  MAX_METADATA_PROPERTIES,
  metadataSizeProblem,
} from '../input-bounds.js';

// Request and response schemas: they drive validation, the TypeScript types and /openapi.json.

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
  { additionalProperties: false, description: 'At most `limit` verifications per `window_seconds`' },
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
  { additionalProperties: false, description: 'Verifications left; optionally refilled each day or month' },
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
  { additionalProperties: false },
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
  { additionalProperties: false, minProperties: 1 },
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
  { additionalProperties: false },
);

export const ListKeysQuery = Type.Object(
  {
    include_inactive: Type.Optional(Type.Boolean({ default: false })),
    user_id: Type.Optional(Id),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const ApiKeyResponse = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  key_prefix: Type.String({ description: 'The prefix and first characters of the key, safe to display' }),
  hash_scheme: Type.String(),
  user_id: Nullable(Type.String()),
  is_admin: Type.Boolean(),
  scopes: Type.Array(Type.String()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  is_active: Type.Boolean(),
  status: Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('revoked'), Type.Literal('expired')]),
  created_at: Type.String({ format: 'date-time' }),
  created_by: Type.String(),
  updated_at: Type.String({ format: 'date-time' }),
  last_used_at: Nullable(Type.String({ format: 'date-time' })),
  expires_at: Nullable(Type.String({ format: 'date-time' })),
  revoked_at: Nullable(Type.String({ format: 'date-time' })),
  rolled_from: Nullable(Type.String()),
  rate_limit: Nullable(Type.Object({ limit: Type.Integer(), window_seconds: Type.Integer() })),
  quota: Nullable(
    Type.Object({
      remaining: Type.Integer(),
      refill: Nullable(Type.Object({ amount: Type.Integer(), interval: Type.String() })),
      last_refill_at: Nullable(Type.String({ format: 'date-time' })),
    }),
  ),
});
export type ApiKeyResponse = Static<typeof ApiKeyResponse>;

export const CreatedKeyResponse = Type.Intersect([
  Type.Object({ key: Type.String({ description: 'The API key. Shown once: store it now, it cannot be retrieved again' }) }),
  ApiKeyResponse,
]);

export const KeyListResponse = Type.Object({
  data: Type.Array(ApiKeyResponse),
  next_cursor: Nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last page' })),
});

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
  { $id: 'Problem', description: 'RFC 9457 problem details' },
);

/**
 * The error responses a `/v1` route may give, by status, for the OpenAPI document: those named, and those any
 * of them can give — 429 (the brute-force guard, after too many failed authentications from an address) and 503
 * (the database, or a JWT's key set, cannot be reached).
 */
export function problems(...statuses: number[]): Record<number, typeof ProblemResponse> {
  return Object.fromEntries([...new Set([...statuses, 429, 503])].sort((a, b) => a - b).map((s) => [s, ProblemResponse]));
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
export function bodyProblems(...statuses: number[]): Record<number, typeof ProblemResponse> {
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
    rate_limit: key.rateLimit && { limit: key.rateLimit.limit, window_seconds: key.rateLimit.windowSeconds },
    quota: key.quota && {
      remaining: key.quota.remaining,
      refill: key.quota.refill,
      last_refill_at: isoOrNull(key.quota.lastRefillAt),
    },
  };
}
