import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import type pg from 'pg';
import type { Executor } from '../store/schema.js';

/** The PostgreSQL channel on which instances announce changed keys (payload: the key hash). */
export const KEY_CHANGED_CHANNEL = 'keyward_key_changed';

/** Announces a changed key to every instance listening on this database (delivered after commit). */
export async function notifyKeyChanged(db: Executor, keyHash: string): Promise<void> {
  await sql`select pg_notify(${KEY_CHANGED_CHANNEL}, ${keyHash})`.execute(db);
}

/** Starts receiving key-change notifications on a dedicated connection. */
export async function listenKeyChanged(client: pg.Client): Promise<void> {
  await client.query(`listen ${KEY_CHANGED_CHANNEL}`);
}

/** A trivial round trip on the listening connection, to find out that it silently died. */
export async function pingListener(client: pg.Client): Promise<void> {
  await client.query('select 1');
}

// SQLite has no NOTIFY: processes sharing one SQLite file (`keyward serve`, `keyward gateway`, the CLI) announce
// changed keys in the `key_changes` table, which each of them polls (see services/invalidation.ts).

/** Appends a changed key to the change log (SQLite). */
export async function recordKeyChange(db: Executor, keyHash: string, at: number): Promise<void> {
  await db.insertInto('key_changes').values({ key_hash: keyHash, created_at: at }).execute();
}

/** Deletes change-log rows written before `before` (epoch ms). */
export async function pruneKeyChanges(db: Executor, before: number): Promise<void> {
  await db.deleteFrom('key_changes').where('created_at', '<', before).execute();
}

export interface KeyChange {
  seq: number;
  keyHash: string;
}

/** A connection of its own that reads the change log of a SQLite file, for a poller. */
export interface KeyChangeReader {
  /** SQLite's `data_version`: it moves when another connection (in any process) has committed to the file. */
  dataVersion(): number;
  /** The last sequence number handed out so far (0 if none yet, or the change log is not migrated yet). */
  latest(): number;
  /** The changes after `seq`, oldest first, at most `limit`. */
  since(seq: number, limit: number): KeyChange[];
  close(): void;
}

const missingTable = (error: unknown) => error instanceof SQLite.SqliteError && /no such table/.test(error.message);

/**
 * Opens `path` a second time. Its own connection, not the main one: `data_version` only moves for commits made
 * by other connections, and a statement run on the main connection between a Kysely transaction's statements
 * would read that transaction's uncommitted rows. No busy timeout: a poller that cannot read at once tries
 * again at its next tick instead of blocking the event loop.
 */
export function openKeyChangeReader(path: string): KeyChangeReader {
  const conn = new SQLite(path, { fileMustExist: true });
  const version = conn.prepare('pragma data_version').pluck();
  // Prepared once the table exists: the poller may start before the migration that creates it.
  let latest: SQLite.Statement<[], number | undefined> | null = null;
  let since: SQLite.Statement<[number, number], { seq: number; key_hash: string }> | null = null;
  return {
    dataVersion: () => version.get() as number,
    latest() {
      try {
        // Not max(seq): pruning may have emptied the log; sqlite_sequence keeps the last number handed out.
        latest ??= conn.prepare<[], number | undefined>("select seq from sqlite_sequence where name = 'key_changes'").pluck();
        return latest.get() ?? 0;
      } catch (error) {
        if (missingTable(error)) return 0;
        throw error;
      }
    },
    since(seq, limit) {
      try {
        since ??= conn.prepare<[number, number], { seq: number; key_hash: string }>(
          'select seq, key_hash from key_changes where seq > ? order by seq limit ?',
        );
        return since.all(seq, limit).map((row) => ({ seq: row.seq, keyHash: row.key_hash }));
      } catch (error) {
        if (missingTable(error)) return [];
        throw error;
      }
    },
    close: () => conn.close(),
  };
}
