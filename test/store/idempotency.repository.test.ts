import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import {
  findIdempotencyKey,
  type IdempotencyRecord,
  pruneIdempotencyKeys,
  reserveIdempotencyKey,
} from '../../packages/server/src/keys/idempotency.repository.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateDown, migrateUp } from '../../packages/server/src/store/migrator.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

const DAY_MS = 24 * 60 * 60 * 1000;

const record = (overrides: Partial<IdempotencyRecord> = {}): IdempotencyRecord => ({
  caller: 'api_key:k1',
  idempotencyKey: 'idem-1',
  requestHash: 'a'.repeat(64),
  keyId: 'key-1',
  createdAt: 1_000_000,
  ...overrides,
});

describe.each(DIALECTS)('idempotency keys on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db;
  afterEach(async () => {
    await db?.close();
    await database.cleanup();
  });

  async function open(): Promise<void> {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
  }

  it('reserves a (caller, idempotency key) once; another caller has its own; an expired one is replaced', async () => {
    await open();
    const first = record();
    expect(await reserveIdempotencyKey(db.db, first, first.createdAt - DAY_MS)).toBe(true);
    expect(await reserveIdempotencyKey(db.db, record({ keyId: 'key-2' }), first.createdAt - DAY_MS)).toBe(false);
    expect(await findIdempotencyKey(db.db, first.caller, first.idempotencyKey)).toEqual(first);
    expect(await reserveIdempotencyKey(db.db, record({ caller: 'user:u1', keyId: 'key-3' }), 0)).toBe(true);
    // A day later the row has expired: the same pair is recorded anew.
    const later = record({ keyId: 'key-4', requestHash: 'b'.repeat(64), createdAt: first.createdAt + DAY_MS + 1 });
    expect(await reserveIdempotencyKey(db.db, later, later.createdAt - DAY_MS)).toBe(true);
    expect(await findIdempotencyKey(db.db, first.caller, first.idempotencyKey)).toEqual(later);
  });

  it('prunes only rows older than the cut-off', async () => {
    await open();
    await reserveIdempotencyKey(db.db, record({ idempotencyKey: 'old', createdAt: 10 }), 0);
    await reserveIdempotencyKey(db.db, record({ idempotencyKey: 'new', createdAt: 20 }), 0);
    expect(await pruneIdempotencyKeys(db.db, 15)).toBe(1);
    expect(await findIdempotencyKey(db.db, 'api_key:k1', 'old')).toBeUndefined();
    expect(await findIdempotencyKey(db.db, 'api_key:k1', 'new')).toBeDefined();
  });

  it('migration 0006 goes down (the table is dropped) and up again', async () => {
    await open();
    const newer = ['0009-events', '0008-key-lineage', '0007-usage-events'];
    for (const name of newer) expect(await migrateDown(db.db)).toEqual([name]);
    expect(await migrateDown(db.db)).toEqual(['0006-idempotency']);
    await expect(sql`select count(*) from idempotency_keys`.execute(db.db)).rejects.toThrow();
    expect(await migrateUp(db.db)).toEqual(['0006-idempotency', ...newer.reverse()]);
    await expect(sql`select count(*) from idempotency_keys`.execute(db.db)).resolves.toBeDefined();
  });
});

describe.skipIf(!DIALECTS.includes('postgres'))('idempotency key reservations racing on PostgreSQL', () => {
  let database: FreshDatabase;
  let db: Db;
  afterEach(async () => {
    await db?.close();
    await database.cleanup();
  });

  /** Holds a reservation in an open transaction while `during` runs, then commits or rolls back. */
  async function holding(end: 'commit' | 'rollback', during: () => Promise<boolean>): Promise<boolean> {
    let second: Promise<boolean> | undefined;
    await db.db
      .transaction()
      .execute(async (trx) => {
        expect(await reserveIdempotencyKey(trx, record(), 0)).toBe(true);
        second = during();
        // The second reservation waits for this transaction: it has not answered yet.
        const early = await Promise.race([second.then(() => 'answered'), new Promise((r) => setTimeout(() => r('waiting'), 300))]);
        expect(early).toBe('waiting');
        if (end === 'rollback') throw new Error('roll back');
      })
      .catch((error: unknown) => {
        if (!(error instanceof Error && error.message === 'roll back')) throw error;
      });
    if (!second) throw new Error('the second reservation never started');
    return second;
  }

  it('a reservation made while another is uncommitted waits: refused when it commits, recorded when it rolls back', async () => {
    database = await freshDatabase('postgres');
    db = openDatabase(database.url);
    await migrateUp(db.db);
    expect(await holding('commit', () => reserveIdempotencyKey(db.db, record({ keyId: 'other' }), 0))).toBe(false);
    await sql`delete from idempotency_keys`.execute(db.db);
    expect(await holding('rollback', () => reserveIdempotencyKey(db.db, record({ keyId: 'other' }), 0))).toBe(true);
    expect((await findIdempotencyKey(db.db, 'api_key:k1', 'idem-1'))?.keyId).toBe('other');
  });
});
