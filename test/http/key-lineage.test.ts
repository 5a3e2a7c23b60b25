import { generateKey } from '@keyward/sdk';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateDown, migrateUp, migrationStatus } from '../../packages/server/src/store/migrator.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

// `lineage_id`: the id of the first key of a roll lineage, kept by every roll, so a host app can own resources by
// something a roll does not change.

describe.each(DIALECTS)('key lineage on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const get = async (id: string) =>
    (await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey) })).json() as { lineage_id: string };
  const roll = async (id: string) => {
    const response = await t.app.inject({ method: 'POST', url: `/v1/api-keys/${id}/roll`, headers: bearer(t.adminKey), payload: {} });
    expect(response.statusCode).toBe(201);
    return response.json() as { id: string; key: string; lineage_id: string };
  };
  const verify = async (key: string) =>
    (await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key } })).json() as {
      code: string;
      key_id?: string;
      lineage_id?: string;
    };

  it('a new key is its own lineage: in the create answer, the key view, the list and the verify answer', async () => {
    t = await createTestApp({ dialect });
    const { id, key, body } = await createKey(t);
    expect(body.lineage_id).toBe(id);
    expect((await get(id)).lineage_id).toBe(id);
    const list = (await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(t.adminKey) })).json() as {
      data: { id: string; lineage_id: string }[];
    };
    expect(list.data.find((k) => k.id === id)?.lineage_id).toBe(id);
    expect(await verify(key)).toMatchObject({ code: 'VALID', key_id: id, lineage_id: id });
  });

  it('rolled twice, all three keys share the first key’s id, and verify answers it for the newest', async () => {
    t = await createTestApp({ dialect });
    const first = await createKey(t);
    const second = await roll(first.id);
    const third = await roll(second.id);
    expect(new Set([first.id, second.id, third.id]).size).toBe(3);
    expect(second.lineage_id).toBe(first.id);
    expect(third.lineage_id).toBe(first.id);
    for (const id of [first.id, second.id, third.id]) expect((await get(id)).lineage_id).toBe(first.id);
    expect(await verify(third.key)).toMatchObject({ code: 'VALID', key_id: third.id, lineage_id: first.id });
    // Another key keeps its own lineage.
    const other = await createKey(t);
    expect(other.body.lineage_id).toBe(other.id);
  });

  it('an imported key is its own lineage', async () => {
    t = await createTestApp({ dialect });
    const key = generateKey('kw');
    const imported = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys/import',
      headers: bearer(t.adminKey),
      payload: { scheme: 'plaintext', records: [{ key, name: 'legacy' }] },
    });
    expect(imported.statusCode).toBe(200);
    const { id } = (imported.json() as { results: { id: string }[] }).results[0] ?? { id: '' };
    expect((await get(id)).lineage_id).toBe(id);
    expect(await verify(key)).toMatchObject({ key_id: id, lineage_id: id });
  });
});

describe.each(DIALECTS)('migration 0008-key-lineage on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db | undefined;
  afterEach(async () => {
    await db?.close();
    db = undefined;
    await database.cleanup();
  });

  /** Migrates down one step at a time through 0008; returns the later migrations undone on the way, oldest first. */
  async function downThrough(opened: Db): Promise<string[]> {
    const undone: string[] = [];
    for (let step = await migrateDown(opened.db); step[0] !== '0008-key-lineage'; step = await migrateDown(opened.db)) {
      if (step.length === 0) throw new Error('0008-key-lineage was never undone');
      undone.unshift(...step);
    }
    return undone;
  }

  it('gives keys already stored the first key of their roll chain, or their own id', async () => {
    database = await freshDatabase(dialect);
    const opened = openDatabase(database.url);
    db = opened;
    await migrateUp(opened.db);
    expect((await migrationStatus(opened.db)).map((m) => m.name)).toContain('0008-key-lineage');
    const later = await downThrough(opened);
    await expect(sql`select lineage_id from api_keys`.execute(opened.db)).rejects.toThrow();
    // Keys as the schema before held them, written with plain SQL: a chain a → b → c, a lone key, and a chain
    // whose first key was deleted (x → y, x gone).
    const key = (id: string, rolledFrom: string | null) =>
      sql`insert into api_keys (id, name, key_hash, key_prefix, hash_scheme, is_admin, scopes, metadata, is_active, created_at, created_by, updated_at, rolled_from)
          values (${id}, ${id}, ${`hash-${id}`}, ${id}, 'sha256', ${false}, '[]', '{}', ${true}, ${1}, 'test', ${1}, ${rolledFrom})`.execute(
        opened.db,
      );
    await key('c', 'b');
    await key('a', null);
    await key('b', 'a');
    await key('alone', null);
    await key('y', 'x');
    await key('z', 'y');

    expect(await migrateUp(opened.db)).toEqual(['0008-key-lineage', ...later]);
    const rows = await opened.db.selectFrom('api_keys').select(['id', 'lineage_id']).orderBy('id').execute();
    expect(rows.map((r) => [r.id, r.lineage_id])).toEqual([
      ['a', 'a'],
      ['alone', 'alone'],
      ['b', 'a'],
      ['c', 'a'],
      ['y', 'y'],
      ['z', 'y'],
    ]);
    if (dialect === 'postgres') {
      // Required from now on where the database can say so.
      await expect(
        sql`insert into api_keys (id, name, key_hash, key_prefix, hash_scheme, is_admin, scopes, metadata, is_active, created_at, created_by, updated_at)
            values ('n', 'n', 'hash-n', 'n', 'sha256', ${false}, '[]', '{}', ${true}, ${1}, 'test', ${1})`.execute(opened.db),
      ).rejects.toThrow(/lineage_id/);
    }
    // And down again, cleanly.
    await downThrough(opened);
    await expect(sql`select lineage_id from api_keys`.execute(opened.db)).rejects.toThrow();
  });
});
