import type { Metrics } from '../metrics.js';
import type { Db } from '../store/database.js';
import { createStatementWriter, type StatementWriter } from '../store/statement-writer.js';
import { appendUsageRow, deleteUsageBefore, USAGE_VALUES_PER_ROW, type UsageValue, usageInsertStatements } from './repository.js';
import { tagsColumn } from './tags.js';

/** One verification, or one request seen by the middleware or gateway. Never holds a key. */
export interface UsageEvent {
  apiKeyId: string | null;
  /** The verification code (`VALID`, `NOT_FOUND`, …). */
  outcome: string;
  endpoint?: string | null;
  method?: string | null;
  statusCode?: number | null;
  ipAddress?: string | null;
  userAgent?: string | null;
  responseTimeMs?: number | null;
  /** Epoch ms; defaults to now. */
  createdAt?: number;
  /** Up to 10 short strings (`route:/v1/companies`, `region:eu`); none by default. */
  tags?: readonly string[] | null | undefined;
}

/**
 * Usage rows are buffered in memory and written in batches off the hot path: `record` is a push.
 * The buffer is bounded; what does not fit is dropped and counted in metrics.
 */
export interface UsageRecorder {
  record(event: UsageEvent): void;
  /** Writes everything buffered now; resolves once written (or, on failure, kept for the next try). */
  flush(): Promise<void>;
  /** Deletes rows older than the retention period; returns how many. */
  prune(): Promise<number>;
  /** Rows waiting to be written. */
  buffered(): number;
  /** Stops the timers and flushes what is buffered. */
  close(): Promise<void>;
}

export interface UsageRecorderOptions {
  db: Db;
  /**
   * Where batches are written (a writer thread on SQLite: writing them never stops verifications). The
   * container shares one with the `last_used_at` recorder; without one the recorder makes its own and
   * closes it on close.
   */
  writer?: StatementWriter;
  /** Flush at least this often. */
  flushMs: number;
  /** Flush as soon as this many rows are waiting. */
  batchSize?: number;
  /** Most rows held in memory; more are dropped (and counted). */
  maxBuffered?: number;
  /** Rows older than this are pruned; 0 keeps them forever. */
  retentionDays: number;
  /** How often pruning runs (default hourly). */
  pruneEveryMs?: number;
  /** When pruning first runs after start, if sooner than `pruneEveryMs` (default a minute). */
  firstPruneAfterMs?: number;
  metrics?: Metrics | undefined;
  /** Told about a batch that could not be written (with no row content). */
  onError?: (error: unknown) => void;
  now?: () => number;
}

/**
 * A text column's value: at most `max` characters, and no NUL, which PostgreSQL refuses in text (a path such as
 * `/a%00b`, decoded by a framework, or a reported field, would otherwise make its whole batch fail).
 */
const clip = (value: string | null | undefined, max = Number.POSITIVE_INFINITY): string | null => {
  if (value == null) return null;
  const cut = value.length > max ? value.slice(0, max) : value;
  return cut.includes('\u0000') ? cut.replaceAll('\u0000', '\uFFFD') : cut;
};

/**
 * Errors that mean the database refused the rows themselves (a value it cannot store), not that it could not
 * write just now: PostgreSQL's data and integrity classes (22, 23), SQLite's constraint and type errors.
 */
const REFUSED_ROWS = /^(2[23][0-9A-Z]{3}|SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)\b)/;
const refusedRows = (error: unknown): boolean => REFUSED_ROWS.test(String((error as { code?: unknown } | null)?.code ?? ''));

export function createUsageRecorder(options: UsageRecorderOptions): UsageRecorder {
  const { db, metrics } = options;
  const now = options.now ?? Date.now;
  const batchSize = options.batchSize ?? 500;
  const maxBuffered = options.maxBuffered ?? 10_000;
  const writer = options.writer ?? createStatementWriter(db);
  const ownWriter = options.writer === undefined;
  // Rows are kept as their column values, end to end (no object per row): `record` stays a few pushes on the
  // hot path. The database gives each row its id (a SQLite row id, a PostgreSQL identity).
  let values: UsageValue[] = [];
  let closed = false;
  const rowsIn = (v: readonly unknown[]): number => v.length / USAGE_VALUES_PER_ROW;

  const gauge = () => metrics?.usageBuffered.set(rowsIn(values));

  // Rows that arrive while a batch is being written wait for the next trigger (a full batch, the interval,
  // or close): looping until the buffer is empty would, under steady traffic, write one tiny transaction
  // per arriving row.
  async function writeOnce(): Promise<void> {
    if (values.length === 0) return;
    do {
      const batch = values;
      values = [];
      gauge();
      try {
        await writer.run(usageInsertStatements(db.db, batch));
        metrics?.usageRowsWritten.inc(rowsIn(batch));
      } catch (error) {
        options.onError?.(error);
        // Refused for what a row holds: kept, it would fail every batch after it. Each row is tried alone, and
        // only those refused are dropped (counted as invalid).
        const unwritten = refusedRows(error) ? await writeEachAlone(batch) : batch;
        if (unwritten.length === 0) continue;
        keep(unwritten);
        return;
      }
    } while (rowsIn(values) >= batchSize || (closed && values.length > 0));
  }

  /** Keeps rows that could not be written for the next flush, if they fit beside what arrived meanwhile; drops (and counts) the rest. */
  function keep(unwritten: UsageValue[]): void {
    const room = Math.max(0, maxBuffered - rowsIn(values));
    const lost = Math.max(0, rowsIn(unwritten) - room);
    if (lost > 0) metrics?.usageRowsDropped.inc({ reason: 'error' }, lost);
    values = [...unwritten.slice(0, room * USAGE_VALUES_PER_ROW), ...values];
    gauge();
  }

  /**
   * Writes a refused batch row by row, dropping (as invalid) only rows refused for what they hold. Returns the
   * rows not written for another reason (the database went away meanwhile): that row and all after it.
   */
  async function writeEachAlone(batch: UsageValue[]): Promise<UsageValue[]> {
    for (let at = 0; at < batch.length; at += USAGE_VALUES_PER_ROW) {
      const row = batch.slice(at, at + USAGE_VALUES_PER_ROW);
      try {
        await writer.run(usageInsertStatements(db.db, row));
        metrics?.usageRowsWritten.inc();
      } catch (error) {
        if (!refusedRows(error)) return batch.slice(at);
        metrics?.usageRowsDropped.inc({ reason: 'invalid' });
      }
    }
    return [];
  }

  // One flush at a time: a flush requested during another runs right after it.
  let chain: Promise<void> = Promise.resolve();
  function flush(): Promise<void> {
    const next = chain.then(writeOnce);
    chain = next.catch(() => {});
    return next;
  }

  async function prune(): Promise<number> {
    if (options.retentionDays === 0) return 0;
    // On the writer (its thread on SQLite), in chunks: pruning never stops the event loop nor holds the
    // write lock long.
    return deleteUsageBefore((statement) => writer.query(statement), db.db, now() - options.retentionDays * 86_400_000);
  }

  const report = (error: unknown) => options.onError?.(error);
  const flushTimer = setInterval(() => void flush().catch(report), options.flushMs);
  flushTimer.unref();
  const pruneEveryMs = options.pruneEveryMs ?? 3_600_000;
  const pruneTimer = setInterval(() => void prune().catch(report), pruneEveryMs);
  pruneTimer.unref();
  // Also once soon after start: a process restarted more often than the interval would otherwise never prune.
  const firstPrune = setTimeout(() => void prune().catch(report), Math.min(pruneEveryMs, options.firstPruneAfterMs ?? 60_000));
  firstPrune.unref();

  return {
    record(event) {
      if (closed || rowsIn(values) >= maxBuffered) {
        metrics?.usageRowsDropped.inc({ reason: closed ? 'closed' : 'overflow' });
        return;
      }
      const createdAt = event.createdAt ?? now();
      // A row the database would refuse must not enter a batch: a refused batch is kept and tried again, so
      // one bad row would hold back every row after it.
      if (!Number.isFinite(createdAt)) {
        metrics?.usageRowsDropped.inc({ reason: 'invalid' });
        return;
      }
      appendUsageRow(
        values,
        clip(event.apiKeyId),
        clip(event.endpoint, 1024),
        clip(event.method, 16),
        event.statusCode ?? null,
        clip(event.ipAddress, 64),
        clip(event.userAgent, 512),
        event.responseTimeMs == null ? null : Math.round(event.responseTimeMs),
        event.outcome,
        createdAt,
        event.tags == null ? null : tagsColumn(event.tags),
      );
      if (rowsIn(values) === batchSize) void flush().catch(report);
    },
    flush,
    prune,
    buffered: () => rowsIn(values),
    async close() {
      closed = true;
      clearInterval(flushTimer);
      clearInterval(pruneTimer);
      clearTimeout(firstPrune);
      await flush();
      if (ownWriter) await writer.close();
      // What the database would not take even now is lost: count it rather than hide it.
      if (values.length > 0) metrics?.usageRowsDropped.inc({ reason: 'error' }, rowsIn(values));
      values = [];
      gauge();
    },
  };
}
