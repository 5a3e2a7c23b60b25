import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { hsToken, JWT_ENV, signIn } from '../users/tokens.js';

// The same hostile inputs against every route that takes text, on every database: NUL (which PostgreSQL
// cannot store in text), lone surrogates (not text at all), bad percent-encodings, over-long path parameters
// and bodies that are not JSON. Each answers a 4xx problem+json with a stable code, never a 500, and the
// answers are the same on SQLite and PostgreSQL.

const NUL = '\u0000';
const LONE_SURROGATE = '\ud800';

/** What a hostile request sends: `:id` is the fixture's key id, `:user` its user id. */
interface Case {
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  url: string;
  /** `admin` (the default), a user's JWT, a JWT whose `sub` holds NUL, or none. */
  as?: 'admin' | 'user' | 'nul-sub' | 'surrogate-sub';
  payload?: unknown;
  contentType?: string;
  status: number;
  code: string;
  /** The field the problem names (in `errors[].field`), when the answer is a 400 about one. */
  field?: string;
}

const body400 = (field: string) => ({ status: 400, code: 'INVALID_REQUEST', field });

const CASES: Case[] = [
  // JSON bodies: NUL in every kind of text field, and a lone surrogate.
  { name: 'key name', method: 'POST', url: '/v1/api-keys', payload: { name: `a${NUL}b` }, ...body400('body.name') },
  {
    name: 'key description',
    method: 'POST',
    url: '/v1/api-keys',
    payload: { name: 'ok', description: NUL },
    ...body400('body.description'),
  },
  {
    name: 'metadata value',
    method: 'POST',
    url: '/v1/api-keys',
    payload: { name: 'ok', metadata: { tag: `x${NUL}` } },
    ...body400('body.metadata.tag'),
  },
  {
    name: 'nested metadata value',
    method: 'POST',
    url: '/v1/api-keys',
    payload: { name: 'ok', metadata: { list: ['fine', { deep: NUL }] } },
    ...body400('body.metadata.list.1.deep'),
  },
  {
    name: 'metadata key',
    method: 'POST',
    url: '/v1/api-keys',
    payload: { name: 'ok', metadata: { [`k${NUL}`]: 'v' } },
    ...body400('body.metadata'),
  },
  { name: 'scope', method: 'POST', url: '/v1/api-keys', payload: { name: 'ok', scopes: [`a${NUL}`] }, ...body400('body.scopes.0') },
  { name: 'user_id', method: 'POST', url: '/v1/api-keys', payload: { name: 'ok', user_id: NUL }, ...body400('body.user_id') },
  {
    name: 'lone surrogate in a name',
    method: 'POST',
    url: '/v1/api-keys',
    payload: { name: `a${LONE_SURROGATE}` },
    ...body400('body.name'),
  },
  { name: 'PATCH name', method: 'PATCH', url: '/v1/api-keys/:id', payload: { name: NUL }, ...body400('body.name') },
  {
    name: 'PATCH metadata',
    method: 'PATCH',
    url: '/v1/api-keys/:id',
    payload: { metadata: { a: NUL } },
    ...body400('body.metadata.a'),
  },
  { name: 'user external_id', method: 'POST', url: '/v1/users', payload: { external_id: `u${NUL}` }, ...body400('body.external_id') },
  { name: 'user tier', method: 'PATCH', url: '/v1/users/:user', payload: { tier: NUL }, ...body400('body.tier') },
  {
    name: 'self-service name',
    method: 'POST',
    url: '/v1/users/me/api-keys',
    as: 'user',
    payload: { name: NUL },
    ...body400('body.name'),
  },
  { name: 'verify key', method: 'POST', url: '/v1/keys/verify', payload: { key: `kw_${NUL}` }, ...body400('body.key') },
  {
    name: 'usage event endpoint',
    method: 'POST',
    url: '/v1/usage/events',
    payload: { events: [{ key_id: null, outcome: 'NOT_FOUND', endpoint: `/a${NUL}` }] },
    ...body400('body.events.0.endpoint'),
  },
  {
    name: 'usage event user agent',
    method: 'POST',
    url: '/v1/usage/events',
    payload: {
      events: [
        { key_id: null, outcome: 'NOT_FOUND' },
        { key_id: null, outcome: 'VALID', user_agent: NUL },
      ],
    },
    ...body400('body.events.1.user_agent'),
  },
  {
    name: 'usage event key_id',
    method: 'POST',
    url: '/v1/usage/events',
    payload: { events: [{ key_id: NUL, outcome: 'NOT_FOUND' }] },
    ...body400('body.events.0.key_id'),
  },

  // Query strings.
  { name: 'key list user_id', method: 'GET', url: '/v1/api-keys?user_id=%00', ...body400('query.user_id') },
  { name: 'key list cursor', method: 'GET', url: '/v1/api-keys?cursor=a%00', ...body400('query.cursor') },
  { name: 'user list external_id', method: 'GET', url: '/v1/users?external_id=%00', ...body400('query.external_id') },
  { name: 'audit actor_id', method: 'GET', url: '/v1/audit-logs?actor_id=%00', ...body400('query.actor_id') },
  { name: 'audit target_id', method: 'GET', url: '/v1/audit-logs?target_id=x%00y', ...body400('query.target_id') },
  { name: 'self-service cursor', method: 'GET', url: '/v1/users/me/api-keys?cursor=%00', as: 'user', ...body400('query.cursor') },

  // Path ids: no such resource.
  { name: 'get key', method: 'GET', url: '/v1/api-keys/%00', status: 404, code: 'KEY_NOT_FOUND' },
  { name: 'patch key', method: 'PATCH', url: '/v1/api-keys/a%00', payload: { name: 'x' }, status: 404, code: 'KEY_NOT_FOUND' },
  { name: 'revoke key', method: 'POST', url: '/v1/api-keys/%00/revoke', status: 404, code: 'KEY_NOT_FOUND' },
  { name: 'roll key', method: 'POST', url: '/v1/api-keys/%00/roll', status: 404, code: 'KEY_NOT_FOUND' },
  { name: 'delete key', method: 'DELETE', url: '/v1/api-keys/%00', status: 404, code: 'KEY_NOT_FOUND' },
  { name: 'key usage', method: 'GET', url: '/v1/api-keys/%00/usage', status: 404, code: 'KEY_NOT_FOUND' },
  { name: 'get user', method: 'GET', url: '/v1/users/%00', status: 404, code: 'USER_NOT_FOUND' },
  { name: 'delete user', method: 'DELETE', url: '/v1/users/%00', status: 404, code: 'USER_NOT_FOUND' },
  { name: 'self-service delete', method: 'DELETE', url: '/v1/users/me/api-keys/%00', as: 'user', status: 404, code: 'KEY_NOT_FOUND' },

  // Credentials carrying text the database cannot hold.
  { name: 'JWT sub with NUL', method: 'GET', url: '/v1/users/me', as: 'nul-sub', status: 401, code: 'INVALID_CREDENTIALS' },
  {
    name: 'JWT sub with a lone surrogate',
    method: 'GET',
    url: '/v1/users/me',
    as: 'surrogate-sub',
    status: 401,
    code: 'INVALID_CREDENTIALS',
  },

  // What Fastify itself refuses: the same problem+json as everything else.
  { name: 'bad percent-encoding in a path', method: 'GET', url: '/v1/api-keys/%zz', status: 400, code: 'INVALID_REQUEST' },
  { name: 'invalid UTF-8 in a path', method: 'GET', url: '/v1/api-keys/%ff', status: 400, code: 'INVALID_REQUEST' },
  { name: 'over-long path parameter', method: 'GET', url: `/v1/api-keys/${'a'.repeat(500)}`, status: 414, code: 'URI_TOO_LONG' },
  {
    name: 'text/plain body',
    method: 'POST',
    url: '/v1/api-keys',
    payload: '{"name":"plain"}',
    contentType: 'text/plain',
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'text/plain body on verify',
    method: 'POST',
    url: '/v1/keys/verify',
    payload: 'kw_x',
    contentType: 'text/plain; charset=utf-8',
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'body that is not JSON',
    method: 'POST',
    url: '/v1/api-keys',
    payload: '{"name":',
    contentType: 'application/json',
    status: 400,
    code: 'INVALID_REQUEST',
  },
];

interface Fixture {
  t: TestApp;
  keyId: string;
  userId: string;
  credentials: Record<NonNullable<Case['as']>, string>;
}

describe.each(DIALECTS)('hostile input on %s', (dialect) => {
  let f: Fixture;
  beforeAll(async () => {
    const t = await createTestApp({ dialect, env: JWT_ENV });
    const { id: keyId } = await createKey(t, { name: 'target' });
    const { token, userId } = await signIn(t, 'hostile-user');
    f = {
      t,
      keyId,
      userId,
      credentials: {
        admin: t.adminKey,
        user: token,
        'nul-sub': await hsToken(`evil${NUL}`),
        'surrogate-sub': await hsToken(`evil${LONE_SURROGATE}`),
      },
    };
  });
  afterAll(async () => f?.t.close());

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const json = c.payload !== undefined && typeof c.payload !== 'string';
    const contentType = c.contentType ?? (json ? 'application/json' : undefined);
    const response = await f.t.app.inject({
      method: c.method,
      url: c.url.replace(':id', f.keyId).replace(':user', f.userId),
      headers: { ...bearer(f.credentials[c.as ?? 'admin']), ...(contentType ? { 'content-type': contentType } : {}) },
      ...(c.payload === undefined ? {} : { payload: json ? JSON.stringify(c.payload) : String(c.payload) }),
    });
    const problem = response.json() as { status: number; code: string; errors?: { field: string }[] };
    expect({ status: response.statusCode, code: problem.code }).toEqual({ status: c.status, code: c.code });
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(problem.status).toBe(c.status);
    if (c.field) expect(problem.errors?.map((e) => e.field)).toContain(c.field);
  });

  it('a JWT email claim with NUL is left out, as one that is no address is: the user signs in without it', async () => {
    const token = await hsToken('nul-email', { claims: { email: `e${NUL}@example.com` } });
    const response = await f.t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ external_id: 'nul-email', email: null });
    const removed = await f.t.app.inject({
      method: 'DELETE',
      url: `/v1/users/${(response.json() as { id: string }).id}`,
      headers: bearer(f.t.adminKey),
    });
    expect(removed.statusCode).toBe(204);
  });

  it('stored nothing from the refused requests', async () => {
    const list = await f.t.app.inject({ method: 'GET', url: '/v1/api-keys?include_inactive=true', headers: bearer(f.t.adminKey) });
    expect(list.statusCode).toBe(200);
    const names = (list.json() as { data: { name: string }[] }).data.map((k) => k.name);
    expect(names.some((n) => n.includes(NUL))).toBe(false);
    const users = await f.t.app.inject({ method: 'GET', url: '/v1/users', headers: bearer(f.t.adminKey) });
    expect((users.json() as { data: { external_id: string }[] }).data.map((u) => u.external_id)).toEqual(['hostile-user']);
  });
});
