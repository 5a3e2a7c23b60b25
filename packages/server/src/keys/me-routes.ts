import { Type } from '@fastify/type-provider-typebox';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import {
  API_KEY_EXAMPLE,
  apiKeyView,
  Description,
  IdParams,
  KEY_SEARCH_DOC,
  KeyListResponse,
  KeySearch,
  Metadata,
  msOrNull,
  Name,
  problems,
  ref,
  Scopes,
} from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { user, userView } from '../users/routes.js';
import { IDEMPOTENCY_DOC, IdempotencyHeaders, idempotencyOf, issuedResponses, sendIssued } from './routes.js';
import type { SelfService } from './self-service.js';

const tags = ['Self-service'];

const WHO =
  'Call with a user JWT, or with a key that belongs to the user and holds `keyward:keys:write` (`keyward:keys:read` suffices for reading). Admin keys and keys without an owner get 403.';

// No is_admin, user_id, rate_limit or quota: those are the operator's to set, not the user's.
const SelfCreateKeyBody = Type.Object(
  {
    name: Type.Optional(Name),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    scopes: Type.Optional(Scopes),
    expires_at: Type.Optional(Type.Union([Type.String({ format: 'date-time', description: 'Must be in the future' }), Type.Null()])),
    metadata: Type.Optional(Metadata),
  },
  {
    additionalProperties: false,
    examples: [{ name: 'CI deploys', scopes: ['deployments:write'], expires_at: '2026-01-01T00:00:00.000Z' }],
  },
);

const SelfListKeysQuery = Type.Object(
  {
    q: Type.Optional(KeySearch),
    include_inactive: Type.Optional(Type.Boolean({ default: false })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

/** `/v1/users/me…`: a signed-in user (or their own key) manages their own keys. */
export function meRoutes(app: App, deps: { selfService: SelfService }): void {
  const { selfService } = deps;

  app.get(
    '/v1/users/me',
    {
      schema: {
        operationId: 'getCurrentUser',
        tags,
        summary: 'The signed-in user',
        description: WHO,
        security: SECURED,
        response: { 200: user('The signed-in user'), ...problems(401, 403) },
      },
    },
    async (request) => userView(unwrap(await selfService.me(callerOf(request)))),
  );

  app.post(
    '/v1/users/me/api-keys',
    {
      schema: {
        operationId: 'createMyApiKey',
        tags,
        summary: 'Create one of my API keys',
        description: `Returns the key once, in \`key\`. The body is optional: every field has a default, and \`name\` is \`Key\` and the key's display prefix (\`Key kw_3xYkAb12\`). The key is never admin, may hold only scopes the user's tier allows (by default any scope outside \`keyward:\`, plus \`keyward:keys:read\`/\`:write\`), and counts against the tier's key limit (400 \`KEY_LIMIT_REACHED\`). ${IDEMPOTENCY_DOC} ${WHO}`,
        security: SECURED,
        headers: IdempotencyHeaders,
        body: SelfCreateKeyBody,
        response: issuedResponses(400, 401, 403),
      },
      // The body is optional (a bare POST creates a key with every default), as for a roll.
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request, reply) => {
      const b = request.body;
      const result = await selfService.createKey(
        callerOf(request),
        {
          ...(b.name === undefined ? {} : { name: b.name }),
          ...(b.description === undefined ? {} : { description: b.description }),
          ...(b.scopes === undefined ? {} : { scopes: b.scopes }),
          ...(b.expires_at === undefined ? {} : { expiresAt: msOrNull(b.expires_at) ?? null }),
          ...(b.metadata === undefined ? {} : { metadata: b.metadata }),
        },
        idempotencyOf(request),
      );
      return sendIssued(reply, result);
    },
  );

  app.get(
    '/v1/users/me/api-keys',
    {
      schema: {
        operationId: 'listMyApiKeys',
        tags,
        summary: 'List my API keys',
        description: `Newest first; never a key or its hash. Deactivated and revoked keys only with \`include_inactive=true\`. ${KEY_SEARCH_DOC} ${WHO}`,
        security: SECURED,
        querystring: SelfListKeysQuery,
        response: {
          200: ref(KeyListResponse, {
            description: 'A page of my keys',
            examples: [{ data: [{ ...API_KEY_EXAMPLE, user_id: '0197a4c8-2f3e-7a1b-9c4d-5e6f7a8b9c0d' }], next_cursor: null }],
          }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = unwrap(
        await selfService.listKeys(callerOf(request), {
          includeInactive: q.include_inactive ?? false,
          ...(q.q === undefined ? {} : { q: q.q }),
          ...(q.limit === undefined ? {} : { limit: q.limit }),
          ...(q.cursor === undefined ? {} : { cursor: q.cursor }),
        }),
      );
      return { data: page.items.map((k) => apiKeyView(k)), next_cursor: page.nextCursor };
    },
  );

  app.delete(
    '/v1/users/me/api-keys/:id',
    {
      schema: {
        operationId: 'deleteMyApiKey',
        tags,
        summary: 'Delete one of my API keys',
        description: `The key stops working at once. 404 for an unknown id, 403 for another user's key. ${WHO}`,
        security: SECURED,
        params: IdParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      unwrap(await selfService.deleteKey(callerOf(request), request.params.id));
      return reply.code(204).send(null);
    },
  );
}
