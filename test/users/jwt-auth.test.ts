import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { freePort } from '../helpers/cli.js';
import { DIALECTS } from '../helpers/db.js';
import { AUDIENCE, hsToken, ISSUER, JWT_ENV, SECRET } from './tokens.js';

const now = () => Math.floor(Date.now() / 1000);

function tamper(token: string): string {
  const [header, , signature] = token.split('.');
  const payload = Buffer.from(JSON.stringify({ sub: 'mallory', iss: ISSUER, aud: AUDIENCE, exp: now() + 3600 })).toString('base64url');
  return `${header}.${payload}.${signature}`;
}

interface AuthCase {
  name: string;
  credential: () => Promise<string | undefined>;
  status: number;
  code?: string;
}

// The foundation's authentication table, extended with JWT cases. Every failure is a 401 problem with
// WWW-Authenticate; which code it carries is part of the contract.
const CASES: AuthCase[] = [
  { name: 'valid HS256 token', credential: () => hsToken('alice'), status: 200 },
  { name: 'no credential', credential: async () => undefined, status: 401, code: 'AUTH_REQUIRED' },
  { name: 'unknown API key', credential: async () => 'kw_thisKeyDoesNotExistAnywhere1234567890abcdefXXXXXX', status: 401 },
  { name: 'expired token', credential: () => hsToken('alice', { expiresIn: -3600 }), status: 401, code: 'TOKEN_EXPIRED' },
  {
    name: 'forged signature (other secret)',
    credential: () => hsToken('alice', { secret: 'another-secret-that-is-long-enough-too!!' }),
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  {
    name: 'payload changed after signing',
    credential: async () => tamper(await hsToken('alice')),
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  {
    name: 'alg: none (unsigned)',
    credential: async () =>
      new UnsecuredJWT({}).setSubject('alice').setIssuer(ISSUER).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('1h').encode(),
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  {
    name: 'alg: none with a signature segment',
    credential: async () => {
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      const valid = await hsToken('alice');
      const [, payload, signature] = valid.split('.');
      return `${header}.${payload}.${signature}`;
    },
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  { name: 'wrong issuer', credential: () => hsToken('alice', { issuer: 'https://evil.test' }), status: 401, code: 'INVALID_CREDENTIALS' },
  { name: 'no issuer', credential: () => hsToken('alice', { issuer: null }), status: 401, code: 'INVALID_CREDENTIALS' },
  { name: 'wrong audience', credential: () => hsToken('alice', { audience: 'someone-else' }), status: 401, code: 'INVALID_CREDENTIALS' },
  { name: 'no sub', credential: () => hsToken(null), status: 401, code: 'INVALID_CREDENTIALS' },
  { name: 'empty sub', credential: () => hsToken(''), status: 401, code: 'INVALID_CREDENTIALS' },
  { name: 'no exp', credential: () => hsToken('alice', { expiresIn: null }), status: 401, code: 'INVALID_CREDENTIALS' },
  {
    name: 'not valid yet (nbf)',
    credential: () => hsToken('alice', { claims: { nbf: now() + 3600 } }),
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  {
    name: 'malformed: payload not JSON',
    credential: async () => 'eyJhbGciOiJIUzI1NiJ9.bm90LWpzb24.c2ln',
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  {
    name: 'malformed: header not JSON',
    credential: async () => 'eyJub3QganNvbg.eyJzdWIiOiJhIn0.c2ln',
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
  { name: 'malformed: empty segments', credential: async () => 'eyJ..', status: 401, code: 'INVALID_CREDENTIALS' },
  {
    name: 'RS256 token while only JWT_SECRET is configured',
    credential: async () => {
      const { privateKey } = await generateKeyPair('RS256');
      return new SignJWT({})
        .setProtectedHeader({ alg: 'RS256' })
        .setSubject('alice')
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('1h')
        .sign(privateKey);
    },
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },
];

describe.each(DIALECTS)('JWT sign-in with HS256 on %s', (dialect) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
  });
  afterAll(async () => t?.close());

  it.each(CASES)('$name → $status', async ({ credential, status, code }) => {
    const value = await credential();
    const response = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: value === undefined ? {} : bearer(value) });
    expect(response.statusCode).toBe(status);
    if (status === 401) {
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="keyward"/);
      if (code) expect(response.json()).toMatchObject({ code });
      // A rejected token never signs anyone in.
      const users = await t.container.db.db.selectFrom('users').select('external_id').execute();
      expect(users.map((u) => u.external_id)).not.toContain('mallory');
    }
  });

  it('provisions an unknown sub once, with the default tier, audited as the system', async () => {
    const token = await hsToken('new-user-1', { claims: { email: 'new@example.com' } });
    const first = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ external_id: 'new-user-1', tier: 'free', email: 'new@example.com' });
    const again = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(await hsToken('new-user-1')) });
    expect(again.json()).toMatchObject({ id: first.json().id });

    const db = t.container.db.db;
    expect(await db.selectFrom('users').selectAll().where('external_id', '=', 'new-user-1').execute()).toHaveLength(1);
    const audits = await db.selectFrom('audit_log').selectAll().where('target_id', '=', first.json().id).execute();
    expect(audits).toEqual([expect.objectContaining({ action: 'user.create', actor_type: 'system', actor_id: 'jwt' })]);
    expect(audits[0]?.changes).not.toContain(SECRET);
  });

  it('provisions exactly one user when 25 first sign-ins race', async () => {
    const tokens = await Promise.all(Array.from({ length: 25 }, () => hsToken('racer')));
    const responses = await Promise.all(
      tokens.map((token) => t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) })),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(25).fill(200));
    const ids = new Set(responses.map((r) => (r.json() as { id: string }).id));
    expect(ids.size).toBe(1);
    const db = t.container.db.db;
    expect(await db.selectFrom('users').selectAll().where('external_id', '=', 'racer').execute()).toHaveLength(1);
    const audits = await db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'user.create')
      .where('target_id', 'in', [...ids])
      .execute();
    expect(audits).toHaveLength(1);
  });

  it('tells keys and tokens apart by form: an API key still signs in as a key', async () => {
    const { key } = await createKey(t, { name: 'plain key' });
    const response = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(key) });
    expect(response.statusCode).toBe(200);
    const asToken = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(await hsToken('alice')) });
    expect(asToken.statusCode).toBe(403);
  });
});

describe('JWT sign-in with DEFAULT_TIER', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('provisions with the configured default tier', async () => {
    t = await createTestApp({ env: { ...JWT_ENV, DEFAULT_TIER: 'pro' } });
    const response = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(await hsToken('bob')) });
    expect(response.json()).toMatchObject({ external_id: 'bob', tier: 'pro' });
  });

  it('rejects every token when JWT sign-in is not configured', async () => {
    t = await createTestApp();
    const response = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(await hsToken('bob')) });
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' });
    expect(await t.container.db.db.selectFrom('users').selectAll().execute()).toHaveLength(0);
  });
});

describe('JWT sign-in with a JWKS (RS256 and ES256 keys served on 127.0.0.1)', () => {
  let server: Server;
  let jwksUrl: string;
  let fetches = 0;
  let t: TestApp;
  const keys: Record<string, Awaited<ReturnType<typeof generateKeyPair>>> = {};

  beforeAll(async () => {
    keys.rsa = await generateKeyPair('RS256');
    keys.ec = await generateKeyPair('ES256');
    keys.stranger = await generateKeyPair('RS256');
    const jwks = {
      keys: [
        { ...(await exportJWK(keys.rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
        { ...(await exportJWK(keys.ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
      ],
    };
    server = createServer((_request, response) => {
      fetches += 1;
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    t = await createTestApp({ env: { JWT_JWKS_URL: jwksUrl, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE } });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
  });

  function signed(alg: 'RS256' | 'ES256', kid: string, key: CryptoKey, sub = 'carol') {
    return new SignJWT({})
      .setProtectedHeader({ alg, kid })
      .setSubject(sub)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(key);
  }

  const me = (token: string) => t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) });

  it('accepts RS256 and ES256 tokens signed by keys in the set, fetching the set once', async () => {
    const rs = await me(await signed('RS256', 'rsa-1', keys.rsa?.privateKey as CryptoKey));
    expect(rs.statusCode).toBe(200);
    expect(rs.json()).toMatchObject({ external_id: 'carol' });
    const es = await me(await signed('ES256', 'ec-1', keys.ec?.privateKey as CryptoKey, 'dave'));
    expect(es.statusCode).toBe(200);
    expect(es.json()).toMatchObject({ external_id: 'dave' });
    expect(fetches).toBe(1);
  });

  it('rejects a token signed by a key outside the set, even under a known kid', async () => {
    const response = await me(await signed('RS256', 'rsa-1', keys.stranger?.privateKey as CryptoKey));
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' });
  });

  it('rejects HS256 when no JWT_SECRET is set, including an HMAC over the public key (algorithm confusion)', async () => {
    const pem = await exportSPKI(keys.rsa?.publicKey as CryptoKey);
    for (const secret of [pem, SECRET]) {
      const token = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
        .setSubject('mallory')
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('10m')
        .sign(new TextEncoder().encode(secret));
      const response = await me(token);
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ code: 'INVALID_CREDENTIALS' });
    }
  });

  it('rejects an expired RS256 token with TOKEN_EXPIRED', async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
      .setSubject('carol')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(now() - 600)
      .sign(keys.rsa?.privateKey as CryptoKey);
    const response = await me(token);
    expect(response.statusCode).toBe(401);
    expect(response.json()).toMatchObject({ code: 'TOKEN_EXPIRED' });
  });

  it('answers 503 (not 401) when the JWKS cannot be fetched', async () => {
    const down = await createTestApp({
      env: { JWT_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks.json`, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE },
    });
    try {
      const response = await down.app.inject({
        method: 'GET',
        url: '/v1/users/me',
        headers: bearer(await signed('RS256', 'rsa-1', keys.rsa?.privateKey as CryptoKey)),
      });
      expect(response.statusCode).toBe(503);
      expect(response.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    } finally {
      await down.close();
    }
  });
});
