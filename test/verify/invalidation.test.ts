import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../packages/server/src/callers/principal.js';
import { bearer, createKey } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { type ClockedApp, codeOf, createClockedApp, post, waitLive } from './helpers.js';

// Freshness and negative freshness of an hour: a test that sees a change sees it through invalidation.
const LONG_CACHE = { CACHE_TTL_MS: '3600000', CACHE_NEGATIVE_TTL_MS: '3600000' };
const operator: Caller = { principal: { kind: 'system', name: 'test' }, ip: null };

describe.each(DIALECTS)('cache invalidation on this instance (%s)', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  async function cachedApp() {
    t = await createClockedApp({ dialect, env: LONG_CACHE });
    await waitLive(t.container);
    return t;
  }

  /** Verifies `key` twice and checks the second answer came from the cache (so a later change must invalidate it). */
  async function primed(key: string, expected: string, extra: Record<string, unknown> = {}) {
    expect(await codeOf(t, key, extra)).toBe(expected);
    const hits = t.container.keyCache.stats().hits;
    expect(await codeOf(t, key, extra)).toBe(expected);
    expect(t.container.keyCache.stats().hits).toBeGreaterThan(hits);
  }

  it('sees deactivate, activate and revoke at once', async () => {
    await cachedApp();
    const { key, id } = await createKey(t);
    await primed(key, 'VALID');
    await post(t, `/v1/api-keys/${id}/deactivate`);
    expect(await codeOf(t, key)).toBe('DISABLED');
    await primed(key, 'DISABLED');
    await post(t, `/v1/api-keys/${id}/activate`);
    expect(await codeOf(t, key)).toBe('VALID');
    await primed(key, 'VALID');
    await post(t, `/v1/api-keys/${id}/revoke`);
    expect(await codeOf(t, key)).toBe('REVOKED');
  });

  it('sees a patch (scopes, expiry) at once', async () => {
    await cachedApp();
    const { key, id } = await createKey(t, { scopes: ['a:read'] });
    await primed(key, 'INSUFFICIENT_SCOPES', { scopes: ['b:read'] });
    await t.app.inject({ method: 'PATCH', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey), payload: { scopes: ['b:*'] } });
    expect(await codeOf(t, key, { scopes: ['b:read'] })).toBe('VALID');
    const expiresAt = new Date(t.clock.now() + 1000).toISOString();
    await t.app.inject({ method: 'PATCH', url: `/v1/api-keys/${id}`, headers: bearer(t.adminKey), payload: { expires_at: expiresAt } });
    t.clock.advance(1000);
    expect(await codeOf(t, key)).toBe('EXPIRED');
  });

  it('sees a delete and a roll at once', async () => {
    await cachedApp();
    const a = await createKey(t);
    const b = await createKey(t);
    await primed(a.key, 'VALID');
    await primed(b.key, 'VALID');
    await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${a.id}`, headers: bearer(t.adminKey) });
    expect(await codeOf(t, a.key)).toBe('NOT_FOUND');
    await post(t, `/v1/api-keys/${b.id}/roll`, { grace_period_seconds: 0 });
    expect(await codeOf(t, b.key)).toBe('EXPIRED');
  });

  it('drops a remembered miss when the key is created', async () => {
    await cachedApp();
    const plaintext = generateKey('kw');
    await primed(plaintext, 'NOT_FOUND');
    const created = await t.container.keys.create(operator, { name: 'imported' }, { plaintext });
    expect(created.ok).toBe(true);
    expect(await codeOf(t, plaintext)).toBe('VALID');
  });

  it('sees keys deleted with their user (cascade)', async () => {
    await cachedApp();
    const user = await post(t, '/v1/users', { external_id: `ext-${Math.random()}` });
    expect(user.statusCode).toBe(201);
    const { key } = await createKey(t, { user_id: (user.json() as { id: string }).id });
    await primed(key, 'VALID');
    const removed = await t.app.inject({
      method: 'DELETE',
      url: `/v1/users/${(user.json() as { id: string }).id}`,
      headers: bearer(t.adminKey),
    });
    expect(removed.statusCode).toBe(204);
    expect(await codeOf(t, key)).toBe('NOT_FOUND');
  });

  it('authentication uses the same cache: a deactivated management key is refused on its next request', async () => {
    await cachedApp();
    const manager = await createKey(t, { scopes: ['keyward:keys:read'] });
    const list = () => t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(manager.key) });
    expect((await list()).statusCode).toBe(200);
    await primed(manager.key, 'VALID');
    await post(t, `/v1/api-keys/${manager.id}/deactivate`);
    const refused = await list();
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toMatchObject({ code: 'KEY_DISABLED' });
  });

  it('holds at most CACHE_MAX_ENTRIES records', async () => {
    t = await createClockedApp({ dialect, env: { ...LONG_CACHE, CACHE_MAX_ENTRIES: '5' } });
    for (let i = 0; i < 12; i++) await codeOf(t, generateKey('kw'));
    expect(t.container.keyCache.stats().size).toBe(5);
  });
});
