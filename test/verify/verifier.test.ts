import { generateKey, hashApiKey } from '@keyward/sdk';
import { describe, expect, it } from 'vitest';
import type { Caller } from '../../packages/server/src/callers/principal.js';
import type { ApiKey, VerifyGate } from '../../packages/server/src/domain.js';
import type { Executor } from '../../packages/server/src/store/schema.js';
import { createKeyCache } from '../../packages/server/src/verification/key-cache.js';
import { createVerifier } from '../../packages/server/src/verification/verifier.js';

// Unit tests of the verifier with a counting loader in place of the database.

function record(key: string, changes: Partial<ApiKey> = {}): ApiKey {
  return {
    id: 'k1',
    lineageId: 'k1',
    name: 'k',
    description: null,
    keyHash: hashApiKey(key),
    keyPrefix: key.slice(0, 11),
    hashScheme: 'sha256',
    userId: null,
    isAdmin: false,
    scopes: ['inventory:read'],
    metadata: {},
    isActive: true,
    createdAt: 0,
    createdBy: 'cli',
    updatedAt: 0,
    lastUsedAt: null,
    expiresAt: null,
    revokedAt: null,
    rolledFrom: null,
    rolledAt: null,
    budgetKeyId: null,
    rateLimit: null,
    quota: null,
    ...changes,
  };
}

const admin: Caller = { principal: { kind: 'system', name: 'test' }, ip: null };
const noDb = {} as Executor;

function counting(stored: ApiKey[]) {
  const calls = { load: 0, cache: 0 };
  const cache = createKeyCache({ maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 60_000, staleTtlMs: 0 });
  const countedCache = {
    ...cache,
    fresh: (hash: string) => {
      calls.cache++;
      return cache.fresh(hash);
    },
    get: (hash: string, load: () => Promise<ApiKey | undefined>) => {
      calls.cache++;
      return cache.get(hash, load);
    },
  };
  const load = async (_db: Executor, _key: string, presented: { hash: string }) => {
    calls.load++;
    return stored.find((k) => k.keyHash === presented.hash);
  };
  return { calls, cache: countedCache, load };
}

describe('verifier', () => {
  it('rejects a malformed key or a bad checksum before any cache or database work', async () => {
    const { calls, cache, load } = counting([]);
    const verifier = createVerifier({ db: noDb, cache, load });
    const good = generateKey('kw');
    const flipped = `${good.slice(0, 10)}${good[10] === 'a' ? 'b' : 'a'}${good.slice(11)}`;
    for (const key of ['', 'short', 'x'.repeat(257), 'tab\tinside-this-key-xx', flipped, `${good.slice(0, -6)}000000`]) {
      expect((await verifier.check(key)).code).toBe('INVALID_FORMAT');
    }
    expect(calls).toEqual({ load: 0, cache: 0 });
    expect((await verifier.check(good)).code).toBe('NOT_FOUND');
    expect(calls).toEqual({ load: 1, cache: 2 }); // a look for a fresh entry, then the load through the cache
  });

  it('answers a cached key without loading it again, and remembers a miss', async () => {
    const key = generateKey('kw');
    const unknown = generateKey('kw');
    const { calls, cache, load } = counting([record(key)]);
    const verifier = createVerifier({ db: noDb, cache, load });
    for (let i = 0; i < 5; i++) {
      expect((await verifier.check(key)).code).toBe('VALID');
      expect((await verifier.check(unknown)).code).toBe('NOT_FOUND');
    }
    expect(calls.load).toBe(2);
  });

  it('notes last use for a valid key only, in memory', async () => {
    const key = generateKey('kw');
    const disabled = generateKey('kw');
    const touched: Array<[string, number]> = [];
    const { cache, load } = counting([record(key), record(disabled, { id: 'k2', isActive: false })]);
    const verifier = createVerifier({ db: noDb, cache, load, lastUsed: { touch: (id, at) => touched.push([id, at]) }, now: () => 42 });
    await verifier.check(key);
    await verifier.check(disabled);
    await verifier.check(generateKey('kw'));
    expect(touched).toEqual([['k1', 42]]);
  });

  it('runs the gates in order after scopes; the first refusal decides, and reports are merged', async () => {
    const key = generateKey('kw');
    const { cache, load } = counting([record(key)]);
    const seen: string[] = [];
    const rate: VerifyGate = {
      check: (_k, { cost }) => {
        seen.push(`rate:${cost}`);
        return { ok: true, ratelimit: { limit: 10, remaining: 9, reset: 100 } };
      },
    };
    let quotaLeft = 1;
    const quota: VerifyGate = {
      check: async () => {
        seen.push('quota');
        if (quotaLeft === 0) return { ok: false, code: 'USAGE_EXCEEDED', remaining: 0 };
        quotaLeft--;
        return { ok: true, remaining: quotaLeft };
      },
    };
    const verifier = createVerifier({ db: noDb, cache, load, gates: [rate, quota] });
    const first = await verifier.verify(admin, { key, cost: 3 });
    expect(first).toMatchObject({ ok: true, value: { code: 'VALID', ratelimit: { limit: 10, remaining: 9, reset: 100 }, remaining: 0 } });
    const second = await verifier.verify(admin, { key });
    expect(second).toMatchObject({ ok: true, value: { code: 'USAGE_EXCEEDED', remaining: 0, ratelimit: { remaining: 9 } } });
    // Scopes are checked before the gates, which then do not run.
    const scoped = await verifier.verify(admin, { key, scopes: ['billing:read'] });
    expect(scoped).toMatchObject({ ok: true, value: { code: 'INSUFFICIENT_SCOPES' } });
    expect(seen).toEqual(['rate:3', 'quota', 'rate:1', 'quota']);
  });

  it('refuses callers without admin or keyward:verify, and bad costs, before looking at the key', async () => {
    const { calls, cache, load } = counting([]);
    const verifier = createVerifier({ db: noDb, cache, load });
    const plain: Caller = { principal: { kind: 'key', key: record(generateKey('kw')) }, ip: null };
    expect(await verifier.verify(plain, { key: generateKey('kw') })).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    const user: Caller = {
      principal: { kind: 'user', user: { id: 'u', externalId: 'x', email: null, tier: 'free', createdAt: 0, updatedAt: 0 } },
      ip: null,
    };
    expect(await verifier.verify(user, { key: generateKey('kw') })).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(await verifier.verify(admin, { key: generateKey('kw'), cost: -1 })).toMatchObject({ ok: false, code: 'INVALID_COST' });
    expect(calls.load).toBe(0);
  });
});
