import type { Kysely } from 'kysely';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * Runs a migration's steps in one transaction. Kysely runs PostgreSQL migrations in a transaction, SQLite ones
 * not: a crash half-way through would leave part of the change behind and the next attempt failing. SQLite's
 * DDL is transactional too, so it gets one here.
 */
export async function atomically(db: AnyDb, steps: (db: AnyDb) => Promise<void>): Promise<void> {
  if (db.isTransaction) await steps(db);
  else await db.transaction().execute(steps);
}
