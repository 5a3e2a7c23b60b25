import { type Kysely, sql } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * Per-key usage counts by minute, kept beside the raw rows. The raw rows' index on (api_key_id, created_at)
 * took one insert at a random place per verification: with traffic spread over a few thousand keys, every
 * batch of rows dirtied hundreds of index pages, which made writing a usage row cost about 6× as much as
 * with one busy key. The minute counts are keyed by minute first, so a batch lands in the current minute's
 * few pages; their (api_key_id, minute) index takes one entry per key and minute, not one per request.
 * The raw rows keep their time index (pruning, the edges of a range that does not start on a minute).
 */
export async function up(db: AnyDb): Promise<void> {
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
  await db.schema.dropIndex('api_key_usage_key_created_idx').execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.createIndex('api_key_usage_key_created_idx').on('api_key_usage').columns(['api_key_id', 'created_at']).execute();
  await db.schema.dropTable('api_key_usage_minutes').execute();
}
