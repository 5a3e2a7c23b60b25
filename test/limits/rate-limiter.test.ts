import { afterEach, beforeEach, describe, expect, inject, it } from 'vitest';
import { createMetrics, type Metrics } from '../../packages/server/src/metrics.js';
import {
  createMemoryRateLimiter,
  createRedisRateLimiter,
  type RateLimiter,
  rateRuleFor,
} from '../../packages/server/src/store/rate-limiter.js';
import { closeRedis, openRedis, type Redis } from '../../packages/server/src/store/redis.js';
import { closedPort, counter, deleteKeys, randomPrefix, silentServer, sleep } from './redis-helpers.js';

interface Backend {
  limiter: RateLimiter;
  /** A second limiter sharing the first one's counters (another instance), where the backend allows it. */
  other: RateLimiter | null;
  metrics: Metrics;
  /** Moves time past the end of the current window of `id` (fake clock, or a real wait of at most the window). */
  passWindow(id: string, windowSeconds: number): Promise<void>;
  close(): Promise<void>;
}

const redisUrl = inject('redisUrl');

const backends: Array<[string, (() => Promise<Backend>) | null]> = [
  [
    'memory',
    async () => {
      let clock = Date.UTC(2030, 0, 1, 12, 0, 0, 250);
      const metrics = createMetrics({ defaultMetrics: false });
      const limiter = createMemoryRateLimiter({ now: () => clock, metrics });
      return {
        limiter,
        other: null,
        metrics,
        passWindow: async (_id, windowSeconds) => {
          clock += windowSeconds * 1000;
        },
        close: () => limiter.close(),
      };
    },
  ],
  [
    'redis',
    redisUrl === null
      ? null
      : async () => {
          const prefix = randomPrefix();
          const metrics = createMetrics({ defaultMetrics: false });
          const a = openRedis(redisUrl);
          const b = openRedis(redisUrl);
          const limiter = createRedisRateLimiter({ redis: a, prefix, failMode: 'closed', metrics });
          const other = createRedisRateLimiter({ redis: b, prefix, failMode: 'closed' });
          return {
            limiter,
            other,
            metrics,
            // Real time: wait exactly until Redis has expired the window's counter.
            passWindow: async (id, windowSeconds) => {
              const ttl = await a.pttl(`${prefix}${id}:${windowSeconds}`);
              await sleep(Math.max(0, ttl) + 20);
            },
            close: async () => {
              await deleteKeys(a, prefix);
              await closeRedis(a);
              await closeRedis(b);
            },
          };
        },
  ],
];

for (const [name, make] of backends) {
  const title = make ? `rate limiter (${name})` : `rate limiter (${name}): skipped because REDIS_URL is not set`;
  describe.skipIf(make === null)(title, () => {
    let backend: Backend;
    beforeEach(async () => {
      if (make) backend = await make();
    });
    afterEach(async () => backend?.close());

    it('allows `limit` units in a window, then denies with Retry-After; denied requests consume nothing', async () => {
      const rule = { limit: 3, windowSeconds: 60 };
      const before = Math.floor(Date.now() / 1000);
      const decisions = [];
      for (let i = 0; i < 5; i++) decisions.push(await backend.limiter.consume('k1', rule));
      expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false, false]);
      expect(decisions.map((d) => d.remaining)).toEqual([2, 1, 0, 0, 0]);
      for (const d of decisions) expect(d.limit).toBe(3);
      const denied = decisions[4];
      expect(denied?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(denied?.retryAfterSeconds).toBeLessThanOrEqual(60);
      expect(decisions[0]?.retryAfterSeconds).toBe(0);
      // One window: every decision names the same reset instant (unix seconds), within the window.
      expect(new Set(decisions.map((d) => d.reset)).size).toBe(1);
      if (name === 'redis') {
        expect(denied?.reset).toBeGreaterThan(before);
        expect(denied?.reset).toBeLessThanOrEqual(before + 62);
      }
    });

    it('gives the full limit again once the window has passed', async () => {
      const rule = { limit: 2, windowSeconds: 1 };
      expect((await backend.limiter.consume('k2', rule)).allowed).toBe(true);
      expect((await backend.limiter.consume('k2', rule)).allowed).toBe(true);
      expect((await backend.limiter.consume('k2', rule)).allowed).toBe(false);
      await backend.passWindow('k2', 1);
      const again = await backend.limiter.consume('k2', rule);
      expect(again).toMatchObject({ allowed: true, remaining: 1 });
    });

    it('spends `cost` units at once and refuses a cost that does not fit, leaving the count as it was', async () => {
      const rule = { limit: 5, windowSeconds: 60 };
      expect(await backend.limiter.consume('k3', rule, 3)).toMatchObject({ allowed: true, remaining: 2 });
      expect(await backend.limiter.consume('k3', rule, 3)).toMatchObject({ allowed: false, remaining: 2 });
      expect(await backend.limiter.consume('k3', rule, 2)).toMatchObject({ allowed: true, remaining: 0 });
    });

    it('reads without consuming when the cost is 0', async () => {
      const rule = { limit: 2, windowSeconds: 60 };
      expect(await backend.limiter.consume('k4', rule, 0)).toMatchObject({ allowed: true, remaining: 2 });
      await backend.limiter.consume('k4', rule);
      expect(await backend.limiter.consume('k4', rule, 0)).toMatchObject({ allowed: true, remaining: 1 });
      expect(await backend.limiter.consume('k4', rule, 0)).toMatchObject({ allowed: true, remaining: 1 });
    });

    it('counts each id and each window length separately', async () => {
      const rule = { limit: 1, windowSeconds: 60 };
      expect((await backend.limiter.consume('a', rule)).allowed).toBe(true);
      expect((await backend.limiter.consume('b', rule)).allowed).toBe(true);
      expect((await backend.limiter.consume('a', rule)).allowed).toBe(false);
      expect((await backend.limiter.consume('a', { limit: 1, windowSeconds: 30 })).allowed).toBe(true);
      // Back to the first length within its window: its count is still there.
      expect((await backend.limiter.consume('a', rule)).allowed).toBe(false);
      expect((await backend.limiter.consume('a', { limit: 2, windowSeconds: 30 })).remaining).toBe(0);
    });

    it('times the window from the caller’s clock reading when it passes one', async () => {
      const at = Date.now() + 123_456;
      const decision = await backend.limiter.consume('t', { limit: 5, windowSeconds: 60 }, 1, at);
      expect(decision).toMatchObject({ allowed: true, remaining: 4, reset: Math.ceil((at + 60_000) / 1000) });
    });

    it('is exact under concurrency: 50 simultaneous requests against a limit of 10 give exactly 10', async () => {
      const rule = { limit: 10, windowSeconds: 60 };
      const limiters = backend.other ? [backend.limiter, backend.other] : [backend.limiter];
      const decisions = await Promise.all(
        Array.from({ length: 50 }, (_, i) => (limiters[i % limiters.length] as RateLimiter).consume('hot', rule)),
      );
      expect(decisions.filter((d) => d.allowed)).toHaveLength(10);
    });

    it('counts its decisions in metrics', async () => {
      const rule = { limit: 1, windowSeconds: 60 };
      await backend.limiter.consume('m', rule);
      await backend.limiter.consume('m', rule);
      await backend.limiter.consume('m', rule);
      expect(await counter(backend.metrics, 'keyward_rate_limit_decisions_total', { backend: name, result: 'allowed' })).toBe(1);
      expect(await counter(backend.metrics, 'keyward_rate_limit_decisions_total', { backend: name, result: 'denied' })).toBe(2);
    });
  });
}

describe('rate limiter (redis) when Redis cannot answer', () => {
  const opened: Redis[] = [];
  afterEach(async () => {
    for (const r of opened.splice(0)) await closeRedis(r);
  });

  async function unreachable(failMode: 'open' | 'closed' | 'local') {
    const redis = openRedis(`redis://127.0.0.1:${await closedPort()}`, { commandTimeoutMs: 200 });
    opened.push(redis);
    const metrics = createMetrics({ defaultMetrics: false });
    redis.on('error', () => metrics.redisErrors.inc({ operation: 'connection' }));
    return { limiter: createRedisRateLimiter({ redis, prefix: randomPrefix(), failMode, metrics }), metrics };
  }

  it('fails open when configured to: requests are allowed, and the failure is counted', async () => {
    const { limiter, metrics } = await unreachable('open');
    const rule = { limit: 1, windowSeconds: 60 };
    for (let i = 0; i < 3; i++) expect((await limiter.consume('k', rule)).allowed).toBe(true);
    expect(await counter(metrics, 'keyward_rate_limit_decisions_total', { backend: 'redis', result: 'fail_open' })).toBe(3);
    expect(await counter(metrics, 'keyward_redis_errors_total', { operation: 'rate_limit' })).toBe(3);
  });

  it('decides on this instance when configured to (`local`): counted in memory until Redis answers again', async () => {
    const { limiter, metrics } = await unreachable('local');
    const rule = { limit: 2, windowSeconds: 60 };
    const allowed = [];
    for (let i = 0; i < 3; i++) allowed.push((await limiter.consume('k', rule)).allowed);
    expect(allowed).toEqual([true, true, false]);
    expect((await limiter.consume('other', rule)).allowed).toBe(true);
    expect(await counter(metrics, 'keyward_redis_errors_total', { operation: 'rate_limit' })).toBe(4);
  });

  it('fails closed when configured to: requests are denied with Retry-After, and the failure is counted', async () => {
    const { limiter, metrics } = await unreachable('closed');
    const decision = await limiter.consume('k', { limit: 100, windowSeconds: 60 });
    expect(decision).toMatchObject({ allowed: false, remaining: 0, limit: 100 });
    expect(decision.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(await counter(metrics, 'keyward_rate_limit_decisions_total', { backend: 'redis', result: 'fail_closed' })).toBe(1);
  });

  it('does not hang on a Redis that accepts connections and never answers (command timeout)', async () => {
    const server = await silentServer();
    try {
      const redis = openRedis(`redis://127.0.0.1:${server.port}`, { commandTimeoutMs: 100 });
      opened.push(redis);
      const metrics = createMetrics({ defaultMetrics: false });
      const limiter = createRedisRateLimiter({ redis, prefix: randomPrefix(), failMode: 'open', metrics });
      expect((await limiter.consume('k', { limit: 1, windowSeconds: 60 })).allowed).toBe(true);
      expect(await counter(metrics, 'keyward_rate_limit_decisions_total', { backend: 'redis', result: 'fail_open' })).toBe(1);
    } finally {
      for (const r of opened.splice(0)) r.disconnect();
      await server.close();
    }
  });
});

describe('rate limiter (memory) on the verification path', () => {
  it('decides without a promise, so that a cached verification stays synchronous', () => {
    const limiter = createMemoryRateLimiter({ now: () => 0 });
    const rule = { limit: 1, windowSeconds: 60 };
    expect(limiter.consume('k', rule)).toMatchObject({ allowed: true, remaining: 0 });
    expect(limiter.consume('k', rule)).toMatchObject({ allowed: false, retryAfterSeconds: 60 });
  });

  it('keeps the counts of each window length only while their window lasts', async () => {
    let clock = 0;
    const limiter = createMemoryRateLimiter({ now: () => clock });
    expect(await limiter.consume('k', { limit: 1, windowSeconds: 10 })).toMatchObject({ allowed: true });
    expect(await limiter.consume('k', { limit: 1, windowSeconds: 60 })).toMatchObject({ allowed: true });
    clock = 10_000; // the 10 s window has ended, the 60 s one has not
    expect(await limiter.consume('k', { limit: 1, windowSeconds: 10 })).toMatchObject({ allowed: true, reset: 20 });
    expect(await limiter.consume('k', { limit: 1, windowSeconds: 60 })).toMatchObject({ allowed: false, reset: 60 });
    clock = 60_000;
    expect(await limiter.consume('k', { limit: 1, windowSeconds: 60 })).toMatchObject({ allowed: true, reset: 120 });
    expect(await limiter.consume('k', { limit: 1, windowSeconds: 10 })).toMatchObject({ allowed: true, reset: 70 });
  });
});

describe('rate rules', () => {
  it("uses the key's own limit, else its tier's default, else none", () => {
    const own = { limit: 5, windowSeconds: 10 };
    const tier = { rateLimit: { limit: 60, windowSeconds: 60 } };
    expect(rateRuleFor({ rateLimit: own }, tier)).toEqual(own);
    expect(rateRuleFor({ rateLimit: null }, tier)).toEqual(tier.rateLimit);
    expect(rateRuleFor({ rateLimit: null }, { rateLimit: null })).toBeNull();
    expect(rateRuleFor({ rateLimit: null }, undefined)).toBeNull();
  });

  it('refuses a negative or fractional cost as a programming error', async () => {
    const limiter = createMemoryRateLimiter();
    await expect(limiter.consume('k', { limit: 5, windowSeconds: 1 }, -1)).rejects.toThrow(RangeError);
    await expect(limiter.consume('k', { limit: 5, windowSeconds: 1 }, 1.5)).rejects.toThrow(RangeError);
  });
});
