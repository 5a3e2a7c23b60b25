import { sql } from 'kysely';
import type pg from 'pg';
import type { Executor } from './schema.js';

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
