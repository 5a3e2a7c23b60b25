import { randomBytes } from 'node:crypto';
import { generateKey } from '@keyward/sdk';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { updateKey } from '../../packages/server/src/keys/repository.js';
import { insertUserIfAbsent } from '../../packages/server/src/users/repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// Every management route (packages/server/src/http/routes/api-keys.ts) × every kind of credential, in one
// table. Each cell acts on a fresh target key, so no cell depends on another.

type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'DELETE';
interface Route {
  method: HttpMethod;
  path: string;
  payload?: Record<string, unknown>;
}

const ROUTES = {
  create: { method: 'POST', path: '/v1/api-keys', payload: { name: 'made by the auth table' } },
  list: { method: 'GET', path: '/v1/api-keys' },
  current: { method: 'GET', path: '/v1/api-keys/verify/current' },
  get: { method: 'GET', path: '/v1/api-keys/:id' },
  patch: { method: 'PATCH', path: '/v1/api-keys/:id', payload: { name: 'renamed by the auth table' } },
  deactivate: { method: 'POST', path: '/v1/api-keys/:id/deactivate' },
  activate: { method: 'POST', path: '/v1/api-keys/:id/activate' },
  revoke: { method: 'POST', path: '/v1/api-keys/:id/revoke' },
  delete: { method: 'DELETE', path: '/v1/api-keys/:id' },
} as const satisfies Record<string, Route>;
type RouteName = keyof typeof ROUTES;
const ROUTE_NAMES = Object.keys(ROUTES) as RouteName[];

/** What a cell must answer: a status, and for errors the problem `code`. */
type Outcome = '200' | '201' | '204' | `401 ${string}` | '403 FORBIDDEN' | '404 KEY_NOT_FOUND';
type Expected = Record<RouteName, Outcome>;

const everywhere = (outcome: Outcome): Expected => Object.fromEntries(ROUTE_NAMES.map((name) => [name, outcome])) as Expected;
const ALLOWED: Expected = {
  create: '201',
  list: '200',
  current: '200',
  get: '200',
  patch: '200',
  deactivate: '200',
  activate: '200',
  revoke: '200',
  delete: '204',
};
const DENIED = '403 FORBIDDEN';
const ONLY_SELF: Expected = { ...everywhere(DENIED), current: '200' };
const READ_ONLY: Expected = { ...ONLY_SELF, list: '200', get: '200' };

/** The credentials the table's rows use, made once per dialect. */
interface Credentials {
  admin: string;
  regular: string;
  read: string;
  write: string;
  userWrite: string;
  deactivated: string;
  expired: string;
  revoked: string;
  unknownNative: string;
  unknownForeign: string;
  userId: string;
}

type Via = 'bearer' | 'x-api-key';
interface Row {
  credential: string;
  headers: (c: Credentials) => Record<string, string>;
  /** Whose key the `:id` routes act on: an ownerless key, or one of the user that owns `userWrite`. */
  target: 'ownerless' | 'user';
  expect: Expected;
}

const as = (via: Via, pick: (c: Credentials) => string) => (c: Credentials) =>
  via === 'bearer' ? bearer(pick(c)) : { 'x-api-key': pick(c) };

function both(credential: string, pick: (c: Credentials) => string, expected: Expected, target: Row['target'] = 'ownerless'): Row[] {
  return (['bearer', 'x-api-key'] as const).map((via) => ({
    credential: `${credential} (${via})`,
    headers: as(via, pick),
    target,
    expect: expected,
  }));
}

const TABLE: Row[] = [
  { credential: 'none', headers: () => ({}), target: 'ownerless', expect: everywhere('401 AUTH_REQUIRED') },
  { credential: 'empty X-API-Key', headers: () => ({ 'x-api-key': '' }), target: 'ownerless', expect: everywhere('401 AUTH_REQUIRED') },
  {
    credential: 'Bearer garbage',
    headers: () => ({ authorization: 'Bearer garbage' }),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  {
    credential: 'Bearer with no token',
    headers: () => ({ authorization: 'Bearer ' }),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  {
    credential: 'Basic scheme carrying the admin key',
    headers: (c) => ({ authorization: `Basic ${Buffer.from(`${c.admin}:`).toString('base64')}` }),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  {
    credential: 'admin key with no scheme',
    headers: (c) => ({ authorization: c.admin }),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  {
    credential: 'X-API-Key garbage',
    headers: () => ({ 'x-api-key': 'garbage' }),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  {
    credential: 'tampered admin key',
    headers: (c) => bearer(`${c.admin.slice(0, -1)}${c.admin.endsWith('A') ? 'B' : 'A'}`),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  {
    credential: 'JWT-shaped token (JWT sign-in not configured)',
    headers: () => bearer('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'),
    target: 'ownerless',
    expect: everywhere('401 INVALID_CREDENTIALS'),
  },
  ...both('unknown well-formed key', (c) => c.unknownNative, everywhere('401 INVALID_CREDENTIALS')),
  ...both('unknown foreign-shaped key', (c) => c.unknownForeign, everywhere('401 INVALID_CREDENTIALS')),
  ...both('deactivated key', (c) => c.deactivated, everywhere('401 KEY_DISABLED')),
  ...both('expired key', (c) => c.expired, everywhere('401 KEY_EXPIRED')),
  ...both('revoked key', (c) => c.revoked, everywhere('401 KEY_REVOKED')),
  ...both('regular key without scopes', (c) => c.regular, ONLY_SELF),
  ...both('key with keyward:keys:read', (c) => c.read, READ_ONLY),
  ...both('key with keyward:keys:write', (c) => c.write, ALLOWED),
  // A user's key with keyward:keys:write reaches only that user's keys: another owner's key is 403.
  ...both('user key with keyward:keys:write, on its user’s key', (c) => c.userWrite, ALLOWED, 'user'),
  ...both(
    'user key with keyward:keys:write, on an ownerless key',
    (c) => c.userWrite,
    { ...ALLOWED, get: DENIED, patch: DENIED, deactivate: DENIED, activate: DENIED, revoke: DENIED, delete: DENIED },
    'ownerless',
  ),
  ...both('admin key', (c) => c.admin, ALLOWED),
  ...both('admin key, on a user’s key', (c) => c.admin, ALLOWED, 'user'),
];

describe.each(DIALECTS)('auth table on %s', (dialect) => {
  let t: TestApp;
  let c: Credentials;

  beforeAll(async () => {
    // The table presents ~100 bad credentials from one address: the brute-force guard is tested elsewhere.
    t = await createTestApp({ dialect, env: { AUTH_FAILURES_PER_MINUTE: '0' } });
    const now = Date.now();
    const user = await insertUserIfAbsent(t.container.db.db, {
      id: uuidv7(),
      externalId: `auth-table-${now}`,
      email: null,
      // Unlimited keys: every cell creates one for this user.
      tier: 'enterprise',
      createdAt: now,
      updatedAt: now,
    });
    if (!user) throw new Error('user not inserted');
    const deactivated = await createKey(t, { name: 'deactivated' });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${deactivated.id}/deactivate`, headers: bearer(t.adminKey) });
    const revoked = await createKey(t, { name: 'revoked', scopes: ['keyward:keys:write'] });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${revoked.id}/revoke`, headers: bearer(t.adminKey) });
    // Expiry must be in the future when set; the row is then moved into the past, as time would.
    const expired = await createKey(t, {
      name: 'expired',
      scopes: ['keyward:keys:write'],
      expires_at: new Date(now + 3_600_000).toISOString(),
    });
    await updateKey(t.container.db.db, expired.id, { expiresAt: now - 1_000 });
    c = {
      admin: t.adminKey,
      regular: (await createKey(t, { name: 'regular', scopes: ['inventory:read'] })).key,
      read: (await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] })).key,
      write: (await createKey(t, { name: 'writer', scopes: ['keyward:keys:write'] })).key,
      userWrite: (await createKey(t, { name: 'user writer', scopes: ['keyward:keys:write'], user_id: user.id })).key,
      deactivated: deactivated.key,
      expired: expired.key,
      revoked: revoked.key,
      unknownNative: generateKey(),
      unknownForeign: randomBytes(32).toString('base64url'),
      userId: user.id,
    };
  });
  afterAll(async () => t?.close());

  it.each(TABLE)('$credential', async (row) => {
    const actual = {} as Expected;
    for (const name of ROUTE_NAMES) {
      const route: Route = ROUTES[name];
      let url = route.path;
      if (url.includes(':id')) {
        const target = await createKey(t, { name: 'target', ...(row.target === 'user' ? { user_id: c.userId } : {}) });
        url = url.replace(':id', target.id);
      }
      const response = await t.app.inject({
        method: route.method,
        url,
        headers: row.headers(c),
        ...(route.payload ? { payload: route.payload } : {}),
      });
      const status = response.statusCode;
      if (status < 400) {
        actual[name] = String(status) as Outcome;
        continue;
      }
      expect(response.headers['content-type'], `${name}`).toMatch(/^application\/problem\+json/);
      const body = response.json() as { code: string; status: number };
      expect(body.status).toBe(status);
      actual[name] = `${status} ${body.code}` as Outcome;
      if (status === 401) {
        const challenge = String(response.headers['www-authenticate']);
        expect(challenge, `${name}: WWW-Authenticate`).toMatch(/^Bearer realm="keyward"/);
        if (body.code !== 'AUTH_REQUIRED') expect(challenge).toContain('error="invalid_token"');
      }
    }
    expect(actual).toEqual(row.expect);
  });

  it('covers every management route the app registers', () => {
    const registered = t.app
      .printRoutes({ commonPrefix: false })
      .split('\n')
      .filter((line) => line.includes('api-keys'));
    expect(registered.length).toBeGreaterThan(0);
    const paths = new Set(Object.values(ROUTES).map((r) => `${r.method} ${r.path}`));
    for (const route of [
      'POST /v1/api-keys',
      'GET /v1/api-keys',
      'GET /v1/api-keys/verify/current',
      'GET /v1/api-keys/:id',
      'PATCH /v1/api-keys/:id',
      'POST /v1/api-keys/:id/deactivate',
      'POST /v1/api-keys/:id/activate',
      'POST /v1/api-keys/:id/revoke',
      'DELETE /v1/api-keys/:id',
    ]) {
      const [method = '', path = ''] = route.split(' ');
      expect(t.app.hasRoute({ method: method as HttpMethod, url: path }), route).toBe(true);
      expect(paths.has(route), route).toBe(true);
    }
  });
});
