import { type Kysely, PostgresAdapter } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * `key_changes`: the change log through which processes sharing one SQLite file (`keyward serve`, `keyward
 * gateway`, the CLI) tell each other which keys changed, as PostgreSQL's NOTIFY does for its instances. Its
 * sequence must never hand out a number twice, even after pruning has emptied the table: a reader remembers the
 * last number it saw. On SQLite that takes AUTOINCREMENT (a plain row id reuses the highest freed number). Created
 * on PostgreSQL too, so both databases have one schema; nothing writes to it there.
 */
export async function up(db: AnyDb): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  await atomically(db, async (trx) => {
    await trx.schema
      .createTable('key_changes')
      .addColumn('seq', postgres ? 'bigint' : 'integer', (c) =>
        postgres ? c.primaryKey().generatedAlwaysAsIdentity() : c.primaryKey().autoIncrement(),
      )
      .addColumn('key_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
  });
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.dropTable('key_changes').execute();
  });
}
