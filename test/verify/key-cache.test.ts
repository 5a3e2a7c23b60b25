import { describe, expect, it } from 'vitest';
import type { ApiKey } from '../../packages/server/src/domain.js';
import { createKeyCache, type KeyCacheOptions } from '../../packages/server/src/verification/key-cache.js';
import { manualClock } from './helpers.js';

// Unit tests of the key cache with a manual clock: no waiting, no timing assertions.

const rec = (id: string) => ({ id }) as ApiKey;
const hash = (n: number) => n.toString(16).padStart(64, '0');
const unreachable = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

function setup(options: Partial<KeyCacheOptions> = {}) {
  const clock = manualClock(1_000_000);
  const cache = createKeyCache({ maxEntries: 100, ttlMs: 1_000, negativeTtlMs: 100, staleTtlMs: 10_000, now: clock.now, ...options });
  let loads = 0;
  const loader = (value: ApiKey | undefined) => async () => {
    loads++;
    return value;
  };
  return { clock, cache, loader, loads: () => loads };
}

describe('key cache', () => {
  it('serves a record while fresh, then loads it again', async () => {
    const { clock, cache, loader, loads } = setup();
    expect(await cache.get(hash(1), loader(rec('a')))).toEqual(rec('a'));
    clock.advance(999);
    expect(await cache.get(hash(1), loader(rec('b')))).toEqual(rec('a'));
    expect(loads()).toBe(1);
    clock.advance(1);
    expect(await cache.get(hash(1), loader(rec('b')))).toEqual(rec('b'));
    expect(loads()).toBe(2);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('remembers a miss for the (shorter) negative freshness', async () => {
    const { clock, cache, loader, loads } = setup();
    expect(cache.fresh(hash(1))).toBeUndefined();
    expect(await cache.get(hash(1), loader(undefined))).toBeUndefined();
    expect(cache.fresh(hash(1))).toBeNull();
    clock.advance(99);
    expect(await cache.get(hash(1), loader(rec('a')))).toBeUndefined();
    clock.advance(1);
    expect(await cache.get(hash(1), loader(rec('a')))).toEqual(rec('a'));
    expect(loads()).toBe(2);
  });

  it('says which hashes it holds a record for: past freshness too, never for a remembered miss or once invalidated', async () => {
    const { clock, cache, loader } = setup();
    await cache.get(hash(1), loader(rec('a')));
    await cache.get(hash(2), loader(undefined));
    clock.advance(5_000);
    expect(cache.fresh(hash(1))).toBeUndefined();
    expect([cache.holds(hash(1)), cache.holds(hash(2)), cache.holds(hash(3))]).toEqual([true, false, false]);
    cache.invalidate(hash(1));
    expect(cache.holds(hash(1))).toBe(false);
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 2 });
  });

  it('holds at most maxEntries records, dropping the least recently used', async () => {
    const { cache, loader, loads } = setup({ maxEntries: 3 });
    for (const n of [1, 2, 3]) await cache.get(hash(n), loader(rec(String(n))));
    await cache.get(hash(1), loader(rec('x'))); // 1 is now the most recently used
    await cache.get(hash(4), loader(rec('4'))); // evicts 2
    expect(cache.stats().size).toBe(3);
    expect(loads()).toBe(4);
    await cache.get(hash(1), loader(rec('x')));
    await cache.get(hash(3), loader(rec('x')));
    expect(loads()).toBe(4);
    expect(await cache.get(hash(2), loader(rec('2 again')))).toEqual(rec('2 again'));
    expect(loads()).toBe(5);
  });

  it('with maxEntries 0 caches nothing', async () => {
    const { cache, loader, loads } = setup({ maxEntries: 0 });
    await cache.get(hash(1), loader(rec('a')));
    await cache.get(hash(1), loader(rec('a')));
    expect(loads()).toBe(2);
    expect(cache.stats().size).toBe(0);
  });

  it('forgets an invalidated record at once', async () => {
    const { cache, loader } = setup();
    await cache.get(hash(1), loader(rec('old')));
    cache.invalidate(hash(1));
    expect(await cache.get(hash(1), loader(rec('new')))).toEqual(rec('new'));
  });

  it('shares one load among concurrent misses, and never keeps a load that an invalidation overtook', async () => {
    const { cache } = setup();
    let release: (k: ApiKey) => void = () => {};
    let loads = 0;
    const slow = () => {
      loads++;
      return new Promise<ApiKey | undefined>((resolve) => {
        release = resolve;
      });
    };
    const a = cache.get(hash(1), slow);
    const b = cache.get(hash(1), slow);
    expect(loads).toBe(1);
    // The change commits and its message arrives while the (pre-change) read is still in flight.
    cache.invalidate(hash(1));
    release(rec('read before the change'));
    expect(await a).toEqual(rec('read before the change'));
    expect(await b).toEqual(rec('read before the change'));
    expect(await cache.get(hash(1), async () => rec('after'))).toEqual(rec('after'));
  });

  it('trusts nothing while not live, and nothing cached before it went live again', async () => {
    const { cache, loader, loads } = setup();
    await cache.get(hash(1), loader(rec('a')));
    cache.setLive(false);
    await cache.get(hash(1), loader(rec('b')));
    await cache.get(hash(1), loader(rec('c')));
    expect(loads()).toBe(3);
    cache.setLive(true);
    // Loaded while messages could be missed: not fresh in the new epoch.
    expect(await cache.get(hash(1), loader(rec('d')))).toEqual(rec('d'));
    expect(await cache.get(hash(1), loader(rec('e')))).toEqual(rec('d'));
    expect(loads()).toBe(4);
  });

  it('answers from a stale record when the database is unreachable, within the stale window only', async () => {
    const { clock, cache, loader } = setup();
    await cache.get(hash(1), loader(rec('a')));
    await cache.get(hash(2), loader(undefined));
    const failing = async (): Promise<ApiKey | undefined> => {
      throw unreachable();
    };
    clock.advance(5_000);
    expect(await cache.get(hash(1), failing)).toEqual(rec('a'));
    expect(await cache.get(hash(2), failing)).toBeUndefined();
    expect(cache.stats().stale).toBe(2);
    await expect(cache.get(hash(3), failing)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    clock.advance(6_000); // 11 s after the load: past 1 s freshness + 10 s stale window
    await expect(cache.get(hash(1), failing)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('after finding the database unreachable, answers stale records without asking again for a second', async () => {
    const { clock, cache, loader, loads } = setup();
    await cache.get(hash(1), loader(rec('a')));
    await cache.get(hash(2), loader(rec('b')));
    let attempts = 0;
    const failing = async (): Promise<ApiKey | undefined> => {
      attempts++;
      throw unreachable();
    };
    clock.advance(5_000);
    expect(await cache.get(hash(1), failing)).toEqual(rec('a'));
    expect(await cache.get(hash(2), failing)).toEqual(rec('b'));
    expect(await cache.get(hash(1), failing)).toEqual(rec('a'));
    expect(attempts).toBe(1);
    // A key with nothing stale still asks (and fails).
    await expect(cache.get(hash(3), failing)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(attempts).toBe(2);
    clock.advance(1_000);
    expect(await cache.get(hash(1), failing)).toEqual(rec('a'));
    expect(attempts).toBe(3);
    // Back: the next load succeeds and the pause ends.
    clock.advance(1_000);
    expect(await cache.get(hash(2), loader(rec('b2')))).toEqual(rec('b2'));
    expect(loads()).toBe(3);
    clock.advance(1_000);
    expect(await cache.get(hash(1), loader(rec('a2')))).toEqual(rec('a2'));
  });

  it('does not hide a failure that is not an outage, nor answer from an invalidated record', async () => {
    const { clock, cache, loader } = setup();
    await cache.get(hash(1), loader(rec('a')));
    clock.advance(2_000);
    await expect(
      cache.get(hash(1), async () => {
        throw new Error('syntax error at or near "selec"');
      }),
    ).rejects.toThrow('syntax error');
    cache.invalidate(hash(1));
    await expect(
      cache.get(hash(1), async () => {
        throw unreachable();
      }),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
