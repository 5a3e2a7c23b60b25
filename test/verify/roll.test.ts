import { afterEach, describe, expect, it } from 'vitest';
import { listAuditEntries } from '../../packages/server/src/audit/repository.js';
import { createKey } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { type ClockedApp, codeOf, createClockedApp, post, verify } from './helpers.js';

const DAY = 86_400_000;

describe.each(DIALECTS)('POST /v1/api-keys/{id}/roll on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('issues a new key with the same settings, returned once, linked by rolled_from', async () => {
    t = await createClockedApp({ dialect });
    const old = await createKey(t, {
      name: 'billing',
      description: 'the billing service',
      prefix: 'sk_live',
      scopes: ['billing:*'],
      metadata: { team: 'payments' },
      expires_at: new Date(t.clock.now() + 90 * DAY).toISOString(),
      rate_limit: { limit: 100, window_seconds: 60 },
      quota: { remaining: 500, refill: { amount: 1000, interval: 'month' } },
    });
    const response = await post(t, `/v1/api-keys/${old.id}/roll`, { grace_period_seconds: 3600 });
    expect(response.statusCode).toBe(201);
    expect(response.headers['cache-control']).toBe('no-store');
    const rolled = response.json() as Record<string, unknown> & { key: string; id: string };
    expect(rolled.key).toMatch(/^sk_live_/);
    expect(rolled.key).not.toBe(old.key);
    expect(rolled.id).not.toBe(old.id);
    expect(rolled).toMatchObject({
      name: 'billing',
      description: 'the billing service',
      user_id: null,
      is_admin: false,
      scopes: ['billing:*'],
      metadata: { team: 'payments' },
      status: 'active',
      rolled_from: old.id,
      expires_at: old.body.expires_at,
      rate_limit: { limit: 100, window_seconds: 60 },
      quota: { remaining: 500, refill: { amount: 1000, interval: 'month' } },
      last_used_at: null,
    });
    expect(rolled.key_prefix).toBe(rolled.key.slice(0, 'sk_live_'.length + 8));
    expect(await codeOf(t, rolled.key)).toBe('VALID');
    // Shown once: reading the new key back never returns it.
    const read = await t.app.inject({
      method: 'GET',
      url: `/v1/api-keys/${rolled.id}`,
      headers: { authorization: `Bearer ${t.adminKey}` },
    });
    expect(read.body).not.toContain(rolled.key);
  });

  it('keeps the old key working through the grace period, then EXPIRED', async () => {
    t = await createClockedApp({ dialect });
    const old = await createKey(t);
    expect(await codeOf(t, old.key)).toBe('VALID'); // cached now
    const rolled = (await post(t, `/v1/api-keys/${old.id}/roll`, { grace_period_seconds: 600 })).json() as { key: string };
    expect(await codeOf(t, old.key)).toBe('VALID');
    t.clock.advance(599_000);
    expect(await codeOf(t, old.key)).toBe('VALID');
    t.clock.advance(1_000);
    expect(await codeOf(t, old.key)).toBe('EXPIRED');
    expect(await codeOf(t, rolled.key)).toBe('VALID');
  });

  it('keeps a metered old key working through its grace: both keys spend one quota and count against one rate limit', async () => {
    t = await createClockedApp({ dialect });
    const old = await createKey(t, { quota: { remaining: 5 }, rate_limit: { limit: 4, window_seconds: 60 } });
    const rolled = (await post(t, `/v1/api-keys/${old.id}/roll`, { grace_period_seconds: 600 })).json() as { key: string; id: string };
    const answer = async (key: string) =>
      (await verify(t, { key })).json() as { code: string; remaining?: number; ratelimit?: { remaining: number } };
    const seen = [];
    for (const key of [old.key, rolled.key, old.key, rolled.key, old.key]) {
      const { code, remaining, ratelimit } = await answer(key);
      seen.push([code, remaining, ratelimit?.remaining]);
    }
    expect(seen).toEqual([
      ['VALID', 4, 3],
      ['VALID', 3, 2],
      ['VALID', 2, 1],
      ['VALID', 1, 0],
      ['RATE_LIMITED', undefined, 0],
    ]);
    // A new window: the old key spends the last unit; then the budget is spent for both.
    t.clock.advance(60_000);
    expect(await answer(old.key)).toMatchObject({ code: 'VALID', remaining: 0 });
    expect(await answer(rolled.key)).toMatchObject({ code: 'USAGE_EXCEEDED', remaining: 0 });
    expect(await answer(old.key)).toMatchObject({ code: 'USAGE_EXCEEDED', remaining: 0 });
    t.clock.advance(540_000);
    expect(await codeOf(t, old.key)).toBe('EXPIRED');
  });

  it('a second roll within the first grace moves every key still in grace onto the newest key’s budget', async () => {
    t = await createClockedApp({ dialect });
    const first = await createKey(t, { quota: { remaining: 10 } });
    const second = (await post(t, `/v1/api-keys/${first.id}/roll`, { grace_period_seconds: 600 })).json() as { key: string; id: string };
    expect(await verify(t, { key: first.key }).then((r) => r.json())).toMatchObject({ code: 'VALID', remaining: 9 }); // cached now
    const third = (await post(t, `/v1/api-keys/${second.id}/roll`, { grace_period_seconds: 600 })).json() as { key: string; id: string };
    const remaining = [];
    for (const key of [first.key, second.key, third.key])
      remaining.push(((await verify(t, { key })).json() as { remaining: number }).remaining);
    expect(remaining).toEqual([8, 7, 6]);
    // A key in its grace period cannot be rolled again (the new key would die with it): the answer names the live one.
    expect((await post(t, `/v1/api-keys/${first.id}/roll`, { grace_period_seconds: 600 })).json()).toMatchObject({
      status: 409,
      code: 'KEY_WAS_ROLLED',
      key_id: third.id,
    });
    const read = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${third.id}`, headers: { authorization: `Bearer ${t.adminKey}` } });
    expect(read.json()).toMatchObject({ quota: { remaining: 6 } });
  });

  it('concurrent rolls in one lineage leave every key in grace on the newest budget (no pointer to a replaced key)', async () => {
    t = await createClockedApp({ dialect });
    const roll = async (id: string) => (await post(t, `/v1/api-keys/${id}/roll`, { grace_period_seconds: 600 })).json() as { id: string };
    for (let round = 0; round < 8; round++) {
      const first = await createKey(t, { quota: { remaining: 10 } });
      const second = await roll(first.id);
      // Rolling the budget's owner and, at once, a key that spends it: whichever commits first, the other must see it.
      await Promise.all([roll(second.id), roll(first.id)]);
      const stored = await t.container.db.db.selectFrom('api_keys').select(['id', 'budget_key_id', 'rolled_from']).execute();
      const byId = new Map(stored.map((r) => [r.id, r]));
      const lineage = stored.filter((r) => r.id === first.id || r.rolled_from === first.id || r.rolled_from === second.id);
      // Pointers lead to an owner in one step: never to a key that itself spends another's budget.
      for (const key of lineage) {
        if (key.budget_key_id !== null) expect(byId.get(key.budget_key_id)?.budget_key_id ?? null, `round ${round}`).toBeNull();
      }
    }
  });

  it('re-points only keys still in grace: an expired one, or one replaced at once, is left as it was', async () => {
    t = await createClockedApp({ dialect });
    const first = await createKey(t, { quota: { remaining: 10 } });
    const second = (await post(t, `/v1/api-keys/${first.id}/roll`, { grace_period_seconds: 60 })).json() as { id: string };
    t.clock.advance(120_000); // `first` has expired
    const third = (await post(t, `/v1/api-keys/${second.id}/roll`)).json() as { id: string }; // grace 0
    const read = async (id: string) =>
      (await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}`, headers: { authorization: `Bearer ${t.adminKey}` } })).json() as {
        updated_at: string;
      };
    const firstAfter = await read(first.id);
    expect(Date.parse(firstAfter.updated_at)).toBeLessThan(t.clock.now() - 60_000);
    const stored = await t.container.db.db.selectFrom('api_keys').select(['id', 'budget_key_id']).execute();
    const budgetOf = new Map(stored.map((r) => [r.id, r.budget_key_id]));
    expect(budgetOf.get(first.id)).toBe(second.id);
    expect(budgetOf.get(second.id)).toBeNull();
    expect(budgetOf.get(third.id)).toBeNull();
  });

  it('without a body (or grace 0) stops the old key at once', async () => {
    t = await createClockedApp({ dialect });
    const a = await createKey(t);
    const b = await createKey(t);
    expect(await codeOf(t, a.key)).toBe('VALID');
    expect((await post(t, `/v1/api-keys/${a.id}/roll`)).statusCode).toBe(201);
    expect((await post(t, `/v1/api-keys/${b.id}/roll`, { grace_period_seconds: 0 })).statusCode).toBe(201);
    expect(await codeOf(t, a.key)).toBe('EXPIRED');
    expect(await codeOf(t, b.key)).toBe('EXPIRED');
  });

  it('never extends an old key that already expires sooner than the grace period', async () => {
    t = await createClockedApp({ dialect });
    const soon = new Date(t.clock.now() + 60_000).toISOString();
    const old = await createKey(t, { expires_at: soon });
    await post(t, `/v1/api-keys/${old.id}/roll`, { grace_period_seconds: 86_400 });
    const read = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${old.id}`, headers: { authorization: `Bearer ${t.adminKey}` } });
    expect(read.json()).toMatchObject({ expires_at: soon });
  });

  it('is audited as key.roll on the old key and key.create on the new one, with no secret', async () => {
    t = await createClockedApp({ dialect });
    const old = await createKey(t);
    const rolled = (await post(t, `/v1/api-keys/${old.id}/roll`, { grace_period_seconds: 60 })).json() as { key: string; id: string };
    const entries = await listAuditEntries(t.container.db.db, { limit: 50 });
    const roll = entries.find((e) => e.action === 'key.roll');
    expect(roll).toMatchObject({ targetId: old.id, changes: { new_key_id: rolled.id, grace_period_seconds: 60 } });
    expect(entries.find((e) => e.action === 'key.create' && e.targetId === rolled.id)?.changes).toMatchObject({ rolled_from: old.id });
    expect(JSON.stringify(entries)).not.toContain(rolled.key);
  });

  it('refuses revoked (409 KEY_IS_REVOKED) and expired (409 KEY_IS_EXPIRED) keys, bad grace periods and unknown ids', async () => {
    t = await createClockedApp({ dialect });
    const revoked = await createKey(t);
    await post(t, `/v1/api-keys/${revoked.id}/revoke`);
    expect((await post(t, `/v1/api-keys/${revoked.id}/roll`)).json()).toMatchObject({ status: 409, code: 'KEY_IS_REVOKED' });
    const expiring = await createKey(t, { expires_at: new Date(t.clock.now() + 1000).toISOString() });
    t.clock.advance(1000);
    expect((await post(t, `/v1/api-keys/${expiring.id}/roll`)).json()).toMatchObject({ status: 409, code: 'KEY_IS_EXPIRED' });
    const ok = await createKey(t);
    for (const grace of [-1, 30 * 86_400 + 1, 1.5]) {
      expect((await post(t, `/v1/api-keys/${ok.id}/roll`, { grace_period_seconds: grace })).statusCode).toBe(400);
    }
    expect((await post(t, `/v1/api-keys/${ok.id}/roll`, { grace_period_seconds: 30 * 86_400 })).statusCode).toBe(201);
    expect((await post(t, '/v1/api-keys/01900000-0000-7000-8000-000000000000/roll')).json()).toMatchObject({ code: 'KEY_NOT_FOUND' });
    // Nothing was issued by the refused rolls: the revoked key still has no successor.
    const list = await t.app.inject({
      method: 'GET',
      url: '/v1/api-keys?include_inactive=true&limit=100',
      headers: { authorization: `Bearer ${t.adminKey}` },
    });
    const rolledFrom = (list.json() as { data: Array<{ rolled_from: string | null }> }).data.map((k) => k.rolled_from);
    expect(rolledFrom).not.toContain(revoked.id);
    expect(rolledFrom).not.toContain(expiring.id);
  });

  it('follows the update permission rules, and a key cannot roll one holding scopes it lacks', async () => {
    t = await createClockedApp({ dialect });
    const target = await createKey(t, { scopes: ['inventory:read'] });
    const reader = await createKey(t, { scopes: ['keyward:keys:read'] });
    const plain = await createKey(t, { scopes: ['inventory:read'] });
    const writer = await createKey(t, { scopes: ['keyward:keys:write'] });
    const strongWriter = await createKey(t, { scopes: ['keyward:keys:write', 'inventory:*'] });
    const admin2 = await createKey(t, { is_admin: true });
    const anonymous = await t.app.inject({ method: 'POST', url: `/v1/api-keys/${target.id}/roll` });
    expect(anonymous.statusCode).toBe(401);
    for (const caller of [reader, plain, writer]) {
      expect((await post(t, `/v1/api-keys/${target.id}/roll`, {}, caller.key)).statusCode).toBe(403);
    }
    // Only an admin may roll an admin key.
    expect((await post(t, `/v1/api-keys/${admin2.id}/roll`, {}, strongWriter.key)).statusCode).toBe(403);
    expect((await post(t, `/v1/api-keys/${target.id}/roll`, {}, strongWriter.key)).statusCode).toBe(201);
    expect((await post(t, `/v1/api-keys/${admin2.id}/roll`, {})).json()).toMatchObject({ is_admin: true });
  });
});
