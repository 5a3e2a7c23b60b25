import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateDown, migrateUp } from '../../packages/server/src/store/migrator.js';
import { insertUsageRows } from '../../packages/server/src/usage/repository.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

// Migration 0007 (usage events): the tags column and the indexes reading rows back needs, and its way down.

async function usageIndexes(db: Db): Promise<string[]> {
  const { rows } =
    db.dialect === 'sqlite'
      ? await sql<{
          name: string;
        }>`select name from sqlite_master where type = 'index' and tbl_name = 'api_key_usage' and sql is not null`.execute(db.db)
      : await sql<{
          name: string;
        }>`select indexname as name from pg_indexes where tablename = 'api_key_usage' and schemaname = current_schema()
          and indexname not like '%pkey'`.execute(db.db);
  return rows.map((r) => r.name).sort();
}

/** Migrates down until 0007 itself is undone (later migrations first). */
async function downThrough0007(db: Db): Promise<void> {
  for (let step = 0; step < 20; step++) {
    const undone = await migrateDown(db.db);
    if (undone.includes('0007-usage-events')) return;
    if (undone.length === 0) throw new Error('0007 was never applied');
  }
  throw new Error('too many migrations after 0007');
}

describe.each(DIALECTS)('migration 0007-usage-events on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db | undefined;
  afterEach(async () => {
    await db?.close();
    db = undefined;
    await database.cleanup();
  });

  it('adds tags and the indexes, goes down keeping the rows, and up again', async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    const expected =
      dialect === 'sqlite'
        ? [
            'api_key_usage_created_idx',
            'api_key_usage_key_created_idx',
            'api_key_usage_outcome_created_idx',
            'api_key_usage_status_class_created_idx',
          ]
        : [
            'api_key_usage_created_id_idx',
            'api_key_usage_key_created_idx',
            'api_key_usage_outcome_created_idx',
            'api_key_usage_status_class_created_idx',
            'api_key_usage_tags_idx',
          ];
    expect(await usageIndexes(db)).toEqual(expected);
    await insertUsageRows(db.db, [
      { api_key_id: 'k', outcome: 'VALID', created_at: 1, tags: '["route:/a","region:eu"]' },
      { api_key_id: 'k', outcome: 'VALID', created_at: 2, tags: null },
    ]);
    const tagged = await db.db.selectFrom('api_key_usage').select(['created_at', 'tags']).orderBy('created_at').execute();
    const asArray = (tags: unknown) => (typeof tags === 'string' ? JSON.parse(tags) : tags);
    expect(tagged.map((r) => asArray(r.tags))).toEqual([['route:/a', 'region:eu'], null]);

    await downThrough0007(db);
    expect(await usageIndexes(db)).toEqual(['api_key_usage_created_idx']);
    await expect(sql`select tags from api_key_usage`.execute(db.db)).rejects.toThrow();
    expect((await db.db.selectFrom('api_key_usage').select('created_at').execute()).length).toBe(2);

    await migrateUp(db.db);
    expect(await usageIndexes(db)).toEqual(expected);
    expect((await db.db.selectFrom('api_key_usage').select('tags').execute()).map((r) => r.tags)).toEqual([null, null]);
  });
});
