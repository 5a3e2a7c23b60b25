import { type Kysely, sql } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * `api_keys.budget_key_id`: the key whose rate limit and quota a key counts against — set on a rolled key, for
 * its grace period, to the key that replaced it (so the old key keeps working without adding budget); null for
 * a key that counts against its own. Indexed where set: a roll re-points every key that pointed at the one
 * rolled.
 */
export async function up(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.alterTable('api_keys').addColumn('budget_key_id', 'text').execute();
    await trx.schema
      .createIndex('api_keys_budget_key_idx')
      .on('api_keys')
      .column('budget_key_id')
      .where(sql.ref('budget_key_id'), 'is not', null)
      .execute();
  });
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.dropIndex('api_keys_budget_key_idx').execute();
    await trx.schema.alterTable('api_keys').dropColumn('budget_key_id').execute();
  });
}
