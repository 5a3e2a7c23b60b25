import Database from 'better-sqlite3';
import { v7 as uuidv7 } from 'uuid';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ApiKey, MaybePromise, Quota } from '../../packages/server/src/domain.js';
import { findKeyById, insertKey, spendQuotaStatement } from '../../packages/server/src/keys/repository.js';
import {
  createQuotaSpender,
  effectiveRemaining,
  isValidCost,
  nextRefillAt,
  type QuotaSpend,
  refillPeriodStarts,
} from '../../packages/server/src/limits/quota.js';
import { type Db, type Dialect, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { createStatementWriter, type StatementWriter } from '../../packages/server/src/store/statement-writer.js';
import { usageInsertStatements, usageRowValues } from '../../packages/server/src/usage/repository.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { newApiKey } from '../helpers/fixtures.js';

const NOW = Date.UTC(2030, 2, 15, 12, 0, 0); // 2030-03-15T12:00Z
const DAY = 86_400_000;

function newKey(quota: Quota | null): ApiKey {
  return newApiKey({ name: 'metered', quota }, NOW);
}

/** Stores a new key with `quota`; its id. */
async function insertKeyWith(db: Db, quota: Quota | null): Promise<string> {
  const key = newKey(quota);
  await insertKey(db.db, key);
  return key.id;
}

describe('quota periods', () => {
  it('refills at UTC calendar boundaries: the start of the day and of the month', () => {
    expect(refillPeriodStarts(NOW)).toEqual({ day: Date.UTC(2030, 2, 15), month: Date.UTC(2030, 2, 1) });
    // The first millisecond of a month starts both periods.
    expect(refillPeriodStarts(Date.UTC(2030, 3, 1))).toEqual({ day: Date.UTC(2030, 3, 1), month: Date.UTC(2030, 3, 1) });
    const daily: Quota = { remaining: 0, refill: { amount: 5, interval: 'day' }, lastRefillAt: NOW };
    const monthly: Quota = { remaining: 0, refill: { amount: 5, interval: 'month' }, lastRefillAt: NOW };
    expect(nextRefillAt(daily, NOW)).toBe(Date.UTC(2030, 2, 16));
    expect(nextRefillAt(monthly, NOW)).toBe(Date.UTC(2030, 3, 1));
    expect(nextRefillAt(monthly, Date.UTC(2030, 11, 31, 23))).toBe(Date.UTC(2031, 0, 1));
    expect(effectiveRemaining(daily, NOW)).toBe(0);
    expect(effectiveRemaining(daily, Date.UTC(2030, 2, 16))).toBe(5);
    expect(effectiveRemaining(monthly, Date.UTC(2030, 2, 31, 23, 59))).toBe(0);
    expect(effectiveRemaining(monthly, Date.UTC(2030, 3, 1))).toBe(5);
  });

  it('answers each instant with its own periods, whatever instant was asked before (the current day is kept)', () => {
    const instants = [
      NOW,
      Date.UTC(2030, 2, 15, 23, 59, 59, 999),
      Date.UTC(2030, 2, 16),
      Date.UTC(2030, 2, 15),
      Date.UTC(2030, 2, 14, 23, 59, 59, 999),
      Date.UTC(2030, 3, 1),
      Date.UTC(2030, 2, 31, 12),
    ];
    for (const at of [...instants, ...instants.reverse()]) {
      const d = new Date(at);
      expect(refillPeriodStarts(at)).toEqual({
        day: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()),
        month: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1),
      });
    }
  });

  it('accepts only non-negative integer costs', () => {
    for (const good of [0, 1, 1000]) expect(isValidCost(good)).toBe(true);
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1', null, 2 ** 60]) expect(isValidCost(bad)).toBe(false);
  });
});

type Spend = (keyId: string, cost: number, now: number) => MaybePromise<QuotaSpend>;

// On SQLite a spend commits either at once on the main connection (low load) or on the writer thread, grouped
// (under load): the same rules must hold both ways. Elsewhere there is one way.
const SPEND_PATHS: [Dialect, 'direct' | 'grouped'][] = DIALECTS.flatMap((dialect): [Dialect, 'direct' | 'grouped'][] =>
  dialect === 'sqlite'
    ? [
        [dialect, 'direct'],
        [dialect, 'grouped'],
      ]
    : [[dialect, 'grouped']],
);

describe.each(SPEND_PATHS)('quota spending on %s (%s)', (dialect, path) => {
  // One spender per database handle, as each instance's container has: its own writer (a thread on SQLite).
  const spenders = new Map<Db, { spend: Spend; writer: StatementWriter }>();
  // Writers a test made for itself.
  const writers: StatementWriter[] = [];
  const spend = (on: Db, keyId: string, cost: number, now: number): MaybePromise<QuotaSpend> => {
    let bound = spenders.get(on);
    if (bound === undefined) {
      const writer = createStatementWriter(on);
      bound = { spend: createQuotaSpender(on, writer, path === 'grouped' ? { directPerSecond: 0 } : {}), writer };
      spenders.set(on, bound);
    }
    return bound.spend(keyId, cost, now);
  };
  let database: FreshDatabase;
  let db: Db;
  const extra: Db[] = [];

  beforeEach(async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
  });
  afterEach(async () => {
    for (const { writer } of spenders.values()) await writer.close();
    for (const writer of writers.splice(0)) await writer.close();
    spenders.clear();
    for (const d of extra.splice(0)) await d.close();
    await db.close();
    await database.cleanup();
  });

  const keyWith = (quota: Quota | null): Promise<string> => insertKeyWith(db, quota);

  async function stored(id: string): Promise<Quota | null | undefined> {
    return (await findKeyById(db.db, id))?.quota;
  }

  it('30 simultaneous spends on a key with 10 left: exactly 10 succeed, and it ends at 0', async () => {
    const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
    const results = await Promise.all(Array.from({ length: 30 }, () => spend(db, id, 1, NOW)));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    // Each success reports a distinct remainder: no two spends saw the same row state.
    expect(
      results
        .filter((r) => r.ok)
        .map((r) => r.remaining)
        .sort((a, b) => Number(a) - Number(b)),
    ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const r of results.filter((x) => !x.ok)) expect(r.remaining).toBe(0);
    expect((await stored(id))?.remaining).toBe(0);
  });

  it('is exact across two instances (two connection pools on one database)', async () => {
    const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
    const second = openDatabase(database.url);
    extra.push(second);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => spend(i % 2 ? second : db, id, 1, NOW)));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    expect((await stored(id))?.remaining).toBe(0);
  });

  it.runIf(dialect === 'sqlite')(
    `is exact with one instance committing at once and another through its writer thread${dialect === 'sqlite' ? '' : ' — skipped: SQLite only (no thread elsewhere)'}`,
    async () => {
      const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
      const second = openDatabase(database.url);
      extra.push(second);
      const writer = createStatementWriter(second);
      // This instance's spender sends every spend to its thread; the first one's commit at once.
      const grouped = createQuotaSpender(second, writer, { directPerSecond: 0 });
      try {
        const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? grouped(id, 1, NOW) : spend(db, id, 1, NOW))));
        expect(results.filter((r) => r.ok)).toHaveLength(10);
        expect((await stored(id))?.remaining).toBe(0);
      } finally {
        await writer.close();
      }
    },
  );

  it('is exact with a refill due: 30 simultaneous spends refill once and succeed exactly `amount` times', async () => {
    const id = await keyWith({ remaining: 0, refill: { amount: 10, interval: 'day' }, lastRefillAt: NOW - DAY });
    const results = await Promise.all(Array.from({ length: 30 }, () => spend(db, id, 1, NOW)));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    expect(await stored(id)).toMatchObject({ remaining: 0, lastRefillAt: NOW });
  });

  it('never goes below zero: a cost larger than what is left is refused and spends nothing', async () => {
    const id = await keyWith({ remaining: 5, refill: null, lastRefillAt: null });
    expect(await spend(db, id, 6, NOW)).toEqual({ ok: false, remaining: 5 });
    expect(await spend(db, id, 5, NOW)).toEqual({ ok: true, remaining: 0 });
    expect(await spend(db, id, 1, NOW)).toEqual({ ok: false, remaining: 0 });
    expect((await stored(id))?.remaining).toBe(0);
  });

  it('reads without spending when the cost is 0', async () => {
    const id = await keyWith({ remaining: 3, refill: null, lastRefillAt: null });
    expect(await spend(db, id, 0, NOW)).toEqual({ ok: true, remaining: 3 });
    expect(await spend(db, id, 0, NOW)).toEqual({ ok: true, remaining: 3 });
    expect((await stored(id))?.remaining).toBe(3);
  });

  it('treats a key without a quota as unlimited, and refuses a key that does not exist', async () => {
    const id = await keyWith(null);
    expect(await spend(db, id, 1, NOW)).toEqual({ ok: true, remaining: null });
    expect(await stored(id)).toBeNull();
    expect(await spend(db, uuidv7(), 1, NOW)).toEqual({ ok: false, remaining: 0 });
  });

  it('refills a daily quota lazily on the first spend of a new UTC day, once', async () => {
    const yesterday = Date.UTC(2030, 2, 14, 23, 59);
    const id = await keyWith({ remaining: 0, refill: { amount: 100, interval: 'day' }, lastRefillAt: yesterday });
    // Still the old day: nothing left, nothing refilled.
    expect(await spend(db, id, 1, yesterday + 30_000)).toEqual({ ok: false, remaining: 0 });
    expect(await stored(id)).toMatchObject({ remaining: 0, lastRefillAt: yesterday });
    // The new day: refilled to the amount, then spent.
    expect(await spend(db, id, 1, NOW)).toEqual({ ok: true, remaining: 99 });
    expect(await stored(id)).toMatchObject({ remaining: 99, lastRefillAt: NOW });
    // A later spend the same day does not refill again.
    expect(await spend(db, id, 1, NOW + 3_600_000)).toEqual({ ok: true, remaining: 98 });
    // Reading on a new day shows the refill that the next spend will make, without writing it.
    expect(await spend(db, id, 0, NOW + DAY)).toEqual({ ok: true, remaining: 100 });
    expect(await stored(id)).toMatchObject({ remaining: 98, lastRefillAt: NOW });
  });

  it('refills a monthly quota on the first spend of a new UTC calendar month', async () => {
    const lastMonth = Date.UTC(2030, 1, 28, 10); // 28 February
    const id = await keyWith({ remaining: 2, refill: { amount: 50, interval: 'month' }, lastRefillAt: lastMonth });
    expect(await spend(db, id, 1, Date.UTC(2030, 1, 28, 23, 59, 59))).toEqual({ ok: true, remaining: 1 });
    expect(await spend(db, id, 1, Date.UTC(2030, 2, 1))).toEqual({ ok: true, remaining: 49 });
    expect(await spend(db, id, 1, Date.UTC(2030, 2, 31, 23))).toEqual({ ok: true, remaining: 48 });
  });

  it('refills a quota that has a refill but was never refilled', async () => {
    const id = await keyWith({ remaining: 0, refill: { amount: 7, interval: 'day' }, lastRefillAt: null });
    expect(await spend(db, id, 2, NOW)).toEqual({ ok: true, remaining: 5 });
  });

  it('does not refill when even the refill amount cannot pay the cost', async () => {
    const id = await keyWith({ remaining: 1, refill: { amount: 3, interval: 'day' }, lastRefillAt: NOW - DAY });
    expect(await spend(db, id, 4, NOW)).toEqual({ ok: false, remaining: 3 });
    expect(await stored(id)).toMatchObject({ remaining: 1, lastRefillAt: NOW - DAY });
  });

  describe.runIf(path === 'grouped')(
    path === 'grouped' ? 'spends of one key in one turn' : 'spends of one key in one turn — skipped: merged only on the writer path',
    () => {
      /** A spender whose writer counts the statements it is asked to run. */
      function countingSpender(): { spend: Spend; statements: () => number } {
        const writer = createStatementWriter(db);
        writers.push(writer);
        let statements = 0;
        const counting: StatementWriter = {
          ...writer,
          query: (statement) => {
            statements++;
            return writer.query(statement);
          },
        };
        return { spend: createQuotaSpender(db, counting, { directPerSecond: 0 }), statements: () => statements };
      }

      it('are one statement of their summed cost, each reporting what it would have left in the order asked', async () => {
        const id = await keyWith({ remaining: 100, refill: null, lastRefillAt: null });
        const { spend: together, statements } = countingSpender();
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => together(id, i % 2 ? 2 : 1, NOW)));
        expect(statements()).toBe(1);
        // Each spend's cost is 1 or 2 in turn: what is left after spend i is 100 minus the costs up to it.
        const leftAfter = (i: number) => 100 - (i + 1) - Math.floor((i + 1) / 2);
        expect(results).toEqual(Array.from({ length: 20 }, (_, i) => ({ ok: true, remaining: leftAfter(i) })));
        expect((await stored(id))?.remaining).toBe(70);
      });

      it('run one by one when the quota cannot cover the sum: exactly those that fit succeed', async () => {
        const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
        const { spend: together, statements } = countingSpender();
        const costs = [4, 4, 4, 2];
        const results = await Promise.all(costs.map((cost) => together(id, cost, NOW)));
        // Whatever the order, two 4s and the 2 fit in 10, and three 4s do not.
        expect(results.filter((r) => r.ok)).toHaveLength(3);
        expect(costs.filter((_, i) => results[i]?.ok).reduce((a, b) => a + b)).toBe(10);
        expect(statements()).toBe(1 + 4);
        expect((await stored(id))?.remaining).toBe(0);
        // On SQLite they run in the order asked, in one transaction (on PostgreSQL at once, as any spends do).
        if (dialect === 'sqlite') expect(results.map((r) => r.ok && r.remaining)).toEqual([6, 2, false, 0]);
      });

      it('spend alone when their sum is beyond an exact integer (and PostgreSQL’s bigint): as one by one, the first fits', async () => {
        const max = Number.MAX_SAFE_INTEGER;
        const id = await keyWith({ remaining: max, refill: null, lastRefillAt: null });
        const { spend: together } = countingSpender();
        const results = await Promise.all(Array.from({ length: 1_100 }, () => together(id, max, NOW)));
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect((await stored(id))?.remaining).toBe(0);
      });

      it('are all settled before the writer’s close() resolves, including the spends run alone after a sum that did not fit', async () => {
        const id = await keyWith({ remaining: 1, refill: null, lastRefillAt: null });
        const writer = createStatementWriter(db);
        const spendOn = createQuotaSpender(db, writer, { directPerSecond: 0 });
        const written: boolean[] = [];
        const spends = [0, 1].map(() => Promise.resolve(spendOn(id, 1, NOW)).then(() => written.push(true)));
        await writer.close();
        // Both spends reached the database (each alone, the sum of 2 not fitting in 1) before close resolved.
        expect((await stored(id))?.remaining).toBe(0);
        await Promise.all(spends);
        expect(written).toHaveLength(2);
      });

      it('refill once when a refill is due, and keep each key’s spends apart', async () => {
        const refilled = await keyWith({ remaining: 0, refill: { amount: 10, interval: 'day' }, lastRefillAt: NOW - DAY });
        const other = await keyWith({ remaining: 5, refill: null, lastRefillAt: null });
        const { spend: together, statements } = countingSpender();
        const results = await Promise.all(Array.from({ length: 6 }, (_, i) => together(i % 2 ? other : refilled, 1, NOW)));
        expect(statements()).toBe(2);
        expect(results.map((r) => r.remaining)).toEqual([9, 4, 8, 3, 7, 2]);
        expect(await stored(refilled)).toMatchObject({ remaining: 7, lastRefillAt: NOW });
        expect((await stored(other))?.remaining).toBe(2);
      });
    },
  );
});

describe.each(DIALECTS)('the quota gate’s spender on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db;
  let writer: StatementWriter;

  beforeEach(async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    writer = createStatementWriter(db);
  });
  afterEach(async () => {
    await writer.close();
    await db.close();
    await database.cleanup();
  });

  const keyWith = (quota: Quota | null): Promise<string> => insertKeyWith(db, quota);

  it('on SQLite at low load commits at once on the main connection, without a promise; under load, through the writer', async () => {
    await migrateUp(db.db);
    let clock = 0;
    const spend = createQuotaSpender(db, writer, { clock: () => clock });
    const id = await keyWith({ remaining: 1_000, refill: null, lastRefillAt: null });
    const viaWriter = vi.spyOn(writer, 'query');
    if (dialect === 'postgres') {
      // No thread and no synchronous driver: every spend is a promise, run on the database.
      const spent = spend(id, 1, NOW);
      expect(spent).toBeInstanceOf(Promise);
      expect(await spent).toEqual({ ok: true, remaining: 999 });
      expect(viaWriter).toHaveBeenCalledTimes(1);
      return;
    }
    expect(spend(id, 1, NOW)).toEqual({ ok: true, remaining: 999 });
    // Spends are counted over the last 100–200 ms: past 100 in one 100 ms slot (500 a second), the next goes to
    // the writer. With the one above, these make 101.
    const answers = Array.from({ length: 100 }, () => spend(id, 1, NOW));
    const direct = answers.filter((a) => !(a instanceof Promise));
    expect(direct).toHaveLength(99);
    expect(await answers[99]).toEqual({ ok: true, remaining: 899 });
    expect(viaWriter).toHaveBeenCalledTimes(1);
    // Quiet again (two slots later): at once, without a promise.
    clock += 250;
    expect(spend(id, 1, NOW)).toEqual({ ok: true, remaining: 898 });
    expect(viaWriter).toHaveBeenCalledTimes(1);
    // While the thread writes a batch (holding the write lock), a spend does not wait for it on the event loop.
    const batch = writer.run(
      usageInsertStatements(
        db.db,
        usageRowValues(Array.from({ length: 5_000 }, (_, i) => ({ api_key_id: id, outcome: 'VALID', created_at: NOW + i }))),
      ),
    );
    const meanwhile = spend(id, 1, NOW);
    expect(meanwhile).toBeInstanceOf(Promise);
    expect(await meanwhile).toEqual({ ok: true, remaining: 897 });
    await batch;
    expect(viaWriter).toHaveBeenCalledTimes(2);
  });

  it('never waits on the event loop for a write lock another connection holds: the thread waits instead', async () => {
    await migrateUp(db.db);
    const spend = createQuotaSpender(db, writer);
    const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
    if (dialect === 'postgres') return; // No event-loop writes there: every spend is asynchronous.
    // Another process's connection (a second instance, the CLI) holds the write lock for 300 ms.
    const other = new Database(database.url.slice('sqlite:'.length));
    other.exec('begin immediate');
    const release = setTimeout(() => other.exec('commit'), 300);
    const started = performance.now();
    const spent = spend(id, 1, NOW);
    const blocked = performance.now() - started;
    try {
      expect(spent).toBeInstanceOf(Promise);
      expect(blocked).toBeLessThan(100);
      expect(await spent).toEqual({ ok: true, remaining: 9 });
    } finally {
      clearTimeout(release);
      if (other.inTransaction) other.exec('commit');
      other.close();
    }
    // The lock gone, spends commit at once again, with the connection's own busy timeout kept.
    expect(spend(id, 1, NOW)).toEqual({ ok: true, remaining: 8 });
    expect(db.sqlite?.pragma('busy_timeout', { simple: true })).toBe(2_000); // DATABASE_TIMEOUT_MS's default
  });

  it('never joins a transaction open on the connection: it waits for it, and its rollback does not undo the spend', async () => {
    await migrateUp(db.db);
    const spend = createQuotaSpender(db, writer);
    const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
    let spent: MaybePromise<QuotaSpend> | undefined;
    const rolledBack = db.db.transaction().execute(async (trx) => {
      // A write in the transaction: on SQLite it holds the database's write lock, on PostgreSQL this row's lock.
      await trx.updateTable('api_keys').set({ name: 'renamed' }).where('id', '=', id).execute();
      spent = spend(id, 1, NOW);
      throw new Error('roll back');
    });
    await expect(rolledBack).rejects.toThrow('roll back');
    expect(await spent).toEqual({ ok: true, remaining: 9 });
    const stored = await findKeyById(db.db, id);
    expect(stored).toMatchObject({ name: 'metered', quota: { remaining: 9 } });
  });

  it('is made before the table exists (the container is built before migrating); a failed spend is a rejected promise', async () => {
    const spend = createQuotaSpender(db, writer);
    let failed: unknown;
    try {
      failed = spend(uuidv7(), 1, NOW);
    } catch (error) {
      failed = error;
    }
    expect(failed).toBeInstanceOf(Promise);
    await expect(failed).rejects.toThrow(/api_keys/);
    await migrateUp(db.db);
    const id = await keyWith({ remaining: 3, refill: null, lastRefillAt: null });
    expect(await spend(id, 1, NOW)).toEqual({ ok: true, remaining: 2 });
  });

  it('compiles the spend statement once per database, not once per spend', async () => {
    await migrateUp(db.db);
    const id = await keyWith({ remaining: 10, refill: null, lastRefillAt: null });
    let compiled = 0;
    const counting = db.db.withPlugin({
      transformQuery: (args) => {
        if (args.node.kind === 'UpdateQueryNode') compiled += 1;
        return args.node;
      },
      transformResult: async (args) => args.result,
    });
    for (let i = 0; i < 3; i++) {
      const [row] = (await writer.query(spendQuotaStatement(counting, id, 1, NOW, refillPeriodStarts(NOW)))).rows;
      expect(Number(row?.quota_remaining)).toBe(9 - i);
    }
    expect(compiled).toBe(1);
  });
});
