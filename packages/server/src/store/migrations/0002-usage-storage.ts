import { type Kysely, PostgresAdapter, sql } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

const USAGE_COLUMNS = 'api_key_id, endpoint, method, status_code, ip_address, user_agent, response_time_ms, outcome, created_at';

/**
 * Usage storage for one row per verification at tens of thousands of rows a second:
 *
 * - Per-key counts by minute replace the raw rows' index on (api_key_id, created_at). That index took one
 *   insert at a random place per verification: with traffic spread over a few thousand keys, every batch
 *   of rows dirtied hundreds of index pages, and a usage row cost about 6× as much to write as with one
 *   busy key. The counts are keyed by minute first, so a batch lands in the current minute's few pages;
 *   their (api_key_id, minute) index takes one entry per key and minute, not one per request.
 * - Raw rows get a generated integer id instead of a text UUID: on SQLite the row id itself (one B-tree
 *   less per row), on PostgreSQL an identity column. Nothing outside the database refers to these ids.
 *
 * The raw rows keep their time index (pruning, and the ends of a range that does not start on a minute).
 */
export async function up(db: AnyDb): Promise<void> {
  await atomically(db, upSteps);
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, downSteps);
}

async function upSteps(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('api_key_usage_minutes')
    .addColumn('minute', 'bigint', (c) => c.notNull())
    // '' stands for "no key" (unknown or malformed keys): primary-key columns cannot be null.
    .addColumn('api_key_id', 'text', (c) => c.notNull())
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('count', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('api_key_usage_minutes_pk', ['minute', 'api_key_id', 'outcome'])
    .execute();
  await db.schema.createIndex('api_key_usage_minutes_key_idx').on('api_key_usage_minutes').columns(['api_key_id', 'minute']).execute();
  // The counts of the rows already there, so usage queries answer the same before and after.
  await sql`insert into api_key_usage_minutes (minute, api_key_id, outcome, count)
    select (created_at / 60000) * 60000, coalesce(api_key_id, ''), outcome, count(*)
    from api_key_usage
    group by (created_at / 60000) * 60000, coalesce(api_key_id, ''), outcome`.execute(db);
  await rebuildUsage(db, 'integer');
}

async function downSteps(db: AnyDb): Promise<void> {
  await rebuildUsage(db, 'text');
  await db.schema.createIndex('api_key_usage_key_created_idx').on('api_key_usage').columns(['api_key_id', 'created_at']).execute();
  await db.schema.dropTable('api_key_usage_minutes').execute();
}

/** Copies the raw rows into a table of the same columns with an `id` of the given kind, oldest first. */
async function rebuildUsage(db: AnyDb, ids: 'integer' | 'text'): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  await db.schema
    .createTable('api_key_usage_next')
    .addColumn('id', ids === 'text' ? 'text' : postgres ? 'bigint' : 'integer', (c) =>
      ids === 'integer' && postgres ? c.primaryKey().generatedByDefaultAsIdentity() : c.primaryKey(),
    )
    .addColumn('api_key_id', 'text')
    .addColumn('endpoint', 'text')
    .addColumn('method', 'text')
    .addColumn('status_code', 'integer')
    .addColumn('ip_address', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('response_time_ms', 'integer')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  // Going back to text ids, the integer ids become their decimal text (still unique).
  const id = ids === 'text' ? sql.raw('cast(id as text), ') : sql.raw('');
  const idColumn = ids === 'text' ? sql.raw('id, ') : sql.raw('');
  await sql`insert into api_key_usage_next (${idColumn}${sql.raw(USAGE_COLUMNS)})
    select ${id}${sql.raw(USAGE_COLUMNS)} from api_key_usage order by created_at, id`.execute(db);
  await db.schema.dropTable('api_key_usage').execute();
  await db.schema.alterTable('api_key_usage_next').renameTo('api_key_usage').execute();
  await db.schema.createIndex('api_key_usage_created_idx').on('api_key_usage').column('created_at').execute();
}
