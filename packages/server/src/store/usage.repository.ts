import { CompiledQuery, sql } from 'kysely';
import type { Executor, NewApiKeyUsageRow } from './schema.js';

const USAGE_COLUMNS = [
  'id',
  'api_key_id',
  'endpoint',
  'method',
  'status_code',
  'ip_address',
  'user_agent',
  'response_time_ms',
  'outcome',
  'created_at',
] as const satisfies readonly (keyof NewApiKeyUsageRow)[];

// Ten columns a row: 512 rows is 5,120 bound parameters, well under SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_STATEMENT = 512;
// Compiled only for its text: one bound parameter per column, in USAGE_COLUMNS order (Kysely keeps key order).
const PLACEHOLDER_ROW: Required<NewApiKeyUsageRow> = {
  id: '',
  api_key_id: null,
  endpoint: null,
  method: null,
  status_code: null,
  ip_address: null,
  user_agent: null,
  response_time_ms: null,
  outcome: '',
  created_at: 0,
};

// Usage rows are written on the same event loop that answers verifications, one row per verification: the
// query builder costs more per row than the database does. So the statement text for N rows is compiled
// once per dialect (the adapter decides `?` or `$n`) and reused; a batch goes out in chunks of power-of-two
// sizes, so at most 10 texts are ever kept.
const statements = new WeakMap<object, Map<number, string>>();

function insertStatement(db: Executor, rows: number): string {
  const adapter = db.getExecutor().adapter;
  let bySize = statements.get(adapter);
  if (bySize === undefined) {
    bySize = new Map();
    statements.set(adapter, bySize);
  }
  let text = bySize.get(rows);
  if (text === undefined) {
    text = db
      .insertInto('api_key_usage')
      .values(Array.from({ length: rows }, () => PLACEHOLDER_ROW))
      .compile().sql;
    bySize.set(rows, text);
  }
  return text;
}

/** Inserts usage rows with multi-row INSERTs; the caller opens the transaction. */
export async function insertUsageRows(db: Executor, rows: readonly NewApiKeyUsageRow[]): Promise<void> {
  let start = 0;
  while (start < rows.length) {
    const left = rows.length - start;
    // The largest power of two that fits (all of ROWS_PER_STATEMENT when that many are left).
    const size = left >= ROWS_PER_STATEMENT ? ROWS_PER_STATEMENT : 2 ** Math.floor(Math.log2(left));
    const parameters: unknown[] = new Array(size * USAGE_COLUMNS.length);
    let p = 0;
    for (let r = start; r < start + size; r++) {
      const row = rows[r] as NewApiKeyUsageRow;
      for (const column of USAGE_COLUMNS) parameters[p++] = row[column] ?? null;
    }
    await db.executeQuery(CompiledQuery.raw(insertStatement(db, size), parameters));
    start += size;
  }
}

export interface UsageBucketCount {
  /** Start of the bucket, epoch ms. */
  bucket: number;
  outcome: string;
  count: number;
}

/**
 * Counts a key's usage rows by outcome per bucket over [from, to). Buckets are `floor(created_at / size)
 * * size`: times are integer epoch ms in both dialects, so integer division buckets them the same way.
 */
export async function countUsageByBucket(
  db: Executor,
  filter: { keyId: string; from: number; to: number; bucketMs: number },
): Promise<UsageBucketCount[]> {
  const size = sql.lit(filter.bucketMs);
  const bucket = sql<number>`(created_at / ${size}) * ${size}`;
  const rows = await db
    .selectFrom('api_key_usage')
    .select([bucket.as('bucket'), 'outcome', (eb) => eb.fn.countAll<number>().as('count')])
    .where('api_key_id', '=', filter.keyId)
    .where('created_at', '>=', filter.from)
    .where('created_at', '<', filter.to)
    .groupBy([bucket, 'outcome'])
    .orderBy(bucket)
    .execute();
  return rows.map((r) => ({ bucket: Number(r.bucket), outcome: r.outcome, count: Number(r.count) }));
}

/** Usage rows over [from, to) by outcome, for all keys (unknown keys included, with a null key id). */
export async function countUsageByOutcome(db: Executor, filter: { from: number; to: number }): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom('api_key_usage')
    .select(['outcome', (eb) => eb.fn.countAll<number>().as('count')])
    .where('created_at', '>=', filter.from)
    .where('created_at', '<', filter.to)
    .groupBy('outcome')
    .execute();
  return new Map(rows.map((r) => [r.outcome, Number(r.count)]));
}

export interface TopKey {
  keyId: string;
  /** Name and display prefix; null when the key was deleted since. */
  name: string | null;
  keyPrefix: string | null;
  total: number;
  outcomes: Record<string, number>;
}

/** The keys with the most usage rows over [from, to), most first, with their counts by outcome. */
export async function topKeysByUsage(db: Executor, filter: { from: number; to: number; limit: number }): Promise<TopKey[]> {
  const top = await db
    .selectFrom('api_key_usage')
    .select(['api_key_id', (eb) => eb.fn.countAll<number>().as('total')])
    .where('api_key_id', 'is not', null)
    .where('created_at', '>=', filter.from)
    .where('created_at', '<', filter.to)
    .groupBy('api_key_id')
    .orderBy('total', 'desc')
    .orderBy('api_key_id')
    .limit(filter.limit)
    .execute();
  const ids = top.flatMap((r) => (r.api_key_id === null ? [] : [r.api_key_id]));
  if (ids.length === 0) return [];
  const [breakdown, keys] = await Promise.all([
    db
      .selectFrom('api_key_usage')
      .select(['api_key_id', 'outcome', (eb) => eb.fn.countAll<number>().as('count')])
      .where('api_key_id', 'in', ids)
      .where('created_at', '>=', filter.from)
      .where('created_at', '<', filter.to)
      .groupBy(['api_key_id', 'outcome'])
      .execute(),
    db.selectFrom('api_keys').select(['id', 'name', 'key_prefix']).where('id', 'in', ids).execute(),
  ]);
  return ids.map((keyId) => {
    const key = keys.find((k) => k.id === keyId);
    const outcomes: Record<string, number> = {};
    for (const row of breakdown) if (row.api_key_id === keyId) outcomes[row.outcome] = Number(row.count);
    return {
      keyId,
      name: key?.name ?? null,
      keyPrefix: key?.key_prefix ?? null,
      total: Number(top.find((r) => r.api_key_id === keyId)?.total ?? 0),
      outcomes,
    };
  });
}

/** Deletes usage rows created before `before` (epoch ms); returns how many. */
export async function deleteUsageBefore(db: Executor, before: number): Promise<number> {
  const result = await db.deleteFrom('api_key_usage').where('created_at', '<', before).executeTakeFirst();
  return Number(result.numDeletedRows);
}
