import { createKeywardAuth, generateKey, hashApiKey, type KeywardError, MIDDLEWARE_PROBLEMS, type VerifyCode } from '@keyward/sdk';
import { LRUCache } from 'lru-cache';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ERRORS } from '../../packages/server/src/errors.js';
import { stubKeyward, validAnswer } from './stub-keyward.js';

const VERIFY_KEY = generateKey('kw');
const path = '/v1/companies?page=2';

function setup(options: { requireApiKey?: boolean; cache?: false | { ttlMs?: number; maxEntries?: number } } = {}) {
  const keyward = stubKeyward();
  const errors: KeywardError[] = [];
  const auth = createKeywardAuth({
    baseUrl: 'http://keyward.test',
    apiKey: VERIFY_KEY,
    fetch: keyward.fetch,
    onError: (error) => errors.push(error),
    ...options,
  });
  return { keyward, auth, errors };
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}`, path });

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('SDK middleware core: credentials', () => {
  it('refuses a request without a key: 401 AUTH_REQUIRED problem, WWW-Authenticate, no call to Keyward', async () => {
    const { auth, keyward } = setup();
    const decision = await auth.authorize({ path });
    expect(decision).toEqual({
      ok: false,
      status: 401,
      headers: { 'www-authenticate': 'Bearer realm="keyward"' },
      problem: {
        type: 'https://keyward.dev/problems/auth-required',
        title: ERRORS.AUTH_REQUIRED.title,
        status: 401,
        code: 'AUTH_REQUIRED',
        instance: '/v1/companies',
      },
    });
    expect(keyward.seen).toHaveLength(0);
  });

  it('with requireApiKey false, lets a request without a key through as anonymous, except on scoped or admin routes', async () => {
    const { auth } = setup({ requireApiKey: false });
    expect(await auth.authorize({ path })).toEqual({ ok: true, identity: null, headers: {} });
    expect(await auth.authorize({ path }, { scopes: ['companies:read'] })).toMatchObject({ ok: false, status: 401 });
    expect(await auth.authorize({ path }, { admin: true })).toMatchObject({ ok: false, status: 401 });
    // And the per-route switch wins over the global one, both ways.
    expect(await auth.authorize({ path }, { requireApiKey: true })).toMatchObject({ ok: false, status: 401 });
    const strict = setup({ requireApiKey: true }).auth;
    expect(await strict.authorize({ path }, { requireApiKey: false })).toMatchObject({ ok: true, identity: null });
  });

  it('with requireApiKey false, still refuses a presented key that does not verify', async () => {
    const { auth, keyward } = setup({ requireApiKey: false });
    const decision = await auth.authorize(bearer(generateKey('kw')));
    expect(decision).toMatchObject({
      ok: false,
      status: 401,
      problem: { code: 'INVALID_CREDENTIALS' },
      headers: { 'www-authenticate': 'Bearer realm="keyward", error="invalid_token"' },
    });
    expect(keyward.seen).toHaveLength(1);
  });

  it('answers a malformed key, a bad checksum or a non-Bearer header with 401 without asking Keyward', async () => {
    const { auth, keyward } = setup({ requireApiKey: false });
    const key = generateKey('kw');
    const tampered = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    for (const request of [
      bearer('short'),
      bearer(tampered),
      { authorization: `Basic ${key}`, path },
      { apiKey: 'has space in it 0123', path },
    ]) {
      expect(await auth.authorize(request)).toMatchObject({ ok: false, status: 401, problem: { code: 'INVALID_CREDENTIALS' } });
    }
    expect(keyward.seen).toHaveLength(0);
  });

  it('reads X-API-Key as well as Authorization: Bearer', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer();
    expect(await auth.authorize({ apiKey: ` ${key} `, path })).toMatchObject({ ok: true });
    expect(keyward.seen[0]?.body).toEqual({ key, tags: ['route:/v1/companies'], record_usage: false });
  });
});

describe('SDK middleware core: verification through Keyward', () => {
  it('verifies with its own key, sends the required scopes and cost, and attaches the identity', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({
      key_id: 'k1',
      user_id: 'u1',
      scopes: ['companies:*'],
      is_admin: false,
      metadata: { plan: 'pro' },
    });
    const decision = await auth.authorize(bearer(key), { scopes: ['companies:read'], cost: 2 });
    expect(decision).toEqual({
      ok: true,
      headers: {},
      identity: { keyId: 'k1', userId: 'u1', scopes: ['companies:*'], isAdmin: false, metadata: { plan: 'pro' } },
      outcome: { keyId: 'k1', code: 'VALID' },
      rule: { scopes: ['companies:read'], cost: 2 },
    });
    expect(keyward.seen).toEqual([
      {
        method: 'POST',
        path: '/v1/keys/verify',
        authorization: `Bearer ${VERIFY_KEY}`,
        // Tagged with the route (the path here), and no usage row of its own: the request's report is its row.
        body: { key, scopes: ['companies:read'], cost: 2, tags: ['route:/v1/companies'], record_usage: false },
      },
    ]);
  });

  it.each([
    ['NOT_FOUND', 'INVALID_CREDENTIALS'],
    ['INVALID_FORMAT', 'INVALID_CREDENTIALS'],
    ['REVOKED', 'KEY_REVOKED'],
    ['DISABLED', 'KEY_DISABLED'],
    ['EXPIRED', 'KEY_EXPIRED'],
  ])('turns %s into 401 %s with WWW-Authenticate', async (verifyCode, problemCode) => {
    const code = verifyCode as VerifyCode;
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = code === 'NOT_FOUND' || code === 'INVALID_FORMAT' ? { valid: false, code } : validAnswer({ valid: false, code });
    expect(await auth.authorize(bearer(key))).toMatchObject({
      ok: false,
      status: 401,
      problem: { code: problemCode, status: 401, title: MIDDLEWARE_PROBLEMS[problemCode as 'KEY_REVOKED'].title },
      headers: { 'www-authenticate': 'Bearer realm="keyward", error="invalid_token"' },
    });
  });

  it('turns INSUFFICIENT_SCOPES into 403 FORBIDDEN, and a key without the scope or admin is refused locally too', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ valid: false, code: 'INSUFFICIENT_SCOPES', scopes: ['companies:read'] });
    const refused = await auth.authorize(bearer(key), { scopes: ['companies:write'] });
    expect(refused).toMatchObject({ ok: false, status: 403, problem: { code: 'FORBIDDEN', status: 403 } });
    expect(refused.headers).not.toHaveProperty('www-authenticate');

    keyward.answers[key] = validAnswer({ scopes: ['companies:read'] });
    expect(await auth.authorize(bearer(key), { admin: true })).toMatchObject({ ok: false, status: 403, problem: { code: 'FORBIDDEN' } });
  });

  it('turns RATE_LIMITED into 429 with Retry-After until the window resets', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_800_000_000_000);
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({
      valid: false,
      code: 'RATE_LIMITED',
      ratelimit: { limit: 10, remaining: 0, reset: 1_800_000_030 },
    });
    expect(await auth.authorize(bearer(key))).toEqual({
      ok: false,
      status: 429,
      problem: expect.objectContaining({ code: 'RATE_LIMITED', status: 429 }),
      headers: { 'retry-after': '30', 'ratelimit-policy': '"default";q=10', ratelimit: '"default";r=0;t=30' },
      outcome: { keyId: 'key-1', code: 'RATE_LIMITED' },
      rule: {},
    });
  });

  it('turns USAGE_EXCEEDED into 429 USAGE_EXCEEDED without a made-up Retry-After', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ valid: false, code: 'USAGE_EXCEEDED', remaining: 0 });
    const decision = await auth.authorize(bearer(key));
    expect(decision).toMatchObject({
      ok: false,
      status: 429,
      problem: { code: 'USAGE_EXCEEDED', status: 429, title: ERRORS.USAGE_EXCEEDED.title },
      outcome: { keyId: 'key-1', code: 'USAGE_EXCEEDED' },
    });
    expect(decision.headers).not.toHaveProperty('retry-after');
  });

  it('gives USAGE_EXCEEDED a Retry-After when Keyward says when the quota refills', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_800_000_000_000);
    try {
      const { auth, keyward } = setup();
      const key = generateKey('kw');
      keyward.answers[key] = validAnswer({ valid: false, code: 'USAGE_EXCEEDED', remaining: 0, quota_reset: 1_800_003_600 });
      const decision = await auth.authorize(bearer(key));
      expect(decision).toMatchObject({ ok: false, status: 429, problem: { code: 'USAGE_EXCEEDED' } });
      expect(decision.headers['retry-after']).toBe('3600');
    } finally {
      vi.useRealTimers();
    }
  });

  it('puts the window in RateLimit-Policy when Keyward reports it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_800_000_000_000);
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ ratelimit: { limit: 100, remaining: 7, reset: 1_800_000_045, window_seconds: 60 } });
    expect(await auth.authorize(bearer(key))).toMatchObject({
      ok: true,
      headers: { 'ratelimit-policy': '"default";q=100;w=60', ratelimit: '"default";r=7;t=45' },
    });
  });

  it('passes a rate-limited key with RateLimit-Policy and RateLimit headers (IETF draft syntax)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_800_000_000_500);
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ ratelimit: { limit: 100, remaining: 42, reset: 1_800_000_060 } });
    expect(await auth.authorize(bearer(key))).toMatchObject({
      ok: true,
      headers: { 'ratelimit-policy': '"default";q=100', ratelimit: '"default";r=42;t=60' },
    });
  });

  it('answers 503 with Retry-After when Keyward cannot be reached or fails, and 500 when it refuses the middleware key', async () => {
    const { auth, keyward, errors } = setup();
    const key = generateKey('kw');
    keyward.state.failWith = 'network';
    const down = await auth.authorize(bearer(key));
    expect(down).toMatchObject({ ok: false, status: 503, problem: { code: 'SERVICE_UNAVAILABLE' }, headers: { 'retry-after': '5' } });
    keyward.state.failWith = 502;
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503 });
    keyward.state.failWith = 401;
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 500, problem: { code: 'INTERNAL_ERROR' } });
    expect(errors.map((e) => [e.status, e.code])).toEqual([
      [0, 'NETWORK_ERROR'],
      [502, 'INTERNAL_ERROR'],
      [401, 'INVALID_CREDENTIALS'],
    ]);
    // Nothing the caller or the operator sees carries the key.
    expect(JSON.stringify([down, errors.map((e) => [e.message, e.problem])])).not.toContain(key);
  });

  it("passes Keyward's own 429 (its brute-force guard) on as 429 RATE_LIMITED with Keyward's Retry-After", async () => {
    const { auth, keyward, errors } = setup();
    const key = generateKey('kw');
    keyward.state.failWith = 429;
    keyward.state.retryAfter = '42';
    const slowed = await auth.authorize(bearer(key));
    expect(slowed).toMatchObject({
      ok: false,
      status: 429,
      problem: { code: 'RATE_LIMITED', status: 429 },
      headers: { 'retry-after': '42' },
    });
    expect(errors.map((e) => [e.status, e.retryAfter])).toEqual([[429, 42]]);
    // An HTTP date is read as the seconds until then; no Retry-After gives none.
    keyward.state.retryAfter = new Date(Date.now() + 30_000).toUTCString();
    const dated = await auth.authorize(bearer(key));
    expect(Number(dated.headers['retry-after'])).toBeGreaterThanOrEqual(29);
    expect(Number(dated.headers['retry-after'])).toBeLessThanOrEqual(30);
    keyward.state.retryAfter = null;
    const bare = await auth.authorize(bearer(key));
    expect(bare).toMatchObject({ ok: false, status: 429 });
    expect(bare.headers).not.toHaveProperty('retry-after');
  });

  it('keeps the problem catalogue in step with the server (same status and title per code)', () => {
    for (const [code, { status, title }] of Object.entries(MIDDLEWARE_PROBLEMS)) {
      expect(ERRORS[code as keyof typeof ERRORS], code).toEqual({ status, title });
    }
  });
});

describe('SDK middleware core: cache', () => {
  it('verifies a key once, then answers from the cache, re-checking the route rule locally', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ scopes: ['companies:read'] });
    expect(await auth.authorize(bearer(key), { scopes: ['companies:read'] })).toMatchObject({ ok: true });
    expect(await auth.authorize(bearer(key), { scopes: ['companies:read'] })).toMatchObject({ ok: true });
    expect(await auth.authorize(bearer(key), { scopes: ['companies:write'] })).toMatchObject({ ok: false, status: 403 });
    expect(await auth.authorize(bearer(key), { admin: true })).toMatchObject({ ok: false, status: 403 });
    expect(keyward.seen).toHaveLength(1);
    auth.clearCache();
    await auth.authorize(bearer(key));
    expect(keyward.seen).toHaveLength(2);
  });

  it('answers a cached key at once: a decision, not a promise (the adapter goes on in the same turn)', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ scopes: ['companies:read'] });
    const first = auth.authorize(bearer(key), { scopes: ['companies:read'] });
    expect(first).toBeInstanceOf(Promise);
    await first;
    const hit = auth.authorize(bearer(key), { scopes: ['companies:read'] });
    expect(hit).not.toBeInstanceOf(Promise);
    expect(hit).toMatchObject({ ok: true, identity: { keyId: validAnswer().key_id } });
    // Refusals made locally come at once too; Keyward was asked once.
    expect(auth.authorize(bearer(key), { scopes: ['companies:write'] })).toMatchObject({ ok: false, status: 403 });
    expect(auth.authorize({ path })).toMatchObject({ ok: false, status: 401 });
    expect(keyward.seen).toHaveLength(1);
  });

  it('holds only the SHA-256 of a key, never the key', async () => {
    const set = vi.spyOn(LRUCache.prototype, 'set');
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer();
    await auth.authorize(bearer(key));
    expect(set).toHaveBeenCalledTimes(1);
    expect(set.mock.calls[0]?.[0]).toBe(hashApiKey(key));
    expect(JSON.stringify(set.mock.calls)).not.toContain(key);
  });

  it('does not cache failures, nor keys with a rate limit or quota (those must reach Keyward every time)', async () => {
    const { auth, keyward } = setup();
    const [missing, limited, metered] = [generateKey('kw'), generateKey('kw'), generateKey('kw')];
    keyward.answers[limited] = validAnswer({ ratelimit: { limit: 100, remaining: 99, reset: 2_000_000_000 } });
    keyward.answers[metered] = validAnswer({ remaining: 41 });
    for (const key of [missing, limited, metered]) {
      await auth.authorize(bearer(key));
      await auth.authorize(bearer(key));
    }
    expect(keyward.seen).toHaveLength(6);
  });

  it('with the cache disabled, verifies every request (a revoked key is refused at once)', async () => {
    const { auth, keyward } = setup({ cache: false });
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer();
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true });
    keyward.answers[key] = validAnswer({ valid: false, code: 'REVOKED' });
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 401, problem: { code: 'KEY_REVOKED' } });
    expect(keyward.seen).toHaveLength(2);
  });

  it('drops a cached key once it has expired and asks Keyward again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_800_000_000_000);
    const { auth, keyward } = setup({ cache: { ttlMs: 3_600_000 } });
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ expires_at: new Date(1_800_000_060_000).toISOString() });
    await auth.authorize(bearer(key));
    await auth.authorize(bearer(key));
    expect(keyward.seen).toHaveLength(1);
    vi.setSystemTime(1_800_000_060_000);
    keyward.answers[key] = validAnswer({ valid: false, code: 'EXPIRED' });
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, problem: { code: 'KEY_EXPIRED' } });
    expect(keyward.seen).toHaveLength(2);
  });

  it('is bounded: the least recently used key is evicted', async () => {
    const { auth, keyward } = setup({ cache: { maxEntries: 2 } });
    const keys = [generateKey('kw'), generateKey('kw'), generateKey('kw')];
    for (const key of keys) {
      keyward.answers[key] = validAnswer();
      await auth.authorize(bearer(key));
    }
    await auth.authorize(bearer(keys[2] ?? ''));
    await auth.authorize(bearer(keys[0] ?? ''));
    expect(keyward.seen.map((s) => s.body?.key)).toEqual([...keys, keys[0]]);
  });
});

describe('SDK middleware core: authenticate (a global guard that spends nothing)', () => {
  it('verifies with cost and ratelimit_cost 0, refusing only what comes before scopes in Keyward order', async () => {
    const { auth, keyward } = setup({ cache: false });
    const [good, limited, spent, revoked] = [generateKey('kw'), generateKey('kw'), generateKey('kw'), generateKey('kw')];
    keyward.answers[good] = validAnswer({ key_id: 'good' });
    keyward.answers[limited] = validAnswer({
      key_id: 'limited',
      valid: false,
      code: 'RATE_LIMITED',
      ratelimit: { limit: 1, remaining: 0, reset: 4_000_000_000 },
    });
    keyward.answers[spent] = validAnswer({ key_id: 'spent', valid: false, code: 'USAGE_EXCEEDED', remaining: 0 });
    keyward.answers[revoked] = validAnswer({ valid: false, code: 'REVOKED' });
    expect(await auth.authenticate(bearer(good))).toMatchObject({ ok: true, identity: { keyId: 'good' } });
    // Over its rate limit or quota: whether the route's scopes refuse it first is for the spending verification.
    expect(await auth.authenticate(bearer(limited))).toMatchObject({
      ok: true,
      identity: { keyId: 'limited' },
      headers: { 'ratelimit-policy': '"default";q=1' },
    });
    expect(await auth.authenticate(bearer(spent))).toMatchObject({ ok: true, identity: { keyId: 'spent' } });
    expect(await auth.authenticate(bearer(revoked))).toMatchObject({ ok: false, status: 401, problem: { code: 'KEY_REVOKED' } });
    expect(await auth.authenticate({ path })).toMatchObject({ ok: false, status: 401, problem: { code: 'AUTH_REQUIRED' } });
    expect(keyward.seen.map((s) => s.body)).toEqual(
      [good, limited, spent, revoked].map((key) => ({
        key,
        cost: 0,
        ratelimit_cost: 0,
        tags: ['route:/v1/companies'],
        record_usage: false,
      })),
    );
  });
});

describe('SDK middleware core: the identity', () => {
  it('is frozen, deeply: a handler cannot change what the cache hands the next request of that key', async () => {
    const { auth, keyward } = setup();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ scopes: ['companies:read'], metadata: { plan: 'free', limits: { seats: 3 } } });
    const first = await auth.authorize(bearer(key));
    if (!first.ok || first.identity === null) throw new Error('expected an identity');
    const identity = first.identity;
    expect(() => (identity.scopes as string[]).push('admin:*')).toThrow(TypeError);
    expect(() => {
      (identity.metadata as Record<string, unknown>).plan = 'enterprise';
    }).toThrow(TypeError);
    expect(() => {
      (identity.metadata.limits as Record<string, number>).seats = 1000;
    }).toThrow(TypeError);
    expect(() => {
      (identity as { isAdmin: boolean }).isAdmin = true;
    }).toThrow(TypeError);
    const second = await auth.authorize(bearer(key), { scopes: ['admin:write'] });
    expect(second).toMatchObject({ ok: false, status: 403 });
    expect(await auth.authorize(bearer(key))).toMatchObject({
      ok: true,
      identity: { scopes: ['companies:read'], isAdmin: false, metadata: { plan: 'free', limits: { seats: 3 } } },
    });
    expect(keyward.seen).toHaveLength(1);
  });
});

describe('SDK middleware core: usage reports', () => {
  it("clamps a response time to Keyward's limit (24 h): one long stream must not void the whole batch", async () => {
    const { auth, keyward } = setup();
    const seen = { endpoint: '/v1/stream', method: 'GET', statusCode: 200 };
    auth.record({ keyId: 'k', code: 'VALID' }, { ...seen, responseTimeMs: 25 * 3_600_000 });
    auth.record({ keyId: 'k', code: 'VALID' }, { ...seen, responseTimeMs: 12.4 });
    await auth.flush();
    expect(keyward.usage.flat().map((e) => e.response_time_ms)).toEqual([86_400_000, 12]);
  });

  it('sends when each request started, in ISO 8601 (kept as a number until the batch goes out)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-03-01T10:00:00.500Z'));
    const { auth, keyward } = setup();
    const seen = { endpoint: '/v1/companies', method: 'GET', statusCode: 200 };
    auth.record({ keyId: 'k', code: 'VALID' }, { ...seen, responseTimeMs: 12.4 });
    auth.record({ keyId: 'k', code: 'VALID' }, { ...seen, responseTimeMs: 12.4 });
    auth.record({ keyId: 'k', code: 'VALID' }, { ...seen, responseTimeMs: 1_000 });
    await auth.flush();
    expect(keyward.usage.flat().map((e) => e.occurred_at)).toEqual([
      '2026-03-01T10:00:00.487Z',
      '2026-03-01T10:00:00.487Z',
      '2026-03-01T09:59:59.500Z',
    ]);
    // A time that is none (a response time of NaN) is left to Keyward; it never stalls the batch.
    auth.record({ keyId: 'k', code: 'VALID' }, { ...seen, responseTimeMs: Number.NaN });
    await auth.flush();
    expect(keyward.usage.flat().at(-1)).toMatchObject({ occurred_at: null });
  });

  it('tags each row with its own route and rule tags: lists composed once are never mixed up', async () => {
    const { auth, keyward } = setup();
    const row = (route: string | undefined, tags?: string[]) =>
      auth.record(
        { keyId: 'k', code: 'VALID' },
        { endpoint: '/v1/x/1?q=2', method: 'GET', statusCode: 200, responseTimeMs: 1, route, tags },
      );
    row('/v1/a', ['team:crm']);
    row('/v1/b', ['team:crm']);
    row('/v1/a', ['team:ops']);
    row('/v1/a');
    row('/v1/a', ['a,b']);
    row('/v1/a', ['a', 'b']);
    row(undefined);
    row('/v1/a', ['team:crm']);
    await auth.flush();
    expect(keyward.usage.flat().map((e) => e.tags)).toEqual([
      ['route:/v1/a', 'team:crm'],
      ['route:/v1/b', 'team:crm'],
      ['route:/v1/a', 'team:ops'],
      ['route:/v1/a'],
      ['route:/v1/a', 'a,b'],
      ['route:/v1/a', 'a', 'b'],
      ['route:/v1/x/1'],
      ['route:/v1/a', 'team:crm'],
    ]);
  });
});

describe('SDK middleware core: permit (a route guard behind a global one)', () => {
  it('re-checks an already verified identity against a route rule without asking Keyward', () => {
    const { auth, keyward } = setup({ requireApiKey: false });
    const identity = { keyId: 'k', userId: null, scopes: ['companies:read'], isAdmin: false, metadata: {} };
    expect(auth.permit(identity, { scopes: ['companies:read'] }, path)).toMatchObject({ ok: true, identity });
    expect(auth.permit(identity, { scopes: ['billing:read'] }, path)).toMatchObject({ ok: false, status: 403 });
    expect(auth.permit(null, {}, path)).toMatchObject({ ok: true, identity: null });
    expect(auth.permit(null, { scopes: ['companies:read'] }, path)).toMatchObject({ ok: false, status: 401 });
    expect(keyward.seen).toHaveLength(0);
  });

  it('needs a client or a base URL and key', () => {
    expect(() => createKeywardAuth({})).toThrow(TypeError);
  });
});
