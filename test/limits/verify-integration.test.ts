import { createKeywardAuth, generateKey, hashApiKey } from '@keyward/sdk';
import { afterEach, describe, expect, inject, it } from 'vitest';
import * as fastifyExample from '../../examples/fastify/app.js';
import { ConfigError, loadConfig } from '../../packages/server/src/config.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { type ClockedApp, createClockedApp } from '../verify/helpers.js';
import { closedPort, deleteKeys, randomPrefix, sleep } from './redis-helpers.js';

// Verification with the limits wired in (SPEC §6, §7): rate limit (the key's own or its tier's default), quota
// spent by `cost`, usage rows, metrics and the verify endpoint's brute-force guard, through the HTTP API.

const redisUrl = inject('redisUrl');
const postgresUrl = inject('postgresUrl');
const REDIS_SKIP = 'skipped because REDIS_URL is not set';

interface VerifyAnswer {
  valid: boolean;
  code: string;
  key_id?: string;
  ratelimit?: { limit: number; remaining: number; reset: number; window_seconds?: number };
  remaining?: number;
}

function verify(t: TestApp, body: Record<string, unknown>, options: { as?: string; ip?: string; headers?: Record<string, string> } = {}) {
  return t.app.inject({
    method: 'POST',
    url: '/v1/keys/verify',
    headers: { ...bearer(options.as ?? t.adminKey), ...options.headers },
    payload: body,
    ...(options.ip ? { remoteAddress: options.ip } : {}),
  });
}

async function answer(t: TestApp, body: Record<string, unknown>, options: { as?: string; ip?: string } = {}): Promise<VerifyAnswer> {
  const response = await verify(t, body, options);
  if (response.statusCode !== 200) throw new Error(`verify answered ${response.statusCode}: ${response.body}`);
  return response.json() as VerifyAnswer;
}

function count(codes: string[]): Record<string, number> {
  const n: Record<string, number> = {};
  for (const c of codes) n[c] = (n[c] ?? 0) + 1;
  return n;
}

describe.each(DIALECTS)('verification with rate limits and quotas on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('rate limit: `limit` answers VALID with the window state, then RATE_LIMITED, then the full limit after the window', async () => {
    t = await createClockedApp({ dialect });
    const { key, id } = await createKey(t, { rate_limit: { limit: 3, window_seconds: 10 } });
    const start = t.clock.now();
    const reset = Math.ceil((start + 10_000) / 1000);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await answer(t, { key }));
    expect(answers.map((a) => [a.code, a.valid, a.key_id, a.ratelimit])).toEqual([
      ['VALID', true, id, { limit: 3, remaining: 2, reset, window_seconds: 10 }],
      ['VALID', true, id, { limit: 3, remaining: 1, reset, window_seconds: 10 }],
      ['VALID', true, id, { limit: 3, remaining: 0, reset, window_seconds: 10 }],
      ['RATE_LIMITED', false, id, { limit: 3, remaining: 0, reset, window_seconds: 10 }],
    ]);
    t.clock.advance(9_999);
    expect((await answer(t, { key })).code).toBe('RATE_LIMITED');
    t.clock.advance(1);
    expect(await answer(t, { key })).toMatchObject({ code: 'VALID', ratelimit: { limit: 3, remaining: 2 } });
    // A key without a rate limit (an ownerless key, so no tier) reports none.
    const free = await createKey(t);
    expect(await answer(t, { key: free.key })).not.toHaveProperty('ratelimit');
  });

  it('quota: USAGE_EXCEEDED says when a refilling quota comes back (quota_reset), and nothing for one that never does', async () => {
    t = await createClockedApp({ dialect });
    const daily = await createKey(t, { quota: { remaining: 1, refill: { amount: 1, interval: 'day' } } });
    const monthly = await createKey(t, { quota: { remaining: 0, refill: { amount: 5, interval: 'month' } } });
    const once = await createKey(t, { quota: { remaining: 0 } });
    const now = new Date(t.clock.now());
    const valid = await answer(t, { key: daily.key });
    expect(valid).toMatchObject({ code: 'VALID', remaining: 0 });
    expect(valid).not.toHaveProperty('quota_reset');
    expect(await answer(t, { key: daily.key })).toMatchObject({
      code: 'USAGE_EXCEEDED',
      quota_reset: Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1) / 1000,
    });
    expect(await answer(t, { key: monthly.key })).toMatchObject({
      code: 'USAGE_EXCEEDED',
      quota_reset: Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1) / 1000,
    });
    const never = await answer(t, { key: once.key });
    expect(never).toMatchObject({ code: 'USAGE_EXCEEDED' });
    expect(never).not.toHaveProperty('quota_reset');
    // Nor for a cost the refill could never cover.
    const tooDear = await answer(t, { key: monthly.key, cost: 6 });
    expect(tooDear).toMatchObject({ code: 'USAGE_EXCEEDED' });
    expect(tooDear).not.toHaveProperty('quota_reset');
  });

  it('rate limit: ratelimit_cost 0 checks the window without using it; a bad one is 400', async () => {
    t = await createClockedApp({ dialect });
    const { key } = await createKey(t, { rate_limit: { limit: 2, window_seconds: 10 }, quota: { remaining: 10 } });
    const seen = [];
    for (const ratelimit_cost of [undefined, 0, 0, undefined, 0]) {
      const a = await answer(t, ratelimit_cost === undefined ? { key } : { key, ratelimit_cost });
      seen.push([a.code, a.ratelimit?.remaining, a.remaining]);
    }
    // The quota is spent every time; the window only by the two counted verifications, full or not.
    expect(seen).toEqual([
      ['VALID', 1, 9],
      ['VALID', 1, 8],
      ['VALID', 1, 7],
      ['VALID', 0, 6],
      ['VALID', 0, 5],
    ]);
    expect((await answer(t, { key })).code).toBe('RATE_LIMITED');
    for (const ratelimit_cost of [-1, 1.5, '1']) {
      const response = await verify(t, { key, ratelimit_cost });
      expect(response.statusCode, String(ratelimit_cost)).toBe(400);
    }
  });

  it('rate limit: a user’s key without its own limit gets the tier default, cached with the key; a tier change applies at once', async () => {
    const TIERS = JSON.stringify({
      free: { max_keys: 5, rate_limit: { limit: 2, window_seconds: 60 } },
      pro: { max_keys: 5, rate_limit: { limit: 5, window_seconds: 30 } },
    });
    t = await createClockedApp({ dialect, env: { TIERS, CACHE_TTL_MS: '3600000' } });
    const user = await t.app.inject({ method: 'POST', url: '/v1/users', headers: bearer(t.adminKey), payload: { external_id: 'u1' } });
    expect(user.statusCode).toBe(201);
    const userId = (user.json() as { id: string }).id;
    const own = await createKey(t, { user_id: userId });
    const custom = await createKey(t, { user_id: userId, rate_limit: { limit: 4, window_seconds: 60 } });

    expect((await answer(t, { key: own.key })).ratelimit).toMatchObject({ limit: 2, remaining: 1, window_seconds: 60 });
    expect((await answer(t, { key: own.key })).ratelimit).toMatchObject({ limit: 2, remaining: 0 });
    expect(await answer(t, { key: own.key })).toMatchObject({ code: 'RATE_LIMITED', valid: false, ratelimit: { remaining: 0 } });
    // The key's own limit wins over the tier's.
    expect((await answer(t, { key: custom.key })).ratelimit).toMatchObject({ limit: 4, remaining: 3 });
    // The owner's tier came with the record when the cache was filled: no read per verification.
    expect(t.container.keyCache.fresh(hashApiKey(own.key))?.ownerTier).toBe('free');

    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/users/${userId}`,
      headers: bearer(t.adminKey),
      payload: { tier: 'pro' },
    });
    expect(patched.statusCode).toBe(200);
    expect(await answer(t, { key: own.key })).toMatchObject({ code: 'VALID', ratelimit: { limit: 5, remaining: 4, window_seconds: 30 } });
  });

  it('rate limit: a user of a tier no longer configured gets the default tier’s limit, never none', async () => {
    const TIERS = JSON.stringify({ free: { max_keys: 5, rate_limit: { limit: 2, window_seconds: 60 } } });
    t = await createClockedApp({ dialect, env: { TIERS } });
    const user = await t.app.inject({ method: 'POST', url: '/v1/users', headers: bearer(t.adminKey), payload: { external_id: 'u1' } });
    const userId = (user.json() as { id: string }).id;
    // The tier was configured once and has since been removed from TIERS.
    await t.container.db.db.updateTable('users').set({ tier: 'retired' }).where('id', '=', userId).execute();
    const { key } = await createKey(t, { user_id: userId });
    expect((await answer(t, { key })).ratelimit).toMatchObject({ limit: 2, remaining: 1 });
  });

  it('quota: 30 simultaneous verifications of a key with 10 left give exactly 10 VALID, with `remaining` in each answer', async () => {
    t = await createClockedApp({ dialect });
    const { key, id } = await createKey(t, { quota: { remaining: 10 } });
    const answers = await Promise.all(Array.from({ length: 30 }, () => answer(t, { key })));
    expect(count(answers.map((a) => a.code))).toEqual({ VALID: 10, USAGE_EXCEEDED: 20 });
    expect(
      answers
        .filter((a) => a.valid)
        .map((a) => a.remaining)
        .sort((a, b) => (a ?? 0) - (b ?? 0)),
    ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const refused of answers.filter((a) => !a.valid)) expect(refused).toMatchObject({ key_id: id, remaining: 0 });
    const stored = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey) });
    expect(stored.json()).toMatchObject({ quota: { remaining: 0 } });
  });

  it('a cached key with a rate limit and a quota is verified without a promise on SQLite (memory rate limiter)', async () => {
    t = await createClockedApp({ dialect });
    // A rate limit alone needs no database: no promise on either database.
    const limited = await createKey(t, { rate_limit: { limit: 5, window_seconds: 60 } });
    expect(await answer(t, { key: limited.key })).toMatchObject({ code: 'VALID' }); // now cached
    const direct = t.container.verifier.verify({ principal: { kind: 'system', name: 'test' }, ip: null }, { key: limited.key });
    expect(direct).not.toBeInstanceOf(Promise);
    expect(direct).toMatchObject({ ok: true, value: { code: 'VALID', ratelimit: { limit: 5, remaining: 3 } } });
    const { key } = await createKey(t, { quota: { remaining: 10 }, rate_limit: { limit: 5, window_seconds: 60 } });
    expect(await answer(t, { key })).toMatchObject({ code: 'VALID', remaining: 9 }); // now cached
    const result = t.container.verifier.verify({ principal: { kind: 'system', name: 'test' }, ip: null }, { key });
    if (dialect === 'sqlite') expect(result).not.toBeInstanceOf(Promise);
    else expect(result).toBeInstanceOf(Promise);
    expect(await result).toMatchObject({ ok: true, value: { code: 'VALID', remaining: 8, ratelimit: { limit: 5, remaining: 3 } } });
  });

  it('quota: spends `cost` (0 only reads), refuses a spend that would go below zero, and rejects a bad cost with 400', async () => {
    t = await createClockedApp({ dialect });
    const { key } = await createKey(t, { quota: { remaining: 10 } });
    expect(await answer(t, { key, cost: 3 })).toMatchObject({ code: 'VALID', remaining: 7 });
    expect(await answer(t, { key, cost: 0 })).toMatchObject({ code: 'VALID', remaining: 7 });
    expect(await answer(t, { key, cost: 8 })).toMatchObject({ code: 'USAGE_EXCEEDED', valid: false, remaining: 7 });
    expect(await answer(t, { key, cost: 7 })).toMatchObject({ code: 'VALID', remaining: 0 });
    for (const cost of [-1, 1.5]) {
      const response = await verify(t, { key, cost });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_COST' });
    }
    // A rate-limited request spends no quota: the rate limit is checked first.
    const both = await createKey(t, { quota: { remaining: 5 }, rate_limit: { limit: 1, window_seconds: 60 } });
    expect(await answer(t, { key: both.key })).toMatchObject({ code: 'VALID', remaining: 4 });
    expect(await answer(t, { key: both.key })).toMatchObject({ code: 'RATE_LIMITED' });
    expect(await answer(t, { key: both.key, cost: 0 })).toMatchObject({ code: 'RATE_LIMITED' });
    t.clock.advance(60_000);
    expect(await answer(t, { key: both.key, cost: 0 })).toMatchObject({ code: 'VALID', remaining: 4 });
  });

  it('usage: one row per verification, written after a flush, counted by outcome in the key’s usage', async () => {
    // No timed flush during the test: rows are written when it says so.
    t = await createClockedApp({ dialect, env: { USAGE_FLUSH_MS: '3600000' } });
    const { key, id } = await createKey(t, { rate_limit: { limit: 20, window_seconds: 60 } });
    const codes = await Promise.all(Array.from({ length: 25 }, async () => (await answer(t, { key })).code));
    expect(count(codes)).toEqual({ VALID: 20, RATE_LIMITED: 5 });
    for (let i = 0; i < 3; i++) await answer(t, { key: generateKey('kw') });
    await verify(t, { key }, { headers: { 'user-agent': 'billing-service/2.1' } });
    // Buffered, not written per request.
    expect(t.container.usage.buffered()).toBe(29);
    await t.container.usage.flush();

    const rows = await t.container.db.db.selectFrom('api_key_usage').selectAll().execute();
    expect(rows).toHaveLength(29);
    expect(count(rows.map((r) => `${r.api_key_id === id ? 'key' : r.api_key_id}:${r.outcome}`))).toEqual({
      'key:VALID': 20,
      'key:RATE_LIMITED': 6,
      'null:NOT_FOUND': 3,
    });
    for (const row of rows) {
      expect(row).toMatchObject({ endpoint: '/v1/keys/verify', method: 'POST', status_code: 200, ip_address: '127.0.0.1' });
      expect(Number(row.response_time_ms)).toBeGreaterThanOrEqual(0);
    }
    expect(rows.filter((r) => r.user_agent === 'billing-service/2.1')).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(key);

    // The range ends now, exclusive: move the hand-driven clock past the rows' instant.
    t.clock.advance(1_000);
    const usage = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}/usage?granularity=minute`, headers: bearer(t.adminKey) });
    expect(usage.statusCode).toBe(200);
    expect(usage.json()).toMatchObject({ totals: { total: 26, outcomes: { VALID: 20, RATE_LIMITED: 6 } } });
  });
});

describe('verification metrics', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('count verifications by code, their latency, cache hits and misses, and rate-limit decisions', async () => {
    t = await createTestApp();
    const limited = await createKey(t, { rate_limit: { limit: 2, window_seconds: 60 } });
    for (let i = 0; i < 3; i++) await answer(t, { key: limited.key });
    await answer(t, { key: generateKey('kw') });
    await answer(t, { key: 'short' });
    const text = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    const sample = (name: string) => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    expect(sample('keyward_verifications_total{code="VALID"}')).toBe(2);
    expect(sample('keyward_verifications_total{code="RATE_LIMITED"}')).toBe(1);
    expect(sample('keyward_verifications_total{code="NOT_FOUND"}')).toBe(1);
    expect(sample('keyward_verifications_total{code="INVALID_FORMAT"}')).toBe(1);
    expect(sample('keyward_verify_duration_seconds_count')).toBe(5);
    // Authentication goes through the same cache: the admin key misses once (creating the key) and then hits
    // on each of the 5 verify requests; the limited key misses once and hits twice; the unknown key misses;
    // the malformed one is refused before any look-up.
    expect(sample('keyward_cache_lookups_total{result="miss"}')).toBe(3);
    expect(sample('keyward_cache_lookups_total{result="hit"}')).toBe(7);
    // 2 for the limited key; the brute-force guard counts the two failed verifications in a limiter of its own.
    expect(sample('keyward_rate_limit_decisions_total{backend="memory",result="allowed"}')).toBe(2);
    expect(sample('keyward_rate_limit_decisions_total{backend="memory",result="denied"}')).toBe(1);
  });
});

describe('brute-force guard on POST /v1/keys/verify', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('counts failed verifications per caller key and address: past the budget, 429 with Retry-After for that pair only', async () => {
    t = await createTestApp({ env: { VERIFY_FAILURES_PER_MINUTE: '3' } });
    const backend = await createKey(t, { name: 'backend', scopes: ['keyward:verify'] });
    const other = await createKey(t, { name: 'other backend', scopes: ['keyward:verify'] });
    const valid = await createKey(t, { name: 'end user', scopes: ['a:read'], quota: { remaining: 1 } });
    const ip = '203.0.113.7';
    // Valid keys, and valid keys refused for scopes or quota, are not failures.
    for (let i = 0; i < 5; i++) expect((await answer(t, { key: valid.key, cost: 0 }, { as: backend.key, ip })).code).toBe('VALID');
    expect((await answer(t, { key: valid.key, scopes: ['b:read'] }, { as: backend.key, ip })).code).toBe('INSUFFICIENT_SCOPES');
    expect((await answer(t, { key: valid.key, cost: 5 }, { as: backend.key, ip })).code).toBe('USAGE_EXCEEDED');
    expect((await answer(t, { key: 'short' }, { as: backend.key, ip })).code).toBe('INVALID_FORMAT');
    expect((await answer(t, { key: generateKey('kw') }, { as: backend.key, ip })).code).toBe('NOT_FOUND');
    expect((await answer(t, { key: valid.key, cost: 0 }, { as: backend.key, ip })).code).toBe('VALID');
    expect((await answer(t, { key: generateKey('kw') }, { as: backend.key, ip })).code).toBe('NOT_FOUND');

    const blocked = await verify(t, { key: generateKey('kw'), cost: 0 }, { as: backend.key, ip });
    expect(blocked.statusCode).toBe(429);
    expect(blocked.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(blocked.json()).toMatchObject({ code: 'RATE_LIMITED', status: 429 });
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Blocked, the pair is still answered for keys this instance holds records for: its end users' real keys
    // keep verifying, while a key never seen (a guess, a malformed key) is refused.
    expect((await answer(t, { key: valid.key, cost: 0 }, { as: backend.key, ip })).code).toBe('VALID');
    expect((await verify(t, { key: 'short' }, { as: backend.key, ip })).statusCode).toBe(429);
    const unseen = await createKey(t, { name: 'end user not seen yet' });
    expect((await verify(t, { key: unseen.key }, { as: backend.key, ip })).statusCode).toBe(429);
    // The same caller from another address, another caller from this address, and the rest of the API are unaffected.
    expect((await answer(t, { key: valid.key, cost: 0 }, { as: backend.key, ip: '198.51.100.2' })).code).toBe('VALID');
    expect((await answer(t, { key: valid.key, cost: 0 }, { as: other.key, ip })).code).toBe('VALID');
    const me = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(backend.key), remoteAddress: ip });
    expect(me.statusCode).toBe(200);
  });

  it('gives a burst of unknown keys sent at once no more look-ups than the budget', async () => {
    // On PostgreSQL when there is one: its look-ups take real time, so the burst's requests overlap.
    t = await createTestApp({ dialect: DIALECTS.at(-1) ?? 'sqlite', env: { VERIFY_FAILURES_PER_MINUTE: '3' } });
    const backend = await createKey(t, { name: 'backend', scopes: ['keyward:verify'] });
    const valid = await createKey(t, { name: 'end user' });
    expect((await answer(t, { key: valid.key }, { as: backend.key })).code).toBe('VALID');
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async () => (await verify(t, { key: generateKey('kw') }, { as: backend.key })).statusCode),
    );
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(3);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(17);
    // The end user's key, seen before, still verifies.
    expect((await answer(t, { key: valid.key }, { as: backend.key })).code).toBe('VALID');
  });

  it('does not count valid verifications that wait for a gate (a quota spend) as look-ups in flight', async () => {
    // On PostgreSQL when there is one: every quota spend there is a wait.
    t = await createTestApp({ dialect: DIALECTS.at(-1) ?? 'sqlite', env: { VERIFY_FAILURES_PER_MINUTE: '3' } });
    const backend = await createKey(t, { name: 'backend', scopes: ['keyward:verify'] });
    const metered = await createKey(t, { name: 'metered', quota: { remaining: 1_000 } });
    expect((await answer(t, { key: metered.key }, { as: backend.key })).code).toBe('VALID');
    const other = await createKey(t, { name: 'not verified yet' });
    // Twenty at once through the service, all started in one turn, so their spends are pending when a key
    // the instance has not seen yet comes from the same caller and address: it must still be looked up.
    const caller = await t.container.authenticator.authenticate(backend.key);
    if (!caller.ok) throw new Error('the backend key did not authenticate');
    const from = { principal: caller.value, ip: '203.0.113.9' };
    const request = { method: 'POST', userAgent: null, elapsedMs: () => 0 };
    const metering = Array.from({ length: 20 }, () => t.container.verification.verifyFor(from, { key: metered.key }, request));
    const fresh = await t.container.verification.verifyFor(from, { key: other.key }, request);
    expect(fresh.ok ? fresh.value.code : fresh.code).toBe('VALID');
    const results = await Promise.all(metering);
    expect(results.map((r) => (r.ok ? r.value.code : r.code))).toEqual(Array(20).fill('VALID'));
  });

  it('is off with VERIFY_FAILURES_PER_MINUTE=0, defaults to 600, and rejects a bad value', async () => {
    expect(loadConfig({}).verifyFailuresPerMinute).toBe(600);
    expect(() => loadConfig({ VERIFY_FAILURES_PER_MINUTE: 'lots' })).toThrow(ConfigError);
    t = await createTestApp({ env: { VERIFY_FAILURES_PER_MINUTE: '0' } });
    for (let i = 0; i < 30; i++) expect((await answer(t, { key: generateKey('kw') })).code).toBe('NOT_FOUND');
    expect((await verify(t, { key: generateKey('kw') })).statusCode).toBe(200);
  });
});

describe('usage reported by host applications: POST /v1/usage/events', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const report = (asKey: string, events: unknown[]) =>
    t.app.inject({ method: 'POST', url: '/v1/usage/events', headers: bearer(asKey), payload: { events } });

  it('takes a batch from an admin or keyward:verify key (202), writes one row per event, and refuses others', async () => {
    t = await createTestApp();
    const middleware = await createKey(t, { scopes: ['keyward:verify'] });
    const plain = await createKey(t, { scopes: ['a:read'] });
    const occurred = new Date(Date.now() - 60_000).toISOString();
    const event = {
      key_id: plain.id,
      outcome: 'VALID',
      endpoint: '/v1/companies',
      method: 'GET',
      status_code: 200,
      ip_address: '203.0.113.9',
      user_agent: 'curl/8',
      response_time_ms: 12.4,
      occurred_at: occurred,
    };
    const accepted = await report(middleware.key, [event, { ...event, status_code: 403, outcome: 'INSUFFICIENT_SCOPES' }]);
    expect(accepted.statusCode).toBe(202);
    expect(accepted.json()).toEqual({ accepted: 2 });
    expect((await report(t.adminKey, [{ key_id: null, outcome: 'NOT_FOUND', occurred_at: '2999-01-01T00:00:00Z' }])).statusCode).toBe(202);
    expect((await report(plain.key, [event])).statusCode).toBe(403);
    await t.container.usage.flush();

    const rows = (await t.container.db.db.selectFrom('api_key_usage').selectAll().execute()).sort(
      (x, y) => (x.status_code ?? 999) - (y.status_code ?? 999),
    );
    expect(rows.map((r) => [r.api_key_id, r.outcome, r.endpoint, r.method, r.status_code, r.ip_address, r.user_agent])).toEqual([
      [plain.id, 'VALID', '/v1/companies', 'GET', 200, '203.0.113.9', 'curl/8'],
      [plain.id, 'INSUFFICIENT_SCOPES', '/v1/companies', 'GET', 403, '203.0.113.9', 'curl/8'],
      [null, 'NOT_FOUND', null, null, null, null, null],
    ]);
    expect(Number(rows[0]?.response_time_ms)).toBe(12);
    expect(Number(rows[0]?.created_at)).toBe(Date.parse(occurred));
    // A reporter's clock ahead of ours does not put rows in the future.
    expect(Number(rows[2]?.created_at)).toBeLessThanOrEqual(Date.now());
  });

  it('validates the batch: 1 to 500 events, known outcomes, no unknown fields', async () => {
    t = await createTestApp();
    const one = { key_id: null, outcome: 'VALID' };
    expect(
      (
        await report(
          t.adminKey,
          Array.from({ length: 500 }, () => one),
        )
      ).statusCode,
    ).toBe(202);
    for (const events of [
      [],
      Array.from({ length: 501 }, () => one),
      [{ key_id: null, outcome: 'FINE' }],
      [{ ...one, extra: 1 }],
      [{ outcome: 'VALID' }],
    ]) {
      const response = await report(t.adminKey, events);
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });

  it('gets one row for every request the SDK middleware saw, cached ones included, in batches, and none for its verifications', async () => {
    t = await createTestApp();
    const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const verifyKey = (await createKey(t, { scopes: ['keyward:verify'] })).key;
    const reader = await createKey(t, { scopes: ['companies:read'] });
    const auth = createKeywardAuth({ baseUrl: url, apiKey: verifyKey, cache: { ttlMs: 60_000 }, usage: { flushIntervalMs: 3_600_000 } });
    const host = await fastifyExample.listen({ auth });
    try {
      for (let i = 0; i < 3; i++) {
        const response = await fetch(`${host.url}/v1/companies`, {
          headers: { authorization: `Bearer ${reader.key}`, 'user-agent': 'app/1' },
        });
        expect(response.status).toBe(200);
      }
      expect((await fetch(`${host.url}/v1/companies`, { headers: { authorization: `Bearer ${generateKey('kw')}` } })).status).toBe(401);
      const rows = async () => {
        await auth.flush();
        await t.container.usage.flush();
        return t.container.db.db.selectFrom('api_key_usage').selectAll().where('endpoint', '=', '/v1/companies').execute();
      };
      const until = Date.now() + 5_000;
      while ((await rows()).length < 4 && Date.now() < until) await sleep(20);
      const seen = await rows();
      expect(count(seen.map((r) => `${r.api_key_id}:${r.outcome}:${r.status_code}:${r.method}`))).toEqual({
        [`${reader.id}:VALID:200:GET`]: 3,
        'null:NOT_FOUND:401:GET': 1,
      });
      expect(seen.filter((r) => r.user_agent === 'app/1')).toHaveLength(3);
      // The first request and the unknown key went to the verify endpoint (cache miss), with `record_usage: false`:
      // the middleware's report is each request's one row, so the verifications wrote none.
      const verifications = await t.container.db.db
        .selectFrom('api_key_usage')
        .select('outcome')
        .where('endpoint', '=', '/v1/keys/verify')
        .execute();
      expect(verifications).toEqual([]);
    } finally {
      await host.close();
      await auth.close();
    }
  });
});

describe('rate limits when Redis cannot be reached', () => {
  let t: TestApp | undefined;
  afterEach(async () => t?.close());

  it.each([
    ['open', 'VALID', 'fail_open'],
    ['closed', 'RATE_LIMITED', 'fail_closed'],
  ])('with RATE_LIMIT_FAIL_MODE=%s, a rate-limited key answers %s, counted in metrics', async (mode, code, result) => {
    t = await createTestApp({
      env: { REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, REDIS_TIMEOUT_MS: '100', RATE_LIMIT_FAIL_MODE: mode },
    });
    const limited = await createKey(t, { rate_limit: { limit: 100, window_seconds: 60 } });
    const unlimited = await createKey(t);
    expect(await answer(t, { key: limited.key })).toMatchObject({ code, ratelimit: { limit: 100 } });
    // A key without a rate limit never asks Redis.
    expect((await answer(t, { key: unlimited.key })).code).toBe('VALID');
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(new RegExp(`^keyward_rate_limit_decisions_total\\{backend="redis",result="${result}"\\} 1$`, 'm'));
    expect(metrics).toMatch(/^keyward_redis_errors_total\{operation="rate_limit"\} 1$/m);
  });
});

describe.skipIf(redisUrl === null)(`limits shared by instances through Redis (${redisUrl === null ? REDIS_SKIP : 'REDIS_URL'})`, () => {
  const apps: TestApp[] = [];
  let prefix = '';
  afterEach(async () => {
    for (const app of apps.splice(0).reverse()) await app.close();
    if (redisUrl !== null && prefix !== '') {
      const { openRedis, closeRedis } = await import('../../packages/server/src/store/redis.js');
      const redis = openRedis(redisUrl);
      await deleteKeys(redis, prefix);
      await closeRedis(redis);
    }
  });

  it('rate limit window on the Redis backend: limit, then RATE_LIMITED, then the full limit after the window', async () => {
    prefix = randomPrefix();
    const t = await createTestApp({ env: { REDIS_URL: redisUrl ?? '', REDIS_PREFIX: prefix } });
    apps.push(t);
    const { key } = await createKey(t, { rate_limit: { limit: 2, window_seconds: 1 } });
    const answers: VerifyAnswer[] = [];
    for (let i = 0; i < 3; i++) answers.push(await answer(t, { key }));
    expect(answers.map((a) => [a.code, a.ratelimit?.remaining])).toEqual([
      ['VALID', 1],
      ['VALID', 0],
      ['RATE_LIMITED', 0],
    ]);
    // Real time: the window lives in Redis and ends by `reset` (whole seconds, rounded up): at most ~2 s away.
    const reset = answers[2]?.ratelimit?.reset ?? 0;
    await sleep(Math.max(0, reset * 1000 - Date.now()) + 50);
    expect(await answer(t, { key })).toMatchObject({ code: 'VALID', ratelimit: { limit: 2, remaining: 1, window_seconds: 1 } });
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^keyward_rate_limit_decisions_total\{backend="redis",result="allowed"\} [1-9]/m);
  });

  describe.skipIf(postgresUrl === null)(
    `two instances on one PostgreSQL (${postgresUrl === null ? POSTGRES_SKIP_REASON : 'DATABASE_URL'})`,
    () => {
      it('30 simultaneous verifications split over two instances: the shared rate limit and quota hold exactly', async () => {
        prefix = randomPrefix();
        const env = { REDIS_URL: redisUrl ?? '', REDIS_PREFIX: prefix };
        const a = await createTestApp({ dialect: 'postgres', env });
        apps.push(a);
        const b = await createTestApp({ dialect: 'postgres', env, database: a.database });
        apps.push(b);
        const metered = await createKey(a, { quota: { remaining: 10 } });
        const both = await createKey(a, { quota: { remaining: 10 }, rate_limit: { limit: 20, window_seconds: 300 } });
        const burst = (key: string) =>
          Promise.all(Array.from({ length: 30 }, (_, i) => answer(i % 2 === 0 ? a : b, { key }, { as: a.adminKey })));

        const quotaOnly = await burst(metered.key);
        expect(count(quotaOnly.map((r) => r.code))).toEqual({ VALID: 10, USAGE_EXCEEDED: 20 });
        // 20 pass the shared rate limit, of which the quota lets exactly 10 through.
        const limited = await burst(both.key);
        expect(count(limited.map((r) => r.code))).toEqual({ VALID: 10, USAGE_EXCEEDED: 10, RATE_LIMITED: 10 });
        const stored = await b.app.inject({ method: 'GET', url: `/v1/api-keys/${both.id}`, headers: bearer(a.adminKey) });
        expect(stored.json()).toMatchObject({ quota: { remaining: 0 } });
      });
    },
  );
});
