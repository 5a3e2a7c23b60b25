import { hashApiKey } from '@keyward/sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

interface Entry {
  id: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string;
  target_id: string | null;
  changes: Record<string, unknown>;
  ip: string | null;
  created_at: string;
}
interface Page {
  data: Entry[];
  next_cursor: string | null;
}

describe.each(DIALECTS)('audit log API on %s', (dialect) => {
  let t: TestApp;
  let adminId: string;
  /** Every plaintext key this test saw; none may appear in the audit log, nor its hash. */
  let secrets: string[];

  beforeEach(async () => {
    t = await createTestApp({ dialect });
    const current = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(t.adminKey) });
    adminId = (current.json() as { id: string }).id;
    secrets = [t.adminKey];
  });
  afterEach(async () => t?.close());

  const admin = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: Record<string, unknown>) =>
    t.app.inject({ method, url, headers: bearer(t.adminKey), ...(payload ? { payload } : {}) });

  async function list(query = '', key = t.adminKey): Promise<Page> {
    const response = await t.app.inject({ method: 'GET', url: `/v1/audit-logs${query ? `?${query}` : ''}`, headers: bearer(key) });
    expect(response.statusCode, response.body).toBe(200);
    return response.json() as Page;
  }

  async function all(query = ''): Promise<Entry[]> {
    const entries: Entry[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await list([query, 'limit=100', cursor ? `cursor=${cursor}` : ''].filter(Boolean).join('&'));
      entries.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor !== null);
    return entries;
  }

  /** Performs every management action that exists, as the admin key; returns the target key's id. */
  async function everyAction(): Promise<{ keyId: string; actions: string[] }> {
    const created = await createKey(t, { name: 'audited', scopes: ['inventory:read'], metadata: { plan: 'gold' } });
    secrets.push(created.key);
    const id = created.id;
    const actions = ['key.create', 'key.update', 'key.deactivate', 'key.activate', 'key.revoke', 'key.delete'];
    expect((await admin('PATCH', `/v1/api-keys/${id}`, { name: 'renamed', quota: { remaining: 5 } })).statusCode).toBe(200);
    expect((await admin('POST', `/v1/api-keys/${id}/deactivate`)).statusCode).toBe(200);
    expect((await admin('POST', `/v1/api-keys/${id}/activate`)).statusCode).toBe(200);
    if (t.app.hasRoute({ method: 'POST', url: '/v1/api-keys/:id/roll' })) {
      const rolled = await admin('POST', `/v1/api-keys/${id}/roll`, { grace_period_seconds: 60 });
      expect(rolled.statusCode, rolled.body).toBeLessThan(300);
      secrets.push((rolled.json() as { key: string }).key);
      actions.push('key.roll');
    }
    expect((await admin('POST', `/v1/api-keys/${id}/revoke`)).statusCode).toBe(200);
    expect((await admin('DELETE', `/v1/api-keys/${id}`)).statusCode).toBe(204);
    return { keyId: id, actions };
  }

  it('records every management action, naming the actor, the target and the address', async () => {
    const { keyId, actions } = await everyAction();
    const entries = await all(`target_id=${keyId}`);
    expect(new Set(entries.map((e) => e.action))).toEqual(new Set(actions));
    for (const entry of entries) {
      expect(entry).toMatchObject({ actor_type: 'api_key', actor_id: adminId, target_type: 'api_key', target_id: keyId });
      expect(entry.ip).toBeTruthy();
      expect(Number.isNaN(Date.parse(entry.created_at))).toBe(false);
    }
    // Newest first.
    expect(entries.at(0)?.action).toBe('key.delete');
    expect(entries.at(-1)?.action).toBe('key.create');
    expect(entries.find((e) => e.action === 'key.update')?.changes).toMatchObject({ name: { from: 'audited', to: 'renamed' } });
    // The start-up bootstrap is there too, by the system actor.
    const boot = await all('action=admin.bootstrap');
    expect(boot).toHaveLength(1);
    expect(boot[0]).toMatchObject({ actor_type: 'system', target_id: adminId });
  });

  it('records user management when the users API exists', async () => {
    if (!t.app.hasRoute({ method: 'POST', url: '/v1/users' })) return;
    const created = await admin('POST', '/v1/users', { external_id: 'audit-user', tier: 'free' });
    expect(created.statusCode, created.body).toBe(201);
    const userId = (created.json() as { id: string }).id;
    expect((await admin('PATCH', `/v1/users/${userId}`, { tier: 'pro' })).statusCode).toBe(200);
    expect((await admin('DELETE', `/v1/users/${userId}`)).statusCode).toBe(204);
    const entries = await all(`target_id=${userId}`);
    expect(entries.map((e) => e.action).sort()).toEqual(['user.create', 'user.delete', 'user.update']);
    for (const entry of entries) expect(entry).toMatchObject({ actor_type: 'api_key', actor_id: adminId, target_type: 'user' });
  });

  it('never holds a secret: no plaintext key and no key hash in any entry', async () => {
    await everyAction();
    const other = await createKey(t, { name: 'second', scopes: ['keyward:keys:write'] });
    secrets.push(other.key);
    // A change made by a non-admin key, so that key is named as an actor.
    const made = await createKey(t, { name: 'made by a key' }, other.key);
    secrets.push(made.key);
    const text = JSON.stringify(await all());
    expect(text.length).toBeGreaterThan(100);
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(hashApiKey(secret));
      // Nor the secret part alone (everything after the display prefix).
      expect(text).not.toContain(secret.slice(12));
    }
    expect(text).not.toMatch(/[0-9a-f]{64}/);
  });

  it('filters by actor, target, action and time range', async () => {
    const first = await createKey(t, { name: 'first' });
    const writer = await createKey(t, { name: 'writer', scopes: ['keyward:keys:write'] });
    const byWriter = await createKey(t, { name: 'by writer' }, writer.key);
    await admin('POST', `/v1/api-keys/${first.id}/revoke`);

    const writerEntries = await all(`actor_id=${writer.id}`);
    expect(writerEntries.map((e) => [e.action, e.target_id])).toEqual([['key.create', byWriter.id]]);

    const revokes = await all('action=key.revoke');
    expect(revokes.map((e) => e.target_id)).toEqual([first.id]);

    const creates = await all('action=key.create');
    // The bootstrap admin key's creation is recorded once, as `admin.bootstrap`.
    expect(creates.map((e) => e.target_id).sort()).toEqual([first.id, writer.id, byWriter.id].sort());

    const everything = await all();
    const times = everything.map((e) => Date.parse(e.created_at)).sort((a, b) => a - b);
    const middle = times[Math.floor(times.length / 2)] ?? 0;
    const after = await all(`from=${new Date(middle).toISOString()}`);
    const before = await all(`to=${new Date(middle).toISOString()}`);
    expect(after.length + before.length).toBe(everything.length);
    for (const e of after) expect(Date.parse(e.created_at)).toBeGreaterThanOrEqual(middle);
    for (const e of before) expect(Date.parse(e.created_at)).toBeLessThan(middle);
    expect(await all(`from=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([]);
    expect(await all(`target_id=${first.id}&action=key.create`)).toHaveLength(1);
  });

  it('pages with a cursor: every entry once, newest first', async () => {
    for (let i = 0; i < 6; i++) await createKey(t, { name: `k${i}` });
    const everything = (await list('limit=100')).data;
    expect(everything.length).toBeGreaterThanOrEqual(7);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Page = await list(`limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.map((e) => e.id));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null);
    expect(seen).toEqual(everything.map((e) => e.id));
    expect(pages).toBe(Math.ceil(everything.length / 2));
    const bad = await t.app.inject({ method: 'GET', url: '/v1/audit-logs?cursor=bm9wZQ', headers: bearer(t.adminKey) });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('is for admins only: 403 for management keys, 401 anonymous, 400 for unknown filters', async () => {
    for (const scopes of [['keyward:keys:read'], ['keyward:keys:write'], ['keyward:verify'], []]) {
      const { key } = await createKey(t, { name: 'not admin', scopes });
      const response = await t.app.inject({ method: 'GET', url: '/v1/audit-logs', headers: bearer(key) });
      expect(response.statusCode, scopes.join()).toBe(403);
      expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
    }
    const anonymous = await t.app.inject({ method: 'GET', url: '/v1/audit-logs' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json()).toMatchObject({ code: 'AUTH_REQUIRED' });
    expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer/);
    const unknown = await t.app.inject({ method: 'GET', url: '/v1/audit-logs?secret=1', headers: bearer(t.adminKey) });
    expect(unknown.statusCode).toBe(400);
  });
});
