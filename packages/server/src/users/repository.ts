import type { ExpressionBuilder } from 'kysely';
import type { ApiKey, User } from '../domain.js';
import type { Dialect } from '../store/database.js';
import type { Database, Executor, UserRow, UserUpdate } from '../store/schema.js';

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

/** A user with the number of keys they own, all states (the users API shows it). */
export interface UserWithKeyCount extends User {
  keyCount: number;
}

// The keys a user owns, counted in the statement that reads the user (a correlated subquery on the
// `api_keys.user_id` index): a page of users is one query, not one per user.
const withKeyCount = (eb: ExpressionBuilder<Database, 'users'>) =>
  eb
    .selectFrom('api_keys')
    .select((k) => k.fn.countAll<number | string>().as('n'))
    .whereRef('api_keys.user_id', '=', 'users.id')
    .as('key_count');

const toUserWithKeyCount = (row: UserRow & { key_count: number | string | null }): UserWithKeyCount => ({
  ...toUser(row),
  keyCount: Number(row.key_count ?? 0),
});

/** A user and how many keys they own. */
export async function findUserWithKeyCount(db: Executor, id: string): Promise<UserWithKeyCount | undefined> {
  const row = await db.selectFrom('users').selectAll('users').select(withKeyCount).where('users.id', '=', id).executeTakeFirst();
  return row && toUserWithKeyCount(row);
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

export async function findUserByExternalId(db: Executor, externalId: string): Promise<User | undefined> {
  const row = await db.selectFrom('users').selectAll().where('external_id', '=', externalId).executeTakeFirst();
  return row && toUser(row);
}

/**
 * Inserts a user unless one with the same `external_id` exists; returns the inserted user, or `undefined`
 * on that conflict. `ON CONFLICT DO NOTHING` makes concurrent inserts of one external id safe on both
 * dialects (PostgreSQL waits for the other transaction, then does nothing), with no error to classify.
 */
export async function insertUserIfAbsent(db: Executor, user: User): Promise<User | undefined> {
  const row = await db
    .insertInto('users')
    .values({
      id: user.id,
      external_id: user.externalId,
      email: user.email,
      tier: user.tier,
      created_at: user.createdAt,
      updated_at: user.updatedAt,
    })
    .onConflict((oc) => oc.column('external_id').doNothing())
    .returningAll()
    .executeTakeFirst();
  return row && toUser(row);
}

export interface UserListFilter {
  externalId?: string | undefined;
  limit: number;
  /** Return users older than this id (ids are UUIDv7, so they sort by creation). */
  before?: string | undefined;
}

/** Newest first, each with their key count; fetches `limit + 1` rows so the caller can tell whether a next page exists. */
export async function listUsers(db: Executor, filter: UserListFilter): Promise<UserWithKeyCount[]> {
  let query = db
    .selectFrom('users')
    .selectAll('users')
    .select(withKeyCount)
    .orderBy('users.id', 'desc')
    .limit(filter.limit + 1);
  if (filter.externalId !== undefined) query = query.where('users.external_id', '=', filter.externalId);
  if (filter.before !== undefined) query = query.where('users.id', '<', filter.before);
  return (await query.execute()).map(toUserWithKeyCount);
}

export async function updateUser(
  db: Executor,
  id: string,
  changes: Partial<Pick<User, 'email' | 'tier' | 'updatedAt'>>,
): Promise<User | undefined> {
  const columns: UserUpdate = {};
  if (changes.email !== undefined) columns.email = changes.email;
  if (changes.tier !== undefined) columns.tier = changes.tier;
  if (changes.updatedAt !== undefined) columns.updated_at = changes.updatedAt;
  const row = await db.updateTable('users').set(columns).where('id', '=', id).returningAll().executeTakeFirst();
  return row && toUser(row);
}

/** A key as its owner's changes need it: named in the audit trail, and dropped from caches by its hash. */
export type OwnedKey = Pick<ApiKey, 'id' | 'name' | 'keyPrefix' | 'keyHash'>;

/** The keys a user owns, all states: deleting the user deletes them too (FK cascade), so callers can tell caches. */
export async function findKeysOwnedBy(db: Executor, userId: string): Promise<OwnedKey[]> {
  const rows = await db.selectFrom('api_keys').select(['id', 'name', 'key_prefix', 'key_hash']).where('user_id', '=', userId).execute();
  return rows.map((row) => ({ id: row.id, name: row.name, keyPrefix: row.key_prefix, keyHash: row.key_hash }));
}

/** Deletes a user; their keys go with them through the `api_keys.user_id` foreign key (ON DELETE CASCADE). */
export async function deleteUser(db: Executor, id: string): Promise<boolean> {
  const result = await db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
  return result.numDeletedRows > 0n;
}
