import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { codeOf, post, startTcpProxy, type TcpProxy, waitFor, waitLive } from './helpers.js';

// Two instances on one PostgreSQL schema and one Redis: A reaches Redis through a TCP proxy, B directly. A key
// is revoked on A while A cannot reach Redis (the database is fine, so the change commits): B's subscription is
// healthy the whole time, so only A's announcement, sent again once A reaches Redis, can tell B.
const redisUrl = inject('redisUrl');
const runs = DIALECTS.includes('postgres') && redisUrl !== null;
const title = runs
  ? 'an announcement that failed is sent again'
  : `an announcement that failed is sent again — skipped: ${redisUrl === null ? 'REDIS_URL is not set' : POSTGRES_SKIP_REASON}`;

(runs ? describe : describe.skip)(title, () => {
  let database: FreshDatabase | undefined;
  let proxy: TcpProxy | undefined;
  const apps: TestApp[] = [];
  afterEach(async () => {
    proxy?.restore();
    for (const app of apps.splice(0)) await app.close();
    await proxy?.close();
    await database?.cleanup();
  });

  it('a key revoked on an instance cut from Redis is seen by the others once it reaches Redis again, not after CACHE_TTL_MS', async () => {
    database = await freshDatabase('postgres');
    const direct = new URL(redisUrl ?? '');
    proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 6379) });
    const proxied = new URL(direct);
    proxied.port = String(proxy.port);
    // Freshness of an hour: B can only learn of the change through a message.
    const env = { REDIS_PREFIX: `kwtest_${randomBytes(4).toString('hex')}:`, REDIS_TIMEOUT_MS: '200', CACHE_TTL_MS: '3600000' };
    const a = await createTestApp({ database, env: { ...env, REDIS_URL: proxied.toString() } });
    apps.push(a);
    const b = await createTestApp({ database, env: { ...env, REDIS_URL: redisUrl ?? '', INITIAL_ADMIN_KEY: a.adminKey } });
    apps.push(b);
    b.adminKey = a.adminKey; // one database, one admin key
    await waitLive(a.container);
    await waitLive(b.container);
    const { key, id } = await createKey(a);
    expect(await codeOf(b, key)).toBe('VALID'); // cached on B

    proxy.cut();
    expect((await post(a, `/v1/api-keys/${id}/revoke`)).statusCode).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // the announcement has failed by now
    proxy.restore();
    await waitFor(async () => (await codeOf(b, key)) === 'REVOKED', 'B to see the revocation', 15_000);
  }, 60_000);
});
