import { type Kysely, PostgresAdapter, sql } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * Usage rows that can be read back (`GET /v1/usage/events`), newest first, by key, outcome, status and tag:
 *
 * - `tags`: the request's tags (`route:/v1/companies`, `region:eu`), a JSON array or null (jsonb on PostgreSQL).
 * - `(api_key_id, created_at)` (SPEC §3): one key's rows, and a user's (one range per key), in time order. 0002
 *   dropped it to make writes cheaper; reading a key's rows back without it scans every key's rows of the range.
 * - `(outcome, created_at)` and `(status_code / 100, created_at)`: a rare outcome or status class (`EXPIRED`,
 *   `5xx`) in time order, without scanning the common ones. Few distinct values lead each of them, so a batch
 *   of rows lands in a few pages at their ends (unlike the key index).
 * - PostgreSQL: each of these ends with `id`, and the time index becomes `(created_at, id)`: rows are read in
 *   the order (created_at, id) pages follow, from the index alone. SQLite's indexes end with the row id already.
 * - PostgreSQL: a GIN index on `tags` for `tags @> '["region:eu"]'`. SQLite has no index for values inside JSON:
 *   a tag filter is checked on the rows of a bounded walk.
 *
 * On PostgreSQL, building these indexes on a large table holds writes to it until done (migrations run in a
 * transaction, which `create index concurrently` cannot).
 */
export async function up(db: AnyDb): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  // PostgreSQL's indexes name `id` last, for the order pages follow; SQLite's hold the row id anyway.
  const id = postgres ? sql`, id` : sql``;
  await atomically(db, async (trx) => {
    await trx.schema
      .alterTable('api_key_usage')
      .addColumn('tags', postgres ? 'jsonb' : 'text')
      .execute();
    await sql`create index api_key_usage_key_created_idx on api_key_usage (api_key_id, created_at${id})`.execute(trx);
    await sql`create index api_key_usage_outcome_created_idx on api_key_usage (outcome, created_at${id})`.execute(trx);
    await sql`create index api_key_usage_status_class_created_idx on api_key_usage ((status_code / 100), created_at${id})`.execute(trx);
    if (postgres) {
      await sql`create index api_key_usage_created_id_idx on api_key_usage (created_at, id)`.execute(trx);
      await trx.schema.dropIndex('api_key_usage_created_idx').execute();
      await sql`create index api_key_usage_tags_idx on api_key_usage using gin (tags jsonb_path_ops)`.execute(trx);
    }
  });
}

export async function down(db: AnyDb): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  await atomically(db, async (trx) => {
    if (postgres) {
      await trx.schema.dropIndex('api_key_usage_tags_idx').execute();
      await trx.schema.createIndex('api_key_usage_created_idx').on('api_key_usage').column('created_at').execute();
      await trx.schema.dropIndex('api_key_usage_created_id_idx').execute();
    }
    await trx.schema.dropIndex('api_key_usage_status_class_created_idx').execute();
    await trx.schema.dropIndex('api_key_usage_outcome_created_idx').execute();
    await trx.schema.dropIndex('api_key_usage_key_created_idx').execute();
    await trx.schema.alterTable('api_key_usage').dropColumn('tags').execute();
  });
}
