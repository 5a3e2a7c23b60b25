import { CompiledQuery, type ExpressionBuilder, PostgresAdapter, type QueryResult, type SelectQueryBuilder, sql } from 'kysely';
import type { Database, Executor, NewApiKeyUsageRow } from '../store/schema.js';
import { scanFloor, type UsagePosition } from './events.repository.js';

// Column order of the raw rows' INSERT (Kysely keeps the key order of the placeholder row below).
const USAGE_COLUMNS = [
  'api_key_id',
  'endpoint',
  'method',
  'status_code',
  'ip_address',
  'user_agent',
  'response_time_ms',
  'outcome',
  'created_at',
  'tags',
] as const satisfies readonly (keyof NewApiKeyUsageRow)[];

// Compiled only for its text: one bound parameter per column, in USAGE_COLUMNS order (Kysely keeps key order).
const PLACEHOLDER_ROW: Required<Omit<NewApiKeyUsageRow, 'id'>> = {
  api_key_id: null,
  endpoint: null,
  method: null,
  status_code: null,
  ip_address: null,
  user_agent: null,
  response_time_ms: null,
  outcome: '',
  created_at: 0,
  tags: null,
};

// Values of a per-minute count go in this key order: minute, api_key_id, outcome, count.
const MINUTE_PLACEHOLDER = { minute: 0, api_key_id: '', outcome: '', count: 0 };

// Ten columns a row: 512 rows is 5,120 bound parameters, well under SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_STATEMENT = 512;
const MINUTE_MS = 60_000;

// Usage rows are written on the same event loop that answers verifications, one row per verification: the
// query builder costs more per row than the database does. So the statement text for N rows is compiled
// once per dialect (the adapter decides `?` or `$n`) and reused; a batch goes out in chunks of power-of-two
// sizes, so at most 10 texts per statement are ever kept.
const statements = new WeakMap<object, Map<string, string>>();

function cachedStatement(db: Executor, name: 'rows' | 'minutes', rows: number): string {
  const adapter = db.getExecutor().adapter;
  let texts = statements.get(adapter);
  if (texts === undefined) {
    texts = new Map();
    statements.set(adapter, texts);
  }
  const id = `${name}:${rows}`;
  let text = texts.get(id);
  if (text === undefined) {
    text =
      name === 'rows'
        ? db
            .insertInto('api_key_usage')
            .values(Array.from({ length: rows }, () => PLACEHOLDER_ROW))
            .compile().sql
        : db
            .insertInto('api_key_usage_minutes')
            .values(Array.from({ length: rows }, () => MINUTE_PLACEHOLDER))
            .onConflict((oc) =>
              oc.columns(['minute', 'api_key_id', 'outcome']).doUpdateSet((eb) => ({
                count: eb(eb.ref('api_key_usage_minutes.count'), '+', eb.ref('excluded.count')),
              })),
            )
            .compile().sql;
    texts.set(id, text);
  }
  return text;
}

/**
 * `name` over rows of `width` values each, laid end to end in `values`, as statements of power-of-two chunks
 * of rows.
 */
function chunked(db: Executor, name: 'rows' | 'minutes', values: readonly unknown[], width: number, into: CompiledQuery[]): void {
  const rows = values.length / width;
  let start = 0;
  while (start < rows) {
    const left = rows - start;
    // The largest power of two that fits (all of ROWS_PER_STATEMENT when that many are left).
    const size = left >= ROWS_PER_STATEMENT ? ROWS_PER_STATEMENT : 2 ** Math.floor(Math.log2(left));
    into.push(CompiledQuery.raw(cachedStatement(db, name, size), values.slice(start * width, (start + size) * width)));
    start += size;
  }
}

/** One column value of a usage row. */
export type UsageValue = string | number | null;

/** Values per usage row in the flat arrays below: one per column of {@link USAGE_COLUMNS}. */
export const USAGE_VALUES_PER_ROW = USAGE_COLUMNS.length;
const CREATED_AT = USAGE_COLUMNS.indexOf('created_at');
const KEY_ID = USAGE_COLUMNS.indexOf('api_key_id');
const OUTCOME = USAGE_COLUMNS.indexOf('outcome');

/**
 * Appends one usage row to `values`, in the column order {@link usageInsertStatements} reads. The hot path
 * buffers rows this way: no object per row.
 */
export function appendUsageRow(
  values: UsageValue[],
  apiKeyId: string | null,
  endpoint: string | null,
  method: string | null,
  statusCode: number | null,
  ipAddress: string | null,
  userAgent: string | null,
  responseTimeMs: number | null,
  outcome: string,
  createdAt: number,
  /** The tags as JSON text (an array of strings), or null for none. */
  tags: string | null = null,
): void {
  values.push(apiKeyId, endpoint, method, statusCode, ipAddress, userAgent, responseTimeMs, outcome, createdAt, tags);
}

/**
 * `rows` as the flat values {@link usageInsertStatements} takes, read column by column from {@link USAGE_COLUMNS}
 * (a test checks that {@link appendUsageRow}, written out for speed, lays them out the same way).
 */
export function usageRowValues(rows: readonly NewApiKeyUsageRow[]): UsageValue[] {
  const values: UsageValue[] = [];
  for (const row of rows) for (const column of USAGE_COLUMNS) values.push(row[column] ?? null);
  return values;
}

/**
 * The statements that insert usage rows (multi-row INSERTs) and add them to the per-minute counts, to run
 * in order in one transaction. `values` holds the rows end to end ({@link appendUsageRow}). The counts are
 * summed here first, so each (minute, key, outcome) is one upsert per batch, sent in primary-key order: two
 * instances adding to the same counts take their row locks in the same order (no deadlock on PostgreSQL).
 * `db` only decides the SQL dialect.
 */
export function usageInsertStatements(db: Executor, values: readonly UsageValue[]): CompiledQuery[] {
  const statements: CompiledQuery[] = [];
  chunked(db, 'rows', values, USAGE_VALUES_PER_ROW, statements);
  // Counted by minute, then key (a map), then outcome (a short list: a key has few outcomes in a minute). A
  // key's id is the same string row after row (its hash is kept), where a composite key would be a new string
  // to hash for every row.
  const byMinute = new Map<number, Map<string, [string, number][]>>();
  for (let at = 0; at < values.length; at += USAGE_VALUES_PER_ROW) {
    const minute = Math.floor((values[at + CREATED_AT] as number) / MINUTE_MS) * MINUTE_MS;
    const keyId = (values[at + KEY_ID] as string | null) ?? '';
    const outcome = values[at + OUTCOME] as string;
    let byKey = byMinute.get(minute);
    if (byKey === undefined) {
      byKey = new Map();
      byMinute.set(minute, byKey);
    }
    const counted = byKey.get(keyId);
    if (counted === undefined) {
      byKey.set(keyId, [[outcome, 1]]);
      continue;
    }
    let found = false;
    for (const entry of counted) {
      if (entry[0] === outcome) {
        entry[1] += 1;
        found = true;
        break;
      }
    }
    if (!found) counted.push([outcome, 1]);
  }
  // In primary-key order (minute, key, outcome), as flat values: minute, api_key_id, outcome, count.
  const counts: UsageValue[] = [];
  for (const minute of [...byMinute.keys()].sort((a, b) => a - b)) {
    const byKey = byMinute.get(minute) ?? new Map<string, [string, number][]>();
    // The default sort orders strings by UTF-16 code unit, as `<` does, and costs about half a comparator's.
    for (const keyId of [...byKey.keys()].sort()) {
      const entries = byKey.get(keyId) ?? [];
      if (entries.length > 1) entries.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
      for (const [outcome, count] of entries) counts.push(minute, keyId, outcome, count);
    }
  }
  chunked(db, 'minutes', counts, 4, statements);
  return statements;
}

/** Runs {@link usageInsertStatements}; the caller opens the transaction. */
export async function insertUsageRows(db: Executor, rows: readonly NewApiKeyUsageRow[]): Promise<void> {
  for (const statement of usageInsertStatements(db, usageRowValues(rows))) await db.executeQuery(statement);
}

/**
 * [from, to) split for counting: the whole minutes inside it come from the per-minute counts; the parts
 * of a minute at either end (a range need not start or end on a minute) from the raw rows.
 */
function splitRange(from: number, to: number): { minutes: [number, number]; raw: Array<[number, number]> } {
  const first = Math.ceil(from / MINUTE_MS) * MINUTE_MS;
  const end = Math.floor(to / MINUTE_MS) * MINUTE_MS;
  if (first >= end) return { minutes: [0, 0], raw: [[from, to]] };
  const raw: Array<[number, number]> = [];
  if (from < first) raw.push([from, first]);
  if (end < to) raw.push([end, to]);
  return { minutes: [first, end], raw };
}

export interface UsageBucketCount {
  /** Start of the bucket, epoch ms. */
  bucket: number;
  outcome: string;
  count: number;
}

/** Adds `n` to the count of (`a`, `b`) in a two-level map. */
function tally<A, B>(into: Map<A, Map<B, number>>, a: A, b: B, n: number): void {
  let inner = into.get(a);
  if (inner === undefined) {
    inner = new Map();
    into.set(a, inner);
  }
  inner.set(b, (inner.get(b) ?? 0) + n);
}

/**
 * Raw rows at or after `position` in time, then id: the newest rows, down to where a bounded scan stopped. The
 * columns are named with their table, as a tag's rows are joined to json_each (which has an `id` too).
 */
function notBefore(position: UsagePosition) {
  return (eb: ExpressionBuilder<Database, 'api_key_usage'>) =>
    eb.and([
      eb('api_key_usage.created_at', '>=', position.createdAt),
      eb.or([eb('api_key_usage.created_at', '>', position.createdAt), eb('api_key_usage.id', '>=', position.id)]),
    ]);
}

/** Raw rows in any of `ranges` of `created_at` (none when there are none). */
function inRanges(ranges: ReadonlyArray<[number, number]>) {
  return (eb: ExpressionBuilder<Database, 'api_key_usage'>) =>
    eb.or(
      (ranges.length > 0 ? ranges : [[0, 0] as [number, number]]).map(([from, to]) =>
        eb.and([eb('created_at', '>=', from), eb('created_at', '<', to)]),
      ),
    );
}

/**
 * Whose usage rows a count reads: one key's, the keys of one user, every key's, or every row (those of unknown
 * or malformed keys too, which have no key id).
 */
export type UsageScope = { kind: 'key'; keyId: string } | { kind: 'user'; userId: string } | { kind: 'keys' } | { kind: 'all' };

/** The per-minute counts in `scope` ('' is the key id of the rows of no key). */
function minutesIn(scope: UsageScope) {
  return (eb: ExpressionBuilder<Database, 'api_key_usage_minutes'>) => {
    switch (scope.kind) {
      case 'key':
        return eb('api_key_id', '=', scope.keyId);
      case 'user':
        return eb('api_key_id', 'in', eb.selectFrom('api_keys').select('api_keys.id').where('api_keys.user_id', '=', scope.userId));
      case 'keys':
        return eb('api_key_id', '<>', '');
      case 'all':
        return eb.and([]);
    }
  };
}

/** The raw rows in `scope` (a null key id is the row of no key). */
function rowsIn(scope: UsageScope) {
  return (eb: ExpressionBuilder<Database, 'api_key_usage'>) => {
    switch (scope.kind) {
      case 'key':
        return eb('api_key_id', '=', scope.keyId);
      case 'user':
        return eb('api_key_id', 'in', eb.selectFrom('api_keys').select('api_keys.id').where('api_keys.user_id', '=', scope.userId));
      case 'keys':
        return eb('api_key_id', 'is not', null);
      case 'all':
        return eb.and([]);
    }
  };
}

/**
 * Counts a key's usage rows by outcome per bucket over [from, to): {@link countScopedUsageByBucket} for one key.
 */
export async function countUsageByBucket(
  db: Executor,
  filter: { keyId: string; from: number; to: number; bucketMs: number },
): Promise<UsageBucketCount[]> {
  const { keyId, ...rest } = filter;
  return countScopedUsageByBucket(db, { scope: { kind: 'key', keyId }, ...rest });
}

/**
 * Counts the usage rows in `scope` by outcome per bucket over [from, to). Buckets are `floor(time / size) * size`
 * (`size` a whole number of minutes): times are integer epoch ms in both dialects, so integer division buckets
 * them the same way. Ordered by bucket, then outcome.
 */
export async function countScopedUsageByBucket(
  db: Executor,
  filter: { scope: UsageScope; from: number; to: number; bucketMs: number },
): Promise<UsageBucketCount[]> {
  if (filter.bucketMs % MINUTE_MS !== 0) throw new RangeError('usage buckets are whole minutes');
  const size = sql.lit(filter.bucketMs);
  const { minutes, raw } = splitRange(filter.from, filter.to);
  const [counted, edges] = await Promise.all([
    db
      .selectFrom('api_key_usage_minutes')
      .select([sql<number>`(minute / ${size}) * ${size}`.as('bucket'), 'outcome', (eb) => eb.fn.sum<number>('count').as('count')])
      .where(minutesIn(filter.scope))
      .where('minute', '>=', minutes[0])
      .where('minute', '<', minutes[1])
      .groupBy([sql`(minute / ${size}) * ${size}`, 'outcome'])
      .execute(),
    raw.length === 0
      ? []
      : db
          .selectFrom('api_key_usage')
          .select([sql<number>`(created_at / ${size}) * ${size}`.as('bucket'), 'outcome', (eb) => eb.fn.countAll<number>().as('count')])
          .where(rowsIn(filter.scope))
          .where(inRanges(raw))
          .groupBy([sql`(created_at / ${size}) * ${size}`, 'outcome'])
          .execute(),
  ]);
  const byBucket = new Map<number, Map<string, number>>();
  for (const row of [...counted, ...edges]) tally(byBucket, Number(row.bucket), row.outcome, Number(row.count));
  const out: UsageBucketCount[] = [];
  for (const bucket of [...byBucket.keys()].sort((a, b) => a - b)) {
    const outcomes = byBucket.get(bucket) ?? new Map<string, number>();
    for (const outcome of [...outcomes.keys()].sort()) out.push({ bucket, outcome, count: outcomes.get(outcome) ?? 0 });
  }
  return out;
}

export interface KeySlotCount {
  keyId: string;
  /** Which slot of the range, from 0; null for a key with no usage in the range (it is there, with nothing counted). */
  slot: number | null;
  count: number;
}

/**
 * Usage of several keys over [from, to), counted per slot of `slotMs` from `from` (slot `i` is
 * [from + i·slotMs, from + (i+1)·slotMs)), in one query. Only keys that exist are answered, those of `userId`
 * alone when it is given; a key with no usage in the range gives one row with a null slot. `from` and `to` are
 * whole minutes: the per-minute counts answer it all.
 */
export async function countKeysUsageBySlot(
  db: Executor,
  filter: { keyIds: readonly string[]; userId?: string | undefined; from: number; to: number; slotMs: number },
): Promise<KeySlotCount[]> {
  if (filter.from % MINUTE_MS !== 0 || filter.to % MINUTE_MS !== 0 || filter.slotMs % MINUTE_MS !== 0) {
    throw new RangeError('usage slots are whole minutes');
  }
  if (filter.keyIds.length === 0) return [];
  const slot = sql<number | null>`(m.minute - ${sql.lit(filter.from)}) / ${sql.lit(filter.slotMs)}`;
  const { userId } = filter;
  const rows = await db
    .selectFrom('api_keys as k')
    .leftJoin('api_key_usage_minutes as m', (join) =>
      join.onRef('m.api_key_id', '=', 'k.id').on('m.minute', '>=', filter.from).on('m.minute', '<', filter.to),
    )
    .select(['k.id as key_id', slot.as('slot'), (eb) => eb.fn.sum<number | null>('m.count').as('count')])
    .where('k.id', 'in', filter.keyIds)
    .$if(userId !== undefined, (qb) => qb.where('k.user_id', '=', userId ?? ''))
    .groupBy(['k.id', slot])
    .execute();
  return rows.map((row) => ({
    keyId: row.key_id,
    slot: row.slot === null ? null : Number(row.slot),
    count: row.count === null ? 0 : Number(row.count),
  }));
}

/** Usage rows over [from, to) by outcome, for all keys (unknown keys included). */
export async function countUsageByOutcome(db: Executor, filter: { from: number; to: number }): Promise<Map<string, number>> {
  const { minutes, raw } = splitRange(filter.from, filter.to);
  const [counted, edges] = await Promise.all([
    db
      .selectFrom('api_key_usage_minutes')
      .select(['outcome', (eb) => eb.fn.sum<number>('count').as('count')])
      .where('minute', '>=', minutes[0])
      .where('minute', '<', minutes[1])
      .groupBy('outcome')
      .execute(),
    raw.length === 0
      ? []
      : db
          .selectFrom('api_key_usage')
          .select(['outcome', (eb) => eb.fn.countAll<number>().as('count')])
          .where(inRanges(raw))
          .groupBy('outcome')
          .execute(),
  ]);
  const totals = new Map<string, number>();
  for (const row of [...counted, ...edges]) totals.set(row.outcome, (totals.get(row.outcome) ?? 0) + Number(row.count));
  return totals;
}

export interface TopKey {
  keyId: string;
  /** Name and display prefix; null when the key was deleted since. */
  name: string | null;
  keyPrefix: string | null;
  total: number;
  outcomes: Record<string, number>;
}

/** The keys with the most usage rows over [from, to), most first, with their counts by outcome. */
export async function topKeysByUsage(db: Executor, filter: { from: number; to: number; limit: number }): Promise<TopKey[]> {
  const { minutes, raw } = splitRange(filter.from, filter.to);
  // Per key and outcome, from both sources: whole minutes from the counts, the ends from the raw rows.
  const parts = db
    .selectFrom('api_key_usage_minutes')
    .select(['api_key_id', 'outcome', 'count as n'])
    .where('api_key_id', '!=', '')
    .where('minute', '>=', minutes[0])
    .where('minute', '<', minutes[1])
    .unionAll(
      db
        .selectFrom('api_key_usage')
        .select([(eb) => eb.fn.coalesce('api_key_id', sql.lit('')).as('api_key_id'), 'outcome', sql<number>`1`.as('n')])
        .where('api_key_id', 'is not', null)
        .where(inRanges(raw)),
    );
  const top = await db
    .selectFrom(parts.as('u'))
    .select(['u.api_key_id', (eb) => eb.fn.sum<number>('u.n').as('total')])
    .groupBy('u.api_key_id')
    .orderBy('total', 'desc')
    .orderBy('u.api_key_id')
    .limit(filter.limit)
    .execute();
  const ids = top.map((r) => r.api_key_id);
  if (ids.length === 0) return [];
  const [breakdown, keys] = await Promise.all([
    db
      .selectFrom(parts.as('u'))
      .select(['u.api_key_id', 'u.outcome', (eb) => eb.fn.sum<number>('u.n').as('count')])
      .where('u.api_key_id', 'in', ids)
      .groupBy(['u.api_key_id', 'u.outcome'])
      .execute(),
    db.selectFrom('api_keys').select(['id', 'name', 'key_prefix']).where('id', 'in', ids).execute(),
  ]);
  return ids.map((keyId) => {
    const key = keys.find((k) => k.id === keyId);
    const outcomes: Record<string, number> = {};
    for (const row of breakdown) if (row.api_key_id === keyId) outcomes[row.outcome] = Number(row.count);
    return {
      keyId,
      name: key?.name ?? null,
      keyPrefix: key?.key_prefix ?? null,
      total: Number(top.find((r) => r.api_key_id === keyId)?.total ?? 0),
      outcomes,
    };
  });
}

/** Raw usage rows deleted per statement when pruning: each delete is short, so it holds SQLite's write lock briefly. */
export const PRUNE_CHUNK_ROWS = 5_000;

/** Runs one statement, resolving with its result once committed: a statement writer's `query`, or an executor's `executeQuery`. */
export type RunStatement = <R>(statement: CompiledQuery<R>) => Promise<QueryResult<R>>;

/**
 * Deletes the raw rows older than `before`, oldest first, `chunkRows` per statement (each run by `run`, so one
 * at a time between other writes), then the minute counts wholly before it (a minute the cut-off falls inside
 * keeps its counts). Returns how many raw rows were deleted. `db` only builds the statements.
 */
export async function deleteUsageBefore(run: RunStatement, db: Executor, before: number, chunkRows = PRUNE_CHUNK_ROWS): Promise<number> {
  let deleted = 0;
  for (;;) {
    const chunk = db
      .deleteFrom('api_key_usage')
      .where('id', 'in', (eb) =>
        eb.selectFrom('api_key_usage').select('id').where('created_at', '<', before).orderBy('created_at').limit(chunkRows),
      )
      .compile();
    const removed = Number((await run(chunk)).numAffectedRows ?? 0n);
    deleted += removed;
    if (removed < chunkRows) break;
  }
  await run(
    db
      .deleteFrom('api_key_usage_minutes')
      .where('minute', '<=', before - MINUTE_MS)
      .compile(),
  );
  return deleted;
}

/** What usage can be counted by, besides the outcome: the path, the status class, a tag, the key. */
export type UsageDimension = 'endpoint' | 'status_class' | 'tag' | 'key';

export interface UsageGroupCount {
  /** Start of the bucket, epoch ms. */
  bucket: number;
  /** The path, the status class (`4xx`), the tag or the key id; '' for rows with none. */
  group: string;
  count: number;
}

/**
 * Most raw rows one count by endpoint, status class or tag reads (the newest of the range): a request's work is
 * this, whatever the table holds. With 100,000 rows of as many paths, about 0.1 s on SQLite and 0.2 s on
 * PostgreSQL (2 cores), where reading every row of 1,000,000 took over 3 s and 400 MB of heap.
 */
export const MAX_GROUP_SCAN_ROWS = 100_000;

/**
 * Counts the usage rows in `scope` over [from, to) per bucket and `by`, for the `groups` largest groups over the
 * range only (most rows first, then by name); the database picks them, so no more than those leave it. Ordered by
 * bucket, then group.
 *
 * The key comes from the per-minute counts (and the raw rows at the ends of the range), as the outcome does. The
 * path, status class and tags only the raw rows hold: those are read newest first, at most about `scanRows` of
 * them ({@link scanFloor}), and older rows of the range are not counted by group. A row with several tags counts
 * once for each. `trace` is told each statement run.
 */
export async function countScopedUsageByGroup(
  db: Executor,
  filter: {
    scope: UsageScope;
    from: number;
    to: number;
    bucketMs: number;
    by: UsageDimension;
    groups: number;
    scanRows?: number | undefined;
  },
  trace?: (statement: CompiledQuery) => void,
): Promise<UsageGroupCount[]> {
  if (filter.bucketMs % MINUTE_MS !== 0) throw new RangeError('usage buckets are whole minutes');
  if (!Number.isSafeInteger(filter.groups) || filter.groups < 1) throw new RangeError('groups is a positive integer');
  const size = sql.lit(filter.bucketMs);
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  if (filter.by === 'key') {
    const { minutes, raw: edges } = splitRange(filter.from, filter.to);
    // Per key and bucket, from both sources: whole minutes from the counts, the ends from the raw rows.
    const parts = db
      .selectFrom('api_key_usage_minutes')
      .select([sql<number>`(minute / ${size}) * ${size}`.as('bucket'), 'api_key_id as g', 'count as n'])
      .where(minutesIn(filter.scope))
      .where('minute', '>=', minutes[0])
      .where('minute', '<', minutes[1])
      .unionAll(
        db
          .selectFrom('api_key_usage')
          .select([
            sql<number>`(created_at / ${size}) * ${size}`.as('bucket'),
            (eb) => eb.fn.coalesce('api_key_id', sql.lit('')).as('g'),
            sql<number>`1`.as('n'),
          ])
          .where(rowsIn(filter.scope))
          .where(inRanges(edges)),
      );
    const counted = db
      .selectFrom(parts.as('p'))
      .select(['p.bucket', 'p.g', (eb) => eb.fn.sum<number>('p.n').as('n')])
      .groupBy(['p.bucket', 'p.g']);
    return largestGroups(db, counted, filter.groups, trace);
  }
  const floor = await scanFloor(db, filter.scope, { from: filter.from, to: filter.to }, filter.scanRows ?? MAX_GROUP_SCAN_ROWS, trace);
  const bucketOf = sql<number>`(api_key_usage.created_at / ${size}) * ${size}`;
  const group =
    filter.by === 'endpoint'
      ? sql<string>`coalesce(api_key_usage.endpoint, '')`
      : filter.by === 'status_class'
        ? sql<string>`coalesce(cast(api_key_usage.status_code / 100 as text) || 'xx', '')`
        : sql<string>`coalesce(t.value, '')`;
  // One row per tag (jsonb_array_elements_text / json_each); a row with no tags keeps one, with a null tag.
  const elements = postgres
    ? sql<{ value: string }>`lateral jsonb_array_elements_text(api_key_usage.tags)`
    : sql<{ value: string }>`json_each(api_key_usage.tags)`;
  const rows = db
    .selectFrom('api_key_usage')
    .$if(filter.by === 'tag', (qb) => qb.leftJoin(elements.as('t'), (join) => join.onTrue()))
    .where(rowsIn(filter.scope))
    .where('api_key_usage.created_at', '>=', filter.from)
    .where('api_key_usage.created_at', '<', filter.to)
    .where(floor === null ? (eb) => eb.and([]) : notBefore(floor));
  // A status class has a handful of values: counted per bucket at once, what is kept is small. A path or a tag
  // may have as many values as rows: the rows are kept as they are (a count of 1 each), so the largest groups are
  // found in one aggregation, not two (about half the time, with 100,000 paths, on both databases).
  const counted =
    filter.by === 'status_class'
      ? rows.select([bucketOf.as('bucket'), group.as('g'), (eb) => eb.fn.countAll<number>().as('n')]).groupBy([bucketOf, group])
      : rows.select([bucketOf.as('bucket'), group.as('g'), sql<number>`1`.as('n')]);
  return largestGroups(db, counted, filter.groups, trace);
}

/**
 * Of `counted` (counts per bucket and group: `bucket`, `g`, never null, and `n`; a bucket and group may come more
 * than once), the counts of the `groups` largest groups over all buckets (most first, then by name), per bucket
 * and group, ordered by bucket, then group. `counted` is read once (materialized); the largest groups are picked
 * from it, and only their counts leave the database.
 */
async function largestGroups<DB, TB extends keyof DB>(
  db: Executor,
  counted: SelectQueryBuilder<DB, TB, { bucket: number; g: string; n: number }>,
  groups: number,
  trace?: (statement: CompiledQuery) => void,
): Promise<UsageGroupCount[]> {
  // Ties go by name, byte by byte, on both databases (PostgreSQL's default collation would order by locale).
  const byName = db.getExecutor().adapter instanceof PostgresAdapter ? sql`g collate "C"` : sql`g`;
  const compiled = db
    .with(
      (cte) => cte('counted').materialized(),
      () => counted,
    )
    .with('top', (qc) => qc.selectFrom('counted').select('g').groupBy('g').orderBy(sql`sum(n)`, 'desc').orderBy(byName).limit(groups))
    .selectFrom('counted')
    .select(['bucket', 'g', (eb) => eb.fn.sum<number>('n').as('n')])
    .where('g', 'in', (qc) => qc.selectFrom('top').select('g'))
    .groupBy(['bucket', 'g'])
    .compile();
  trace?.(compiled);
  const rows = (await db.executeQuery(compiled)).rows;
  const out = rows.map((row) => ({ bucket: Number(row.bucket), group: String(row.g), count: Number(row.n) }));
  // The default sort orders strings by UTF-16 code unit, as `<` does.
  return out.sort((x, y) => x.bucket - y.bucket || (x.group < y.group ? -1 : x.group > y.group ? 1 : 0));
}
