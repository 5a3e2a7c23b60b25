import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// The webhooks API (admin only): create with the secret shown once, list, get, change, roll the secret, delete;
// URLs that point at loopback, private or link-local addresses refused unless WEBHOOK_ALLOW_PRIVATE; events listed.

describe.each(DIALECTS)('webhooks API (%s)', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object, key = t.adminKey) =>
    t.app.inject({ method, url, headers: bearer(key), ...(payload ? { payload } : {}) });

  it('creates a webhook, shows its secret once, lists, gets, changes, rolls and deletes it', async () => {
    t = await createTestApp({ dialect, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const created = await call('POST', '/v1/webhooks', {
      url: 'http://127.0.0.1:9/hooks',
      description: 'alerts',
      event_types: ['key.revoked', 'key.leaked', 'key.revoked'],
    });
    expect(created.statusCode).toBe(201);
    const body = created.json() as { id: string; secret: string; event_types: string[]; enabled: boolean };
    expect(body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(Buffer.from(body.secret.slice(6), 'base64')).toHaveLength(24);
    expect(body).toMatchObject({ event_types: ['key.revoked', 'key.leaked'], enabled: true, description: 'alerts' });

    // Never again: not in the list, not in a get, not stored as is.
    const listed = await call('GET', '/v1/webhooks');
    expect(listed.statusCode).toBe(200);
    expect(listed.body).not.toContain(body.secret);
    expect((listed.json() as { data: { id: string }[] }).data.map((w) => w.id)).toEqual([body.id]);
    const got = await call('GET', `/v1/webhooks/${body.id}`);
    expect(got.json()).not.toHaveProperty('secret');

    const patched = await call('PATCH', `/v1/webhooks/${body.id}`, { event_types: ['*'], description: null, enabled: false });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({
      event_types: ['*'],
      description: null,
      enabled: false,
      disabled_reason: 'disabled by an admin',
    });
    const enabled = await call('PATCH', `/v1/webhooks/${body.id}`, { enabled: true });
    expect(enabled.json()).toMatchObject({ enabled: true, disabled_reason: null });

    const rolled = await call('POST', `/v1/webhooks/${body.id}/roll-secret`);
    expect(rolled.statusCode).toBe(200);
    const rolledSecret = (rolled.json() as { secret: string }).secret;
    expect(rolledSecret).toMatch(/^whsec_/);
    expect(rolledSecret).not.toBe(body.secret);

    expect((await call('DELETE', `/v1/webhooks/${body.id}`)).statusCode).toBe(204);
    expect((await call('GET', `/v1/webhooks/${body.id}`)).json()).toMatchObject({ code: 'WEBHOOK_NOT_FOUND' });
    expect((await call('DELETE', `/v1/webhooks/${body.id}`)).statusCode).toBe(404);
  });

  it('stores the secret sealed when WEBHOOK_ENCRYPTION_KEY is set, and as is (marked plain) without', async () => {
    t = await createTestApp({
      dialect,
      env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64') },
    });
    const sealed = (await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/' })).json() as { id: string; secret: string };
    const row = await t.container.db.db.selectFrom('webhooks').select('secret').where('id', '=', sealed.id).executeTakeFirstOrThrow();
    expect(row.secret).toMatch(/^aes256gcm:/);
    expect(row.secret).not.toContain(sealed.secret.slice(6));
    await t.close();
    t = await createTestApp({ dialect, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const plain = (await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/' })).json() as { id: string; secret: string };
    const plainRow = await t.container.db.db.selectFrom('webhooks').select('secret').where('id', '=', plain.id).executeTakeFirstOrThrow();
    expect(plainRow.secret).toBe(`plain:${plain.secret}`);
  });

  it('refuses URLs at loopback, private, link-local and mapped addresses by default (create and PATCH)', async () => {
    t = await createTestApp({ dialect });
    for (const url of [
      'http://127.0.0.1:8080/hooks',
      'http://localhost:8080/hooks',
      'http://10.1.2.3/',
      'http://172.16.0.1/',
      'http://192.168.1.10/',
      'http://169.254.169.254/latest/meta-data/',
      'http://100.64.0.1/',
      'http://[::1]/',
      'http://[fd00::1]/',
      'http://[::ffff:10.0.0.1]/',
      'http://0.0.0.0/',
    ]) {
      const refused = await call('POST', '/v1/webhooks', { url });
      expect(refused.statusCode, url).toBe(400);
      expect(refused.json(), url).toMatchObject({ code: 'WEBHOOK_URL_NOT_ALLOWED' });
    }
    // A public literal address is taken (no DNS needed), and a PATCH to a private one is refused.
    const created = await call('POST', '/v1/webhooks', { url: 'https://93.184.216.34/hooks' });
    expect(created.statusCode).toBe(201);
    const { id } = created.json() as { id: string };
    const patched = await call('PATCH', `/v1/webhooks/${id}`, { url: 'http://127.0.0.1/' });
    expect(patched.json()).toMatchObject({ code: 'WEBHOOK_URL_NOT_ALLOWED' });
    expect((await call('GET', `/v1/webhooks/${id}`)).json()).toMatchObject({ url: 'https://93.184.216.34/hooks' });
    // Not http(s), or an unknown event type: refused as invalid.
    expect((await call('POST', '/v1/webhooks', { url: 'ftp://93.184.216.34/' })).json()).toMatchObject({ code: 'INVALID_REQUEST' });
    expect((await call('POST', '/v1/webhooks', { url: 'https://93.184.216.34/', event_types: ['key.nope'] })).statusCode).toBe(400);
  });

  it('is for admins only', async () => {
    t = await createTestApp({ dialect, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const writer = await createKey(t, { scopes: ['keyward:keys:write', 'keyward:keys:read'] });
    const { id } = (await call('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/' })).json() as { id: string };
    for (const [method, url] of [
      ['POST', '/v1/webhooks'],
      ['GET', '/v1/webhooks'],
      ['GET', `/v1/webhooks/${id}`],
      ['PATCH', `/v1/webhooks/${id}`],
      ['DELETE', `/v1/webhooks/${id}`],
      ['POST', `/v1/webhooks/${id}/roll-secret`],
      ['GET', `/v1/webhooks/${id}/deliveries`],
      ['GET', '/v1/events'],
    ] as const) {
      const payload =
        method === 'POST' && url === '/v1/webhooks' ? { url: 'http://127.0.0.1:9/' } : method === 'PATCH' ? { enabled: false } : undefined;
      const denied = await call(method, url, payload, writer.key);
      expect(denied.statusCode, `${method} ${url}`).toBe(403);
      const anonymous = await t.app.inject({ method, url, ...(payload ? { payload } : {}) });
      expect(anonymous.statusCode, `${method} ${url}`).toBe(401);
    }
  });

  it('lists events newest first, filtered by type, with a cursor', async () => {
    t = await createTestApp({ dialect });
    const a = await createKey(t, { name: 'first' });
    const b = await createKey(t, { name: 'second' });
    await call('POST', `/v1/api-keys/${a.id}/revoke`);
    const all = (await call('GET', '/v1/events?limit=2')).json() as {
      data: { type: string; data: { key: { id: string } } }[];
      next_cursor: string;
    };
    expect(all.data.map((e) => [e.type, e.data.key.id])).toEqual([
      ['key.revoked', a.id],
      ['key.created', b.id],
    ]);
    const next = (await call('GET', `/v1/events?limit=2&cursor=${all.next_cursor}`)).json() as { data: { type: string }[] };
    expect(next.data[0]).toMatchObject({ type: 'key.created' });
    const revoked = (await call('GET', '/v1/events?type=key.revoked')).json() as { data: unknown[] };
    expect(revoked.data).toHaveLength(1);
    expect((await call('GET', '/v1/events?type=key.nope')).statusCode).toBe(400);
  });
});
