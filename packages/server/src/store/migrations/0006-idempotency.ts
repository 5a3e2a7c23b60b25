import type { Kysely } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * `idempotency_keys`: one row per `Idempotency-Key` a caller sent with a create or roll that succeeded, written
 * in the transaction that created the key. The primary key (caller, idempotency_key) is what makes concurrent
 * repeats exact: of N inserts of one pair, one wins and the others wait for it, then see it. `request_hash` is
 * the SHA-256 of the request (method, path, body) to tell a repeat from a different request; `key_id` the key
 * created. Never a plaintext key. Rows older than 24 h are pruned (indexed by `created_at`).
 */
export async function up(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema
      .createTable('idempotency_keys')
      .addColumn('caller', 'text', (c) => c.notNull())
      .addColumn('idempotency_key', 'text', (c) => c.notNull())
      .addColumn('request_hash', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('idempotency_keys_pk', ['caller', 'idempotency_key'])
      .execute();
    await trx.schema.createIndex('idempotency_keys_created_at_idx').on('idempotency_keys').column('created_at').execute();
  });
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.dropTable('idempotency_keys').execute();
  });
}
