import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { updateKey } from '../../packages/server/src/keys/repository.js';
import { MAX_LOCATION_LENGTH, MAX_SCANNED_KEYS } from '../../packages/server/src/leaks/routes.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';

// POST /v1/leaks/scan: `keyward scan` through a server. Keys looked up in batches and answered by position
// (never echoed), for a caller that reaches every key; with `revoke`, each live one revoked and audited with
// where it was found; no brute-force count for the keys not found.

interface ScanAnswer {
  results: { index: number; key_id: string | null; status: string; revoked: boolean }[];
}

describe.each(DIALECTS)('POST /v1/leaks/scan (%s)', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const scan = (payload: unknown, headers: Record<string, string> = bearer(t.adminKey)) =>
    t.app.inject({ method: 'POST', url: '/v1/leaks/scan', headers, payload: payload as Record<string, unknown> });

  const verifyCode = async (key: string) =>
    (
      (await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key } })).json() as {
        code: string;
      }
    ).code;

  const leakAudits = async () =>
    (
      (await t.app.inject({ method: 'GET', url: '/v1/audit-logs?action=key.leaked', headers: bearer(t.adminKey) })).json() as {
        data: { target_id: string; actor_type: string; actor_id: string; changes: Record<string, unknown> }[];
      }
    ).data;

  it('answers each key by its position with its id and state, never the key, and revokes nothing without revoke', async () => {
    t = await createTestApp({ dialect });
    const active = await createKey(t, { name: 'active' });
    const off = await createKey(t, { name: 'deactivated' });
    const gone = await createKey(t, { name: 'revoked' });
    const late = await createKey(t, { name: 'expired', expires_at: new Date(Date.now() + 3_600_000).toISOString() });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${off.id}/deactivate`, headers: bearer(t.adminKey) });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${gone.id}/revoke`, headers: bearer(t.adminKey) });
    await updateKey(t.container.db.db, late.id, { expiresAt: Date.now() - 1_000 });
    const stranger = generateKey();
    const keys = [active.key, off.key, gone.key, late.key, stranger, 'not-a-key-at-all', active.key];
    const response = await scan({ findings: keys.map((key, i) => ({ key, location: `src/f${i}.ts:${i + 1}` })) });
    expect(response.statusCode).toBe(200);
    expect((response.json() as ScanAnswer).results).toEqual([
      { index: 0, key_id: active.id, status: 'active', revoked: false },
      { index: 1, key_id: off.id, status: 'deactivated', revoked: false },
      { index: 2, key_id: gone.id, status: 'revoked', revoked: false },
      { index: 3, key_id: late.id, status: 'expired', revoked: false },
      { index: 4, key_id: null, status: 'not_found', revoked: false },
      { index: 5, key_id: null, status: 'not_found', revoked: false },
      { index: 6, key_id: active.id, status: 'active', revoked: false },
    ]);
    for (const key of keys) expect(response.body).not.toContain(key);
    expect(await verifyCode(active.key)).toBe('VALID');
    expect(await leakAudits()).toEqual([]);
  });

  it('with revoke, revokes each live key once, audited as key.leaked (source scan, its first location), with the event', async () => {
    t = await createTestApp({ dialect });
    const active = await createKey(t, { name: 'pasted in a fixture' });
    const off = await createKey(t, { name: 'deactivated' });
    const gone = await createKey(t, { name: 'revoked before' });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${off.id}/deactivate`, headers: bearer(t.adminKey) });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${gone.id}/revoke`, headers: bearer(t.adminKey) });
    expect(await verifyCode(active.key)).toBe('VALID'); // cached now: the revocation must reach the cache
    const response = await scan({
      findings: [
        { key: active.key, location: 'test/fixtures/keys.ts:12' },
        { key: off.key, location: '.env:3' },
        { key: gone.key, location: 'README.md:40' },
        { key: generateKey(), location: 'test/fixtures/keys.ts:13' },
        { key: active.key, location: 'docs/setup.md:7' },
      ],
      revoke: true,
    });
    expect(response.statusCode).toBe(200);
    expect((response.json() as ScanAnswer).results.map((r) => [r.status, r.revoked])).toEqual([
      ['active', true],
      ['deactivated', true],
      ['revoked', false],
      ['not_found', false],
      ['active', true],
    ]);
    for (const key of [active.key, off.key]) expect(await verifyCode(key)).toBe('REVOKED');
    const audits = await leakAudits();
    const adminId = audits[0]?.actor_id;
    expect(audits.map((a) => [a.target_id, a.changes.source, a.changes.location]).sort()).toEqual(
      [
        [active.id, 'scan', 'test/fixtures/keys.ts:12'],
        [off.id, 'scan', '.env:3'],
      ].sort(),
    );
    expect(audits.every((a) => a.actor_type === 'api_key' && a.actor_id === adminId)).toBe(true);
    expect(JSON.stringify(audits)).not.toContain(active.key);
    const events = (
      (await t.app.inject({ method: 'GET', url: '/v1/events?type=key.leaked', headers: bearer(t.adminKey) })).json() as {
        data: { data: { key: { id: string }; source: string; location: string; revoked: boolean } }[];
      }
    ).data;
    expect(events.map((e) => [e.data.key.id, e.data.source, e.data.location, e.data.revoked]).sort()).toEqual(
      [
        [active.id, 'scan', 'test/fixtures/keys.ts:12', true],
        [off.id, 'scan', '.env:3', true],
      ].sort(),
    );
  });

  it('needs a caller that reaches every key: 401 without a credential, 403 for any other', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const target = await createKey(t, { name: 'target' });
    const body = { findings: [{ key: target.key, location: 'a.ts:1' }], revoke: true };
    const none = await scan(body, {});
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ code: 'AUTH_REQUIRED' });
    const { token, userId } = await signIn(t, 'scan-user');
    const refused = [
      (await createKey(t, { name: 'regular', scopes: ['inventory:read'] })).key,
      (await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] })).key,
      (await createKey(t, { name: 'verifier', scopes: ['keyward:verify'] })).key,
      (await createKey(t, { name: 'user writer', scopes: ['keyward:keys:write'], user_id: userId })).key,
      token,
    ];
    for (const credential of refused) {
      const response = await scan(body, bearer(credential));
      expect(response.statusCode).toBe(403);
      expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
    }
    expect(await verifyCode(target.key)).toBe('VALID');
    const writer = await createKey(t, { name: 'writer', scopes: ['keyward:keys:write'] });
    const allowed = await scan(body, bearer(writer.key));
    expect(allowed.statusCode).toBe(200);
    expect((allowed.json() as ScanAnswer).results).toEqual([{ index: 0, key_id: target.id, status: 'active', revoked: true }]);
  });

  it(`refuses a batch that is not 1 to ${MAX_SCANNED_KEYS} findings of the right shape (400), and revokes nothing`, async () => {
    t = await createTestApp({ dialect });
    const real = await createKey(t);
    const many = Array.from({ length: MAX_SCANNED_KEYS + 1 }, () => ({ key: generateKey(), location: 'a.ts:1' }));
    const bodies: unknown[] = [
      { findings: [] },
      { findings: [...many.slice(0, MAX_SCANNED_KEYS), { key: real.key }], revoke: true },
      { findings: [{ key: real.key, location: 'x'.repeat(MAX_LOCATION_LENGTH + 1) }], revoke: true },
      { findings: [{ key: real.key, location: '' }], revoke: true },
      { findings: [{ key: 'x'.repeat(257) }] },
      { findings: [{ key: real.key, line: 3 }], revoke: true },
      { findings: [real.key], revoke: true },
      { findings: [{ key: real.key }], revoke: 'yes' },
      { keys: [real.key] },
    ];
    for (const body of bodies) {
      const response = await scan(body);
      expect(response.statusCode, JSON.stringify(body).slice(0, 60)).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
      expect(response.body).not.toContain(real.key);
    }
    // A location holding a key would be stored in the audit entry: refused, naming the field, not the key.
    const pasted = await scan({ findings: [{ key: real.key, location: `config/${generateKey()}.ts:1` }], revoke: true });
    expect(pasted.statusCode).toBe(400);
    expect(pasted.json()).toMatchObject({ code: 'SECRET_IN_FIELD', errors: [{ field: 'body.findings.0.location' }] });
    expect(pasted.body).not.toContain(real.key);
    expect(await verifyCode(real.key)).toBe('VALID');
    // A full batch of the longest locations fits the route's body limit.
    const full = Array.from({ length: MAX_SCANNED_KEYS }, () => ({ key: generateKey(), location: 'y'.repeat(MAX_LOCATION_LENGTH) }));
    expect((await scan({ findings: full })).statusCode).toBe(200);
  });

  it('does not count keys not found against the caller: a repository of fixture keys never trips the guard', async () => {
    t = await createTestApp({ dialect, env: { VERIFY_FAILURES_PER_MINUTE: '3', AUTH_FAILURES_PER_MINUTE: '3' } });
    const real = await createKey(t);
    for (let round = 0; round < 3; round++) {
      const findings = Array.from({ length: MAX_SCANNED_KEYS }, (_, i) => ({
        key: generateKey(),
        location: `fixtures/${round}.ts:${i + 1}`,
      }));
      const response = await scan({ findings });
      expect(response.statusCode).toBe(200);
      expect((response.json() as ScanAnswer).results.every((r) => r.status === 'not_found')).toBe(true);
    }
    // The address is not held up: verification (whose failures the guard counts) still answers.
    expect(await verifyCode(real.key)).toBe('VALID');
    expect(await verifyCode(generateKey())).toBe('NOT_FOUND');
  });
});
