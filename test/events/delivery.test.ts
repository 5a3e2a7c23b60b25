import http from 'node:http';
import { generateKey } from '@keyward/sdk';
import { Webhook } from 'standardwebhooks';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../packages/server/src/config.js';
import { pinnedLookup } from '../../packages/server/src/events/address-guard.js';
import { createDeliveryWorker, type Sender, sendHttp } from '../../packages/server/src/events/delivery.js';
import { createSecretBox } from '../../packages/server/src/events/signing.js';
import { startServer } from '../../packages/server/src/server.js';
import { type Db, openDatabase } from '../../packages/server/src/store/database.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { freePort } from '../helpers/cli.js';
import { DIALECTS, freshDatabase } from '../helpers/db.js';
import { type Receiver, startReceiver } from './receiver.js';

// The delivery worker: Standard Webhooks signatures a receiver's library verifies, retries with backoff (a clock
// moved by hand, no waiting), every attempt recorded, a failing URL disabled, the retry endpoint, one delivery per
// event across workers, redelivery after a worker dies mid-delivery, and private addresses refused when sending.

interface DeliveryView {
  id: string;
  status: string;
  attempts: number;
  event_id: string;
  event_type: string;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  attempt_log: { attempted_at: string; status_code: number | null; error: string | null; duration_ms: number }[];
}

const START = Date.UTC(2030, 0, 1, 12);

describe.each(DIALECTS)('webhook delivery (%s)', (dialect) => {
  let t: TestApp;
  let receiver: Receiver;
  let clock = START;
  const extra: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const closing of extra.splice(0)) await closing.close();
    await receiver?.close();
    await t?.close();
  });

  async function setUp(env: Record<string, string> = {}): Promise<void> {
    clock = START;
    receiver = await startReceiver();
    t = await createTestApp({ dialect, env: { WEBHOOK_ALLOW_PRIVATE: 'true', ...env }, now: () => clock });
  }

  const call = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) =>
    t.app.inject({ method, url, headers: bearer(t.adminKey), ...(payload ? { payload } : {}) });

  async function webhook(eventTypes: string[] = ['*']): Promise<{ id: string; secret: string }> {
    const created = await call('POST', '/v1/webhooks', { url: receiver.url, event_types: eventTypes });
    expect(created.statusCode).toBe(201);
    return created.json() as { id: string; secret: string };
  }

  const deliveries = async (webhookId: string, query = ''): Promise<DeliveryView[]> =>
    ((await call('GET', `/v1/webhooks/${webhookId}/deliveries${query}`)).json() as { data: DeliveryView[] }).data;

  /** A worker on the test's database with the test's clock and no jitter (random 0.5: the schedule exactly). */
  const worker = (options: Partial<Parameters<typeof createDeliveryWorker>[0]> = {}) =>
    createDeliveryWorker({
      db: t.container.db,
      secrets: createSecretBox(null),
      allowPrivate: true,
      now: () => clock,
      random: () => 0.5,
      ...options,
    });

  it('signs each delivery so that the standardwebhooks library verifies it', async () => {
    await setUp();
    const hook = await webhook(['key.created']);
    const key = await createKey(t, { name: 'signed' });
    expect(await worker().runOnce()).toBe(1);
    expect(receiver.received).toHaveLength(1);
    const [got] = receiver.received;
    if (!got) throw new Error('nothing received');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['webhook-timestamp']).toBe(String(Math.floor(clock / 1000)));
    expect(got.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    // The receiver's side: any Standard Webhooks library, with the secret shown at creation.
    const verifier = new Webhook(hook.secret);
    const headers = {
      'webhook-id': String(got.headers['webhook-id']),
      'webhook-timestamp': String(got.headers['webhook-timestamp']),
      'webhook-signature': String(got.headers['webhook-signature']),
    };
    // The library checks the timestamp against the real time: the clock here is the test's, so it is told that one.
    const realNow = Date.now;
    Date.now = () => clock;
    try {
      const payload = verifier.verify(got.body, headers) as { type: string; timestamp: string; data: { key: { id: string } } };
      expect(payload).toMatchObject({ type: 'key.created', timestamp: new Date(clock).toISOString(), data: { key: { id: key.id } } });
      expect(() => verifier.verify(got.body.replace('signed', 'forged'), headers)).toThrow();
      expect(() => new Webhook(`whsec_${Buffer.alloc(24, 1).toString('base64')}`).verify(got.body, headers)).toThrow();
    } finally {
      Date.now = realNow;
    }
    // webhook-id is the event's id, the same at every attempt.
    const [delivery] = await deliveries(hook.id);
    expect(got.headers['webhook-id']).toBe(delivery?.event_id);
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 1, last_status_code: 200, event_type: 'key.created' });
  });

  it('sends only the event types a webhook subscribed to, and none to a disabled one', async () => {
    await setUp();
    const revocations = await webhook(['key.revoked']);
    const off = await webhook(['*']);
    await call('PATCH', `/v1/webhooks/${off.id}`, { enabled: false });
    const key = await createKey(t);
    await call('POST', `/v1/api-keys/${key.id}/revoke`);
    await worker().runOnce();
    expect(receiver.received.map((r) => (JSON.parse(r.body) as { type: string }).type)).toEqual(['key.revoked']);
    expect(await deliveries(revocations.id)).toHaveLength(1);
    expect(await deliveries(off.id)).toHaveLength(0);
  });

  it('retries with backoff on the Standard Webhooks schedule, records every attempt, then gives up (dead)', async () => {
    await setUp();
    receiver.answer(500);
    const hook = await webhook(['key.created']);
    await createKey(t);
    const w = worker({ disableAfterMs: Number.POSITIVE_INFINITY });
    const schedule = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];
    expect(await w.runOnce()).toBe(1);
    for (const [i, delay] of schedule.entries()) {
      const [pending] = await deliveries(hook.id);
      expect(pending).toMatchObject({ status: 'failed', attempts: i + 1, last_status_code: 500, last_error: 'HTTP 500' });
      expect(pending?.next_attempt_at).toBe(new Date(clock + delay).toISOString());
      clock += delay - 1;
      expect(await w.runOnce(), `not yet due after attempt ${i + 1}`).toBe(0);
      clock += 1;
      expect(await w.runOnce()).toBe(1);
    }
    const [dead] = await deliveries(hook.id);
    expect(dead).toMatchObject({ status: 'dead', attempts: 8, next_attempt_at: null });
    expect(dead?.attempt_log).toHaveLength(8);
    expect(dead?.attempt_log.every((a) => a.status_code === 500 && a.error === 'HTTP 500')).toBe(true);
    expect(receiver.received).toHaveLength(8);
    // Each attempt is signed anew, with its own timestamp, for the same event id.
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).toBe(1);
    expect(new Set(receiver.received.map((r) => r.headers['webhook-timestamp'])).size).toBe(8);
    clock += 100 * 3_600_000;
    expect(await w.runOnce()).toBe(0);
  });

  it('spreads retries with jitter (±20 %)', async () => {
    await setUp();
    receiver.answer(503);
    const hook = await webhook(['key.created']);
    await createKey(t);
    await worker({ random: () => 0 }).runOnce();
    expect((await deliveries(hook.id))[0]?.next_attempt_at).toBe(new Date(clock + 4_000).toISOString());
    clock += 4_000;
    await worker({ random: () => 0.999_999 }).runOnce();
    expect((await deliveries(hook.id))[0]?.next_attempt_at).toBe(new Date(clock + 360_000).toISOString());
  });

  it('disables a webhook whose every attempt failed for a day, says why, and ends its deliveries; retry works once enabled', async () => {
    await setUp();
    receiver.answer(500);
    const hook = await webhook(['key.created']);
    await createKey(t, { name: 'first' });
    // One delivery per round, the one due first: the order below is the worker's, not a race's.
    const w = worker({ batchSize: 1 });
    await w.runOnce();
    for (const delay of [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]) {
      clock += delay;
      await w.runOnce();
    }
    // 17.5 h of failures: not yet. A second event is written meanwhile.
    expect((await call('GET', `/v1/webhooks/${hook.id}`)).json()).toMatchObject({ enabled: true, consecutive_failures: 7 });
    await createKey(t, { name: 'second' });
    clock += 36_000_000;
    await w.runOnce();
    const disabled = (await call('GET', `/v1/webhooks/${hook.id}`)).json() as { enabled: boolean; disabled_reason: string };
    expect(disabled.enabled).toBe(false);
    // The second event's first attempt (due first) was the 8th failure in a row, 27.6 hours after the first.
    expect(disabled.disabled_reason).toBe('every attempt failed for 28 hours (8 in a row; last: HTTP 500)');
    const ended = await deliveries(hook.id);
    expect(ended.map((d) => [d.status, d.attempts, d.last_error])).toEqual([
      ['dead', 1, 'the webhook was disabled'],
      ['dead', 7, 'the webhook was disabled'],
    ]);
    expect(await w.runOnce()).toBe(0);
    // While disabled: no new deliveries, and no retries.
    await createKey(t, { name: 'third' });
    expect(await deliveries(hook.id)).toHaveLength(2);
    const first = ended[1];
    if (!first) throw new Error('no delivery');
    const refused = await call('POST', `/v1/webhooks/${hook.id}/deliveries/${first.id}/retry`);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'WEBHOOK_DISABLED' });
    // Enabled again, the receiver fixed: the retry endpoint sends it once more, and it succeeds.
    await call('PATCH', `/v1/webhooks/${hook.id}`, { enabled: true });
    receiver.answer(204);
    const retried = await call('POST', `/v1/webhooks/${hook.id}/deliveries/${first.id}/retry`);
    expect(retried.statusCode).toBe(202);
    expect(retried.json()).toMatchObject({ status: 'pending', next_attempt_at: new Date(clock).toISOString() });
    expect(await w.runOnce()).toBe(1);
    const [, done] = await deliveries(hook.id);
    expect(done).toMatchObject({ id: first.id, status: 'succeeded', attempts: 8, last_status_code: 204 });
    expect(done?.attempt_log.map((a) => a.status_code)).toEqual([500, 500, 500, 500, 500, 500, 500, 204]);
    expect((await call('GET', `/v1/webhooks/${hook.id}`)).json()).toMatchObject({ consecutive_failures: 0, failing_since: null });
    const missing = await call('POST', `/v1/webhooks/${hook.id}/deliveries/0197a4e5-3c4d-7e5f-8a6b-7c8d9e0f1a3c/retry`);
    expect(missing.json()).toMatchObject({ code: 'DELIVERY_NOT_FOUND' });
  });

  it('a retry of a dead delivery makes one more attempt, not a new schedule', async () => {
    await setUp();
    receiver.answer(500);
    const hook = await webhook(['key.created']);
    await createKey(t);
    const w = worker({ disableAfterMs: Number.POSITIVE_INFINITY });
    await w.runOnce();
    for (const delay of [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]) {
      clock += delay;
      await w.runOnce();
    }
    const [dead] = await deliveries(hook.id);
    expect(dead?.status).toBe('dead');
    await call('POST', `/v1/webhooks/${hook.id}/deliveries/${dead?.id}/retry`);
    await w.runOnce();
    expect(await deliveries(hook.id)).toMatchObject([{ status: 'dead', attempts: 9 }]);
  });

  it('filters deliveries by status and pages them', async () => {
    await setUp();
    const hook = await webhook(['key.created']);
    for (let i = 0; i < 3; i++) await createKey(t);
    const all = (await call('GET', `/v1/webhooks/${hook.id}/deliveries?limit=2`)).json() as { data: DeliveryView[]; next_cursor: string };
    expect(all.data).toHaveLength(2);
    const rest = (await call('GET', `/v1/webhooks/${hook.id}/deliveries?limit=2&cursor=${all.next_cursor}`)).json() as {
      data: DeliveryView[];
    };
    expect(rest.data).toHaveLength(1);
    await worker({ batchSize: 1 }).runOnce();
    expect(await deliveries(hook.id, '?status=succeeded')).toHaveLength(1);
    expect(await deliveries(hook.id, '?status=pending')).toHaveLength(2);
    expect((await call('GET', `/v1/webhooks/${hook.id}/deliveries?status=lost`)).statusCode).toBe(400);
  });

  it('two workers on one database (two connections) deliver each event once', async () => {
    await setUp();
    const hook = await webhook(['key.created', 'key.revoked']);
    for (let i = 0; i < 12; i++) await createKey(t);
    const second: Db = openDatabase(t.config.databaseUrl);
    extra.push({ close: () => second.close() });
    const a = worker({ batchSize: 3, instanceId: 'a' });
    const b = worker({ batchSize: 3, instanceId: 'b', db: second });
    for (let round = 0; round < 6; round++) await Promise.all([a.runOnce(), b.runOnce()]);
    const ids = receiver.received.map((r) => String(r.headers['webhook-id']));
    expect(ids).toHaveLength(12);
    expect(new Set(ids).size).toBe(12);
    expect((await deliveries(hook.id, '?limit=100')).every((d) => d.status === 'succeeded' && d.attempts === 1)).toBe(true);
  });

  it('a worker killed mid-delivery leaves it to another once its lease has passed (at least once)', async () => {
    await setUp();
    const hook = await webhook(['key.created']);
    await createKey(t);
    // The first worker's request never ends: as if its process were killed while sending.
    let release: (status: number) => void = () => {};
    let sending: () => void = () => {};
    const sent = new Promise<void>((resolve) => {
      sending = resolve;
    });
    const hanging: Sender = () =>
      new Promise<number>((resolve) => {
        release = resolve;
        sending();
      });
    const killed = worker({ send: hanging, instanceId: 'killed', leaseMs: 60_000 });
    const stuck = killed.runOnce();
    await sent;
    const other = worker({ instanceId: 'other' });
    expect(await other.runOnce()).toBe(0); // leased
    clock += 59_999;
    expect(await other.runOnce()).toBe(0);
    clock += 1;
    expect(await other.runOnce()).toBe(1);
    expect(receiver.received).toHaveLength(1);
    expect(await deliveries(hook.id)).toMatchObject([{ status: 'succeeded', attempts: 1 }]);
    // The first worker's late answer changes nothing: its claim was taken over.
    release(500);
    await stuck;
    const [after] = await deliveries(hook.id);
    expect(after).toMatchObject({ status: 'succeeded', attempts: 1, last_status_code: 200 });
    expect(after?.attempt_log.map((a) => a.status_code).sort()).toEqual([200, 500]);
  });

  it('refuses private addresses when sending unless allowed, and follows no redirect', async () => {
    await setUp();
    const hook = await webhook(['key.created']);
    await createKey(t);
    // Allowed when created (WEBHOOK_ALLOW_PRIVATE=true here); a worker without the setting refuses it when sending.
    await worker({ allowPrivate: false }).runOnce();
    expect(receiver.received).toHaveLength(0);
    const [refused] = await deliveries(hook.id);
    expect(refused).toMatchObject({ status: 'failed', last_status_code: null, last_error: 'refused: 127.0.0.1 is not a public address' });
    // A name that resolved to a public address when created but resolves to a private one now (DNS rebinding).
    await t.container.db.db.updateTable('webhooks').set({ url: 'http://hooks.example.test/hooks' }).where('id', '=', hook.id).execute();
    clock += 5_000;
    await worker({ allowPrivate: false, resolve: async () => [{ address: '10.0.0.8', family: 4 }] }).runOnce();
    expect(receiver.received).toHaveLength(0);
    expect((await deliveries(hook.id))[0]?.last_error).toBe(
      'refused: hooks.example.test resolves to 10.0.0.8, which is not a public address',
    );
    // A redirect is an answer like any other non-2xx: not followed.
    await t.container.db.db.updateTable('webhooks').set({ url: receiver.url }).where('id', '=', hook.id).execute();
    receiver.answer(307, { location: 'http://169.254.169.254/' });
    clock += 300_000;
    await worker().runOnce();
    expect(receiver.received).toHaveLength(1);
    expect((await deliveries(hook.id))[0]).toMatchObject({ status: 'failed', last_status_code: 307, last_error: 'HTTP 307' });
  });

  it('records a connection failure as a failed attempt, with a short error', async () => {
    await setUp();
    const hook = await webhook(['key.created']);
    await call('PATCH', `/v1/webhooks/${hook.id}`, { url: 'http://127.0.0.1:9/closed' });
    await createKey(t);
    await worker().runOnce();
    const [failed] = await deliveries(hook.id);
    expect(failed).toMatchObject({ status: 'failed', last_status_code: null });
    expect(failed?.last_error).toMatch(/^connection failed \(E[A-Z]+\)$/);
  });
});

describe('pinning the connection to the address checked', () => {
  it('connects to the pinned address whatever the name would resolve to', async () => {
    const receiver = await startReceiver();
    try {
      const status = await sendHttp({
        url: new URL(`http://webhooks.invalid:${receiver.port}/pinned`),
        headers: { 'content-type': 'application/json' },
        body: '{}',
        timeoutMs: 5_000,
        lookup: pinnedLookup('127.0.0.1', 4),
      });
      expect(status).toBe(200);
      expect(receiver.received[0]?.headers.host).toBe(`webhooks.invalid:${receiver.port}`);
    } finally {
      await receiver.close();
    }
  });

  it('times out a receiver that does not answer', async () => {
    const server = http.createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      await expect(sendHttp({ url: new URL(`http://127.0.0.1:${port}/`), headers: {}, body: '{}', timeoutMs: 100 })).rejects.toThrow(
        'no answer within 0.1 s',
      );
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('keyward serve', () => {
  it('delivers in the background: an event written through the API reaches the receiver', async () => {
    const database = await freshDatabase('sqlite');
    const receiver = await startReceiver();
    const adminKey = generateKey('kw');
    const config = loadConfig({
      DATABASE_URL: database.url,
      INITIAL_ADMIN_KEY: adminKey,
      LOG_LEVEL: 'silent',
      PORT: String(await freePort()),
      WEBHOOK_ALLOW_PRIVATE: 'true',
    });
    const server = await startServer(config, () => {});
    try {
      const headers = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
      const created = await fetch(`${server.url}/v1/webhooks`, { method: 'POST', headers, body: JSON.stringify({ url: receiver.url }) });
      expect(created.status).toBe(201);
      await fetch(`${server.url}/v1/users`, { method: 'POST', headers, body: JSON.stringify({ external_id: 'served' }) });
      // Polled by the server's worker (every second): wait for it, up to the test's timeout.
      while (receiver.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(JSON.parse(receiver.received[0]?.body ?? '{}')).toMatchObject({
        type: 'user.created',
        data: { user: { external_id: 'served' } },
      });
    } finally {
      await server.stop();
      await receiver.close();
      await database.cleanup();
    }
  });
});
