import { type Static, Type } from '@fastify/type-provider-typebox';
import { VERIFY_CODES, type VerifyCode } from '../domain.js';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { bodyProblems, msOrNull } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import type { UsageIngest } from './ingest.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** Most events in one report (the SDK sends at most this many per request). */
export const MAX_USAGE_EVENTS = 500;
// 500 events at the field limits below stay under this; the global body limit is for ordinary requests.
const REPORT_BODY_LIMIT = 2 * 1024 * 1024;

export const UsageEvent = Type.Object(
  {
    key_id: Nullable(
      Type.String({ minLength: 1, maxLength: 64, description: 'The key’s id, as the verify answer gave it; null for an unknown key' }),
    ),
    outcome: Type.Unsafe<VerifyCode>({
      type: 'string',
      enum: [...VERIFY_CODES],
      description: 'What the key came to for this request: a verification code (`VALID`, `NOT_FOUND`, `RATE_LIMITED`, …)',
    }),
    endpoint: Type.Optional(Nullable(Type.String({ maxLength: 2048, description: 'The request path, without the query string' }))),
    method: Type.Optional(Nullable(Type.String({ maxLength: 16 }))),
    status_code: Type.Optional(Nullable(Type.Integer({ minimum: 100, maximum: 599, description: 'The status the host answered' }))),
    ip_address: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    user_agent: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
    response_time_ms: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 86_400_000 }))),
    occurred_at: Type.Optional(Nullable(Type.String({ format: 'date-time', description: 'When the request was seen; default now' }))),
  },
  { $id: 'UsageEvent', additionalProperties: false, description: 'One request a host application saw, and what its key came to' },
);

export const UsageEventsBody = Type.Object(
  { events: Type.Array(UsageEvent, { minItems: 1, maxItems: MAX_USAGE_EVENTS }) },
  {
    additionalProperties: false,
    examples: [
      {
        events: [
          {
            key_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
            outcome: 'VALID',
            endpoint: '/invoices',
            method: 'GET',
            status_code: 200,
            ip_address: '203.0.113.7',
            user_agent: 'curl/8.7.1',
            response_time_ms: 12.5,
            occurred_at: '2025-06-02T13:59:58.120Z',
          },
        ],
      },
    ],
  },
);
export type UsageEventsBody = Static<typeof UsageEventsBody>;

export function usageEventRoutes(app: App, deps: { usageIngest: UsageIngest }): void {
  app.post(
    '/v1/usage/events',
    {
      bodyLimit: REPORT_BODY_LIMIT,
      schema: {
        operationId: 'reportUsageEvents',
        tags: ['Usage and analytics'],
        summary: 'Report requests seen by a host application',
        description: `For the SDK middleware and the gateway: one usage row per request they saw (endpoint, method, status, IP, user agent, response time, outcome), in batches of up to ${MAX_USAGE_EVENTS}. Rows are written in batches off the request path; 202 means taken, not yet written (a full buffer drops rows and counts them in \`/metrics\`). The caller needs an admin key or \`keyward:verify\`.`,
        security: SECURED,
        body: UsageEventsBody,
        response: {
          202: Type.Object(
            { accepted: Type.Integer({ description: 'How many events were taken' }) },
            { description: 'Taken, to be written shortly', examples: [{ accepted: 1 }] },
          ),
          ...bodyProblems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const accepted = unwrap(
        deps.usageIngest.report(
          callerOf(request),
          request.body.events.map((e) => ({
            keyId: e.key_id,
            outcome: e.outcome,
            endpoint: e.endpoint,
            method: e.method,
            statusCode: e.status_code,
            ipAddress: e.ip_address,
            userAgent: e.user_agent,
            responseTimeMs: e.response_time_ms,
            occurredAt: msOrNull(e.occurred_at),
          })),
        ),
      );
      return reply.code(202).send(accepted);
    },
  );
}
