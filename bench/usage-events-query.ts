// Query plans and first-page times of GET /v1/usage/events on a large usage table, with a baseline measured in
// the same run. Run after `npm run build` (it measures the built server, as the other benchmarks do):
//
//   npx tsx bench/usage-events-query.ts                 # SQLite, 1,000,000 rows; PostgreSQL too when DATABASE_URL is postgres://
//   npx tsx bench/usage-events-query.ts --rows 200000 --pg postgres://postgres@127.0.0.1:5432/postgres
//
// For each filter shape it prints the plans of the statements a page runs (SQLite's EXPLAIN QUERY PLAN;
// PostgreSQL's EXPLAIN ANALYZE, no timings; a filter no index serves first counts its walk's budget on the index)
// and the median time of the first page (100 rows, as the API reads it: 101) against two baselines:
// the cheapest page there is (`select … order by id desc limit 100`, the primary key walked backwards), and the
// same shape before migration 0007's indexes (dropped, timed, then built again). It also times writing usage
// rows (the recorder's statements, batches of 500 rows over 5,000 keys) without and with those indexes.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CompiledQuery, type Kysely, sql } from 'kysely';
import pg from 'pg';
import { loadConfig } from '../packages/server/dist/config.js';
import { createContainer } from '../packages/server/dist/container.js';
import { type Db, openDatabase } from '../packages/server/dist/store/database.js';
import { migrateUp } from '../packages/server/dist/store/migrator.js';
import type { Database } from '../packages/server/dist/store/schema.js';
import { listUsageEvents, type UsageEventFilter } from '../packages/server/dist/usage/events.repository.js';
import { type UsageValue, usageInsertStatements } from '../packages/server/dist/usage/repository.js';
import { cleanUpAll, onCleanup } from './lib/processes.js';
import { formatCount, formatMs, formatRatio, median } from './lib/stats.js';
import { renderTable, type Table } from './lib/table.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    pg: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(`Usage: npx tsx bench/usage-events-query.ts [--rows N] [--pg postgres://…] [--rounds R]
  --rows N    usage rows to fill (default 1,000,000)
  --pg URL    also PostgreSQL (default: DATABASE_URL when it is postgres://); must be local
  --rounds R  timed runs of each query, the median is shown (default 5)
`);
  process.exit(0);
}
const ROWS = Number(values.rows);
const ROUNDS = Number(values.rounds);
if (!Number.isSafeInteger(ROWS) || ROWS < 10_000) throw new Error('--rows must be an integer of at least 10,000');
const envPg = process.env.DATABASE_URL && /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL) ? process.env.DATABASE_URL : null;
const postgresUrl = values.pg ?? envPg;
if (postgresUrl && !['127.0.0.1', 'localhost', '::1'].includes(new URL(postgresUrl).hostname)) {
  throw new Error('PostgreSQL must be local (127.0.0.1)');
}

const started = performance.now();
const log = (line: string) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);
type Dialect = 'sqlite' | 'postgres';

/** The time the rows span: 30 days back from T0. */
const T0 = Date.UTC(2030, 0, 1);
const SPAN_MS = 30 * 86_400_000;
const STEP_MS = Math.max(1, Math.floor(SPAN_MS / ROWS));
const FIRST = T0 - ROWS * STEP_MS;
/** Key slots: 1,000 keys; slots 0–9 belong to a user with 1% of the rows, 10–19 to one with 25%. */
const KEY_SLOTS = 1000;
const USER_KEYS = 10;

/**
 * The indexes as migration 0007 leaves them (`after`), and the ones it replaced (`before`, PostgreSQL's time index
 * on `created_at` alone): the "before 0007" column drops the first and builds the second, then the reverse.
 */
const INDEXES: Record<Dialect, { before: Array<{ name: string; create: string }>; after: Array<{ name: string; create: string }> }> = {
  sqlite: {
    before: [],
    after: [
      {
        name: 'api_key_usage_key_created_idx',
        create: 'create index api_key_usage_key_created_idx on api_key_usage (api_key_id, created_at)',
      },
      {
        name: 'api_key_usage_outcome_created_idx',
        create: 'create index api_key_usage_outcome_created_idx on api_key_usage (outcome, created_at)',
      },
      {
        name: 'api_key_usage_status_class_created_idx',
        create: 'create index api_key_usage_status_class_created_idx on api_key_usage ((status_code / 100), created_at)',
      },
    ],
  },
  postgres: {
    before: [{ name: 'api_key_usage_created_idx', create: 'create index api_key_usage_created_idx on api_key_usage (created_at)' }],
    after: [
      {
        name: 'api_key_usage_key_created_idx',
        create: 'create index api_key_usage_key_created_idx on api_key_usage (api_key_id, created_at, id)',
      },
      {
        name: 'api_key_usage_outcome_created_idx',
        create: 'create index api_key_usage_outcome_created_idx on api_key_usage (outcome, created_at, id)',
      },
      {
        name: 'api_key_usage_status_class_created_idx',
        create: 'create index api_key_usage_status_class_created_idx on api_key_usage ((status_code / 100), created_at, id)',
      },
      { name: 'api_key_usage_created_id_idx', create: 'create index api_key_usage_created_id_idx on api_key_usage (created_at, id)' },
      { name: 'api_key_usage_tags_idx', create: 'create index api_key_usage_tags_idx on api_key_usage using gin (tags jsonb_path_ops)' },
    ],
  },
};

/** Drops one set of indexes and builds the other; how long the building took. */
async function swapIndexes(db: Kysely<Database>, drop: Array<{ name: string }>, build: Array<{ create: string }>): Promise<number> {
  for (const index of drop) await sql.raw(`drop index ${index.name}`).execute(db);
  const t = performance.now();
  for (const index of build) await sql.raw(index.create).execute(db);
  return performance.now() - t;
}

async function freshDatabase(dialect: Dialect): Promise<string> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-usage-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    return `sqlite:${join(dir, 'keyward.db')}`;
  }
  if (!postgresUrl) throw new Error('no PostgreSQL URL');
  const name = `keyward_bench_${randomBytes(5).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create database ${name}`);
  onCleanup(() => admin(`drop database if exists ${name} with (force)`));
  const url = new URL(postgresUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Two users of ten keys each, made by the key service; their ids fill key slots 0–19. */
async function makeKeys(url: string): Promise<{ light: string; heavy: string; slots: string[] }> {
  const container = createContainer(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }));
  try {
    await migrateUp(container.db.db);
    const system = { principal: { kind: 'system' as const, name: 'bench' }, ip: null };
    const slots: string[] = [];
    const users: string[] = [];
    for (const name of ['light', 'heavy']) {
      const user = await container.users.create(system, { externalId: `bench-${name}`, tier: 'enterprise' });
      if (!user.ok) throw new Error(`could not create a user: ${user.code}`);
      users.push(user.value.id);
      for (let k = 0; k < USER_KEYS; k++) {
        const created = await container.keys.create(system, { name: `${name} ${k}`, userId: user.value.id });
        if (!created.ok) throw new Error(`could not create a key: ${created.code}`);
        slots.push(created.value.record.id);
      }
    }
    return { light: users[0] ?? '', heavy: users[1] ?? '', slots };
  } finally {
    await container.close();
  }
}

/**
 * ROWS usage rows in one INSERT … SELECT over a counter (a recursive CTE on SQLite, generate_series on PostgreSQL).
 * Row i: a key slot spread over 1,000 (every 4th row to the heavy user's 10 keys; 1% no key), mostly VALID with
 * some RATE_LIMITED and USAGE_EXCEEDED and ten EXPIRED per million; 2% 503, 11% 404; five endpoint families; half
 * the rows tagged `route:/v1/companies` + `region:eu|us`, 0.1% `rare`.
 */
async function fill(db: Kysely<Database>, dialect: Dialect, slots: string[]): Promise<void> {
  await sql`create table bench_keys (n integer primary key, id text not null)`.execute(db);
  const names = Array.from({ length: KEY_SLOTS }, (_, n) => slots[n] ?? `bench-key-${n}`);
  for (let at = 0; at < names.length; at += 200) {
    await db
      .insertInto('bench_keys' as never)
      .values(names.slice(at, at + 200).map((id, i) => ({ n: at + i, id })) as never)
      .execute();
  }
  const counter =
    dialect === 'sqlite'
      ? sql`with recursive s(i) as (select 1 union all select i + 1 from s where i < ${sql.lit(ROWS)}) select i from s`
      : sql`select i from generate_series(1::bigint, ${sql.lit(ROWS)}) as g(i)`;
  const tags =
    dialect === 'sqlite'
      ? sql`case when s.i % 2 = 0 then json_array('route:/v1/companies', case when s.i % 3 = 0 then 'region:eu' else 'region:us' end)
          when s.i % 1000 = 1 then '["rare"]' else null end`
      : sql`case when s.i % 2 = 0 then jsonb_build_array('route:/v1/companies', case when s.i % 3 = 0 then 'region:eu' else 'region:us' end)
          when s.i % 1000 = 1 then '["rare"]'::jsonb else null end`;
  await sql`
    insert into api_key_usage (api_key_id, endpoint, method, status_code, ip_address, user_agent, response_time_ms, outcome, created_at, tags)
    select
      case when s.i % 97 = 0 then null else k.id end,
      case s.i % 5 when 0 then '/v1/companies/' || (s.i % 1000) when 1 then '/v1/invoices'
        when 2 then '/v1/users/' || (s.i % 300) when 3 then '/health' else '/v1/orders' end,
      'GET',
      case when s.i % 50 = 0 then 503 when s.i % 13 = 0 then 429 when s.i % 9 = 0 then 404 else 200 end,
      '203.0.113.7', 'bench/1.0', s.i % 200,
      case when s.i % 97 = 0 then 'NOT_FOUND' when s.i % 100003 = 0 then 'EXPIRED' when s.i % 13 = 0 then 'RATE_LIMITED'
        when s.i % 211 = 0 then 'USAGE_EXCEEDED' else 'VALID' end,
      ${sql.lit(FIRST)} + s.i * ${sql.lit(STEP_MS)} + s.i % 3,
      ${tags}
    from (${counter}) as s
    join bench_keys k on k.n = case when s.i % 4 = 0 then ${sql.lit(USER_KEYS)} + (s.i / 4) % ${sql.lit(USER_KEYS)}
      else (s.i * 7919) % ${sql.lit(KEY_SLOTS)} end`.execute(db);
}

interface Shape {
  name: string;
  filter: UsageEventFilter;
  /** Worst cases: a selective filter no index serves. */
  note?: string;
}

function shapes(users: { light: string; heavy: string; slots: string[] }): Shape[] {
  const key = users.slots[0] ?? '';
  const heavyKey = users.slots[USER_KEYS] ?? '';
  const day = { from: T0 - 2 * 86_400_000, to: T0 - 86_400_000 };
  return [
    { name: 'key_id + 1-day range', filter: { scope: { kind: 'key', keyId: key }, ...day } },
    { name: 'key_id (busy key)', filter: { scope: { kind: 'key', keyId: heavyKey } } },
    { name: 'key_id + outcome=VALID', filter: { scope: { kind: 'key', keyId: key }, outcomes: ['VALID'] } },
    { name: 'user_id (10 keys, 1% of rows)', filter: { scope: { kind: 'user', userId: users.light } } },
    { name: 'user_id (10 keys, 25% of rows)', filter: { scope: { kind: 'user', userId: users.heavy } } },
    { name: 'outcome=RATE_LIMITED', filter: { scope: { kind: 'all' }, outcomes: ['RATE_LIMITED'] } },
    { name: 'outcome=EXPIRED (10 per million)', filter: { scope: { kind: 'all' }, outcomes: ['EXPIRED'] } },
    { name: 'outcome=EXPIRED,USAGE_EXCEEDED', filter: { scope: { kind: 'all' }, outcomes: ['EXPIRED', 'USAGE_EXCEEDED'] } },
    { name: 'status=5xx', filter: { scope: { kind: 'all' }, status: { class: 5 } } },
    { name: 'status=404', filter: { scope: { kind: 'all' }, status: { code: 404 } } },
    { name: 'tag=region:eu (1 row in 6)', filter: { scope: { kind: 'all' }, tag: 'region:eu' } },
    { name: 'tag=rare (1 row in 1,000)', filter: { scope: { kind: 'all' }, tag: 'rare' } },
    { name: 'tag=absent (no row)', filter: { scope: { kind: 'all' }, tag: 'absent' }, note: 'worst case' },
    { name: 'endpoint=/v1/companies/*', filter: { scope: { kind: 'all' }, endpoint: { prefix: '/v1/companies/' } } },
    { name: 'endpoint=/v1/companies/7 (exact, rare)', filter: { scope: { kind: 'all' }, endpoint: { exact: '/v1/companies/7' } } },
    { name: 'endpoint=/v1/absent* (no row)', filter: { scope: { kind: 'all' }, endpoint: { prefix: '/v1/absent' } }, note: 'worst case' },
    { name: 'no filter (admin)', filter: { scope: { kind: 'all' } } },
    { name: 'no filter, page after the middle', filter: { scope: { kind: 'all' } }, note: 'cursor' },
  ];
}

const PAGE = 101;
const BASELINE = CompiledQuery.raw(
  'select id, api_key_id, endpoint, method, status_code, ip_address, user_agent, response_time_ms, outcome, tags, created_at from api_key_usage order by id desc limit 100',
);

/** One page of `shape`, as the API reads it (its bounded walk included); `trace` is told each statement. */
async function page(db: Kysely<Database>, shape: Shape, trace?: (statement: CompiledQuery) => void): Promise<number> {
  const after = shape.note === 'cursor' ? { createdAt: FIRST + Math.floor(ROWS / 2) * STEP_MS, id: Math.floor(ROWS / 2) } : undefined;
  return (await listUsageEvents(db, shape.filter, { limit: PAGE, after }, trace)).rows.length;
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await work();
  return performance.now() - t;
}

async function explain(db: Kysely<Database>, dialect: Dialect, query: CompiledQuery): Promise<string> {
  const prefix = dialect === 'sqlite' ? 'explain query plan ' : 'explain (analyze, costs off, timing off, summary off) ';
  const { rows } = await db.executeQuery(CompiledQuery.raw(prefix + query.sql, [...query.parameters]));
  return (rows as Array<Record<string, unknown>>).map((row) => String(dialect === 'sqlite' ? row.detail : row['QUERY PLAN'])).join('\n');
}

/** Median time of each shape's first page and of the baseline, run alternately, ROUNDS times (after one warm-up). */
async function measure(db: Kysely<Database>, list: Shape[]): Promise<{ baseline: number; times: Map<string, number> }> {
  const baseline: number[] = [];
  const times = new Map<string, number[]>();
  for (let round = 0; round <= ROUNDS; round++) {
    for (const shape of list) {
      const b = await timed(() => db.executeQuery(BASELINE));
      const s = await timed(() => page(db, shape));
      if (round === 0) continue;
      baseline.push(b);
      times.set(shape.name, [...(times.get(shape.name) ?? []), s]);
    }
  }
  return { baseline: median(baseline), times: new Map([...times].map(([name, t]) => [name, median(t)])) };
}

/** Rows a second through the recorder's statements: 100 batches of 500 rows over 5,000 keys, each batch one transaction. */
async function writeRate(db: Kysely<Database>): Promise<number> {
  const batches = 100;
  const size = 500;
  const t = performance.now();
  for (let b = 0; b < batches; b++) {
    const values: UsageValue[] = [];
    for (let r = 0; r < size; r++) {
      const i = b * size + r;
      // Before FIRST: out of the way of the measured pages; deleted afterwards.
      values.push(
        `write-key-${(i * 7919) % 5000}`,
        '/v1/orders',
        'GET',
        200,
        '203.0.113.7',
        'bench/1.0',
        3,
        'VALID',
        FIRST - 86_400_000 + i,
        null,
      );
    }
    await db.transaction().execute(async (trx) => {
      for (const statement of usageInsertStatements(trx, values)) await trx.executeQuery(statement);
    });
  }
  const elapsed = performance.now() - t;
  await sql`delete from api_key_usage where created_at < ${FIRST}`.execute(db);
  await sql`delete from api_key_usage_minutes where minute < ${FIRST}`.execute(db);
  return (batches * size) / (elapsed / 1000);
}

async function runDialect(dialect: Dialect): Promise<{ tables: Table[]; plans: string }> {
  const url = await freshDatabase(dialect);
  log(`${dialect}: migrating, creating 2 users and 20 keys`);
  const users = await makeKeys(url);
  // Our own connection, without DATABASE_TIMEOUT_MS: filling and indexing take longer than a request may.
  const own: Db = openDatabase(url, { timeoutMs: 600_000 });
  const { db } = own;
  try {
    const { before: older, after: newer } = INDEXES[dialect];
    await swapIndexes(db, newer, older);
    log(`${dialect}: filling ${formatCount(ROWS)} rows (0007's indexes dropped)`);
    const t = performance.now();
    await fill(db, dialect, users.slots);
    const fillMs = performance.now() - t;
    // As autovacuum leaves a table that takes inserts (PostgreSQL 13+): statistics, and pages marked all-visible.
    if (dialect === 'postgres') await sql`vacuum (analyze) api_key_usage`.execute(db);
    const list = shapes(users);

    log(`${dialect}: timing the shapes without 0007's indexes`);
    const before = await measure(db, list);
    const writesBefore = await writeRate(db);

    log(`${dialect}: building 0007's indexes`);
    const indexMs = await swapIndexes(db, older, newer);
    if (dialect === 'postgres') await sql`vacuum (analyze) api_key_usage`.execute(db);

    log(`${dialect}: plans and timings with them`);
    const plans: string[] = [];
    for (const shape of list) {
      const statements: CompiledQuery[] = [];
      const found = await page(db, shape, (statement) => statements.push(statement));
      const explained: string[] = [];
      for (const [i, statement] of statements.entries()) {
        // A bounded walk first counts its budget on the index (`offset`), then reads the page down to where it stopped.
        const what = /\boffset\b/i.test(statement.sql) ? 'walk' : 'page';
        explained.push(`[${i + 1}: ${what}]\n${await explain(db, dialect, statement)}`);
      }
      plans.push(`-- ${dialect}: ${shape.name} (${found} rows)\n${explained.join('\n')}`);
    }
    plans.push(`-- ${dialect}: baseline\n${await explain(db, dialect, BASELINE)}`);
    const after = await measure(db, list);
    const writesAfter = await writeRate(db);

    const rows = list.map((shape) => {
      const now = after.times.get(shape.name) ?? Number.NaN;
      const was = before.times.get(shape.name) ?? Number.NaN;
      return [
        `${shape.name}${shape.note === 'worst case' ? ' †' : ''}`,
        formatMs(now),
        formatRatio(now / after.baseline),
        formatMs(was),
        formatRatio(was / now),
      ];
    });
    const queries: Table = {
      title: `GET /v1/usage/events, first page (101 rows), ${dialect}, ${formatCount(ROWS)} rows`,
      headers: ['filter', 'time', 'vs baseline', 'before 0007', 'speed-up'],
      rows,
      notes: [
        `baseline: \`select … order by id desc limit 100\` (the primary key walked backwards), median ${formatMs(after.baseline)} (${formatMs(before.baseline)} in the first phase); each figure the median of ${ROUNDS} runs, alternating with it`,
        '† a filter no index serves, matching nothing: the page walks its budget (100,000 rows), then ends empty with a cursor; "before 0007" ran the same bounded code',
        `filled in ${formatMs(fillMs)}; 0007's indexes built in ${formatMs(indexMs)}`,
      ],
    };
    const writes: Table = {
      title: `Writing usage rows, ${dialect} (recorder statements, 500-row batches over 5,000 keys)`,
      headers: ['indexes', 'rows/s', 'vs before 0007'],
      rows: [
        ['before 0007', formatCount(writesBefore), formatRatio(1)],
        ['with 0007', formatCount(writesAfter), formatRatio(writesAfter / writesBefore)],
      ],
    };
    return { tables: [queries, writes], plans: plans.join('\n\n') };
  } finally {
    await own.close();
  }
}

async function main(): Promise<void> {
  const dialects: Dialect[] = postgresUrl ? ['sqlite', 'postgres'] : ['sqlite'];
  const out: string[] = [];
  const plans: string[] = [];
  for (const dialect of dialects) {
    const result = await runDialect(dialect);
    out.push(...result.tables.map(renderTable));
    plans.push(result.plans);
  }
  if (!postgresUrl) out.push('PostgreSQL skipped: pass --pg postgres://… or set DATABASE_URL to a postgres:// URL.\n');
  process.stdout.write(`## Query plans\n\n\`\`\`text\n${plans.join('\n\n')}\n\`\`\`\n\n${out.join('\n')}`);
  log('done');
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanUpAll());
