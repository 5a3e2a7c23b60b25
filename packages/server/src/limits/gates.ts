import { type Config, type TierSetting, tierSettingOf } from '../config.js';
import type { ApiKey, GateOutcome, GateRequest, MaybePromise, VerifyGate } from '../domain.js';
import { loadKey, type Presented } from '../keys/lookup.js';
import type { Db } from '../store/database.js';
import { type RateDecision, type RateLimiter, type RateRule, rateRuleFor } from '../store/rate-limiter.js';
import type { Executor } from '../store/schema.js';
import type { StatementWriter } from '../store/statement-writer.js';
import { findUserById } from '../users/repository.js';
import { createQuotaSpender, nextRefillAt, type QuotaSpend } from './quota.js';

// The two gates verification runs after the scope check (SPEC §6: rate limit, then quota). They answer
// synchronously when they have nothing to wait for: a key with neither limit, the memory rate limiter, a
// quota spent at once on SQLite (see `createQuotaSpender`).

const PASS: GateOutcome = { ok: true };

/**
 * The verifier's loader: the key record (see {@link loadKey}) plus its owner's tier, read once when the
 * cache is filled, so a tier's default rate limit costs no database read per verification. A tier change
 * announces every key of the user (the user service's `onKeysChanged`), which drops these entries.
 */
export async function loadKeyWithOwnerTier(db: Executor, key: string, presented: Presented): Promise<ApiKey | undefined> {
  const found = await loadKey(db, key, presented);
  if (found === undefined || found.userId === null) return found;
  const owner = await findUserById(db, found.userId);
  return { ...found, ownerTier: owner?.tier ?? null };
}

export interface RateLimitGateDeps {
  limiter: RateLimiter;
  /** The tiers, and the one a user of a tier no longer configured falls back to (as for the key limit). */
  tiers: Pick<Config, 'tiers' | 'defaultTier'>;
  /** Reads the owner's tier for a record loaded without it (not the container's loader). */
  db?: Executor;
}

/**
 * Consumes one unit of the key's rate limit per verification: the key's own `rate_limit`, else its owner's
 * tier default, else none. Reports `{limit, remaining, reset, windowSeconds}`; a denial is `RATE_LIMITED`.
 * When the Redis backend fails, the limiter's fail mode decides (and counts it).
 */
export function createRateLimitGate({ limiter, tiers, db }: RateLimitGateDeps): VerifyGate {
  // A key with no owner has no tier; an owner's tier no longer configured falls back to the default tier,
  // never to no limit.
  const tierSetting = (tier: string | null | undefined): TierSetting | undefined => (tier == null ? undefined : tierSettingOf(tiers, tier));

  // The limiter's name for a key's counter, built once per cached record rather than per verification:
  // a string made anew must be hashed anew at each look-up, which costs more than the count itself.
  const counterNames = new WeakMap<ApiKey, string>();
  function counterName(key: ApiKey): string {
    let name = counterNames.get(key);
    if (name === undefined) {
      // A rolled key in its grace period counts against the key that replaced it (see `budgetKeyId`).
      name = `key:${key.budgetKeyId ?? key.id}`;
      counterNames.set(key, name);
    }
    return name;
  }

  function decide(key: ApiKey, tier: TierSetting | undefined, { rateLimitCost, now }: GateRequest): MaybePromise<GateOutcome> {
    const rule = rateRuleFor(key, tier);
    if (rule === null) return PASS;
    const decision = limiter.consume(counterName(key), rule, rateLimitCost, now);
    return decision instanceof Promise ? decision.then((d) => outcomeOf(d, rule)) : outcomeOf(decision, rule);
  }

  return {
    check(key, request) {
      if (key.userId !== null && key.ownerTier === undefined && db !== undefined) {
        return findUserById(db, key.userId).then((owner) => decide(key, tierSetting(owner?.tier), request));
      }
      const tier = key.userId === null ? undefined : tierSetting(key.ownerTier);
      if (key.rateLimit === null && (tier === undefined || tier.rateLimit === null)) return PASS;
      return decide(key, tier, request);
    },
  };
}

function outcomeOf(decision: RateDecision, rule: RateRule): GateOutcome {
  const ratelimit = { limit: decision.limit, remaining: decision.remaining, reset: decision.reset, windowSeconds: rule.windowSeconds };
  return decision.allowed ? { ok: true, ratelimit } : { ok: false, code: 'RATE_LIMITED', ratelimit };
}

/**
 * Spends `cost` from the key's quota (atomically, in one SQL statement, committed before the answer; see
 * `createQuotaSpender`), refilling it first when a refill is due. Reports what is left; not enough left is
 * `USAGE_EXCEEDED` and spends nothing. A key without a quota (as cached) costs no database work; on SQLite at
 * low load a spend answers synchronously.
 */
export function createQuotaGate({ db, writer }: { db: Db; writer: StatementWriter }): VerifyGate {
  const spend = createQuotaSpender(db, writer);
  return {
    check(key, { cost, now }) {
      if (key.quota === null) return PASS;
      // A rolled key in its grace period spends the quota of the key that replaced it (see `budgetKeyId`).
      const spent = spend(key.budgetKeyId ?? key.id, cost, now);
      return spent instanceof Promise ? spent.then((s) => quotaOutcome(s, key, cost, now)) : quotaOutcome(spent, key, cost, now);
    },
  };
}

function quotaOutcome(spent: QuotaSpend, key: ApiKey, cost: number, now: number): GateOutcome {
  if (!spent.ok) {
    // When the quota comes back, as the cached record knows its refill (none for a key spending another's),
    // if the refill would cover this cost at all.
    const quota = key.quota;
    const refillAt = quota === null || (quota.refill?.amount ?? 0) < cost ? null : nextRefillAt(quota, now);
    return refillAt === null
      ? { ok: false, code: 'USAGE_EXCEEDED', remaining: spent.remaining }
      : { ok: false, code: 'USAGE_EXCEEDED', remaining: spent.remaining, quotaReset: Math.ceil(refillAt / 1000) };
  }
  // `null`: the quota was removed since this record was cached; nothing to report.
  return spent.remaining === null ? PASS : { ok: true, remaining: spent.remaining };
}
