import { type Caller, isAdmin, keyReach } from '../callers/principal.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import type { KeyService } from '../keys/service.js';
import type { Db } from '../store/database.js';
import { createUsageEvents, type ExportLimits } from './events.js';
import {
  countKeysUsageBySlot,
  countScopedUsageByBucket,
  countScopedUsageByGroup,
  countUsageByOutcome,
  type TopKey,
  topKeysByUsage,
  type UsageDimension,
  type UsageScope,
} from './repository.js';

export type Granularity = 'minute' | 'hour' | 'day';

export const BUCKET_MS: Record<Granularity, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** The range asked for when `from` is left out: a chart's worth of buckets at each granularity. */
const DEFAULT_SPAN_MS: Record<Granularity, number> = { minute: 3_600_000, hour: 86_400_000, day: 30 * 86_400_000 };

/** Bounds the work and the response size of one usage query. */
export const MAX_BUCKETS = 10_000;

export interface UsageCounts {
  total: number;
  outcomes: Record<string, number>;
  /** With a `groupBy` other than the outcome: counts by that dimension ('' for rows with none). */
  groups?: Record<string, number>;
}

/** What usage buckets are broken down by: the outcome (always given), or another dimension besides. */
export type GroupBy = 'outcome' | UsageDimension;

/** Most groups a grouped answer names: the largest over the range; the rest count in `total` only. */
export const MAX_GROUPS = 50;

interface BucketQuery {
  from?: number | undefined;
  to?: number | undefined;
  granularity: Granularity;
  groupBy?: GroupBy | undefined;
}

export interface KeyUsage {
  keyId: string;
  granularity: Granularity;
  /** Set when the counts are broken down by more than the outcome. */
  groupBy?: UsageDimension;
  from: number;
  to: number;
  /** Every bucket in the range, oldest first, empty ones included (so charts need no gap filling). */
  buckets: Array<UsageCounts & { start: number }>;
  totals: UsageCounts;
}

export interface VerificationSeries {
  /** The one key asked for; null for every key the caller may read. */
  keyId: string | null;
  granularity: Granularity;
  /** Set when the counts are broken down by more than the outcome. */
  groupBy?: UsageDimension;
  from: number;
  to: number;
  /** Every bucket in the range, oldest first, empty ones included. */
  buckets: Array<UsageCounts & { start: number }>;
  totals: UsageCounts;
}

/** How many keys one activity request may ask for. */
export const MAX_ACTIVITY_KEYS = 100;
/** Activity covers the last day, in hours. */
export const ACTIVITY_SLOT_MS = 3_600_000;
export const ACTIVITY_SLOTS = 24;

export interface KeysActivity {
  from: number;
  to: number;
  /** In the order asked, each key once; keys the caller may not read, or that do not exist, are left out. */
  keys: Array<{ keyId: string; total: number; buckets: number[] }>;
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
  /** Raw rows one count by endpoint, status class or tag reads at most; default `MAX_GROUP_SCAN_ROWS` (repository.ts; tests make it small). */
  groupScanRows?: number;
  /** Exports running at once, per caller and per instance; default `EXPORT_LIMITS` (events.ts). */
  exportLimits?: ExportLimits;
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

export function createUsageAnalytics({ db: { db }, keys, now = Date.now, groupScanRows, exportLimits }: UsageAnalyticsDeps) {
  /**
   * The usage in `scope` over the asked range, every bucket present (so charts need no gap filling), by outcome
   * and, with `groupBy`, by that dimension too.
   */
  async function bucketed(scope: UsageScope, query: BucketQuery): Promise<Result<Omit<KeyUsage, 'keyId'>>> {
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
    const by = query.groupBy === undefined || query.groupBy === 'outcome' ? undefined : query.groupBy;
    const [counted, grouped] = await Promise.all([
      countScopedUsageByBucket(db, { scope, from, to, bucketMs: size }),
      by === undefined
        ? []
        : countScopedUsageByGroup(db, { scope, from, to, bucketMs: size, by, groups: MAX_GROUPS, scanRows: groupScanRows }),
    ]);
    for (const row of counted) {
      const bucket = byStart.get(row.bucket);
      if (bucket) add(bucket, row.outcome, row.count);
      add(totals, row.outcome, row.count);
    }
    if (by === undefined) return ok({ granularity: query.granularity, from, to, buckets, totals });
    // The largest groups over the range, named in every bucket (the database picks them); the rest count in
    // `total` only.
    for (const bucket of buckets) bucket.groups = {};
    totals.groups = {};
    for (const row of grouped) {
      const bucket = byStart.get(row.bucket);
      if (bucket?.groups) bucket.groups[row.group] = (bucket.groups[row.group] ?? 0) + row.count;
      totals.groups[row.group] = (totals.groups[row.group] ?? 0) + row.count;
    }
    return ok({ granularity: query.granularity, groupBy: by, from, to, buckets, totals });
  }

  const events = createUsageEvents({ db, keys, exportLimits });

  return {
    /**
     * A key's usage over [from, to), counted by outcome per minute, hour or day (UTC buckets). Whoever may
     * read the key may read its usage.
     */
    async keyUsage(caller: Caller, keyId: string, query: BucketQuery): Promise<Result<KeyUsage>> {
      const readable = await keys.get(caller, keyId);
      if (!readable.ok) return readable;
      const counted = await bucketed({ kind: 'key', keyId }, query);
      if (!counted.ok) return counted;
      return ok({ keyId, ...counted.value });
    },

    /**
     * Verifications over [from, to) by outcome per minute, hour or day (UTC buckets), for every key the caller
     * may read, or for the one key `keyId`. Admins see every verification, those of unknown keys too; a key
     * with `keyward:keys:read` sees those of the keys it reaches (its user's, when it belongs to one); a user
     * their own keys'. One key is read as `GET /v1/api-keys/{id}` reads it (404 unknown, 403 another's).
     */
    async verificationSeries(caller: Caller, query: BucketQuery & { keyId?: string | undefined }): Promise<Result<VerificationSeries>> {
      let scope: UsageScope;
      if (query.keyId !== undefined) {
        const readable = await keys.get(caller, query.keyId);
        if (!readable.ok) return readable;
        scope = { kind: 'key', keyId: query.keyId };
      } else {
        const reach = keyReach(caller.principal, 'read');
        if (reach === null) return err('FORBIDDEN', 'this credential may not read usage');
        scope = !reach.all ? { kind: 'user', userId: reach.userId } : isAdmin(caller.principal) ? { kind: 'all' } : { kind: 'keys' };
      }
      const counted = await bucketed(scope, query);
      if (!counted.ok) return counted;
      return ok({ keyId: query.keyId ?? null, ...counted.value });
    },

    /**
     * The last 24 hours of each of `keyIds`, counted per hour (all outcomes), in one query: the keys table's
     * sparklines. The hours run back from the end of the current minute, so the last one is as full as the
     * first. Keys the caller may not read, or that do not exist, are left out, as a key list leaves them out.
     */
    async keysActivity(caller: Caller, keyIds: readonly string[]): Promise<Result<KeysActivity>> {
      const reach = keyReach(caller.principal, 'read');
      if (reach === null) return err('FORBIDDEN', 'this credential may not read usage');
      if (keyIds.some((id) => id.length === 0 || id.length > 64)) {
        return invalid('querystring.key_ids', 'must be key ids separated by commas');
      }
      const ids = [...new Set(keyIds)];
      if (ids.length === 0) return invalid('querystring.key_ids', 'must name at least one key');
      if (ids.length > MAX_ACTIVITY_KEYS) return invalid('querystring.key_ids', `may name at most ${MAX_ACTIVITY_KEYS} keys`);
      const to = Math.floor(now() / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
      const from = to - ACTIVITY_SLOTS * ACTIVITY_SLOT_MS;
      const rows = await countKeysUsageBySlot(db, {
        keyIds: ids,
        userId: reach.all ? undefined : reach.userId,
        from,
        to,
        slotMs: ACTIVITY_SLOT_MS,
      });
      const byKey = new Map<string, { keyId: string; total: number; buckets: number[] }>();
      for (const row of rows) {
        let entry = byKey.get(row.keyId);
        if (entry === undefined) {
          entry = { keyId: row.keyId, total: 0, buckets: new Array<number>(ACTIVITY_SLOTS).fill(0) };
          byKey.set(row.keyId, entry);
        }
        if (row.slot === null || row.slot < 0 || row.slot >= ACTIVITY_SLOTS) continue;
        entry.buckets[row.slot] = (entry.buckets[row.slot] ?? 0) + row.count;
        entry.total += row.count;
      }
      return ok({ from, to, keys: ids.flatMap((id) => byKey.get(id) ?? []) });
    },

    /** `GET /v1/usage/events`: one page of usage rows ({@link createUsageEvents}). */
    listEvents: events.list,
    /** `GET /v1/usage/events?format=csv|jsonl`: every row of a selection, in chunks. */
    exportEvents: events.export,

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
