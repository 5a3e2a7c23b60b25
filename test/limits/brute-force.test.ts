import { generateKey } from '@keyward/sdk';
import Fastify from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Authenticator } from '../../packages/server/src/callers/authenticator.js';
import { addressGroup, createBruteForceGuard, type GuardDecision } from '../../packages/server/src/callers/brute-force-guard.js';
import { requireAuthentication } from '../../packages/server/src/http/auth.js';
import { installProblemHandlers } from '../../packages/server/src/http/problem.js';
import { createMetrics } from '../../packages/server/src/metrics.js';
import { createMemoryRateLimiter } from '../../packages/server/src/store/rate-limiter.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { JWT_ENV, signIn } from '../users/tokens.js';
import { closedPort, counter } from './redis-helpers.js';

function guardWithClock(failuresPerMinute: number) {
  let clock = Date.UTC(2030, 0, 1, 12, 0, 0);
  const now = () => clock;
  const metrics = createMetrics({ defaultMetrics: false });
  const limiter = createMemoryRateLimiter({ now });
  const consume = vi.spyOn(limiter, 'consume');
  const guard = createBruteForceGuard({ limiter, failuresPerMinute, metrics, now });
  return {
    guard,
    consume,
    metrics,
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

describe('brute-force guard', () => {
  it('blocks a client after `limit` failures in a minute, and lets it back once the minute has passed', async () => {
    const { guard, advance } = guardWithClock(3);
    for (let i = 0; i < 3; i++) {
      expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
      await guard.fail('10.0.0.1');
      // Failures below the limit block no one yet: callers may skip `check` altogether.
      if (i < 2) expect(guard.blocksAny()).toBe(false);
    }
    expect(guard.blocksAny()).toBe(true);
    const blocked = await guard.check('10.0.0.1');
    expect(blocked.blocked).toBe(true);
    if (blocked.blocked) {
      expect(blocked.retryAfterSeconds).toBeGreaterThanOrEqual(59);
      expect(blocked.retryAfterSeconds).toBeLessThanOrEqual(60);
    }
    // Another client is not affected, nor a credential that is no guess.
    expect(guard.check('10.0.0.2')).toEqual({ blocked: false });
    expect(guard.check('10.0.0.1', undefined, () => true)).toEqual({ blocked: false });
    advance(30_000);
    expect((await guard.check('10.0.0.1')).blocked).toBe(true);
    advance(30_001);
    expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
    expect(guard.blocksAny()).toBe(false);
    // A fresh window: three more failures are allowed before the next block.
    await guard.fail('10.0.0.1');
    expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
  });

  it('never slows valid traffic: checking consumes nothing and touches no counter', async () => {
    const { guard, consume } = guardWithClock(2);
    for (let i = 0; i < 1_000; i++) expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
    expect(consume).not.toHaveBeenCalled();
    await guard.fail('10.0.0.1');
    expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
  });

  it('is off when the limit is 0', async () => {
    const { guard, consume } = guardWithClock(0);
    for (let i = 0; i < 100; i++) await guard.fail('10.0.0.1');
    expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
    expect(consume).not.toHaveBeenCalled();
  });

  it('makes a client with as many look-ups in flight as its budget wait for one to end, and refuses it once many wait', async () => {
    const { guard } = guardWithClock(3);
    const ends = [guard.track('10.0.0.1'), guard.track('10.0.0.1')];
    expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
    expect(guard.blocksAny()).toBe(true);
    ends.push(guard.track('10.0.0.1'));
    // A burst cannot outrun the count: the next request waits (it is not refused: it may be a valid key).
    const waits: Promise<GuardDecision>[] = [];
    for (let i = 0; i < 12; i++) {
      const decision = guard.check('10.0.0.1');
      expect(decision).toBeInstanceOf(Promise);
      if (decision instanceof Promise) waits.push(decision);
    }
    // A credential that is no guess (a key this instance holds) neither waits nor, below, is refused.
    expect(guard.check('10.0.0.1', undefined, () => true)).toEqual({ blocked: false });
    // Beyond a bound of waiting requests (100 here), refused.
    for (let i = 12; i < 100; i++) guard.check('10.0.0.1');
    expect(guard.check('10.0.0.1')).toEqual({ blocked: true, retryAfterSeconds: 1 });
    expect(guard.check('10.0.0.2')).toEqual({ blocked: false });
    ends[0]?.();
    ends[0]?.(); // ending twice counts once
    // Every one checks again: with two look-ups in flight of a budget of three, the first goes ahead (and, as
    // nothing here starts its look-up, so do the others); none is refused.
    expect(await Promise.all(waits)).toEqual(waits.map(() => ({ blocked: false })));
    expect(guard.check('10.0.0.1')).toEqual({ blocked: false });
    for (const end of ends) end();
    expect(guard.blocksAny()).toBe(false);
    // Off with a limit of 0.
    const off = guardWithClock(0).guard;
    for (let i = 0; i < 10; i++) off.track('10.0.0.1');
    expect(off.check('10.0.0.1')).toEqual({ blocked: false });
  });

  it('counts refused requests in metrics', async () => {
    const { guard, metrics } = guardWithClock(1);
    await guard.fail('10.0.0.1');
    guard.check('10.0.0.1');
    guard.check('10.0.0.1');
    expect(await metrics.render()).toMatch(/^keyward_brute_force_blocks_total 2$/m);
  });
});

describe('the address a guard counts', () => {
  it('is an IPv6 address’s /64 (a host may use any address in it), and an IPv4 address itself', () => {
    expect(addressGroup('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressGroup('2001:0db8:0001:0002:ffff:eeee:dddd:cccc')).toBe('2001:db8:1:2::/64');
    expect(addressGroup('2001:db8::5')).toBe('2001:db8:0:0::/64');
    expect(addressGroup('::1')).toBe('0:0:0:0::/64');
    expect(addressGroup('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressGroup('1:2:3::4.5.6.7')).toBe('1:2:3:0::/64');
    expect(addressGroup('::ffff:203.0.113.7')).toBe('203.0.113.7');
    // IPv4-mapped in any spelling (a proxy may write it so): the IPv4 client, not one shared bucket.
    expect(addressGroup('0:0:0:0:0:ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(addressGroup('0::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(addressGroup('::ffff:102:304')).toBe('1.2.3.4');
    expect(addressGroup('::FFFF:C000:0280')).toBe('192.0.2.128');
    expect(addressGroup('203.0.113.7')).toBe('203.0.113.7');
    expect(addressGroup('not:an:address')).toBe('not:an:address');
  });
});

describe('brute-force guard with a hook of its own', () => {
  it('serves a key the instance holds at once while guesses from its address are being looked up (no wait)', async () => {
    const guard = createBruteForceGuard({ limiter: createMemoryRateLimiter({ countDecisions: false }), failuresPerMinute: 2 });
    const hanging: (() => void)[] = [];
    const authenticator: Authenticator = {
      authenticate(credential, onLookup) {
        // The real key is in the cache: answered synchronously, no look-up.
        if (credential === 'kw_real_cached_key_000000') return { ok: true, value: { kind: 'system', name: 'x' } } as never;
        // A guess: a database look-up that takes a while (slow database, bcrypt import, network).
        onLookup?.();
        return new Promise((resolve) =>
          hanging.push(() => resolve({ ok: false, code: 'INVALID_CREDENTIALS', detail: 'no' } as never)),
        ) as never;
      },
    };
    const app = Fastify();
    installProblemHandlers(app);
    app.decorateRequest('caller', null);
    await app.register(async (v1) => {
      requireAuthentication(v1, authenticator, { guard, known: (c) => c === 'kw_real_cached_key_000000' });
      v1.get('/v1/x', async () => ({ ok: true }));
    });
    await app.ready();
    const headers = (key: string) => ({ authorization: `Bearer ${key}` });
    // Two guesses in flight (the budget is 2).
    const guesses = [1, 2].map((i) => app.inject({ method: 'GET', url: '/v1/x', headers: headers(`kw_guess_${i}_aaaaaaaaaaaaaaa`) }));
    await new Promise((r) => setTimeout(r, 20));
    const real = app.inject({ method: 'GET', url: '/v1/x', headers: headers('kw_real_cached_key_000000') });
    const outcome = await Promise.race([
      real.then((r) => r.statusCode),
      new Promise((r) => setTimeout(() => r('still waiting after 500 ms'), 500)),
    ]);
    for (const release of hanging.splice(0)) release();
    await Promise.all(guesses);
    expect((await real).statusCode).toBe(200);
    await app.close();
    expect(outcome).toBe(200);
  });
});

describe('brute-force guard on the /v1 authentication hook', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const attacker = '203.0.113.7';
  const other = '198.51.100.2';
  const get = (headers: Record<string, string>, remoteAddress = attacker) =>
    t.app.inject({ method: 'GET', url: '/v1/api-keys', headers, remoteAddress });

  it('answers 429 RATE_LIMITED with Retry-After after too many failures, before authenticating', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '3' } });
    for (let i = 0; i < 3; i++) expect((await get(bearer(generateKey()))).statusCode).toBe(401);
    const authenticate = vi.spyOn(t.container.authenticator, 'authenticate');
    // Blocked: even the admin key is refused, and no credential is looked up.
    const blocked = await get(bearer(t.adminKey));
    expect(blocked.statusCode).toBe(429);
    expect(blocked.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(blocked.json()).toMatchObject({ code: 'RATE_LIMITED', status: 429 });
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(authenticate).not.toHaveBeenCalled();
    // Another address is served as usual.
    expect((await get(bearer(t.adminKey), other)).statusCode).toBe(200);
  });

  it('does not count valid requests or requests without a credential', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '2' } });
    const { key } = await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] });
    for (let i = 0; i < 50; i++) expect((await get(bearer(key))).statusCode).toBe(200);
    for (let i = 0; i < 10; i++) expect((await get({})).statusCode).toBe(401);
    expect((await get(bearer(generateKey()))).statusCode).toBe(401);
    expect((await get(bearer(key))).statusCode).toBe(200);
  });

  it('counts revoked, deactivated and malformed credentials as failures', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '3' } });
    const revoked = await createKey(t, { name: 'revoked' });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${revoked.id}/revoke`, headers: bearer(t.adminKey) });
    expect((await get(bearer(revoked.key))).json()).toMatchObject({ code: 'KEY_REVOKED' });
    expect((await get({ 'x-api-key': 'not-a-key' })).statusCode).toBe(401);
    expect((await get({ authorization: 'Basic abc' })).statusCode).toBe(401);
    expect((await get(bearer(generateKey()))).statusCode).toBe(429);
  });

  it('still serves a blocked address the keys this instance holds (real keys, seen before), and nothing else', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '2' } });
    const { key: seen } = await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] });
    const { key: unseen } = await createKey(t, { name: 'not used yet', scopes: ['keyward:keys:read'] });
    expect((await get(bearer(seen))).statusCode).toBe(200); // held from now on
    for (let i = 0; i < 2; i++) expect((await get(bearer(generateKey()))).statusCode).toBe(401);
    expect((await get(bearer(generateKey()))).statusCode).toBe(429);
    expect((await get(bearer(seen))).statusCode).toBe(200);
    expect((await get(bearer(t.adminKey))).statusCode).toBe(200);
    expect((await get(bearer(unseen))).statusCode).toBe(429);
  });

  it('serves a burst of valid keys from one address, none of them cached, though it is larger than the budget', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '3', CACHE_MAX_ENTRIES: '0' } });
    const keys = [];
    for (let i = 0; i < 20; i++) keys.push((await createKey(t, { name: `reader ${i}`, scopes: ['keyward:keys:read'] })).key);
    const statuses = await Promise.all(keys.map(async (key) => (await get(bearer(key))).statusCode));
    expect(statuses).toEqual(keys.map(() => 200));
  });

  it('a burst of bad credentials sent at once gets no more look-ups than the budget', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '3' } });
    const statuses = await Promise.all(Array.from({ length: 20 }, async () => (await get(bearer(generateKey()))).statusCode));
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(3);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(17);
    expect((await get(bearer(t.adminKey))).statusCode).toBe(429);
  });

  it('does not count valid requests that wait for something else (a JWT check) as look-ups in flight', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '3', ...JWT_ENV } });
    const { token } = await signIn(t, 'alice');
    const statuses = await Promise.all(
      Array.from(
        { length: 20 },
        async () =>
          (await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token), remoteAddress: attacker })).statusCode,
      ),
    );
    expect(statuses).toEqual(Array(20).fill(200));
  });

  it('serves a user’s JWT from a blocked address: a signature cannot be guessed (a forged one still counts)', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '2', ...JWT_ENV } });
    const { token } = await signIn(t, 'alice');
    for (let i = 0; i < 2; i++) expect((await get(bearer(generateKey()))).statusCode).toBe(401);
    expect((await get(bearer(generateKey()))).statusCode).toBe(429);
    const me = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token), remoteAddress: attacker });
    expect(me.statusCode).toBe(200);
    const forged = `${token.slice(0, -4)}AAAA`;
    expect((await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(forged), remoteAddress: attacker })).statusCode).toBe(
      401,
    );
  });

  it('with TRUST_PROXY naming the proxy, counts the address the proxy saw, whatever the client wrote before it', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '3', TRUST_PROXY: '10.0.0.5' } });
    const viaProxy = (forwardedFor: string) =>
      t.app.inject({
        method: 'GET',
        url: '/v1/api-keys',
        headers: { ...bearer(generateKey()), 'x-forwarded-for': forwardedFor },
        remoteAddress: '10.0.0.5',
      });
    // The client invents a new left-most address each time; the proxy appends the one it saw.
    for (let i = 0; i < 3; i++) expect((await viaProxy(`192.0.2.${i}, ${attacker}`)).statusCode).toBe(401);
    expect((await viaProxy(`192.0.2.99, ${attacker}`)).statusCode).toBe(429);
    expect((await viaProxy(other)).statusCode).toBe(401);
    // A client that is not the proxy is not believed: claiming the blocked address blocks nothing.
    expect((await get({ ...bearer(t.adminKey), 'x-forwarded-for': attacker }, '198.51.100.9')).statusCode).toBe(200);
  });

  it('counts an IPv6 client by its /64: rotating addresses inside it does not escape the count', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '2' } });
    const statuses = [];
    for (let i = 1; i <= 4; i++) statuses.push((await get(bearer(generateKey()), `2001:db8:1:2::${i.toString(16)}`)).statusCode);
    expect(statuses).toEqual([401, 401, 429, 429]);
    // The next /64 is someone else.
    expect((await get(bearer(t.adminKey), '2001:db8:1:3::1')).statusCode).toBe(200);
  });

  it.each(['open', 'closed'])(
    'counts on this instance while Redis cannot answer, whatever RATE_LIMIT_FAIL_MODE (%s) says',
    async (failMode) => {
      const redisUrl = `redis://127.0.0.1:${await closedPort()}`;
      t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '2', REDIS_URL: redisUrl, RATE_LIMIT_FAIL_MODE: failMode } });
      // One typo blocks nobody (failing closed would), and the admin key keeps working.
      expect((await get(bearer(generateKey()))).statusCode).toBe(401);
      expect((await get(bearer(t.adminKey))).statusCode).toBe(200);
      // Guessing is still stopped (failing open would let it go on).
      expect((await get(bearer(generateKey()))).statusCode).toBe(401);
      expect((await get(bearer(generateKey()))).statusCode).toBe(429);
      expect(await counter(t.container.metrics, 'keyward_redis_errors_total', { operation: 'rate_limit' })).toBeGreaterThanOrEqual(2);
    },
  );

  it('is off with AUTH_FAILURES_PER_MINUTE=0', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '0' } });
    for (let i = 0; i < 30; i++) expect((await get(bearer(generateKey()))).statusCode).toBe(401);
    expect((await get(bearer(t.adminKey))).statusCode).toBe(200);
  });
});
