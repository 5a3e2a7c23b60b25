import type { ApiKey, GateOutcome, GateRequest, RefillInterval, VerifyGate } from '../domain.js';
import type { Db } from '../store/database.js';
import { keySummary } from './catalogue.js';
import { emitEvent } from './outbox.js';
import { findKeyFacts, markOnce } from './repository.js';

// `quota.low` and `quota.exhausted`. Quotas are spent on the verification hot path, in one statement outside any
// transaction (limits/quota.ts), so the events cannot share the spend's transaction. Instead the quota gate is
// watched: each spend reports what it left, exactly, even under concurrency (the spend is atomic; spends grouped
// into one statement each report what they would have left one after another). So exactly one spend crosses a
// given level: the one that takes the quota from above `WEBHOOK_QUOTA_LOW_FRACTION` of its refill amount to at or
// below it (`quota.low`), or from above 0 to 0 (`quota.exhausted`). That spend writes the event after it, in a
// transaction of its own, off the hot path (the answer does not wait for it).
//
// Once per refill period: a quota with a refill writes a mark (kind, key, period) with the event, and the mark's
// primary key refuses a second one in the same UTC day or month (say the quota was raised and spent down again).
// A quota without refill has no period: its `quota.exhausted` is sent each time a spend empties it, and it has no
// `quota.low` (no amount to take a fraction of). A process that dies between the spend and the event's commit
// (a few milliseconds) loses that event: the price of keeping the hot path free of a second write.

export interface QuotaEventsDeps {
  db: Db;
  /** `WEBHOOK_QUOTA_LOW_FRACTION`: `quota.low` when what is left falls to this fraction of the refill amount (0: never). */
  lowFraction: number;
  onError?: (error: unknown) => void;
}

export type QuotaEvents = ReturnType<typeof createQuotaEvents>;

/** The refill period `at` falls in, as a mark names it: `day:2025-06-03` or `month:2025-06`. */
export function refillPeriod(interval: RefillInterval, at: number): string {
  const day = new Date(at).toISOString().slice(0, 10);
  return interval === 'day' ? `day:${day}` : `month:${day.slice(0, 7)}`;
}

export function createQuotaEvents({ db: { db }, lowFraction, onError = () => {} }: QuotaEventsDeps) {
  const inFlight = new Set<Promise<void>>();

  async function emit(kind: 'quota.low' | 'quota.exhausted', key: ApiKey, remaining: number, threshold: number | null, at: number) {
    // A rolled key in its grace period spends the quota of the key that replaced it: the event names that key.
    const owner = key.budgetKeyId ?? key.id;
    const refill = key.budgetKeyId === null ? (key.quota?.refill ?? null) : null;
    await db.transaction().execute(async (trx) => {
      if (refill && !(await markOnce(trx, { kind, subjectId: owner, period: refillPeriod(refill.interval, at), at }))) return;
      const facts = await findKeyFacts(trx, owner);
      if (!facts) return;
      await emitEvent(
        trx,
        kind,
        {
          key: keySummary(facts),
          quota: { remaining, refill, ...(threshold === null ? {} : { threshold }) },
          ...(owner === key.id ? {} : { spent_by_key_id: key.id }),
        },
        at,
      );
    });
  }

  function fire(kind: 'quota.low' | 'quota.exhausted', key: ApiKey, remaining: number, threshold: number | null, at: number): void {
    const running = emit(kind, key, remaining, threshold, at)
      .catch(onError)
      .finally(() => inFlight.delete(running));
    inFlight.add(running);
  }

  /** Sees what a spend left, and fires the events it crossed into. A few comparisons: nothing is awaited. */
  function observe(key: ApiKey, { cost, now }: GateRequest, outcome: GateOutcome): void {
    if (!outcome.ok || outcome.remaining === undefined || cost === 0) return;
    const after = outcome.remaining;
    const before = after + cost;
    const refill = key.budgetKeyId === null ? (key.quota?.refill ?? null) : null;
    if (refill && lowFraction > 0) {
      const threshold = Math.floor(refill.amount * lowFraction);
      if (before > threshold && after <= threshold) fire('quota.low', key, after, threshold, now);
    }
    if (before > 0 && after === 0) fire('quota.exhausted', key, after, null, now);
  }

  return {
    /** The quota gate, watched: it answers as before; crossings write their events in the background. */
    watch(gate: VerifyGate): VerifyGate {
      return {
        check(key, request) {
          const outcome = gate.check(key, request);
          if (key.quota === null) return outcome;
          if (outcome instanceof Promise) {
            return outcome.then((settled) => {
              observe(key, request, settled);
              return settled;
            });
          }
          observe(key, request, outcome);
          return outcome;
        },
      };
    },
    /** Waits for the events being written (a clean shutdown). */
    async close(): Promise<void> {
      await Promise.allSettled([...inFlight]);
    },
  };
}
