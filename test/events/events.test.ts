import { hashApiKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { EVENT_TYPES } from '../../packages/server/src/events/catalogue.js';
import { createDeliveryWorker } from '../../packages/server/src/events/delivery.js';
import { emitEvent } from '../../packages/server/src/events/outbox.js';
import { createSecretBox } from '../../packages/server/src/events/signing.js';
import { createEventSweeps } from '../../packages/server/src/events/sweeps.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { hsToken, JWT_ENV } from '../users/tokens.js';
import { type Receiver, startReceiver } from './receiver.js';

// The events themselves: written in the transaction of the change they report (an outbox), one per change, with
// ids, names and display prefixes and never a key or a hash; the expiry sweep (once per key and expiry, one
// instance at a time); the quota events (once per refill period).

interface EventView {
  id: string;
  type: string;
  data: Record<string, unknown> & { key?: { id: string }; user?: { id: string } };
  created_at: string;
}

const DAY = 86_400_000;

describe.each(DIALECTS)('events (%s)', (dialect) => {
  let t: TestApp;
  let receiver: Receiver | undefined;
  afterEach(async () => {
    await receiver?.close();
    receiver = undefined;
    await t?.close();
  });

  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object, key = t.adminKey) =>
    t.app.inject({ method, url, headers: bearer(key), ...(payload ? { payload } : {}) });

  async function events(query = ''): Promise<EventView[]> {
    const found: EventView[] = [];
    let cursor: string | null = null;
    do {
      const page = (await call('GET', `/v1/events?limit=100${query}${cursor ? `&cursor=${cursor}` : ''}`)).json() as {
        data: EventView[];
        next_cursor: string | null;
      };
      found.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor);
    return found.reverse();
  }

  const count = async (table: 'events' | 'webhook_deliveries') =>
    Number(
      (
        await t.container.db.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  it('writes an event and its deliveries in the caller’s transaction: rolled back, nothing is left', async () => {
    t = await createTestApp({ dialect, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/' });
    const before = await count('events');
    await expect(
      t.container.db.db.transaction().execute(async (trx) => {
        await emitEvent(trx, 'user.created', { user: { id: 'u1' } }, Date.now());
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(await count('events')).toBe(before);
    expect(await count('webhook_deliveries')).toBe(0);
    await t.container.db.db.transaction().execute((trx) => emitEvent(trx, 'user.created', { user: { id: 'u1' } }, Date.now()));
    expect(await count('events')).toBe(before + 1);
    expect(await count('webhook_deliveries')).toBe(1);
  });

  it('a refused change writes no event', async () => {
    t = await createTestApp({ dialect });
    const key = await createKey(t);
    await call('POST', `/v1/api-keys/${key.id}/revoke`);
    const before = await count('events');
    expect((await call('POST', `/v1/api-keys/${key.id}/deactivate`)).statusCode).toBe(409);
    expect((await call('POST', `/v1/api-keys/${key.id}/roll`, {})).statusCode).toBe(409);
    expect((await call('POST', '/v1/users', { external_id: 'ada', tier: 'nope' })).statusCode).toBe(400);
    expect(await count('events')).toBe(before);
  });

  it('sends every kind of event, with ids, names and prefixes, and never a key or a hash', async () => {
    receiver = await startReceiver();
    t = await createTestApp({ dialect, env: { WEBHOOK_ALLOW_PRIVATE: 'true', ...JWT_ENV } });
    await call('POST', '/v1/webhooks', { url: receiver.url });
    const secrets: string[] = [t.adminKey];

    const user = (await call('POST', '/v1/users', { external_id: 'ada', tier: 'pro' })).json() as { id: string };
    await call('PATCH', `/v1/users/${user.id}`, { tier: 'enterprise' });
    const owned = await createKey(t, { name: 'owned', user_id: user.id });
    secrets.push(owned.key);
    const signedIn = await t.app.inject({ method: 'GET', url: '/v1/users/me/api-keys', headers: bearer(await hsToken('grace')) });
    expect(signedIn.statusCode).toBe(200);

    const key = await createKey(t, { name: 'billing', quota: { remaining: 10, refill: { amount: 10, interval: 'day' } } });
    secrets.push(key.key);
    await call('PATCH', `/v1/api-keys/${key.id}`, { name: 'billing v2', scopes: ['invoices:read'] });
    await call('POST', `/v1/api-keys/${key.id}/deactivate`);
    await call('POST', `/v1/api-keys/${key.id}/activate`);
    const rolled = (await call('POST', `/v1/api-keys/${key.id}/roll`, { grace_period_seconds: 60 })).json() as { id: string; key: string };
    secrets.push(rolled.key);
    for (let i = 0; i < 10; i++) {
      await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key: rolled.key } });
    }
    await t.container.quotaEvents.close();
    const leaked = await createKey(t, { name: 'pasted' });
    secrets.push(leaked.key);
    expect((await t.app.inject({ method: 'POST', url: '/v1/leaks/report', payload: { keys: [leaked.key] } })).statusCode).toBe(202);
    const expiring = await createKey(t, { name: 'soon', expires_at: new Date(Date.now() + DAY).toISOString() });
    secrets.push(expiring.key);
    const sweeps = createEventSweeps({ db: t.container.db, expiringBeforeMs: 7 * DAY, retentionDays: 30, instanceId: 'one' });
    await sweeps.runOnce();
    await createEventSweeps({
      db: t.container.db,
      expiringBeforeMs: 7 * DAY,
      retentionDays: 30,
      instanceId: 'one',
      now: () => Date.now() + 2 * DAY,
    }).runOnce();
    await call('POST', `/v1/api-keys/${rolled.id}/revoke`);
    await call('DELETE', `/v1/api-keys/${rolled.id}`);
    await call('DELETE', `/v1/users/${user.id}`);

    const all = await events();
    expect(new Set(all.map((e) => e.type))).toEqual(new Set(EVENT_TYPES));
    const of = (type: string) => all.filter((e) => e.type === type);
    expect(of('key.updated')[0]?.data).toMatchObject({
      key: { id: key.id, name: 'billing v2' },
      changes: { name: { from: 'billing', to: 'billing v2' }, scopes: { from: [], to: ['invoices:read'] } },
      actor: { type: 'api_key' },
    });
    expect(of('key.rolled')[0]?.data).toMatchObject({ key: { id: key.id }, new_key: { id: rolled.id }, grace_period_seconds: 60 });
    expect(of('key.leaked')[0]?.data).toMatchObject({ key: { id: leaked.id, name: 'pasted' }, source: 'report', revoked: true });
    expect(of('quota.low')[0]?.data).toMatchObject({ key: { id: rolled.id }, quota: { remaining: 1, threshold: 1 } });
    expect(of('quota.exhausted')[0]?.data).toMatchObject({ key: { id: rolled.id }, quota: { remaining: 0 } });
    expect(of('user.created').map((e) => e.data.source)).toEqual([undefined, 'jwt']);
    expect(of('user.deleted')[0]?.data).toMatchObject({ user: { id: user.id }, keys_deleted: 1 });
    expect(of('key.deleted').map((e) => [e.data.key?.id, e.data.cause])).toEqual([
      [rolled.id, undefined],
      [owned.id, 'user.delete'],
    ]);
    expect(of('key.expiring').map((e) => e.data.key?.id)).toEqual([expiring.id]);
    expect(of('key.expired').map((e) => e.data.key?.id)).toEqual([key.id, expiring.id]);

    // Delivered too: the bodies received hold no key and no hash either.
    // Two days on (the sweep wrote its `key.expired` events then), every delivery is due.
    const worker = createDeliveryWorker({
      db: t.container.db,
      secrets: createSecretBox(null),
      allowPrivate: true,
      now: () => Date.now() + 3 * DAY,
    });
    while ((await worker.runOnce()) > 0);
    // All but the first: the bootstrap admin key's `key.created`, written before the webhook was.
    expect(receiver.received).toHaveLength(all.length - 1);
    const text = [JSON.stringify(all), ...receiver.received.map((r) => r.body)].join('\n');
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(hashApiKey(secret));
    }
    expect(text).not.toMatch(/\b[0-9a-f]{64}\b/);
  });

  it('announces a key expiring once per key and expiry, and expired once, from one instance at a time', async () => {
    let clock = Date.UTC(2030, 0, 1);
    t = await createTestApp({ dialect, now: () => clock });
    const soon = await createKey(t, { expires_at: new Date(clock + 3 * DAY).toISOString() });
    await createKey(t, { expires_at: new Date(clock + 30 * DAY).toISOString() });
    const sweeper = (instanceId: string) =>
      createEventSweeps({ db: t.container.db, expiringBeforeMs: 7 * DAY, retentionDays: 30, instanceId, now: () => clock });
    const one = sweeper('one');
    const two = sweeper('two');
    expect(await one.runOnce()).toEqual({ expiring: 1, expired: 0 });
    expect(await two.runOnce()).toBeNull(); // the lease is one's
    expect(await one.runOnce()).toEqual({ expiring: 0, expired: 0 });
    // A new expiry is announced again.
    await call('PATCH', `/v1/api-keys/${soon.id}`, { expires_at: new Date(clock + 5 * DAY).toISOString() });
    expect(await one.runOnce()).toEqual({ expiring: 1, expired: 0 });
    const expiring = await events('&type=key.expiring');
    expect(expiring.map((e) => e.data)).toEqual([
      expect.objectContaining({ expires_at: new Date(clock + 3 * DAY).toISOString(), expires_in_seconds: 3 * 86_400 }),
      expect.objectContaining({ expires_at: new Date(clock + 5 * DAY).toISOString(), expires_in_seconds: 5 * 86_400 }),
    ]);
    // One stops; once its lease has run out, two takes over.
    clock += 5 * DAY + 1;
    expect(await two.runOnce()).toEqual({ expiring: 0, expired: 1 });
    expect(await two.runOnce()).toEqual({ expiring: 0, expired: 0 });
    expect((await events('&type=key.expired')).map((e) => e.data.key?.id)).toEqual([soon.id]);
    // Old events are pruned (EVENTS_RETENTION_DAYS).
    clock += 31 * DAY;
    await two.runOnce();
    expect(await events()).toHaveLength(1); // the second key's `key.expired` was announced just now
  });

  it('sends quota.low and quota.exhausted once per refill period', async () => {
    let clock = Date.UTC(2030, 0, 1, 10);
    t = await createTestApp({ dialect, now: () => clock });
    const key = await createKey(t, { quota: { remaining: 20, refill: { amount: 20, interval: 'day' } } });
    const verify = async (cost = 1) =>
      (
        await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key: key.key, cost } })
      ).json() as { code: string; remaining: number };
    const quotaEvents = async () => {
      await t.container.quotaEvents.close();
      return (await events())
        .filter((e) => e.type.startsWith('quota.'))
        .map((e) => [e.type, (e.data.quota as { remaining: number }).remaining]);
    };
    for (let i = 0; i < 17; i++) await verify();
    expect(await quotaEvents()).toEqual([]);
    expect(await verify()).toMatchObject({ remaining: 2 }); // 2 = 10 % of 20: low
    expect(await verify()).toMatchObject({ remaining: 1 });
    expect(await quotaEvents()).toEqual([['quota.low', 2]]);
    expect(await verify()).toMatchObject({ remaining: 0 });
    expect(await verify()).toMatchObject({ code: 'USAGE_EXCEEDED' });
    expect(await quotaEvents()).toEqual([
      ['quota.low', 2],
      ['quota.exhausted', 0],
    ]);
    // Raised and spent down again the same day: nothing more.
    await t.app.inject({
      method: 'PATCH',
      url: `/v1/api-keys/${key.id}`,
      headers: bearer(t.adminKey),
      payload: { quota: { remaining: 3, refill: { amount: 20, interval: 'day' } } },
    });
    await verify(3);
    expect(await quotaEvents()).toHaveLength(2);
    // The next day it refills: once more each.
    clock += 86_400_000;
    await verify(18);
    await verify(2);
    expect(await quotaEvents()).toEqual([
      ['quota.low', 2],
      ['quota.exhausted', 0],
      ['quota.low', 2],
      ['quota.exhausted', 0],
    ]);
  });

  it('a quota without refill sends quota.exhausted each time it is emptied, and no quota.low', async () => {
    t = await createTestApp({ dialect });
    const key = await createKey(t, { quota: { remaining: 2 } });
    const verify = () => t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key: key.key } });
    await verify();
    await verify();
    await verify();
    await t.app.inject({
      method: 'PATCH',
      url: `/v1/api-keys/${key.id}`,
      headers: bearer(t.adminKey),
      payload: { quota: { remaining: 1 } },
    });
    await verify();
    await t.container.quotaEvents.close();
    expect((await events()).filter((e) => e.type.startsWith('quota.')).map((e) => e.type)).toEqual(['quota.exhausted', 'quota.exhausted']);
  });
});
