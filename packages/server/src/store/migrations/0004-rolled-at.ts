import { type Kysely, sql } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * `api_keys.rolled_at`: when a key was rolled (replaced by a new one); null for a key never rolled. Kept on the
 * key itself, so that a roll stays a fact after its replacement is deleted: a rolled key is never given a longer
 * life but by an admin. Keys rolled before this migration get their last update's time.
 */
export async function up(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.alterTable('api_keys').addColumn('rolled_at', 'bigint').execute();
    await sql`update api_keys set rolled_at = updated_at where id in (select rolled_from from api_keys where rolled_from is not null)`.execute(
      trx,
    );
  });
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.alterTable('api_keys').dropColumn('rolled_at').execute();
  });
}
