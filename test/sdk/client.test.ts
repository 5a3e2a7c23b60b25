import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKey, KeywardClient, KeywardError } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { mintDevToken } from '../../packages/server/src/callers/jwt.js';
import * as server from '../../packages/server/src/index.js';
import { serverDocument } from '../../scripts/gen-openapi.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

type Methods = Exclude<keyof KeywardClient, 'raw'>;

// One call per client method. Typed as a record over every method, so a new method cannot be left out here;
// the test below then checks that together they reach every operation the server documents.
const CALLS: Record<Methods, (c: KeywardClient) => Promise<unknown>> = {
  createWebhook: (c) => c.createWebhook({ url: 'https://example.com/hook' }),
  listWebhooks: (c) => c.listWebhooks({ limit: 5 }),
  getWebhook: (c) => c.getWebhook('w1'),
  updateWebhook: (c) => c.updateWebhook('w1', { enabled: false }),
  deleteWebhook: (c) => c.deleteWebhook('w1'),
  rollWebhookSecret: (c) => c.rollWebhookSecret('w1'),
  listWebhookDeliveries: (c) => c.listWebhookDeliveries('w1', { limit: 5 }),
  retryWebhookDelivery: (c) => c.retryWebhookDelivery('w1', 'd1'),
  listEvents: (c) => c.listEvents({ limit: 5 }),
  listUsageEvents: (c) => c.listUsageEvents({ outcome: 'VALID', limit: 10 }),
  exportUsageEvents: (c) => c.exportUsageEvents({ format: 'csv' }),
  streamKeyChanges: (c) => c.streamKeyChanges('abc:1'),
  reportLeakedKeys: (c) => c.reportLeakedKeys(['kw_x']),
  scanLeakedKeys: (c) => c.scanLeakedKeys({ findings: [{ key: 'kw_x', location: 'a.ts:1' }], revoke: true }),
  reportGithubSecretScanning: (c) => c.reportGithubSecretScanning('[]', { keyIdentifier: 'k', signature: 's' }),
  createKey: (c) => c.createKey({ name: 'n' }),
  listKeys: (c) => c.listKeys({ limit: 5 }),
  getKey: (c) => c.getKey('id-1'),
  updateKey: (c) => c.updateKey('id-1', { name: 'm' }),
  deactivateKey: (c) => c.deactivateKey('id-1'),
  activateKey: (c) => c.activateKey('id-1'),
  revokeKey: (c) => c.revokeKey('id-1'),
  rollKey: (c) => c.rollKey('id-1', { grace_period_seconds: 60 }),
  deleteKey: (c) => c.deleteKey('id-1'),
  importKeys: (c) => c.importKeys({ scheme: 'plaintext', records: [{ key: 'k' }] }),
  currentKey: (c) => c.currentKey(),
  getKeyUsage: (c) => c.getKeyUsage('id-1', { granularity: 'hour' }),
  verifyKey: (c) => c.verifyKey({ key: 'k' }),
  reportUsage: (c) => c.reportUsage([{ key_id: null, outcome: 'NOT_FOUND' }]),
  getVerificationAnalytics: (c) => c.getVerificationAnalytics(),
  getVerificationSeries: (c) => c.getVerificationSeries({ granularity: 'hour' }),
  getKeysActivity: (c) => c.getKeysActivity(['id-1', 'id-2']),
  listAuditLogs: (c) => c.listAuditLogs({ action: 'key.create' }),
  createUser: (c) => c.createUser({ external_id: 'e' }),
  listUsers: (c) => c.listUsers(),
  getUser: (c) => c.getUser('id-1'),
  updateUser: (c) => c.updateUser('id-1', { tier: 'pro' }),
  deleteUser: (c) => c.deleteUser('id-1'),
  currentUser: (c) => c.currentUser(),
  createMyKey: (c) => c.createMyKey({ name: 'n' }),
  listMyKeys: (c) => c.listMyKeys(),
  deleteMyKey: (c) => c.deleteMyKey('id-1'),
  health: (c) => c.health(),
  ready: (c) => c.ready(),
  metrics: (c) => c.metrics(),
};

describe('KeywardClient: coverage', () => {
  it('has a method for every operation in the server’s OpenAPI document', async () => {
    const document = (await serverDocument(server)) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(document.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => m !== 'parameters')
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    // Map a called URL back to its template (`/v1/api-keys/id-1` → `/v1/api-keys/{id}`), static paths first.
    const templates = Object.keys(document.paths).sort((a, b) => a.split('{').length - b.split('{').length);
    const templateOf = (path: string) =>
      templates.find((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path)) ?? `unknown ${path}`;
    const called: string[] = [];
    const client = new KeywardClient({
      baseUrl: 'http://keyward.test',
      apiKey: 'kw_test',
      fetch: async (request) => {
        called.push(`${request.method} ${templateOf(new URL(request.url).pathname)}`);
        return Response.json({});
      },
    });
    expect(
      Object.getOwnPropertyNames(KeywardClient.prototype)
        .filter((n) => n !== 'constructor')
        .sort(),
    ).toEqual(Object.keys(CALLS).sort());
    for (const call of Object.values(CALLS)) await call(client);
    expect([...new Set(called)].sort()).toEqual([...documented].sort());
  });
});

describe('KeywardClient: errors', () => {
  let stub: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (stub ? stub.close(() => resolve()) : resolve()));
    stub = undefined;
  });

  async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
    stub = createServer(handler);
    await new Promise<void>((resolve) => stub?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  }

  it('throws NETWORK_ERROR (status 0) when Keyward cannot be reached', async () => {
    const base = await listen(() => {});
    stub?.close();
    await new Promise((resolve) => setImmediate(resolve));
    const error = await new KeywardClient({ baseUrl: base }).health().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeywardError);
    expect(error).toMatchObject({ status: 0, code: 'NETWORK_ERROR' });
  });

  it('gives up after timeoutMs', async () => {
    const base = await listen(() => {}); // never answers
    const error = await new KeywardClient({ baseUrl: base, timeoutMs: 50 }).health().catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 0, code: 'NETWORK_ERROR', problem: { detail: 'the request timed out' } });
    stub?.closeAllConnections();
  });

  it("sends verifyKey and reportUsage as one Request to a custom fetch, with the client's headers and credential", async () => {
    const seen: Request[] = [];
    const client = new KeywardClient({
      baseUrl: 'http://keyward.test/',
      apiKey: 'kw_test',
      headers: { 'x-extra': '1', 'Content-Type': 'application/json; charset=utf-8' },
      fetch: async (request) => {
        seen.push(request);
        return request.url.endsWith('/verify')
          ? Response.json({ valid: false, code: 'NOT_FOUND' })
          : Response.json({ accepted: 1 }, { status: 202 });
      },
    });
    expect(await client.verifyKey({ key: 'k', tags: ['route:/x'] })).toEqual({ valid: false, code: 'NOT_FOUND' });
    expect(await client.reportUsage([{ key_id: null, outcome: 'NOT_FOUND' }])).toEqual({ accepted: 1 });
    expect(seen.map((r) => `${r.method} ${r.url}`)).toEqual([
      'POST http://keyward.test/v1/keys/verify',
      'POST http://keyward.test/v1/usage/events',
    ]);
    for (const request of seen) {
      expect(request.headers.get('authorization')).toBe('Bearer kw_test');
      expect(request.headers.get('x-extra')).toBe('1');
      expect(request.headers.get('content-type')).toBe('application/json; charset=utf-8');
    }
    expect(await seen[0]?.json()).toEqual({ key: 'k', tags: ['route:/x'] });
    expect(await seen[1]?.json()).toEqual({ events: [{ key_id: null, outcome: 'NOT_FOUND' }] });
  });

  it('maps verifyKey and reportUsage failures as every other method: problem, Retry-After, status, timeout', async () => {
    let answer: (res: import('node:http').ServerResponse) => void = () => {};
    const base = await listen((_req, res) => answer(res));
    const client = new KeywardClient({ baseUrl: base, apiKey: 'kw_test', timeoutMs: 200 });
    answer = (res) =>
      res
        .writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': '7' })
        .end(JSON.stringify({ type: 'about:blank', title: 'Too many requests', status: 429, code: 'RATE_LIMITED' }));
    expect(await client.verifyKey({ key: 'k' }).catch((e: unknown) => e)).toMatchObject({
      status: 429,
      code: 'RATE_LIMITED',
      retryAfter: 7,
    });
    answer = (res) => res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway');
    const failed = await client.reportUsage([{ key_id: null, outcome: 'NOT_FOUND' }]).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(KeywardError);
    expect(failed).toMatchObject({ status: 502, code: 'HTTP_502', problem: { detail: 'bad gateway' } });
    answer = () => {}; // never answers
    expect(await client.verifyKey({ key: 'k' }).catch((e: unknown) => e)).toMatchObject({
      status: 0,
      code: 'NETWORK_ERROR',
      problem: { detail: 'the request timed out' },
    });
    stub?.closeAllConnections();
  });

  it('names a non-problem error body by its status', async () => {
    const base = await listen((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway');
    });
    const error = await new KeywardClient({ baseUrl: base }).health().catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 502, code: 'HTTP_502', problem: { detail: 'bad gateway' } });
  });
});

describe.each(DIALECTS)('KeywardClient against a listening Keyward on %s', (dialect) => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  async function start(): Promise<{ t: TestApp; base: string; admin: KeywardClient }> {
    t = await createTestApp({ dialect, env: { JWT_SECRET: 'a'.repeat(40) } });
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    return { t, base, admin: new KeywardClient({ baseUrl: base, apiKey: t.adminKey }) };
  }

  it('manages a key through its whole life, and errors carry the problem body', async () => {
    const { base, admin } = await start();
    const created = await admin.createKey({ name: 'billing', scopes: ['companies:read'], metadata: { team: 'a' } });
    expect(created.key).toMatch(/^kw_/);
    expect(await admin.getKey(created.id)).toMatchObject({ id: created.id, name: 'billing', status: 'active' });
    expect((await admin.listKeys()).data.map((k) => k.id)).toContain(created.id);
    expect(await admin.updateKey(created.id, { name: 'billing v2' })).toMatchObject({ name: 'billing v2' });

    const self = new KeywardClient({ baseUrl: base, apiKey: created.key });
    expect(await self.currentKey()).toMatchObject({ id: created.id });

    expect(await admin.verifyKey({ key: created.key, scopes: ['companies:read'] })).toMatchObject({
      valid: true,
      code: 'VALID',
      key_id: created.id,
      metadata: { team: 'a' },
    });
    expect(await admin.verifyKey({ key: created.key, scopes: ['companies:write'] })).toMatchObject({
      valid: false,
      code: 'INSUFFICIENT_SCOPES',
    });
    await admin.deactivateKey(created.id);
    expect(await admin.verifyKey({ key: created.key })).toMatchObject({ valid: false, code: 'DISABLED' });
    await admin.activateKey(created.id);

    const rolled = await admin.rollKey(created.id, { grace_period_seconds: 0 });
    expect(rolled).toMatchObject({ rolled_from: created.id, name: 'billing v2' });
    expect(await admin.verifyKey({ key: rolled.key })).toMatchObject({ valid: true });
    expect(await admin.verifyKey({ key: created.key })).toMatchObject({ valid: false, code: 'EXPIRED' });

    await admin.revokeKey(rolled.id);
    expect(await admin.verifyKey({ key: rolled.key })).toMatchObject({ valid: false, code: 'REVOKED' });
    await admin.deleteKey(rolled.id);
    const missing = await admin.getKey(rolled.id).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(KeywardError);
    expect(missing).toMatchObject({ status: 404, code: 'KEY_NOT_FOUND', problem: { status: 404, code: 'KEY_NOT_FOUND' } });

    const invalid = await admin.createKey({ name: '' }).catch((e: unknown) => e);
    expect(invalid).toMatchObject({ status: 400, code: 'INVALID_REQUEST', problem: { errors: [{ field: 'body.name' }] } });
    const anonymous = await new KeywardClient({ baseUrl: base }).listKeys().catch((e: unknown) => e);
    expect(anonymous).toMatchObject({ status: 401, code: 'AUTH_REQUIRED' });
    const stranger = await new KeywardClient({ baseUrl: base, apiKey: generateKey('kw') }).listKeys().catch((e: unknown) => e);
    expect(stranger).toMatchObject({ status: 401, code: 'INVALID_CREDENTIALS' });
  });

  it('manages users, self-service keys with a user token, and reads audit, usage, analytics and operations', async () => {
    const { t, base, admin } = await start();
    const user = await admin.createUser({ external_id: 'ext-1', email: 'a@example.com' });
    expect(await admin.getUser(user.id)).toMatchObject({ id: user.id, external_id: 'ext-1' });
    expect((await admin.listUsers({ external_id: 'ext-1' })).data).toHaveLength(1);
    expect(await admin.updateUser(user.id, { tier: 'pro' })).toMatchObject({ tier: 'pro' });

    const token = await mintDevToken({ jwtSecret: 'a'.repeat(40), jwtIssuer: null, jwtAudience: null }, 'ext-1', 600);
    const me = new KeywardClient({ baseUrl: base, token });
    expect(await me.currentUser()).toMatchObject({ id: user.id });
    const mine = await me.createMyKey({ name: 'my key', scopes: ['companies:read'] });
    expect(mine).toMatchObject({ user_id: user.id, is_admin: false });
    expect((await me.listMyKeys()).data.map((k) => k.id)).toEqual([mine.id]);
    await me.deleteMyKey(mine.id);
    expect((await me.listMyKeys()).data).toEqual([]);

    const audit = await admin.listAuditLogs({ target_id: user.id });
    expect(audit.data.map((e) => e.action)).toContain('user.create');
    expect(await admin.getKeyUsage((await admin.currentKey()).id, { granularity: 'day' })).toBeTypeOf('object');
    expect(await admin.getVerificationAnalytics()).toBeTypeOf('object');
    await admin.deleteUser(user.id);
    expect(await admin.getUser(user.id).catch((e: unknown) => e)).toMatchObject({ status: 404, code: 'USER_NOT_FOUND' });

    expect(await admin.health()).toEqual({ status: 'ok' });
    expect(await admin.ready()).toMatchObject({ status: 'ok' });
    expect(await admin.metrics()).toContain('# HELP');
    expect(t.adminKey).not.toBe('');
  });
});
