import { Type } from '@fastify/type-provider-typebox';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { Id, iso, msOrNull, problems } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { ACTIVITY_SLOTS, MAX_ACTIVITY_KEYS, MAX_BUCKETS, type UsageAnalytics } from './analytics.js';
import { counts, GroupByEcho, GroupByParam, Groups } from './routes.js';

// Usage over time for many keys at once: the dashboard's overview chart and the keys table's sparklines.

const TAG = 'Usage and analytics';

const Outcomes = Type.Record(Type.String(), Type.Integer(), {
  description: 'Counts by verification code (`VALID`, `RATE_LIMITED`, `USAGE_EXCEEDED`, …); codes with no rows are left out',
  examples: [{ VALID: 1180, RATE_LIMITED: 42, INSUFFICIENT_SCOPES: 3 }],
});

export const VerificationSeriesQuery = Type.Object(
  {
    from: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'Start of the range (inclusive); default one hour, day or 30 days before `to`, by `granularity`',
      }),
    ),
    to: Type.Optional(
      Type.String({ format: 'date-time', description: 'End of the range (exclusive); default the end of the current minute' }),
    ),
    granularity: Type.Optional(
      Type.Union([Type.Literal('minute'), Type.Literal('hour'), Type.Literal('day')], {
        default: 'hour',
        description: `Bucket size (UTC). A range may hold at most ${MAX_BUCKETS.toLocaleString('en-US')} buckets (400 \`INVALID_REQUEST\` naming \`granularity\` otherwise: use a coarser one)`,
      }),
    ),
    key_id: Type.Optional({ ...Id, description: 'Count only this key (as `GET /v1/api-keys/{id}` reads it: 404 unknown, 403 not yours)' }),
    group_by: GroupByParam,
  },
  { additionalProperties: false },
);

const SERIES_EXAMPLE = {
  key_id: null,
  granularity: 'hour',
  from: '2025-06-02T10:00:00.000Z',
  to: '2025-06-02T13:00:00.000Z',
  buckets: [
    { start: '2025-06-02T10:00:00.000Z', total: 1225, outcomes: { VALID: 1180, RATE_LIMITED: 42, INSUFFICIENT_SCOPES: 3 } },
    { start: '2025-06-02T11:00:00.000Z', total: 0, outcomes: {} },
    { start: '2025-06-02T12:00:00.000Z', total: 310, outcomes: { VALID: 305, NOT_FOUND: 5 } },
  ],
  totals: { total: 1535, outcomes: { VALID: 1485, RATE_LIMITED: 42, INSUFFICIENT_SCOPES: 3, NOT_FOUND: 5 } },
};

export const VerificationSeriesResponse = Type.Object(
  {
    key_id: Type.Union([Type.String(), Type.Null()], { description: 'The key asked for with `key_id`; null for every key you may read' }),
    granularity: Type.Union([Type.Literal('minute'), Type.Literal('hour'), Type.Literal('day')]),
    group_by: GroupByEcho,
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    buckets: Type.Array(
      Type.Object({
        start: Type.String({ format: 'date-time', description: 'Start of the bucket (UTC)' }),
        total: Type.Integer(),
        outcomes: Outcomes,
        groups: Groups,
      }),
      { description: 'Every bucket in the range, oldest first, including empty ones' },
    ),
    totals: Type.Object({ total: Type.Integer(), outcomes: Outcomes, groups: Groups }, { description: 'The whole range' }),
  },
  { description: 'Verifications by outcome per bucket', examples: [SERIES_EXAMPLE] },
);

export const KeysActivityQuery = Type.Object(
  {
    key_ids: Type.String({
      minLength: 1,
      // Room for the most ids, each as long as an id may be, and their commas.
      maxLength: MAX_ACTIVITY_KEYS * 65,
      description: `Up to ${MAX_ACTIVITY_KEYS} key ids, separated by commas`,
      examples: ['0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90,0197a4d3-1f20-7a4b-8c5d-6e7f8091a2b3'],
    }),
  },
  { additionalProperties: false },
);

const ACTIVITY_EXAMPLE = {
  from: '2025-06-01T14:06:00.000Z',
  to: '2025-06-02T14:06:00.000Z',
  granularity: 'hour',
  data: [
    {
      key_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
      total: 1535,
      buckets: [40, 38, 35, 20, 12, 9, 8, 10, 25, 60, 80, 95, 110, 102, 98, 90, 88, 93, 101, 120, 130, 96, 70, 55],
    },
    { key_id: '0197a4d3-1f20-7a4b-8c5d-6e7f8091a2b3', total: 0, buckets: new Array(ACTIVITY_SLOTS).fill(0) },
  ],
};

export const KeysActivityResponse = Type.Object(
  {
    from: Type.String({ format: 'date-time', description: '24 hours before `to`' }),
    to: Type.String({ format: 'date-time', description: 'The end of the current minute' }),
    granularity: Type.Literal('hour'),
    data: Type.Array(
      Type.Object({
        key_id: Type.String(),
        total: Type.Integer({ description: 'Verifications in the 24 hours, every outcome' }),
        buckets: Type.Array(Type.Integer(), {
          minItems: ACTIVITY_SLOTS,
          maxItems: ACTIVITY_SLOTS,
          description: 'Verifications per hour, oldest first: bucket `i` covers [`from` + i h, `from` + (i+1) h)',
        }),
      }),
      { description: 'The keys asked for, in the order asked, each once; those you may not read, or that do not exist, are left out' },
    ),
  },
  { description: 'Each key’s verifications per hour over the last 24 hours', examples: [ACTIVITY_EXAMPLE] },
);

export function usageSeriesRoutes(app: App, deps: { usageAnalytics: UsageAnalytics }): void {
  app.get(
    '/v1/analytics/verifications/series',
    {
      schema: {
        tags: [TAG],
        operationId: 'getVerificationSeries',
        summary: 'Verifications over time',
        description:
          'Verifications in [`from`, `to`) by outcome per minute, hour or day (UTC buckets; default the last 24 hours by hour), every bucket present, and with `group_by` by endpoint, status class, tag or key besides. Admins see every verification, those of unknown keys included; a key holding `keyward:keys:read` or `keyward:keys:write` sees its keys’ (its user’s keys only, when it belongs to a user); a signed-in user sees their own keys’. `key_id` narrows it to one key. Rows are written in batches, so the last second or so may not be counted yet.',
        security: SECURED,
        querystring: VerificationSeriesQuery,
        response: { 200: VerificationSeriesResponse, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const q = request.query;
      const series = unwrap(
        await deps.usageAnalytics.verificationSeries(callerOf(request), {
          from: msOrNull(q.from) ?? undefined,
          to: msOrNull(q.to) ?? undefined,
          granularity: q.granularity ?? 'hour',
          keyId: q.key_id,
          groupBy: q.group_by,
        }),
      );
      return {
        key_id: series.keyId,
        granularity: series.granularity,
        ...(series.groupBy === undefined ? {} : { group_by: series.groupBy }),
        from: iso(series.from),
        to: iso(series.to),
        buckets: series.buckets.map((b) => ({ start: iso(b.start), ...counts(b) })),
        totals: counts(series.totals),
      };
    },
  );

  app.get(
    '/v1/analytics/keys/activity',
    {
      schema: {
        tags: [TAG],
        operationId: 'getKeysActivity',
        summary: 'Recent activity of several keys',
        description: `Each key’s verifications per hour over the last 24 hours (every outcome), for up to ${MAX_ACTIVITY_KEYS} keys at once: the sparklines of a key list. The hours run back from the end of the current minute. Keys you may not read, and unknown ids, are left out; a credential that may not read keys gets 403.`,
        security: SECURED,
        querystring: KeysActivityQuery,
        response: { 200: KeysActivityResponse, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const activity = unwrap(
        await deps.usageAnalytics.keysActivity(
          callerOf(request),
          request.query.key_ids.split(',').map((id) => id.trim()),
        ),
      );
      return {
        from: iso(activity.from),
        to: iso(activity.to),
        granularity: 'hour' as const,
        data: activity.keys.map((k) => ({ key_id: k.keyId, total: k.total, buckets: k.buckets })),
      };
    },
  );
}
