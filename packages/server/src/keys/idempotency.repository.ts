import type { Executor, IdempotencyKeyRow } from '../store/schema.js';

export interface IdempotencyRecord {
  caller: string;
  idempotencyKey: string;
  requestHash: string;
  keyId: string;
  createdAt: number;
}

function toRecord(row: IdempotencyKeyRow): IdempotencyRecord {
  return {
    caller: row.caller,
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    keyId: row.key_id,
    createdAt: Number(row.created_at),
  };
}

/**
 * Records `record` unless (caller, idempotency key) is held by a row created at or after `expiredBefore`; a row
 * older than that is replaced. Returns whether it was recorded. Exact under concurrency on both databases: on
 * PostgreSQL an insert meeting another transaction's uncommitted row waits for it, then inserts (rolled back) or
 * does nothing (committed); SQLite write transactions run one at a time.
 */
export async function reserveIdempotencyKey(db: Executor, record: IdempotencyRecord, expiredBefore: number): Promise<boolean> {
  const row = await db
    .insertInto('idempotency_keys')
    .values({
      caller: record.caller,
      idempotency_key: record.idempotencyKey,
      request_hash: record.requestHash,
      key_id: record.keyId,
      created_at: record.createdAt,
    })
    .onConflict((oc) =>
      oc
        .columns(['caller', 'idempotency_key'])
        .doUpdateSet((eb) => ({
          request_hash: eb.ref('excluded.request_hash'),
          key_id: eb.ref('excluded.key_id'),
          created_at: eb.ref('excluded.created_at'),
        }))
        .where('idempotency_keys.created_at', '<', expiredBefore),
    )
    .returning('caller')
    .executeTakeFirst();
  return row !== undefined;
}

export async function findIdempotencyKey(db: Executor, caller: string, idempotencyKey: string): Promise<IdempotencyRecord | undefined> {
  const row = await db
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('caller', '=', caller)
    .where('idempotency_key', '=', idempotencyKey)
    .executeTakeFirst();
  return row && toRecord(row);
}

/** Deletes the rows created before `expiredBefore`; returns how many. */
export async function pruneIdempotencyKeys(db: Executor, expiredBefore: number): Promise<number> {
  const result = await db.deleteFrom('idempotency_keys').where('created_at', '<', expiredBefore).executeTakeFirst();
  return Number(result.numDeletedRows);
}
