import { afterEach, describe, expect, it } from 'vitest';
import { createKeyService } from '../../packages/server/src/keys/service.js';
import { createUserService } from '../../packages/server/src/users/service.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { hsToken, JWT_ENV, signIn } from './tokens.js';

interface UserBody {
  id: string;
  external_id: string;
  email: string | null;
  tier: string;
  created_at: string;
  updated_at: string;
}

async function createUser(t: TestApp, body: Record<string, unknown>): Promise<UserBody> {
  const response = await t.app.inject({ method: 'POST', url: '/v1/users', headers: bearer(t.adminKey), payload: body });
  if (response.statusCode !== 201) throw new Error(`create user failed: ${response.statusCode} ${response.body}`);
  return response.json() as UserBody;
}

describe.each(DIALECTS)('users API on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('creates, reads, lists (paginated), updates and audits users', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const created = await createUser(t, { external_id: 'ext-1', email: 'one@example.com', tier: 'pro' });
    expect(Object.keys(created).sort()).toEqual(['created_at', 'email', 'external_id', 'id', 'tier', 'updated_at']);
    expect(created).toMatchObject({ external_id: 'ext-1', email: 'one@example.com', tier: 'pro' });
    const defaulted = await createUser(t, { external_id: 'ext-2' });
    expect(defaulted).toMatchObject({ tier: 'free', email: null });
    await createUser(t, { external_id: 'ext-3' });

    const got = await t.app.inject({ method: 'GET', url: `/v1/users/${created.id}`, headers: bearer(t.adminKey) });
    // GET also says how many keys the user owns.
    expect(got.json()).toEqual({ ...created, key_count: 0 });

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await t.app.inject({ method: 'GET', url, headers: bearer(t.adminKey) });
      expect(page.statusCode).toBe(200);
      const body = page.json() as { data: UserBody[]; next_cursor: string | null };
      expect(body.data.length).toBeLessThanOrEqual(2);
      seen.push(...body.data.map((u) => u.external_id));
      cursor = body.next_cursor;
    } while (cursor !== null);
    expect(seen).toEqual(['ext-3', 'ext-2', 'ext-1']);

    const byExternal = await t.app.inject({ method: 'GET', url: '/v1/users?external_id=ext-2', headers: bearer(t.adminKey) });
    expect((byExternal.json() as { data: UserBody[] }).data.map((u) => u.id)).toEqual([defaulted.id]);
    const badCursor = await t.app.inject({ method: 'GET', url: '/v1/users?cursor=nonsense', headers: bearer(t.adminKey) });
    expect(badCursor.statusCode).toBe(400);

    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/users/${created.id}`,
      headers: bearer(t.adminKey),
      payload: { tier: 'enterprise', email: null },
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ id: created.id, tier: 'enterprise', email: null });

    const audits = await t.container.db.db.selectFrom('audit_log').selectAll().where('target_id', '=', created.id).orderBy('id').execute();
    expect(audits.map((a) => a.action)).toEqual(['user.create', 'user.update']);
    expect(audits.every((a) => a.actor_type === 'api_key')).toBe(true);
    expect(JSON.parse(audits[1]?.changes ?? '{}')).toEqual({
      email: { from: 'one@example.com', to: null },
      tier: { from: 'pro', to: 'enterprise' },
    });
  });

  it('rejects a duplicate external id (409), an unknown tier (400 naming body.tier) and unknown ids (404)', async () => {
    t = await createTestApp({ dialect });
    const user = await createUser(t, { external_id: 'dup' });
    const dup = await t.app.inject({ method: 'POST', url: '/v1/users', headers: bearer(t.adminKey), payload: { external_id: 'dup' } });
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toMatchObject({ code: 'USER_EXISTS' });

    const unknownTier = [
      await t.app.inject({
        method: 'POST',
        url: '/v1/users',
        headers: bearer(t.adminKey),
        payload: { external_id: 'x', tier: 'platinum' },
      }),
      await t.app.inject({ method: 'PATCH', url: `/v1/users/${user.id}`, headers: bearer(t.adminKey), payload: { tier: 'platinum' } }),
    ];
    for (const response of unknownTier) {
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST', errors: [{ field: 'body.tier' }] });
    }
    const badEmail = await t.app.inject({
      method: 'POST',
      url: '/v1/users',
      headers: bearer(t.adminKey),
      payload: { external_id: 'e', email: 'not an email' },
    });
    expect(badEmail.statusCode).toBe(400);

    const missing = '01900000-0000-7000-8000-000000000000';
    for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
      const response = await t.app.inject({
        method,
        url: `/v1/users/${missing}`,
        headers: bearer(t.adminKey),
        ...(method === 'PATCH' ? { payload: { tier: 'pro' } } : {}),
      });
      expect(response.statusCode).toBe(404);
      expect(response.json()).toMatchObject({ code: 'USER_NOT_FOUND' });
    }
    expect(await t.container.db.db.selectFrom('users').selectAll().execute()).toHaveLength(1);
  });

  it('is admin only: 401 anonymous, 403 for a regular key, a key with keys:write, a user key and a user JWT', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const user = await createUser(t, { external_id: 'victim' });
    const regular = await createKey(t, { name: 'regular' });
    const manager = await createKey(t, { name: 'manager', scopes: ['keyward:keys:write', 'keyward:keys:read'] });
    const { token, userId } = await signIn(t, 'someone');
    const userKey = await createKey(t, { name: 'user key', user_id: userId, scopes: ['keyward:keys:write'] });
    const routes = [
      { method: 'POST', url: '/v1/users', payload: { external_id: 'new' } },
      { method: 'GET', url: '/v1/users' },
      { method: 'GET', url: `/v1/users/${user.id}` },
      { method: 'PATCH', url: `/v1/users/${user.id}`, payload: { tier: 'enterprise' } },
      { method: 'DELETE', url: `/v1/users/${user.id}` },
    ] as const;
    for (const route of routes) {
      const anonymous = await t.app.inject({ ...route });
      expect(anonymous.statusCode, `${route.method} ${route.url} anonymous`).toBe(401);
      expect(anonymous.headers['www-authenticate']).toBeDefined();
      for (const credential of [regular.key, manager.key, userKey.key, token]) {
        const response = await t.app.inject({ ...route, headers: bearer(credential) });
        expect(response.statusCode, `${route.method} ${route.url}`).toBe(403);
        expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
      }
    }
    const still = await t.app.inject({ method: 'GET', url: `/v1/users/${user.id}`, headers: bearer(t.adminKey) });
    expect(still.json()).toMatchObject({ tier: 'free' });
  });

  it('deletes a user with all their keys (cascade), audited, and their keys stop authenticating at once', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'leaver');
    const own = await t.app.inject({
      method: 'POST',
      url: '/v1/users/me/api-keys',
      headers: bearer(token),
      payload: { name: 'self', scopes: ['keyward:keys:read'] },
    });
    expect(own.statusCode).toBe(201);
    const ownKey = (own.json() as { key: string }).key;
    const byAdmin = await createKey(t, { name: 'by admin', user_id: userId });
    const bystander = await createKey(t, { name: 'ownerless' });
    // Used once before the delete, so any cache holds them.
    for (const key of [ownKey, byAdmin.key]) {
      expect((await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(key) })).statusCode).toBe(200);
    }

    const deleted = await t.app.inject({ method: 'DELETE', url: `/v1/users/${userId}`, headers: bearer(t.adminKey) });
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');

    const db = t.container.db.db;
    expect(await db.selectFrom('api_keys').select('id').where('user_id', '=', userId).execute()).toEqual([]);
    expect(await db.selectFrom('api_keys').select('id').where('id', '=', bystander.id).execute()).toHaveLength(1);
    for (const key of [ownKey, byAdmin.key]) {
      const response = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(key) });
      expect(response.statusCode).toBe(401);
    }
    const gone = await t.app.inject({ method: 'GET', url: `/v1/users/${userId}`, headers: bearer(t.adminKey) });
    expect(gone.statusCode).toBe(404);

    const audits = await db.selectFrom('audit_log').selectAll().where('action', 'in', ['user.delete', 'key.delete']).execute();
    expect(audits.filter((a) => a.action === 'user.delete')).toEqual([
      expect.objectContaining({ target_id: userId, actor_type: 'api_key' }),
    ]);
    expect(
      audits
        .filter((a) => a.action === 'key.delete')
        .map((a) => a.target_id)
        .sort(),
    ).toEqual([(own.json() as { id: string }).id, byAdmin.id].sort());
    expect(audits.map((a) => a.changes).join('')).not.toContain(ownKey);

    // The same JWT signs in again as a brand-new user with no keys.
    const back = await t.app.inject({ method: 'GET', url: '/v1/users/me/api-keys', headers: bearer(await hsToken('leaver')) });
    expect(back.statusCode).toBe(200);
    expect((back.json() as { data: unknown[] }).data).toEqual([]);
  });

  it('a tier change (PATCH) raises the key limit at once', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'upgrader');
    const create = () => t.app.inject({ method: 'POST', url: '/v1/users/me/api-keys', headers: bearer(token), payload: { name: 'k' } });
    for (let i = 0; i < 3; i += 1) expect((await create()).statusCode).toBe(201);
    const blocked = await create();
    expect(blocked.statusCode).toBe(400);
    expect(blocked.json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });

    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/users/${userId}`,
      headers: bearer(t.adminKey),
      payload: { tier: 'pro' },
    });
    expect(patched.statusCode).toBe(200);
    for (let i = 3; i < 10; i += 1) expect((await create()).statusCode).toBe(201);
    expect((await create()).json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    expect(await t.container.db.db.selectFrom('api_keys').select('id').where('user_id', '=', userId).execute()).toHaveLength(10);
  });
});

describe('users service: cascade tells the key-change hook about every deleted key', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('announces each key of a deleted user, and each key of a re-tiered user', async () => {
    t = await createTestApp({ env: JWT_ENV });
    const changed: string[] = [];
    const keys = createKeyService({ db: t.container.db, config: t.config, onKeyChanged: (key) => changed.push(key.keyHash) });
    const users = createUserService({ db: t.container.db, config: t.config, onKeysChanged: (list) => keys.announceChanged(list) });
    const admin = { principal: { kind: 'system' as const, name: 'test' }, ip: null };
    const user = await users.create(admin, { externalId: 'hooked' });
    if (!user.ok) throw new Error(user.code);
    const ids: string[] = [];
    for (const name of ['a', 'b']) {
      const created = await keys.create(admin, { name, userId: user.value.id });
      if (!created.ok) throw new Error(created.code);
      ids.push(created.value.record.keyHash);
    }
    changed.length = 0;
    expect((await users.update(admin, user.value.id, { tier: 'pro' })).ok).toBe(true);
    expect(changed.sort()).toEqual([...ids].sort());
    changed.length = 0;
    expect((await users.update(admin, user.value.id, { email: 'x@example.com' })).ok).toBe(true);
    expect(changed).toEqual([]);
    expect((await users.remove(admin, user.value.id)).ok).toBe(true);
    expect(changed.sort()).toEqual([...ids].sort());
  });
});
