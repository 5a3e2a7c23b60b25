import { Writable } from 'node:stream';
import { generateKey } from '@keyward/sdk';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../packages/server/src/app.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { loggerOptions } from '../../packages/server/src/logger.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import type { NewApiKeyUsageRow } from '../../packages/server/src/store/schema.js';
import { insertUsageRows } from '../../packages/server/src/usage/repository.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

// The verify hot path's shortcuts must not change what it answers, writes or logs.

describe('a cached key is answered synchronously', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('verify, check and authenticate return plain values once the key is cached, promises before', async () => {
    t = await createTestApp();
    const created = await t.container.keys.create(
      { principal: { kind: 'system', name: 'test' }, ip: null },
      { name: 'hot', scopes: ['inventory:read'] },
    );
    if (!created.ok) throw new Error(created.code);
    const { key } = created.value;
    const { verifier, authenticator } = t.container;
    const caller = { principal: { kind: 'system', name: 'test' }, ip: null } as const;

    const first = verifier.verify(caller, { key });
    expect(first).toBeInstanceOf(Promise);
    expect(await first).toMatchObject({ ok: true, value: { code: 'VALID' } });

    const again = verifier.verify(caller, { key, scopes: ['inventory:read'] });
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toMatchObject({ ok: true, value: { code: 'VALID', key: { id: created.value.record.id } } });
    expect(verifier.check(key)).toMatchObject({ code: 'VALID' });
    expect(authenticator.authenticate(key)).toMatchObject({ ok: true, value: { kind: 'key' } });
    // Failures on the cached path are synchronous too, with the same codes as before.
    expect(verifier.verify(caller, { key, scopes: ['billing:read'] })).toMatchObject({ ok: true, value: { code: 'INSUFFICIENT_SCOPES' } });
    expect(verifier.check('not-a-key')).toMatchObject({ code: 'INVALID_FORMAT' });
  });
});

describe.each(DIALECTS)('usage rows on %s', (dialect) => {
  let database: FreshDatabase;
  let db: Db;
  beforeEach(async () => {
    database = await freshDatabase(dialect);
    db = openDatabase(database.url);
    await migrateUp(db.db);
  });
  afterEach(async () => {
    await db.close();
    await database.cleanup();
  });

  it('get their ids from the database: unique, and increasing in the order written', async () => {
    for (const batch of [0, 1]) {
      const rows = Array.from({ length: 600 }, (_, i) => ({ api_key_id: 'k', outcome: 'VALID', created_at: 5_000 - batch * 1_000 - i }));
      await db.db.transaction().execute((trx) => insertUsageRows(trx, rows));
    }
    const ids = (await db.db.selectFrom('api_key_usage').select(['id', 'created_at']).orderBy('id').execute()).map((r) => [
      Number(r.id),
      Number(r.created_at),
    ]);
    expect(ids).toHaveLength(1_200);
    expect(new Set(ids.map(([id]) => id)).size).toBe(1_200);
    // Written order, not time order: the second batch is older yet comes after.
    expect(ids[599]?.[1]).toBe(4_401);
    expect(ids[600]?.[1]).toBe(4_000);
  });

  it('are all written, field by field, whatever the batch size (chunks of 512, then powers of two)', async () => {
    let written = 0;
    for (const size of [1, 3, 511, 512, 513, 1_100]) {
      const rows: NewApiKeyUsageRow[] = Array.from({ length: size }, (_, i) => ({
        api_key_id: i % 2 === 0 ? `k${size}` : null,
        outcome: 'VALID',
        created_at: size * 1_000_000 + i,
        ...(i % 3 === 0
          ? { endpoint: `/e${i}`, method: 'POST', status_code: 200, ip_address: '10.0.0.1', user_agent: 'ua', response_time_ms: i }
          : {}),
      }));
      await db.db.transaction().execute((trx) => insertUsageRows(trx, rows));
      written += size;
      const stored = await db.db
        .selectFrom('api_key_usage')
        .selectAll()
        .where('created_at', 'in', [size * 1_000_000, size * 1_000_000 + size - 1])
        .execute();
      expect(stored).toHaveLength(Math.min(size, 2));
    }
    const count = await db.db
      .selectFrom('api_key_usage')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(written);
    const sample = await db.db
      .selectFrom('api_key_usage')
      .selectAll()
      .where('endpoint', '=', '/e3')
      .where('api_key_id', 'is', null)
      .orderBy('id')
      .execute();
    expect(sample.map(({ id: _, ...rest }) => ({ ...rest, created_at: Number(rest.created_at) }))).toEqual(
      [511, 512, 513, 1_100].map((size) => ({
        api_key_id: null,
        endpoint: '/e3',
        method: 'POST',
        status_code: 200,
        ip_address: '10.0.0.1',
        user_agent: 'ua',
        response_time_ms: 3,
        outcome: 'VALID',
        tags: null,
        created_at: size * 1_000_000 + 3,
      })),
    );
  });
});

describe('request loggers', () => {
  it('are made on first use and still carry the request id', async () => {
    const db = await freshDatabase('sqlite');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const config = loadConfig({ DATABASE_URL: db.url, LOG_LEVEL: 'debug' });
    const container = createContainer(config);
    await migrateUp(container.db.db);
    const app = await buildApp(container, { loggerInstance: pino(loggerOptions('debug'), sink) });
    try {
      await app.inject({ method: 'POST', url: '/v1/keys/verify', headers: { 'x-api-key': generateKey('kw') }, payload: {} });
      const entries = lines.flatMap((line) => line.trim().split('\n')).map((line) => JSON.parse(line) as Record<string, unknown>);
      const incoming = entries.find((entry) => entry.msg === 'incoming request');
      expect(incoming?.request_id).toEqual(expect.any(String));
      expect(entries.filter((entry) => entry.request_id === incoming?.request_id).map((entry) => entry.msg)).toContain('request completed');
    } finally {
      await app.close();
      await container.close();
      await db.cleanup();
    }
  });
});
