import {
  type CompiledQuery,
  type Expression,
  type ExpressionBuilder,
  PostgresAdapter,
  type SelectQueryBuilder,
  type SqlBool,
  sql,
} from 'kysely';
import type { Database, Executor } from '../store/schema.js';

// Usage rows read back, newest first: `GET /v1/usage/events` and its export.
//
// Each query walks one index in time order and stops after a page. Which index leads is chosen here, not left
// to SQLite's planner, which has no statistics (no ANALYZE) and would as soon walk `(outcome, created_at)` for
// `VALID` as a key's index, reading half the table: one key (its index) before a single outcome, before a
// status class, before time alone. Equality on another indexed column is written `+column` on SQLite, which
// keeps the planner off its index. PostgreSQL has statistics and chooses for itself.
//
// A user's keys, or several outcomes, are one range each in an index: each range is read in time order up to a
// page (an "arm"), and the arms are merged. That costs at most a page per arm, where `key in (…)` would sort
// every row of every key.
//
// A filter no index serves (a tag, an endpoint, an outcome or status beside a key) is checked on each row the
// walk passes; one that matches rarely would make a page read the whole table. So such a walk is bounded: it
// goes at most a budget of rows (found first, by the index alone), and a page that runs out of budget before it
// is full ends there, with a cursor to go on from (like a DynamoDB scan's `LastEvaluatedKey`).

/** One usage row as stored (tags as the driver returns them). */
export interface UsageEventRow {
  id: number;
  api_key_id: string | null;
  endpoint: string | null;
  method: string | null;
  status_code: number | null;
  ip_address: string | null;
  user_agent: string | null;
  response_time_ms: number | null;
  outcome: string;
  tags: string | string[] | null;
  created_at: number;
}

/** Whose rows: one key's, the keys of one user, every key's, or every row (those of no key too). */
export type EventScope = { kind: 'key'; keyId: string } | { kind: 'user'; userId: string } | { kind: 'keys' } | { kind: 'all' };

export interface UsageEventFilter {
  scope: EventScope;
  /** [from, to) of `created_at`, epoch ms. */
  from?: number | undefined;
  to?: number | undefined;
  /** Any of these outcomes. */
  outcomes?: readonly string[] | undefined;
  /** An exact status, or a class (4 for 4xx). */
  status?: { code: number } | { class: number } | undefined;
  /** An exact path, or every path starting with `prefix`. */
  endpoint?: { exact: string } | { prefix: string } | undefined;
  /** Rows carrying this tag. */
  tag?: string | undefined;
}

/** Where a page ends: the next page holds the rows strictly after it (older, or as old with a lower id). */
export interface UsagePosition {
  createdAt: number;
  id: number;
}

export interface UsageEventsPage {
  /** At most `limit` rows, newest first. */
  rows: UsageEventRow[];
  /**
   * Set when the walk ran out of budget before `limit` rows matched: every row down to this position has been
   * looked at, and the next page goes on strictly after it. Null when the rows end the page as usual.
   */
  scannedTo: UsagePosition | null;
}

/** At most this many arms (a user's keys, several outcomes) are merged; more is one query with `in (…)`. */
export const MAX_ARMS = 64;

/**
 * Rows a page's walk may pass for a filter no index serves: a first try, then the most. At the most, a page costs
 * tens of milliseconds, whatever the table's size (see bench/usage-events-query.ts).
 */
export const MAX_SCAN_ROWS = 100_000;
export const SCAN_BUDGETS = [2_000, MAX_SCAN_ROWS] as const;
/** Each of several arms walks at least this many rows of the budget. */
const MIN_ARM_BUDGET = 2_000;

const COLUMNS = [
  'id',
  'api_key_id',
  'endpoint',
  'method',
  'status_code',
  'ip_address',
  'user_agent',
  'response_time_ms',
  'outcome',
  'tags',
  'created_at',
] as const;

type Eb = ExpressionBuilder<Database, 'api_key_usage'>;
type Condition = (eb: Eb) => Expression<SqlBool>;
type RowsQuery = SelectQueryBuilder<Database, 'api_key_usage', UsageEventRow>;

/** The index a walk follows: the first of these its filter has. */
type Lead = 'key' | 'outcome' | 'class' | 'time';

/** How one arm reads: what its index walk covers, and what is checked on each row walked. */
interface Arm {
  /** Conditions the leading index serves, the time range among them. */
  walk: Condition[];
  /** Conditions checked on the rows walked. */
  check: Condition[];
  /** Whether `check` may pass over many rows for each it keeps: the walk is then bounded by a budget. */
  selective: boolean;
}

function isPostgres(db: Executor): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

/** `column` as an operand that no index serves, on SQLite (see the top of this file). */
function unindexed(postgres: boolean, column: 'api_key_id' | 'outcome') {
  return postgres ? sql.ref(column) : sql`+${sql.ref(column)}`;
}

/** Rows strictly after `position` in the order (older, or as old with a lower id). */
function after(position: UsagePosition): Condition {
  // Not a row-value comparison: both planners take `created_at <= ?` as the index range, the rest as a filter.
  return (eb) =>
    eb.and([eb('created_at', '<=', position.createdAt), eb.or([eb('created_at', '<', position.createdAt), eb('id', '<', position.id)])]);
}

/** Rows at or before `position` in the order (as new or newer): what a bounded walk covers. */
function notPast(position: UsagePosition): Condition {
  return (eb) =>
    eb.and([eb('created_at', '>=', position.createdAt), eb.or([eb('created_at', '>', position.createdAt), eb('id', '>=', position.id)])]);
}

/** One arm of `filter`: with, when given, one key, one outcome, or the keys of one user. */
function planArm(
  postgres: boolean,
  filter: UsageEventFilter,
  fixed: { keyId?: string | undefined; outcome?: string | undefined; userId?: string | undefined },
): Arm {
  const outcomes = fixed.outcome === undefined ? filter.outcomes : [fixed.outcome];
  const keyId = fixed.keyId ?? (filter.scope.kind === 'key' ? filter.scope.keyId : undefined);
  const lead: Lead = keyId !== undefined ? 'key' : outcomes?.length === 1 ? 'outcome' : filter.status !== undefined ? 'class' : 'time';
  const walk: Condition[] = [];
  const check: Condition[] = [];
  let selective = false;
  if (keyId !== undefined) walk.push((eb) => eb('api_key_id', '=', keyId));
  const { userId } = fixed;
  if (userId !== undefined) {
    selective = true;
    check.push((eb) =>
      eb(unindexed(postgres, 'api_key_id'), 'in', eb.selectFrom('api_keys').select('api_keys.id').where('api_keys.user_id', '=', userId)),
    );
  }
  // Nearly every row has a key: not worth a budget.
  if (filter.scope.kind === 'keys') check.push((eb) => eb('api_key_id', 'is not', null));
  if (outcomes !== undefined && outcomes.length > 0) {
    if (lead === 'outcome') walk.push((eb) => eb('outcome', '=', outcomes[0] ?? ''));
    else {
      selective = true;
      const column = unindexed(postgres, 'outcome');
      check.push((eb) => (outcomes.length === 1 ? eb(column, '=', outcomes[0] ?? '') : eb(column, 'in', outcomes)));
    }
  }
  const { status } = filter;
  if (status !== undefined) {
    const statusClass = 'class' in status ? status.class : Math.floor(status.code / 100);
    // The class is written as the index's expression; on SQLite, `+` keeps the planner off it when another leads.
    if (lead === 'class') walk.push((eb) => eb(sql`status_code / 100`, '=', statusClass));
    else {
      selective = true;
      check.push((eb) => eb(postgres ? sql`status_code / 100` : sql`+(status_code / 100)`, '=', statusClass));
    }
    if ('code' in status) {
      selective = true;
      check.push((eb) => eb('status_code', '=', status.code));
    }
  }
  const { endpoint } = filter;
  if (endpoint !== undefined) {
    selective = true;
    if ('exact' in endpoint) check.push((eb) => eb('endpoint', '=', endpoint.exact));
    else {
      // `like` would take `%` and `_` in the prefix as wildcards, and is case-insensitive on SQLite.
      const length = [...endpoint.prefix].length;
      check.push((eb) => eb(sql`substr(endpoint, 1, ${sql.lit(length)})`, '=', endpoint.prefix));
    }
  }
  const { tag } = filter;
  if (tag !== undefined) {
    // PostgreSQL finds the rows of a tag by its GIN index; SQLite checks each row walked.
    if (!postgres) selective = true;
    check.push(() =>
      postgres
        ? sql<SqlBool>`tags @> ${JSON.stringify([tag])}::jsonb`
        : sql<SqlBool>`exists (select 1 from json_each(api_key_usage.tags) where json_each.value = ${tag})`,
    );
  }
  if (filter.from !== undefined) {
    const from = filter.from;
    walk.push((eb) => eb('created_at', '>=', from));
  }
  if (filter.to !== undefined) {
    const to = filter.to;
    walk.push((eb) => eb('created_at', '<', to));
  }
  return { walk, check, selective };
}

/** The ids of a user's keys (at most `max` + 1: more than `max` is "too many to merge"). */
async function keysOfUser(db: Executor, userId: string, max: number): Promise<string[]> {
  const rows = await db
    .selectFrom('api_keys')
    .select('id')
    .where('user_id', '=', userId)
    .limit(max + 1)
    .execute();
  return rows.map((r) => r.id);
}

/** The arms of `filter` (none: nothing can match, as for a user with no keys). */
async function planArms(db: Executor, filter: UsageEventFilter): Promise<Arm[]> {
  const postgres = isPostgres(db);
  if (filter.scope.kind === 'user') {
    const keyIds = await keysOfUser(db, filter.scope.userId, MAX_ARMS);
    if (keyIds.length > MAX_ARMS) return [planArm(postgres, filter, { userId: filter.scope.userId })];
    return keyIds.map((keyId) => planArm(postgres, filter, { keyId }));
  }
  if (filter.scope.kind !== 'key' && filter.outcomes !== undefined && filter.outcomes.length > 1) {
    return filter.outcomes.map((outcome) => planArm(postgres, filter, { outcome }));
  }
  return [planArm(postgres, filter, {})];
}

/** Runs a statement, telling `trace` (the benchmark's plans) what it runs. */
async function run<R>(db: Executor, query: { compile(): CompiledQuery<R> }, trace?: (statement: CompiledQuery) => void): Promise<R[]> {
  const compiled = query.compile();
  trace?.(compiled);
  return (await db.executeQuery(compiled)).rows;
}

/** The `budget`-th row of an arm's walk after `start`, found by the index alone; null when the walk ends sooner. */
async function walkEnd(
  db: Executor,
  arm: Arm,
  start: UsagePosition | undefined,
  budget: number,
  trace?: (statement: CompiledQuery) => void,
): Promise<UsagePosition | null> {
  const walk = start === undefined ? arm.walk : [...arm.walk, after(start)];
  const query = db
    .selectFrom('api_key_usage')
    .select(['created_at', 'id'])
    .where((eb) => eb.and(walk.map((c) => c(eb))))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .offset(budget - 1);
  const [row] = await run(db, query, trace);
  return row === undefined ? null : { createdAt: Number(row.created_at), id: Number(row.id) };
}

/** Up to `limit` rows of one arm after `start`, down to `end` when given, newest first. */
function armRows(db: Executor, arm: Arm, start: UsagePosition | undefined, end: UsagePosition | null, limit: number): RowsQuery {
  const conditions = [...arm.walk, ...(start === undefined ? [] : [after(start)]), ...(end === null ? [] : [notPast(end)]), ...arm.check];
  return db
    .selectFrom('api_key_usage')
    .select([...COLUMNS])
    .where((eb) => eb.and(conditions.map((c) => c(eb))))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit) as RowsQuery;
}

/** The arms' rows merged, newest first: each arm in a subquery (an ORDER BY … LIMIT of its own). */
function mergedRows(db: Executor, arms: readonly RowsQuery[], limit: number): { compile(): CompiledQuery<UsageEventRow> } {
  const [first, ...rest] = arms;
  if (first === undefined) throw new Error('no arm');
  if (rest.length === 0) return first;
  let merged = db.selectFrom(first.as('a0')).selectAll();
  rest.forEach((next, i) => {
    merged = merged.unionAll(db.selectFrom(next.as(`a${i + 1}`)).selectAll());
  });
  return merged.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit) as unknown as { compile(): CompiledQuery<UsageEventRow> };
}

const newer = (a: UsagePosition, b: UsagePosition) => a.createdAt > b.createdAt || (a.createdAt === b.createdAt && a.id > b.id);

/**
 * Up to `limit` rows of `filter`, newest first (`created_at` desc, then `id` desc), strictly after `start` when
 * given. A filter no index serves walks a bounded number of rows: fewer rows than `limit`, with `scannedTo`, mean
 * the budget ran out first, not that the rows did. `trace` is told each statement run.
 */
export async function listUsageEvents(
  db: Executor,
  filter: UsageEventFilter,
  page: { after?: UsagePosition | undefined; limit: number; budgets?: readonly number[] | undefined },
  trace?: (statement: CompiledQuery) => void,
): Promise<UsageEventsPage> {
  const { after: start, limit, budgets = SCAN_BUDGETS } = page;
  const arms = await planArms(db, filter);
  if (arms.length === 0) return { rows: [], scannedTo: null };
  if (!arms.some((arm) => arm.selective)) {
    const rows = await run(
      db,
      mergedRows(
        db,
        arms.map((arm) => armRows(db, arm, start, null, limit)),
        limit,
      ),
      trace,
    );
    return { rows, scannedTo: null };
  }
  for (const [attempt, budget] of budgets.entries()) {
    const perArm = Math.max(Math.min(MIN_ARM_BUDGET, budget), Math.floor(budget / arms.length));
    const ends: Array<UsagePosition | null> = [];
    for (const arm of arms) ends.push(arm.selective ? await walkEnd(db, arm, start, perArm, trace) : null);
    const rows = await run(
      db,
      mergedRows(
        db,
        arms.map((arm, i) => armRows(db, arm, start, ends[i] ?? null, limit)),
        limit,
      ),
      trace,
    );
    // Every arm has been read down to the newest end any of them stopped at: the rows older than it are not all known.
    let floor: UsagePosition | null = null;
    for (const end of ends) if (end !== null && (floor === null || newer(end, floor))) floor = end;
    if (floor === null) return { rows, scannedTo: null };
    const bound = floor;
    const known = rows.filter((r) => !newer(bound, { createdAt: Number(r.created_at), id: Number(r.id) }));
    if (known.length >= limit) return { rows: known, scannedTo: null };
    if (attempt === budgets.length - 1) return { rows: known, scannedTo: floor };
  }
  throw new RangeError('no scan budget');
}

/**
 * Where a walk of about `budget` rows of `scope` over [from, to), newest first, ends: the oldest position it
 * reaches, found by the index alone (no row is read), or null when the range holds fewer rows. The rows of
 * `scope` at or after it then number at most `budget`, or `MIN_ARM_BUDGET` per key of a user's keys when that is
 * more: each arm walks its share, and the walk ends at the newest position any arm stopped at. For counts that
 * the per-minute counts cannot give (by endpoint, status class or tag).
 */
export async function scanFloor(
  db: Executor,
  scope: EventScope,
  range: { from: number; to: number },
  budget: number,
  trace?: (statement: CompiledQuery) => void,
): Promise<UsagePosition | null> {
  if (!Number.isSafeInteger(budget) || budget < 1) throw new RangeError('a scan budget is a positive integer');
  const arms = await planArms(db, { scope, ...range });
  const perArm = Math.max(Math.min(MIN_ARM_BUDGET, budget), Math.floor(budget / Math.max(1, arms.length)));
  let floor: UsagePosition | null = null;
  for (const arm of arms) {
    const end = await walkEnd(db, arm, undefined, perArm, trace);
    if (end !== null && (floor === null || newer(end, floor))) floor = end;
  }
  return floor;
}

/**
 * Every row of `filter`, newest first, read `chunk` rows at a time (each chunk one {@link listUsageEvents} going on
 * from where the one before stopped): memory stays one chunk, and no query holds the database for long.
 */
export async function* streamUsageEvents(
  db: Executor,
  filter: UsageEventFilter,
  chunk: number,
  budgets?: readonly number[],
): AsyncGenerator<UsageEventRow[]> {
  let start: UsagePosition | undefined;
  for (;;) {
    const { rows, scannedTo } = await listUsageEvents(db, filter, { after: start, limit: chunk, budgets });
    if (rows.length > 0) yield rows;
    const last = rows[rows.length - 1];
    if (rows.length >= chunk && last !== undefined) start = { createdAt: Number(last.created_at), id: Number(last.id) };
    else if (scannedTo !== null) start = scannedTo;
    else return;
  }
}

/** Whether a user with this id exists. */
export async function userExists(db: Executor, userId: string): Promise<boolean> {
  const row = await db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
  return row !== undefined;
}
