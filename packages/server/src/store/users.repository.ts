import type { User } from '../domain.js';
import type { Dialect } from './database.js';
import type { Executor, UserRow } from './schema.js';

export function toUser(row: UserRow): User {
  return {
    id: row.id,
    externalId: row.external_id,
    email: row.email,
    tier: row.tier,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export async function findUserById(db: Executor, id: string): Promise<User | undefined> {
  const row = await db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toUser(row);
}

/**
 * Reads a user and, on PostgreSQL, locks the row until the transaction ends, so that concurrent key
 * creations for one user are serialized (SQLite transactions are already serialized on one connection).
 */
export async function findUserForUpdate(db: Executor, id: string, dialect: Dialect): Promise<User | undefined> {
  let query = db.selectFrom('users').selectAll().where('id', '=', id);
  if (dialect === 'postgres') query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row && toUser(row);
}
