import { hashApiKey, KeywardClient } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { listen, type SessionStore } from './app.js';

// The sessions app in front of a real Keyward (the app factory, listening on a free port, SQLite): sessions
// belong to the key lineage that created them, survive a roll, and go quiet with a revoke.

let keyward: TestApp;
let admin: KeywardClient;
let app: { url: string; store: SessionStore; close(): Promise<void> };

beforeAll(async () => {
  keyward = await createTestApp();
  const base = await keyward.app.listen({ port: 0, host: '127.0.0.1' });
  admin = new KeywardClient({ baseUrl: base, apiKey: keyward.adminKey });
  // The middleware's own key: it may call the verify endpoint and nothing else.
  const verifyKey = (await admin.createKey({ name: 'sessions api', scopes: ['keyward:verify'] })).key;
  app = await listen({ baseUrl: base, apiKey: verifyKey });
});

afterAll(async () => {
  await app?.close();
  // Node's fetch leaves one never-used connection behind after the middleware's key-change stream is aborted
  // (nodejs/undici#5845), and Node's server.close waits for it: in one process, close it here.
  keyward?.app.server.closeAllConnections();
  await keyward?.close();
});

async function call(method: 'GET' | 'POST', path: string, key: string, body?: unknown) {
  const response = await fetch(`${app.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const idsOf = (answer: { body: Record<string, unknown> }) => (answer.body.data as Array<{ id: string }>).map((s) => s.id);
const SCOPES = ['sessions:read', 'sessions:write'];

describe('examples/owned-resources: sessions owned by a key', () => {
  it('lists what key A created for A and not for key B; B cannot read A’s session', async () => {
    const a = await admin.createKey({ name: 'A', scopes: SCOPES });
    const b = await admin.createKey({ name: 'B', scopes: SCOPES });
    const first = await call('POST', '/v1/sessions', a.key, { model: 'sonnet' });
    expect(first).toMatchObject({ status: 201, body: { model: 'sonnet' } });
    const second = await call('POST', '/v1/sessions', a.key, { model: 'haiku' });
    const theirs = await call('POST', '/v1/sessions', b.key, { model: 'opus' });

    expect(idsOf(await call('GET', '/v1/sessions', a.key))).toEqual([second.body.id, first.body.id]);
    expect(idsOf(await call('GET', '/v1/sessions', b.key))).toEqual([theirs.body.id]);
    expect(await call('GET', `/v1/sessions/${first.body.id}`, a.key)).toMatchObject({ status: 200, body: { model: 'sonnet' } });
    expect(await call('GET', `/v1/sessions/${first.body.id}`, b.key)).toMatchObject({ status: 404, body: { code: 'SESSION_NOT_FOUND' } });

    // Stored with an opaque owner: neither the key nor its hash.
    const stored = JSON.stringify([...app.store.sessions.values()]);
    for (const key of [a.key, b.key]) {
      expect(stored).not.toContain(key);
      expect(stored).not.toContain(hashApiKey(key));
    }
  });

  it('after rolling A, the new key (new id, new hash) still sees and adds to A’s sessions', async () => {
    const a = await admin.createKey({ name: 'A to roll', scopes: SCOPES });
    const made = await call('POST', '/v1/sessions', a.key, { model: 'sonnet' });
    const rolled = await admin.rollKey(a.id, { grace_period_seconds: 0 });
    expect(rolled.id).not.toBe(a.id);
    expect(rolled.rolled_from).toBe(a.id);

    expect(idsOf(await call('GET', '/v1/sessions', rolled.key))).toEqual([made.body.id]);
    expect((await call('GET', `/v1/sessions/${made.body.id}`, rolled.key)).status).toBe(200);
    const more = await call('POST', '/v1/sessions', rolled.key, { model: 'haiku' });
    expect(idsOf(await call('GET', '/v1/sessions', rolled.key))).toEqual([more.body.id, made.body.id]);
    // Rolled again: still the same lineage.
    const again = await admin.rollKey(rolled.id, { grace_period_seconds: 0 });
    expect(idsOf(await call('GET', '/v1/sessions', again.key))).toEqual([more.body.id, made.body.id]);
  });

  it('after revoking, the key gets 401 and its sessions stay in the store, reachable by no key', async () => {
    const a = await admin.createKey({ name: 'A to revoke', scopes: SCOPES });
    const made = await call('POST', '/v1/sessions', a.key, { model: 'sonnet' });
    expect((await call('GET', '/v1/sessions', a.key)).status).toBe(200);
    await admin.revokeKey(a.id);
    // At once with the key-change stream live; within the cache's short life without it.
    await vi.waitFor(
      async () => expect(await call('GET', '/v1/sessions', a.key)).toMatchObject({ status: 401, body: { code: 'KEY_REVOKED' } }),
      {
        timeout: 10_000,
        interval: 20,
      },
    );
    expect((await call('POST', '/v1/sessions', a.key, { model: 'haiku' })).status).toBe(401);
    expect(app.store.sessions.get(String(made.body.id))?.model).toBe('sonnet');
  });
});
