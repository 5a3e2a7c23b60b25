import type SQLite from 'better-sqlite3';
import { CompiledQuery, sql } from 'kysely';
import type { ApiKey, HashScheme, RefillInterval } from '../domain.js';
import type { Dialect } from '../store/database.js';
import type { ApiKeyRow, ApiKeyUpdate, Executor, NewApiKeyRow } from '../store/schema.js';

export function toApiKey(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    keyHash: row.key_hash,
    keyPrefix: row.key_prefix,
    hashScheme: row.hash_scheme as HashScheme,
    userId: row.user_id,
    isAdmin: Boolean(row.is_admin),
    scopes: JSON.parse(row.scopes) as string[],
    metadata: JSON.parse(row.metadata) as Record<string, unknown>,
    isActive: Boolean(row.is_active),
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    rolledFrom: row.rolled_from,
    lineageId: row.lineage_id,
    budgetKeyId: row.budget_key_id,
    rolledAt: row.rolled_at,
    rateLimit:
      row.rate_limit_limit === null || row.rate_limit_window_seconds === null
        ? null
        : { limit: row.rate_limit_limit, windowSeconds: row.rate_limit_window_seconds },
    quota:
      row.quota_remaining === null
        ? null
        : {
            remaining: row.quota_remaining,
            refill:
              row.quota_refill_amount === null || row.quota_refill_interval === null
                ? null
                : { amount: row.quota_refill_amount, interval: row.quota_refill_interval as RefillInterval },
            lastRefillAt: row.quota_last_refill_at,
          },
  };
}

/** The columns for the given fields of a key; only fields present in `key` are returned. */
export function toApiKeyColumns(key: Partial<ApiKey>): ApiKeyUpdate {
  const columns: ApiKeyUpdate = {};
  if (key.id !== undefined) columns.id = key.id;
  if (key.name !== undefined) columns.name = key.name;
  if (key.description !== undefined) columns.description = key.description;
  if (key.keyHash !== undefined) columns.key_hash = key.keyHash;
  if (key.keyPrefix !== undefined) columns.key_prefix = key.keyPrefix;
  if (key.hashScheme !== undefined) columns.hash_scheme = key.hashScheme;
  if (key.userId !== undefined) columns.user_id = key.userId;
  if (key.isAdmin !== undefined) columns.is_admin = key.isAdmin;
  if (key.scopes !== undefined) columns.scopes = JSON.stringify(key.scopes);
  if (key.metadata !== undefined) columns.metadata = JSON.stringify(key.metadata);
  if (key.isActive !== undefined) columns.is_active = key.isActive;
  if (key.createdAt !== undefined) columns.created_at = key.createdAt;
  if (key.createdBy !== undefined) columns.created_by = key.createdBy;
  if (key.updatedAt !== undefined) columns.updated_at = key.updatedAt;
  if (key.lastUsedAt !== undefined) columns.last_used_at = key.lastUsedAt;
  if (key.expiresAt !== undefined) columns.expires_at = key.expiresAt;
  if (key.revokedAt !== undefined) columns.revoked_at = key.revokedAt;
  if (key.rolledFrom !== undefined) columns.rolled_from = key.rolledFrom;
  if (key.lineageId !== undefined) columns.lineage_id = key.lineageId;
  if (key.budgetKeyId !== undefined) columns.budget_key_id = key.budgetKeyId;
  if (key.rolledAt !== undefined) columns.rolled_at = key.rolledAt;
  if (key.rateLimit !== undefined) {
    columns.rate_limit_limit = key.rateLimit?.limit ?? null;
    columns.rate_limit_window_seconds = key.rateLimit?.windowSeconds ?? null;
  }
  if (key.quota !== undefined) {
    columns.quota_remaining = key.quota?.remaining ?? null;
    columns.quota_refill_amount = key.quota?.refill?.amount ?? null;
    columns.quota_refill_interval = key.quota?.refill?.interval ?? null;
    columns.quota_last_refill_at = key.quota?.lastRefillAt ?? null;
  }
  return columns;
}

export async function insertKey(db: Executor, key: ApiKey): Promise<void> {
  await db
    .insertInto('api_keys')
    .values(toApiKeyColumns(key) as NewApiKeyRow)
    .execute();
}

export async function findKeyById(db: Executor, id: string): Promise<ApiKey | undefined> {
  const row = await db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toApiKey(row);
}

/** Reads a key and, on PostgreSQL, locks its row until the transaction ends (SQLite writes are serialized anyway). */
export async function findKeyForUpdate(db: Executor, id: string, dialect: Dialect): Promise<ApiKey | undefined> {
  let query = db.selectFrom('api_keys').selectAll().where('id', '=', id);
  if (dialect === 'postgres') query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row && toApiKey(row);
}

export async function findKeyByHash(db: Executor, keyHash: string): Promise<ApiKey | undefined> {
  const row = await db.selectFrom('api_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
  return row && toApiKey(row);
}

/** Imported bcrypt keys are found by their stored look-up prefix, then checked against the hash. */
export async function findKeysByPrefix(db: Executor, keyPrefix: string, scheme: HashScheme): Promise<ApiKey[]> {
  const rows = await db
    .selectFrom('api_keys')
    .selectAll()
    .where('key_prefix', '=', keyPrefix)
    .where('hash_scheme', '=', scheme)
    .limit(10)
    .execute();
  return rows.map(toApiKey);
}

export interface KeyListFilter {
  includeInactive: boolean;
  userId?: string | undefined;
  /** Only keys not owned by a user (admin and service keys). */
  ownerless?: boolean;
  limit: number;
  /** Return keys older than this id (ids are UUIDv7, so they sort by creation). */
  before?: string | undefined;
  /** Only keys whose name or display prefix contains this text (any case), or whose id is exactly it. */
  search?: string | undefined;
}

/** `text` as a LIKE pattern matching it anywhere, its `%`, `_` and `\` taken literally (escaped with `\`). */
export function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Newest first; fetches `limit + 1` rows so the caller can tell whether a next page exists. */
export async function listKeys(db: Executor, filter: KeyListFilter): Promise<ApiKey[]> {
  let query = db
    .selectFrom('api_keys')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(filter.limit + 1);
  if (!filter.includeInactive) query = query.where('is_active', '=', true);
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
  if (filter.ownerless) query = query.where('user_id', 'is', null);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  const search = filter.search;
  if (search !== undefined) {
    // lower() on both sides, not ILIKE: one statement for SQLite and PostgreSQL (SQLite's lower() folds ASCII only).
    const pattern = containsPattern(search);
    query = query.where((eb) =>
      eb.or([
        sql<boolean>`lower(${eb.ref('name')}) like lower(${pattern}) escape '\\'`,
        sql<boolean>`lower(${eb.ref('key_prefix')}) like lower(${pattern}) escape '\\'`,
        eb('id', '=', search),
      ]),
    );
  }
  return (await query.execute()).map(toApiKey);
}

export async function updateKey(db: Executor, id: string, changes: Partial<ApiKey>): Promise<ApiKey | undefined> {
  const row = await db.updateTable('api_keys').set(toApiKeyColumns(changes)).where('id', '=', id).returningAll().executeTakeFirst();
  return row && toApiKey(row);
}

/**
 * Points key `id`, and every key that counted against it, at `budgetKeyId`'s rate limit and quota (a roll:
 * the key and any keys still in grace from earlier rolls now spend the new key's budget). Keys already expired
 * at `now` are left alone: they never verify again. Returns the keys changed, for their caches to be told.
 */
export async function pointBudgetAt(db: Executor, id: string, budgetKeyId: string, now: number): Promise<ApiKey[]> {
  const rows = await db
    .updateTable('api_keys')
    .set({ budget_key_id: budgetKeyId, updated_at: now })
    .where((eb) => eb.or([eb('id', '=', id), eb('budget_key_id', '=', id)]))
    .where('expires_at', '>', now)
    .returningAll()
    .execute();
  return rows.map(toApiKey);
}

/** The newest key rolled from key `id`, if any. */
async function successorOf(db: Executor, id: string): Promise<ApiKey | undefined> {
  const row = await db.selectFrom('api_keys').selectAll().where('rolled_from', '=', id).orderBy('id', 'desc').limit(1).executeTakeFirst();
  return row && toApiKey(row);
}

/**
 * The live key that replaced a rolled key: its successor (`rolled_from`), or that one's, up to the first one not
 * rolled itself; none when that one is revoked, expired or deleted. It starts from the key's budget owner, which a
 * roll with grace points at the newest key of the lineage, so it usually reads one row by id (this runs only when
 * a roll is refused).
 */
export async function findLiveReplacement(db: Executor, key: ApiKey, now: number): Promise<ApiKey | undefined> {
  let head = key.budgetKeyId === null ? undefined : await findKeyById(db, key.budgetKeyId);
  head ??= await successorOf(db, key.id);
  // Bounded: a lineage is a chain (each roll records its source), but a bound costs nothing.
  for (let step = 0; head !== undefined && head.rolledAt !== null && step < 100; step++) head = await successorOf(db, head.id);
  if (head === undefined || head.rolledAt !== null || head.revokedAt !== null) return undefined;
  return head.expiresAt === null || head.expiresAt > now ? head : undefined;
}

export async function deleteKey(db: Executor, id: string): Promise<boolean> {
  const result = await db.deleteFrom('api_keys').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * Keys a user holds that count against the tier limit: live ones, i.e. not revoked and not expired
 * (deactivated keys still count, they can be activated again; an expired one never works again).
 */
export async function countKeysOfUser(db: Executor, userId: string, now: number): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

// Any fixed 64-bit number works; this one is "keyward bootstrap" in no particular encoding, just unlikely to collide.
const BOOTSTRAP_LOCK_ID = 0x6b_77_62_6f_6f_74n;

/**
 * Serializes bootstrap across instances: on PostgreSQL a transaction-scoped advisory lock, released at commit
 * or rollback. SQLite needs none: its write transactions are already serialized.
 */
export async function lockBootstrap(db: Executor, dialect: Dialect): Promise<void> {
  if (dialect === 'postgres') await sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK_ID.toString()}::bigint)`.execute(db);
}

/** Whether an error is a unique-constraint violation (PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE). */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null || !('code' in error)) return false;
  return error.code === '23505' || error.code === 'SQLITE_CONSTRAINT_UNIQUE';
}

export async function countUsableAdminKeys(db: Executor, now: number): Promise<number> {
  const row = await db
    .selectFrom('api_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('is_admin', '=', true)
    .where('is_active', '=', true)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Writes coalesced `last_used_at` values: one statement per key, all in the caller's transaction. */
/**
 * The statements that write `last_used_at` (id → epoch ms), compiled for `db`'s dialect, to run in one
 * transaction (see `StatementWriter`): one per 500 keys, not one per key, since a flush after busy seconds can
 * hold thousands of keys. A time never moves back.
 */
export function lastUsedStatements(db: Executor, lastUsed: ReadonlyMap<string, number>): CompiledQuery[] {
  const entries = [...lastUsed];
  const statements: CompiledQuery[] = [];
  for (let i = 0; i < entries.length; i += 500) {
    const rows = entries.slice(i, i + 500).map(([id, at]) => sql`(${id}, cast(${at} as bigint))`);
    statements.push(
      sql`with v(id, at) as (values ${sql.join(rows)})
      update api_keys set last_used_at = v.at from v
      where api_keys.id = v.id and (api_keys.last_used_at is null or api_keys.last_used_at < v.at)`.compile(db),
    );
  }
  return statements;
}

/** Start instants (epoch ms) of the current refill periods: a quota last refilled before one is due. */
export interface RefillPeriodStarts {
  day: number;
  month: number;
}

/** The quota columns of a key, as stored (no refill applied); `undefined` when the key does not exist. */
export async function readKeyQuota(db: Executor, keyId: string): Promise<Pick<ApiKey, 'quota'> | undefined> {
  const row = await db
    .selectFrom('api_keys')
    .select(['quota_remaining', 'quota_refill_amount', 'quota_refill_interval', 'quota_last_refill_at'])
    .where('id', '=', keyId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    quota:
      row.quota_remaining === null
        ? null
        : {
            remaining: Number(row.quota_remaining),
            refill:
              row.quota_refill_amount === null || row.quota_refill_interval === null
                ? null
                : { amount: Number(row.quota_refill_amount), interval: row.quota_refill_interval as RefillInterval },
            lastRefillAt: row.quota_last_refill_at === null ? null : Number(row.quota_last_refill_at),
          },
  };
}

/** What one quota spend binds: the statement's parameters, by name. */
interface SpendValues {
  keyId: string;
  cost: number;
  now: number;
  day: number;
  month: number;
}

// The spend statement, as the query builder builds it; `v` fills its parameters (the values, or markers).
function spendQuery(db: Executor, v: { keyId: string; cost: unknown; now: unknown; day: unknown; month: unknown }) {
  const due = sql<boolean>`(quota_refill_amount is not null and (quota_last_refill_at is null
    or (quota_refill_interval = 'day' and quota_last_refill_at < ${v.day})
    or (quota_refill_interval = 'month' and quota_last_refill_at < ${v.month})))`;
  return db
    .updateTable('api_keys')
    .set({
      quota_remaining: sql<number>`case when ${due} then quota_refill_amount - ${v.cost} else quota_remaining - ${v.cost} end`,
      quota_last_refill_at: sql<number>`case when ${due} then ${v.now} else quota_last_refill_at end`,
    })
    .where('id', '=', v.keyId)
    .where('quota_remaining', 'is not', null)
    .where(sql<boolean>`case when ${due} then quota_refill_amount else quota_remaining end >= ${v.cost}`)
    .returning('quota_remaining');
}

interface SpendStatement {
  sql: string;
  /** Which value goes in each parameter, in order. */
  order: (keyof SpendValues)[];
}

// The spend runs on every verification of a metered key, and building and compiling it cost more than
// SQLite takes to run it. So its text is compiled once per dialect (the adapter decides `?` or `$n`), with
// a marker in each parameter saying which value goes there (`due` alone uses `day` and `month` three times).
const spendStatements = new WeakMap<object, SpendStatement>();
const SPEND_MARKERS = { keyId: 'keyId', cost: 'cost', now: 'now', day: 'day', month: 'month' } as const satisfies Record<
  keyof SpendValues,
  string
>;
const isSpendValue = (parameter: unknown): parameter is keyof SpendValues =>
  typeof parameter === 'string' && Object.hasOwn(SPEND_MARKERS, parameter);

function spendStatement(db: Executor): SpendStatement {
  const adapter = db.getExecutor().adapter;
  let statement = spendStatements.get(adapter);
  if (statement === undefined) {
    const compiled = spendQuery(db, SPEND_MARKERS).compile();
    const order = compiled.parameters.map((parameter) => {
      if (!isSpendValue(parameter)) throw new Error('the quota spend statement has a parameter without a marker');
      return parameter;
    });
    statement = { sql: compiled.sql, order };
    spendStatements.set(adapter, statement);
  }
  return statement;
}

function spendParameters(order: readonly (keyof SpendValues)[], v: SpendValues): unknown[] {
  return order.map((name) => v[name]);
}

/**
 * The statement that spends `cost` from a key's quota, refilling it first when a refill is due; its WHERE
 * clause refuses a spend that would go below zero. Row locking makes it exact under concurrency on
 * PostgreSQL (a waiting UPDATE re-checks the WHERE against the committed row) and SQLite (writes are
 * serialized), across any number of instances. It returns the remaining quota as its one row, or no row when
 * nothing was spent (no such key, no quota, or not enough left). Compiled once per dialect.
 */
export function spendQuotaStatement(
  db: Executor,
  keyId: string,
  cost: number,
  now: number,
  periods: RefillPeriodStarts,
): CompiledQuery<{ quota_remaining: number | string | null }> {
  const statement = spendStatement(db);
  return CompiledQuery.raw(statement.sql, spendParameters(statement.order, { keyId, cost, now, day: periods.day, month: periods.month }));
}

/**
 * {@link spendQuotaStatement} run at once: the remaining quota, or `undefined` when nothing was spent. Throws
 * on failure; throws an error with code `SQLITE_BUSY` at once, having changed nothing, when another connection
 * holds the write lock.
 */
export type DirectQuotaSpend = (keyId: string, cost: number, now: number, periods: RefillPeriodStarts) => number | undefined;

/**
 * {@link spendQuotaStatement} run synchronously on a better-sqlite3 connection, prepared at its first use (the
 * container is built before the migrations create the table). It never waits for the write lock, since waiting
 * would stop the event loop: the connection's busy timeout is 0 for the one statement. (Set with `exec` each
 * time: SQLite applies `pragma busy_timeout` when a statement is compiled, so a prepared one cannot be reused
 * for it; the pair costs ≈ 1.5 µs.) Only for use while no transaction is open on that connection: the spend
 * would join it, and be undone with it.
 */
export function directQuotaSpender(sqlite: SQLite.Database, db: Executor): DirectQuotaSpend {
  let prepared: { run: SQLite.Statement<unknown[], number | null>; order: (keyof SpendValues)[]; restore: string } | null = null;
  return (keyId, cost, now, periods) => {
    if (prepared === null) {
      const statement = spendStatement(db);
      const timeout = Math.max(0, Math.trunc(Number(sqlite.pragma('busy_timeout', { simple: true }))));
      prepared = {
        run: sqlite.prepare<unknown[], number | null>(statement.sql).pluck(),
        order: statement.order,
        restore: `pragma busy_timeout = ${timeout}`,
      };
    }
    const { run, order, restore } = prepared;
    sqlite.exec('pragma busy_timeout = 0');
    try {
      const remaining = run.get(spendParameters(order, { keyId, cost, now, day: periods.day, month: periods.month }));
      return remaining === null || remaining === undefined ? undefined : Number(remaining);
    } finally {
      sqlite.exec(restore);
    }
  };
}
