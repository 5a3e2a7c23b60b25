import { randomBytes } from 'node:crypto';
import { generateKey } from '@keyward/sdk';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ConfigError, loadConfig } from '../../packages/server/src/config.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { codeOf, post, startTcpProxy, type TcpProxy, waitFor, waitLive } from './helpers.js';

// Two instances (containers + apps) in one process, sharing one PostgreSQL schema: a change made on A is
// seen on B through Redis pub/sub or PostgreSQL LISTEN/NOTIFY. Freshness is an hour, so B can only see
// it through a message.
const redisUrl = inject('redisUrl');
const TRANSPORTS = [
  ['postgres', true, ''],
  ['redis', redisUrl !== null, 'REDIS_URL is not set'],
] as const;
const hasPostgres = DIALECTS.includes('postgres');

for (const [transport, available, reason] of TRANSPORTS) {
  const runs = hasPostgres && available;
  const title = runs
    ? `cross-instance invalidation through ${transport}`
    : `cross-instance invalidation through ${transport} — skipped: ${hasPostgres ? reason : POSTGRES_SKIP_REASON}`;
  (runs ? describe : describe.skip)(title, () => {
    let database: FreshDatabase | undefined;
    const apps: TestApp[] = [];
    afterEach(async () => {
      for (const app of apps.splice(0)) await app.close();
      await database?.cleanup();
      database = undefined;
    });

    async function twoInstances() {
      database = await freshDatabase('postgres');
      const tag = `kwtest_${randomBytes(4).toString('hex')}`;
      const url = new URL(database.url);
      url.searchParams.set('application_name', tag); // lets the test find (and kill) this run's connections
      const prefix = `${tag}:`;
      const env = {
        DATABASE_URL: url.toString(),
        CACHE_TTL_MS: '3600000',
        CACHE_NEGATIVE_TTL_MS: '3600000',
        ...(transport === 'redis' && redisUrl ? { REDIS_URL: redisUrl, REDIS_PREFIX: prefix } : {}),
      };
      const a = await createTestApp({ database, env });
      apps.push(a);
      const b = await createTestApp({ database, env: { ...env, INITIAL_ADMIN_KEY: a.adminKey } });
      apps.push(b);
      b.adminKey = a.adminKey;
      await waitLive(a.container);
      await waitLive(b.container);
      expect(b.container.invalidation.transport).toBe(transport);
      return { a, b, tag, prefix };
    }

    const sees = (app: TestApp, key: string, code: string) =>
      waitFor(async () => (await codeOf(app, key)) === code, `${code} on the other instance`);

    it('B sees every change made on A, and a key created on A drops B’s remembered miss', async () => {
      const { a, b } = await twoInstances();
      const plain = generateKey('kw');
      expect(await codeOf(b, plain)).toBe('NOT_FOUND');
      const { key, id } = await createKey(a);
      expect(await codeOf(b, key)).toBe('VALID');
      // Once A's announcement of the new key has passed, B answers from its cache (the key and the caller).
      await waitFor(async () => {
        const hits = b.container.keyCache.stats().hits;
        expect(await codeOf(b, key)).toBe('VALID');
        return b.container.keyCache.stats().hits === hits + 2;
      }, 'B to answer from its cache');
      await post(a, `/v1/api-keys/${id}/deactivate`);
      await sees(b, key, 'DISABLED');
      await post(a, `/v1/api-keys/${id}/activate`);
      await sees(b, key, 'VALID');
      await a.app.inject({ method: 'PATCH', url: `/v1/api-keys/${id}`, headers: bearer(a.adminKey), payload: { scopes: ['x:*'] } });
      await waitFor(async () => (await codeOf(b, key, { scopes: ['x:read'] })) === 'VALID', 'the new scopes on B');
      await post(a, `/v1/api-keys/${id}/revoke`);
      await sees(b, key, 'REVOKED');
      await a.app.inject({ method: 'DELETE', url: `/v1/api-keys/${id}`, headers: bearer(a.adminKey) });
      await sees(b, key, 'NOT_FOUND');
      // A remembered miss on B is dropped when the key appears on A.
      const created = await a.container.keys.create(
        { principal: { kind: 'system', name: 'test' }, ip: null },
        { name: 'late' },
        { plaintext: plain },
      );
      expect(created.ok).toBe(true);
      await sees(b, plain, 'VALID');
    });

    it('resubscribes by itself after its subscription connection is killed, then hears changes again', async () => {
      const { a, b, tag, prefix } = await twoInstances();
      const { key, id } = await createKey(a);
      expect(await codeOf(b, key)).toBe('VALID');
      if (transport === 'postgres') {
        const admin = new pg.Client({ connectionString: inject('postgresUrl') ?? '' });
        await admin.connect();
        await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [tag]);
        await admin.end();
      } else {
        const redis = new Redis(redisUrl ?? '');
        const clients = String(await redis.client('LIST'));
        for (const line of clients.split('\n').filter((l) => l.includes(` name=${prefix}key-changed:sub `))) {
          const clientId = /(?:^|\s)id=(\d+)/.exec(line)?.[1];
          if (clientId) await redis.client('KILL', 'ID', clientId);
        }
        await redis.quit();
      }
      await waitFor(() => !a.container.invalidation.live() || !b.container.invalidation.live(), 'the subscriptions to drop');
      await waitLive(a.container);
      await waitLive(b.container);
      await post(a, `/v1/api-keys/${id}/deactivate`);
      await sees(b, key, 'DISABLED');
    });
  });
}

const redisRuns = hasPostgres && redisUrl !== null;
(redisRuns ? describe : describe.skip)(
  `cross-instance invalidation through redis, silent connection${redisRuns ? '' : ` — skipped: ${hasPostgres ? 'REDIS_URL is not set' : POSTGRES_SKIP_REASON}`}`,
  () => {
    let database: FreshDatabase | undefined;
    let proxy: TcpProxy | undefined;
    const apps: TestApp[] = [];
    afterEach(async () => {
      proxy?.restore();
      for (const app of apps.splice(0)) await app.close();
      await proxy?.close();
      await database?.cleanup();
    });

    /**
     * Two instances on one PostgreSQL schema, freshness an hour (only a message can tell of a change): the one
     * named by `proxied` reaches Redis through a TCP proxy, the other directly. A key is created and cached on B.
     */
    async function twoInstances(proxied: 'a' | 'b') {
      database = await freshDatabase('postgres');
      const direct = new URL(redisUrl ?? '');
      const opened = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 6379) });
      proxy = opened;
      const through = new URL(direct);
      through.port = String(opened.port);
      const urlOf = (side: 'a' | 'b') => (side === proxied ? through.toString() : (redisUrl ?? ''));
      const env = { CACHE_TTL_MS: '3600000', REDIS_PREFIX: `kwtest_${randomBytes(4).toString('hex')}:`, REDIS_TIMEOUT_MS: '200' };
      const a = await createTestApp({ database, env: { ...env, REDIS_URL: urlOf('a') } });
      apps.push(a);
      const b = await createTestApp({ database, env: { ...env, REDIS_URL: urlOf('b'), INITIAL_ADMIN_KEY: a.adminKey } });
      apps.push(b);
      b.adminKey = a.adminKey;
      await waitLive(a.container);
      await waitLive(b.container);
      const { key, id } = await createKey(a);
      expect(await codeOf(b, key)).toBe('VALID');
      return { a, b, proxy: opened, key, id };
    }

    it('stops trusting its cache when its subscription goes silent without closing, and sees changes again', {
      timeout: 60_000,
    }, async () => {
      // B reaches Redis through the proxy (its subscription and its rate-limit connection).
      const { a, b, proxy, key, id } = await twoInstances('b');
      // Packets stop; nothing closes. A's revoke announcement never reaches B, whose record is fresh for an hour:
      // only the heartbeat can tell B to stop trusting it.
      proxy.freeze();
      await post(a, `/v1/api-keys/${id}/revoke`);
      await waitFor(() => !b.container.invalidation.live(), 'B to notice its silent subscription', 15_000);
      expect(await codeOf(b, key)).toBe('REVOKED');

      proxy.restore();
      await waitLive(b.container, 15_000);
      const other = await createKey(a);
      expect(await codeOf(b, other.key)).toBe('VALID');
      await post(a, `/v1/api-keys/${other.id}/deactivate`);
      await sees(b, other.key, 'DISABLED');
    });

    it('sends again an announcement that failed: a key revoked on an instance cut from Redis is seen by the others once it is back', {
      timeout: 60_000,
    }, async () => {
      // A reaches Redis through the proxy, B directly: B's subscription is fine the whole time, so only A's
      // announcement, sent again once A reaches Redis, can tell B (the change commits: the database is fine).
      const { a, b, proxy, key, id } = await twoInstances('a');
      proxy.cut();
      expect((await post(a, `/v1/api-keys/${id}/revoke`)).statusCode).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // the announcement has failed by now
      proxy.restore();
      await waitFor(async () => (await codeOf(b, key)) === 'REVOKED', 'B to see the revocation', 15_000);
    });
  },
);

const sees = (app: TestApp, key: string, code: string) =>
  waitFor(async () => (await codeOf(app, key)) === code, `${code} on the other instance`);

describe('REDIS_PREFIX', () => {
  it('defaults to keyward: and is validated', () => {
    expect(loadConfig({}).redisPrefix).toBe('keyward:');
    expect(loadConfig({ REDIS_PREFIX: 'acme:prod:' }).redisPrefix).toBe('acme:prod:');
    expect(() => loadConfig({ REDIS_PREFIX: 'has space' })).toThrow(ConfigError);
    expect(() => loadConfig({ REDIS_PREFIX: 'x'.repeat(65) })).toThrow(/REDIS_PREFIX/);
  });
});
