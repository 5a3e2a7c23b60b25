import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey, hashApiKey } from '@keyward/sdk';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Database, NewApiKeyRow } from '../packages/server/dist/store/schema.js';
import { type Container, openContainer, verifierOf } from './lib/keyward.js';
import { onCleanup } from './lib/processes.js';
import { formatNs, formatRatio, percentile, verdict } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface UncachedOptions {
  /** Stored keys in the small and the large database (10k vs 1M; 10k vs 100k with --quick). */
  sizes: [number, number];
  /** Real keys (plaintext kept in this process's memory only) spread through each database. */
  realKeys: number;
  rounds: number;
  samplesPerRound: number;
  postgresUrl: string | null;
  log: (line: string) => void;
}

export const UNCACHED_TARGET = 1.3;
const SEED_CHUNKS = 20;

type Dialect = 'sqlite' | 'postgres';

interface Store {
  dialect: Dialect;
  size: number;
  url: string;
  /** The plaintext of the real keys stored in this database. */
  keys: string[];
  seedMs: number;
  drop(): Promise<void>;
}

/**
 * A new empty database: a temporary SQLite file, or a new PostgreSQL database next to the given one
 * (dropped afterwards). A database, not a schema: Keyward's migrator (Kysely's) looks for its bookkeeping
 * tables in every schema, so a second schema in the same database would be taken as already migrated.
 */
async function freshDatabase(dialect: Dialect, postgresUrl: string | null): Promise<{ url: string; drop: () => Promise<void> }> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-db-'));
    const drop = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    return { url: `sqlite:${join(dir, 'keyward.db')}`, drop };
  }
  if (postgresUrl === null) throw new Error('no PostgreSQL URL');
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
  const drop = onCleanup(() => admin(`drop database if exists ${name} with (force)`));
  const url = new URL(postgresUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop };
}

/** Row `i` of the seed: ids sort by insertion order, as UUIDv7 ids do. */
function idOf(i: number): string {
  return `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`;
}

/**
 * `count` rows with random 64-hex hashes (no key exists for them), generated inside the database in one
 * INSERT … SELECT: the fastest way to fill either dialect without a COPY client.
 */
async function insertRandomRows(db: Kysely<Database>, dialect: Dialect, firstId: number, count: number, now: number): Promise<void> {
  if (count <= 0) return;
  const last = firstId + count - 1;
  if (dialect === 'sqlite') {
    await sql`
      insert into api_keys (id, lineage_id, name, key_hash, key_prefix, hash_scheme, is_admin, scopes, metadata, is_active, created_at, created_by, updated_at)
      with recursive seq(i) as (select ${firstId} union all select i + 1 from seq where i < ${last})
      select printf('00000000-0000-7000-8000-%012d', i), printf('00000000-0000-7000-8000-%012d', i), 'seed', lower(hex(randomblob(32))), 'kw_' || substr(lower(hex(randomblob(4))), 1, 8),
             'sha256', 0, '["bench:read"]', '{}', 1, ${now}, 'bench', ${now}
      from seq`.execute(db);
  } else {
    await sql`
      insert into api_keys (id, lineage_id, name, key_hash, key_prefix, hash_scheme, is_admin, scopes, metadata, is_active, created_at, created_by, updated_at)
      select '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 'seed', md5(i::text || random()::text) || md5(random()::text),
             'kw_' || substr(md5(random()::text), 1, 8), 'sha256', false, '["bench:read"]', '{}', true, ${now}, 'bench', ${now}
      from generate_series(${firstId}::bigint, ${last}::bigint) as g(i)`.execute(db);
  }
}

/**
 * Drops the secondary indexes of `api_keys` and returns the statements that recreate them exactly as the
 * migrations made them: a bulk load followed by one sorted index build is several times faster than a
 * million random-order index inserts, and keeps seeding 1M keys well under a minute.
 */
async function secondaryIndexes(db: Kysely<Database>, dialect: Dialect): Promise<{ name: string; definition: string }[]> {
  const found =
    dialect === 'sqlite'
      ? await sql<{ name: string; definition: string }>`
          select name, sql as definition from sqlite_master where type = 'index' and tbl_name = 'api_keys' and sql is not null`.execute(db)
      : await sql<{ name: string; definition: string }>`
          select indexname as name, indexdef as definition from pg_indexes
          where tablename = 'api_keys' and schemaname = current_schema()
            and not exists (select 1 from pg_constraint c where c.conname = indexname)`.execute(db);
  return found.rows;
}

async function dropSecondaryIndexes(db: Kysely<Database>, dialect: Dialect): Promise<string[]> {
  const found = await secondaryIndexes(db, dialect);
  if (!found.some((index) => index.name === 'api_keys_key_hash_uq')) throw new Error('api_keys_key_hash_uq not found: the schema changed');
  for (const index of found) await sql`drop index ${sql.id(index.name)}`.execute(db);
  return found.map((index) => index.definition);
}

function realRow(id: number, key: string, now: number): NewApiKeyRow {
  return {
    id: idOf(id),
    lineage_id: idOf(id),
    name: 'bench real key',
    key_hash: hashApiKey(key),
    key_prefix: key.slice(0, 11),
    hash_scheme: 'sha256',
    is_admin: false,
    scopes: '["bench:read"]',
    metadata: '{}',
    is_active: true,
    created_at: now,
    created_by: 'bench',
    updated_at: now,
  };
}

/**
 * A database holding `size` keys: random rows plus `realKeys` real keys spread evenly through it (so the
 * real keys' rows sit in pages all over the table, not in the first few), in 20 transactions; the
 * secondary indexes are rebuilt at the end.
 */
async function seed(
  dialect: Dialect,
  size: number,
  realKeys: number,
  postgresUrl: string | null,
  log: (l: string) => void,
): Promise<Store> {
  const started = performance.now();
  const { url, drop } = await freshDatabase(dialect, postgresUrl);
  const container = await openContainer(url);
  const keys = Array.from({ length: realKeys }, () => generateKey('kw'));
  try {
    const db = container.db.db;
    const now = Date.now();
    const indexes = await dropSecondaryIndexes(db, dialect);
    let id = 0;
    for (let chunk = 0; chunk < SEED_CHUNKS; chunk++) {
      const randomCount =
        Math.floor(((size - realKeys) * (chunk + 1)) / SEED_CHUNKS) - Math.floor(((size - realKeys) * chunk) / SEED_CHUNKS);
      const real = keys.slice(Math.floor((realKeys * chunk) / SEED_CHUNKS), Math.floor((realKeys * (chunk + 1)) / SEED_CHUNKS));
      await db.transaction().execute(async (trx) => {
        await insertRandomRows(trx, dialect, id, randomCount, now);
        id += randomCount;
        for (let i = 0; i < real.length; i += 100) {
          await trx
            .insertInto('api_keys')
            .values(real.slice(i, i + 100).map((key) => realRow(id++, key, now)))
            .execute();
        }
      });
    }
    for (const definition of indexes) await sql.raw(definition).execute(db);
    if ((await secondaryIndexes(db, dialect)).length !== indexes.length) throw new Error('recreating the indexes failed');
    // Move the freshly written pages out of SQLite's WAL, so look-ups read the database file as a
    // long-running server would; give PostgreSQL's planner statistics for the new size.
    if (dialect === 'sqlite') await sql`pragma wal_checkpoint(TRUNCATE)`.execute(db);
    await sql`analyze`.execute(db);
    const count = await db
      .selectFrom('api_keys')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    if (Number(count.n) !== size) throw new Error(`seeded ${count.n} keys, expected ${size}`);
  } catch (error) {
    await container.close();
    await drop();
    throw error;
  }
  await container.close();
  const seedMs = performance.now() - started;
  log(`uncached: ${dialect} seeded with ${size.toLocaleString('en-US')} keys in ${(seedMs / 1000).toFixed(1)} s`);
  return { dialect, size, url, keys, seedMs, drop };
}

interface Measured {
  p50: number;
  p99: number;
  mean: number;
}

/** Verification latency with the cache off, small and large database measured in alternating blocks. */
async function measure(stores: [Store, Store], options: UncachedOptions): Promise<{ label: string; results: [Measured, Measured] }> {
  // Both containers stay open, so the two sizes are measured under the same conditions, block by block.
  const containers: Container[] = [];
  try {
    for (const store of stores) containers.push(await openContainer(store.url, { CACHE_MAX_ENTRIES: '0' }));
    const samples: number[][] = [[], []];
    const verifiers = containers.map((c) => verifierOf(c).verify);
    let invalid = 0;
    const block = async (which: number, n: number) => {
      const verify = verifiers[which];
      const keys = stores[which]?.keys ?? [];
      if (!verify) return;
      for (let i = 0; i < n; i++) {
        const key = keys[Math.floor(Math.random() * keys.length)] ?? '';
        const start = process.hrtime.bigint();
        const code = await verify(key);
        const ns = Number(process.hrtime.bigint() - start);
        if (code !== 'VALID') invalid++;
        samples[which]?.push(ns);
      }
    };
    // Warm-up: every real key verified once in each database, so the measured rounds see the steady state
    // of a working set of real keys (index and table pages in the database's and the OS's caches), not the
    // first touch of each page.
    for (let which = 0; which < 2; which++) {
      const verify = verifiers[which];
      for (const key of stores[which]?.keys ?? []) if (verify && (await verify(key)) !== 'VALID') invalid++;
    }
    for (let round = 0; round < options.rounds; round++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const which of order) await block(which, options.samplesPerRound);
    }
    if (invalid > 0) throw new Error(`${invalid} verifications of real keys were not VALID`);
    const hits = containers.reduce((n, c) => n + c.keyCache.stats().hits, 0);
    if (hits > 0) throw new Error(`the key cache answered ${hits} verifications although CACHE_MAX_ENTRIES=0`);
    const summarise = (ns: number[]): Measured => ({
      p50: percentile(ns, 50),
      p99: percentile(ns, 99),
      mean: ns.reduce((a, b) => a + b, 0) / ns.length,
    });
    const label = containers[0] ? verifierOf(containers[0]).label : '';
    return { label, results: [summarise(samples[0] ?? []), summarise(samples[1] ?? [])] };
  } finally {
    for (const c of containers) await c.close();
  }
}

function label(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1_000}k`;
}

/** Uncached verification at two database sizes, on SQLite and (when given) PostgreSQL. */
export async function runUncached(options: UncachedOptions): Promise<Table> {
  const dialects: Dialect[] = options.postgresUrl ? ['sqlite', 'postgres'] : ['sqlite'];
  const [small, large] = options.sizes;
  const rows: string[][] = [];
  const notes: string[] = [];
  let verifyLabel = '';
  for (const dialect of dialects) {
    const stores: Store[] = [];
    try {
      for (const size of options.sizes) stores.push(await seed(dialect, size, options.realKeys, options.postgresUrl, options.log));
      const [s, l] = stores;
      if (!s || !l) throw new Error('seeding failed');
      options.log(`uncached: ${dialect}: measuring ${label(small)} vs ${label(large)}`);
      const measured = await measure([s, l], options);
      verifyLabel = measured.label;
      const [ms, ml] = measured.results;
      const ratio50 = ml.p50 / ms.p50;
      const ratio99 = ml.p99 / ms.p99;
      const name = dialect === 'sqlite' ? 'SQLite' : 'PostgreSQL';
      rows.push([name, label(small), formatNs(ms.p50), formatNs(ms.p99), formatNs(ms.mean), '1.00× / 1.00×', '', '']);
      rows.push([
        name,
        label(large),
        formatNs(ml.p50),
        formatNs(ml.p99),
        formatNs(ml.mean),
        `${formatRatio(ratio50)} / ${formatRatio(ratio99)}`,
        `≤ ${UNCACHED_TARGET}×`,
        verdict(ratio50 <= UNCACHED_TARGET && ratio99 <= UNCACHED_TARGET),
      ]);
      notes.push(
        `${name}: seeding took ${(s.seedMs / 1000).toFixed(1)} s (${label(small)}) and ${(l.seedMs / 1000).toFixed(1)} s (${label(large)}).`,
      );
    } finally {
      for (const store of stores) await store.drop();
    }
  }
  return {
    title: `Uncached verification: ${label(small)} vs ${label(large)} keys stored (cache off: CACHE_MAX_ENTRIES=0)`,
    headers: ['Database', 'keys stored', 'p50', 'p99', 'mean', `vs ${label(small)} (p50 / p99)`, 'target', ''],
    rows,
    notes: [
      `${(options.rounds * options.samplesPerRound).toLocaleString('en-US')} sequential in-process verifications (${verifyLabel}) per size, random among ${options.realKeys.toLocaleString('en-US')} real keys spread through the table; each real key verified once per database first (warm-up), then the two sizes alternate in ${options.rounds} blocks.`,
      ...notes,
      ...(options.postgresUrl ? [] : ['PostgreSQL skipped: pass --pg postgres://… or set DATABASE_URL to a postgres:// URL.']),
    ],
  };
}
