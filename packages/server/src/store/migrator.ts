import { type Kysely, type Migration, type MigrationResultSet, Migrator, PostgresAdapter, sql } from 'kysely';
import { type Db, openDatabase } from './database.js';
import * as initial from './migrations/0001-initial.js';
import * as usageStorage from './migrations/0002-usage-storage.js';
import * as rollBudget from './migrations/0003-roll-budget.js';
import * as rolledAt from './migrations/0004-rolled-at.js';
import * as keyChanges from './migrations/0005-key-changes.js';
import * as idempotency from './migrations/0006-idempotency.js';
import * as usageEvents from './migrations/0007-usage-events.js';
import * as keyLineage from './migrations/0008-key-lineage.js';
import * as events from './migrations/0009-events.js';
import type { Database } from './schema.js';

// Migrations are imported, not read from a folder, so the built CLI and the tests run the same list.
const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-usage-storage': usageStorage,
  '0003-roll-budget': rollBudget,
  '0004-rolled-at': rolledAt,
  '0005-key-changes': keyChanges,
  '0006-idempotency': idempotency,
  '0007-usage-events': usageEvents,
  '0008-key-lineage': keyLineage,
  '0009-events': events,
};

export interface MigrationStatus {
  name: string;
  executedAt: Date | null;
}

// Unless told a schema, Kysely looks for its bookkeeping tables in every schema it can see: on a PostgreSQL
// database shared by several schemas (other apps, one schema per test) it finds another schema's
// `kysely_migration`, skips creating ours, then fails. So they live in the connection's current schema.
async function migrator(db: Kysely<Database>): Promise<Migrator> {
  let migrationTableSchema: string | undefined;
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
    migrationTableSchema = rows[0]?.schema ?? undefined;
  }
  return new Migrator({
    db,
    provider: { getMigrations: async () => MIGRATIONS },
    ...(migrationTableSchema ? { migrationTableSchema } : {}),
  });
}

function unwrap({ error, results }: MigrationResultSet): string[] {
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).map((r) => r.migrationName);
}

/** Applies every pending migration; returns the names applied. */
export async function migrateUp(db: Kysely<Database>): Promise<string[]> {
  return unwrap(await (await migrator(db)).migrateToLatest());
}

/** Reverts the most recent migration; returns its name (none if nothing was applied). */
export async function migrateDown(db: Kysely<Database>): Promise<string[]> {
  return unwrap(await (await migrator(db)).migrateDown());
}

export async function migrationStatus(db: Kysely<Database>): Promise<MigrationStatus[]> {
  const list = await (await migrator(db)).getMigrations();
  return list.map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
}

/** How long migrations may take: a long index build, or waiting for another instance's migration lock. */
const MIGRATION_TIMEOUT_MS = 600_000;

/**
 * Migrates the database at `url` up, on a connection of its own without `DATABASE_TIMEOUT_MS` (which bounds the
 * requests' queries, not a schema change). An in-memory SQLite database exists only on `db`'s connection, so
 * it is migrated there.
 */
export async function migrateUpAt(db: Db, url: string): Promise<string[]> {
  if (db.dialect === 'sqlite' && url.endsWith(':memory:')) return migrateUp(db.db);
  const own = openDatabase(url, { timeoutMs: MIGRATION_TIMEOUT_MS });
  try {
    return await migrateUp(own.db);
  } finally {
    await own.close();
  }
}
