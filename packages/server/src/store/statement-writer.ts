import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { CompiledQuery } from 'kysely';
import { type Db, SQLITE_PRAGMAS } from './database.js';

/**
 * Runs batches of compiled statements (the repositories compile them), each batch in one transaction: the
 * background writes (usage rows, `last_used_at`) that nobody waits on to answer a request.
 */
export interface StatementWriter {
  /** Runs `statements` in order, in one transaction; resolves once committed, rejects if rolled back. */
  run(statements: readonly CompiledQuery[]): Promise<void>;
  /** Waits for what was sent, then lets go of what the writer holds (not the database). */
  close(): Promise<void>;
}

/**
 * The writer for `database`: for a SQLite file, a {@link createSqliteWriter} thread with its own connection;
 * otherwise (PostgreSQL, whose driver does not block the event loop, or an in-memory SQLite database no
 * other connection can see) a transaction on `database` itself.
 */
export function createStatementWriter(database: Db): StatementWriter {
  const sqlite = database.sqlite;
  if (sqlite !== undefined && !sqlite.memory) return createSqliteWriter(sqlite.name);
  return {
    run: (statements) =>
      database.db.transaction().execute(async (trx) => {
        for (const statement of statements) await trx.executeQuery(statement);
      }),
    close: async () => {},
  };
}

/**
 * A thread with its own connection to a SQLite file, running batches of statements for the main thread:
 * each batch in one transaction, one batch at a time, in the order sent. better-sqlite3 is synchronous, so
 * a batch written on the main thread stops the event loop (and every verification) for as long as SQLite
 * takes; written here, it costs the main thread only the hand-over. WAL lets both connections work at once
 * (one writer at a time; the other waits up to `busy_timeout`).
 */

// The thread's code, run with `eval`: the same text works from the built server and from the TypeScript
// sources under test (a worker file would exist in only one of them), and it holds no SQL of its own: it
// prepares and runs what the repositories compiled. CommonJS, as `eval` workers are.
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
for (const setting of workerData.pragmas) db.pragma(setting);
const prepared = new Map();
function statement(sql) {
  let found = prepared.get(sql);
  if (found === undefined) {
    found = db.prepare(sql);
    prepared.set(sql, found);
  }
  return found;
}
const runAll = db.transaction((statements) => {
  for (const { sql, parameters } of statements) statement(sql).run(parameters);
});
parentPort.on('message', (message) => {
  if (message.close) {
    db.close();
    parentPort.close();
    return;
  }
  try {
    runAll(message.statements);
    parentPort.postMessage({ id: message.id });
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: { message: String((error && error.message) || error), code: error && error.code } });
  }
});
`;

interface Pending {
  resolve(): void;
  reject(error: Error): void;
}

interface Thread {
  worker: Worker;
  /** Batches sent to this thread and not yet answered, by id. */
  pending: Map<number, Pending>;
}

interface Reply {
  id: number;
  error?: { message: string; code?: string };
}

const DRIVER = createRequire(import.meta.url).resolve('better-sqlite3');

/** A writer thread for the SQLite file at `path`, started on first use (and again after it stops). */
function createSqliteWriter(path: string): StatementWriter {
  let worker: Thread | null = null;
  let nextId = 0;

  function start(): Thread {
    // Each thread answers for its own batches: when one stops, only what it was sent is failed (a batch sent
    // to a thread started after it is still that thread's to commit, and must not be written twice).
    const thread: Thread = {
      worker: new Worker(THREAD_SOURCE, { eval: true, workerData: { path, driver: DRIVER, pragmas: SQLITE_PRAGMAS } }),
      pending: new Map(),
    };
    const failAll = (error: Error): void => {
      for (const waiting of thread.pending.values()) waiting.reject(error);
      thread.pending.clear();
    };
    thread.worker.on('message', (reply: Reply) => {
      const waiting = thread.pending.get(reply.id);
      thread.pending.delete(reply.id);
      // The thread keeps the process alive only while it has work: an idle writer never holds up an exit.
      if (thread.pending.size === 0) thread.worker.unref();
      if (reply.error) waiting?.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
      else waiting?.resolve();
    });
    thread.worker.on('error', (error) => failAll(error));
    thread.worker.on('exit', (code) => {
      if (worker === thread) worker = null;
      failAll(new Error(`the SQLite writer thread stopped (exit code ${code})`));
    });
    thread.worker.unref();
    return thread;
  }

  return {
    run(statements) {
      worker ??= start();
      const thread = worker;
      const id = nextId++;
      return new Promise<void>((resolve, reject) => {
        thread.pending.set(id, { resolve, reject });
        thread.worker.ref();
        // Only the text and the values cross: Kysely's query tree stays here.
        thread.worker.postMessage({ id, statements: statements.map(({ sql, parameters }) => ({ sql, parameters })) });
      });
    },
    async close() {
      const thread = worker;
      if (thread === null) return;
      worker = null;
      const exited = new Promise<void>((resolve) => thread.worker.once('exit', () => resolve()));
      thread.worker.ref();
      // Messages are handled in order: everything sent before this is written first.
      thread.worker.postMessage({ close: true });
      await exited;
    },
  };
}
