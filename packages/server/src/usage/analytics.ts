import { type Caller, isAdmin } from '../callers/principal.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import type { KeyService } from '../keys/service.js';
import type { Db } from '../store/database.js';
import { countUsageByBucket, countUsageByOutcome, type TopKey, topKeysByUsage } from './repository.js';

export type Granularity = 'minute' | 'hour' | 'day';

export const BUCKET_MS: Record<Granularity, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** The range asked for when `from` is left out: a chart's worth of buckets at each granularity. */
const DEFAULT_SPAN_MS: Record<Granularity, number> = { minute: 3_600_000, hour: 86_400_000, day: 30 * 86_400_000 };

/** Bounds the work and the response size of one usage query. */
export const MAX_BUCKETS = 10_000;

export interface UsageCounts {
  total: number;
  outcomes: Record<string, number>;
}

export interface KeyUsage {
  keyId: string;
  granularity: Granularity;
  from: number;
  to: number;
  /** Every bucket in the range, oldest first, empty ones included (so charts need no gap filling). */
  buckets: Array<UsageCounts & { start: number }>;
  totals: UsageCounts;
}

export interface VerificationAnalytics {
  from: number;
  to: number;
  totals: UsageCounts;
  topKeys: TopKey[];
}

export interface UsageAnalyticsDeps {
  db: Db;
  keys: Pick<KeyService, 'get'>;
  now?: () => number;
}

export type UsageAnalytics = ReturnType<typeof createUsageAnalytics>;

function invalid(field: string, message: string): Failure<'INVALID_REQUEST'> {
  return err('INVALID_REQUEST', `${field}: ${message}`, [{ field, message }]);
}

// Left out, `to` is the end of the current minute: whole minutes are read from the per-minute counts, while a
// range ending mid-minute must scan that minute's raw rows of every key.
const MINUTE_MS = 60_000;

function range(from: number | undefined, to: number | undefined, defaultSpan: number, now: number): Result<{ from: number; to: number }> {
  const end = to ?? Math.floor(now / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  const start = from ?? end - defaultSpan;
  if (start >= end) return invalid('querystring.from', 'must be before `to`');
  return ok({ from: start, to: end });
}

function add(counts: UsageCounts, outcome: string, n: number): void {
  counts.total += n;
  counts.outcomes[outcome] = (counts.outcomes[outcome] ?? 0) + n;
}

export function createUsageAnalytics({ db: { db }, keys, now = Date.now }: UsageAnalyticsDeps) {
  return {
    /**
     * A key's usage over [from, to), counted by outcome per minute, hour or day (UTC buckets). Whoever may
     * read the key may read its usage.
     */
    async keyUsage(
      caller: Caller,
      keyId: string,
      query: { from?: number | undefined; to?: number | undefined; granularity: Granularity },
    ): Promise<Result<KeyUsage>> {
      const readable = await keys.get(caller, keyId);
      if (!readable.ok) return readable;
      const size = BUCKET_MS[query.granularity];
      const window = range(query.from, query.to, DEFAULT_SPAN_MS[query.granularity], now());
      if (!window.ok) return window;
      const { from, to } = window.value;
      const first = Math.floor(from / size) * size;
      if ((to - first) / size > MAX_BUCKETS) {
        return invalid('querystring.granularity', `the range holds more than ${MAX_BUCKETS} buckets; use a coarser granularity`);
      }
      const buckets: KeyUsage['buckets'] = [];
      const byStart = new Map<number, UsageCounts & { start: number }>();
      for (let start = first; start < to; start += size) {
        const bucket = { start, total: 0, outcomes: {} };
        buckets.push(bucket);
        byStart.set(start, bucket);
      }
      const totals: UsageCounts = { total: 0, outcomes: {} };
      for (const row of await countUsageByBucket(db, { keyId, from, to, bucketMs: size })) {
        const bucket = byStart.get(row.bucket);
        if (bucket) add(bucket, row.outcome, row.count);
        add(totals, row.outcome, row.count);
      }
      return ok({ keyId, granularity: query.granularity, from, to, buckets, totals });
    },

    /** Verifications over [from, to) for all keys (admin): totals by outcome and the busiest keys. */
    async verifications(
      caller: Caller,
      query: { from?: number | undefined; to?: number | undefined; limit?: number | undefined },
    ): Promise<Result<VerificationAnalytics>> {
      if (!isAdmin(caller.principal)) return err('FORBIDDEN', 'analytics are for admins');
      const window = range(query.from, query.to, 86_400_000, now());
      if (!window.ok) return window;
      const { from, to } = window.value;
      const [outcomes, topKeys] = await Promise.all([
        countUsageByOutcome(db, { from, to }),
        topKeysByUsage(db, { from, to, limit: query.limit ?? 10 }),
      ]);
      const totals: UsageCounts = { total: 0, outcomes: {} };
      for (const [outcome, n] of outcomes) add(totals, outcome, n);
      return ok({ from, to, totals, topKeys });
    },
  };
}
