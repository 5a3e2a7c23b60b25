import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateDown, migrateUp, migrationStatus } from '../../packages/server/src/store/migrator.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

const TABLES = ['users', 'api_keys', 'api_key_usage', 'audit_log'] as const;

/** Which of our tables answer a query (unqualified, so PostgreSQL resolves them in the test's schema). */
async function existingTables(db: Db): Promise<string[]> {
  const found: string[] = [];
  for (const table of TABLES) {
    try {
      await sql`select count(*) as n from ${sql.table(table)}`.execute(db.db);
      found.push(table);
    } catch {
      // Missing table.
    }
  }
  return found;
}

describe.each(DIALECTS)('migrations on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db | undefined;
  afterEach(async () => {
    await db?.close();
    db = undefined;
    await database.cleanup();
  });

  it('go up, down and up again', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    expect(await existingTables(db)).toEqual([]);
    expect((await migrationStatus(db.db)).map((m) => [m.name, m.executedAt])).toEqual([['0001-initial', null]]);

    expect(await migrateUp(db.db)).toEqual(['0001-initial']);
    expect(await existingTables(db)).toEqual([...TABLES]);
    const [status] = await migrationStatus(db.db);
    expect(status?.executedAt).toBeInstanceOf(Date);
    expect(await migrateUp(db.db)).toEqual([]);

    expect(await migrateDown(db.db)).toEqual(['0001-initial']);
    expect(await existingTables(db)).toEqual([]);
    expect((await migrationStatus(db.db))[0]?.executedAt).toBeNull();
    expect(await migrateDown(db.db)).toEqual([]);

    expect(await migrateUp(db.db)).toEqual(['0001-initial']);
    expect(await existingTables(db)).toEqual([...TABLES]);
    // The schema after a round trip takes the same rows: booleans, bigint times and JSON text.
    await db.db
      .insertInto('api_keys')
      .values({
        id: '00000000-0000-7000-8000-000000000001',
        name: 'after round trip',
        key_hash: 'a'.repeat(64),
        key_prefix: 'kw_aaaaaaaa',
        created_at: 1_900_000_000_000,
        created_by: 'test',
        updated_at: 1_900_000_000_000,
        hash_scheme: 'sha256',
        is_admin: true,
        is_active: true,
        scopes: '[]',
        metadata: '{}',
      })
      .execute();
    const row = await db.db.selectFrom('api_keys').selectAll().executeTakeFirstOrThrow();
    expect(row.created_at).toBe(1_900_000_000_000);
    expect(Boolean(row.is_admin)).toBe(true);
  });

  it('runs side by side with another migrated database (on PostgreSQL: another schema of the same database)', async () => {
    const neighbour = await freshDatabase(dialect);
    const other = openDatabase(neighbour.url);
    try {
      await migrateUp(other.db);
      database = await freshDatabase(dialect);
      db = openDatabase(database.url);
      expect((await migrationStatus(db.db))[0]?.executedAt).toBeNull();
      expect(await migrateUp(db.db)).toEqual(['0001-initial']);
      expect(await existingTables(db)).toEqual([...TABLES]);
      expect(await migrateDown(db.db)).toEqual(['0001-initial']);
      // The neighbour is untouched.
      expect(await existingTables(other)).toEqual([...TABLES]);
      expect((await migrationStatus(other.db))[0]?.executedAt).toBeInstanceOf(Date);
    } finally {
      await other.close();
      await neighbour.cleanup();
    }
  });

  it('down removes data with the tables, and up starts empty', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    await db.db
      .insertInto('users')
      .values({ id: 'u1', external_id: 'ext-1', email: null, tier: 'free', created_at: 1, updated_at: 1 })
      .execute();
    await migrateDown(db.db);
    await migrateUp(db.db);
    const users = await db.db.selectFrom('users').selectAll().execute();
    expect(users).toEqual([]);
  });

  it('enforces the unique key_hash index and the user foreign key (cascade)', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    await db.db
      .insertInto('users')
      .values({ id: 'u1', external_id: 'ext-1', email: null, tier: 'free', created_at: 1, updated_at: 1 })
      .execute();
    const base = {
      name: 'k',
      key_prefix: 'kw_aaaaaaaa',
      created_at: 1,
      created_by: 'test',
      updated_at: 1,
      hash_scheme: 'sha256',
      is_admin: false,
      is_active: true,
      scopes: '[]',
      metadata: '{}',
    };
    await db.db
      .insertInto('api_keys')
      .values({ ...base, id: 'k1', key_hash: 'b'.repeat(64), user_id: 'u1' })
      .execute();
    await expect(
      db.db
        .insertInto('api_keys')
        .values({ ...base, id: 'k2', key_hash: 'b'.repeat(64) })
        .execute(),
    ).rejects.toThrow();
    await expect(
      db.db
        .insertInto('api_keys')
        .values({ ...base, id: 'k3', key_hash: 'c'.repeat(64), user_id: 'no-such-user' })
        .execute(),
    ).rejects.toThrow();
    await db.db.deleteFrom('users').where('id', '=', 'u1').execute();
    expect(await db.db.selectFrom('api_keys').selectAll().execute()).toEqual([]);
  });
});
