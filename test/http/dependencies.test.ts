import { Writable } from 'node:stream';
import { generateKey } from '@keyward/sdk';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../packages/server/src/app.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { type Container, createContainer } from '../../packages/server/src/container.js';
import type { App } from '../../packages/server/src/http/types.js';
import { loggerOptions } from '../../packages/server/src/logger.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { proxyInFrontOf, type TcpProxy } from '../helpers/tcp-proxy.js';
import { closedPort, randomPrefix } from '../limits/redis-helpers.js';
import { waitFor, waitLive } from '../verify/helpers.js';

const redisUrl = process.env.REDIS_URL ?? null;

/** Prometheus samples by series (`name{labels}`), for exact look-ups. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (sample && !line.startsWith('#')) out.set(sample[1] as string, Number(sample[2]));
  }
  return out;
}

async function scrape(app: App): Promise<{ text: string; samples: Map<string, number> }> {
  const response = await app.inject({ method: 'GET', url: '/metrics' });
  expect(response.statusCode).toBe(200);
  return { text: response.body, samples: samples(response.body) };
}

describe('/readyz', () => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('reports each dependency: all ok, Redis disabled without REDIS_URL', async () => {
    t = await createTestApp();
    const response = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok', checks: { database: 'ok', redis: 'disabled', invalidation: 'ok' } });
  });

  it('says degraded, still 200, with Redis unreachable: Keyward serves without it', async () => {
    t = await createTestApp({ env: { REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, REDIS_TIMEOUT_MS: '100' } });
    const response = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'degraded', checks: { database: 'ok', redis: 'down', invalidation: 'down' } });
    // And so does /metrics, one gauge per dependency.
    const { samples: now } = await scrape(t.app);
    expect(now.get('keyward_dependency_up{dependency="database"}')).toBe(1);
    expect(now.get('keyward_dependency_up{dependency="redis"}')).toBe(0);
    expect(now.get('keyward_dependency_up{dependency="invalidation"}')).toBe(0);
  });
});

describe('HTTP request metrics', () => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('count requests and their duration by method, route pattern and status, never by raw URL', async () => {
    t = await createTestApp();
    const a = await createKey(t);
    const b = await createKey(t);
    for (const id of [a.id, b.id, a.id]) {
      expect((await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}?x=1`, headers: bearer(t.adminKey) })).statusCode).toBe(200);
    }
    expect((await t.app.inject({ method: 'GET', url: '/v1/api-keys/key_nope', headers: bearer(t.adminKey) })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: `/no/such/${generateKey('kw')}` })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(generateKey('kw')) })).statusCode).toBe(401);

    const { text, samples: now } = await scrape(t.app);
    expect(text).toContain('# TYPE keyward_http_requests_total counter');
    expect(text).toContain('# TYPE keyward_http_request_duration_seconds histogram');
    const series = (name: string, labels: string) => now.get(`${name}{${labels}}`);
    const byId = 'method="GET",route="/v1/api-keys/:id"';
    expect(series('keyward_http_requests_total', `${byId},status="200"`)).toBe(3);
    expect(series('keyward_http_requests_total', `${byId},status="404"`)).toBe(1);
    expect(series('keyward_http_requests_total', 'method="POST",route="/v1/api-keys",status="201"')).toBe(2);
    expect(series('keyward_http_requests_total', 'method="GET",route="/v1/api-keys",status="401"')).toBe(1);
    expect(series('keyward_http_requests_total', 'method="GET",route="unmatched",status="404"')).toBe(1);
    expect(series('keyward_http_request_duration_seconds_count', `${byId},status="200"`)).toBe(3);
    expect(series('keyward_http_request_duration_seconds_bucket', `le="+Inf",${byId},status="200"`)).toBe(3);
    expect(series('keyward_http_request_duration_seconds_sum', `${byId},status="200"`)).toBeGreaterThan(0);
    // No id, key or query string became a label value.
    for (const id of [a.id, b.id, 'key_nope', 'x=1', '/no/such']) expect(text).not.toContain(id);
  });
});

/** An app whose log lines are kept, through the same factory `keyward serve` uses. */
async function loggedApp(env: Record<string, string>, database: FreshDatabase, databaseUrl = database.url) {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const config = loadConfig({ DATABASE_URL: databaseUrl, LOG_LEVEL: 'info', ...env });
  const container = createContainer(config);
  await migrateUp(container.db.db);
  const app = await buildApp(container, { loggerInstance: pino(loggerOptions('info'), sink) });
  await app.ready();
  const logged = () => lines.map((line) => JSON.parse(line) as { msg: string; dependency?: string; level: number });
  const count = (msg: string) => logged().filter((line) => line.msg === msg).length;
  return {
    app,
    container,
    lines,
    count,
    async close() {
      await app.close();
      await container.close();
    },
  };
}

async function hammer(app: App, container: Container, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    await app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(generateKey('kw')), payload: { key: generateKey('kw') } });
    await app.inject({ method: 'GET', url: '/readyz' });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(container.config.logLevel).toBe('info');
}

(redisUrl ? describe : describe.skip)(`dependency state changes in the log${redisUrl ? '' : ' — skipped: REDIS_URL is not set'}`, () => {
  let database: FreshDatabase | undefined;
  let proxy: TcpProxy | undefined;
  let running: { close(): Promise<void> } | undefined;
  afterEach(async () => {
    proxy?.restore();
    await running?.close();
    await proxy?.close();
    await database?.cleanup();
    running = undefined;
    proxy = undefined;
    database = undefined;
  });

  it('logs Redis and invalidation going down and coming back once each, however many requests and reconnects', {
    timeout: 60_000,
  }, async () => {
    database = await freshDatabase('sqlite');
    const proxied = await proxyInFrontOf(redisUrl ?? '', 6379);
    proxy = proxied.proxy;
    const t = await loggedApp({ REDIS_URL: proxied.url, REDIS_PREFIX: randomPrefix(), REDIS_TIMEOUT_MS: '200' }, database);
    running = t;
    await waitLive(t.container);
    await hammer(t.app, t.container, 3);
    expect(t.count('redis is down')).toBe(0);

    proxy.cut();
    await waitFor(() => t.count('redis is down') === 1 && t.count('invalidation is down') === 1, 'the outage to be logged');
    await hammer(t.app, t.container, 20); // a second of requests, checks and reconnect attempts
    proxy.restore();
    await waitFor(() => t.count('redis is back up') === 1 && t.count('invalidation is back up') === 1, 'the recovery to be logged');
    await hammer(t.app, t.container, 3);

    const transitions = t.lines.filter((line) => line.includes('"dependency"'));
    expect(transitions.map((line) => JSON.parse(line).msg).sort()).toEqual([
      'invalidation is back up',
      'invalidation is down',
      'redis is back up',
      'redis is down',
    ]);
    const down = JSON.parse(transitions.find((line) => line.includes('redis is down')) ?? '{}');
    expect(down).toMatchObject({ level: 40, dependency: 'redis', state: 'down' });
    const up = JSON.parse(transitions.find((line) => line.includes('redis is back up')) ?? '{}');
    expect(up).toMatchObject({ level: 30, dependency: 'redis', state: 'ok' });
    expect(up.downForMs).toBeGreaterThan(0);
    expect(t.lines.join('\n')).not.toContain(proxied.url);
  });
});

const hasPostgres = DIALECTS.includes('postgres');
(hasPostgres ? describe : describe.skip)(
  hasPostgres ? 'database state changes' : `database state changes — ${POSTGRES_SKIP_REASON}`,
  () => {
    let database: FreshDatabase | undefined;
    let proxy: TcpProxy | undefined;
    let running: { close(): Promise<void> } | undefined;
    afterEach(async () => {
      proxy?.restore();
      await running?.close();
      await proxy?.close();
      await database?.cleanup();
    });

    it('are logged once each, /readyz answers 503 while the database is down, and the gauge follows', { timeout: 60_000 }, async () => {
      database = await freshDatabase('postgres');
      const proxied = await proxyInFrontOf(database.url, 5432);
      proxy = proxied.proxy;
      const t = await loggedApp({ DATABASE_TIMEOUT_MS: '500' }, database, proxied.url);
      running = t;
      expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);

      proxy.cut();
      for (let i = 0; i < 5; i++) {
        const response = await t.app.inject({ method: 'GET', url: '/readyz' });
        expect(response.statusCode).toBe(503);
        expect(response.json()).toMatchObject({ status: 'down', checks: { database: 'down' } });
      }
      expect((await scrape(t.app)).samples.get('keyward_dependency_up{dependency="database"}')).toBe(0);
      proxy.restore();
      await waitFor(async () => (await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200, 'the database to be back');
      expect((await scrape(t.app)).samples.get('keyward_dependency_up{dependency="database"}')).toBe(1);
      expect(t.count('database is down')).toBe(1);
      expect(t.count('database is back up')).toBe(1);
    });
  },
);
