import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMetrics, type Metrics } from '../../packages/server/src/metrics.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { createStatementWriter, type StatementWriter } from '../../packages/server/src/store/statement-writer.js';
import { createUsageRecorder, type UsageEvent, type UsageRecorder } from '../../packages/server/src/usage/recorder.js';
import {
  appendUsageRow,
  countUsageByBucket,
  countUsageByOutcome,
  deleteUsageBefore,
  insertUsageRows,
  type RunStatement,
  topKeysByUsage,
  type UsageValue,
  usageInsertStatements,
  usageRowValues,
} from '../../packages/server/src/usage/repository.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0); // midnight UTC
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

async function rowCount(db: Db): Promise<number> {
  const row = await db.db
    .selectFrom('api_key_usage')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

const event = (overrides: Partial<UsageEvent> = {}): UsageEvent => ({
  apiKeyId: 'k',
  outcome: 'VALID',
  endpoint: '/v1/keys/verify',
  method: 'POST',
  statusCode: 200,
  ipAddress: '127.0.0.1',
  userAgent: 'test',
  responseTimeMs: 1.4,
  ...overrides,
});

describe.each(DIALECTS)('usage recorder on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db;
  let metrics: Metrics;
  const recorders: UsageRecorder[] = [];

  beforeEach(async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    metrics = createMetrics({ defaultMetrics: false });
  });
  afterEach(async () => {
    for (const r of recorders.splice(0)) await r.close();
    await db.close();
    await database.cleanup();
  });

  function recorder(
    options: { batchSize?: number; maxBuffered?: number; flushMs?: number; retentionDays?: number; now?: () => number } = {},
  ) {
    const r = createUsageRecorder({ db, flushMs: 3_600_000, retentionDays: 0, metrics, ...options });
    recorders.push(r);
    return r;
  }

  it('buffers rows in memory and writes them on flush, in batches, with every field', async () => {
    const r = recorder({ batchSize: 5_000 });
    for (let i = 0; i < 1_200; i++) r.record(event({ apiKeyId: `k${i % 3}` }));
    expect(r.buffered()).toBe(1_200);
    expect(await rowCount(db)).toBe(0);
    await r.flush();
    expect(r.buffered()).toBe(0);
    expect(await rowCount(db)).toBe(1_200);
    const row = await db.db.selectFrom('api_key_usage').selectAll().where('api_key_id', '=', 'k1').executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      endpoint: '/v1/keys/verify',
      method: 'POST',
      status_code: 200,
      ip_address: '127.0.0.1',
      user_agent: 'test',
      response_time_ms: 1,
      outcome: 'VALID',
    });
    expect(metricValue(await metrics.render(), 'keyward_usage_rows_written_total')).toBe(1_200);
  });

  it('flushes on its own when a batch is full', async () => {
    const r = recorder({ batchSize: 10 });
    for (let i = 0; i < 10; i++) r.record(event());
    await vi.waitFor(async () => expect(await rowCount(db)).toBe(10));
  });

  it('rows arriving while a batch is written wait for the next batch instead of a transaction of their own', async () => {
    let writes = 0;
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const real = createStatementWriter(db);
    // The first write is held until released, as a slow write is while requests keep coming.
    const gated: StatementWriter = {
      run: async (statements) => {
        writes += 1;
        if (writes === 1) await gate;
        return real.run(statements);
      },
      query: (statement) => real.query(statement),
      atTurnEnd: (collect) => real.atTurnEnd(collect),
      busy: () => real.busy(),
      close: () => real.close(),
    };
    const r = createUsageRecorder({ db, writer: gated, flushMs: 3_600_000, retentionDays: 0, batchSize: 10, metrics });
    recorders.push(r);
    for (let i = 0; i < 10; i++) r.record(event()); // a full batch: its write starts and is held
    for (let tick = 0; tick < 5; tick++) await Promise.resolve();
    for (let i = 0; i < 3; i++) r.record(event()); // traffic meanwhile
    release();
    await vi.waitFor(async () => expect(await rowCount(db)).toBe(10));
    for (let tick = 0; tick < 20; tick++) await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toBe(1);
    expect(r.buffered()).toBe(3);
    await r.flush();
    expect(await rowCount(db)).toBe(13);
  });

  it('flushes on its own every flush interval', async () => {
    const r = recorder({ flushMs: 20 });
    r.record(event());
    await vi.waitFor(async () => expect(await rowCount(db)).toBe(1));
  });

  it('drops what does not fit in the bounded buffer and counts it', async () => {
    const r = recorder({ maxBuffered: 10, batchSize: 1_000 });
    for (let i = 0; i < 15; i++) r.record(event());
    expect(r.buffered()).toBe(10);
    expect(metricValue(await metrics.render(), 'keyward_usage_rows_dropped_total{reason="overflow"}')).toBe(5);
    await r.flush();
    expect(await rowCount(db)).toBe(10);
  });

  it('drops a row with no readable time, counts it, and writes the rows around it', async () => {
    const r = recorder({ batchSize: 1_000 });
    r.record(event());
    r.record(event({ createdAt: Number.NaN }));
    r.record(event());
    expect(r.buffered()).toBe(2);
    await r.flush();
    expect(await rowCount(db)).toBe(2);
    expect(metricValue(await metrics.render(), 'keyward_usage_rows_dropped_total{reason="invalid"}')).toBe(1);
  });

  it('stores text holding a NUL (which PostgreSQL refuses) with the NUL replaced, and the rows after it too', async () => {
    const r = recorder({ batchSize: 1_000 });
    r.record(event({ endpoint: '/v1/companies\u0000abc', userAgent: 'a\u0000b', apiKeyId: 'k\u0000' }));
    r.record(event());
    await r.flush();
    r.record(event());
    await r.flush();
    expect(await rowCount(db)).toBe(3);
    const stored = await db.db
      .selectFrom('api_key_usage')
      .select(['endpoint', 'user_agent', 'api_key_id'])
      .orderBy('id')
      .executeTakeFirstOrThrow();
    expect(stored).toEqual({ endpoint: '/v1/companies\uFFFDabc', user_agent: 'a\uFFFDb', api_key_id: 'k\uFFFD' });
  });

  it.runIf(dialect === 'postgres')(
    `writes each row of a refused batch alone, dropping (and counting) only those refused${dialect === 'postgres' ? '' : ' — skipped: SQLite stores any integer, so nothing here is refused'}`,
    async () => {
      const r = recorder({ batchSize: 1_000 });
      r.record(event());
      r.record(event({ statusCode: 2 ** 40 })); // beyond PostgreSQL's integer: the row itself is refused
      r.record(event());
      await r.flush();
      expect(await rowCount(db)).toBe(2);
      expect(r.buffered()).toBe(0);
      expect(metricValue(await metrics.render(), 'keyward_usage_rows_dropped_total{reason="invalid"}')).toBe(1);
      // Nothing is held back: the next batch is written as usual.
      r.record(event());
      await r.flush();
      expect(await rowCount(db)).toBe(3);
    },
  );

  it('keeps, for the next flush, the rows of a refused batch it could not write alone because the database went away', async () => {
    let runs = 0;
    const real = createStatementWriter(db);
    const failing: StatementWriter = {
      ...real,
      run: (statements) => {
        runs++;
        // The batch is refused for a row's content; then, a row later, the connection drops; then it is back.
        if (runs === 1) return Promise.reject(Object.assign(new Error('value out of range'), { code: '22003' }));
        if (runs === 3) return Promise.reject(Object.assign(new Error('Connection terminated'), { code: 'ECONNRESET' }));
        return real.run(statements);
      },
    };
    const r = createUsageRecorder({ db, writer: failing, flushMs: 3_600_000, retentionDays: 0, metrics });
    recorders.push(r);
    for (let i = 0; i < 5; i++) r.record(event());
    await r.flush();
    expect(await rowCount(db)).toBe(1); // the first row, alone; the rest is kept
    expect(r.buffered()).toBe(4);
    expect(metricValue(await metrics.render(), 'keyward_usage_rows_dropped_total{reason="error"}')).toBe(0);
    await r.flush();
    expect(await rowCount(db)).toBe(5);
    await real.close();
  });

  it('flushes what is buffered on close, and counts what is recorded after', async () => {
    const r = createUsageRecorder({ db, flushMs: 3_600_000, retentionDays: 0, metrics });
    for (let i = 0; i < 3; i++) r.record(event());
    await r.close();
    expect(await rowCount(db)).toBe(3);
    r.record(event());
    expect(metricValue(await metrics.render(), 'keyward_usage_rows_dropped_total{reason="closed"}')).toBe(1);
  });

  it('keeps a batch the database refused for the next flush, within the bound', async () => {
    let down = true;
    const real = createStatementWriter(db);
    const flaky: StatementWriter = {
      run: (statements) => (down ? Promise.reject(new Error('database down')) : real.run(statements)),
      query: (statement) => real.query(statement),
      atTurnEnd: (collect) => real.atTurnEnd(collect),
      busy: () => real.busy(),
      close: () => real.close(),
    };
    const errors: unknown[] = [];
    const r = createUsageRecorder({
      db,
      writer: flaky,
      flushMs: 3_600_000,
      retentionDays: 0,
      maxBuffered: 8,
      metrics,
      onError: (e) => errors.push(e),
    });
    recorders.push(r);
    for (let i = 0; i < 5; i++) r.record(event());
    await r.flush();
    expect(errors).toHaveLength(1);
    expect(r.buffered()).toBe(5);
    for (let i = 0; i < 5; i++) r.record(event());
    expect(r.buffered()).toBe(8);
    down = false;
    await r.flush();
    expect(await rowCount(db)).toBe(8);
    expect(metricValue(await metrics.render(), 'keyward_usage_rows_dropped_total{reason="overflow"}')).toBe(2);
  });

  it('prunes rows older than the retention period', async () => {
    const now = T0 + 10 * DAY;
    const r = recorder({ retentionDays: 7, now: () => now });
    r.record(event({ createdAt: now - 8 * DAY }));
    r.record(event({ createdAt: now - 7 * DAY - 1 }));
    r.record(event({ createdAt: now - 6 * DAY }));
    r.record(event({ createdAt: now }));
    await r.flush();
    expect(await r.prune()).toBe(2);
    expect(await rowCount(db)).toBe(2);
  });

  it('prunes once soon after start, not only after the first interval (a process restarted often still prunes)', async () => {
    const now = T0 + 10 * DAY;
    const seed = recorder({ retentionDays: 0 });
    seed.record(event({ createdAt: now - 8 * DAY }));
    seed.record(event({ createdAt: now }));
    await seed.flush();
    const r = createUsageRecorder({
      db,
      flushMs: 3_600_000,
      retentionDays: 7,
      pruneEveryMs: 3_600_000,
      firstPruneAfterMs: 50,
      metrics,
      now: () => now,
    });
    recorders.push(r);
    await vi.waitFor(async () => expect(await rowCount(db)).toBe(1), { timeout: 5_000, interval: 50 });
  });

  it('prunes through the writer: on SQLite its own thread, never the main connection', async () => {
    const now = T0 + 10 * DAY;
    const writer = createStatementWriter(db);
    const viaWriter = vi.spyOn(writer, 'query');
    const r = createUsageRecorder({ db, writer, flushMs: 3_600_000, retentionDays: 7, metrics, now: () => now });
    for (let i = 0; i < 30; i++) r.record(event({ createdAt: now - 8 * DAY + i }));
    r.record(event({ createdAt: now }));
    await r.flush();
    const onMain = vi.spyOn(db.db, 'executeQuery');
    expect(await r.prune()).toBe(30);
    // Elsewhere the writer is the database itself.
    if (dialect === 'sqlite') expect(onMain).not.toHaveBeenCalled();
    expect(viaWriter.mock.calls.length).toBeGreaterThanOrEqual(2); // one chunk (not full), then the minute counts
    expect(await rowCount(db)).toBe(1);
    await r.close();
    await writer.close();
  });

  it('keeps rows forever with a retention of 0 days', async () => {
    const r = recorder({ retentionDays: 0 });
    r.record(event({ createdAt: 1 }));
    await r.flush();
    expect(await r.prune()).toBe(0);
    expect(await rowCount(db)).toBe(1);
  });
});

describe.each(DIALECTS)('usage repository on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db;

  beforeEach(async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
    const row = (keyId: string | null, outcome: string, at: number) => ({ api_key_id: keyId, outcome, created_at: at });
    await insertUsageRows(db.db, [
      row('a', 'VALID', T0 + 10_000), // minute 0, hour 0
      row('a', 'VALID', T0 + 59_999), // minute 0
      row('a', 'RATE_LIMITED', T0 + MIN), // minute 1
      row('a', 'VALID', T0 + HOUR + 5), // hour 1
      row('a', 'USAGE_EXCEEDED', T0 + DAY), // next day
      row('b', 'VALID', T0 + 30_000),
      row(null, 'NOT_FOUND', T0 + 30_000),
    ]);
  });
  afterEach(async () => {
    await db.close();
    await database.cleanup();
  });

  it('counts a key by outcome per minute, hour and day bucket over [from, to)', async () => {
    expect(await countUsageByBucket(db.db, { keyId: 'a', from: T0, to: T0 + 2 * DAY, bucketMs: MIN })).toEqual([
      { bucket: T0, outcome: 'VALID', count: 2 },
      { bucket: T0 + MIN, outcome: 'RATE_LIMITED', count: 1 },
      { bucket: T0 + HOUR, outcome: 'VALID', count: 1 },
      { bucket: T0 + DAY, outcome: 'USAGE_EXCEEDED', count: 1 },
    ]);
    const hours = await countUsageByBucket(db.db, { keyId: 'a', from: T0, to: T0 + DAY, bucketMs: HOUR });
    expect(hours).toEqual(
      expect.arrayContaining([
        { bucket: T0, outcome: 'VALID', count: 2 },
        { bucket: T0, outcome: 'RATE_LIMITED', count: 1 },
        { bucket: T0 + HOUR, outcome: 'VALID', count: 1 },
      ]),
    );
    expect(hours).toHaveLength(3);
    const days = await countUsageByBucket(db.db, { keyId: 'a', from: T0, to: T0 + 2 * DAY, bucketMs: DAY });
    expect(days).toEqual(
      expect.arrayContaining([
        { bucket: T0, outcome: 'VALID', count: 3 },
        { bucket: T0, outcome: 'RATE_LIMITED', count: 1 },
        { bucket: T0 + DAY, outcome: 'USAGE_EXCEEDED', count: 1 },
      ]),
    );
  });

  it('totals all keys by outcome, and ranks the busiest keys', async () => {
    const totals = await countUsageByOutcome(db.db, { from: T0, to: T0 + DAY });
    expect(Object.fromEntries(totals)).toEqual({ VALID: 4, RATE_LIMITED: 1, NOT_FOUND: 1 });
    expect(await topKeysByUsage(db.db, { from: T0, to: T0 + 2 * DAY, limit: 10 })).toEqual([
      { keyId: 'a', name: null, keyPrefix: null, total: 5, outcomes: { VALID: 3, RATE_LIMITED: 1, USAGE_EXCEEDED: 1 } },
      { keyId: 'b', name: null, keyPrefix: null, total: 1, outcomes: { VALID: 1 } },
    ]);
    expect(await topKeysByUsage(db.db, { from: T0, to: T0 + 2 * DAY, limit: 1 })).toHaveLength(1);
  });

  it('counts exactly over a range that starts and ends inside a minute (the ends from the raw rows)', async () => {
    // [T0 + 20 s, T0 + MIN + 1): one VALID of minute 0 (at 59.999 s) and the RATE_LIMITED at T0 + MIN.
    const from = T0 + 20_000;
    const to = T0 + MIN + 1;
    expect(await countUsageByBucket(db.db, { keyId: 'a', from, to, bucketMs: MIN })).toEqual([
      { bucket: T0, outcome: 'VALID', count: 1 },
      { bucket: T0 + MIN, outcome: 'RATE_LIMITED', count: 1 },
    ]);
    expect(Object.fromEntries(await countUsageByOutcome(db.db, { from, to }))).toEqual({ VALID: 2, RATE_LIMITED: 1, NOT_FOUND: 1 });
    expect(await topKeysByUsage(db.db, { from, to, limit: 10 })).toEqual([
      { keyId: 'a', name: null, keyPrefix: null, total: 2, outcomes: { VALID: 1, RATE_LIMITED: 1 } },
      { keyId: 'b', name: null, keyPrefix: null, total: 1, outcomes: { VALID: 1 } },
    ]);
    // Within one minute: raw rows only.
    expect(await countUsageByBucket(db.db, { keyId: 'a', from: T0 + 5_000, to: T0 + 20_000, bucketMs: MIN })).toEqual([
      { bucket: T0, outcome: 'VALID', count: 1 },
    ]);
  });

  it('lays out a row in the same column order whether appended on the hot path or read from its columns', () => {
    const row = {
      api_key_id: 'key',
      endpoint: '/path',
      method: 'GET',
      status_code: 201,
      ip_address: '10.0.0.1',
      user_agent: 'agent',
      response_time_ms: 7,
      outcome: 'VALID',
      created_at: T0,
    };
    const appended: UsageValue[] = [];
    appendUsageRow(appended, 'key', '/path', 'GET', 201, '10.0.0.1', 'agent', 7, 'VALID', T0);
    expect(appended).toEqual(usageRowValues([row]));
  });

  it('sends the minute counts summed, in primary-key order (minute, key, outcome): instances lock rows in one order', () => {
    const rows = [
      { api_key_id: 'k2', outcome: 'VALID', created_at: T0 + MIN + 1 },
      { api_key_id: 'k2', outcome: 'NOT_FOUND', created_at: T0 + 5 },
      { api_key_id: 'k1', outcome: 'VALID', created_at: T0 + MIN + 2 },
      { api_key_id: 'k2', outcome: 'VALID', created_at: T0 + 6 },
      { api_key_id: null, outcome: 'NOT_FOUND', created_at: T0 + 7 },
      { api_key_id: 'k2', outcome: 'NOT_FOUND', created_at: T0 + 8 },
      { api_key_id: 'k1', outcome: 'VALID', created_at: T0 + MIN + 3 },
    ];
    const statements = usageInsertStatements(db.db, usageRowValues(rows));
    const counts = statements.filter((st) => st.sql.includes('api_key_usage_minutes')).flatMap((st) => [...st.parameters]);
    expect(counts).toEqual([
      ...[T0, '', 'NOT_FOUND', 1],
      ...[T0, 'k2', 'NOT_FOUND', 2],
      ...[T0, 'k2', 'VALID', 1],
      ...[T0 + MIN, 'k1', 'VALID', 2],
      ...[T0 + MIN, 'k2', 'VALID', 1],
    ]);
  });

  it('adds later batches to the same minute counts', async () => {
    await insertUsageRows(db.db, [{ api_key_id: 'a', outcome: 'VALID', created_at: T0 + 1 }]);
    await insertUsageRows(db.db, [{ api_key_id: 'a', outcome: 'VALID', created_at: T0 + 2 }]);
    const counts = await db.db
      .selectFrom('api_key_usage_minutes')
      .selectAll()
      .where('api_key_id', '=', 'a')
      .where('minute', '=', T0)
      .execute();
    expect(counts.map((c) => [c.outcome, Number(c.count)])).toEqual([['VALID', 4]]);
    expect(await countUsageByBucket(db.db, { keyId: 'a', from: T0, to: T0 + MIN, bucketMs: MIN })).toEqual([
      { bucket: T0, outcome: 'VALID', count: 4 },
    ]);
  });

  const run: RunStatement = (statement) => db.db.executeQuery(statement);

  it('deletes old raw rows in chunks, oldest first, one statement each, until a chunk is not full', async () => {
    const tables: string[] = [];
    let afterFirst: number[] = [];
    const counting: RunStatement = async (statement) => {
      tables.push(/delete from "(\w+)"/.exec(statement.sql)?.[1] ?? statement.sql);
      const result = await run(statement);
      if (tables.length === 1) {
        const left = await db.db.selectFrom('api_key_usage').select('created_at').orderBy('created_at').execute();
        afterFirst = left.map((r) => Number(r.created_at));
      }
      return result;
    };
    // Six rows before T0 + DAY, in chunks of 4: 4, then 2 (not full: done), then the minute counts.
    expect(await deleteUsageBefore(counting, db.db, T0 + DAY, 4)).toBe(6);
    expect(tables).toEqual(['api_key_usage', 'api_key_usage', 'api_key_usage_minutes']);
    // The first chunk took the four oldest.
    expect(afterFirst).toEqual([T0 + MIN, T0 + HOUR + 5, T0 + DAY]);
  });

  it('goes on while chunks come back full, and stops at the first that is not', async () => {
    const tables: string[] = [];
    const counting: RunStatement = (statement) => {
      tables.push(/delete from "(\w+)"/.exec(statement.sql)?.[1] ?? statement.sql);
      return run(statement);
    };
    // Six rows in chunks of 3: two full chunks, one empty, then the minute counts.
    expect(await deleteUsageBefore(counting, db.db, T0 + DAY, 3)).toBe(6);
    expect(tables).toEqual(['api_key_usage', 'api_key_usage', 'api_key_usage', 'api_key_usage_minutes']);
  });

  it('deletes rows older than a cut-off, and the minute counts wholly before it', async () => {
    expect(await deleteUsageBefore(run, db.db, T0 + DAY)).toBe(6);
    const minutes = await db.db.selectFrom('api_key_usage_minutes').select('minute').execute();
    expect(minutes.map((m) => Number(m.minute))).toEqual([T0 + DAY]);
  });

  it('keeps the counts of a minute the cut-off falls inside', async () => {
    // Cut at T0 + 30 s: minute T0 is only partly older, so its counts stay; the raw rows before the cut go.
    expect(await deleteUsageBefore(run, db.db, T0 + 30_000)).toBe(1);
    const minutes = await db.db.selectFrom('api_key_usage_minutes').select('minute').distinct().orderBy('minute').execute();
    expect(minutes.map((m) => Number(m.minute))[0]).toBe(T0);
    expect(await deleteUsageBefore(run, db.db, T0 + MIN)).toBe(3);
    const left = await db.db.selectFrom('api_key_usage_minutes').select('minute').distinct().orderBy('minute').execute();
    expect(left.map((m) => Number(m.minute))[0]).toBe(T0 + MIN);
  });
});
