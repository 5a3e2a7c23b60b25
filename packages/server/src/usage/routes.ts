import { Type } from '@fastify/type-provider-typebox';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { IdParams, iso, msOrNull, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { MAX_BUCKETS, MAX_GROUPS, type UsageAnalytics, type UsageCounts } from './analytics.js';
import { UsageEventPage, UsageRow } from './events-routes.js';
import { MAX_GROUP_SCAN_ROWS } from './repository.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

const From = Type.Optional(Type.String({ format: 'date-time', description: 'Start of the range (inclusive)' }));
const To = Type.Optional(
  Type.String({ format: 'date-time', description: 'End of the range (exclusive); default the end of the current minute' }),
);

/** `group_by` of the usage counts: the outcome (the default), or another dimension besides it. */
export const GroupByParam = Type.Optional(
  Type.Union([Type.Literal('outcome'), Type.Literal('endpoint'), Type.Literal('status_class'), Type.Literal('tag'), Type.Literal('key')], {
    default: 'outcome',
    description: `Break the counts down by \`outcome\` (the default: \`outcomes\` only), or besides it by \`endpoint\` (the request path), \`status_class\` (\`2xx\`, \`4xx\`, …), \`tag\` (a row with several tags counts for each) or \`key\` (the key id), in \`groups\`. Up to ${MAX_GROUPS} groups, the largest over the range; the rest count in \`total\` only; \`""\` counts the rows with none. Endpoint, status class and tag are counted from the newest ${MAX_GROUP_SCAN_ROWS.toLocaleString('en-US')} rows of the range at most; older rows count in \`total\` and \`outcomes\` only`,
  }),
);

/** Counts by the `group_by` dimension (absent when grouping by outcome). */
export const Groups = Type.Optional(
  Type.Record(Type.String(), Type.Integer(), {
    description: 'With `group_by` other than `outcome`: counts by that dimension (`""`: rows with none); groups with no rows are left out',
  }),
);

/** The `group_by` echoed in a grouped answer (absent when grouping by outcome). */
export const GroupByEcho = Type.Optional(
  Type.Union([Type.Literal('endpoint'), Type.Literal('status_class'), Type.Literal('tag'), Type.Literal('key')], {
    description: 'The dimension of `groups`; absent when counting by outcome only',
  }),
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
    group_by: GroupByParam,
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
    group_by: GroupByEcho,
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    buckets: Type.Array(
      Type.Object({ start: Type.String({ format: 'date-time' }), total: Type.Integer(), outcomes: Outcomes, groups: Groups }),
      {
        description: 'Every bucket in the range, oldest first, including empty ones',
      },
    ),
    totals: Type.Object({ total: Type.Integer(), outcomes: Outcomes, groups: Groups }),
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
export const USAGE_SCHEMAS = [KeyUsageResponse, VerificationAnalyticsResponse, UsageRow, UsageEventPage];

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

/** A bucket's or the range's counts: `groups` only when grouped by more than the outcome. */
export const counts = (c: UsageCounts) =>
  c.groups === undefined ? { total: c.total, outcomes: c.outcomes } : { total: c.total, outcomes: c.outcomes, groups: c.groups };

export function usageRoutes(app: App, deps: { usageAnalytics: UsageAnalytics }): void {
  app.get(
    '/v1/api-keys/:id/usage',
    {
      schema: {
        operationId: 'getApiKeyUsage',
        tags: ['Usage and analytics'],
        summary: "A key's usage over time",
        description:
          'Verifications and requests recorded for the key in [`from`, `to`), counted by outcome per minute, hour or day, and with `group_by` by endpoint, status class, tag or key besides. Anyone who may read the key may read its usage. Rows are written in batches, so the last second or so may not be counted yet.',
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
          groupBy: q.group_by,
        }),
      );
      return {
        key_id: usage.keyId,
        granularity: usage.granularity,
        ...(usage.groupBy === undefined ? {} : { group_by: usage.groupBy }),
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
