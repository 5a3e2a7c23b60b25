import { displayPrefix, generateKey, hashApiKey, parseKey } from '@keyward/sdk';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAuditEntries } from '../../packages/server/src/audit/repository.js';
import { insertUserIfAbsent } from '../../packages/server/src/users/repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

type Json = Record<string, unknown>;
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE' | 'PUT';

const FUTURE = '2031-06-01T12:00:00.000Z';
// These tests present bad keys on purpose; the brute-force guard that would block them has its own tests.
const QUIET_GUARD = { AUTH_FAILURES_PER_MINUTE: '0' };
const VIEW_FIELDS = [
  'id',
  'lineage_id',
  'name',
  'description',
  'key_prefix',
  'hash_scheme',
  'user_id',
  'is_admin',
  'scopes',
  'metadata',
  'is_active',
  'status',
  'created_at',
  'created_by',
  'updated_at',
  'last_used_at',
  'expires_at',
  'revoked_at',
  'rolled_from',
  'rate_limit',
  'quota',
].sort();

async function send(
  t: TestApp,
  method: Method,
  url: string,
  options: { key?: string | null; payload?: unknown; via?: 'bearer' | 'x-api-key' } = {},
): Promise<LightMyRequestResponse> {
  const key = options.key === undefined ? t.adminKey : options.key;
  const headers = key === null ? {} : options.via === 'x-api-key' ? { 'x-api-key': key } : bearer(key);
  return t.app.inject({
    method,
    url,
    headers,
    ...(options.payload === undefined ? {} : { payload: options.payload as Json }),
  });
}

const json = (response: LightMyRequestResponse): Json => response.json() as Json;

/** Status and problem code of an error response, after checking it is problem+json. */
function problemOf(response: LightMyRequestResponse): { status: number; code: string; fields: string[] } {
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json() as { code: string; status: number; errors?: { field: string }[] };
  expect(body.status).toBe(response.statusCode);
  return { status: response.statusCode, code: body.code, fields: (body.errors ?? []).map((e) => e.field) };
}

async function count(t: TestApp, table: 'api_keys' | 'audit_log' | 'users'): Promise<number> {
  const row = await t.container.db.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

async function addUser(t: TestApp, tier = 'enterprise'): Promise<string> {
  const now = Date.now();
  const user = await insertUserIfAbsent(t.container.db.db, {
    id: uuidv7(),
    externalId: `ext-${uuidv7()}`,
    email: null,
    tier,
    createdAt: now,
    updatedAt: now,
  });
  if (!user) throw new Error('user not inserted');
  return user.id;
}

async function idOf(t: TestApp, key: string): Promise<string> {
  return String(json(await send(t, 'GET', '/v1/api-keys/verify/current', { key })).id);
}

describe.each(DIALECTS)('API keys on %s', (dialect) => {
  // One app per dialect (building one costs ~0.5 s): every test makes its own keys and reads only those,
  // or counts rows before and after. Tests that need an empty database or break it build their own.
  describe('lifecycle', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await createTestApp({ dialect, env: QUIET_GUARD });
    });
    afterAll(async () => t?.close());

    async function withOwnApp(work: (own: TestApp) => Promise<void>): Promise<void> {
      const own = await createTestApp({ dialect, env: QUIET_GUARD });
      try {
        await work(own);
      } finally {
        await own.close();
      }
    }

    it('creates a key with every field and returns it once, with cache-control: no-store', async () => {
      const adminId = await idOf(t, t.adminKey);
      const response = await send(t, 'POST', '/v1/api-keys', {
        payload: {
          name: 'full',
          description: 'every field',
          is_admin: false,
          scopes: ['inventory:read', 'orders:*', 'inventory:read'],
          expires_at: FUTURE,
          metadata: { team: 'ops', nested: { list: [1, 'two', null, true] }, unicode: 'é€😀' },
          prefix: 'sk_live',
          rate_limit: { limit: 100, window_seconds: 60 },
          quota: { remaining: 1000, refill: { amount: 500, interval: 'month' } },
        },
      });
      expect(response.statusCode).toBe(201);
      expect(response.headers['cache-control']).toBe('no-store');
      const body = json(response);
      const key = String(body.key);
      expect(parseKey(key)?.prefix).toBe('sk_live');
      expect(Object.keys(body).sort()).toEqual([...VIEW_FIELDS, 'key'].sort());
      expect(body).toMatchObject({
        name: 'full',
        description: 'every field',
        key_prefix: displayPrefix(key),
        hash_scheme: 'sha256',
        user_id: null,
        is_admin: false,
        scopes: ['inventory:read', 'orders:*'],
        metadata: { team: 'ops', nested: { list: [1, 'two', null, true] }, unicode: 'é€😀' },
        is_active: true,
        status: 'active',
        created_by: adminId,
        last_used_at: null,
        expires_at: FUTURE,
        revoked_at: null,
        rolled_from: null,
        rate_limit: { limit: 100, window_seconds: 60 },
        quota: { remaining: 1000, refill: { amount: 500, interval: 'month' } },
      });
      expect(body.key_prefix).toMatch(/^sk_live_[A-Za-z0-9]{8}$/);
      expect(Date.parse(String(body.created_at))).toBeGreaterThan(Date.now() - 60_000);
      expect(response.body).not.toContain(hashApiKey(key));

      // The key works, and the record it reads back matches.
      const current = await send(t, 'GET', '/v1/api-keys/verify/current', { key, via: 'x-api-key' });
      expect(current.statusCode).toBe(200);
      // last_used_at may already have moved: using the key is what sets it.
      const { key: _once, last_used_at: _used, ...view } = body;
      expect(json(current)).toMatchObject(view);
    });

    it('never returns the key or its hash again: get, list, verify/current', async () => {
      const { key, id } = await createKey(t, { name: 'secretive', scopes: ['keyward:keys:read'] });
      const readings = [
        await send(t, 'GET', `/v1/api-keys/${id}`),
        await send(t, 'GET', '/v1/api-keys'),
        await send(t, 'GET', '/v1/api-keys?include_inactive=true'),
        await send(t, 'GET', '/v1/api-keys/verify/current', { key }),
        await send(t, 'GET', `/v1/api-keys/${id}`, { key }),
        await send(t, 'PATCH', `/v1/api-keys/${id}`, { payload: { name: 'renamed' } }),
        await send(t, 'POST', `/v1/api-keys/${id}/deactivate`),
      ];
      for (const response of readings) {
        expect(response.statusCode).toBe(200);
        expect(response.body).not.toContain(key);
        expect(response.body).not.toContain(key.slice(11));
        expect(response.body).not.toContain(hashApiKey(key));
        expect(response.body).not.toContain('key_hash');
      }
      expect(Object.keys(json(readings[0] as LightMyRequestResponse)).sort()).toEqual(VIEW_FIELDS);
    });

    it('creates keys with the default prefix, for a user, with minimal fields', async () => {
      const minimal = await send(t, 'POST', '/v1/api-keys', { payload: { name: 'minimal' } });
      expect(minimal.statusCode).toBe(201);
      expect(json(minimal)).toMatchObject({
        key: expect.stringMatching(/^kw_[A-Za-z0-9]{49}$/),
        description: null,
        scopes: [],
        metadata: {},
        expires_at: null,
        rate_limit: null,
        quota: null,
        is_admin: false,
      });
      const userId = await addUser(t);
      const owned = await send(t, 'POST', '/v1/api-keys', { payload: { name: 'owned', user_id: userId } });
      expect(owned.statusCode).toBe(201);
      expect(json(owned).user_id).toBe(userId);
      const admin = await send(t, 'POST', '/v1/api-keys', { payload: { name: 'another admin', is_admin: true }, via: 'x-api-key' });
      expect(admin.statusCode).toBe(201);
      const adminKey = String(json(admin).key);
      expect((await send(t, 'POST', '/v1/api-keys', { key: adminKey, payload: { name: 'by the second admin' } })).statusCode).toBe(201);
    });

    it('lists newest first, paginated by cursor, with include_inactive and user_id', () =>
      withOwnApp(async (t) => {
        const userId = await addUser(t);
        const made: string[] = [];
        for (let i = 0; i < 5; i++) made.push((await createKey(t, { name: `k${i}`, ...(i === 4 ? { user_id: userId } : {}) })).id);
        const adminId = await idOf(t, t.adminKey);
        const all = [...made].reverse().concat(adminId);

        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const response = await send(t, 'GET', `/v1/api-keys?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
          expect(response.statusCode).toBe(200);
          const page = json(response) as { data: Json[]; next_cursor: string | null };
          expect(page.data.length).toBeLessThanOrEqual(2);
          seen.push(...page.data.map((k) => String(k.id)));
          cursor = page.next_cursor;
          pages++;
        } while (cursor !== null && pages < 10);
        expect(seen).toEqual(all);
        expect(pages).toBe(3);

        const ids = (response: LightMyRequestResponse) => (json(response) as { data: Json[] }).data.map((k) => String(k.id));
        expect(ids(await send(t, 'GET', '/v1/api-keys?limit=100'))).toEqual(all);
        expect(json(await send(t, 'GET', '/v1/api-keys?limit=100')).next_cursor).toBeNull();
        expect(json(await send(t, 'GET', '/v1/api-keys?limit=6')).next_cursor).toBeNull();

        const [deactivated, revoked] = [made[1] ?? '', made[2] ?? ''];
        await send(t, 'POST', `/v1/api-keys/${deactivated}/deactivate`);
        await send(t, 'POST', `/v1/api-keys/${revoked}/revoke`);
        const active = all.filter((id) => id !== deactivated && id !== revoked);
        expect(ids(await send(t, 'GET', '/v1/api-keys'))).toEqual(active);
        expect(ids(await send(t, 'GET', '/v1/api-keys?include_inactive=false'))).toEqual(active);
        expect(ids(await send(t, 'GET', '/v1/api-keys?include_inactive=true'))).toEqual(all);
        expect(ids(await send(t, 'GET', `/v1/api-keys?user_id=${userId}`))).toEqual([made[4]]);
        expect(ids(await send(t, 'GET', `/v1/api-keys?user_id=${uuidv7()}`))).toEqual([]);

        // Pages over inactive keys too, and the default page size is 20.
        const first = json(await send(t, 'GET', '/v1/api-keys?include_inactive=true&limit=3')) as { data: Json[]; next_cursor: string };
        const second = json(await send(t, 'GET', `/v1/api-keys?include_inactive=true&limit=3&cursor=${first.next_cursor}`)) as {
          data: Json[];
          next_cursor: string | null;
        };
        expect([...first.data, ...second.data].map((k) => k.id)).toEqual(all);
        expect(second.next_cursor).toBeNull();
      }));

    it('gets a key by id; an unknown id is 404 KEY_NOT_FOUND on every route', async () => {
      const { id } = await createKey(t, { name: 'findable' });
      const found = await send(t, 'GET', `/v1/api-keys/${id}`);
      expect(found.statusCode).toBe(200);
      expect(json(found)).toMatchObject({ id, name: 'findable' });

      const unknown = uuidv7();
      const attempts: [Method, string, unknown?][] = [
        ['GET', `/v1/api-keys/${unknown}`],
        ['PATCH', `/v1/api-keys/${unknown}`, { name: 'x' }],
        ['POST', `/v1/api-keys/${unknown}/deactivate`],
        ['POST', `/v1/api-keys/${unknown}/activate`],
        ['POST', `/v1/api-keys/${unknown}/revoke`],
        ['DELETE', `/v1/api-keys/${unknown}`],
        ['GET', '/v1/api-keys/not-a-uuid'],
      ];
      for (const [method, url, payload] of attempts) {
        const response = await send(t, method, url, payload === undefined ? {} : { payload });
        expect(problemOf(response), `${method} ${url}`).toMatchObject({ status: 404, code: 'KEY_NOT_FOUND' });
      }
    });

    it('patches name, description, metadata, scopes, expiry, rate limit and quota; null clears', async () => {
      const { id, body: created } = await createKey(t, {
        name: 'before',
        description: 'old',
        metadata: { a: 1 },
        rate_limit: { limit: 1, window_seconds: 1 },
        quota: { remaining: 5 },
      });
      const patched = await send(t, 'PATCH', `/v1/api-keys/${id}`, {
        payload: {
          name: 'after',
          description: 'new',
          metadata: { b: { c: [2] } },
          scopes: ['billing:read', 'billing:read'],
          expires_at: FUTURE,
          rate_limit: { limit: 10, window_seconds: 60 },
          quota: { remaining: 7, refill: { amount: 7, interval: 'day' } },
        },
      });
      expect(patched.statusCode).toBe(200);
      expect(json(patched)).toMatchObject({
        id,
        name: 'after',
        description: 'new',
        metadata: { b: { c: [2] } },
        scopes: ['billing:read'],
        expires_at: FUTURE,
        rate_limit: { limit: 10, window_seconds: 60 },
        quota: { remaining: 7, refill: { amount: 7, interval: 'day' } },
        created_at: created.created_at,
      });
      expect(Date.parse(String(json(patched).updated_at))).toBeGreaterThanOrEqual(Date.parse(String(created.updated_at)));
      expect(json(await send(t, 'GET', `/v1/api-keys/${id}`))).toEqual(json(patched));

      // Only the fields sent change; null clears the optional ones.
      const cleared = await send(t, 'PATCH', `/v1/api-keys/${id}`, {
        payload: { expires_at: null, description: null, rate_limit: null, quota: null },
      });
      expect(cleared.statusCode).toBe(200);
      expect(json(cleared)).toMatchObject({
        name: 'after',
        metadata: { b: { c: [2] } },
        scopes: ['billing:read'],
        expires_at: null,
        description: null,
        rate_limit: null,
        quota: null,
      });
      const emptied = await send(t, 'PATCH', `/v1/api-keys/${id}`, { payload: { metadata: {}, scopes: [] } });
      expect(json(emptied)).toMatchObject({ metadata: {}, scopes: [] });
    });

    it('deactivates and activates; a deactivated key does not authenticate', async () => {
      const { key, id } = await createKey(t, { name: 'toggle' });
      const off = await send(t, 'POST', `/v1/api-keys/${id}/deactivate`);
      expect(off.statusCode).toBe(200);
      expect(json(off)).toMatchObject({ is_active: false, status: 'inactive', revoked_at: null });
      expect(problemOf(await send(t, 'GET', '/v1/api-keys/verify/current', { key }))).toMatchObject({ status: 401, code: 'KEY_DISABLED' });
      // Deactivating again changes nothing.
      expect(json(await send(t, 'POST', `/v1/api-keys/${id}/deactivate`))).toEqual(json(off));

      const on = await send(t, 'POST', `/v1/api-keys/${id}/activate`);
      expect(on.statusCode).toBe(200);
      expect(json(on)).toMatchObject({ is_active: true, status: 'active' });
      expect((await send(t, 'GET', '/v1/api-keys/verify/current', { key })).statusCode).toBe(200);
      expect(json(await send(t, 'POST', `/v1/api-keys/${id}/activate`))).toEqual(json(on));
    });

    it('revokes permanently: activate, deactivate and patch are 409 KEY_IS_REVOKED', async () => {
      const { key, id } = await createKey(t, { name: 'doomed' });
      const revoked = await send(t, 'POST', `/v1/api-keys/${id}/revoke`);
      expect(revoked.statusCode).toBe(200);
      expect(json(revoked)).toMatchObject({ is_active: false, status: 'revoked', revoked_at: expect.any(String) });
      expect(problemOf(await send(t, 'GET', '/v1/api-keys/verify/current', { key }))).toMatchObject({ status: 401, code: 'KEY_REVOKED' });

      for (const [method, url, payload] of [
        ['POST', `/v1/api-keys/${id}/activate`, undefined],
        ['POST', `/v1/api-keys/${id}/deactivate`, undefined],
        ['PATCH', `/v1/api-keys/${id}`, { name: 'zombie' }],
      ] as const) {
        const response = await send(t, method, url, payload ? { payload } : {});
        expect(problemOf(response), `${method} ${url}`).toMatchObject({ status: 409, code: 'KEY_IS_REVOKED' });
      }
      // Revoking again is harmless and keeps the first revocation time.
      expect(json(await send(t, 'POST', `/v1/api-keys/${id}/revoke`))).toEqual(json(revoked));
      expect(json(await send(t, 'GET', `/v1/api-keys/${id}`))).toEqual(json(revoked));
      expect(problemOf(await send(t, 'GET', '/v1/api-keys/verify/current', { key }))).toMatchObject({ code: 'KEY_REVOKED' });
    });

    it('deletes: 204 with no body, then 404; the key stops working', async () => {
      const { key, id } = await createKey(t, { name: 'gone' });
      const deleted = await send(t, 'DELETE', `/v1/api-keys/${id}`);
      expect(deleted.statusCode).toBe(204);
      expect(deleted.body).toBe('');
      expect(problemOf(await send(t, 'GET', `/v1/api-keys/${id}`))).toMatchObject({ status: 404, code: 'KEY_NOT_FOUND' });
      expect(problemOf(await send(t, 'DELETE', `/v1/api-keys/${id}`))).toMatchObject({ status: 404, code: 'KEY_NOT_FOUND' });
      expect(problemOf(await send(t, 'GET', '/v1/api-keys/verify/current', { key }))).toMatchObject({
        status: 401,
        code: 'INVALID_CREDENTIALS',
      });
    });

    it('writes an audit row for every change, with no secret in `changes`', async () => {
      const adminId = await idOf(t, t.adminKey);
      const { key, id } = await createKey(t, { name: 'audited', scopes: ['a:b'], metadata: { m: 1 } });
      await send(t, 'PATCH', `/v1/api-keys/${id}`, { payload: { name: 'audited 2', metadata: { m: 2 } } });
      await send(t, 'POST', `/v1/api-keys/${id}/deactivate`);
      await send(t, 'POST', `/v1/api-keys/${id}/deactivate`); // no change, no row
      await send(t, 'POST', `/v1/api-keys/${id}/activate`);
      await send(t, 'POST', `/v1/api-keys/${id}/revoke`);
      await send(t, 'DELETE', `/v1/api-keys/${id}`);

      const entries = (await listAuditEntries(t.container.db.db, { targetId: id, limit: 100 })).reverse();
      expect(entries.map((e) => e.action)).toEqual([
        'key.create',
        'key.update',
        'key.deactivate',
        'key.activate',
        'key.revoke',
        'key.delete',
      ]);
      for (const entry of entries) {
        expect(entry).toMatchObject({ actorType: 'api_key', actorId: adminId, targetType: 'api_key', targetId: id });
        expect(entry.ip).toEqual(expect.any(String));
      }
      expect(entries[0]?.changes).toMatchObject({ name: 'audited', scopes: ['a:b'], is_admin: false });
      expect(entries[1]?.changes).toEqual({ name: { from: 'audited', to: 'audited 2' }, metadata: { from: { m: 1 }, to: { m: 2 } } });

      // Bootstrap is audited too; and no row anywhere holds a key or a hash.
      const everything = await listAuditEntries(t.container.db.db, { limit: 1000 });
      expect(everything.map((e) => e.action)).toContain('admin.bootstrap');
      const text = JSON.stringify(everything);
      for (const secret of [key, t.adminKey]) {
        expect(text).not.toContain(secret);
        expect(text).not.toContain(secret.slice(11));
        expect(text).not.toContain(hashApiKey(secret));
      }
    });

    it('shows fields in audit `changes` as the API does: snake_case names, ISO times', async () => {
      const expires = '2031-01-02T03:04:05.000Z';
      const { id } = await createKey(t, { name: 'shown', expires_at: expires });
      await send(t, 'PATCH', `/v1/api-keys/${id}`, {
        payload: { expires_at: null, rate_limit: { limit: 5, window_seconds: 60 }, quota: { remaining: 10 } },
      });
      await send(t, 'POST', `/v1/api-keys/${id}/deactivate`);
      await send(t, 'POST', `/v1/api-keys/${id}/revoke`);
      const [created, updated, deactivated, revoked] = (await listAuditEntries(t.container.db.db, { targetId: id, limit: 10 })).reverse();
      expect(created?.changes).toMatchObject({ expires_at: expires });
      expect(updated?.changes).toEqual({
        expires_at: { from: expires, to: null },
        rate_limit: { from: null, to: { limit: 5, window_seconds: 60 } },
        quota: { from: null, to: { remaining: 10, refill: null, last_refill_at: null } },
      });
      expect(deactivated?.changes).toEqual({ is_active: { from: true, to: false } });
      expect(revoked?.changes).toMatchObject({ revoked_at: { from: null, to: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) } });
    });

    it('writes each change and its audit row in one transaction: a failed audit write changes nothing', () =>
      withOwnApp(async (t) => {
        const { id, body: before } = await createKey(t, { name: 'steady' });
        const keysBefore = await count(t, 'api_keys');
        const db = t.container.db.db;
        await sql`alter table audit_log rename to audit_log_away`.execute(db);
        try {
          const attempts: [Method, string, unknown?][] = [
            ['POST', '/v1/api-keys', { name: 'not created' }],
            ['PATCH', `/v1/api-keys/${id}`, { name: 'not renamed' }],
            ['POST', `/v1/api-keys/${id}/deactivate`],
            ['POST', `/v1/api-keys/${id}/revoke`],
            ['DELETE', `/v1/api-keys/${id}`],
          ];
          for (const [method, url, payload] of attempts) {
            const response = await send(t, method, url, payload === undefined ? {} : { payload });
            expect(problemOf(response), `${method} ${url}`).toMatchObject({ status: 500, code: 'INTERNAL_ERROR' });
            // 5xx bodies never carry internals.
            expect(response.body).not.toMatch(/audit|sql|relation|table/i);
          }
        } finally {
          await sql`alter table audit_log_away rename to audit_log`.execute(db);
        }
        expect(await count(t, 'api_keys')).toBe(keysBefore);
        const { key: _once, ...view } = before;
        expect(json(await send(t, 'GET', `/v1/api-keys/${id}`))).toEqual(view);
      }));

    it('lets a non-admin key grant only what it holds, and never touch admin keys', async () => {
      const adminId = await idOf(t, t.adminKey);
      const writer = await createKey(t, { name: 'writer', scopes: ['keyward:keys:write', 'inventory:*'] });
      const reader = await createKey(t, { name: 'reader', scopes: ['keyward:keys:read', 'inventory:*'] });
      const victim = await createKey(t, { name: 'victim', scopes: ['inventory:read'] });
      const keysBefore = await count(t, 'api_keys');
      const auditBefore = await count(t, 'audit_log');

      const denied: [Method, string, unknown?][] = [
        ['POST', '/v1/api-keys', { name: 'admin?', is_admin: true }],
        ['POST', '/v1/api-keys', { name: 'reader?', scopes: ['keyward:keys:read'] }],
        ['POST', '/v1/api-keys', { name: 'verify?', scopes: ['keyward:verify'] }],
        ['POST', '/v1/api-keys', { name: 'other?', scopes: ['billing:read'] }],
        ['POST', '/v1/api-keys', { name: 'star?', scopes: ['*'] }],
        ['PATCH', `/v1/api-keys/${victim.id}`, { scopes: ['billing:read'] }],
        ['PATCH', `/v1/api-keys/${writer.id}`, { scopes: ['*'] }],
        ['PATCH', `/v1/api-keys/${adminId}`, { name: 'pwned' }],
        ['POST', `/v1/api-keys/${adminId}/deactivate`],
        ['POST', `/v1/api-keys/${adminId}/revoke`],
        ['DELETE', `/v1/api-keys/${adminId}`],
      ];
      for (const [method, url, payload] of denied) {
        const response = await send(t, method, url, { key: writer.key, ...(payload === undefined ? {} : { payload }) });
        expect(problemOf(response), `${method} ${url} ${JSON.stringify(payload)}`).toMatchObject({ status: 403, code: 'FORBIDDEN' });
      }
      for (const payload of [{ name: 'r' }, { name: 'r', scopes: ['inventory:read'] }]) {
        const response = await send(t, 'POST', '/v1/api-keys', { key: reader.key, payload });
        expect(problemOf(response)).toMatchObject({ status: 403, code: 'FORBIDDEN' });
      }
      expect(problemOf(await send(t, 'PATCH', `/v1/api-keys/${victim.id}`, { key: reader.key, payload: { name: 'x' } }))).toMatchObject({
        status: 403,
      });
      expect(await count(t, 'api_keys')).toBe(keysBefore);
      expect(await count(t, 'audit_log')).toBe(auditBefore);
      expect(json(await send(t, 'GET', `/v1/api-keys/${adminId}`))).toMatchObject({ name: 'Initial admin key', status: 'active' });

      // What it holds it may grant, wildcards included; and it may manage non-admin keys.
      for (const scopes of [['inventory:read'], ['inventory:*'], ['keyward:keys:write'], []]) {
        const response = await send(t, 'POST', '/v1/api-keys', { key: writer.key, payload: { name: 'granted', scopes } });
        expect(response.statusCode, JSON.stringify(scopes)).toBe(201);
        expect(json(response)).toMatchObject({ scopes, is_admin: false, created_by: writer.id });
      }
      const patched = await send(t, 'PATCH', `/v1/api-keys/${victim.id}`, { key: writer.key, payload: { scopes: ['inventory:write'] } });
      expect(patched.statusCode).toBe(200);
    });

    it('keeps a user’s key with keyward:keys:write to its own user', async () => {
      const userId = await addUser(t);
      const otherUser = await addUser(t);
      const userWriter = await createKey(t, { name: 'user writer', user_id: userId, scopes: ['keyward:keys:write'] });
      const keysBefore = await count(t, 'api_keys');
      for (const payload of [
        { name: 'for another user', user_id: otherUser },
        { name: 'admin', is_admin: true },
      ]) {
        const response = await send(t, 'POST', '/v1/api-keys', { key: userWriter.key, payload });
        expect(problemOf(response), JSON.stringify(payload)).toMatchObject({ status: 403, code: 'FORBIDDEN' });
      }
      expect(await count(t, 'api_keys')).toBe(keysBefore);
      const own = await send(t, 'POST', '/v1/api-keys', { key: userWriter.key, payload: { name: 'mine' } });
      expect(own.statusCode).toBe(201);
      expect(json(own).user_id).toBe(userId);
      const listed = json(await send(t, 'GET', '/v1/api-keys', { key: userWriter.key })) as { data: Json[] };
      expect(new Set(listed.data.map((k) => k.user_id))).toEqual(new Set([userId]));
      expect(problemOf(await send(t, 'GET', `/v1/api-keys?user_id=${otherUser}`, { key: userWriter.key }))).toMatchObject({ status: 403 });
    });

    it('answers unknown routes and methods with 404 problem+json', async () => {
      for (const [method, url, key] of [
        ['GET', '/v1/nope', t.adminKey],
        ['GET', '/nope', null],
        ['POST', '/v1/api-keys/x/explode', t.adminKey],
        ['PUT', `/v1/api-keys/${uuidv7()}`, t.adminKey],
        ['GET', '/v1/api-keys/a/b/c', t.adminKey],
      ] as const) {
        const response = await send(t, method, url, { key });
        expect(problemOf(response), `${method} ${url}`).toMatchObject({ status: 404, code: 'NOT_FOUND' });
      }
    });

    it('refuses an oversized body with 413 PAYLOAD_TOO_LARGE and writes nothing', async () => {
      const { id } = await createKey(t, { name: 'target' });
      const keysBefore = await count(t, 'api_keys');
      const auditBefore = await count(t, 'audit_log');
      const big = { name: 'big', metadata: { blob: 'x'.repeat(t.config.bodyLimitBytes + 1) } };
      expect(problemOf(await send(t, 'POST', '/v1/api-keys', { payload: big }))).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
      expect(problemOf(await send(t, 'PATCH', `/v1/api-keys/${id}`, { payload: big }))).toMatchObject({
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
      });
      expect(await count(t, 'api_keys')).toBe(keysBefore);
      expect(await count(t, 'audit_log')).toBe(auditBefore);
    });
  });

  describe('bad requests: 400 INVALID_REQUEST naming the field, nothing written', () => {
    let t: TestApp;
    let target: { id: string; body: Json };
    let userId: string;
    beforeAll(async () => {
      t = await createTestApp({ dialect, env: QUIET_GUARD });
      target = await createKey(t, { name: 'target', metadata: { keep: true } });
      userId = await addUser(t);
    });
    afterAll(async () => t?.close());

    async function expectNothingWritten(run: () => Promise<void>): Promise<void> {
      const before = [await count(t, 'api_keys'), await count(t, 'audit_log'), await count(t, 'users')];
      await run();
      expect([await count(t, 'api_keys'), await count(t, 'audit_log'), await count(t, 'users')]).toEqual(before);
      const { key: _once, ...view } = target.body;
      expect(json(await send(t, 'GET', `/v1/api-keys/${target.id}`))).toEqual(view);
    }

    const CREATE_CASES: [string, unknown, string][] = [
      ['name of the wrong type', { name: 123 }, 'body.name'],
      ['name null', { name: null }, 'body.name'],
      ['name empty', { name: '' }, 'body.name'],
      ['name huge', { name: 'n'.repeat(10_000) }, 'body.name'],
      ['description huge', { name: 'x', description: 'd'.repeat(2001) }, 'body.description'],
      ['description of the wrong type', { name: 'x', description: 5 }, 'body.description'],
      ['is_admin as a string', { name: 'x', is_admin: 'yes' }, 'body.is_admin'],
      ['scopes not a list', { name: 'x', scopes: 'inventory:read' }, 'body.scopes'],
      ['scope with a space', { name: 'x', scopes: ['ok', 'not ok'] }, 'body.scopes.1'],
      ['scope of the wrong type', { name: 'x', scopes: [1] }, 'body.scopes.0'],
      ['scope huge', { name: 'x', scopes: ['s'.repeat(129)] }, 'body.scopes.0'],
      ['too many scopes', { name: 'x', scopes: Array.from({ length: 101 }, (_, i) => `s:${i}`) }, 'body.scopes'],
      ['metadata a list', { name: 'x', metadata: [1] }, 'body.metadata'],
      ['metadata a string', { name: 'x', metadata: 'x' }, 'body.metadata'],
      ['metadata null', { name: 'x', metadata: null }, 'body.metadata'],
      [
        'metadata too many fields',
        { name: 'x', metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])) },
        'body.metadata',
      ],
      ['expires_at not a date', { name: 'x', expires_at: 'tomorrow' }, 'body.expires_at'],
      ['expires_at a number', { name: 'x', expires_at: 1_900_000_000_000 }, 'body.expires_at'],
      ['expires_at an impossible day', { name: 'x', expires_at: '2031-02-30T00:00:00Z' }, 'body.expires_at'],
      ['expires_at without a time zone', { name: 'x', expires_at: '2031-01-01T00:00:00' }, 'body.expires_at'],
      ['expires_at a leap second Date cannot read', { name: 'x', expires_at: '2031-12-31T23:59:60Z' }, 'body.expires_at'],
      ['expires_at in the past', { name: 'x', expires_at: '2020-01-01T00:00:00Z' }, 'body.expires_at'],
      ['expires_at now-ish (a second ago)', { name: 'x', expires_at: new Date(Date.now() - 1000).toISOString() }, 'body.expires_at'],
      ['unknown field', { name: 'x', colour: 'red' }, 'body.colour'],
      ['a plaintext key supplied', { name: 'x', key: generateKey() }, 'body.key'],
      ['a hash supplied', { name: 'x', key_hash: 'a'.repeat(64) }, 'body.key_hash'],
      ['is_active supplied', { name: 'x', is_active: false }, 'body.is_active'],
      ['prefix with capitals', { name: 'x', prefix: 'Live' }, 'body.prefix'],
      ['prefix too long', { name: 'x', prefix: 'p'.repeat(21) }, 'body.prefix'],
      ['rate_limit of zero', { name: 'x', rate_limit: { limit: 0, window_seconds: 60 } }, 'body.rate_limit.limit'],
      ['rate_limit with an unknown field', { name: 'x', rate_limit: { limit: 1, window_seconds: 60, burst: 2 } }, 'body.rate_limit.burst'],
      ['rate_limit a fraction', { name: 'x', rate_limit: { limit: 1.5, window_seconds: 60 } }, 'body.rate_limit.limit'],
      ['quota negative', { name: 'x', quota: { remaining: -1 } }, 'body.quota.remaining'],
      [
        'quota refill weekly',
        { name: 'x', quota: { remaining: 1, refill: { amount: 1, interval: 'week' } } },
        'body.quota.refill.interval',
      ],
      ['user_id of the wrong type', { name: 'x', user_id: 42 }, 'body.user_id'],
      ['user_id unknown', { name: 'x', user_id: uuidv7() }, 'body.user_id'],
      ['an admin key for a user', { name: 'x', is_admin: true, user_id: 'USER' }, 'body.is_admin'],
      ['a list instead of an object', [{ name: 'x' }], 'body'],
    ];

    it.each(CREATE_CASES)('POST /v1/api-keys: %s', async (_label, payload, field) => {
      await expectNothingWritten(async () => {
        const body = JSON.parse(JSON.stringify(payload).replace('"USER"', JSON.stringify(userId))) as unknown;
        const response = await send(t, 'POST', '/v1/api-keys', { payload: body });
        const problem = problemOf(response);
        expect(problem).toMatchObject({ status: 400, code: 'INVALID_REQUEST' });
        expect(problem.fields).toContain(field);
        expect(response.body).not.toMatch(/kw_[A-Za-z0-9]{49}/);
      });
    });

    const PATCH_CASES: [string, unknown, string][] = [
      ['an empty body', {}, 'body'],
      ['name of the wrong type', { name: 5 }, 'body.name'],
      ['name empty', { name: '' }, 'body.name'],
      ['name huge', { name: 'n'.repeat(201) }, 'body.name'],
      ['description huge', { description: 'd'.repeat(50_000) }, 'body.description'],
      ['is_admin (not changeable)', { is_admin: true }, 'body.is_admin'],
      ['user_id (not changeable)', { user_id: null }, 'body.user_id'],
      ['key_prefix (not changeable)', { key_prefix: 'kw_aaaaaaaa' }, 'body.key_prefix'],
      ['expires_at in the past', { expires_at: '2001-01-01T00:00:00.000Z' }, 'body.expires_at'],
      ['expires_at a leap second Date cannot read', { expires_at: '2031-12-31T23:59:60Z' }, 'body.expires_at'],
      ['expires_at not a date', { expires_at: 'soon' }, 'body.expires_at'],
      ['scopes not a list', { scopes: 'a:b' }, 'body.scopes'],
      ['metadata null', { metadata: null }, 'body.metadata'],
      ['rate_limit as text', { rate_limit: { limit: 'many', window_seconds: 1 } }, 'body.rate_limit.limit'],
      ['a valid field next to an unknown one', { name: 'fine', colour: 'red' }, 'body.colour'],
      ['a valid field next to a past expiry', { name: 'fine', expires_at: '2020-01-01T00:00:00Z' }, 'body.expires_at'],
    ];

    it.each(PATCH_CASES)('PATCH /v1/api-keys/:id: %s', async (_label, payload, field) => {
      await expectNothingWritten(async () => {
        const problem = problemOf(await send(t, 'PATCH', `/v1/api-keys/${target.id}`, { payload }));
        expect(problem).toMatchObject({ status: 400, code: 'INVALID_REQUEST' });
        expect(problem.fields).toContain(field);
      });
    });

    it.each([
      ['limit=abc', 'querystring.limit'],
      ['limit=0', 'querystring.limit'],
      ['limit=101', 'querystring.limit'],
      ['include_inactive=maybe', 'querystring.include_inactive'],
      ['cursor=not-a-cursor', 'querystring.cursor'],
      [`cursor=${'c'.repeat(201)}`, 'querystring.cursor'],
      ['colour=red', 'querystring.colour'],
      [`user_id=${'u'.repeat(65)}`, 'querystring.user_id'],
    ])('GET /v1/api-keys?%s', async (query, field) => {
      const problem = problemOf(await send(t, 'GET', `/v1/api-keys?${query}`));
      expect(problem).toMatchObject({ status: 400, code: 'INVALID_REQUEST' });
      expect(problem.fields).toContain(field);
    });

    it('refuses a body that is not JSON', async () => {
      await expectNothingWritten(async () => {
        for (const [url, method] of [
          ['/v1/api-keys', 'POST'],
          [`/v1/api-keys/${target.id}`, 'PATCH'],
        ] as const) {
          const broken = await t.app.inject({
            method,
            url,
            headers: { ...bearer(t.adminKey), 'content-type': 'application/json' },
            payload: '{"name": ',
          });
          expect(problemOf(broken)).toMatchObject({ status: 400, code: 'INVALID_REQUEST' });
          const text = await t.app.inject({
            method,
            url,
            headers: { ...bearer(t.adminKey), 'content-type': 'text/plain' },
            payload: 'name=x',
          });
          expect(problemOf(text)).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
          const form = await t.app.inject({
            method,
            url,
            headers: { ...bearer(t.adminKey), 'content-type': 'application/x-www-form-urlencoded' },
            payload: 'name=x',
          });
          expect(problemOf(form)).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
        }
      });
    });
  });
});
