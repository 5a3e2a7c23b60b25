import { generateKey } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findKeyById } from '../../packages/server/src/keys/repository.js';
import { openDatabase } from '../../packages/server/src/store/database.js';
import { createLastUsedRecorder } from '../../packages/server/src/verification/last-used.js';
import { createKey } from '../helpers/app.js';
import { buildCli, call, startServe, tempFolder } from '../helpers/cli.js';
import { DIALECTS, freshDatabase } from '../helpers/db.js';
import { codeOf, createClockedApp } from './helpers.js';

async function lastUsedIn(databaseUrl: string, id: string): Promise<number | null | undefined> {
  const db = openDatabase(databaseUrl);
  try {
    return (await findKeyById(db.db, id))?.lastUsedAt;
  } finally {
    await db.close();
  }
}

describe('last-used recorder', () => {
  it('writes nothing until a flush, then one batch holding the latest time per key', async () => {
    const writes: Array<Map<string, number>> = [];
    const recorder = createLastUsedRecorder({ write: async (batch) => void writes.push(new Map(batch)), flushMs: 3_600_000 });
    for (const at of [5, 9, 7, 3]) recorder.touch('a', at);
    recorder.touch('b', 1);
    expect(writes).toEqual([]);
    expect(recorder.pending()).toBe(2);
    await recorder.flush();
    expect(writes).toEqual([
      new Map([
        ['a', 9],
        ['b', 1],
      ]),
    ]);
    await recorder.flush();
    expect(writes).toHaveLength(1);
    await recorder.close();
  });

  it('keeps a batch that failed to write, merged with newer uses, for the next flush', async () => {
    let fail = true;
    const writes: Array<Map<string, number>> = [];
    const recorder = createLastUsedRecorder({
      write: async (batch) => {
        if (fail) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        writes.push(new Map(batch));
      },
      flushMs: 3_600_000,
    });
    recorder.touch('a', 10);
    recorder.touch('b', 10);
    await expect(recorder.flush()).rejects.toThrow('ECONNREFUSED');
    recorder.touch('a', 20);
    fail = false;
    await recorder.close();
    expect(writes).toEqual([
      new Map([
        ['a', 20],
        ['b', 10],
      ]),
    ]);
  });

  it('flushes on its interval', async () => {
    const writes: Array<Map<string, number>> = [];
    const recorder = createLastUsedRecorder({ write: async (batch) => void writes.push(new Map(batch)), flushMs: 10 });
    recorder.touch('a', 1);
    const until = Date.now() + 5_000;
    while (writes.length === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    await recorder.close();
    expect(writes[0]).toEqual(new Map([['a', 1]]));
  });
});

describe.each(DIALECTS)('last_used_at on %s', (dialect) => {
  it('is not written per verification; a flush writes the latest use', async () => {
    const t = await createClockedApp({ dialect, env: { LAST_USED_FLUSH_MS: '3600000' } });
    try {
      const { key, id } = await createKey(t);
      for (let i = 0; i < 20; i++) {
        t.clock.advance(1_000);
        expect(await codeOf(t, key)).toBe('VALID');
      }
      const last = t.clock.now();
      expect(await lastUsedIn(t.database.url, id)).toBeNull();
      expect(t.container.lastUsed.pending()).toBe(2); // the key and the admin key that called verify
      await t.container.lastUsed.flush();
      expect(await lastUsedIn(t.database.url, id)).toBe(last);
      // A later, older value never moves it back (two instances flushing in any order).
      await t.container.lastUsed.flush();
      expect(await lastUsedIn(t.database.url, id)).toBe(last);
    } finally {
      await t.close();
    }
  });

  it('a failed verification is not a use', async () => {
    const t = await createClockedApp({ dialect, env: { LAST_USED_FLUSH_MS: '3600000' } });
    try {
      const { key, id } = await createKey(t, { scopes: ['a:read'] });
      await t.app.inject({ method: 'POST', url: `/v1/api-keys/${id}/deactivate`, headers: { authorization: `Bearer ${t.adminKey}` } });
      expect(await codeOf(t, key)).toBe('DISABLED');
      await t.container.lastUsed.flush();
      expect(await lastUsedIn(t.database.url, id)).toBeNull();
    } finally {
      await t.close();
    }
  });

  it('closing the container flushes', async () => {
    const database = await freshDatabase(dialect);
    try {
      const t = await createClockedApp({ dialect, database, env: { LAST_USED_FLUSH_MS: '3600000' } });
      const { key, id } = await createKey(t);
      expect(await codeOf(t, key)).toBe('VALID');
      const at = t.clock.now();
      await t.close();
      expect(await lastUsedIn(database.url, id)).toBe(at);
    } finally {
      await database.cleanup();
    }
  });
});

describe.each(DIALECTS)('keyward serve on %s', (dialect) => {
  beforeAll(async () => buildCli(), 120_000);
  const cleanups: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('flushes last_used_at on SIGTERM', async () => {
    const folder = tempFolder();
    cleanups.push(folder.cleanup);
    const database = dialect === 'sqlite' ? null : await freshDatabase('postgres');
    if (database) cleanups.push(database.cleanup);
    const databaseUrl = database?.url ?? folder.databaseUrl;
    const adminKey = generateKey('kw');
    const server = await startServe(
      { DATABASE_URL: databaseUrl, INITIAL_ADMIN_KEY: adminKey, LAST_USED_FLUSH_MS: '3600000', LOG_LEVEL: 'warn' },
      folder.dir,
    );
    cleanups.push(async () => void (await server.stop('SIGKILL')));
    const created = await call(server.url, 'POST', '/v1/api-keys', { key: adminKey, body: { name: 'used' } });
    const { key, id } = created.json as { key: string; id: string };
    const before = Date.now();
    for (let i = 0; i < 10; i++) {
      const verified = await call(server.url, 'POST', '/v1/keys/verify', { key: adminKey, body: { key } });
      expect(verified.json).toMatchObject({ code: 'VALID' });
    }
    expect(await lastUsedIn(databaseUrl, id)).toBeNull();
    expect(await server.stop('SIGTERM')).toBe(0);
    const flushed = await lastUsedIn(databaseUrl, id);
    expect(flushed).toBeGreaterThanOrEqual(before);
    expect(flushed).toBeLessThanOrEqual(Date.now());
  });
});
