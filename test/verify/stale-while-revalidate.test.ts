import { describe, expect, it } from 'vitest';
import type { ApiKey } from '../../packages/server/src/domain.js';
import { DatabaseTimeoutError } from '../../packages/server/src/store/unavailable.js';
import { createKeyCache } from '../../packages/server/src/verification/key-cache.js';
import { manualClock } from './helpers.js';

// A database that does not answer (rather than refusing): a record within the stale window answers after
// `staleWaitMs`, not after the database's timeout, and the load left running refreshes it.

const rec = (id: string) => ({ id }) as ApiKey;
const HASH = 'a'.repeat(64);

/** A load the test settles by hand, counting how often it was started. */
function pendingLoads() {
  let resolve: (key: ApiKey | undefined) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  let started = 0;
  const load = () => {
    started++;
    return new Promise<ApiKey | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
  };
  return { load, resolve: (key: ApiKey | undefined) => resolve(key), reject: (error: unknown) => reject(error), started: () => started };
}

function setup() {
  const clock = manualClock(1_000_000);
  const cache = createKeyCache({ maxEntries: 100, ttlMs: 1_000, negativeTtlMs: 100, staleTtlMs: 10_000, staleWaitMs: 30, now: clock.now });
  return { clock, cache };
}

async function elapsed<T>(work: Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await work;
  return [value, performance.now() - started];
}

describe('key cache with a silent database', () => {
  it('answers a stale record after staleWaitMs, then refreshes it when the load answers', async () => {
    const { clock, cache } = setup();
    await cache.get(HASH, async () => rec('a'));
    clock.advance(5_000); // past freshness, within the stale window
    const slow = pendingLoads();
    const [first, waited] = await elapsed(cache.get(HASH, slow.load));
    expect(first).toEqual(rec('a'));
    expect(waited).toBeGreaterThanOrEqual(25);
    expect(waited).toBeLessThan(1_000);
    // The load is still running: a second look-up joins it and, already overdue, answers at once.
    const [second, again] = await elapsed(cache.get(HASH, slow.load));
    expect(second).toEqual(rec('a'));
    expect(again).toBeLessThan(25);
    expect(slow.started()).toBe(1);
    expect(cache.stats().stale).toBe(2);
    // The database answers at last: the record is refreshed.
    slow.resolve(rec('a2'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(cache.fresh(HASH)).toEqual(rec('a2'));
  });

  it('once the load times out, answers stale records without asking again for a second', async () => {
    const { clock, cache } = setup();
    await cache.get(HASH, async () => rec('a'));
    clock.advance(5_000);
    const slow = pendingLoads();
    expect(await cache.get(HASH, slow.load)).toEqual(rec('a'));
    slow.reject(new DatabaseTimeoutError('a database query', 2_000));
    await new Promise((resolve) => setImmediate(resolve));
    const next = pendingLoads();
    const [answer, waited] = await elapsed(cache.get(HASH, next.load));
    expect(answer).toEqual(rec('a'));
    expect(waited).toBeLessThan(25);
    expect(next.started()).toBe(0);
  });

  it('waits for the database as long as it takes when nothing stale may answer', async () => {
    const { clock, cache } = setup();
    await cache.get(HASH, async () => rec('a'));
    clock.advance(5_000);
    const slow = pendingLoads();
    const answer = cache.get(HASH, slow.load);
    // Invalidated while waiting: the stale record must not answer; the load decides.
    cache.invalidate(HASH);
    let settled = false;
    void answer.then(() => {
      settled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(settled).toBe(false);
    slow.resolve(rec('revoked'));
    expect(await answer).toEqual(rec('revoked'));
    // A key never cached waits for its load too, and a timeout is the caller's to answer (503).
    const unknown = pendingLoads();
    const missing = cache.get('b'.repeat(64), unknown.load);
    unknown.reject(new DatabaseTimeoutError('a database query', 2_000));
    await expect(missing).rejects.toBeInstanceOf(DatabaseTimeoutError);
  });

  it('answers from the database, not the stale record, when it answers within staleWaitMs', async () => {
    const { clock, cache } = setup();
    await cache.get(HASH, async () => rec('a'));
    clock.advance(5_000);
    expect(await cache.get(HASH, async () => rec('a2'))).toEqual(rec('a2'));
    expect(cache.stats().stale).toBe(0);
  });
});
