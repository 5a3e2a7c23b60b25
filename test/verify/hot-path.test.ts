import { Writable } from 'node:stream';
import { generateKey } from '@keyward/sdk';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { buildApp } from '../../packages/server/src/http/app.js';
import { loggerOptions } from '../../packages/server/src/logger.js';
import { usageIdsFrom } from '../../packages/server/src/services/usage-recorder.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import type { NewApiKeyUsageRow } from '../../packages/server/src/store/schema.js';
import { insertUsageRows } from '../../packages/server/src/store/usage.repository.js';
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

describe('usage row ids', () => {
  const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('are UUIDv7-shaped, carry the batch time, are unique and increase within a batch', () => {
    const at = Date.UTC(2030, 0, 1);
    const id = usageIdsFrom(at);
    const ids = Array.from({ length: 5_000 }, (_, i) => id(i));
    for (const value of ids) expect(value).toMatch(UUID_V7);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(Number.parseInt(ids[0]?.replaceAll('-', '').slice(0, 12) ?? '', 16)).toBe(at);
  });

  it('differ between two batches of the same millisecond', () => {
    const at = Date.now();
    const a = usageIdsFrom(at);
    const b = usageIdsFrom(at);
    const first = new Set(Array.from({ length: 1_000 }, (_, i) => a(i)));
    for (let i = 0; i < 1_000; i++) expect(first.has(b(i))).toBe(false);
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

  it('are all written, field by field, whatever the batch size (chunks of 512, then powers of two)', async () => {
    let written = 0;
    for (const size of [1, 3, 511, 512, 513, 1_100]) {
      const id = usageIdsFrom(Date.now());
      const rows: NewApiKeyUsageRow[] = Array.from({ length: size }, (_, i) => ({
        id: id(i),
        api_key_id: i % 2 === 0 ? `k${size}` : null,
        outcome: 'VALID',
        created_at: 1_000 + i,
        ...(i % 3 === 0
          ? { endpoint: `/e${i}`, method: 'POST', status_code: 200, ip_address: '10.0.0.1', user_agent: 'ua', response_time_ms: i }
          : {}),
      }));
      await db.db.transaction().execute((trx) => insertUsageRows(trx, rows));
      written += size;
      const stored = await db.db
        .selectFrom('api_key_usage')
        .selectAll()
        .where('id', 'in', [rows[0]?.id ?? '', rows[size - 1]?.id ?? ''])
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
      .execute();
    expect(sample.map(({ id: _, ...rest }) => ({ ...rest, created_at: Number(rest.created_at) }))).toEqual(
      [511, 512, 513, 1_100].map(() => ({
        api_key_id: null,
        endpoint: '/e3',
        method: 'POST',
        status_code: 200,
        ip_address: '10.0.0.1',
        user_agent: 'ua',
        response_time_ms: 3,
        outcome: 'VALID',
        created_at: 1_003,
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
      expect(incoming?.reqId).toEqual(expect.any(String));
      expect(entries.filter((entry) => entry.reqId === incoming?.reqId).map((entry) => entry.msg)).toContain('request completed');
    } finally {
      await app.close();
      await container.close();
      await db.cleanup();
    }
  });
});
