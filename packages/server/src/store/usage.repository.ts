import { sql } from 'kysely';
import type { Executor, NewApiKeyUsageRow } from './schema.js';

// Ten columns a row: 500 rows is 5,000 bound parameters, well under SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_STATEMENT = 500;

/** Inserts usage rows with multi-row INSERTs; the caller opens the transaction. */
export async function insertUsageRows(db: Executor, rows: readonly NewApiKeyUsageRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
    await db
      .insertInto('api_key_usage')
      .values(rows.slice(i, i + ROWS_PER_STATEMENT))
      .execute();
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
