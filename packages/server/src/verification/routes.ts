import { type Static, Type } from '@fastify/type-provider-typebox';
import { VERIFY_CODES, type VerifyCode } from '../domain.js';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { bodyProblems, iso, ref, Scope } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { Tags } from '../usage/tags.js';
import type { Verification, VerificationResult } from './service.js';
import type { VerifyOutcome } from './verifier.js';

export const VerifyKeyBody = Type.Object(
  {
    key: Type.String({
      description:
        'The API key your service received, exactly as presented. Never stored or logged by Keyward; a malformed key answers `INVALID_FORMAT`.',
    }),
    scopes: Type.Optional(
      Type.Array(Scope, {
        maxItems: 100,
        description: 'Scopes the request needs; the key must hold all of them (a granted `inventory:*` or `*` covers them).',
      }),
    ),
    cost: Type.Optional(
      Type.Number({
        description:
          'Units of the key’s quota this request spends: a non-negative integer up to 2^53−1, default 1 (0 checks without spending). A negative, fractional or larger number is a 400 `INVALID_COST`; a value that is not a number fails validation like any other field (400 `INVALID_REQUEST`).',
        examples: [1],
      }),
    ),
    ratelimit_cost: Type.Optional(
      Type.Integer({
        minimum: 0,
        description:
          'Units of the key’s rate limit this request uses: default 1. 0 checks the limit without using it: an SDK route guard sends it when its route costs more quota than the request’s verification spent (a route the first guard could not see), so a request counts once against the rate limit.',
        examples: [0],
      }),
    ),
    tags: Type.Optional(Tags),
    record_usage: Type.Optional(
      Type.Boolean({
        default: true,
        description:
          '`false`: you report the request this verification is for yourself (`POST /v1/usage/events`, as the SDK middleware does), so this verification writes no usage row and the request counts once. The rate limit, quota and `last_used_at` are spent and updated as usual.',
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [{ key: 'kw_3xYkAb12Qm9rT4vW8zL2pN6sD1fH5jK7', scopes: ['invoices:read'], cost: 1, tags: ['route:/v1/invoices'] }],
  },
);
export type VerifyKeyBody = Static<typeof VerifyKeyBody>;

// Plain `type` lists instead of unions (anyOf), so fast-json-stringify writes the answer without
// running a validator per field: this is the hottest response Keyward sends.
const NullableString = (description: string, format?: 'date-time') =>
  Type.Unsafe<string | null>({ type: ['string', 'null'], description, ...(format ? { format } : {}) });

export const VerifyKeyResponse = Type.Object(
  {
    valid: Type.Boolean({ description: '`true` exactly when `code` is `VALID`' }),
    code: Type.Unsafe<VerifyCode>({
      type: 'string',
      enum: [...VERIFY_CODES],
      description:
        'Why the key is or is not valid. Checks run in this order and the first failure decides: `INVALID_FORMAT` (malformed or bad checksum), `NOT_FOUND`, `REVOKED`, `DISABLED` (deactivated), `EXPIRED`, `INSUFFICIENT_SCOPES`, `RATE_LIMITED`, `USAGE_EXCEEDED` (quota spent).',
    }),
    key_id: Type.Optional(Type.String({ description: 'The key’s id. This and the other key fields are absent when no key was found' })),
    lineage_id: Type.Optional(
      Type.String({
        description:
          'The id of the first key of this key’s roll lineage (its own id until rolled): stable across rolls, unlike `key_id` and the key’s hash. Own resources by it',
      }),
    ),
    name: Type.Optional(Type.String()),
    user_id: Type.Optional(NullableString('The user who owns the key; null for admin and service keys')),
    is_admin: Type.Optional(Type.Boolean()),
    scopes: Type.Optional(Type.Array(Type.String(), { description: 'Scopes the key holds' })),
    metadata: Type.Optional(
      Type.Unsafe<Record<string, unknown>>({
        type: 'object',
        additionalProperties: true,
        description: 'The free-form JSON object stored with the key',
      }),
    ),
    expires_at: Type.Optional(NullableString('When the key stops working; null for never', 'date-time')),
    ratelimit: Type.Optional(
      Type.Object(
        {
          limit: Type.Integer(),
          remaining: Type.Integer(),
          reset: Type.Integer({ description: 'When the current window ends, in unix seconds' }),
          window_seconds: Type.Optional(Type.Integer({ description: 'The length of the window, in seconds' })),
        },
        {
          description:
            'The key’s rate-limit window after this request, when the key has a rate limit. The SDK middleware and the gateway send it to clients as the `RateLimit` and `RateLimit-Policy` headers.',
        },
      ),
    ),
    remaining: Type.Optional(Type.Integer({ description: 'Quota left after this request, when the key has a quota' })),
    quota_reset: Type.Optional(
      Type.Integer({
        description: 'With `USAGE_EXCEEDED`, when a quota that refills next does, in unix seconds (what `Retry-After` can say)',
      }),
    ),
  },
  { $id: 'VerifyResult', description: 'Always 200 for a well-formed request: `valid` and `code` say whether the key may be used' },
);

const VERIFY_RESULT_EXAMPLE = {
  valid: true,
  code: 'VALID',
  key_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  lineage_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  name: 'Billing service',
  user_id: null,
  is_admin: false,
  scopes: ['invoices:read'],
  metadata: { team: 'billing' },
  expires_at: null,
  ratelimit: { limit: 100, remaining: 99, reset: 1748870760, window_seconds: 60 },
  remaining: 9875,
};
export type VerifyKeyResponse = Static<typeof VerifyKeyResponse>;

/** The answer for an outcome: no key fields when no key was found. */
export function verifyView(outcome: VerifyOutcome): VerifyKeyResponse {
  const { key, code } = outcome;
  if (key === null) return { valid: false, code };
  const view: VerifyKeyResponse = {
    valid: code === 'VALID',
    code,
    key_id: key.id,
    lineage_id: key.lineageId,
    name: key.name,
    user_id: key.userId,
    is_admin: key.isAdmin,
    scopes: key.scopes,
    metadata: key.metadata,
    expires_at: key.expiresAt === null ? null : iso(key.expiresAt),
  };
  const { ratelimit } = outcome;
  if (ratelimit !== undefined) {
    view.ratelimit = { limit: ratelimit.limit, remaining: ratelimit.remaining, reset: ratelimit.reset };
    if (ratelimit.windowSeconds !== undefined) view.ratelimit.window_seconds = ratelimit.windowSeconds;
  }
  if (outcome.remaining !== undefined) view.remaining = outcome.remaining;
  if (outcome.quotaReset !== undefined) view.quota_reset = outcome.quotaReset;
  return view;
}

export function verifyRoutes(app: App, deps: { verification: Verification }): void {
  const { verification } = deps;
  app.post(
    '/v1/keys/verify',
    {
      schema: {
        operationId: 'verifyKey',
        tags: ['Verification'],
        summary: 'Verify an API key',
        description:
          'For your services: is this key valid for this request? Checks format and checksum, then the key’s state (revoked, deactivated, expired), the required `scopes`, its rate limit and its quota (spending `cost`). Always answers 200 with `valid` and `code` when the request itself is well-formed. The caller needs an admin key or a key holding `keyward:verify`. Answers come from an in-process cache that every change to a key invalidates at once on every instance. Each verification is recorded as a usage row, with its `tags`, unless `record_usage` is `false`. After too many failed verifications (malformed, unknown, revoked, deactivated or expired keys) from one caller key and address in a minute, that pair gets 429 `RATE_LIMITED` with `Retry-After` (`VERIFY_FAILURES_PER_MINUTE`) for any key this instance holds no record of, such as guesses; keys it has already seen keep verifying, so your end users’ real keys are not blocked by someone else’s bad ones (a real key this instance has not seen yet is refused too until the block ends).',
        security: SECURED,
        body: VerifyKeyBody,
        response: {
          200: ref(VerifyKeyResponse, { description: 'Whether the key may be used, and why', examples: [VERIFY_RESULT_EXAMPLE] }),
          ...bodyProblems(400, 401, 403),
        },
      },
    },
    // Not `async`: a cached key is answered synchronously (no promise, no extra microtask turn).
    (request, reply) => {
      const answer = (result: VerificationResult): VerifyKeyResponse => {
        const outcome = unwrap(result);
        reply.header('cache-control', 'no-store');
        return verifyView(outcome);
      };
      const { key, scopes, cost, ratelimit_cost, tags, record_usage } = request.body;
      const result = verification.verifyFor(
        callerOf(request),
        { key, scopes, cost, rateLimitCost: ratelimit_cost },
        {
          method: request.method,
          userAgent: request.headers['user-agent'] ?? null,
          elapsedMs: () => reply.elapsedTime,
          tags,
          recordUsage: record_usage,
        },
      );
      return result instanceof Promise ? result.then(answer) : answer(result);
    },
  );
}
