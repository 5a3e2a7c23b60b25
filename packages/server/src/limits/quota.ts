import type { MaybePromise, Quota } from '../domain.js';
import { directQuotaSpender, type RefillPeriodStarts, readKeyQuota, spendQuotaStatement } from '../keys/repository.js';
import type { Db } from '../store/database.js';
import type { Executor } from '../store/schema.js';
import type { StatementWriter } from '../store/statement-writer.js';

/**
 * The outcome of spending from a key's quota. `remaining` is what is left after the spend (or, when
 * refused, what is left now); `null` means the key has no quota (unlimited).
 */
export type QuotaSpend = { ok: true; remaining: number | null } | { ok: false; remaining: number };

// Every spend asks, and taking a date apart costs more than the rest of the quota gate: the answer for the
// current UTC day is kept.
let today: { day: number; nextDay: number; starts: Readonly<RefillPeriodStarts> } = {
  day: 0,
  nextDay: 0,
  starts: { day: 0, month: 0 },
};

/**
 * Refill periods are UTC calendar periods: a `day` quota refills on the first spend of each UTC day, a
 * `month` quota on the first spend of each UTC calendar month. Users can tell when their quota comes back
 * (midnight UTC, the 1st), periods never drift with the time of the first spend, and months are real
 * months rather than 30 days. These are the instants the current periods started.
 */
export function refillPeriodStarts(now: number): Readonly<RefillPeriodStarts> {
  if (now >= today.day && now < today.nextDay) return today.starts;
  const d = new Date(now);
  const starts = {
    day: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()),
    month: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1),
  };
  today = { day: starts.day, nextDay: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1), starts };
  return starts;
}

/** When the quota will next be refilled (at its next spend from then on); `null` without a refill. */
export function nextRefillAt(quota: Quota, now: number): number | null {
  if (quota.refill === null) return null;
  const d = new Date(now);
  return quota.refill.interval === 'day'
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
    : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** Whether a refill is due: it was last refilled before the current period began (or never). */
export function refillDue(quota: Quota, now: number): boolean {
  if (quota.refill === null) return false;
  if (quota.lastRefillAt === null) return true;
  const starts = refillPeriodStarts(now);
  return quota.lastRefillAt < (quota.refill.interval === 'day' ? starts.day : starts.month);
}

/** What is available now: the stored remainder, or the refill amount when a refill is due. */
export function effectiveRemaining(quota: Quota, now: number): number {
  return quota.refill !== null && refillDue(quota, now) ? quota.refill.amount : quota.remaining;
}

/** A verification cost: a non-negative safe integer (0 reads the quota without spending). */
export function isValidCost(cost: unknown): cost is number {
  return typeof cost === 'number' && Number.isSafeInteger(cost) && cost >= 0;
}

/**
 * Above this many spends a second (over the last 100–200 ms), spends go to the writer thread, where the spends
 * of a turn share one commit; below it, each commits at once on the event loop (≈ 20 µs, with no round trip to
 * a thread, which on a VM can cost hundreds of microseconds when the thread's CPU sleeps). At 500 a second,
 * committing one by one takes about 1 % of the event loop.
 */
export const DIRECT_SPENDS_PER_SECOND = 500;

/**
 * Spends `cost` from a key's quota, atomically and exactly under concurrency (one SQL statement; see
 * `spendQuotaStatement`), refilling lazily first when a refill is due. Never goes below zero; `cost` 0 only
 * reads; a key that no longer exists is refused with `remaining: 0`. The spend is a write the answer waits
 * for, committed before the answer. On a SQLite file, while spends are few and the writer thread has nothing to
 * do, it runs at once on the main connection and answers without a promise; under load (or while the thread
 * writes, holding the write lock, while another connection holds it, or while a transaction is open on the main
 * connection) it goes through `writer`, the thread, grouped. Elsewhere `writer` runs it on the database. Reads (and refusals, to say what is left)
 * use the main connection. Both ways run the same statement, so the quota stays exact whichever way each goes.
 */
export function createQuotaSpender(
  database: Db,
  writer: StatementWriter,
  {
    clock = performance.now.bind(performance),
    directPerSecond = DIRECT_SPENDS_PER_SECOND,
  }: {
    /** Milliseconds, for the spend rate (not the quota's time, which is `now`). */
    clock?: () => number;
    /** Up to this many spends a second go directly; 0: every spend goes through the writer. */
    directPerSecond?: number;
  } = {},
): (keyId: string, cost: number, now: number) => MaybePromise<QuotaSpend> {
  const { db, sqlite } = database;
  // SQLite only: the main connection, and the spend run on it at once.
  const main = sqlite === undefined ? undefined : { sqlite, spend: directQuotaSpender(sqlite, db) };
  // Spends counted per 100 ms slot: this one and the one before.
  let slot = 0;
  let inSlot = 0;
  let inPrevious = 0;
  const perSecond = (): number => {
    const current = Math.floor(clock() / 100);
    if (current !== slot) {
      inPrevious = current === slot + 1 ? inSlot : 0;
      inSlot = 0;
      slot = current;
    }
    inSlot++;
    return (inSlot + inPrevious) * 5;
  };
  const settle = (keyId: string, cost: number, now: number, remaining: number | string | null | undefined): MaybePromise<QuotaSpend> =>
    remaining === null || remaining === undefined ? quotaLeft(db, keyId, cost, now) : { ok: true, remaining: Number(remaining) };
  /** What is left after spending through the writer; `null` or `undefined` when nothing was spent. */
  const spent = (keyId: string, cost: number, now: number, periods: RefillPeriodStarts) =>
    writer.query(spendQuotaStatement(db, keyId, cost, now, periods)).then(({ rows }) => rows[0]?.quota_remaining);
  const alone: SpendAlone = (keyId, cost, now, periods) =>
    spent(keyId, cost, now, periods).then((remaining) => settle(keyId, cost, now, remaining));

  // The spends of this turn that go through the writer, by key and UTC day: each key's are summed into one
  // statement at the end of the turn (see `spendTogether`).
  let turn = new Map<string, Together>();
  const collect = (): void => {
    const spends = turn;
    turn = new Map();
    for (const together of spends.values()) spendTogether(together, spent, alone);
  };
  const together = (keyId: string, cost: number, now: number, periods: RefillPeriodStarts): Promise<QuotaSpend> =>
    new Promise((resolve, reject) => {
      const name = `${periods.day} ${keyId}`;
      let found = turn.get(name);
      if (found === undefined) {
        if (turn.size === 0) writer.atTurnEnd(collect);
        found = { keyId, now, periods, total: 0, waiting: [] };
        turn.set(name, found);
      }
      found.total += cost;
      if (now > found.now) found.now = now;
      found.waiting.push({ cost, resolve, reject });
    });

  return (keyId, cost, now) => {
    if (cost === 0) return quotaLeft(db, keyId, cost, now);
    const periods = refillPeriodStarts(now);
    const rate = perSecond();
    if (main !== undefined && !main.sqlite.inTransaction && !writer.busy() && rate <= directPerSecond) {
      try {
        return settle(keyId, cost, now, main.spend(keyId, cost, now, periods));
      } catch (error) {
        // Another connection (an instance sharing the file, the CLI) holds the write lock: the thread waits
        // for it instead of the event loop.
        if ((error as { code?: unknown }).code !== 'SQLITE_BUSY') return Promise.reject(error);
      }
    }
    return together(keyId, cost, now, periods);
  };
}

/** One key's spends asked for in one turn (and one UTC day), in the order asked. */
interface Together {
  keyId: string;
  /** The latest time among them (the refill's time, if one is due). */
  now: number;
  periods: RefillPeriodStarts;
  total: number;
  waiting: { cost: number; resolve(spend: QuotaSpend): void; reject(error: unknown): void }[];
}

/**
 * Spends a key's spends of one turn as one statement of their summed cost: a key verified many times at once
 * (the case where spends are many) costs one write, and on PostgreSQL one wait for its row lock, instead of one
 * each. When the quota covers the sum, every spend succeeds, each reporting what it would have left had they run
 * one after another in the order asked; when it does not (or the key has no quota, or is gone), each runs on its
 * own (on the SQLite thread in that order, in one transaction; on PostgreSQL at once, as any spends), so exactly
 * those that fit succeed. Either way the outcome is one that running them one by one gives: a refill due is made
 * once, by whichever runs first, and a sum either fits entirely or is not spent.
 */
function spendTogether(
  { keyId, now, periods, total, waiting }: Together,
  spent: (keyId: string, cost: number, now: number, periods: RefillPeriodStarts) => Promise<number | string | null | undefined>,
  alone: SpendAlone,
): void {
  const eachAlone = () => {
    for (const spend of waiting) alone(keyId, spend.cost, now, periods).then(spend.resolve, spend.reject);
  };
  // A sum beyond what is exact (and what PostgreSQL's bigint holds) is no sum to spend.
  if (waiting.length === 1 || total > Number.MAX_SAFE_INTEGER) {
    eachAlone();
    return;
  }
  spent(keyId, total, now, periods).then(
    (remaining) => {
      if (remaining === null || remaining === undefined) {
        eachAlone();
        return;
      }
      let left = Number(remaining) + total;
      for (const spend of waiting) {
        left -= spend.cost;
        spend.resolve({ ok: true, remaining: left });
      }
    },
    (error: unknown) => {
      for (const spend of waiting) spend.reject(error);
    },
  );
}

type SpendAlone = (keyId: string, cost: number, now: number, periods: RefillPeriodStarts) => Promise<QuotaSpend>;

// Refused (or a read): report what is there. Only the refused path pays this second query.
async function quotaLeft(db: Executor, keyId: string, cost: number, now: number): Promise<QuotaSpend> {
  const row = await readKeyQuota(db, keyId);
  if (row === undefined) return { ok: false, remaining: 0 };
  if (row.quota === null) return { ok: true, remaining: null };
  const available = effectiveRemaining(row.quota, now);
  return cost === 0 ? { ok: true, remaining: available } : { ok: false, remaining: available };
}
