import { hashApiKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from './tokens.js';

const ME = '/v1/users/me/api-keys';

interface KeyBody {
  id: string;
  key?: string;
  key_prefix: string;
  user_id: string | null;
  is_admin: boolean;
  scopes: string[];
}

async function selfCreate(t: TestApp, credential: string, payload: Record<string, unknown> = { name: 'mine' }) {
  return t.app.inject({ method: 'POST', url: ME, headers: bearer(credential), payload });
}

async function selfCreated(t: TestApp, credential: string, payload: Record<string, unknown> = { name: 'mine' }): Promise<KeyBody> {
  const response = await selfCreate(t, credential, payload);
  if (response.statusCode !== 201) throw new Error(`self-service create failed: ${response.statusCode} ${response.body}`);
  return response.json() as KeyBody;
}

describe.each(DIALECTS)('self-service keys on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('creates (key shown once), lists (never a key or hash) and deletes my keys', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'alice');
    const response = await selfCreate(t, token, {
      name: 'laptop',
      description: 'my laptop',
      scopes: ['inventory:read'],
      metadata: { device: 'laptop' },
      expires_at: '2099-01-01T00:00:00.000Z',
    });
    expect(response.statusCode).toBe(201);
    expect(response.headers['cache-control']).toBe('no-store');
    const created = response.json() as KeyBody & Record<string, unknown>;
    expect(created).toMatchObject({
      name: 'laptop',
      description: 'my laptop',
      user_id: userId,
      is_admin: false,
      scopes: ['inventory:read'],
      metadata: { device: 'laptop' },
      expires_at: '2099-01-01T00:00:00.000Z',
      created_by: userId,
      status: 'active',
    });
    expect(created.key).toMatch(/^kw_/);
    expect(created.key_prefix).toBe((created.key ?? '').slice(0, created.key_prefix.length));
    expect(created).toHaveProperty('created_at');
    expect(created).not.toHaveProperty('key_hash');

    const works = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(created.key ?? '') });
    expect(works.statusCode).toBe(200);

    const listed = await t.app.inject({ method: 'GET', url: ME, headers: bearer(token) });
    expect(listed.statusCode).toBe(200);
    expect((listed.json() as { data: KeyBody[] }).data.map((k) => k.id)).toEqual([created.id]);
    expect(listed.body).not.toContain(created.key);
    expect(listed.body).not.toContain(hashApiKey(created.key ?? ''));
    expect(listed.body).not.toContain('"key"');

    const deleted = await t.app.inject({ method: 'DELETE', url: `${ME}/${created.id}`, headers: bearer(token) });
    expect(deleted.statusCode).toBe(204);
    const after = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(created.key ?? '') });
    expect(after.statusCode).toBe(401);
    const unknown = await t.app.inject({ method: 'DELETE', url: `${ME}/${created.id}`, headers: bearer(token) });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'KEY_NOT_FOUND' });

    const audits = await t.container.db.db.selectFrom('audit_log').selectAll().where('target_id', '=', created.id).orderBy('id').execute();
    expect(audits.map((a) => [a.action, a.actor_type, a.actor_id])).toEqual([
      ['key.create', 'user', userId],
      ['key.delete', 'user', userId],
    ]);
  });

  it('never lets a user reach another user’s keys, on every self-service route and the management routes', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const alice = await signIn(t, 'alice');
    const bob = await signIn(t, 'bob');
    const bobsKey = await selfCreated(t, bob.token, { name: 'bob’s' });
    const alicesManager = await selfCreated(t, alice.token, { name: 'manager', scopes: ['keyward:keys:write'] });
    const adminOwned = await createKey(t, { name: 'ownerless' });

    for (const credential of [alice.token, alicesManager.key ?? '']) {
      // DELETE: another user's key is 403 (it exists), an ownerless one too; an unknown id is 404.
      for (const id of [bobsKey.id, adminOwned.id]) {
        const response = await t.app.inject({ method: 'DELETE', url: `${ME}/${id}`, headers: bearer(credential) });
        expect(response.statusCode).toBe(403);
        expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
      }
      // POST cannot name another owner: the body has no user_id, and the key is the caller's.
      const targeted = await selfCreate(t, credential, { name: 'x', user_id: bob.userId });
      expect(targeted.statusCode).toBe(400);
      // GET lists only the caller's own keys.
      const listed = await t.app.inject({ method: 'GET', url: ME, headers: bearer(credential) });
      expect((listed.json() as { data: KeyBody[] }).data.every((k) => k.user_id === alice.userId)).toBe(true);
      expect(listed.body).not.toContain(bobsKey.id);

      // The management routes answer the same: 403 for another user's key, whatever the action.
      for (const [method, url] of [
        ['GET', `/v1/api-keys/${bobsKey.id}`],
        ['PATCH', `/v1/api-keys/${bobsKey.id}`],
        ['POST', `/v1/api-keys/${bobsKey.id}/deactivate`],
        ['POST', `/v1/api-keys/${bobsKey.id}/revoke`],
        ['DELETE', `/v1/api-keys/${bobsKey.id}`],
      ] as const) {
        const response = await t.app.inject({
          method,
          url,
          headers: bearer(credential),
          ...(method === 'PATCH' ? { payload: { name: 'stolen' } } : {}),
        });
        expect(response.statusCode, `${method} ${url}`).toBe(403);
      }
      const created = await t.app.inject({
        method: 'POST',
        url: '/v1/api-keys',
        headers: bearer(credential),
        payload: { name: 'for bob', user_id: bob.userId },
      });
      expect(created.statusCode).toBe(403);
    }
    const bobsList = await t.app.inject({ method: 'GET', url: ME, headers: bearer(bob.token) });
    expect((bobsList.json() as { data: KeyBody[] }).data).toEqual([
      expect.objectContaining({ id: bobsKey.id, name: 'bob’s', is_active: true }),
    ]);
  });

  it('dual auth: a user-owned key with keyward:keys:write (or :read for GET) acts for its owner; other keys get 403', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'carol');
    // pro: room for the five keys this test makes.
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${userId}`, headers: bearer(t.adminKey), payload: { tier: 'pro' } });
    const writer = await selfCreated(t, token, { name: 'writer', scopes: ['keyward:keys:write'] });
    const reader = await selfCreated(t, token, { name: 'reader', scopes: ['keyward:keys:read'] });
    const plain = await createKey(t, { name: 'plain user key', user_id: userId, scopes: ['inventory:read'] });
    const ownerlessManager = await createKey(t, { name: 'ownerless manager', scopes: ['keyward:keys:write'] });

    const made = await selfCreate(t, writer.key ?? '', { name: 'made by key' });
    expect(made.statusCode).toBe(201);
    expect(made.json()).toMatchObject({ user_id: userId, is_admin: false, created_by: writer.id });
    expect((await t.app.inject({ method: 'GET', url: ME, headers: bearer(reader.key ?? '') })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(reader.key ?? '') })).json()).toMatchObject({
      id: userId,
    });

    const denied: Array<[string, string, string]> = [
      ['POST', ME, reader.key ?? ''],
      ['DELETE', `${ME}/${(made.json() as KeyBody).id}`, reader.key ?? ''],
      ['POST', ME, plain.key],
      ['GET', ME, plain.key],
      ['GET', '/v1/users/me', plain.key],
      ['POST', ME, t.adminKey],
      ['GET', ME, t.adminKey],
      ['DELETE', `${ME}/${writer.id}`, t.adminKey],
      ['GET', '/v1/users/me', t.adminKey],
      ['POST', ME, ownerlessManager.key],
      ['GET', ME, ownerlessManager.key],
      ['DELETE', `${ME}/${writer.id}`, ownerlessManager.key],
    ];
    for (const [method, url, credential] of denied) {
      const response = await t.app.inject({
        method: method as 'GET' | 'POST' | 'DELETE',
        url,
        headers: bearer(credential),
        ...(method === 'POST' ? { payload: { name: 'nope' } } : {}),
      });
      expect(response.statusCode, `${method} ${url}`).toBe(403);
      expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
    }
    expect(await t.container.db.db.selectFrom('api_keys').select('id').where('user_id', '=', userId).execute()).toHaveLength(4);

    const byWriter = await t.app.inject({
      method: 'DELETE',
      url: `${ME}/${(made.json() as KeyBody).id}`,
      headers: bearer(writer.key ?? ''),
    });
    expect(byWriter.statusCode).toBe(204);
  });

  it('401 without a credential; 400 for admin, unknown fields and scopes the tier does not allow', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token } = await signIn(t, 'dave');
    for (const [method, url] of [
      ['POST', ME],
      ['GET', ME],
      ['DELETE', `${ME}/01900000-0000-7000-8000-000000000000`],
      ['GET', '/v1/users/me'],
    ] as const) {
      const response = await t.app.inject({ method, url, ...(method === 'POST' ? { payload: { name: 'x' } } : {}) });
      expect(response.statusCode).toBe(401);
      expect(response.headers['www-authenticate']).toBeDefined();
    }
    for (const payload of [
      { name: 'x', is_admin: true },
      { name: 'x', rate_limit: { limit: 1000000, window_seconds: 1 } },
      { name: 'x', scopes: ['keyward:verify'] },
      { name: 'x', scopes: ['*'] },
      { name: 'x', expires_at: '2001-01-01T00:00:00Z' },
      { name: '' },
    ]) {
      const response = await selfCreate(t, token, payload);
      expect(response.statusCode, JSON.stringify(payload)).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    const allowed = await selfCreated(t, token, { name: 'ok', scopes: ['orders:*', 'keyward:keys:read', 'keyward:keys:write'] });
    expect(allowed.scopes).toEqual(['orders:*', 'keyward:keys:read', 'keyward:keys:write']);
  });

  it('a user JWT may also use the management routes, on its own keys only', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'manager');
    const own = await selfCreated(t, token, { name: 'own' });
    const send = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: Record<string, unknown>) =>
      t.app.inject({ method, url, headers: bearer(token), ...(payload ? { payload } : {}) });
    expect((await send('POST', '/v1/api-keys', { name: 'via management' })).json()).toMatchObject({ user_id: userId });
    expect((await send('GET', '/v1/api-keys')).statusCode).toBe(200);
    expect((await send('GET', `/v1/api-keys/${own.id}`)).statusCode).toBe(200);
    expect((await send('PATCH', `/v1/api-keys/${own.id}`, { name: 'renamed' })).json()).toMatchObject({ name: 'renamed' });
    expect((await send('POST', `/v1/api-keys/${own.id}/deactivate`)).json()).toMatchObject({ is_active: false });
    expect((await send('POST', `/v1/api-keys/${own.id}/activate`)).json()).toMatchObject({ is_active: true });
    expect((await send('POST', `/v1/api-keys/${own.id}/revoke`)).json()).toMatchObject({ status: 'revoked' });
    expect((await send('DELETE', `/v1/api-keys/${own.id}`)).statusCode).toBe(204);
    // The route that reads the calling key has no key to read for a JWT.
    expect((await send('GET', '/v1/api-keys/verify/current')).statusCode).toBe(403);
    expect((await send('POST', '/v1/api-keys', { name: 'admin', is_admin: true })).statusCode).toBe(403);
  });

  it('a user cannot set, lift or clear rate limits and quotas of their own keys; an admin can', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'limited');
    const writer = await selfCreated(t, token, { name: 'writer', scopes: ['keyward:keys:write'] });
    const limited = await createKey(t, {
      name: 'limited',
      user_id: userId,
      rate_limit: { limit: 10, window_seconds: 60 },
      quota: { remaining: 5 },
    });
    for (const credential of [token, writer.key ?? '']) {
      const created = await t.app.inject({
        method: 'POST',
        url: '/v1/api-keys',
        headers: bearer(credential),
        payload: { name: 'fast', rate_limit: { limit: 1000000, window_seconds: 1 } },
      });
      expect(created.statusCode).toBe(403);
      for (const payload of [{ rate_limit: null }, { quota: null }, { quota: { remaining: 1000000 } }]) {
        const patched = await t.app.inject({ method: 'PATCH', url: `/v1/api-keys/${limited.id}`, headers: bearer(credential), payload });
        expect(patched.statusCode, JSON.stringify(payload)).toBe(403);
      }
      const renamed = await t.app.inject({
        method: 'PATCH',
        url: `/v1/api-keys/${limited.id}`,
        headers: bearer(credential),
        payload: { name: 'mine' },
      });
      expect(renamed.statusCode).toBe(200);
    }
    const byAdmin = await t.app.inject({
      method: 'PATCH',
      url: `/v1/api-keys/${limited.id}`,
      headers: bearer(t.adminKey),
      payload: { rate_limit: { limit: 20, window_seconds: 60 } },
    });
    expect(byAdmin.json()).toMatchObject({ rate_limit: { limit: 20, window_seconds: 60 }, quota: { remaining: 5 } });
  });

  it('counts revoked keys out of the limit, and MAX_KEYS_PER_USER caps every tier', async () => {
    t = await createTestApp({ dialect, env: { ...JWT_ENV, MAX_KEYS_PER_USER: '2' } });
    const { token, userId } = await signIn(t, 'erin');
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${userId}`, headers: bearer(t.adminKey), payload: { tier: 'enterprise' } });
    const first = await selfCreated(t, token);
    await selfCreated(t, token);
    const third = await selfCreate(t, token);
    expect(third.statusCode).toBe(400);
    expect(third.json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    const revoked = await t.app.inject({ method: 'POST', url: `/v1/api-keys/${first.id}/revoke`, headers: bearer(t.adminKey) });
    expect(revoked.statusCode).toBe(200);
    expect((await selfCreate(t, token)).statusCode).toBe(201);
  });

  it('TIERS redefines the limits and allowed scopes; a user whose tier was removed falls back to the default tier', async () => {
    const tiers = { basic: { max_keys: 1, scopes: ['reports:read'] }, gold: { max_keys: 5 } };
    t = await createTestApp({ dialect, env: { ...JWT_ENV, TIERS: JSON.stringify(tiers), DEFAULT_TIER: 'basic' } });
    const { token, userId } = await signIn(t, 'frank');
    expect((await selfCreate(t, token, { name: 'x', scopes: ['inventory:read'] })).statusCode).toBe(400);
    expect((await selfCreate(t, token, { name: 'x', scopes: ['reports:read'] })).statusCode).toBe(201);
    expect((await selfCreate(t, token)).json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    // A tier that TIERS no longer names (e.g. after a config change) is not unlimited.
    await t.container.db.db.updateTable('users').set({ tier: 'retired' }).where('id', '=', userId).execute();
    expect((await selfCreate(t, token)).json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
  });
});
