import { generateKey, hashApiKey } from '@keyward/sdk';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../packages/server/src/callers/principal.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { openDatabase, sqlitePath } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { codeOf, post, waitFor, waitLive } from './helpers.js';

// Two instances (containers + apps) in one process on one SQLite file, each with its own connection, as
// `keyward serve`, `keyward gateway` and the CLI have: a change made on A reaches B only through the change log
// (key_changes), since freshness is an hour. Between processes: test/e2e/sqlite-propagation.test.ts.
const LONG_CACHE = { CACHE_TTL_MS: '3600000', CACHE_NEGATIVE_TTL_MS: '3600000' };
const operator: Caller = { principal: { kind: 'system', name: 'test' }, ip: null };

/** What the verifier answers for `key`, in-process (no HTTP, so no timer can run while it answers). */
async function verifyCode(app: TestApp, key: string): Promise<string> {
  const result = await app.container.verifier.verify(operator, { key });
  return result.ok ? result.value.code : result.code;
}

describe('cross-instance invalidation through the SQLite change log', () => {
  let database: FreshDatabase | undefined;
  const apps: TestApp[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await database?.cleanup();
    database = undefined;
  });

  async function twoInstances() {
    database = await freshDatabase('sqlite');
    const a = await createTestApp({ database, env: LONG_CACHE });
    apps.push(a);
    const b = await createTestApp({ database, env: { ...LONG_CACHE, INITIAL_ADMIN_KEY: a.adminKey } });
    apps.push(b);
    b.adminKey = a.adminKey;
    await waitLive(a.container);
    await waitLive(b.container);
    expect(a.container.invalidation.transport).toBe('sqlite');
    expect(b.container.invalidation.transport).toBe('sqlite');
    return { a, b, file: sqlitePath(database.url) };
  }

  const sees = (app: TestApp, key: string, code: string, extra: Record<string, unknown> = {}) =>
    waitFor(async () => (await codeOf(app, key, extra)) === code, `${code} on the other instance`, 2_000);

  /** Verifies `key` on `app` until the answer comes from its cache (so only a message can change it). */
  async function cachedOn(app: TestApp, key: string, code: string) {
    await waitFor(async () => {
      const hits = app.container.keyCache.stats().hits;
      expect(await codeOf(app, key)).toBe(code);
      return app.container.keyCache.stats().hits === hits + 2; // the key and the caller
    }, `${code} from the cache`);
  }

  it('B sees every change made on A, and a key created on A drops B’s remembered miss', async () => {
    const { a, b } = await twoInstances();
    const plain = generateKey('kw');
    expect(await codeOf(b, plain)).toBe('NOT_FOUND');
    const { key, id } = await createKey(a);
    await cachedOn(b, key, 'VALID');
    await post(a, `/v1/api-keys/${id}/deactivate`);
    await sees(b, key, 'DISABLED');
    await post(a, `/v1/api-keys/${id}/activate`);
    await sees(b, key, 'VALID');
    await a.app.inject({ method: 'PATCH', url: `/v1/api-keys/${id}`, headers: bearer(a.adminKey), payload: { scopes: ['x:*'] } });
    await sees(b, key, 'VALID', { scopes: ['x:read'] });
    await post(a, `/v1/api-keys/${id}/revoke`);
    await sees(b, key, 'REVOKED');
    await a.app.inject({ method: 'DELETE', url: `/v1/api-keys/${id}`, headers: bearer(a.adminKey) });
    await sees(b, key, 'NOT_FOUND');
    const created = await a.container.keys.create(operator, { name: 'late' }, { plaintext: plain });
    expect(created.ok).toBe(true);
    await sees(b, plain, 'VALID');
  });

  it('keeps its own changes’ echoes from dropping what it reloaded since', async () => {
    const { a } = await twoInstances();
    const { key, id } = await createKey(a);
    // The change, then a verification that reloads the record, before the poller has read the change's own row
    // (no timer runs in between: SQLite statements settle in microtasks).
    expect((await a.container.keys.deactivate(operator, id)).ok).toBe(true);
    expect(await verifyCode(a, key)).toBe('DISABLED');
    const hits = a.container.keyCache.stats().hits;
    expect(await verifyCode(a, key)).toBe('DISABLED');
    expect(a.container.keyCache.stats().hits).toBe(hits + 1);
    // Its row in the change log has been read by now: it was an echo, so the reloaded record stays cached.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await verifyCode(a, key)).toBe('DISABLED');
    expect(a.container.keyCache.stats().hits).toBe(hits + 2);
  });

  it('trusts nothing cached once it finds change-log rows pruned before it read them', async () => {
    const { a, b, file } = await twoInstances();
    const { key, id } = await createKey(a);
    await cachedOn(b, key, 'VALID');
    // A change B cannot hear of (written past the service), then a change-log row whose predecessors are gone,
    // as when B's process was stopped for longer than rows are kept.
    const direct = new Database(file);
    try {
      direct.prepare('update api_keys set is_active = 0 where id = ?').run(id);
      const latest = (direct.prepare("select seq from sqlite_sequence where name = 'key_changes'").pluck().get() as number) ?? 0;
      direct
        .prepare('insert into key_changes (seq, key_hash, created_at) values (?, ?, ?)')
        .run(latest + 3, hashApiKey(generateKey('kw')), Date.now());
    } finally {
      direct.close();
    }
    await sees(b, key, 'DISABLED');
  });

  it('prunes change-log rows older than a few minutes when it writes one', async () => {
    database = await freshDatabase('sqlite');
    const file = sqlitePath(database.url);
    const db = openDatabase(database.url);
    await migrateUp(db.db);
    await db.close();
    const direct = new Database(file);
    try {
      direct.prepare('insert into key_changes (key_hash, created_at) values (?, ?)').run('0'.repeat(64), Date.now() - 10 * 60_000);
      // Its first change (the bootstrap admin key) prunes.
      apps.push(await createTestApp({ database, env: LONG_CACHE }));
      await waitFor(
        () =>
          (direct
            .prepare('select count(*) from key_changes where created_at < ?')
            .pluck()
            .get(Date.now() - 60_000) as number) === 0,
        'the old row to be pruned',
        2_000,
      );
      expect(direct.prepare('select count(*) from key_changes').pluck().get()).toBe(1);
    } finally {
      direct.close();
    }
  });

  it('stays local on an in-memory database, which no other process can open', async () => {
    const container = createContainer(loadConfig({ DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' }));
    try {
      expect(container.invalidation.transport).toBe('local');
      expect(container.invalidation.live()).toBe(true);
    } finally {
      await container.close();
    }
  });
});
