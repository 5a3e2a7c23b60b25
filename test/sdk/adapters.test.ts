import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createKeywardAuth, generateKey, type KeywardAuth } from '@keyward/sdk';
import { keywardExpress } from '@keyward/sdk/express';
import { keywardFastify } from '@keyward/sdk/fastify';
import { type KeywardVariables, keywardHono } from '@keyward/sdk/hono';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { stubKeyward, validAnswer } from './stub-keyward.js';

// The same cases run against the three adapters (as Hono runs one suite against every runtime): each app
// has a global guard (Express and Hono: `authenticate()`, each route with its own guard), `GET /v1/companies`
// needing `companies:read`, `GET /admin` needing an admin key, `GET /whoami` needing nothing more than the
// global switch, and `GET /raw` answering with a response of its own.

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}
interface Harness {
  request(path: string, headers?: Record<string, string>): Promise<Answer>;
  close(): Promise<void>;
}
type Adapter = (auth: KeywardAuth) => Promise<Harness>;

const companies = [{ id: 'c1', name: 'Acme' }];

async function answerOf(response: Response): Promise<Answer> {
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
}

const adapters: Record<string, Adapter> = {
  async fastify(auth) {
    const app = Fastify();
    await app.register(keywardFastify({ auth }));
    app.get('/v1/companies', { config: { keyward: { scopes: ['companies:read'] } } }, async (request) => ({
      data: companies,
      caller: request.keyward,
    }));
    app.get('/admin', { config: { keyward: { admin: true } } }, async (request) => ({ caller: request.keyward }));
    app.get('/v1/reports', { config: { keyward: { scopes: ['companies:read'], cost: 10 } } }, async () => ({ report: true }));
    app.get('/v1/free', { config: { keyward: { cost: 0 } } }, async () => ({ free: true }));
    app.get('/whoami', async (request) => ({ caller: request.keyward }));
    app.get('/raw', (_request, reply) => reply.type('application/json').send('{"raw":true}'));
    app.get('/public', { config: { keyward: false } }, async () => ({ public: true }));
    await app.ready();
    return {
      async request(path, headers = {}) {
        const response = await app.inject({ method: 'GET', url: path, headers });
        return {
          status: response.statusCode,
          headers: new Headers(response.headers as Record<string, string>),
          body: response.body ? JSON.parse(response.body) : null,
        };
      },
      close: () => app.close(),
    };
  },

  async express(auth) {
    const keyward = keywardExpress({ auth });
    const app = express();
    app.get('/public', (_req, res) => {
      res.json({ public: true });
    });
    app.use(keyward.authenticate());
    app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (req, res) => {
      res.json({ data: companies, caller: req.keyward });
    });
    app.get('/admin', keyward({ admin: true }), (req, res) => {
      res.json({ caller: req.keyward });
    });
    app.get('/v1/reports', keyward({ scopes: ['companies:read'], cost: 10 }), (_req, res) => {
      res.json({ report: true });
    });
    app.get('/v1/free', keyward({ cost: 0 }), (_req, res) => {
      res.json({ free: true });
    });
    app.get('/whoami', keyward(), (req, res) => {
      res.json({ caller: req.keyward });
    });
    app.get('/raw', keyward(), (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"raw":true}');
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      request: async (path, headers = {}) => answerOf(await fetch(base + path, { headers })),
      close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
    };
  },

  async hono(auth) {
    const keyward = keywardHono({ auth });
    const app = new Hono<{ Variables: KeywardVariables }>();
    app.get('/public', (c) => c.json({ public: true }));
    app.use('*', keyward.authenticate());
    app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (c) => c.json({ data: companies, caller: c.get('keyward') }));
    app.get('/admin', keyward({ admin: true }), (c) => c.json({ caller: c.get('keyward') }));
    app.get('/v1/reports', keyward({ scopes: ['companies:read'], cost: 10 }), (c) => c.json({ report: true }));
    app.get('/v1/free', keyward({ cost: 0 }), (c) => c.json({ free: true }));
    app.get('/whoami', keyward(), (c) => c.json({ caller: c.get('keyward') }));
    app.get('/raw', keyward(), () => new Response('{"raw":true}', { headers: { 'content-type': 'application/json' } }));
    return {
      request: async (path, headers = {}) => answerOf(await app.request(path, { headers })),
      close: async () => {},
    };
  },
};

describe.each(Object.entries(adapters))('SDK middleware for %s', (_name, adapter) => {
  let harness: Harness | undefined;
  const cores = new WeakMap<Harness, KeywardAuth>();
  const auth = (h: Harness): KeywardAuth => {
    const core = cores.get(h);
    if (!core) throw new Error('no core for this harness');
    return core;
  };
  afterEach(async () => harness?.close());

  async function setup(options: { requireApiKey?: boolean; cache?: { ttlMs: number } } = {}) {
    const keyward = stubKeyward();
    const auth = createKeywardAuth({
      baseUrl: 'http://keyward.test',
      apiKey: generateKey('kw'),
      fetch: keyward.fetch,
      cache: false,
      ...options,
    });
    harness = await adapter(auth);
    cores.set(harness, auth);
    const reader = generateKey('kw');
    const admin = generateKey('kw');
    keyward.answers[reader] = validAnswer({ key_id: 'reader', scopes: ['companies:read'], metadata: { team: 'a' } });
    keyward.answers[admin] = validAnswer({ key_id: 'admin', user_id: null, is_admin: true });
    return { keyward, h: harness, reader, admin };
  }

  it('answers a request without a key with 401 problem+json and WWW-Authenticate', async () => {
    const { h } = await setup();
    const answer = await h.request('/v1/companies?x=1');
    expect(answer.status).toBe(401);
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="keyward"');
    expect(answer.body).toEqual({
      type: 'https://keyward.dev/problems/auth-required',
      title: 'An API key or token is required',
      status: 401,
      code: 'AUTH_REQUIRED',
      instance: '/v1/companies',
    });
  });

  it('answers 401 KEY_REVOKED for a revoked key, 403 for a key without the scope or admin', async () => {
    const { h, keyward, reader } = await setup();
    const revoked = generateKey('kw');
    keyward.answers[revoked] = validAnswer({ valid: false, code: 'REVOKED' });
    const refused = await h.request('/v1/companies', { authorization: `Bearer ${revoked}` });
    expect(refused).toMatchObject({ status: 401, body: { code: 'KEY_REVOKED' } });
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="keyward", error="invalid_token"');
    const forbidden = await h.request('/admin', { 'x-api-key': reader });
    expect(forbidden).toMatchObject({ status: 403, body: { code: 'FORBIDDEN', status: 403, instance: '/admin' } });
    expect(forbidden.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('lets a key with the scope through, with its identity attached, spending once per request', async () => {
    const { h, keyward, reader, admin } = await setup();
    const answer = await h.request('/v1/companies', { authorization: `Bearer ${reader}` });
    expect(answer).toMatchObject({
      status: 200,
      body: {
        data: companies,
        caller: { keyId: 'reader', userId: 'user-1', scopes: ['companies:read'], isAdmin: false, metadata: { team: 'a' } },
      },
    });
    expect(keyward.spent).toEqual({ quota: 1, rate: 1 });
    expect(await h.request('/admin', { authorization: `Bearer ${admin}` })).toMatchObject({
      status: 200,
      body: { caller: { keyId: 'admin' } },
    });
    expect(keyward.spent).toEqual({ quota: 2, rate: 2 });
  });

  it('spends nothing for a key refused for scopes, and exactly the route cost, once, for a request served', async () => {
    const { h, keyward, reader } = await setup();
    const billing = generateKey('kw');
    keyward.answers[billing] = validAnswer({ key_id: 'billing', scopes: ['billing:read'] });
    for (let i = 0; i < 3; i++) {
      expect(await h.request('/v1/companies', { authorization: `Bearer ${billing}` })).toMatchObject({
        status: 403,
        body: { code: 'FORBIDDEN' },
      });
    }
    expect(await h.request('/v1/reports', { authorization: `Bearer ${billing}` })).toMatchObject({ status: 403 });
    expect(keyward.spent).toEqual({ quota: 0, rate: 0 });
    // A route with its cost: spent once, with one rate-limit unit; a route with no rule: Keyward's default.
    expect((await h.request('/v1/reports', { authorization: `Bearer ${reader}` })).status).toBe(200);
    expect(keyward.spent).toEqual({ quota: 10, rate: 1 });
    expect((await h.request('/whoami', { authorization: `Bearer ${reader}` })).status).toBe(200);
    expect(keyward.spent).toEqual({ quota: 11, rate: 2 });
    // A key short of the route's cost is refused 429 and spends nothing.
    const low = generateKey('kw');
    keyward.answers[low] = validAnswer({ scopes: ['companies:read'] });
    keyward.state.refuseCostAbove = 3;
    expect(await h.request('/v1/reports', { authorization: `Bearer ${low}` })).toMatchObject({
      status: 429,
      body: { code: 'USAGE_EXCEEDED' },
    });
    expect(keyward.spent).toEqual({ quota: 11, rate: 2 });
  });

  it('with the cache on, asks Keyward once for a key without limits, then answers from the cache', async () => {
    const { h, keyward, reader } = await setup({ cache: { ttlMs: 60_000 } });
    expect((await h.request('/v1/companies', { authorization: `Bearer ${reader}` })).status).toBe(200);
    expect((await h.request('/v1/companies', { authorization: `Bearer ${reader}` })).status).toBe(200);
    expect((await h.request('/admin', { authorization: `Bearer ${reader}` })).status).toBe(403);
    expect(keyward.seen).toHaveLength(1);
  });

  it("charges a route's cost in all, behind a global guard too, and never more than it", async () => {
    const { h, keyward, reader } = await setup();
    expect(await h.request('/v1/reports', { authorization: `Bearer ${reader}` })).toMatchObject({ status: 200, body: { report: true } });
    // The request uses one unit of the key's rate limit, however many verifications its quota took.
    expect(keyward.spent).toEqual({ quota: 10, rate: 1 });
    // The verification that charges the route's cost checks its scopes too.
    expect(keyward.seen.at(-1)?.body?.scopes).toEqual(['companies:read']);
    // A route that costs nothing spends no quota (but uses its rate-limit unit).
    expect((await h.request('/v1/free', { authorization: `Bearer ${reader}` })).status).toBe(200);
    expect(keyward.spent).toEqual({ quota: 10, rate: 2 });
    // A key over its quota for the extra units is refused with Keyward's 429.
    const spent = generateKey('kw');
    keyward.answers[spent] = validAnswer({ scopes: ['companies:read'] });
    keyward.state.refuseCostAbove = 1;
    const refused = await h.request('/v1/reports', { authorization: `Bearer ${spent}` });
    expect(refused).toMatchObject({ status: 429, body: { code: 'USAGE_EXCEEDED' } });
  });

  it('with requireApiKey false, serves anonymous requests where no scope is needed, but still refuses bad keys', async () => {
    const { h } = await setup({ requireApiKey: false });
    expect(await h.request('/whoami')).toMatchObject({ status: 200, body: { caller: null } });
    expect(await h.request('/v1/companies')).toMatchObject({ status: 401, body: { code: 'AUTH_REQUIRED' } });
    expect(await h.request('/whoami', { authorization: `Bearer ${generateKey('kw')}` })).toMatchObject({
      status: 401,
      body: { code: 'INVALID_CREDENTIALS' },
    });
  });

  it('sets the RateLimit headers Keyward reports for a rate-limited key', async () => {
    const { h, keyward } = await setup();
    const limited = generateKey('kw');
    keyward.answers[limited] = validAnswer({ scopes: ['companies:read'], ratelimit: { limit: 100, remaining: 99, reset: 4_000_000_000 } });
    const answer = await h.request('/v1/companies', { 'x-api-key': limited });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('ratelimit-policy')).toBe('"default";q=100');
    expect(answer.headers.get('ratelimit')).toMatch(/^"default";r=99;t=\d+$/);
    // On a response the handler built itself, and on a route guard's refusal too.
    const raw = await h.request('/raw', { 'x-api-key': limited });
    expect(raw).toMatchObject({ status: 200, body: { raw: true } });
    expect(raw.headers.get('ratelimit')).toMatch(/^"default";r=99;t=\d+$/);
    const refused = await h.request('/admin', { 'x-api-key': limited });
    expect(refused).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(refused.headers.get('ratelimit-policy')).toBe('"default";q=100');
    expect(refused.headers.get('ratelimit')).toMatch(/^"default";r=99;t=\d+$/);
  });

  it('reports each request that presented a key once answered (endpoint, method, status, outcome), never the key', async () => {
    const { h, keyward, reader } = await setup();
    const unknown = generateKey('kw');
    expect((await h.request('/v1/companies?page=2', { authorization: `Bearer ${reader}`, 'user-agent': 'probe/1' })).status).toBe(200);
    expect((await h.request('/admin', { authorization: `Bearer ${reader}` })).status).toBe(403);
    expect((await h.request('/whoami', { authorization: `Bearer ${unknown}` })).status).toBe(401);
    expect((await h.request('/whoami', { authorization: 'Bearer short' })).status).toBe(401);
    // Not reported: no key presented, and a public route.
    expect((await h.request('/whoami')).status).toBe(401);
    expect((await h.request('/public', { authorization: `Bearer ${reader}` })).status).toBe(200);

    // The report is sent once the response has gone out: poll the flush until all four arrived.
    const until = Date.now() + 5_000;
    while (keyward.usage.flat().length < 4 && Date.now() < until) {
      await auth(h).flush();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await auth(h).flush();
    const events = keyward.usage.flat();
    expect(events.map((e) => [e.endpoint, e.method, e.status_code, e.key_id, e.outcome]).sort()).toEqual(
      [
        ['/v1/companies', 'GET', 200, 'reader', 'VALID'],
        ['/admin', 'GET', 403, 'reader', 'INSUFFICIENT_SCOPES'],
        ['/whoami', 'GET', 401, null, 'NOT_FOUND'],
        ['/whoami', 'GET', 401, null, 'INVALID_FORMAT'],
      ].sort(),
    );
    const first = events.find((e) => e.endpoint === '/v1/companies');
    expect(first?.user_agent).toBe('probe/1');
    expect(first?.response_time_ms).toBeGreaterThanOrEqual(0);
    expect(Number.isNaN(Date.parse(first?.occurred_at ?? ''))).toBe(false);
    expect(JSON.stringify(keyward.usage)).not.toContain(reader);
    expect(JSON.stringify(keyward.usage)).not.toContain(unknown);
    // Usage reports never count as verifications.
    expect(keyward.seen.every((s) => s.path === '/v1/keys/verify')).toBe(true);
  });

  it('leaves public routes alone and answers 503 when Keyward is down', async () => {
    const { h, keyward, reader } = await setup();
    expect(await h.request('/public')).toMatchObject({ status: 200, body: { public: true } });
    keyward.state.failWith = 'network';
    const down = await h.request('/v1/companies', { authorization: `Bearer ${reader}` });
    expect(down).toMatchObject({ status: 503, body: { code: 'SERVICE_UNAVAILABLE' } });
    expect(down.headers.get('retry-after')).toBe('5');
  });
});

// A client that goes away before the response (a timeout, a closed tab) is still a request the key made.
describe('a request the client abandoned before the response', () => {
  type Started = { url: string; close(): Promise<void> };
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const servers: Record<string, (auth: KeywardAuth) => Promise<Started>> = {
    async fastify(auth) {
      const app = Fastify();
      await app.register(keywardFastify({ auth }));
      app.get('/slow', async () => {
        await sleep(300);
        return { ok: true };
      });
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      return {
        url,
        close: () => {
          app.server.closeAllConnections();
          return app.close();
        },
      };
    },
    async express(auth) {
      const keyward = keywardExpress({ auth });
      const app = express();
      app.use(keyward());
      app.get('/slow', async (_req, res) => {
        await sleep(300);
        res.json({ ok: true });
      });
      const server = app.listen(0, '127.0.0.1');
      await new Promise<void>((resolve) => server.once('listening', resolve));
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () =>
          new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
          }),
      };
    },
    async hono(auth) {
      const keyward = keywardHono({ auth });
      const app = new Hono<{ Variables: KeywardVariables }>();
      app.use('*', keyward());
      app.get('/slow', async (c) => {
        await sleep(300);
        return c.json({ ok: true });
      });
      return new Promise((resolve) => {
        const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
          resolve({
            url: `http://127.0.0.1:${info.port}`,
            close: () =>
              new Promise<void>((done) => {
                if ('closeAllConnections' in server) server.closeAllConnections();
                server.close(() => done());
              }),
          }),
        );
      });
    },
  };

  it.each(Object.keys(servers))('%s reports it, once', async (name) => {
    const keyward = stubKeyward();
    const auth = createKeywardAuth({ baseUrl: 'http://keyward.test', apiKey: generateKey('kw'), fetch: keyward.fetch });
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ key_id: 'patient' });
    const start = servers[name];
    if (!start) throw new Error(`no server for ${name}`);
    const server = await start(auth);
    try {
      await expect(
        fetch(`${server.url}/slow`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(100) }),
      ).rejects.toThrow();
      // Past the handler's end: a report on both the abort and the late response would show up as two.
      await sleep(500);
      await auth.flush();
      const events = keyward.usage.flat();
      // No status: no response was sent.
      expect(events.map((e) => [e.key_id, e.endpoint, e.outcome, e.status_code])).toEqual([['patient', '/slow', 'VALID', null]]);
      expect(events[0]?.ip_address).toBe('127.0.0.1');
    } finally {
      await server.close();
      await auth.close();
    }
  });
});

// A cached key costs the host no extra turn: the Express guard calls next() before it returns.
describe('SDK middleware for express: a cached key', () => {
  it('calls next() synchronously, with req.keyward set, once the key is cached', async () => {
    const keyward = stubKeyward();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ scopes: ['companies:read'] });
    const guard = keywardExpress({
      baseUrl: 'http://keyward.test',
      apiKey: generateKey('kw'),
      fetch: keyward.fetch,
      changes: false,
      usage: false,
    });
    const handler = guard({ scopes: ['companies:read'] });
    // What the guard reads of a request and writes to a response (no router: the rule is the guard's own).
    const run = () => {
      const req = { headers: { authorization: `Bearer ${key}` }, originalUrl: '/v1/companies', url: '/v1/companies', method: 'GET' };
      const res = { once: () => res, set: () => res };
      let passed = false;
      handler(req as never, res as never, (error?: unknown) => {
        if (error === undefined) passed = true;
      });
      return { req: req as { keyward?: unknown }, passed: () => passed };
    };
    const first = run();
    expect(first.passed()).toBe(false); // asked Keyward: a later turn
    await vi.waitFor(() => expect(first.passed()).toBe(true));
    const hit = run();
    expect(hit.passed()).toBe(true);
    expect(hit.req.keyward).toMatchObject({ keyId: validAnswer().key_id });
    expect(keyward.seen).toHaveLength(1);
    await guard.close();
  });
});
