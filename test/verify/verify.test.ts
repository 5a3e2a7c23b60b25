import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { type ClockedApp, codeOf, createClockedApp, post, verify } from './helpers.js';

const KEY_FIELDS = ['key_id', 'lineage_id', 'name', 'user_id', 'is_admin', 'scopes', 'metadata', 'expires_at'];
const HOUR = 3_600_000;

describe.each(DIALECTS)('POST /v1/keys/verify on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('answers VALID with the key fields, and never the key or its hash', async () => {
    t = await createClockedApp({ dialect });
    const expiresAt = new Date(t.clock.now() + HOUR).toISOString();
    const { key, id } = await createKey(t, {
      name: 'svc',
      scopes: ['inventory:read'],
      metadata: { plan: 'gold', n: 1 },
      expires_at: expiresAt,
    });
    const response = await verify(t, { key });
    expect(response.statusCode).toBe(200);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.json()).toEqual({
      valid: true,
      code: 'VALID',
      key_id: id,
      lineage_id: id,
      name: 'svc',
      user_id: null,
      is_admin: false,
      scopes: ['inventory:read'],
      metadata: { plan: 'gold', n: 1 },
      expires_at: expiresAt,
    });
    expect(response.body).not.toContain(key);
    expect(response.body).not.toContain('hash');
  });

  it('answers every failure code with valid: false, and no key fields for a malformed or unknown key', async () => {
    t = await createClockedApp({ dialect });
    const native = generateKey('kw');
    const badChecksum = `${native.slice(0, -1)}${native.endsWith('A') ? 'B' : 'A'}`;
    for (const [key, code] of [
      ['short', 'INVALID_FORMAT'],
      [badChecksum, 'INVALID_FORMAT'],
      ['x'.repeat(257), 'INVALID_FORMAT'],
      ['has a space in it, so no', 'INVALID_FORMAT'],
      [generateKey('kw'), 'NOT_FOUND'],
      ['an-imported-legacy-token-0123456789', 'NOT_FOUND'],
    ] as const) {
      const response = await verify(t, { key });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ valid: false, code });
    }

    const revoked = await createKey(t);
    await post(t, `/v1/api-keys/${revoked.id}/revoke`);
    const disabled = await createKey(t);
    await post(t, `/v1/api-keys/${disabled.id}/deactivate`);
    const expiring = await createKey(t, { expires_at: new Date(t.clock.now() + HOUR).toISOString() });
    const scoped = await createKey(t, { scopes: ['inventory:read'] });
    t.clock.advance(HOUR);
    for (const [key, code, extra] of [
      [revoked.key, 'REVOKED', {}],
      [disabled.key, 'DISABLED', {}],
      [expiring.key, 'EXPIRED', {}],
      [scoped.key, 'INSUFFICIENT_SCOPES', { scopes: ['inventory:write'] }],
    ] as const) {
      const body = (await verify(t, { key, ...extra })).json() as Record<string, unknown>;
      expect(body.code).toBe(code);
      expect(body.valid).toBe(false);
      for (const field of KEY_FIELDS) expect(body).toHaveProperty(field);
    }
  });

  it('runs the checks in order: revoked, deactivated, expired, then scopes', async () => {
    t = await createClockedApp({ dialect });
    const soon = new Date(t.clock.now() + HOUR).toISOString();
    const all = await createKey(t, { expires_at: soon, scopes: ['a:read'] });
    await post(t, `/v1/api-keys/${all.id}/deactivate`);
    await post(t, `/v1/api-keys/${all.id}/revoke`);
    const disabledExpired = await createKey(t, { expires_at: soon, scopes: ['a:read'] });
    await post(t, `/v1/api-keys/${disabledExpired.id}/deactivate`);
    const expiredUnscoped = await createKey(t, { expires_at: soon });
    t.clock.advance(HOUR + 1);
    expect(await codeOf(t, all.key, { scopes: ['b:write'] })).toBe('REVOKED');
    expect(await codeOf(t, disabledExpired.key, { scopes: ['b:write'] })).toBe('DISABLED');
    expect(await codeOf(t, expiredUnscoped.key, { scopes: ['b:write'] })).toBe('EXPIRED');
  });

  it('matches required scopes against wildcard grants, requiring all of them', async () => {
    t = await createClockedApp({ dialect });
    const wild = await createKey(t, { scopes: ['inventory:*', 'billing:read'] });
    const star = await createKey(t, { scopes: ['*'] });
    const none = await createKey(t);
    expect(await codeOf(t, wild.key, { scopes: ['inventory:read'] })).toBe('VALID');
    expect(await codeOf(t, wild.key, { scopes: ['inventory:read', 'inventory:items:write', 'billing:read'] })).toBe('VALID');
    expect(await codeOf(t, wild.key, { scopes: ['inventory:read', 'billing:write'] })).toBe('INSUFFICIENT_SCOPES');
    expect(await codeOf(t, wild.key, { scopes: ['inventoryx:read'] })).toBe('INSUFFICIENT_SCOPES');
    expect(await codeOf(t, star.key, { scopes: ['anything:at:all', 'keyward:verify'] })).toBe('VALID');
    expect(await codeOf(t, none.key, { scopes: [] })).toBe('VALID');
    expect(await codeOf(t, none.key, { scopes: ['inventory:read'] })).toBe('INSUFFICIENT_SCOPES');
  });

  it('needs an admin key or keyward:verify: 401 anonymous or bad credential, 403 without the scope', async () => {
    t = await createClockedApp({ dialect });
    const target = await createKey(t);
    const anonymous = await t.app.inject({ method: 'POST', url: '/v1/keys/verify', payload: { key: target.key } });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.headers['www-authenticate']).toContain('Bearer');
    expect(anonymous.headers['content-type']).toContain('application/problem+json');
    const unknownCaller = await verify(t, { key: target.key }, generateKey('kw'));
    expect(unknownCaller.statusCode).toBe(401);

    const plain = await createKey(t, { scopes: ['inventory:read'] });
    const readKeys = await createKey(t, { scopes: ['keyward:keys:read', 'keyward:keys:write'] });
    for (const caller of [plain.key, readKeys.key]) {
      const forbidden = await verify(t, { key: target.key }, caller);
      expect(forbidden.statusCode).toBe(403);
      expect(forbidden.json()).toMatchObject({ code: 'FORBIDDEN' });
    }
    for (const scopes of [['keyward:verify'], ['keyward:*'], ['*']]) {
      const verifierKey = await createKey(t, { scopes });
      expect((await verify(t, { key: target.key }, verifierKey.key)).json()).toMatchObject({ valid: true, code: 'VALID' });
    }
    const byX = await t.app.inject({
      method: 'POST',
      url: '/v1/keys/verify',
      headers: { 'x-api-key': t.adminKey },
      payload: { key: target.key },
    });
    expect(byX.json()).toMatchObject({ code: 'VALID' });
  });

  it('takes cost as a non-negative integer (default 1) and rejects anything else with 400', async () => {
    t = await createClockedApp({ dialect });
    const { key } = await createKey(t);
    for (const cost of [0, 1, 25]) expect(await codeOf(t, key, { cost })).toBe('VALID');
    for (const cost of [-1, 1.5, 2 ** 60]) {
      const response = await verify(t, { key, cost });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_COST', errors: [{ field: 'body.cost' }] });
    }
    // Not a number at all: the schema refuses it, as any mistyped field (the description says so).
    const wrongType = await verify(t, { key, cost: '1' });
    expect(wrongType.statusCode).toBe(400);
    expect(wrongType.json()).toMatchObject({ code: 'INVALID_REQUEST', errors: [{ field: 'body.cost' }] });
    const unknownField = await verify(t, { key, extra: true });
    expect(unknownField.statusCode).toBe(400);
    expect(unknownField.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    const noKey = await verify(t, {});
    expect(noKey.statusCode).toBe(400);
  });
});

describe('verify in the OpenAPI document', () => {
  it('describes the request, every code and the response fields', async () => {
    const t = await createClockedApp();
    try {
      const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
        paths: Record<string, Record<string, { requestBody: unknown; responses: Record<string, unknown>; description: string }>>;
        components: { schemas: Record<string, unknown> };
      };
      const op = doc.paths['/v1/keys/verify']?.post;
      expect(op?.description).toContain('keyward:verify');
      // The answer is the VerifyResult component.
      const text = JSON.stringify(op) + JSON.stringify(doc.components.schemas.VerifyResult);
      for (const code of [
        'VALID',
        'INVALID_FORMAT',
        'NOT_FOUND',
        'REVOKED',
        'DISABLED',
        'EXPIRED',
        'INSUFFICIENT_SCOPES',
        'RATE_LIMITED',
        'USAGE_EXCEEDED',
      ]) {
        expect(text).toContain(`"${code}"`);
      }
      for (const field of [...KEY_FIELDS, 'ratelimit', 'remaining', 'cost']) expect(text).toContain(`"${field}"`);
      expect(Object.keys(op?.responses ?? {})).toEqual(expect.arrayContaining(['200', '400', '401', '403', '503']));
      expect(doc.paths['/v1/api-keys/{id}/roll']?.post).toBeDefined();
    } finally {
      await t.close();
    }
  });

  it('serializes nested metadata, and only the documented fields', async () => {
    const t = await createClockedApp();
    try {
      const { key } = await createKey(t, { metadata: { nested: { a: [1, 'x', null] } } });
      const body = (await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key } })).json();
      expect(body.metadata).toEqual({ nested: { a: [1, 'x', null] } });
      expect(Object.keys(body).sort()).toEqual([...KEY_FIELDS, 'code', 'valid'].sort());
    } finally {
      await t.close();
    }
  });
});
