import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CompiledQuery, sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { lastUsedStatements } from '../../packages/server/src/keys/repository.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import type { NewApiKeyUsageRow } from '../../packages/server/src/store/schema.js';
import { createStatementWriter, type StatementWriter } from '../../packages/server/src/store/statement-writer.js';
import { usageInsertStatements, usageRowValues } from '../../packages/server/src/usage/repository.js';
import { buildCli, REPO } from '../helpers/cli.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

const run = promisify(execFile);

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);

function rows(n: number): NewApiKeyUsageRow[] {
  return Array.from({ length: n }, (_, i) => ({ api_key_id: `k${i % 50}`, outcome: 'VALID', created_at: T0 + i }));
}

async function count(db: Db, table: 'api_key_usage' | 'api_key_usage_minutes'): Promise<number> {
  const { rows: found } = await sql<{ n: number }>`select count(*) as n from ${sql.table(table)}`.execute(db.db);
  return Number(found[0]?.n);
}

// SQLite only: on PostgreSQL usage rows are written on the main connection pool (its driver does not block).
describe('background writes on a SQLite file go through a writer thread', () => {
  let database: FreshDatabase;
  let db: Db;
  let writer: StatementWriter;
  const write = (n: number) => writer.run(usageInsertStatements(db.db, usageRowValues(rows(n))));

  beforeEach(async () => {
    database = await freshDatabase('sqlite');
    db = openDatabase(database.url);
    writer = createStatementWriter(db);
  });
  afterEach(async () => {
    await writer.close();
    await db.close();
    await database.cleanup();
  });

  it('writes rows and their minute counts on its own connection, visible once the write resolves', async () => {
    await migrateUp(db.db);
    const transaction = vi.spyOn(db.db, 'transaction');
    await write(1_200);
    expect(transaction).not.toHaveBeenCalled();
    expect(await count(db, 'api_key_usage')).toBe(1_200);
    expect(await count(db, 'api_key_usage_minutes')).toBe(50);
  });

  it('leaves the event loop running while a batch is written', async () => {
    await migrateUp(db.db);
    let turns = 0;
    let done = false;
    const spin = (): void => {
      if (done) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    // Written on the main thread, better-sqlite3 would hold the loop for the whole batch: no turn in between.
    await write(20_000);
    done = true;
    expect(turns).toBeGreaterThan(1);
    expect(await count(db, 'api_key_usage')).toBe(20_000);
  });

  it('rejects a batch the database refuses, writing none of it, and keeps working', async () => {
    await migrateUp(db.db);
    // The rows' INSERT succeeds, the minute counts' upsert then fails: the whole batch is rolled back.
    await sql`alter table api_key_usage_minutes rename to api_key_usage_minutes_away`.execute(db.db);
    await expect(write(3)).rejects.toThrow(/no such table/);
    expect(await count(db, 'api_key_usage')).toBe(0);
    await sql`alter table api_key_usage_minutes_away rename to api_key_usage_minutes`.execute(db.db);
    await write(3);
    expect(await count(db, 'api_key_usage')).toBe(3);
  });

  it('writes a batch sent while closing exactly once, on a new thread', async () => {
    await migrateUp(db.db);
    await write(1); // the thread is running
    const closing = writer.close();
    await write(2_000);
    await closing;
    expect(await count(db, 'api_key_usage')).toBe(2_001);
  });

  it('lets a transaction on the main connection read, then write, while the thread commits', async () => {
    await migrateUp(db.db);
    let background: Promise<void> | undefined;
    await db.db.transaction().execute(async (trx) => {
      await trx.selectFrom('api_keys').selectAll().execute();
      background = write(10);
      // Time for the thread to commit in between, if the transaction had not taken the write lock at BEGIN.
      await new Promise((resolve) => setTimeout(resolve, 100));
      await trx
        .insertInto('api_keys')
        .values({
          id: 'k1',
          lineage_id: 'k1',
          name: 'k',
          key_hash: 'c'.repeat(64),
          key_prefix: 'kw_cccccccc',
          created_at: 1,
          created_by: 'test',
          updated_at: 1,
          hash_scheme: 'sha256',
          is_admin: false,
          is_active: true,
          scopes: '[]',
          metadata: '{}',
        })
        .execute();
    });
    await background;
    expect(await count(db, 'api_key_usage')).toBe(10);
  });

  it('runs the last_used_at statements there too', async () => {
    await migrateUp(db.db);
    const base = { name: 'k', key_prefix: 'kw_aaaaaaaa', created_at: 1, created_by: 'test', updated_at: 1, hash_scheme: 'sha256' };
    await db.db
      .insertInto('api_keys')
      .values([
        { ...base, id: 'k1', lineage_id: 'k1', key_hash: 'a'.repeat(64), is_admin: false, is_active: true, scopes: '[]', metadata: '{}' },
        {
          ...base,
          id: 'k2',
          lineage_id: 'k2',
          key_hash: 'b'.repeat(64),
          is_admin: false,
          is_active: true,
          scopes: '[]',
          metadata: '{}',
          last_used_at: T0 + 9,
        },
      ])
      .execute();
    await writer.run(
      lastUsedStatements(
        db.db,
        new Map([
          ['k1', T0],
          ['k2', T0],
        ]),
      ),
    );
    const found = await db.db.selectFrom('api_keys').select(['id', 'last_used_at']).orderBy('id').execute();
    // A time never moves back: k2 keeps its later one.
    expect(found.map((k) => [k.id, Number(k.last_used_at)])).toEqual([
      ['k1', T0],
      ['k2', T0 + 9],
    ]);
  });

  it('writes what was sent before closing, and starts again when used after', async () => {
    await migrateUp(db.db);
    const first = write(500);
    await writer.close();
    await first;
    expect(await count(db, 'api_key_usage')).toBe(500);
    await write(10);
    expect(await count(db, 'api_key_usage')).toBe(510);
  });

  describe('queries a request waits for (a quota spend)', () => {
    const insert = (id: number) => CompiledQuery.raw('insert into notes (id) values (?) returning id', [id]);

    beforeEach(async () => {
      await sql`create table notes (id integer primary key)`.execute(db.db);
    });

    it('sends the queries of one turn together, answers each with its rows, and commits them before answering', async () => {
      const posted = vi.spyOn(Worker.prototype, 'postMessage');
      const answers = await Promise.all([1, 2, 3].map((id) => writer.query(insert(id))));
      expect(answers.map((a) => a.rows)).toEqual([[{ id: 1 }], [{ id: 2 }], [{ id: 3 }]]);
      const groups = posted.mock.calls.filter(([message]) => (message as { queries?: unknown[] }).queries !== undefined);
      expect(groups.map(([message]) => (message as { queries: unknown[] }).queries.length)).toEqual([3]);
      // Committed: the main connection sees all three.
      expect(
        (
          await db.db
            .selectFrom('notes' as 'api_keys')
            .select(sql<number>`count(*)`.as('n'))
            .executeTakeFirst()
        )?.n,
      ).toBe(3);
      // The next turn is the next group.
      await writer.query(insert(4));
      expect(posted.mock.calls.filter(([message]) => (message as { queries?: unknown[] }).queries !== undefined)).toHaveLength(2);
      posted.mockRestore();
    });

    it('sends a statement’s text once: after that the thread knows it by number (within a bound)', async () => {
      const posted = vi.spyOn(Worker.prototype, 'postMessage');
      const texts = () =>
        posted.mock.calls.flatMap(([message]) => ((message as { queries?: { sql?: string }[] }).queries ?? []).map((q) => q.sql));
      await writer.query(insert(1));
      await writer.query(insert(2));
      expect(texts()).toEqual([insert(1).sql, undefined]);
      posted.mockClear();
      // Past the bound, a text is sent every time (and still runs).
      const many = Array.from({ length: 1_100 }, (_, i) => CompiledQuery.raw(`select ${i} as n`, []));
      const answers = await Promise.all(many.map((q) => writer.query(q)));
      expect(answers[1_099]?.rows).toEqual([{ n: 1_099 }]);
      expect((await writer.query(many[1_099] as CompiledQuery)).rows).toEqual([{ n: 1_099 }]);
      expect(texts().at(-1)).toBe('select 1099 as n');
      posted.mockRestore();
    });

    it('says it is busy while it has work: a query waiting for the end of the turn, a batch, a thread stopping', async () => {
      expect(writer.busy()).toBe(false);
      const queued = writer.query(insert(1));
      expect(writer.busy()).toBe(true);
      await queued;
      expect(writer.busy()).toBe(false);
      await migrateUp(db.db);
      const batch = write(5_000);
      expect(writer.busy()).toBe(true);
      const closing = writer.close();
      // The thread no longer takes new work, but it may still be writing the batch (holding the write lock).
      expect(writer.busy()).toBe(true);
      await batch;
      await closing;
      expect(writer.busy()).toBe(false);
    });

    it('keeps the process alive until close() has stopped the thread, even when a query answers meanwhile', async () => {
      await buildCli();
      // Run where nothing else holds the event loop open (Vitest would): a query, then close, then nothing.
      const script = `
        import { CompiledQuery } from 'kysely';
        import { openDatabase } from '${join(REPO, 'packages/server/dist/store/database.js')}';
        import { createStatementWriter } from '${join(REPO, 'packages/server/dist/store/statement-writer.js')}';
        const db = openDatabase(${JSON.stringify(database.url)});
        const writer = createStatementWriter(db);
        const answered = writer.query(CompiledQuery.raw('insert into notes (id) values (9) returning id', []));
        const closed = writer.close();
        console.log(JSON.stringify((await answered).rows));
        await closed;
        console.log('closed');
        await db.close();
      `;
      const file = join(REPO, 'packages/server/dist', `close-check-${process.pid}.mjs`);
      writeFileSync(file, script);
      try {
        const { stdout } = await run(process.execPath, [file], { cwd: REPO });
        expect(stdout.trim().split('\n')).toEqual(['[{"id":9}]', 'closed']);
      } finally {
        rmSync(file, { force: true });
      }
    });

    it('runs the groups that queue while the thread is busy in one transaction (one commit for them all)', async () => {
      await migrateUp(db.db);
      const busy = write(20_000);
      // Two groups, sent in two turns while the thread writes the batch. A savepoint opened by the first is
      // still there for the second only if both run in the same transaction.
      const opened = writer.query(CompiledQuery.raw('savepoint probe', []));
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      const released = writer.query(CompiledQuery.raw('release probe', []));
      await busy;
      await expect(opened).resolves.toBeDefined();
      await expect(released).resolves.toBeDefined();
    });

    it('refuses a query whose values cannot cross to the thread, and keeps working with the same statement', async () => {
      const text = 'select ? as v';
      await expect(writer.query(CompiledQuery.raw(text, [() => 1]))).rejects.toThrow(/could not be cloned/);
      expect((await writer.query(CompiledQuery.raw(text, [7]))).rows).toEqual([{ v: 7 }]);
      await expect(writer.run([CompiledQuery.raw('insert into notes (id) values (?)', [Symbol('x')])])).rejects.toThrow();
      await writer.run([CompiledQuery.raw('insert into notes (id) values (?)', [5])]);
      expect((await writer.query(CompiledQuery.raw('select id from notes', []))).rows).toEqual([{ id: 5 }]);
    });

    it('refuses a whole group at once when the database stays locked (no second wait for each query)', async () => {
      // Another connection holds the write lock a little longer than busy_timeout (5 s).
      const other = new Database(database.url.slice('sqlite:'.length));
      other.exec('begin immediate');
      const release = setTimeout(() => other.exec('commit'), 5_800);
      const started = Date.now();
      const results = await Promise.allSettled([writer.query(insert(1)), writer.query(insert(2)), writer.query(insert(3))]);
      const waited = Date.now() - started;
      clearTimeout(release);
      if (other.inTransaction) other.exec('commit');
      other.close();
      expect(results.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'fulfilled'))).toEqual([
        'SQLITE_BUSY',
        'SQLITE_BUSY',
        'SQLITE_BUSY',
      ]);
      expect(waited).toBeLessThan(5_800);
    }, 20_000);

    it('rejects only the query that failed: the others in its group still commit', async () => {
      const results = await Promise.allSettled([writer.query(insert(1)), writer.query(insert(1)), writer.query(insert(2))]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
      const ids = await sql<{ id: number }>`select id from notes order by id`.execute(db.db);
      expect(ids.rows.map((r) => r.id)).toEqual([1, 2]);
    });

    it('runs queries after the batches sent before them, and sends a waiting group before closing', async () => {
      await migrateUp(db.db);
      const batch = write(2_000);
      const counted = writer.query(CompiledQuery.raw('select count(*) as n from api_key_usage', []));
      const closing = writer.close();
      expect((await counted).rows).toEqual([{ n: 2_000 }]);
      await batch;
      await closing;
    });
  });
});
