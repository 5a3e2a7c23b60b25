import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { updateKey } from '../../packages/server/src/keys/repository.js';
import { openDatabase } from '../../packages/server/src/store/database.js';
import { bearer, createKey } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { type ClockedApp, codeOf, createClockedApp, startTcpProxy, type TcpProxy, verify, waitFor, waitLive } from './helpers.js';

// The database goes away: a TCP proxy between Keyward and PostgreSQL is cut, then restored.
const suite = DIALECTS.includes('postgres') ? describe : describe.skip;
const name = DIALECTS.includes('postgres') ? 'stale-if-error on postgres (TCP proxy)' : `stale-if-error — ${POSTGRES_SKIP_REASON}`;

suite(name, () => {
  let proxy: TcpProxy | undefined;
  let database: FreshDatabase | undefined;
  let t: ClockedApp | undefined;
  afterEach(async () => {
    proxy?.restore();
    await t?.close();
    await proxy?.close();
    await database?.cleanup();
    t = undefined;
    proxy = undefined;
    database = undefined;
  });

  async function proxiedApp(env: Record<string, string>): Promise<ClockedApp> {
    database = await freshDatabase('postgres');
    const direct = new URL(database.url);
    proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
    const proxied = new URL(database.url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    t = await createClockedApp({ database, databaseUrl: proxied.toString(), env });
    await waitLive(t.container);
    return t;
  }

  it('keeps cached keys verifying, answers 503 for the rest, and resumes by itself', async () => {
    const app = await proxiedApp({ CACHE_TTL_MS: '60000', CACHE_STALE_TTL_MS: '300000' });
    const { key } = await createKey(app);
    expect(await codeOf(app, key)).toBe('VALID');

    proxy?.cut();
    await waitFor(() => !app.container.invalidation.live(), 'the listener to notice the outage');
    // Not live, so nothing is fresh: each answer below tried the database first.
    expect(await codeOf(app, key)).toBe('VALID');
    expect(await codeOf(app, key, { scopes: ['x:y'] })).toBe('INSUFFICIENT_SCOPES');
    expect(app.container.keyCache.stats().stale).toBeGreaterThan(0);

    const unknown = await verify(app, { key: generateKey('kw') });
    expect(unknown.statusCode).toBe(503);
    expect(unknown.headers['content-type']).toContain('application/problem+json');
    expect(unknown.json()).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
    expect(unknown.body).not.toMatch(/ECONN|127\.0\.0\.1|postgres/i);
    for (const request of [
      { method: 'GET' as const, url: '/v1/api-keys' },
      { method: 'POST' as const, url: '/v1/api-keys', payload: { name: 'during outage' } },
    ]) {
      const management = await app.app.inject({ ...request, headers: bearer(app.adminKey) });
      expect(management.statusCode).toBe(503);
      expect(management.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    }

    proxy?.restore();
    await waitFor(
      async () => (await app.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(app.adminKey) })).statusCode === 200,
      'management calls to work again',
    );
    await waitLive(app.container);
    expect(await codeOf(app, key)).toBe('VALID');
    expect(await codeOf(app, generateKey('kw'))).toBe('NOT_FOUND');
  });

  it('serves a stale record for CACHE_STALE_TTL_MS past its freshness, no longer', async () => {
    const app = await proxiedApp({ CACHE_TTL_MS: '1000', CACHE_STALE_TTL_MS: '10000' });
    const { key } = await createKey(app);
    expect(await codeOf(app, key)).toBe('VALID');
    proxy?.cut();
    app.clock.advance(10_999);
    expect(await codeOf(app, key)).toBe('VALID');
    app.clock.advance(1);
    expect((await verify(app, { key })).statusCode).toBe(503);
  });

  it('does not trust what it cached before a disconnection: changes missed meanwhile are seen', async () => {
    const app = await proxiedApp({ CACHE_TTL_MS: '3600000' });
    const { key, id } = await createKey(app);
    expect(await codeOf(app, key)).toBe('VALID');
    proxy?.cut();
    await waitFor(() => !app.container.invalidation.live(), 'the listener to notice the outage');
    // Another instance deactivates the key while this one cannot hear about it.
    const direct = openDatabase(database?.url ?? '');
    try {
      await updateKey(direct.db, id, { isActive: false });
    } finally {
      await direct.close();
    }
    expect(await codeOf(app, key)).toBe('VALID'); // stale, and that is the point of stale-if-error
    proxy?.restore();
    await waitLive(app.container);
    expect(await codeOf(app, key)).toBe('DISABLED');
  });
});
