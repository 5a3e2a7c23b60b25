import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import SQLite from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  Kysely,
  type KyselyPlugin,
  OperationNodeTransformer,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type PostgresCursor,
  PostgresDialect,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
  type PrimitiveValueListNode,
  type QueryResult,
  type RootOperationNode,
  type SqliteDatabase,
  SqliteDialect,
  SqliteDriver,
  sql,
  type UnknownRow,
  type ValueNode,
} from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';
import { DatabaseTimeoutError } from './unavailable.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Db {
  db: Kysely<Database>;
  dialect: Dialect;
  /**
   * SQLite only: the better-sqlite3 connection under `db`. The statement writer reads which file it is open
   * on, to open its own connection there. Statements run on it directly would join a Kysely transaction
   * open on it (`inTransaction`), so nothing else does.
   */
  sqlite?: SQLite.Database;
  close(): Promise<void>;
}

const toSqlite = (v: unknown): unknown => (typeof v === 'boolean' ? (v ? 1 : 0) : v);

class BooleanToInteger extends OperationNodeTransformer {
  protected override transformValue(node: ValueNode): ValueNode {
    return { ...super.transformValue(node), value: toSqlite(node.value) };
  }
  protected override transformPrimitiveValueList(node: PrimitiveValueListNode): PrimitiveValueListNode {
    return { ...super.transformPrimitiveValueList(node), values: node.values.map(toSqlite) };
  }
}

/** better-sqlite3 cannot bind booleans: this binds them as 1/0, so repositories write plain booleans. */
export class SqliteBooleanPlugin implements KyselyPlugin {
  readonly #transformer = new BooleanToInteger();
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node);
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

/**
 * Kysely prepares every statement anew; better-sqlite3 statements are reusable, and preparing costs about as
 * much as running a small query. This keeps the most recent prepared statements by SQL text (bounded), which
 * matters for the usage-row inserts and uncached key look-ups that run all the time.
 */
export function withStatementCache(sqlite: SQLite.Database, max = 256): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    close: () => {
      statements.clear();
      sqlite.close();
    },
    prepare(text: string) {
      let statement = statements.get(text);
      if (statement) {
        // Refresh its place so the map's insertion order stays least-recently-used first.
        statements.delete(text);
      } else {
        statement = sqlite.prepare(text);
        if (statements.size >= max) {
          const oldest = statements.keys().next();
          if (!oldest.done) statements.delete(oldest.value);
        }
      }
      statements.set(text, statement);
      return statement;
    },
  };
}

/** The file path of a `sqlite:` URL (`sqlite:./data/keyward.db`, `sqlite::memory:`). */
export function sqlitePath(url: string): string {
  return url.replace(/^sqlite:(\/\/)?/, '');
}

/** How long a connection, a wait for a pooled connection, or a query may take (`DATABASE_TIMEOUT_MS`). */
export const DEFAULT_DATABASE_TIMEOUT_MS = 2_000;

/**
 * Settings of a connection to a SQLite file: WAL so readers and the one writer work at once, a wait of at most
 * `busyTimeoutMs` instead of an error while another connection writes, and a 64 MiB page cache. WAL is kept in
 * the file; the others hold per connection.
 */
export function sqlitePragmas(busyTimeoutMs: number = DEFAULT_DATABASE_TIMEOUT_MS): string[] {
  return ['journal_mode = WAL', 'synchronous = NORMAL', 'foreign_keys = ON', `busy_timeout = ${busyTimeoutMs}`, 'cache_size = -65536'];
}

/** {@link sqlitePragmas} with the default timeout (the background writer thread's connection). */
export const SQLITE_PRAGMAS: readonly string[] = sqlitePragmas();

/**
 * Transactions that take SQLite's write lock when they begin (`BEGIN IMMEDIATE`), not at their first write.
 * Another connection writes to the same file (the background writer thread): a deferred transaction that read
 * first and then wrote would fail with SQLITE_BUSY_SNAPSHOT whenever that connection committed in between,
 * where an immediate one waits its turn (busy_timeout) before reading anything.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    super({ database });
    this.#database = database;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver({ database: this.#database });
  }
}

export interface OpenDatabaseOptions {
  poolSize?: number;
  /**
   * PostgreSQL: the longest a new connection, a wait for a pooled one, or a query may take before it fails as
   * unavailable. SQLite: its busy timeout (SQLite is a file: the one wait it has is for another writer).
   */
  timeoutMs?: number;
}

/**
 * Opens the database named by `url`: `sqlite:PATH` (folder created, WAL mode) or `postgres://…`.
 * PostgreSQL `bigint` columns come back as numbers (all ours are epoch milliseconds or counters).
 */
export function openDatabase(url: string, options: OpenDatabaseOptions = {}): Db {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DATABASE_TIMEOUT_MS;
  if (url.startsWith('sqlite:')) {
    const path = sqlitePath(url);
    if (path !== ':memory:') mkdirSync(dirname(resolve(path)), { recursive: true });
    const sqlite = new SQLite(path);
    for (const setting of sqlitePragmas(timeoutMs)) sqlite.pragma(setting);
    const db = new Kysely<Database>({
      dialect: new ImmediateSqliteDialect(withStatementCache(sqlite)),
      plugins: [new SqliteBooleanPlugin()],
    });
    return { db, dialect: 'sqlite', sqlite, close: () => db.destroy() };
  }
  const types = {
    getTypeParser: (oid: number, format?: 'text' | 'binary') =>
      oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format),
  };
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    types,
    // Bounds both a new connection and the wait for a free pooled one: during an outage requests fail fast
    // (503, or stale cached keys) instead of hanging.
    connectionTimeoutMillis: timeoutMs,
    keepAlive: true,
  });
  // A dropped idle connection must not crash the process; the next query reports the outage instead.
  pool.on('error', () => {});
  // pg-pool drops its error listener while a client is checked out, and Kysely adds none: a connection
  // lost mid-query would then be an uncaught exception that kills the process. The query itself still
  // fails (and is answered 503); a dead client is not returned to the pool.
  pool.on('connect', (client) => client.on('error', () => {}));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: timedPool(pool, timeoutMs) }) });
  return { db, dialect: 'postgres', close: () => db.destroy() };
}

/** `pool`, whose connections fail a query not answered within `timeoutMs` (see {@link TimedClient}). */
function timedPool(pool: pg.Pool, timeoutMs: number): PostgresPool {
  // One wrapper per connection, as Kysely keeps its own state per client object it is handed.
  const wrappers = new WeakMap<pg.PoolClient, TimedClient>();
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (wrapper === undefined) {
        wrapper = new TimedClient(client, timeoutMs);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

/**
 * A pooled connection whose queries fail with {@link DatabaseTimeoutError} when not answered within the
 * timeout. A database that keeps the connection open but answers nothing (a dropped route, a stalled server)
 * would otherwise hold the request for good: TCP keepalive takes minutes to notice. A connection that timed out
 * is not trusted again: its later queries fail at once and it is closed, not returned to the pool, when released
 * (what it sent may still be answered, out of turn, by a server that was only slow). No server-side
 * `statement_timeout` is set: poolers such as PgBouncer refuse it as a startup parameter.
 */
class TimedClient implements PostgresPoolClient {
  readonly #client: pg.PoolClient;
  readonly #queries: PostgresPoolClient;
  readonly #timeoutMs: number;
  #broken: DatabaseTimeoutError | null = null;

  constructor(client: pg.PoolClient, timeoutMs: number) {
    this.#client = client;
    this.#queries = client;
    this.#timeoutMs = timeoutMs;
  }

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(
    statement: string | PostgresCursor<R>,
    parameters: ReadonlyArray<unknown> = [],
  ): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    // Streams (`.stream()`, which Keyward does not use) read at their consumer's pace: not timed.
    if (typeof statement !== 'string') return this.#queries.query(statement);
    if (this.#broken !== null) return Promise.reject(this.#broken);
    const running = this.#queries.query<R>(statement, parameters);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#broken = new DatabaseTimeoutError('a database query', this.#timeoutMs);
        reject(this.#broken);
      }, this.#timeoutMs);
      timer.unref();
      // Settling again after the timeout changes nothing; the late answer or error is dropped.
      running.then(
        (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  release(): void {
    this.#client.release(this.#broken ?? undefined);
  }
}

/** A trivial query: resolves when the database answers. */
export async function ping(db: Kysely<Database>): Promise<void> {
  await sql`select 1`.execute(db);
}
