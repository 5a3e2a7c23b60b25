import { hashApiKey } from '@keyward/sdk';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ApiKey, User } from '../../packages/server/src/domain.js';
import {
  countKeysOfUser,
  countUsableAdminKeys,
  deleteKey,
  findKeyByHash,
  findKeyById,
  findKeysByPrefix,
  insertKey,
  lastUsedStatements,
  listKeys,
  updateKey,
} from '../../packages/server/src/keys/repository.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { createStatementWriter } from '../../packages/server/src/store/statement-writer.js';
import { insertUserIfAbsent } from '../../packages/server/src/users/repository.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { newApiKey } from '../helpers/fixtures.js';

const NOW = 1_900_000_000_000;

function newKey(overrides: Partial<ApiKey> = {}): ApiKey {
  return newApiKey(overrides, NOW);
}

function newUser(overrides: Partial<User> = {}): User {
  const id = uuidv7();
  return { id, externalId: `ext-${id}`, email: null, tier: 'free', createdAt: NOW, updatedAt: NOW, ...overrides };
}

/** Writes last_used_at as the server does: the repository's statements, through the background writer. */
async function setLastUsed(on: Db, lastUsed: ReadonlyMap<string, number>): Promise<void> {
  const writer = createStatementWriter(on);
  try {
    await writer.run(lastUsedStatements(on.db, lastUsed));
  } finally {
    await writer.close();
  }
}

describe.each(DIALECTS)('api-keys repository on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db;

  // One migrated database per dialect (migrating is the slow part), emptied before each test.
  beforeAll(async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
  });
  beforeEach(async () => {
    await db.db.deleteFrom('api_keys').execute();
    await db.db.deleteFrom('users').execute();
  });
  afterAll(async () => {
    await db?.close();
    await database?.cleanup();
  });

  async function addUser(overrides: Partial<User> = {}): Promise<User> {
    const user = await insertUserIfAbsent(db.db, newUser(overrides));
    if (!user) throw new Error('user not inserted');
    return user;
  }

  it('round-trips every field, found by id and by hash', async () => {
    const user = await addUser();
    const key = newKey({
      name: 'full',
      description: 'every field set',
      userId: user.id,
      scopes: ['inventory:read', 'orders:*'],
      metadata: { team: 'ops', nested: { n: 1, list: [true, null, 'x'] }, unicode: 'é€😀' },
      lastUsedAt: NOW + 1,
      expiresAt: NOW + 86_400_000,
      revokedAt: NOW + 2,
      isActive: false,
      rolledFrom: uuidv7(),
      budgetKeyId: uuidv7(),
      rateLimit: { limit: 100, windowSeconds: 60 },
      quota: { remaining: 9_007_199_254_740_991, refill: { amount: 1000, interval: 'month' }, lastRefillAt: NOW },
    });
    await insertKey(db.db, key);
    expect(await findKeyById(db.db, key.id)).toEqual(key);
    expect(await findKeyByHash(db.db, key.keyHash)).toEqual(key);

    const admin = newKey({ isAdmin: true, quota: { remaining: 0, refill: null, lastRefillAt: null } });
    await insertKey(db.db, admin);
    const found = await findKeyById(db.db, admin.id);
    expect(found).toEqual(admin);
    expect(found?.isAdmin).toBe(true);
    expect(found?.isActive).toBe(true);
  });

  it('finds nothing for unknown ids and hashes', async () => {
    await insertKey(db.db, newKey());
    expect(await findKeyById(db.db, uuidv7())).toBeUndefined();
    expect(await findKeyByHash(db.db, hashApiKey('unknown'))).toBeUndefined();
  });

  it('rejects a second row with the same key_hash', async () => {
    const first = newKey();
    await insertKey(db.db, first);
    await expect(insertKey(db.db, newKey({ keyHash: first.keyHash }))).rejects.toThrow();
    expect(await listKeys(db.db, { includeInactive: true, limit: 10 })).toHaveLength(1);
  });

  it('finds imported keys by look-up prefix and scheme', async () => {
    const bcryptKey = newKey({ keyPrefix: 'amos_1a2b3c4d', hashScheme: 'bcrypt', keyHash: '$2a$10$abcdefghijklmnopqrstuv' });
    await insertKey(db.db, bcryptKey);
    await insertKey(db.db, newKey({ keyPrefix: 'amos_1a2b3c4d' }));
    expect((await findKeysByPrefix(db.db, 'amos_1a2b3c4d', 'bcrypt')).map((k) => k.id)).toEqual([bcryptKey.id]);
    expect(await findKeysByPrefix(db.db, 'amos_00000000', 'bcrypt')).toEqual([]);
  });

  it('lists newest first with includeInactive, userId, limit and a before cursor', async () => {
    const user = await addUser();
    const other = await addUser();
    // Ids are UUIDv7, so the order of creation here is the order of ids. Inserted shuffled, to show the
    // list sorts rather than relying on insertion order.
    const keys = [
      newKey({ name: 'a1' }),
      newKey({ name: 'off', isActive: false, userId: user.id }),
      newKey({ name: 'a2', userId: user.id }),
      newKey({ name: 'revoked', isActive: false, revokedAt: NOW }),
      newKey({ name: 'a3', userId: other.id }),
    ];
    for (const i of [3, 0, 4, 2, 1]) {
      const key = keys[i];
      if (key) await insertKey(db.db, key);
    }

    const names = (keys: ApiKey[]) => keys.map((k) => k.name);
    expect(names(await listKeys(db.db, { includeInactive: false, limit: 10 }))).toEqual(['a3', 'a2', 'a1']);
    expect(names(await listKeys(db.db, { includeInactive: true, limit: 10 }))).toEqual(['a3', 'revoked', 'a2', 'off', 'a1']);
    expect(names(await listKeys(db.db, { includeInactive: true, userId: user.id, limit: 10 }))).toEqual(['a2', 'off']);
    expect(names(await listKeys(db.db, { includeInactive: false, userId: user.id, limit: 10 }))).toEqual(['a2']);
    expect(names(await listKeys(db.db, { includeInactive: true, ownerless: true, limit: 10 }))).toEqual(['revoked', 'a1']);

    // limit + 1 rows come back so the caller can tell a next page exists.
    const first = await listKeys(db.db, { includeInactive: true, limit: 2 });
    expect(names(first)).toEqual(['a3', 'revoked', 'a2']);
    const second = await listKeys(db.db, { includeInactive: true, limit: 2, before: first[1]?.id });
    expect(names(second)).toEqual(['a2', 'off', 'a1']);
    const last = await listKeys(db.db, { includeInactive: true, limit: 2, before: second[1]?.id });
    expect(names(last)).toEqual(['a1']);
    expect(await listKeys(db.db, { includeInactive: true, limit: 2, before: last[0]?.id })).toEqual([]);
  });

  it('updates only the given fields and clears fields set to null', async () => {
    const key = newKey({ rateLimit: { limit: 5, windowSeconds: 1 }, expiresAt: NOW + 1000, metadata: { a: 1 } });
    await insertKey(db.db, key);
    const updated = await updateKey(db.db, key.id, {
      name: 'renamed',
      scopes: ['x:y'],
      metadata: { b: [2] },
      expiresAt: null,
      rateLimit: null,
      isActive: false,
      updatedAt: NOW + 5,
    });
    expect(updated).toEqual({
      ...key,
      name: 'renamed',
      scopes: ['x:y'],
      metadata: { b: [2] },
      expiresAt: null,
      rateLimit: null,
      isActive: false,
      updatedAt: NOW + 5,
    });
    expect(await findKeyById(db.db, key.id)).toEqual(updated);
    expect(await updateKey(db.db, uuidv7(), { name: 'nobody' })).toBeUndefined();
  });

  it('deletes a key once', async () => {
    const key = newKey();
    const kept = newKey();
    await insertKey(db.db, key);
    await insertKey(db.db, kept);
    expect(await deleteKey(db.db, key.id)).toBe(true);
    expect(await deleteKey(db.db, key.id)).toBe(false);
    expect(await findKeyById(db.db, key.id)).toBeUndefined();
    expect(await findKeyById(db.db, kept.id)).toEqual(kept);
  });

  it('counts usable admin keys: active, admin, not expired', async () => {
    expect(await countUsableAdminKeys(db.db, NOW)).toBe(0);
    await insertKey(db.db, newKey({ isAdmin: false }));
    await insertKey(db.db, newKey({ isAdmin: true, isActive: false }));
    await insertKey(db.db, newKey({ isAdmin: true, isActive: false, revokedAt: NOW }));
    await insertKey(db.db, newKey({ isAdmin: true, expiresAt: NOW }));
    await insertKey(db.db, newKey({ isAdmin: true, expiresAt: NOW - 1 }));
    expect(await countUsableAdminKeys(db.db, NOW)).toBe(0);
    await insertKey(db.db, newKey({ isAdmin: true, expiresAt: NOW + 1 }));
    await insertKey(db.db, newKey({ isAdmin: true }));
    expect(await countUsableAdminKeys(db.db, NOW)).toBe(2);
    expect(await countUsableAdminKeys(db.db, NOW + 1)).toBe(1);
  });

  it('counts a user’s live keys: not revoked, not expired (deactivated ones count)', async () => {
    const user = await addUser();
    await insertKey(db.db, newKey({ userId: user.id }));
    await insertKey(db.db, newKey({ userId: user.id, isActive: false }));
    await insertKey(db.db, newKey({ userId: user.id, isActive: false, revokedAt: NOW }));
    await insertKey(db.db, newKey({ userId: user.id, expiresAt: NOW }));
    await insertKey(db.db, newKey({ userId: user.id, expiresAt: NOW + 1 }));
    await insertKey(db.db, newKey());
    expect(await countKeysOfUser(db.db, user.id, NOW)).toBe(3);
    expect(await countKeysOfUser(db.db, user.id, NOW + 1)).toBe(2);
  });

  it('writes last_used_at for more keys than one statement carries (chunks of 500)', async () => {
    const keys = Array.from({ length: 1_201 }, () => newKey());
    await db.db.transaction().execute(async (trx) => {
      for (const key of keys) await insertKey(trx, key);
    });
    await setLastUsed(db, new Map(keys.map((k, i) => [k.id, NOW + i])));
    const first = await findKeyById(db.db, keys[0]?.id ?? '');
    const last = await findKeyById(db.db, keys[1_200]?.id ?? '');
    expect([first?.lastUsedAt, last?.lastUsedAt]).toEqual([NOW, NOW + 1_200]);
  });

  it('moves last_used_at forward only', async () => {
    const a = newKey();
    const b = newKey({ lastUsedAt: NOW + 100 });
    await insertKey(db.db, a);
    await insertKey(db.db, b);
    await setLastUsed(
      db,
      new Map([
        [a.id, NOW + 50],
        [b.id, NOW + 50],
        [uuidv7(), NOW],
      ]),
    );
    expect((await findKeyById(db.db, a.id))?.lastUsedAt).toBe(NOW + 50);
    expect((await findKeyById(db.db, b.id))?.lastUsedAt).toBe(NOW + 100);
    await setLastUsed(
      db,
      new Map([
        [a.id, NOW + 10],
        [b.id, NOW + 200],
      ]),
    );
    expect((await findKeyById(db.db, a.id))?.lastUsedAt).toBe(NOW + 50);
    expect((await findKeyById(db.db, b.id))?.lastUsedAt).toBe(NOW + 200);
    // Nothing else about the row changes.
    expect(await findKeyById(db.db, b.id)).toEqual({ ...b, lastUsedAt: NOW + 200 });
  });

  it('removes a user’s keys with the user (cascade)', async () => {
    const user = await addUser();
    const owned = newKey({ userId: user.id });
    const ownerless = newKey();
    await insertKey(db.db, owned);
    await insertKey(db.db, ownerless);
    await db.db.deleteFrom('users').where('id', '=', user.id).execute();
    expect(await findKeyById(db.db, owned.id)).toBeUndefined();
    expect(await findKeyById(db.db, ownerless.id)).toEqual(ownerless);
  });

  it('rolls back every write of a failed transaction', async () => {
    const key = newKey();
    await insertKey(db.db, key);
    await expect(
      db.db.transaction().execute(async (trx) => {
        await updateKey(trx, key.id, { name: 'inside' });
        await insertKey(trx, newKey({ keyHash: key.keyHash }));
      }),
    ).rejects.toThrow();
    expect((await findKeyById(db.db, key.id))?.name).toBe('a key');
  });
});
