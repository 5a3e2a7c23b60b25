import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateDown, migrateUp, migrationStatus } from '../../packages/server/src/store/migrator.js';
import { countUsageByBucket } from '../../packages/server/src/usage/repository.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

const TABLES = ['users', 'api_keys', 'api_key_usage', 'api_key_usage_minutes', 'audit_log'] as const;
const ALL = [
  '0001-initial',
  '0002-usage-storage',
  '0003-roll-budget',
  '0004-rolled-at',
  '0005-key-changes',
  '0006-idempotency',
  '0007-usage-events',
  '0008-key-lineage',
  '0009-events',
];

/** Every migration down, newest first (one step per call, as `keyward migrate down` does). */
async function migrateAllDown(db: Db): Promise<string[]> {
  const undone: string[] = [];
  for (let step = await migrateDown(db.db); step.length > 0; step = await migrateDown(db.db)) undone.push(...step);
  return undone;
}

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
    expect((await migrationStatus(db.db)).map((m) => [m.name, m.executedAt])).toEqual(ALL.map((name) => [name, null]));

    expect(await migrateUp(db.db)).toEqual(ALL);
    expect(await existingTables(db)).toEqual([...TABLES]);
    const [status] = await migrationStatus(db.db);
    expect(status?.executedAt).toBeInstanceOf(Date);
    expect(await migrateUp(db.db)).toEqual([]);

    await expect(sql`select id from webhook_deliveries`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0009-events']);
    await expect(sql`select id from webhook_deliveries`.execute(db.db)).rejects.toThrow();
    await expect(sql`select lineage_id from api_keys`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0008-key-lineage']);
    await expect(sql`select lineage_id from api_keys`.execute(db.db)).rejects.toThrow();
    await expect(sql`select tags from api_key_usage`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0007-usage-events']);
    await expect(sql`select tags from api_key_usage`.execute(db.db)).rejects.toThrow();
    await expect(sql`select idempotency_key from idempotency_keys`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0006-idempotency']);
    await expect(sql`select idempotency_key from idempotency_keys`.execute(db.db)).rejects.toThrow();
    await expect(sql`select seq from key_changes`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0005-key-changes']);
    await expect(sql`select seq from key_changes`.execute(db.db)).rejects.toThrow();
    await expect(sql`select rolled_at from api_keys`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0004-rolled-at']);
    await expect(sql`select rolled_at from api_keys`.execute(db.db)).rejects.toThrow();
    await expect(sql`select budget_key_id from api_keys`.execute(db.db)).resolves.toBeDefined();
    expect(await migrateDown(db.db)).toEqual(['0003-roll-budget']);
    await expect(sql`select budget_key_id from api_keys`.execute(db.db)).rejects.toThrow();
    expect(await existingTables(db)).toEqual([...TABLES]);
    expect(await migrateDown(db.db)).toEqual(['0002-usage-storage']);
    expect(await existingTables(db)).toEqual(TABLES.filter((t) => t !== 'api_key_usage_minutes'));
    expect(await migrateDown(db.db)).toEqual(['0001-initial']);
    expect(await existingTables(db)).toEqual([]);
    expect((await migrationStatus(db.db))[0]?.executedAt).toBeNull();
    expect(await migrateDown(db.db)).toEqual([]);

    expect(await migrateUp(db.db)).toEqual(ALL);
    expect(await existingTables(db)).toEqual([...TABLES]);
    // The schema after a round trip takes the same rows: booleans, bigint times and JSON text.
    await db.db
      .insertInto('api_keys')
      .values({
        id: '00000000-0000-7000-8000-000000000001',
        lineage_id: '00000000-0000-7000-8000-000000000001',
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
      expect(await migrateUp(db.db)).toEqual(ALL);
      expect(await existingTables(db)).toEqual([...TABLES]);
      expect(await migrateAllDown(db)).toEqual([...ALL].reverse());
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
    await migrateAllDown(db);
    await migrateUp(db.db);
    const users = await db.db.selectFrom('users').selectAll().execute();
    expect(users).toEqual([]);
  });

  it('marks the keys rolled before rolled_at existed as rolled (at their last update), and no others', async () => {
    database = await freshDatabase(dialect);
    const opened = openDatabase(database.url);
    db = opened;
    await migrateUp(db.db);
    for (const name of [...ALL.slice(3)].reverse()) expect(await migrateDown(db.db)).toEqual([name]);
    const key = (id: string, rolledFrom: string | null, updatedAt: number) =>
      sql`insert into api_keys (id, name, key_hash, key_prefix, hash_scheme, is_admin, scopes, metadata, is_active, created_at, created_by, updated_at, rolled_from)
          values (${id}, ${id}, ${`hash-${id}`}, ${id}, 'sha256', ${false}, '[]', '{}', ${true}, ${1}, 'test', ${updatedAt}, ${rolledFrom})`.execute(
        opened.db,
      );
    await key('old', null, 500);
    await key('new', 'old', 600);
    await key('alone', null, 700);
    expect(await migrateUp(db.db)).toEqual(ALL.slice(3));
    const rows = await db.db.selectFrom('api_keys').select(['id', 'rolled_at']).orderBy('id').execute();
    expect(rows.map((r) => [r.id, r.rolled_at === null ? null : Number(r.rolled_at)])).toEqual([
      ['alone', null],
      ['new', null],
      ['old', 500],
    ]);
  });

  it('counts the usage rows already there by minute when the per-minute table is added, and down drops it', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    // The migrator has no "up to": all the way up, then down to before 0002.
    await migrateUp(db.db);
    for (let i = 1; i < ALL.length; i++) await migrateDown(db.db);
    expect((await migrationStatus(db.db)).map((m) => m.executedAt === null)).toEqual(ALL.map((_, i) => i > 0));
    const minute = 1_900_000_020_000 - (1_900_000_020_000 % 60_000);
    // Rows as the first schema held them (text ids), written with plain SQL: the typed schema is the new one.
    const row = (id: string, apiKeyId: string | null, outcome: string, at: number) =>
      sql`(${id}, ${apiKeyId}, '/v1/keys/verify', 'POST', 200, ${outcome}, ${at})`;
    await sql`insert into api_key_usage (id, api_key_id, endpoint, method, status_code, outcome, created_at) values ${sql.join([
      row('r1', 'k1', 'VALID', minute + 1),
      row('r2', 'k1', 'VALID', minute + 59_999),
      row('r3', 'k1', 'EXPIRED', minute + 60_000),
      row('r4', 'k2', 'VALID', minute + 5),
      row('r5', null, 'NOT_FOUND', minute + 6),
    ])}`.execute(db.db);
    expect(await migrateUp(db.db)).toEqual(ALL.slice(1));
    const counts = await db.db
      .selectFrom('api_key_usage_minutes')
      .selectAll()
      .orderBy('minute')
      .orderBy('api_key_id')
      .orderBy('outcome')
      .execute();
    expect(counts.map((c) => [Number(c.minute), c.api_key_id, c.outcome, Number(c.count)])).toEqual([
      [minute, '', 'NOT_FOUND', 1],
      [minute, 'k1', 'VALID', 2],
      [minute, 'k2', 'VALID', 1],
      [minute + 60_000, 'k1', 'EXPIRED', 1],
    ]);
    expect(await countUsageByBucket(db.db, { keyId: 'k1', from: minute, to: minute + 120_000, bucketMs: 60_000 })).toEqual([
      { bucket: minute, outcome: 'VALID', count: 2 },
      { bucket: minute + 60_000, outcome: 'EXPIRED', count: 1 },
    ]);
    // Every row kept, with an integer id given by the database in time order; new rows get the next ones.
    const kept = await db.db.selectFrom('api_key_usage').select(['id', 'created_at', 'endpoint']).orderBy('id').execute();
    expect(kept.map((r) => [Number(r.id), Number(r.created_at) - minute])).toEqual([
      [1, 1],
      [2, 5],
      [3, 6],
      [4, 59_999],
      [5, 60_000],
    ]);
    expect(kept[0]?.endpoint).toBe('/v1/keys/verify');
    await db.db
      .insertInto('api_key_usage')
      .values({ outcome: 'VALID', created_at: minute + 70_000 })
      .execute();
    expect(Number((await db.db.selectFrom('api_key_usage').select('id').orderBy('id', 'desc').executeTakeFirst())?.id)).toBe(6);

    for (const name of [...ALL.slice(1)].reverse()) expect(await migrateDown(db.db)).toEqual([name]);
    expect(await existingTables(db)).not.toContain('api_key_usage_minutes');
    const back = await sql<{ id: string }>`select id from api_key_usage order by created_at`.execute(db.db);
    expect(back.rows.map((r) => r.id)).toEqual(['1', '2', '3', '4', '5', '6']);
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
      .values({ ...base, id: 'k1', lineage_id: 'k1', key_hash: 'b'.repeat(64), user_id: 'u1' })
      .execute();
    await expect(
      db.db
        .insertInto('api_keys')
        .values({ ...base, id: 'k2', lineage_id: 'k2', key_hash: 'b'.repeat(64) })
        .execute(),
    ).rejects.toThrow();
    await expect(
      db.db
        .insertInto('api_keys')
        .values({ ...base, id: 'k3', lineage_id: 'k3', key_hash: 'c'.repeat(64), user_id: 'no-such-user' })
        .execute(),
    ).rejects.toThrow();
    await db.db.deleteFrom('users').where('id', '=', 'u1').execute();
    expect(await db.db.selectFrom('api_keys').selectAll().execute()).toEqual([]);
  });
});
