import { Type } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import {
  API_KEY_EXAMPLE,
  ApiKeyResponse,
  apiKeyView,
  bodyProblems,
  CREATED_KEY_EXAMPLE,
  CreatedKeyResponse,
  CreateKeyBody,
  IdParams,
  KEY_SEARCH_DOC,
  KeyListResponse,
  ListKeysQuery,
  msOrNull,
  problems,
  RollKeyBody,
  ref,
  toQuotaInput,
  UpdateKeyBody,
} from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import type { IdempotentRequest } from './idempotency.js';
import type { IssueResult, KeyService } from './service.js';

const tags = ['API keys'];

/** The `Idempotency-Key` request header of the routes that create a key (as Stripe's). */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x20-\\x7E]+$',
      description:
        'Makes a retry safe: 1–255 printable ASCII characters, unique per request (a UUID). Within 24 h, a repeat by the same caller creates nothing: 409 `IDEMPOTENCY_KEY_REUSED` with `key_id`, the key created the first time (its plaintext is never kept: roll it if the answer was lost); with a different request, 422 `IDEMPOTENCY_KEY_MISMATCH`. A request refused (4xx) does not use the key up.',
    }),
  ),
});

/** What the route descriptions say of `Idempotency-Key`. */
export const IDEMPOTENCY_DOC =
  'Send an `Idempotency-Key` header to make a retry safe: a repeat within 24 h by the same caller creates nothing and answers 409 `IDEMPOTENCY_KEY_REUSED` with `key_id`, the key the first request created (the plaintext is never kept, so it cannot be sent again: roll that key if the answer was lost); the same idempotency key with a different request answers 422 `IDEMPOTENCY_KEY_MISMATCH`. Of concurrent repeats exactly one creates a key. A refused request (4xx) does not use the idempotency key up.';

/** The idempotency key of a request and what it asked (method, route, parameters, body; no body counts as `{}`). */
export function idempotencyOf(request: FastifyRequest): { idempotency?: IdempotentRequest } {
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string') return {};
  const route = request.routeOptions.url ?? request.url;
  return { idempotency: { key, request: { method: request.method, route, params: request.params, body: request.body ?? {} } } };
}

/** Sends a created or rolled key: 201, once, never cached. */
export function sendIssued(reply: FastifyReply, result: IssueResult): FastifyReply {
  const issued = unwrap(result);
  reply.header('cache-control', 'no-store');
  return reply.code(201).send({ key: issued.key, ...apiKeyView(issued.record) });
}

/** The responses of a route that issues a key: 422 for an idempotency key reused with another request; 409 may name a key. */
export function issuedResponses(...statuses: number[]) {
  const created = ref(CreatedKeyResponse, { description: 'The key, shown once', examples: [CREATED_KEY_EXAMPLE] });
  return { 201: created, ...bodyProblems(...statuses, 409, 422) };
}

/** A key as an answer: its record, with an example. */
const apiKey = (description: string, example: object = API_KEY_EXAMPLE) => ref(ApiKeyResponse, { description, examples: [example] });

export function apiKeyRoutes(app: App, deps: { keys: KeyService }): void {
  const { keys } = deps;

  app.post(
    '/v1/api-keys',
    {
      schema: {
        operationId: 'createApiKey',
        tags,
        summary: 'Create an API key',
        description: `Creates a key and returns it once, in \`key\`. \`name\` is optional: by default \`Key\` and the key's display prefix (\`Key kw_3xYkAb12\`). Only an admin may create admin keys; a key holding \`keyward:keys:write\` may grant only scopes it holds, and on a user-owned key only for that user. ${IDEMPOTENCY_DOC}`,
        security: SECURED,
        headers: IdempotencyHeaders,
        body: CreateKeyBody,
        response: issuedResponses(400, 401, 403),
      },
    },
    async (request, reply) => {
      const b = request.body;
      const result = await keys.create(
        callerOf(request),
        {
          ...(b.name === undefined ? {} : { name: b.name }),
          description: b.description,
          isAdmin: b.is_admin,
          scopes: b.scopes,
          expiresAt: msOrNull(b.expires_at),
          metadata: b.metadata,
          userId: b.user_id,
          prefix: b.prefix,
          rateLimit: b.rate_limit && { limit: b.rate_limit.limit, windowSeconds: b.rate_limit.window_seconds },
          quota: toQuotaInput(b.quota),
        },
        idempotencyOf(request),
      );
      return sendIssued(reply, result);
    },
  );

  app.get(
    '/v1/api-keys',
    {
      schema: {
        operationId: 'listApiKeys',
        tags,
        summary: 'List API keys',
        description: `Newest first. Deactivated and revoked keys are left out unless \`include_inactive=true\`. ${KEY_SEARCH_DOC}`,
        security: SECURED,
        querystring: ListKeysQuery,
        response: {
          200: ref(KeyListResponse, { description: 'A page of keys', examples: [{ data: [API_KEY_EXAMPLE], next_cursor: null }] }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = unwrap(
        await keys.list(callerOf(request), {
          includeInactive: q.include_inactive ?? false,
          ...(q.q === undefined ? {} : { q: q.q }),
          ...(q.user_id === undefined ? {} : { userId: q.user_id }),
          ...(q.limit === undefined ? {} : { limit: q.limit }),
          ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
        }),
      );
      return { data: page.items.map((k) => apiKeyView(k)), next_cursor: page.nextCursor };
    },
  );

  app.get(
    '/v1/api-keys/verify/current',
    {
      schema: {
        operationId: 'getCurrentApiKey',
        tags,
        summary: 'The calling key',
        description: 'Any valid key may read its own record (never its hash).',
        security: SECURED,
        response: { 200: apiKey('The calling key'), ...problems(401, 403) },
      },
    },
    async (request) => {
      const { principal } = callerOf(request);
      if (principal.kind !== 'key')
        return unwrap({ ok: false, code: 'FORBIDDEN', detail: 'this route reads the calling API key; sign in with one' });
      return apiKeyView(principal.key);
    },
  );

  app.get(
    '/v1/api-keys/:id',
    {
      schema: {
        operationId: 'getApiKey',
        tags,
        summary: 'Get an API key',
        description: 'Every stored field but the hash; the key itself is shown only when it is created or rolled.',
        security: SECURED,
        params: IdParams,
        response: { 200: apiKey('The key'), ...problems(401, 403, 404) },
      },
    },
    async (request) => apiKeyView(unwrap(await keys.get(callerOf(request), request.params.id))),
  );

  app.patch(
    '/v1/api-keys/:id',
    {
      schema: {
        operationId: 'updateApiKey',
        tags,
        summary: 'Update an API key',
        description:
          'Changes name, description, scopes, metadata, expiry, rate limit or quota. `null` clears an optional field. Giving a key a longer life, for a caller other than an admin: a key that was rolled cannot be extended (409 `KEY_WAS_ROLLED`: its replacement is the live key), and a user’s expired key brought back counts again, so it must fit the tier’s key limit (400 `KEY_LIMIT_REACHED`).',
        security: SECURED,
        params: IdParams,
        body: UpdateKeyBody,
        response: {
          200: apiKey('The key as changed', {
            ...API_KEY_EXAMPLE,
            scopes: ['invoices:read', 'invoices:write'],
            rate_limit: { limit: 500, window_seconds: 60 },
            updated_at: '2025-06-03T08:00:00.000Z',
          }),
          ...bodyProblems(400, 401, 403, 404, 409),
        },
      },
    },
    async (request) => {
      const b = request.body;
      const updated = unwrap(
        await keys.update(callerOf(request), request.params.id, {
          ...(b.name === undefined ? {} : { name: b.name }),
          ...(b.description === undefined ? {} : { description: b.description }),
          ...(b.scopes === undefined ? {} : { scopes: b.scopes }),
          ...(b.metadata === undefined ? {} : { metadata: b.metadata }),
          ...(b.expires_at === undefined ? {} : { expiresAt: msOrNull(b.expires_at) ?? null }),
          ...(b.rate_limit === undefined
            ? {}
            : { rateLimit: b.rate_limit && { limit: b.rate_limit.limit, windowSeconds: b.rate_limit.window_seconds } }),
          ...(b.quota === undefined ? {} : { quota: toQuotaInput(b.quota) ?? null }),
        }),
      );
      return apiKeyView(updated);
    },
  );

  const updated = '2025-06-03T08:00:00.000Z';
  const transitions = [
    [
      'deactivate',
      'Deactivate an API key',
      'The key stops verifying (`DISABLED`) until activated again.',
      { ...API_KEY_EXAMPLE, is_active: false, status: 'inactive', updated_at: updated },
    ],
    ['activate', 'Activate an API key', 'Re-enables a deactivated key. A revoked key cannot be activated (409).', API_KEY_EXAMPLE],
    [
      'revoke',
      'Revoke an API key',
      'Permanent: a revoked key never verifies again and cannot be activated.',
      { ...API_KEY_EXAMPLE, is_active: false, status: 'revoked', revoked_at: updated, updated_at: updated },
    ],
  ] as const;
  for (const [action, summary, description, example] of transitions) {
    app.post(
      `/v1/api-keys/:id/${action}`,
      {
        schema: {
          operationId: `${action}ApiKey`,
          tags,
          summary,
          description,
          security: SECURED,
          params: IdParams,
          response: { 200: apiKey('The key as changed', example), ...problems(401, 403, 404, 409) },
        },
      },
      async (request) => apiKeyView(unwrap(await keys[action](callerOf(request), request.params.id))),
    );
  }

  app.post(
    '/v1/api-keys/:id/roll',
    {
      schema: {
        operationId: 'rollApiKey',
        tags,
        summary: 'Roll an API key',
        description: `Issues a new key with the same name, description, owner, scopes, metadata, rate limit and quota (\`rolled_from\` names the old key) and returns it once, in \`key\`. The old key keeps working for \`grace_period_seconds\`, then answers \`EXPIRED\`; a key that already expires sooner is not extended. The quota moves to the new key (the old one shows 0), and during its grace the old key spends that quota and counts against the new key’s rate limit: it keeps working, and a roll never adds budget. A roll with a grace period holds two live keys, so for a user’s key (unless an admin rolls it) it must fit the tier’s key limit (400 \`KEY_LIMIT_REACHED\`); a roll with grace 0 replaces the key and is always allowed. A revoked or expired key cannot be rolled (409 \`KEY_IS_REVOKED\`, \`KEY_IS_EXPIRED\`), nor a key rolled already, in its grace period: the new key would die with it (409 \`KEY_WAS_ROLLED\`, with \`key_id\` its live replacement: roll that one). Rolls of one lineage run one after another, and one that keeps losing that race answers 409 \`KEY_IS_CHANGING\`. ${IDEMPOTENCY_DOC}`,
        security: SECURED,
        params: IdParams,
        headers: IdempotencyHeaders,
        body: RollKeyBody,
        response: issuedResponses(400, 401, 403, 404),
      },
      // The body is optional: a bare POST rolls with no grace period.
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request, reply) => {
      const result = await keys.roll(
        callerOf(request),
        request.params.id,
        { gracePeriodSeconds: request.body.grace_period_seconds ?? 0 },
        idempotencyOf(request),
      );
      return sendIssued(reply, result);
    },
  );

  app.delete(
    '/v1/api-keys/:id',
    {
      schema: {
        operationId: 'deleteApiKey',
        tags,
        summary: 'Delete an API key',
        description:
          'The key stops working at once, on every instance, and its record is removed; the audit log keeps a `key.delete` entry. To keep the record, revoke the key instead.',
        security: SECURED,
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      unwrap(await keys.remove(callerOf(request), request.params.id));
      return reply.code(204).send(null);
    },
  );
}
