import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase, sqlitePath } from '../../packages/server/src/store/database.js';
import { migrateDown, migrateUp } from '../../packages/server/src/store/migrator.js';
import { openKeyChangeReader, pruneKeyChanges, recordKeyChange } from '../../packages/server/src/verification/key-events.repository.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

const hash = (n: number) => n.toString(16).padStart(64, '0');

/** Migrates all the way up, then down until `key_changes` has gone (later migrations first). */
async function downToBefore0005(db: Db): Promise<void> {
  for (let step = await migrateDown(db.db); step.length > 0; step = await migrateDown(db.db)) {
    if (step.includes('0005-key-changes')) return;
  }
  throw new Error('0005-key-changes was never reverted');
}

describe.each(DIALECTS)('key_changes (migration 0005) on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db | undefined;
  afterEach(async () => {
    await db?.close();
    db = undefined;
    await database.cleanup();
  });

  it('hands out increasing sequence numbers that are never reused, even once pruning has emptied the table', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    for (const n of [1, 2, 3]) await recordKeyChange(db.db, hash(n), 1_000 * n);
    await pruneKeyChanges(db.db, 2_500);
    let rows = await db.db.selectFrom('key_changes').select(['seq', 'key_hash']).orderBy('seq').execute();
    expect(rows.map((r) => [Number(r.seq), r.key_hash])).toEqual([[3, hash(3)]]);
    await pruneKeyChanges(db.db, 10_000);
    await recordKeyChange(db.db, hash(4), 4_000);
    rows = await db.db.selectFrom('key_changes').select(['seq', 'key_hash']).execute();
    expect(rows.map((r) => [Number(r.seq), r.key_hash])).toEqual([[4, hash(4)]]);
  });

  it('goes down and up again', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    await downToBefore0005(db);
    await expect(sql`select seq from key_changes`.execute(db.db)).rejects.toThrow();
    expect(await migrateUp(db.db)).toContain('0005-key-changes');
    await recordKeyChange(db.db, hash(1), 1);
    expect(await db.db.selectFrom('key_changes').select('seq').execute()).toHaveLength(1);
  });
});

describe('the SQLite change-log reader', () => {
  let database: FreshDatabase;
  let db: Db | undefined;
  afterEach(async () => {
    await db?.close();
    db = undefined;
    await database.cleanup();
  });

  it('sees commits of other connections move data_version, and reads what it has not seen in order', async () => {
    database = await freshDatabase('sqlite');
    db = openDatabase(database.url);
    const reader = openKeyChangeReader(sqlitePath(database.url));
    try {
      // Before the migration: nothing yet, and no error.
      expect(reader.latest()).toBe(0);
      expect(reader.since(0, 10)).toEqual([]);
      await migrateUp(db.db);
      const before = reader.dataVersion();
      expect(reader.dataVersion()).toBe(before);
      for (const n of [1, 2, 3]) await recordKeyChange(db.db, hash(n), n);
      expect(reader.dataVersion()).not.toBe(before);
      expect(reader.latest()).toBe(3);
      expect(reader.since(1, 10)).toEqual([
        { seq: 2, keyHash: hash(2) },
        { seq: 3, keyHash: hash(3) },
      ]);
      expect(reader.since(0, 2).map((c) => c.seq)).toEqual([1, 2]);
      // Emptied by pruning, the log still says how far the sequence went.
      await pruneKeyChanges(db.db, 10);
      expect(reader.latest()).toBe(3);
    } finally {
      reader.close();
    }
  });
});
