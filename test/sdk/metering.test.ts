import type { AddressInfo } from 'node:net';
import { createKeywardAuth, generateKey, type KeywardAuth } from '@keyward/sdk';
import { keywardExpress } from '@keyward/sdk/express';
import { keywardFastify } from '@keyward/sdk/fastify';
import { type KeywardVariables, keywardHono } from '@keyward/sdk/hono';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway } from '../../packages/server/src/gateway/app.js';
import { parseRules } from '../../packages/server/src/gateway/rules.js';
import { type EchoServer, startEcho } from '../gateway/echo.js';
import { type LiveKeyward, type StoredRow, settle, startKeyward, tally } from './live-keyward.js';

// Issue 15, items 1 and 2, against a real Keyward: a host request is exactly one usage row, whatever the
// framework and the way its guards are laid out, and each request spends the key's rate limit once and its
// quota exactly the route's cost, in one verify round trip. The host app keeps its own access log (every
// request that presented a key, and its status); Keyward's rows must say the same, key by key.

/** What a host app answered: the status, and the headers (RateLimit ones among them). */
interface Answer {
  status: number;
  headers: Headers;
}
/** A host app under test, with its own access log. */
interface Host {
  request(path: string, key?: string): Promise<Answer>;
  /** The key each request presented (`undefined`: none) and the status it got, as the host logged it. */
  log: Array<{ key: string | undefined; status: number }>;
  close(): Promise<void>;
}

/** How the app lays out its guards (the documented patterns; Fastify has one, its plugin). */
type Pattern = 'global keyward()' | 'authenticate() + route guards' | 'route guards alone' | 'authenticate() + unguarded route' | 'plugin';

/** The route every pattern serves: three quota units, a scope, a tag of its own. */
const COMPANIES_RULE = { scopes: ['companies:read'], cost: 3, tags: ['team:crm'] };
const COMPANIES_COST = 3;

const keyOf = (authorization: string | string[] | undefined): string | undefined =>
  typeof authorization === 'string' ? authorization.replace(/^Bearer /, '') : undefined;

async function expressHost(auth: KeywardAuth, pattern: Pattern): Promise<Host> {
  const keyward = keywardExpress({ auth });
  const log: Host['log'] = [];
  const app = express();
  app.use((req, res, next) => {
    res.on('finish', () => log.push({ key: keyOf(req.headers.authorization), status: res.statusCode }));
    next();
  });
  if (pattern === 'global keyward()') app.use(keyward());
  if (pattern.startsWith('authenticate()')) app.use(keyward.authenticate());
  // The guarded route sits in a router mounted under /v1: the guard is found there too.
  const v1 = express.Router();
  v1.get('/companies/:id', keyward(COMPANIES_RULE), (_req, res) => {
    res.json({ ok: true });
  });
  const open = pattern === 'authenticate() + route guards' || pattern === 'route guards alone' ? [keyward()] : [];
  v1.get('/open', ...open, (_req, res) => {
    res.json({ ok: true });
  });
  app.use('/v1', v1);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    log,
    async request(path, key) {
      const response = await fetch(base + path, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
      await response.arrayBuffer();
      return { status: response.status, headers: response.headers };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function honoHost(auth: KeywardAuth, pattern: Pattern): Promise<Host> {
  const keyward = keywardHono({ auth });
  const log: Host['log'] = [];
  const app = new Hono<{ Variables: KeywardVariables }>();
  app.use('*', async (c, next) => {
    await next();
    log.push({ key: keyOf(c.req.header('authorization')), status: c.res.status });
  });
  if (pattern === 'global keyward()') app.use('*', keyward());
  if (pattern.startsWith('authenticate()')) app.use('*', keyward.authenticate());
  // The guarded route sits in a sub-app mounted under /v1.
  const v1 = new Hono<{ Variables: KeywardVariables }>();
  v1.get('/companies/:id', keyward(COMPANIES_RULE), (c) => c.json({ ok: true }));
  if (pattern === 'authenticate() + route guards' || pattern === 'route guards alone')
    v1.get('/open', keyward(), (c) => c.json({ ok: true }));
  else v1.get('/open', (c) => c.json({ ok: true }));
  app.route('/v1', v1);
  return {
    log,
    async request(path, key) {
      const response = await app.request(path, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
      await response.arrayBuffer();
      return { status: response.status, headers: response.headers };
    },
    close: async () => {},
  };
}

async function fastifyHost(auth: KeywardAuth): Promise<Host> {
  const log: Host['log'] = [];
  const app = Fastify();
  app.addHook('onResponse', async (request, reply) => {
    log.push({ key: keyOf(request.headers.authorization), status: reply.statusCode });
  });
  await app.register(keywardFastify({ auth }));
  app.get('/v1/companies/:id', { config: { keyward: COMPANIES_RULE } }, async () => ({ ok: true }));
  app.get('/v1/open', async () => ({ ok: true }));
  await app.ready();
  return {
    log,
    async request(path, key) {
      const response = await app.inject({ method: 'GET', url: path, headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
      return { status: response.statusCode, headers: new Headers(response.headers as Record<string, string>) };
    },
    close: () => app.close(),
  };
}

const CASES: Array<[string, Pattern]> = [
  ['express', 'global keyward()'],
  ['express', 'authenticate() + route guards'],
  ['express', 'route guards alone'],
  ['express', 'authenticate() + unguarded route'],
  ['hono', 'global keyward()'],
  ['hono', 'authenticate() + route guards'],
  ['hono', 'route guards alone'],
  ['hono', 'authenticate() + unguarded route'],
  ['fastify', 'plugin'],
];

function hostFor(framework: string, auth: KeywardAuth, pattern: Pattern): Promise<Host> {
  if (framework === 'express') return expressHost(auth, pattern);
  if (framework === 'hono') return honoHost(auth, pattern);
  return fastifyHost(auth);
}

/** The `RateLimit` header's `r` (what is left of the window). */
const remainingIn = (answer: Answer): number => Number(/;r=(\d+)/.exec(answer.headers.get('ratelimit') ?? '')?.[1] ?? Number.NaN);

describe.each(CASES)('metering through the %s middleware, %s', (framework, pattern) => {
  let keyward: LiveKeyward;
  let auth: KeywardAuth;
  let host: Host;
  beforeAll(async () => {
    keyward = await startKeyward();
  });
  afterAll(async () => keyward?.close());
  afterEach(async () => {
    await host?.close();
    await auth?.close();
  });

  async function setup(): Promise<void> {
    auth = createKeywardAuth({ baseUrl: keyward.url, apiKey: keyward.verifyKey, fetch: keyward.fetch, tags: ['region:eu'] });
    host = await hostFor(framework, auth, pattern);
  }

  it('N requests per key are N usage rows in Keyward, with the statuses the host logged, and nothing else', async () => {
    await setup();
    const before = await keyward.rows();
    const reader = await keyward.key({ scopes: ['companies:read'] });
    const limited = await keyward.key({ scopes: ['companies:read'], rate_limit: { limit: 2, window_seconds: 60 } });
    const forbidden = await keyward.key({ scopes: ['billing:read'] });
    const revoked = await keyward.key({ scopes: ['companies:read'] });
    await keyward.revoke(revoked.id);
    const unknown = generateKey('kw');
    const ids = new Map<string, string | null>([
      [reader.key, reader.id],
      [limited.key, limited.id],
      [forbidden.key, forbidden.id],
      [revoked.key, revoked.id],
      [unknown, null],
      ['not-a-key', null],
    ]);
    for (const key of ids.keys()) {
      for (let i = 0; i < 3; i++) await host.request('/v1/companies/c1?page=2', key);
      for (let i = 0; i < 2; i++) await host.request('/v1/open', key);
    }
    // Anonymous requests present no key: answered 401, not reported, no row.
    expect((await host.request('/v1/companies/c1')).status).toBe(401);
    expect((await host.request('/v1/open')).status).toBe(401);

    const keyed = host.log.filter((entry) => entry.key !== undefined);
    expect(keyed).toHaveLength(30);
    const expected = tally(keyed, (entry) => `${ids.get(entry.key ?? '') ?? 'no key'} ${entry.status}`);
    const rows = await settle(
      async () => {
        await auth.flush();
        return (await keyward.rows()).slice(before.length);
      },
      (found) => found.length >= keyed.length,
    );
    expect(tally(rows, (row) => `${row.keyId ?? 'no key'} ${row.statusCode}`)).toEqual(expected);
    // The outcomes, as the host saw them.
    expect(tally(rows, (row) => `${row.keyId ?? 'no key'} ${row.outcome}`)).toEqual({
      [`${reader.id} VALID`]: 5,
      [`${limited.id} VALID`]: 2,
      [`${limited.id} RATE_LIMITED`]: 3,
      [`${forbidden.id} INSUFFICIENT_SCOPES`]: 3,
      [`${forbidden.id} VALID`]: 2,
      [`${revoked.id} REVOKED`]: 5,
      'no key NOT_FOUND': 5,
      'no key INVALID_FORMAT': 5,
    });
    // No verification wrote a row of its own.
    expect(rows.filter((row) => row.endpoint === '/v1/keys/verify')).toEqual([]);
    // Tagged with the route's pattern, the rule's tags and the global ones.
    const tagsAt = (endpoint: string): StoredRow['tags'][] => rows.filter((row) => row.endpoint === endpoint).map((row) => row.tags);
    for (const tags of tagsAt('/v1/companies/c1')) expect(tags).toEqual(expect.arrayContaining(['route:/v1/companies/:id', 'region:eu']));
    for (const tags of tagsAt('/v1/open')) expect(tags).toEqual(expect.arrayContaining(['route:/v1/open', 'region:eu']));
    const served = rows.filter((row) => row.endpoint === '/v1/companies/c1' && row.outcome === 'VALID');
    for (const row of served) expect(row.tags).toContain('team:crm');
  });

  it("spends a metered key's rate limit once and its quota exactly the route's cost, in one verify round trip per request", async () => {
    await setup();
    const metered = await keyward.key({
      scopes: ['companies:read'],
      rate_limit: { limit: 100, window_seconds: 60 },
      quota: { remaining: 1000 },
    });
    let answer: Answer | undefined;
    for (let i = 1; i <= 3; i++) {
      const calls = keyward.verifyCalls();
      answer = await host.request('/v1/companies/c1', metered.key);
      expect(answer.status).toBe(200);
      expect(keyward.verifyCalls() - calls).toBe(1);
      expect(remainingIn(answer)).toBe(100 - i);
      expect(await keyward.quotaLeft(metered.id)).toBe(1000 - COMPANIES_COST * i);
    }
    for (let i = 1; i <= 2; i++) {
      const calls = keyward.verifyCalls();
      answer = await host.request('/v1/open', metered.key);
      expect(answer.status).toBe(200);
      expect(keyward.verifyCalls() - calls).toBe(1);
      expect(remainingIn(answer)).toBe(97 - i);
      // A route without a rule of its own costs the default: one unit.
      expect(await keyward.quotaLeft(metered.id)).toBe(1000 - COMPANIES_COST * 3 - i);
    }
    expect(await keyward.rateLeft(metered.key)).toBe(95);
  });

  it("spends nothing for a metered key refused for the route's scopes", async () => {
    await setup();
    const billing = await keyward.key({
      scopes: ['billing:read'],
      rate_limit: { limit: 100, window_seconds: 60 },
      quota: { remaining: 1000 },
    });
    for (let i = 0; i < 3; i++) {
      const calls = keyward.verifyCalls();
      expect((await host.request('/v1/companies/c1', billing.key)).status).toBe(403);
      expect(keyward.verifyCalls() - calls).toBe(1);
    }
    expect(await keyward.quotaLeft(billing.id)).toBe(1000);
    expect(await keyward.rateLeft(billing.key)).toBe(100);
  });

  it('lets a 2-per-minute key through twice out of five, on the guarded route and on the one without a rule', async () => {
    await setup();
    for (const path of ['/v1/companies/c1', '/v1/open']) {
      const twice = await keyward.key({ scopes: ['companies:read'], rate_limit: { limit: 2, window_seconds: 60 } });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await host.request(path, twice.key)).status);
      expect(statuses).toEqual([200, 200, 429, 429, 429]);
    }
  });
});

describe('metering through the keyward gateway', () => {
  let keyward: LiveKeyward;
  let echo: EchoServer;
  beforeAll(async () => {
    [keyward, echo] = await Promise.all([startKeyward(), startEcho()]);
  });
  afterAll(async () => {
    await keyward?.close();
    await echo?.close();
  });

  it('N requests per key are N usage rows, with the statuses its clients got', async () => {
    const gateway = await buildGateway(keyward.t.container, {
      upstream: echo.url,
      rules: parseRules({
        routes: [{ method: 'GET', path: '/v1/companies/*', scopes: ['companies:read'], cost: 3 }],
        default: { scopes: [] },
      }),
    });
    await gateway.ready();
    try {
      const before = await keyward.rows();
      const reader = await keyward.key({ scopes: ['companies:read'] });
      const limited = await keyward.key({ scopes: ['companies:read'], rate_limit: { limit: 2, window_seconds: 60 } });
      const metered = await keyward.key({ scopes: ['companies:read'], quota: { remaining: 1000 } });
      const forbidden = await keyward.key({ scopes: ['billing:read'] });
      const revoked = await keyward.key({ scopes: ['companies:read'] });
      await keyward.revoke(revoked.id);
      const unknown = generateKey('kw');
      const ids = new Map<string, string | null>([
        [reader.key, reader.id],
        [limited.key, limited.id],
        [metered.key, metered.id],
        [forbidden.key, forbidden.id],
        [revoked.key, revoked.id],
        [unknown, null],
        ['not-a-key', null],
      ]);
      // The clients' own log: what each request presented and the status it got.
      const log: Array<{ key: string; status: number }> = [];
      for (const key of ids.keys()) {
        for (const url of ['/v1/companies/c1', '/v1/companies/c2', '/v1/companies/c3', '/v1/open', '/v1/open']) {
          const response = await gateway.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
          log.push({ key, status: response.statusCode });
        }
      }
      const rows = await settle(
        async () => (await keyward.rows()).slice(before.length),
        (found) => found.length >= log.length,
      );
      expect(tally(rows, (row) => `${row.keyId ?? 'no key'} ${row.statusCode}`)).toEqual(
        tally(log, (entry) => `${ids.get(entry.key) ?? 'no key'} ${entry.status}`),
      );
      expect(rows).toHaveLength(35);
      // The route's cost, once per request.
      expect(await keyward.quotaLeft(metered.id)).toBe(1000 - 3 * 3 - 2);
    } finally {
      await gateway.close();
    }
  });
});
