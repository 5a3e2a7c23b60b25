import type { Redis, Result } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { TierSetting } from '../config.js';
import type { ApiKey, MaybePromise } from '../domain.js';
import type { Metrics } from '../metrics.js';
import { redisIsDown } from './redis.js';

/** At most `limit` units per `windowSeconds`. */
export interface RateRule {
  limit: number;
  windowSeconds: number;
}

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** Units left in the current window after this decision. */
  remaining: number;
  /** When the current window ends, in unix seconds (the IETF `RateLimit` reset, as an instant). */
  reset: number;
  /** Seconds to wait before trying again when denied (`Retry-After`); 0 when allowed. */
  retryAfterSeconds: number;
}

/**
 * Fixed-window counters. A window starts at the first unit consumed and lasts `windowSeconds`; at its end
 * the whole `limit` is available again, which is exactly what the IETF `RateLimit` header's `reset` says.
 * (A sliding log or GCRA smooths bursts at window edges but makes "remaining" and "reset" approximations;
 * fixed windows keep them exact and cost one counter per client.) Denied requests consume nothing, so a
 * client that waits until `reset` gets its full limit. `cost` 0 reads the state without consuming.
 */
export interface RateLimiter {
  /**
   * Decides, and counts when allowed. `now` is the caller's clock reading, when it has one (the limiter's
   * own clock otherwise). Synchronous when nothing needs waiting for (the memory limiter); `await` works on
   * either. An invalid `cost` is a rejected promise.
   */
  consume(id: string, rule: RateRule, cost?: number, now?: number): MaybePromise<RateDecision>;
  close(): Promise<void>;
}

function decision(rule: RateRule, allowed: boolean, used: number, resetAtMs: number, now: number): RateDecision {
  const msLeft = Math.max(0, resetAtMs - now);
  return {
    allowed,
    limit: rule.limit,
    remaining: Math.max(0, rule.limit - used),
    reset: Math.ceil(resetAtMs / 1000),
    retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil(msLeft / 1000)),
  };
}

/** The rule that applies to a key: its own, else its owner's tier default, else none (unlimited). */
export function rateRuleFor(key: Pick<ApiKey, 'rateLimit'>, tier: Pick<TierSetting, 'rateLimit'> | undefined): RateRule | null {
  return key.rateLimit ?? tier?.rateLimit ?? null;
}

// A bad cost is a bug in the caller (requests are validated at the edge), not a decision to make.
const isCost = (cost: number): boolean => Number.isSafeInteger(cost) && cost >= 0;
const costError = () => new RangeError('rate-limit cost must be a non-negative integer');

interface Window {
  windowSeconds: number;
  used: number;
  resetAt: number;
}

/** One process only: counters live in this instance's memory (bounded; the least recently used go first). */
export function createMemoryRateLimiter(
  options: { now?: () => number; maxEntries?: number; metrics?: Metrics | undefined; countDecisions?: boolean } = {},
): RateLimiter {
  const clock = options.now ?? Date.now;
  const decisions = options.countDecisions === false ? undefined : options.metrics;
  const counted = {
    allowed: decisions?.hot.rateLimitDecisions('memory', 'allowed'),
    denied: decisions?.hot.rateLimitDecisions('memory', 'denied'),
  };
  // By id, a window per window length (as in Redis, where the length is part of the counter's name):
  // changing a key's window starts a fresh count. Keyed by the id alone, so that a caller passing the same
  // string each time (the rate-limit gate does) costs no string building or hashing here.
  const counters = new LRUCache<string, Window[]>({ max: options.maxEntries ?? 100_000 });
  return {
    consume(id, rule, cost = 1, now = clock()) {
      if (!isCost(cost)) return Promise.reject(costError());
      const windows = counters.get(id);
      let window = windows === undefined ? undefined : windowOf(windows, rule.windowSeconds);
      if (window === undefined || window.resetAt <= now) {
        window = { windowSeconds: rule.windowSeconds, used: 0, resetAt: now + rule.windowSeconds * 1000 };
        if (cost > 0) {
          if (windows === undefined) counters.set(id, [window]);
          else keep(windows, window, now);
        }
      }
      const allowed = window.used + cost <= rule.limit;
      if (allowed) window.used += cost;
      (allowed ? counted.allowed : counted.denied)?.inc();
      return decision(rule, allowed, window.used, window.resetAt, now);
    },
    async close() {
      counters.clear();
    },
  };
}

function windowOf(windows: readonly Window[], windowSeconds: number): Window | undefined {
  for (const window of windows) if (window.windowSeconds === windowSeconds) return window;
  return undefined;
}

/** Puts `window` in place of the one of its length, dropping windows that have ended. */
function keep(windows: Window[], window: Window, now: number): void {
  let kept = 0;
  for (const w of windows) if (w.resetAt > now && w.windowSeconds !== window.windowSeconds) windows[kept++] = w;
  windows.length = kept;
  windows.push(window);
}

// Why a Lua script rather than rate-limiter-flexible: the decision (read, compare, increment, keep the
// window's expiry) must be atomic across instances and cost one round trip; a 15-line script does exactly
// that via EVALSHA, with the same semantics as the memory limiter (denied requests consume nothing,
// cost 0 reads), whereas rate-limiter-flexible always increments, would need its own insurance/
// fail-mode layer to match ours, and adds a dependency for what is the product's own hot path.
// Returns {allowed (0|1), used, milliseconds until the window ends}.
const CONSUME_LUA = `
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
local used = 0
if ttl > 0 then
  used = tonumber(redis.call('GET', KEYS[1]) or '0')
else
  ttl = window
end
if used + cost > limit then
  return {0, used, ttl}
end
if cost > 0 then
  redis.call('SET', KEYS[1], used + cost, 'PX', ttl)
end
return {1, used + cost, ttl}
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    keywardRateLimit(key: string, limit: number, windowMs: number, cost: number): Result<[number, number, number], Context>;
  }
}

export interface RedisRateLimiterOptions {
  redis: Redis;
  /** Prepended to every counter key (tests use a random one per test). */
  prefix?: string;
  /**
   * When Redis cannot answer: `open` allows the request, `closed` denies it, `local` decides with counters in
   * this instance's memory until Redis answers again (the brute-force guards: a security control must neither
   * stop counting nor block everyone because Redis is away). Either way the Redis error is counted.
   */
  failMode: 'open' | 'closed' | 'local';
  metrics?: Metrics | undefined;
  /**
   * Whether decisions count in `keyward_rate_limit_decisions_total` (default true). The brute-force guards'
   * limiter passes false: it counts failures, not requests. Redis errors are counted either way.
   */
  countDecisions?: boolean;
  now?: () => number;
}

/** Shared by every instance: counters live in Redis, each decision is one atomic script call. */
export function createRedisRateLimiter(options: RedisRateLimiterOptions): RateLimiter {
  const { redis, failMode, metrics } = options;
  const decisions = options.countDecisions === false ? undefined : metrics;
  const prefix = options.prefix ?? 'keyward:rl:';
  const now = options.now ?? Date.now;
  redis.defineCommand('keywardRateLimit', { numberOfKeys: 1, lua: CONSUME_LUA });

  const local = failMode === 'local' ? createMemoryRateLimiter({ countDecisions: false, now }) : null;

  function failed(id: string, rule: RateRule, cost: number, at: number): MaybePromise<RateDecision> {
    if (local !== null) return local.consume(id, rule, cost, at);
    decisions?.rateLimitDecisions.inc({ backend: 'redis', result: failMode === 'open' ? 'fail_open' : 'fail_closed' });
    const resetAt = at + rule.windowSeconds * 1000;
    return failMode === 'open' ? decision(rule, true, 0, resetAt, at) : decision(rule, false, rule.limit, resetAt, at);
  }

  return {
    async consume(id, rule, cost = 1, at = now()) {
      if (!isCost(cost)) throw costError();
      // While ioredis is reconnecting, answer at once rather than wait for the command timeout each time.
      if (redisIsDown(redis)) {
        metrics?.redisErrors.inc({ operation: 'rate_limit' });
        return failed(id, rule, cost, at);
      }
      try {
        const [allowed, used, ttl] = await redis.keywardRateLimit(
          `${prefix}${id}:${rule.windowSeconds}`,
          rule.limit,
          rule.windowSeconds * 1000,
          cost,
        );
        decisions?.rateLimitDecisions.inc({ backend: 'redis', result: allowed === 1 ? 'allowed' : 'denied' });
        return decision(rule, allowed === 1, used, at + ttl, at);
      } catch {
        metrics?.redisErrors.inc({ operation: 'rate_limit' });
        return failed(id, rule, cost, at);
      }
    },
    // The connection belongs to whoever opened it (the container), which closes it.
    async close() {},
  };
}
