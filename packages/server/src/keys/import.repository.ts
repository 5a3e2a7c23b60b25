import { sql } from 'kysely';
import type { Dialect } from '../store/database.js';
import type { Executor } from '../store/schema.js';

/** An arbitrary, fixed advisory-lock id for imports ("keyw" in ASCII). */
const IMPORT_LOCK_ID = 0x6b657977;

/**
 * Holds imports one after another until `trx` ends. Each batch looks a key's hash up, then inserts it: on
 * PostgreSQL two batches at once would both find nothing and the second would fail on the unique hash (a 500
 * for a re-sent batch) instead of answering `skipped`. SQLite runs one write transaction at a time already.
 */
export async function lockImports(trx: Executor, dialect: Dialect): Promise<void> {
  if (dialect === 'postgres') await sql`select pg_advisory_xact_lock(${IMPORT_LOCK_ID})`.execute(trx);
}
