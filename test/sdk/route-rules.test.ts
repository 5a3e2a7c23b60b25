import { createKeywardAuth, generateKey, type KeywardAuth } from '@keyward/sdk';
import { keywardExpress } from '@keyward/sdk/express';
import { keywardFastify } from '@keyward/sdk/fastify';
import { type KeywardVariables, keywardHono } from '@keyward/sdk/hono';
import express, { type Express } from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { assertTags, mergeRules } from '../../packages/sdk/src/middleware.js';
import { stubKeyward, validAnswer } from './stub-keyward.js';

// The first Keyward guard on a request finds the route's own rule and does the request's one verification
// with it (issue 15, item 2); every verification is tagged with the route's pattern and, while the usage
// report is the request's row, sent with `record_usage: false` (item 1).

const servers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of servers.splice(0)) await close();
});

function core(options: { usage?: false } = {}) {
  const keyward = stubKeyward();
  const auth = createKeywardAuth({
    baseUrl: 'http://keyward.test',
    apiKey: generateKey('kw'),
    fetch: keyward.fetch,
    cache: false,
    ...options,
  });
  servers.push(() => auth.close());
  const key = generateKey('kw');
  keyward.answers[key] = validAnswer({ key_id: 'reader', scopes: ['companies:read'], remaining: 100 });
  return { keyward, auth, key };
}

async function getExpress(app: Express, path: string, key: string, method = 'GET'): Promise<number> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  servers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers: { authorization: `Bearer ${key}` } });
  await response.arrayBuffer();
  return response.status;
}

const ROUTE_RULE = { scopes: ['companies:read'], cost: 4, tags: ['team:crm'] };
const ONE_VERIFICATION = {
  scopes: ['companies:read'],
  cost: 4,
  tags: ['route:/v1/companies/:id', 'team:crm'],
  record_usage: false,
};

describe('the route rule found by the first guard', () => {
  it('Express: authenticate() verifies once with the guard of a route in a mounted router, tagged with its pattern', async () => {
    const { keyward, auth, key } = core();
    const guard = keywardExpress({ auth });
    const app = express();
    app.use(guard.authenticate());
    const v1 = express.Router();
    v1.get('/companies/:id', guard(ROUTE_RULE), (_req, res) => {
      res.json({ ok: true });
    });
    app.use('/v1', v1);
    expect(await getExpress(app, '/v1/companies/c1?page=2', key)).toBe(200);
    expect(keyward.seen.map((s) => s.body)).toEqual([{ key, ...ONE_VERIFICATION }]);
    expect(keyward.spent).toEqual({ quota: 4, rate: 1 });
  });

  it("Express: HEAD takes the GET route's rule; a route for another method is passed over", async () => {
    const { keyward, auth, key } = core();
    const guard = keywardExpress({ auth });
    const app = express();
    app.use(guard());
    app.post('/v1/companies/:id', guard({ scopes: ['companies:write'] }), (_req, res) => {
      res.json({ ok: true });
    });
    app.get('/v1/companies/:id', guard(ROUTE_RULE), (_req, res) => {
      res.json({ ok: true });
    });
    expect(await getExpress(app, '/v1/companies/c1', key, 'HEAD')).toBe(200);
    expect(keyward.seen.map((s) => s.body)).toEqual([{ key, ...ONE_VERIFICATION }]);
  });

  it("Express: a global keyward(rule) lends its cost to a route guard that sets none, and takes the route's scopes", async () => {
    const { keyward, auth, key } = core();
    const guard = keywardExpress({ auth });
    const app = express();
    app.use(guard({ cost: 2, tags: ['api:v1'] }));
    app.get('/v1/me', guard({ scopes: ['companies:read'] }), (_req, res) => {
      res.json({ ok: true });
    });
    expect(await getExpress(app, '/v1/me', key)).toBe(200);
    expect(keyward.seen.map((s) => s.body)).toEqual([
      { key, scopes: ['companies:read'], cost: 2, tags: ['route:/v1/me', 'api:v1'], record_usage: false },
    ]);
  });

  it('Express: a free global keyward({ cost: 0 }) keeps a route guard without a cost free, with no second verification', async () => {
    const { keyward, auth, key } = core();
    const guard = keywardExpress({ auth });
    const sub = express();
    sub.get('/me', guard(), (_req, res) => {
      res.json({ ok: true });
    });
    const app = express();
    app.use(guard({ cost: 0 }));
    app.get('/v1/me', guard(), (_req, res) => {
      res.json({ ok: true });
    });
    // Seen or not (a mounted sub-app is not), the route guard takes the cost already spent.
    app.use('/v2', sub);
    expect(await getExpress(app, '/v1/me', key)).toBe(200);
    expect(await getExpress(app, '/v2/me', key)).toBe(200);
    expect(keyward.seen.map((s) => s.body?.cost)).toEqual([0, 0]);
    expect(keyward.spent).toEqual({ quota: 0, rate: 2 });
  });

  it('Express: where the route cannot be seen (a mounted sub-app), spends the default, then only the difference, once against the rate limit', async () => {
    const { keyward, auth, key } = core();
    const guard = keywardExpress({ auth });
    const sub = express();
    sub.get('/reports', guard({ cost: 10 }), (_req, res) => {
      res.json({ ok: true });
    });
    const app = express();
    app.use(guard.authenticate());
    app.use('/v1', sub);
    expect(await getExpress(app, '/v1/reports', key)).toBe(200);
    expect(keyward.seen.map((s) => [s.body?.cost, s.body?.ratelimit_cost])).toEqual([
      [undefined, undefined],
      [9, 0],
    ]);
    expect(keyward.spent).toEqual({ quota: 10, rate: 1 });
  });

  it('Hono: authenticate() verifies once with the guard of a route in a sub-app (with its own error handler too)', async () => {
    for (const ownErrorHandler of [false, true]) {
      const { keyward, auth, key } = core();
      const guard = keywardHono({ auth });
      const app = new Hono<{ Variables: KeywardVariables }>();
      app.use('*', guard.authenticate());
      const v1 = new Hono<{ Variables: KeywardVariables }>();
      if (ownErrorHandler) v1.onError((_error, c) => c.json({ error: true }, 500));
      v1.get('/companies/:id', guard(ROUTE_RULE), (c) => c.json({ ok: true }));
      app.route('/v1', v1);
      expect((await app.request('/v1/companies/c1?page=2', { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
      expect(keyward.seen.map((s) => s.body)).toEqual([{ key, ...ONE_VERIFICATION }]);
      expect(keyward.spent).toEqual({ quota: 4, rate: 1 });
    }
  });

  it('Hono: a guard after the handler that answers is not taken into the verification (it never runs)', async () => {
    const { keyward, auth, key } = core();
    const guard = keywardHono({ auth });
    const app = new Hono<{ Variables: KeywardVariables }>();
    app.use('*', guard.authenticate());
    app.get('/v1/me', (c) => c.json({ ok: true }));
    app.get('/v1/me', guard({ admin: true }), (c) => c.json({ never: true }));
    expect((await app.request('/v1/me', { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    expect(keyward.seen.map((s) => s.body)).toEqual([{ key, tags: ['route:/v1/me'], record_usage: false }]);
  });

  it("Fastify: verifies once with the route's config, tagged with its pattern", async () => {
    const { keyward, auth, key } = core();
    const app = Fastify();
    servers.push(() => app.close());
    await app.register(keywardFastify({ auth }));
    app.get('/v1/companies/:id', { config: { keyward: ROUTE_RULE } }, async () => ({ ok: true }));
    const response = await app.inject({ method: 'GET', url: '/v1/companies/c1?page=2', headers: { authorization: `Bearer ${key}` } });
    expect(response.statusCode).toBe(200);
    expect(keyward.seen.map((s) => s.body)).toEqual([{ key, ...ONE_VERIFICATION }]);
  });
});

describe('verifications and usage reports', () => {
  it('with usage reports off, verifications write their own rows: no record_usage sent, tags still are', async () => {
    const { keyward, auth, key } = core({ usage: false });
    expect(await auth.authorize({ authorization: `Bearer ${key}`, path: '/v1/me?x=1', route: '/v1/me' }, { tags: ['a:b'] })).toMatchObject({
      ok: true,
    });
    expect(keyward.seen.map((s) => s.body)).toEqual([{ key, tags: ['route:/v1/me', 'a:b'] }]);
  });

  it("reports a request once, tagged with its route's pattern, its rules' tags and the global ones, at most 10", async () => {
    const keyward = stubKeyward();
    const auth = createKeywardAuth({
      baseUrl: 'http://keyward.test',
      apiKey: generateKey('kw'),
      fetch: keyward.fetch,
      tags: ['region:eu', 'g2', 'g3', 'g4', 'g5'],
    });
    servers.push(() => auth.close());
    const seen = { endpoint: '/v1/companies/c1?page=2', method: 'GET', statusCode: 200, responseTimeMs: 3 };
    auth.record(
      { keyId: 'k', code: 'VALID' },
      { ...seen, route: '/v1/companies/:id', tags: ['team:crm', 'region:eu', 'r2', 'r3', 'r4', 'r5', 'r6'] },
    );
    auth.record({ keyId: 'k', code: 'VALID' }, seen);
    await auth.flush();
    expect(keyward.usage.flat().map((event) => event.tags)).toEqual([
      ['route:/v1/companies/:id', 'team:crm', 'region:eu', 'r2', 'r3', 'r4', 'r5', 'r6', 'g2', 'g3'],
      ['route:/v1/companies/c1', 'region:eu', 'g2', 'g3', 'g4', 'g5'],
    ]);
  });

  it('clips a long route tag to 64 characters', async () => {
    const { keyward, auth, key } = core();
    await auth.authorize({ authorization: `Bearer ${key}`, path: `/${'a'.repeat(100)}` });
    const tag = ((keyward.seen[0]?.body?.tags ?? []) as string[])[0];
    expect(tag).toBe(`route:/${'a'.repeat(57)}`);
  });

  it('uses the guard’s own rule when finding the route fails', async () => {
    const { keyward, auth, key } = core();
    const decision = await auth.authorize({ authorization: `Bearer ${key}`, path: '/v1/me' }, { cost: 3 }, () => {
      throw new Error('router changed shape');
    });
    expect(decision).toMatchObject({ ok: true, rule: { cost: 3 } });
    expect(keyward.seen.map((s) => s.body?.cost)).toEqual([3]);
  });
});

describe('rules and tags', () => {
  it('mergeRules: scopes and tags together, admin if any, the largest cost a route sets, else the first guard’s', () => {
    expect(mergeRules({ cost: 2 }, [{ scopes: ['companies:read'] }])).toEqual({ scopes: ['companies:read'], cost: 2 });
    expect(
      mergeRules(null, [
        { scopes: ['a'], tags: ['x'] },
        { scopes: ['b', 'a'], cost: 5, admin: true, tags: ['x', 'y'] },
      ]),
    ).toEqual({
      scopes: ['a', 'b'],
      cost: 5,
      admin: true,
      tags: ['x', 'y'],
    });
    expect(mergeRules({ cost: 5, rateLimitCost: 2 }, [{ cost: 0 }])).toEqual({ cost: 0, rateLimitCost: 2 });
    expect(mergeRules({ requireApiKey: true }, [{ requireApiKey: false }])).toEqual({ requireApiKey: false });
    expect(mergeRules(null, [])).toEqual({});
  });

  it('refuses, at start-up, tags Keyward would refuse', async () => {
    const long = 'x'.repeat(65);
    expect(() => assertTags(['ok', long], 'here')).toThrow(TypeError);
    expect(() => assertTags(['tab\there'], 'here')).toThrow(TypeError);
    expect(() => assertTags([''], 'here')).toThrow(TypeError);
    expect(() =>
      assertTags(
        Array.from({ length: 10 }, (_, i) => `t${i}`),
        'here',
      ),
    ).toThrow(TypeError);
    expect(() => assertTags(['route:/v1/é', 'x'.repeat(64)], 'here')).not.toThrow();
    expect(() => createKeywardAuth({ baseUrl: 'http://keyward.test', apiKey: 'kw_x', tags: [long] })).toThrow(TypeError);
    const auth: KeywardAuth = core().auth;
    expect(() => keywardExpress({ auth })({ tags: [long] })).toThrow(TypeError);
    expect(() => keywardHono({ auth })({ tags: [long] })).toThrow(TypeError);
    const app = Fastify();
    servers.push(() => app.close());
    await app.register(keywardFastify({ auth }));
    expect(() => app.get('/x', { config: { keyward: { tags: [long] } } }, async () => ({}))).toThrow(TypeError);
  });
});
