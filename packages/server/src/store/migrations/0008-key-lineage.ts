import { type Kysely, PostgresAdapter, sql } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * `api_keys.lineage_id`: the id of the first key of a key's roll lineage — its own id for a key never rolled
 * from another. A roll gives the new key a new id and hash but the same lineage, so a host app can own
 * resources by it. Keys already there get it by following `rolled_from` back to the first key still stored
 * (a key whose predecessor was deleted starts its lineage). NOT NULL on PostgreSQL; SQLite cannot add that to an
 * existing column, and Keyward always writes it. `rolled_from` gets an index (where set) for the backfill's walk
 * and for finding a rolled key's successor.
 */
export async function up(db: AnyDb): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  await atomically(db, async (trx) => {
    await trx.schema.alterTable('api_keys').addColumn('lineage_id', 'text').execute();
    await trx.schema
      .createIndex('api_keys_rolled_from_idx')
      .on('api_keys')
      .column('rolled_from')
      .where(sql.ref('rolled_from'), 'is not', null)
      .execute();
    // From each first key forward along `rolled_from` (indexed): one pass, on both databases (UPDATE … FROM needs
    // SQLite 3.33; better-sqlite3 bundles a later one).
    await sql`
      with recursive lineage (id, root) as (
        select a.id, a.id from api_keys a
        where a.rolled_from is null or not exists (select 1 from api_keys p where p.id = a.rolled_from)
        union all
        select k.id, l.root from api_keys k join lineage l on k.rolled_from = l.id
      )
      update api_keys set lineage_id = lineage.root from lineage where lineage.id = api_keys.id`.execute(trx);
    if (postgres) await sql`alter table api_keys alter column lineage_id set not null`.execute(trx);
    await trx.schema.createIndex('api_keys_lineage_id_idx').on('api_keys').column('lineage_id').execute();
  });
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.dropIndex('api_keys_lineage_id_idx').execute();
    await trx.schema.dropIndex('api_keys_rolled_from_idx').execute();
    await trx.schema.alterTable('api_keys').dropColumn('lineage_id').execute();
  });
}
