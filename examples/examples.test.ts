import { createKeywardAuth, generateKey, type KeywardAuth, type KeywardAuthOptions, KeywardClient } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildCli, type ServeProcess, startServe, tempFolder } from '../test/helpers/cli.js';
import * as expressExample from './express/app.js';
import * as fastifyExample from './fastify/app.js';
import * as honoExample from './hono/app.js';

// Each example app, started on a free port, in front of a real `keyward serve` (the built CLI) with a
// temporary SQLite database; keys are created over HTTP with the SDK client.

type Listen = (options: KeywardAuthOptions & { auth?: KeywardAuth }) => Promise<{ url: string; close(): Promise<void> }>;
const EXAMPLES: Array<[string, Listen]> = [
  ['fastify', (o) => fastifyExample.listen(o)],
  ['express', (o) => expressExample.listen(o)],
  ['hono', (o) => honoExample.listen(o)],
];

let keyward: ServeProcess;
let folder: ReturnType<typeof tempFolder>;
let admin: KeywardClient;
let verifyKey: string;

beforeAll(async () => {
  await buildCli();
  folder = tempFolder();
  const adminKey = generateKey('kw');
  keyward = await startServe({ DATABASE_URL: folder.databaseUrl, INITIAL_ADMIN_KEY: adminKey, LOG_LEVEL: 'warn' }, folder.dir);
  admin = new KeywardClient({ baseUrl: keyward.url, apiKey: adminKey });
  // The middleware's own key: it may call the verify endpoint and nothing else.
  verifyKey = (await admin.createKey({ name: 'examples middleware', scopes: ['keyward:verify'] })).key;
});

afterAll(async () => {
  await keyward?.stop();
  folder?.cleanup();
});

async function get(url: string, key?: string): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const response = await fetch(url, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
}

describe.each(EXAMPLES)('examples/%s against a running Keyward', (name, listen) => {
  let app: { url: string; close(): Promise<void> };
  let auth: KeywardAuth;

  beforeAll(async () => {
    // A long cache freshness: a revoked key is refused because the change stream says so, not because its entry aged.
    auth = createKeywardAuth({ baseUrl: keyward.url, apiKey: verifyKey, cache: { ttlMs: 60_000, liveTtlMs: 60_000 } });
    app = await listen({ auth });
  });
  afterAll(async () => app?.close());

  it('answers 401 problem+json with WWW-Authenticate without a key, and serves its public route', async () => {
    const answer = await get(`${app.url}/v1/companies`);
    expect(answer.status).toBe(401);
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="keyward"');
    expect(answer.body).toEqual({
      type: 'https://keyward.dev/problems/auth-required',
      title: 'An API key or token is required',
      status: 401,
      code: 'AUTH_REQUIRED',
      instance: '/v1/companies',
    });
    expect((await get(`${app.url}/healthz`)).status).toBe(200);
  });

  it('answers 401 for an unknown key and 403 for a key without companies:read', async () => {
    expect(await get(`${app.url}/v1/companies`, generateKey('kw'))).toMatchObject({ status: 401, body: { code: 'INVALID_CREDENTIALS' } });
    const billing = await admin.createKey({ name: `${name} billing`, scopes: ['billing:read'] });
    const answer = await get(`${app.url}/v1/companies`, billing.key);
    expect(answer).toMatchObject({ status: 403, body: { code: 'FORBIDDEN', status: 403, instance: '/v1/companies' } });
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('spends neither quota nor rate limit for a key without companies:read, and one unit of each per request served', async () => {
    const limits = { quota: { remaining: 2 }, rate_limit: { limit: 100, window_seconds: 60 } };
    const billing = await admin.createKey({ name: `${name} billing metered`, scopes: ['billing:read'], ...limits });
    for (let i = 0; i < 3; i++)
      expect(await get(`${app.url}/v1/companies`, billing.key)).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect((await admin.getKey(billing.id)).quota?.remaining).toBe(2);
    const reader = await admin.createKey({ name: `${name} reader metered`, scopes: ['companies:read'], ...limits });
    const served = await get(`${app.url}/v1/companies`, reader.key);
    expect(served.status).toBe(200);
    expect(served.headers.get('ratelimit')).toMatch(/^"default";r=99;t=\d+$/);
    expect((await admin.getKey(reader.id)).quota?.remaining).toBe(1);
  });

  it('serves a key with companies:read (or companies:*), with the identity attached', async () => {
    const reader = await admin.createKey({ name: `${name} reader`, scopes: ['companies:read'], metadata: { team: name } });
    const answer = await get(`${app.url}/v1/companies`, reader.key);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      data: [
        { id: 'acme', name: 'Acme Corporation' },
        { id: 'globex', name: 'Globex' },
      ],
      caller: {
        keyId: reader.id,
        lineageId: reader.id,
        userId: null,
        scopes: ['companies:read'],
        isAdmin: false,
        metadata: { team: name },
      },
    });
    const wildcard = await admin.createKey({ name: `${name} wildcard`, scopes: ['companies:*'] });
    expect(await get(`${app.url}/v1/companies`, wildcard.key)).toMatchObject({ status: 200, body: { caller: { keyId: wildcard.id } } });
  });

  it('refuses a revoked key as soon as the change stream tells it (401 KEY_REVOKED), though its answer was cached', async () => {
    const reader = await admin.createKey({ name: `${name} to revoke`, scopes: ['companies:read'] });
    expect((await get(`${app.url}/v1/companies`, reader.key)).status).toBe(200);
    await vi.waitFor(() => expect(auth.live()).toBe(true), { timeout: 5_000 });
    await admin.revokeKey(reader.id);
    await vi.waitFor(
      async () => {
        const answer = await get(`${app.url}/v1/companies`, reader.key);
        expect(answer).toMatchObject({ status: 401, body: { code: 'KEY_REVOKED' } });
        expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="keyward", error="invalid_token"');
      },
      { timeout: 2_000, interval: 20 },
    );
  });

  it('with the cache disabled, refuses a revoked key on the very next request', async () => {
    const uncached = await listen({ baseUrl: keyward.url, apiKey: verifyKey, cache: false });
    try {
      const reader = await admin.createKey({ name: `${name} uncached`, scopes: ['companies:read'] });
      expect((await get(`${uncached.url}/v1/companies`, reader.key)).status).toBe(200);
      await admin.revokeKey(reader.id);
      expect(await get(`${uncached.url}/v1/companies`, reader.key)).toMatchObject({ status: 401, body: { code: 'KEY_REVOKED' } });
    } finally {
      await uncached.close();
    }
  });

  it('passes rate-limit headers through and answers 429 with Retry-After past the limit', async () => {
    const limited = await admin.createKey({
      name: `${name} limited`,
      scopes: ['companies:read'],
      rate_limit: { limit: 2, window_seconds: 60 },
    });
    const first = await get(`${app.url}/v1/companies`, limited.key);
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toBe('"default";q=2;w=60');
    expect(first.headers.get('ratelimit')).toMatch(/^"default";r=1;t=\d+$/);
    // Keys with a rate limit are never served from the cache: every request is counted by Keyward.
    expect((await get(`${app.url}/v1/companies`, limited.key)).status).toBe(200);
    const over = await get(`${app.url}/v1/companies`, limited.key);
    expect(over).toMatchObject({ status: 429, body: { code: 'RATE_LIMITED', status: 429 } });
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(over.headers.get('ratelimit')).toMatch(/^"default";r=0;t=\d+$/);
  });

  it('with requireApiKey false, still needs a key for /v1/companies and refuses a bad one', async () => {
    const open = await listen({ baseUrl: keyward.url, apiKey: verifyKey, requireApiKey: false });
    try {
      expect(await get(`${open.url}/v1/companies`)).toMatchObject({ status: 401, body: { code: 'AUTH_REQUIRED' } });
      expect(await get(`${open.url}/v1/companies`, generateKey('kw'))).toMatchObject({
        status: 401,
        body: { code: 'INVALID_CREDENTIALS' },
      });
    } finally {
      await open.close();
    }
  });
});
