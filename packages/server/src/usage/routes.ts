import { Type } from '@fastify/type-provider-typebox';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { IdParams, iso, msOrNull, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { MAX_BUCKETS, type UsageAnalytics, type UsageCounts } from './analytics.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const From = Type.Optional(Type.String({ format: 'date-time', description: 'Start of the range (inclusive)' }));
const To = Type.Optional(
  Type.String({ format: 'date-time', description: 'End of the range (exclusive); default the end of the current minute' }),
);

export const KeyUsageQuery = Type.Object(
  {
    from: From,
    to: To,
    granularity: Type.Optional(
      Type.Union([Type.Literal('minute'), Type.Literal('hour'), Type.Literal('day')], {
        default: 'hour',
        description: `Bucket size (UTC). Without \`from\`, the range is the last hour, day or 30 days respectively. A range may hold at most ${MAX_BUCKETS.toLocaleString('en-US')} buckets (400 \`INVALID_REQUEST\` otherwise: use a coarser granularity)`,
      }),
    ),
  },
  { additionalProperties: false },
);

export const AnalyticsQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Start of the range (inclusive); default 24 hours before `to`' })),
    to: To,
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'How many top keys' })),
  },
  { additionalProperties: false },
);

const Outcomes = Type.Record(Type.String(), Type.Integer(), {
  description: 'Counts by verification code (`VALID`, `RATE_LIMITED`, `USAGE_EXCEEDED`, …); codes with no rows are left out',
});

export const KeyUsageResponse = Type.Object(
  {
    key_id: Type.String(),
    granularity: Type.String(),
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    buckets: Type.Array(Type.Object({ start: Type.String({ format: 'date-time' }), total: Type.Integer(), outcomes: Outcomes }), {
      description: 'Every bucket in the range, oldest first, including empty ones',
    }),
    totals: Type.Object({ total: Type.Integer(), outcomes: Outcomes }),
  },
  { $id: 'KeyUsage', description: 'A key’s verifications and requests over time, by outcome' },
);

export const VerificationAnalyticsResponse = Type.Object(
  {
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    totals: Type.Object({ total: Type.Integer(), outcomes: Outcomes }),
    top_keys: Type.Array(
      Type.Object({
        key_id: Type.String(),
        name: Nullable(Type.String({ description: 'Null when the key was deleted since' })),
        key_prefix: Nullable(Type.String()),
        total: Type.Integer(),
        outcomes: Outcomes,
      }),
      { description: 'The keys with the most verifications in the range, most first' },
    ),
  },
  { $id: 'VerificationAnalytics', description: 'All verifications in a range: totals by outcome and the busiest keys' },
);

/** The usage wing's named components of the OpenAPI document (registered by the app). */
export const USAGE_SCHEMAS = [KeyUsageResponse, VerificationAnalyticsResponse];

const KEY_ID = '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90';
const KEY_USAGE_EXAMPLE = {
  key_id: KEY_ID,
  granularity: 'hour',
  from: '2025-06-02T12:00:00.000Z',
  to: '2025-06-02T14:00:00.000Z',
  buckets: [
    { start: '2025-06-02T12:00:00.000Z', total: 120, outcomes: { VALID: 118, RATE_LIMITED: 2 } },
    { start: '2025-06-02T13:00:00.000Z', total: 95, outcomes: { VALID: 95 } },
  ],
  totals: { total: 215, outcomes: { VALID: 213, RATE_LIMITED: 2 } },
};
const ANALYTICS_EXAMPLE = {
  from: '2025-06-01T14:00:00.000Z',
  to: '2025-06-02T14:00:00.000Z',
  totals: { total: 4210, outcomes: { VALID: 4102, NOT_FOUND: 61, RATE_LIMITED: 47 } },
  top_keys: [
    { key_id: KEY_ID, name: 'Billing service', key_prefix: 'kw_3xYkAb12', total: 2870, outcomes: { VALID: 2823, RATE_LIMITED: 47 } },
  ],
};

const counts = (c: UsageCounts) => ({ total: c.total, outcomes: c.outcomes });

export function usageRoutes(app: App, deps: { usageAnalytics: UsageAnalytics }): void {
  app.get(
    '/v1/api-keys/:id/usage',
    {
      schema: {
        operationId: 'getApiKeyUsage',
        tags: ['Usage and analytics'],
        summary: "A key's usage over time",
        description:
          'Verifications and requests recorded for the key in [`from`, `to`), counted by outcome per minute, hour or day. Anyone who may read the key may read its usage. Rows are written in batches, so the last second or so may not be counted yet.',
        security: SECURED,
        params: IdParams,
        querystring: KeyUsageQuery,
        response: {
          200: ref(KeyUsageResponse, { description: 'The key’s usage, bucket by bucket', examples: [KEY_USAGE_EXAMPLE] }),
          ...problems(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const usage = unwrap(
        await deps.usageAnalytics.keyUsage(callerOf(request), request.params.id, {
          from: msOrNull(q.from) ?? undefined,
          to: msOrNull(q.to) ?? undefined,
          granularity: q.granularity ?? 'hour',
        }),
      );
      return {
        key_id: usage.keyId,
        granularity: usage.granularity,
        from: iso(usage.from),
        to: iso(usage.to),
        buckets: usage.buckets.map((b) => ({ start: iso(b.start), ...counts(b) })),
        totals: counts(usage.totals),
      };
    },
  );

  app.get(
    '/v1/analytics/verifications',
    {
      schema: {
        operationId: 'getVerificationAnalytics',
        tags: ['Usage and analytics'],
        summary: 'Verification analytics',
        description:
          'Admin only. All verifications in [`from`, `to`) (default: the last 24 hours): totals by outcome, unknown keys included, and the busiest keys with their own breakdown.',
        security: SECURED,
        querystring: AnalyticsQuery,
        response: {
          200: ref(VerificationAnalyticsResponse, { description: 'Totals and the busiest keys', examples: [ANALYTICS_EXAMPLE] }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const result = unwrap(
        await deps.usageAnalytics.verifications(callerOf(request), {
          from: msOrNull(q.from) ?? undefined,
          to: msOrNull(q.to) ?? undefined,
          limit: q.limit,
        }),
      );
      return {
        from: iso(result.from),
        to: iso(result.to),
        totals: counts(result.totals),
        top_keys: result.topKeys.map((k) => ({
          key_id: k.keyId,
          name: k.name,
          key_prefix: k.keyPrefix,
          total: k.total,
          outcomes: k.outcomes,
        })),
      };
    },
  );
}
