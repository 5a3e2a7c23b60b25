import { generateKey } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_METADATA_BYTES, MAX_METADATA_DEPTH } from '../../packages/server/src/input-bounds.js';
import { updateKey } from '../../packages/server/src/keys/repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';

const operator = { principal: { kind: 'system' as const, name: 'cli' }, ip: null };

/** The latest instant Keyward takes, and the same wall-clock time one offset-minute later: year 10000 in UTC. */
const LAST = '9999-12-31T23:59:59.999Z';
const PAST_LAST = '9999-12-31T23:59:59.999-00:01';
const YEAR_10000 = '9999-12-31T23:59:59.999-23:59';
const BEFORE_FIRST = '1969-12-31T23:59:59.999Z';
const BEFORE_FIRST_BY_OFFSET = '1970-01-01T00:00:00+00:01';

/** `levels` nested objects, the outermost being level 1. */
function nested(levels: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: true };
  for (let i = 1; i < levels; i += 1) value = { a: value };
  return value;
}

/** `levels` nested objects as JSON text, built without recursion (serializing 5,000 levels overflows the stack). */
const deepJson = (levels: number): string => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

/** An object that serializes to exactly `bytes` bytes of UTF-8 JSON (`{"s":"…"}` is 8 bytes around the string). */
const ofBytes = (bytes: number): Record<string, unknown> => ({ s: 'x'.repeat(bytes - 8) });

interface Problem {
  code: string;
  detail?: string;
  errors?: { field: string; message: string }[];
}

describe.each(DIALECTS)('input bounds on %s', (dialect) => {
  let t: TestApp;
  let token: string;
  let verifierKey: string;

  beforeAll(async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const user = await signIn(t, 'bounded-user');
    token = user.token;
    // No key limit in the way: these tests create many keys of one user.
    await t.app.inject({ method: 'PATCH', url: `/v1/users/${user.userId}`, headers: bearer(t.adminKey), payload: { tier: 'enterprise' } });
    verifierKey = (await createKey(t, { name: 'verifier', scopes: ['keyward:verify'] })).key;
  });
  afterAll(async () => t?.close());

  // A string payload is sent as JSON text as it is (how a 5,000-level body gets here at all).
  const send = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, credential = t.adminKey) =>
    t.app.inject({
      method,
      url,
      headers: { ...bearer(credential), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(payload === undefined ? {} : { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) }),
    });

  async function expectRefused(
    response: Awaited<ReturnType<typeof send>>,
    field: string,
    what: string,
    detailMatch?: RegExp,
  ): Promise<void> {
    expect(response.statusCode, `${what}: ${response.body.slice(0, 300)}`).toBe(400);
    const problem = response.json() as Problem;
    expect(problem.code, what).toBe('INVALID_REQUEST');
    expect(
      problem.errors?.map((e) => e.field),
      what,
    ).toContain(field);
    if (detailMatch) expect(problem.detail, what).toMatch(detailMatch);
  }

  async function listStillWorks(): Promise<{ id: string; expires_at: string | null }[]> {
    const list = await send('GET', '/v1/api-keys?limit=100&include_inactive=true');
    expect(list.statusCode, list.body.slice(0, 300)).toBe(200);
    return (list.json() as { data: { id: string; expires_at: string | null }[] }).data;
  }

  describe('date-times', () => {
    it('creates, lists, gets and verifies a key expiring at the latest instant, 9999-12-31T23:59:59.999Z', async () => {
      const created = await send('POST', '/v1/api-keys', { name: 'last', expires_at: LAST });
      expect(created.statusCode, created.body).toBe(201);
      const { id, key } = created.json() as { id: string; key: string };
      expect((await listStillWorks()).find((k) => k.id === id)?.expires_at).toBe(LAST);
      const got = await send('GET', `/v1/api-keys/${id}`);
      expect(got.statusCode).toBe(200);
      expect(got.json()).toMatchObject({ expires_at: LAST, status: 'active' });
      const verified = await send('POST', '/v1/keys/verify', { key }, verifierKey);
      expect(verified.statusCode).toBe(200);
      expect(verified.json()).toMatchObject({ valid: true, code: 'VALID', expires_at: LAST });

      const other = await createKey(t, { name: 'patched' });
      const patched = await send('PATCH', `/v1/api-keys/${other.id}`, { expires_at: '9999-12-31T23:59:59.999+00:00' });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(patched.json()).toMatchObject({ expires_at: LAST });
      const mine = await send('POST', '/v1/users/me/api-keys', { name: 'mine last', expires_at: LAST }, token);
      expect(mine.statusCode, mine.body).toBe(201);
    });

    it('refuses a year-10000 instant (reached through an offset) on every write, stores nothing, and lists keep working', async () => {
      const before = (await listStillWorks()).length;
      const target = await createKey(t, { name: 'target' });
      for (const value of [YEAR_10000, PAST_LAST]) {
        await expectRefused(
          await send('POST', '/v1/api-keys', { name: 'far', expires_at: value }),
          'body.expires_at',
          `create ${value}`,
          /9999/,
        );
        await expectRefused(await send('PATCH', `/v1/api-keys/${target.id}`, { expires_at: value }), 'body.expires_at', `patch ${value}`);
        await expectRefused(
          await send('POST', '/v1/users/me/api-keys', { name: 'far', expires_at: value }, token),
          'body.expires_at',
          `self-service ${value}`,
        );
      }
      const after = await listStillWorks();
      expect(after).toHaveLength(before + 1);
      expect(after.find((k) => k.id === target.id)?.expires_at).toBeNull();
      expect((await send('GET', `/v1/api-keys/${target.id}`)).statusCode).toBe(200);
      const mine = await send('GET', '/v1/users/me/api-keys?limit=100', undefined, token);
      expect(mine.statusCode).toBe(200);
    });

    it('still lists, gets and verifies a key stored with a year-10000 expiry before inputs were bounded', async () => {
      const legacy = await createKey(t, { name: 'legacy far' });
      await updateKey(t.container.db.db, legacy.id, { expiresAt: Date.parse(YEAR_10000) });
      expect((await listStillWorks()).find((k) => k.id === legacy.id)?.expires_at).toBe(LAST);
      const got = await send('GET', `/v1/api-keys/${legacy.id}`);
      expect(got.statusCode, got.body).toBe(200);
      expect(got.json()).toMatchObject({ expires_at: LAST, status: 'active' });
      const verified = await send('POST', '/v1/keys/verify', { key: legacy.key }, verifierKey);
      expect(verified.json()).toMatchObject({ valid: true, expires_at: LAST });
    });

    it('bounds query filters and reported usage the same way: 1970-01-01T00:00:00Z is the earliest', async () => {
      const { id } = await createKey(t, { name: 'filtered' });
      expect((await send('GET', `/v1/audit-logs?from=${encodeURIComponent('1970-01-01T00:00:00Z')}`)).statusCode).toBe(200);
      expect((await send('GET', `/v1/audit-logs?to=${encodeURIComponent(LAST)}`)).statusCode).toBe(200);
      const refused = [
        ['from', `/v1/audit-logs?from=${encodeURIComponent(BEFORE_FIRST)}`],
        ['from', `/v1/audit-logs?from=${encodeURIComponent(BEFORE_FIRST_BY_OFFSET)}`],
        ['to', `/v1/audit-logs?to=${encodeURIComponent(PAST_LAST)}`],
        ['from', `/v1/api-keys/${id}/usage?from=${encodeURIComponent(BEFORE_FIRST)}`],
        ['to', `/v1/api-keys/${id}/usage?to=${encodeURIComponent(YEAR_10000)}`],
        ['to', `/v1/analytics/verifications?to=${encodeURIComponent(YEAR_10000)}`],
      ] as const;
      for (const [field, url] of refused) await expectRefused(await send('GET', url), `querystring.${field}`, url);

      for (const value of [YEAR_10000, BEFORE_FIRST]) {
        await expectRefused(
          await send('POST', '/v1/usage/events', { events: [{ key_id: id, outcome: 'VALID', occurred_at: value }] }, verifierKey),
          'body.events.0.occurred_at',
          `usage ${value}`,
        );
      }
      expect(
        (
          await send(
            'POST',
            '/v1/usage/events',
            { events: [{ key_id: id, outcome: 'VALID', occurred_at: '1970-01-01T00:00:00Z' }] },
            verifierKey,
          )
        ).statusCode,
      ).toBe(202);
    });

    it('refuses an import line whose expires_at is out of range, and imports the latest instant', async () => {
      const far = generateKey('kw');
      const last = generateKey('kw');
      const outcome = await t.container.importer.importRecords(
        operator,
        [
          JSON.stringify({ key: far, name: 'far', expires_at: YEAR_10000 }),
          JSON.stringify({ key: generateKey('kw'), name: 'old', expires_at: '1969-07-20T20:17:00Z' }),
          JSON.stringify({ key: last, name: 'last', expires_at: LAST }),
        ],
        'plaintext',
      );
      expect(outcome).toMatchObject({ imported: 1, errors: [{ line: 1 }, { line: 2 }] });
      expect(outcome.errors[0]?.message).toMatch(/expires_at/);
      expect((await listStillWorks()).some((k) => k.expires_at === LAST)).toBe(true);
      const verified = await send('POST', '/v1/keys/verify', { key: last }, verifierKey);
      expect(verified.json()).toMatchObject({ valid: true, expires_at: LAST });
      expect((await send('POST', '/v1/keys/verify', { key: far }, verifierKey)).json()).toMatchObject({ valid: false, code: 'NOT_FOUND' });
    });
  });

  describe('metadata', () => {
    it(`takes ${MAX_METADATA_DEPTH} levels and ${MAX_METADATA_BYTES} bytes, and refuses one more on create, PATCH and self-service`, async () => {
      const target = await createKey(t, { name: 'meta target' });
      const fits = [nested(MAX_METADATA_DEPTH), ofBytes(MAX_METADATA_BYTES), { list: [[[[1]]]], unicode: 'é€😀' }];
      for (const metadata of fits) {
        const created = await send('POST', '/v1/api-keys', { name: 'fits', metadata });
        expect(created.statusCode, created.body.slice(0, 300)).toBe(201);
        expect(created.json()).toMatchObject({ metadata });
        expect((await send('PATCH', `/v1/api-keys/${target.id}`, { metadata })).statusCode).toBe(200);
        expect((await send('POST', '/v1/users/me/api-keys', { name: 'fits', metadata }, token)).statusCode).toBe(201);
      }
      const deepList = { list: JSON.parse(`${'['.repeat(MAX_METADATA_DEPTH)}1${']'.repeat(MAX_METADATA_DEPTH)}`) as unknown };
      const tooMuch: [string, unknown, RegExp][] = [
        ['one level too deep', nested(MAX_METADATA_DEPTH + 1), /deep/],
        ['arrays one level too deep', deepList, /deep/],
        ['one byte too large', ofBytes(MAX_METADATA_BYTES + 1), /bytes/],
        ['multi-byte characters counted as UTF-8', { s: 'é'.repeat(MAX_METADATA_BYTES / 2) }, /bytes/],
        ['a property name over 100 characters', { ['k'.repeat(101)]: 1 }, /./],
      ];
      // The body: 5,000 levels, 30 KB, under the body limit.
      const deepest = deepJson(5000);
      expect(deepest.length).toBeGreaterThan(30_000);
      for (const [method, url, body] of [
        ['POST', '/v1/api-keys', `{"name":"deep","metadata":${deepest}}`],
        ['PATCH', `/v1/api-keys/${target.id}`, `{"metadata":${deepest}}`],
        ['POST', '/v1/users/me/api-keys', `{"name":"deep","metadata":${deepest}}`],
      ] as const) {
        const response = await send(method, url, body, url.startsWith('/v1/users') ? token : t.adminKey);
        await expectRefused(response, 'body.metadata', `${method} ${url}: 5,000 levels`, /deep/);
      }
      for (const [what, metadata, detail] of tooMuch) {
        const field = what.startsWith('a property name') ? `body.metadata.${'k'.repeat(101)}` : 'body.metadata';
        await expectRefused(await send('POST', '/v1/api-keys', { name: 'big', metadata }), field, `create: ${what}`, detail);
        await expectRefused(await send('PATCH', `/v1/api-keys/${target.id}`, { metadata }), field, `patch: ${what}`, detail);
        await expectRefused(await send('POST', '/v1/users/me/api-keys', { name: 'big', metadata }, token), field, `self: ${what}`, detail);
      }
      expect((await listStillWorks()).every((k) => k.id !== undefined)).toBe(true);
    });

    it('refuses metadata.rate_limit and metadata.quota, pointing to the top-level fields that are enforced', async () => {
      const target = await createKey(t, { name: 'limited', metadata: { plan: 'gold' } });
      for (const [name, hint] of [
        ['rate_limit', /top-level `rate_limit`/],
        ['quota', /top-level `quota`/],
      ] as const) {
        const metadata = { plan: 'gold', [name]: 1000 };
        const field = `body.metadata.${name}`;
        await expectRefused(await send('POST', '/v1/api-keys', { name: 'seed 002', metadata }), field, `create ${name}`, hint);
        await expectRefused(await send('PATCH', `/v1/api-keys/${target.id}`, { metadata: { [name]: 2000 } }), field, `patch ${name}`, hint);
        await expectRefused(await send('POST', '/v1/users/me/api-keys', { name: 'mine', metadata }, token), field, `self ${name}`, hint);
      }
      expect((await send('GET', `/v1/api-keys/${target.id}`)).json()).toMatchObject({ metadata: { plan: 'gold' } });
      // Nested deeper, the names are the caller's own data.
      const nestedOk = await send('POST', '/v1/api-keys', { name: 'nested', metadata: { plan: { rate_limit: 5, quota: 1 } } });
      expect(nestedOk.statusCode).toBe(201);
      // The top-level field is the one that limits.
      const limited = await send('PATCH', `/v1/api-keys/${target.id}`, { rate_limit: { limit: 2000, window_seconds: 60 } });
      expect(limited.json()).toMatchObject({ rate_limit: { limit: 2000, window_seconds: 60 } });
    });

    it('refuses free-form JSON in a usage event (no such field)', async () => {
      const response = await send(
        'POST',
        '/v1/usage/events',
        `{"events":[{"key_id":null,"outcome":"NOT_FOUND","metadata":${deepJson(5000)}}]}`,
        verifierKey,
      );
      await expectRefused(response, 'body.events.0.metadata', 'usage event metadata');
    });

    it('applies the same bounds to import lines: too deep, too large, rate_limit and quota', async () => {
      const kept = generateKey('kw');
      const lines = [
        `{"key":"${generateKey('kw')}","metadata":${deepJson(5000)}}`,
        JSON.stringify({ key: generateKey('kw'), metadata: ofBytes(MAX_METADATA_BYTES + 1) }),
        JSON.stringify({ key: generateKey('kw'), metadata: { rate_limit: 1000 } }),
        JSON.stringify({ key: generateKey('kw'), metadata: { quota: 10 } }),
        JSON.stringify({ key: kept, metadata: nested(MAX_METADATA_DEPTH) }),
      ];
      const outcome = await t.container.importer.importRecords(operator, lines, 'plaintext');
      expect(outcome.imported).toBe(1);
      expect(outcome.errors.map((e) => e.line)).toEqual([1, 2, 3, 4]);
      expect(outcome.errors[0]?.message).toMatch(/deep/);
      expect(outcome.errors[1]?.message).toMatch(/bytes/);
      expect(outcome.errors[2]?.message).toMatch(/^metadata\.rate_limit .*top-level `rate_limit`/);
      expect(outcome.errors[3]?.message).toMatch(/^metadata\.quota .*top-level `quota`/);
      const verified = await send('POST', '/v1/keys/verify', { key: kept }, verifierKey);
      expect(verified.json()).toMatchObject({ valid: true, metadata: nested(MAX_METADATA_DEPTH) });
      await listStillWorks();
    });

    it('documents the bounds in the OpenAPI document', async () => {
      const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
        paths: Record<
          string,
          Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, { $ref?: string }> } }> } }>
        >;
        components: { schemas: Record<string, unknown> };
      };
      for (const [path, method] of [
        ['/v1/api-keys', 'post'],
        ['/v1/api-keys/{id}', 'patch'],
        ['/v1/users/me/api-keys', 'post'],
      ] as const) {
        // The bodies name the Metadata component.
        const ref = doc.paths[path]?.[method]?.requestBody?.content['application/json']?.schema.properties.metadata?.$ref;
        expect(ref, path).toBe('#/components/schemas/Metadata');
        const metadata = doc.components.schemas.Metadata as {
          description: string;
          propertyNames: unknown;
          properties: Record<string, unknown>;
        };
        expect(metadata.description, path).toContain(`${MAX_METADATA_DEPTH} levels`);
        expect(metadata.description, path).toContain(`${MAX_METADATA_BYTES} bytes`);
        expect(metadata.propertyNames).toEqual({ maxLength: 100 });
        expect(Object.keys(metadata.properties)).toEqual(['rate_limit', 'quota']);
      }
    });
  });
});
