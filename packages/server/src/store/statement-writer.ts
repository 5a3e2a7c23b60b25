import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { CompiledQuery, QueryResult } from 'kysely';
import { type Db, SQLITE_PRAGMAS } from './database.js';

/**
 * Runs compiled statements (the repositories compile them) for the main thread: batches of background writes
 * (usage rows, `last_used_at`) that nobody waits on to answer a request, and single writes whose rows a
 * request does wait for (a quota spend).
 */
export interface StatementWriter {
  /** Runs `statements` in order, in one transaction; resolves once committed, rejects if rolled back. */
  run(statements: readonly CompiledQuery[]): Promise<void>;
  /**
   * Runs one statement and resolves with its result (rows, and how many rows it changed) once committed. On a SQLite file, the statements asked for
   * in one turn of the event loop (and any more that arrive while the thread is busy) run together in one
   * transaction: one commit for all, a group commit. When one fails, each runs again in a transaction of its
   * own, so it alone is refused and the others still commit (a busy or locked database refuses the whole
   * group at once). A query waits for the end of its turn: a `run` made later in the same turn is sent before
   * it. Elsewhere each runs on its own, at once.
   */
  query<R>(statement: CompiledQuery<R>): Promise<QueryResult<R>>;
  /**
   * Calls `collect` once, at the end of this turn of the event loop, before the queries of the turn are sent:
   * what it asks for with {@link query} joins them. For a caller that merges the requests of a turn (the quota
   * spender sums one key's spends into one statement).
   */
  atTurnEnd(collect: () => void): void;
  /**
   * Whether it has work sent or waiting to be sent. On SQLite, a thread writing holds the database's write
   * lock, which a write on the main connection would wait for (stopping the event loop meanwhile).
   */
  busy(): boolean;
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
  // Work asked for and not yet done: `close` waits for it (and for what it asks for in turn).
  let outstanding = 0;
  const tracked = <T>(work: () => Promise<T>): Promise<T> => {
    outstanding++;
    return work().finally(() => outstanding--);
  };
  return {
    run: (statements) =>
      tracked(() =>
        database.db.transaction().execute(async (trx) => {
          for (const statement of statements) await trx.executeQuery(statement);
        }),
      ),
    query: (statement) => tracked(() => database.db.executeQuery(statement)),
    atTurnEnd: (collect) => {
      outstanding++;
      setImmediate(() => {
        outstanding--;
        collect();
      });
    },
    busy: () => false,
    close: () => until(() => outstanding === 0),
  };
}

/**
 * Resolves once `done()` holds, checked every few milliseconds: after the answers to what was asked have been
 * handled (a timer runs after every pending promise callback), which may ask for more.
 */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 2));
}

/**
 * A thread with its own connection to a SQLite file, running batches of statements for the main thread:
 * each batch in one transaction, one batch at a time, in the order sent. better-sqlite3 is synchronous, so
 * a batch written on the main thread stops the event loop (and every verification) for as long as SQLite
 * takes; written here, it costs the main thread only the hand-over. WAL lets both connections work at once
 * (one writer at a time; the other waits up to `busy_timeout`).
 *
 * A write a request waits for (a quota spend, under load) costs SQLite far more to commit (≈ 15 µs) than to run
 * (≈ 3 µs). Run here, it neither stops the event loop nor waits, on the main thread, for the lock the thread
 * holds while it writes a batch; and the spends of one turn share one commit.
 */

// The thread's code, run with `eval`: the same text works from the built server and from the TypeScript
// sources under test (a worker file would exist in only one of them), and it holds no SQL of its own: it
// prepares and runs what the repositories compiled. CommonJS, as `eval` workers are.
const THREAD_SOURCE = `
const { parentPort, receiveMessageOnPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
for (const setting of workerData.pragmas) db.pragma(setting);
// Statements by the number the main thread gave their text; the text crosses once, with its first use.
// Beyond the main thread's bound a text comes without a number, every time, and is prepared every time.
const texts = new Map();
const prepared = new Map();
// Every text a message carries is learnt before any of it runs: a statement that fails must not leave the
// texts after it unknown.
function learn(wired) {
  for (const { ref, sql } of wired) if (ref !== undefined && sql !== undefined) texts.set(ref, sql);
}
function statement(ref, sql) {
  if (ref === undefined) return db.prepare(sql);
  let found = prepared.get(ref);
  if (found === undefined) {
    if (!texts.has(ref)) throw new Error('the SQLite writer thread was sent an unknown statement');
    found = db.prepare(texts.get(ref));
    prepared.set(ref, found);
  }
  return found;
}
const failure = (error) => ({ message: String((error && error.message) || error), code: error && error.code });
const runAll = db.transaction((statements) => {
  for (const { ref, sql, parameters } of statements) statement(ref, sql).run(parameters);
});
function resultOf({ ref, sql, parameters }) {
  const found = statement(ref, sql);
  if (found.reader) return { rows: found.all(parameters) };
  return { rows: [], changes: found.run(parameters).changes };
}
const runTogether = db.transaction((queries) => queries.map(resultOf));
const runAlone = db.transaction(resultOf);
// All in one transaction; if one fails, that transaction is rolled back and each runs in one of its own, so
// only the one that failed is refused.
// A busy or locked database refuses every query alike, after busy_timeout: running them again one by one
// would only wait that long again for each.
const WHOLE_GROUP = /^SQLITE_(BUSY|LOCKED)/;
function runQueries(queries) {
  try {
    return runTogether(queries);
  } catch (error) {
    if (WHOLE_GROUP.test(String(error && error.code))) throw error;
    return queries.map((query) => {
      try {
        return runAlone(query);
      } catch (error) {
        return { error: failure(error) };
      }
    });
  }
}
function handle(message) {
  try {
    runAll(message.statements);
    parentPort.postMessage({ id: message.id });
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: failure(error) });
  }
}
// Groups of queries that arrived while the thread was busy run together: one commit for all of them.
function answerGroups(groups) {
  const queries = groups.flatMap((group) => group.queries);
  let results;
  try {
    results = runQueries(queries);
  } catch (error) {
    for (const group of groups) parentPort.postMessage({ id: group.id, error: failure(error) });
    return;
  }
  let at = 0;
  for (const group of groups) {
    parentPort.postMessage({ id: group.id, results: results.slice(at, at + group.queries.length) });
    at += group.queries.length;
  }
}
parentPort.on('message', (first) => {
  // Everything already waiting is taken now, in order.
  const messages = [first];
  for (let next = receiveMessageOnPort(parentPort); next !== undefined; next = receiveMessageOnPort(parentPort)) messages.push(next.message);
  let groups = [];
  for (const message of messages) {
    learn(message.queries || message.statements || []);
    if (message.queries) {
      groups.push(message);
      continue;
    }
    if (groups.length > 0) answerGroups(groups);
    groups = [];
    if (message.close) {
      db.close();
      parentPort.close();
      return;
    }
    handle(message);
  }
  if (groups.length > 0) answerGroups(groups);
});
`;

interface Pending {
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

interface Thread {
  worker: Worker;
  /** Batches sent to this thread and not yet answered, by id. */
  pending: Map<number, Pending>;
  /** The statement texts this thread has been sent, by the number it knows each by. */
  refs: Map<string, number>;
  /** Set once it has been asked to stop: from then on it keeps the process alive until it has. */
  closing: boolean;
}

/** How a statement crosses to the thread: its text only the first time, a number after that. */
interface Wired {
  ref?: number;
  sql?: string;
  parameters: readonly unknown[];
}

// The texts a thread keeps (and keeps prepared) by number. The repositories' texts are few (usage chunks of
// power-of-two sizes, one quota spend, last_used_at batches of each size up to 500); past the bound a text
// is sent and prepared each time.
const MAX_REFS = 1_024;

function wire(thread: Thread, { sql, parameters }: { sql: string; parameters: readonly unknown[] }): Wired {
  let ref = thread.refs.get(sql);
  if (ref !== undefined) return { ref, parameters };
  if (thread.refs.size >= MAX_REFS) return { sql, parameters };
  ref = thread.refs.size;
  thread.refs.set(sql, ref);
  return { ref, sql, parameters };
}

interface ThreadError {
  message: string;
  code?: string;
}

interface Reply {
  id: number;
  error?: ThreadError;
  /** For a group of queries: each one's rows, or why it failed. */
  results?: ({ rows: unknown[]; changes?: number } | { error: ThreadError })[];
}

/** A query waiting for the end of the turn, when its group is sent. */
interface Queued {
  sql: string;
  parameters: readonly unknown[];
  resolve(result: QueryResult<unknown>): void;
  reject(error: Error): void;
}

const toError = ({ message, code }: ThreadError): Error => Object.assign(new Error(message), { code });

const DRIVER = createRequire(import.meta.url).resolve('better-sqlite3');

/** A writer thread for the SQLite file at `path`, started on first use (and again after it stops). */
function createSqliteWriter(path: string): StatementWriter {
  let worker: Thread | null = null;
  let nextId = 0;
  // Threads told to stop that have not yet: one may still be writing what it was sent.
  let stopping = 0;

  function start(): Thread {
    // Each thread answers for its own batches: when one stops, only what it was sent is failed (a batch sent
    // to a thread started after it is still that thread's to commit, and must not be written twice).
    const thread: Thread = {
      worker: new Worker(THREAD_SOURCE, { eval: true, workerData: { path, driver: DRIVER, pragmas: SQLITE_PRAGMAS } }),
      pending: new Map(),
      refs: new Map(),
      closing: false,
    };
    const failAll = (error: Error): void => {
      for (const waiting of thread.pending.values()) waiting.reject(error);
      thread.pending.clear();
    };
    thread.worker.on('message', (reply: Reply) => {
      const waiting = thread.pending.get(reply.id);
      thread.pending.delete(reply.id);
      // The thread keeps the process alive only while it has work (or is stopping): an idle writer never holds
      // up an exit, and `close()` is awaited to the end.
      if (thread.pending.size === 0 && !thread.closing) thread.worker.unref();
      if (reply.error) waiting?.reject(toError(reply.error));
      else waiting?.resolve(reply);
    });
    thread.worker.on('error', (error) => failAll(error));
    thread.worker.on('exit', (code) => {
      if (worker === thread) worker = null;
      failAll(new Error(`the SQLite writer thread stopped (exit code ${code})`));
    });
    thread.worker.unref();
    return thread;
  }

  /** Sends a message to the thread; if it cannot be sent (a value that cannot cross), `pending` is rejected. */
  function send(message: (thread: Thread) => Record<string, unknown>, pending: Pending): void {
    worker ??= start();
    const thread = worker;
    const id = nextId++;
    const known = thread.refs.size;
    try {
      const body = message(thread);
      thread.pending.set(id, pending);
      thread.worker.ref();
      thread.worker.postMessage({ id, ...body });
    } catch (error) {
      // The thread never learnt the texts numbered for this message: forget those numbers.
      for (const [text, ref] of thread.refs) if (ref >= known) thread.refs.delete(text);
      thread.pending.delete(id);
      if (thread.pending.size === 0 && !thread.closing) thread.worker.unref();
      pending.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  // The queries asked for in this turn of the event loop, sent together when it ends, after the collectors
  // asked to run then have added theirs.
  let group: Queued[] = [];
  let collectors: (() => void)[] = [];
  let scheduled = false;
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(sendGroup);
  };
  function sendGroup(): void {
    const collecting = collectors;
    collectors = [];
    try {
      for (const collect of collecting) collect();
    } finally {
      scheduled = false;
      sendQueries();
    }
  }
  function sendQueries(): void {
    const queries = group;
    group = [];
    if (queries.length === 0) return;
    send((thread) => ({ queries: queries.map((query) => wire(thread, query)) }), {
      resolve: ({ results = [] }) =>
        queries.forEach((query, i) => {
          const result = results[i];
          if (result === undefined) query.reject(new Error('the SQLite writer thread did not answer this query'));
          else if ('error' in result) query.reject(toError(result.error));
          else
            query.resolve(
              result.changes === undefined ? { rows: result.rows } : { rows: result.rows, numAffectedRows: BigInt(result.changes) },
            );
        }),
      reject: (error) => {
        for (const query of queries) query.reject(error);
      },
    });
  }

  return {
    run(statements) {
      return new Promise<void>((resolve, reject) => {
        // Only the text (once) and the values cross: Kysely's query tree stays here.
        send((thread) => ({ statements: statements.map((statement) => wire(thread, statement)) }), { resolve: () => resolve(), reject });
      });
    },
    query<R>(statement: CompiledQuery<R>): Promise<QueryResult<R>> {
      return new Promise<QueryResult<R>>((resolve, reject) => {
        schedule();
        group.push({
          sql: statement.sql,
          parameters: statement.parameters,
          resolve: resolve as (result: QueryResult<unknown>) => void,
          reject,
        });
      });
    },
    atTurnEnd(collect) {
      schedule();
      collectors.push(collect);
    },
    busy: () => scheduled || stopping > 0 || (worker !== null && worker.pending.size > 0),
    async close() {
      // Everything asked for goes first, with what the answers ask for in turn (one key's quota spends merged
      // into one statement are spent one by one when the sum does not fit).
      await until(() => {
        if (scheduled || group.length > 0) sendGroup();
        return !scheduled && group.length === 0 && (worker === null || worker.pending.size === 0);
      });
      const thread = worker;
      if (thread === null) return;
      worker = null;
      const exited = new Promise<void>((resolve) => thread.worker.once('exit', () => resolve()));
      thread.closing = true;
      thread.worker.ref();
      // Messages are handled in order: everything sent before this is written first.
      thread.worker.postMessage({ close: true });
      stopping++;
      await exited;
      stopping--;
    },
  };
}
