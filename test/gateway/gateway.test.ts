import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { generateKey } from '@keyward/sdk';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildGateway } from '../../packages/server/src/gateway/app.js';
import { parseRules } from '../../packages/server/src/gateway/rules.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { closedPort, deleteKeys, randomPrefix, silentServer } from '../limits/redis-helpers.js';
import { type Echoed, type EchoServer, startEcho } from './echo.js';

const RULES = {
  routes: [
    { method: 'GET', path: '/v1/companies/*', scopes: ['companies:read'] },
    { method: ['POST', 'PUT'], path: '/v1/companies/**', scopes: ['companies:write'] },
    { path: '/public/**', public: true },
  ],
  default: { scopes: [] },
};

interface Fixture {
  t: TestApp;
  gateway: FastifyInstance;
}

let echo: EchoServer;
beforeAll(async () => {
  echo = await startEcho();
});
afterAll(async () => echo?.close());

const echoed = (response: { json(): unknown }) => response.json() as Echoed;

describe.each(DIALECTS)('keyward gateway on %s', (dialect) => {
  let fixture: Fixture | undefined;
  afterEach(async () => {
    await fixture?.gateway.close();
    await fixture?.t.close();
    fixture = undefined;
  });

  async function setup(
    options: { env?: Record<string, string>; upstream?: string; rules?: unknown; headersTimeoutMs?: number } = {},
  ): Promise<Fixture> {
    const t = await createTestApp({ dialect, ...(options.env ? { env: options.env } : {}) });
    const gateway = await buildGateway(t.container, {
      upstream: options.upstream ?? echo.url,
      rules: parseRules(options.rules ?? RULES),
      ...(options.headersTimeoutMs === undefined ? {} : { headersTimeoutMs: options.headersTimeoutMs }),
    });
    await gateway.ready();
    fixture = { t, gateway };
    return fixture;
  }

  it('refuses a request without a key: 401 AUTH_REQUIRED with WWW-Authenticate, nothing forwarded', async () => {
    const { gateway } = await setup();
    const before = echo.received.length;
    const response = await gateway.inject({ method: 'GET', url: '/v1/orders' });
    expect(response.statusCode).toBe(401);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.headers['www-authenticate']).toBe('Bearer realm="keyward"');
    expect(response.json()).toMatchObject({ code: 'AUTH_REQUIRED', status: 401 });
    expect(echo.received.length).toBe(before);
  });

  it('refuses unknown, malformed and non-Bearer credentials with 401 INVALID_CREDENTIALS', async () => {
    const { gateway } = await setup();
    const before = echo.received.length;
    for (const headers of [
      bearer(generateKey('kw')),
      bearer('not-a-key'),
      { 'x-api-key': generateKey('kw') },
      { authorization: 'Basic dTpw' },
    ]) {
      const response = await gateway.inject({ method: 'GET', url: '/v1/orders', headers });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' });
      expect(response.headers['www-authenticate']).toContain('error="invalid_token"');
    }
    expect(echo.received.length).toBe(before);
  });

  it('answers 403 FORBIDDEN to a valid key without the route’s scope', async () => {
    const f = await setup();
    const { key } = await createKey(f.t, { scopes: ['companies:read'] });
    const write = await f.gateway.inject({ method: 'POST', url: '/v1/companies/7/notes', headers: bearer(key), payload: { a: 1 } });
    expect(write.statusCode).toBe(403);
    expect(write.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(write.json()).toMatchObject({ code: 'FORBIDDEN', status: 403 });
    // HEAD is governed by the GET rule: it does not fall through to the (scope-free) default.
    const other = await createKey(f.t, { scopes: ['orders:read'] });
    const head = await f.gateway.inject({ method: 'HEAD', url: '/v1/companies/7', headers: bearer(other.key) });
    expect(head.statusCode).toBe(403);
  });

  it('forwards a good key’s request with X-Keyward-* identity and without the key headers', async () => {
    const f = await setup();
    const user = await f.t.app.inject({
      method: 'POST',
      url: '/v1/users',
      headers: bearer(f.t.adminKey),
      payload: { external_id: 'acme-1' },
    });
    const userId = (user.json() as { id: string }).id;
    const { key, id } = await createKey(f.t, { scopes: ['companies:read', 'orders:*'], user_id: userId });

    const response = await f.gateway.inject({
      method: 'GET',
      url: '/v1/companies/42?expand=owner&x=1',
      headers: { ...bearer(key), 'user-agent': 'gw-test', 'x-custom': 'kept', host: 'api.example.com' },
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-upstream']).toBe('echo');
    const seen = echoed(response);
    expect(seen.method).toBe('GET');
    expect(seen.url).toBe('/v1/companies/42?expand=owner&x=1');
    expect(seen.headers['x-keyward-key-id']).toBe(id);
    expect(seen.headers['x-keyward-user-id']).toBe(userId);
    expect(seen.headers['x-keyward-scopes']).toBe('companies:read,orders:*');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-api-key']).toBeUndefined();
    expect(seen.headers['x-custom']).toBe('kept');
    expect(seen.headers['user-agent']).toBe('gw-test');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe('api.example.com');
    expect(JSON.stringify(seen)).not.toContain(key);

    // X-API-Key works the same, and an admin/service key carries no user id.
    const viaHeader = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: { 'x-api-key': f.t.adminKey } });
    expect(viaHeader.statusCode).toBe(200);
    const seen2 = echoed(viaHeader);
    expect(seen2.headers['x-api-key']).toBeUndefined();
    expect(seen2.headers['x-keyward-key-id']).toEqual(expect.any(String));
    expect(seen2.headers['x-keyward-user-id']).toBeUndefined();
  });

  it('passes the upstream’s status and headers through, and never retries its 503', async () => {
    const f = await setup();
    const { key } = await createKey(f.t);
    const created = await f.gateway.inject({ method: 'PUT', url: '/v1/things/status/201', headers: bearer(key), payload: 'x' });
    expect(created.statusCode).toBe(201);
    expect(created.headers['x-upstream']).toBe('echo');
    const before = echo.received.length;
    const unavailable = await f.gateway.inject({ method: 'GET', url: '/v1/things/status/503', headers: bearer(key) });
    expect(unavailable.statusCode).toBe(503);
    expect(echo.received.length).toBe(before + 1);
  });

  it('strips X-Keyward-* headers the client sent, so the identity cannot be spoofed', async () => {
    const f = await setup();
    const { key, id } = await createKey(f.t);
    const spoof = { 'x-keyward-key-id': 'forged', 'x-keyward-user-id': 'forged', 'x-keyward-scopes': '*', 'x-keyward-admin': 'true' };
    const keyed = echoed(await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: { ...bearer(key), ...spoof } }));
    expect(keyed.headers['x-keyward-key-id']).toBe(id);
    expect(keyed.headers['x-keyward-user-id']).toBeUndefined();
    expect(keyed.headers['x-keyward-scopes']).toBe('');
    expect(keyed.headers['x-keyward-admin']).toBeUndefined();

    const anonymous = echoed(await f.gateway.inject({ method: 'GET', url: '/public/docs', headers: spoof }));
    expect(Object.keys(anonymous.headers).filter((h) => h.startsWith('x-keyward-'))).toEqual([]);
  });

  it('lets a public route through anonymously; a key sent there is removed, not checked', async () => {
    const f = await setup();
    const open = await f.gateway.inject({ method: 'GET', url: '/public/docs/index.html' });
    expect(open.statusCode).toBe(200);
    expect(echoed(open).url).toBe('/public/docs/index.html');
    const withBadKey = await f.gateway.inject({ method: 'POST', url: '/public/forms', headers: bearer('garbage-key'), payload: 'hi' });
    expect(withBadKey.statusCode).toBe(200);
    expect(echoed(withBadKey).headers.authorization).toBeUndefined();
    expect(echoed(withBadKey).headers['x-keyward-key-id']).toBeUndefined();
    // Matching is case-insensitive and on the decoded path, so the rules see what the upstream will route.
    expect((await f.gateway.inject({ method: 'GET', url: '/PUBLIC/x' })).statusCode).toBe(200);
  });

  it('matches rules on the normalised path: dot segments are resolved, encoded traversal is refused', async () => {
    const f = await setup();
    // `/public/../v1/companies/1` is `/v1/companies/1` upstream: it needs a key, the public rule does not apply.
    const resolved = await f.gateway.inject({ method: 'GET', url: '/public/%2e%2e/v1/companies/1' });
    expect(resolved.statusCode).toBe(401);
    const { key } = await createKey(f.t, { scopes: ['companies:read'] });
    const forwarded = await f.gateway.inject({ method: 'GET', url: '/public/../v1/companies/1', headers: bearer(key) });
    expect(forwarded.statusCode).toBe(200);
    expect(echoed(forwarded).url).toBe('/v1/companies/1');
    const before = echo.received.length;
    for (const url of ['/public/..%2Fv1/companies/1', '/public/%2e%2e%2fadmin', '/public/a%00b', '/public/%zz']) {
      const refused = await f.gateway.inject({ method: 'GET', url });
      expect(refused.statusCode, url).toBe(400);
      expect(refused.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    expect(echo.received.length).toBe(before);
  });

  it('refuses encoded slashes and backslashes with 400, so a stricter rule cannot be escaped', async () => {
    const f = await setup();
    // A key without companies:read: as one segment, `companies%2F1` would fall to the laxer default and pass.
    const { key } = await createKey(f.t);
    const before = echo.received.length;
    for (const url of ['/v1/companies%2F1', '/v1/companies%2f1', '/v1/companies%5C1', '/public/group%2Fproject']) {
      const refused = await f.gateway.inject({ method: 'GET', url, headers: bearer(key) });
      expect(refused.statusCode, url).toBe(400);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    expect(echo.received.length).toBe(before);
  });

  it('with REQUIRE_API_KEY=false lets keyless requests through anonymously, but still refuses a bad key', async () => {
    const f = await setup({ env: { REQUIRE_API_KEY: 'false' } });
    const anonymous = await f.gateway.inject({ method: 'GET', url: '/v1/orders' });
    expect(anonymous.statusCode).toBe(200);
    expect(echoed(anonymous).headers['x-keyward-key-id']).toBeUndefined();
    const bad = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(generateKey('kw')) });
    expect(bad.statusCode).toBe(401);
    expect(bad.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' });
    // A route that requires scopes cannot be met without a key.
    const scoped = await f.gateway.inject({ method: 'GET', url: '/v1/companies/1' });
    expect(scoped.statusCode).toBe(401);
    expect(scoped.json()).toMatchObject({ code: 'AUTH_REQUIRED' });
    const { key, id } = await createKey(f.t);
    const keyed = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
    expect(echoed(keyed).headers['x-keyward-key-id']).toBe(id);
  });

  it('refuses a key at once after it is revoked (shared cache, invalidated)', async () => {
    const f = await setup();
    const { key, id } = await createKey(f.t);
    expect((await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) })).statusCode).toBe(200);
    const revoked = await f.t.app.inject({ method: 'POST', url: `/v1/api-keys/${id}/revoke`, headers: bearer(f.t.adminKey) });
    expect(revoked.statusCode).toBe(200);
    const after = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
    expect(after.statusCode).toBe(401);
    expect(after.json()).toMatchObject({ code: 'KEY_REVOKED' });
  });

  it('records a usage row per keyed request (endpoint without query, method, status, ip, agent, time, outcome), never the key', async () => {
    const f = await setup();
    const { key, id } = await createKey(f.t, { scopes: ['companies:read'] });
    const headers = { ...bearer(key), 'user-agent': 'usage-test/1.0' };
    await f.gateway.inject({ method: 'GET', url: `/v1/companies/9?api_key=${key}`, headers });
    await f.gateway.inject({ method: 'POST', url: '/v1/companies/9', headers, payload: { n: 1 } });
    await f.gateway.inject({ method: 'GET', url: '/v1/orders/status/404', headers });
    const unknown = generateKey('kw');
    await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(unknown) });
    await f.gateway.inject({ method: 'GET', url: '/public/x' });
    await f.t.container.usage.flush();

    const { db } = f.t.container.db;
    const rows = await db
      .selectFrom('api_key_usage')
      .selectAll()
      .where('api_key_id', '=', id)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    expect(rows.map((r) => [r.endpoint, r.method, r.status_code, r.outcome])).toEqual([
      ['/v1/companies/9', 'GET', 200, 'VALID'],
      ['/v1/companies/9', 'POST', 403, 'INSUFFICIENT_SCOPES'],
      ['/v1/orders/status/404', 'GET', 404, 'VALID'],
    ]);
    for (const row of rows) {
      expect(row.ip_address).toBe('127.0.0.1');
      expect(row.user_agent).toBe('usage-test/1.0');
      expect(Number(row.response_time_ms)).toBeGreaterThanOrEqual(0);
    }
    const all = await db.selectFrom('api_key_usage').selectAll().execute();
    const failed = all.filter((r) => r.outcome === 'NOT_FOUND');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ api_key_id: null, endpoint: '/v1/orders', status_code: 401 });
    // Anonymous (public) traffic is not a verification: no row.
    expect(all.some((r) => r.endpoint === '/public/x')).toBe(false);
    const dump = JSON.stringify(all);
    expect(dump).not.toContain(key);
    expect(dump).not.toContain(unknown);
  });

  it('answers 502 BAD_GATEWAY problem+json when the upstream is down, without internals', async () => {
    const port = await closedPort();
    const f = await setup({ upstream: `http://127.0.0.1:${port}` });
    const { key } = await createKey(f.t);
    const response = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
    expect(response.statusCode).toBe(502);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json()).toMatchObject({ code: 'BAD_GATEWAY', status: 502 });
    expect(response.body).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|stack/);
  });

  it('answers 504 GATEWAY_TIMEOUT problem+json when the upstream accepts but does not answer', async () => {
    const silent = await silentServer();
    try {
      const f = await setup({ upstream: `http://127.0.0.1:${silent.port}`, headersTimeoutMs: 200 });
      const { key } = await createKey(f.t);
      const response = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
      expect(response.statusCode).toBe(504);
      expect(response.json()).toMatchObject({ code: 'GATEWAY_TIMEOUT', status: 504 });
    } finally {
      await silent.close();
    }
  });

  it('keeps the upstream URL’s base path as a prefix', async () => {
    const f = await setup({ upstream: `${echo.url}/base/v2` });
    const { key } = await createKey(f.t);
    const response = await f.gateway.inject({ method: 'GET', url: '/items/1?q=2', headers: bearer(key) });
    expect(echoed(response).url).toBe('/base/v2/items/1?q=2');
    const doubled = await f.gateway.inject({ method: 'GET', url: '//evil.example/x', headers: bearer(key) });
    expect(echoed(doubled).url).toBe('/base/v2//evil.example/x');
    expect(echoed(await f.gateway.inject({ method: 'GET', url: '/', headers: bearer(key) })).url).toBe('/base/v2/');
  });

  it('streams a POST body through intact, whatever its size and type (no parsing, no body limit)', async () => {
    const f = await setup();
    const { key } = await createKey(f.t);
    // Not JSON although it says so, and far over BODY_LIMIT_BYTES: the gateway must not touch it.
    const body = randomBytes(3 * 1024 * 1024);
    const response = await f.gateway.inject({
      method: 'POST',
      url: '/v1/uploads',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      payload: body,
    });
    expect(response.statusCode).toBe(200);
    const seen = echoed(response);
    expect(seen.headers['content-type']).toBe('application/json');
    expect(seen.bodyLength).toBe(body.length);
    expect(seen.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('streams a chunked request body from a real client through a listening gateway', async () => {
    const f = await setup();
    const { key } = await createKey(f.t);
    await f.gateway.listen({ port: 0, host: '127.0.0.1' });
    const { port } = f.gateway.server.address() as AddressInfo;
    const chunks = Array.from({ length: 50 }, () => randomBytes(16 * 1024));
    const expected = createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
    const result = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/stream',
          headers: { ...bearer(key), 'content-type': 'application/octet-stream' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      Readable.from(chunks).pipe(req);
    });
    expect(result.status).toBe(200);
    const seen = JSON.parse(result.body) as Echoed;
    expect(seen.headers['transfer-encoding']).toBe('chunked');
    expect(seen.bodySha256).toBe(expected);
  });

  it('spends the rule’s cost from the key’s quota, then answers 429 USAGE_EXCEEDED', async () => {
    const f = await setup({ rules: { routes: [{ path: '/v1/reports/**', cost: 5 }] } });
    const { key } = await createKey(f.t, { quota: { remaining: 6 } });
    expect((await f.gateway.inject({ method: 'GET', url: '/v1/reports/1', headers: bearer(key) })).statusCode).toBe(200);
    const second = await f.gateway.inject({ method: 'GET', url: '/v1/reports/1', headers: bearer(key) });
    expect(second.statusCode).toBe(429);
    expect(second.json()).toMatchObject({ code: 'USAGE_EXCEEDED' });
    // A quota that never refills has no time to give.
    expect(second.headers['retry-after']).toBeUndefined();
    expect((await f.gateway.inject({ method: 'GET', url: '/v1/other', headers: bearer(key) })).statusCode).toBe(200);
    // One that refills daily says when: the next UTC midnight.
    const daily = await createKey(f.t, { quota: { remaining: 0, refill: { amount: 5, interval: 'day' } } });
    const refused = await f.gateway.inject({ method: 'GET', url: '/v1/reports/1', headers: bearer(daily.key) });
    expect(refused.statusCode).toBe(429);
    const now = new Date();
    const midnight = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
    expect(Math.abs(Number(refused.headers['retry-after']) - (midnight - now.getTime()) / 1000)).toBeLessThan(5);
  });

  it('refuses an address after too many bad keys (brute-force guard): 429 with Retry-After', async () => {
    const f = await setup({ env: { AUTH_FAILURES_PER_MINUTE: '2' } });
    for (let i = 0; i < 2; i += 1) {
      expect((await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(generateKey('kw')) })).statusCode).toBe(401);
    }
    const blocked = await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(generateKey('kw')) });
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json()).toMatchObject({ code: 'RATE_LIMITED' });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('still serves a blocked address the keys it holds (real keys seen before), and refuses the rest', async () => {
    const f = await setup({ env: { AUTH_FAILURES_PER_MINUTE: '2' } });
    const seen = await createKey(f.t, { name: 'seen' });
    const unseen = await createKey(f.t, { name: 'unseen' });
    const get = (key: string) => f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
    expect((await get(seen.key)).statusCode).toBe(200);
    for (let i = 0; i < 2; i += 1) expect((await get(generateKey('kw'))).statusCode).toBe(401);
    expect((await get(seen.key)).statusCode).toBe(200);
    expect((await get(unseen.key)).statusCode).toBe(429);
  });
});

const redisUrl = inject('redisUrl');
const LIMIT_BACKENDS: Array<{ name: string; redis: boolean }> = [
  { name: 'memory', redis: false },
  ...(redisUrl ? [{ name: 'redis', redis: true }] : []),
];

describe.each(LIMIT_BACKENDS)('keyward gateway rate limits ($name backend)', ({ redis }) => {
  let t: TestApp | undefined;
  let gateway: FastifyInstance | undefined;
  let prefix = '';
  afterEach(async () => {
    await gateway?.close();
    await t?.close();
    if (redis && redisUrl) {
      const client = new Redis(redisUrl);
      await deleteKeys(client, prefix);
      client.disconnect();
    }
  });

  it('answers 429 RATE_LIMITED with Retry-After and RateLimit headers on the request over the key’s limit', async () => {
    prefix = randomPrefix();
    t = await createTestApp({ env: redis && redisUrl ? { REDIS_URL: redisUrl, REDIS_PREFIX: prefix } : {} });
    gateway = await buildGateway(t.container, { upstream: echo.url });
    const { key } = await createKey(t, { rate_limit: { limit: 2, window_seconds: 60 } });
    const first = await gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
    expect(first.statusCode).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"default";q=2;w=60');
    expect(first.headers.ratelimit).toMatch(/^"default";r=1;t=\d+$/);
    expect((await gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) })).statusCode).toBe(200);
    const before = echo.received.length;
    const third = await gateway.inject({ method: 'GET', url: '/v1/orders', headers: bearer(key) });
    expect(third.statusCode).toBe(429);
    expect(third.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(third.json()).toMatchObject({ code: 'RATE_LIMITED', status: 429 });
    expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // `reset` is whole unix seconds, rounded up: the wait may read one second over the window.
    expect(Number(third.headers['retry-after'])).toBeLessThanOrEqual(61);
    expect(third.headers.ratelimit).toMatch(/^"default";r=0;t=\d+$/);
    expect(echo.received.length).toBe(before);
  });
});
