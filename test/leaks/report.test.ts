import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// POST /v1/leaks/report: no credential; each real key is revoked, the answer never says which were, and
// requests are counted per client address.

describe.each(DIALECTS)('POST /v1/leaks/report (%s)', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const report = (keys: unknown, remoteAddress = '198.51.100.7', headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url: '/v1/leaks/report', remoteAddress, headers, payload: { keys } });

  const verifyCode = async (key: string) =>
    (
      (await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key } })).json() as {
        code: string;
      }
    ).code;

  const leakAudits = async () =>
    (
      (await t.app.inject({ method: 'GET', url: '/v1/audit-logs?action=key.leaked', headers: bearer(t.adminKey) })).json() as {
        data: { target_id: string; actor_type: string; actor_id: string; ip: string | null; changes: Record<string, unknown> }[];
      }
    ).data;

  it('revokes each real key, with no credential, and audits it as key.leaked (source report)', async () => {
    t = await createTestApp({ dialect });
    const real = await createKey(t, { name: 'pasted in a forum' });
    const other = await createKey(t, { name: 'not reported' });
    expect(await verifyCode(real.key)).toBe('VALID'); // cached now: the revocation must reach the cache
    const response = await report([real.key, generateKey(), 'not-a-key-at-all', real.key]);
    expect(response.statusCode).toBe(202);
    expect(response.json()).toEqual({ received: 4 });
    expect(await verifyCode(real.key)).toBe('REVOKED');
    expect(await verifyCode(other.key)).toBe('VALID');
    const audits = await leakAudits();
    expect(audits).toHaveLength(1); // the same key twice in one report: revoked and audited once
    expect(audits[0]).toMatchObject({
      target_id: real.id,
      actor_type: 'system',
      actor_id: 'leak-report',
      ip: '198.51.100.7',
      changes: { source: 'report', is_active: { from: true, to: false } },
    });
    expect(JSON.stringify(audits)).not.toContain(real.key);
  });

  it('answers the same whether the keys were real or not', async () => {
    t = await createTestApp({ dialect });
    const real = await createKey(t);
    const shape = (response: Awaited<ReturnType<typeof report>>) => {
      const { 'x-request-id': _id, date: _date, ...headers } = response.headers;
      return { status: response.statusCode, body: response.body, headers };
    };
    const forReal = shape(await report([real.key, generateKey()], '198.51.100.1'));
    const forNothing = shape(await report([generateKey(), generateKey()], '198.51.100.2'));
    const forRevoked = shape(await report([real.key, generateKey()], '198.51.100.3'));
    expect(forNothing).toEqual(forReal);
    expect(forRevoked).toEqual(forReal);
    expect(await verifyCode(real.key)).toBe('REVOKED');
  });

  it('counts requests per address: past LEAKS_REPORTS_PER_MINUTE, 429 with Retry-After, and nothing revoked', async () => {
    t = await createTestApp({ dialect, env: { LEAKS_REPORTS_PER_MINUTE: '2' } });
    const late = await createKey(t);
    expect((await report([generateKey()])).statusCode).toBe(202);
    expect((await report([generateKey()])).statusCode).toBe(202);
    const refused = await report([late.key]);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    expect(refused.json()).toMatchObject({ code: 'RATE_LIMITED' });
    expect(await verifyCode(late.key)).toBe('VALID');
    // Another address has its own count; a credential changes nothing.
    expect((await report([late.key], '198.51.100.99', bearer(t.adminKey))).statusCode).toBe(202);
    expect(await verifyCode(late.key)).toBe('REVOKED');
  });

  it('refuses a body that is not 1 to 100 keys (400), before counting it', async () => {
    t = await createTestApp({ dialect, env: { LEAKS_REPORTS_PER_MINUTE: '1' } });
    for (const keys of [[], Array.from({ length: 101 }, () => generateKey()), ['x'.repeat(257)], [''], 'kw_x', [42]]) {
      const response = await report(keys);
      expect(response.statusCode, JSON.stringify(keys).slice(0, 40)).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    const bare = await t.app.inject({ method: 'POST', url: '/v1/leaks/report', remoteAddress: '198.51.100.7' });
    expect(bare.statusCode).toBe(400);
    expect((await report([generateKey()])).statusCode).toBe(202);
  });
});
