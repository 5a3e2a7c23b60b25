import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);
const MIN = 60_000;
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

interface UsageBody {
  key_id: string;
  granularity: string;
  from: string;
  to: string;
  buckets: Array<{ start: string; total: number; outcomes: Record<string, number> }>;
  totals: { total: number; outcomes: Record<string, number> };
}

describe.each(DIALECTS)('usage and analytics routes on %s', (dialect) => {
  let t: TestApp;
  let keyId: string;
  let otherId: string;

  beforeEach(async () => {
    t = await createTestApp({ dialect });
    keyId = (await createKey(t, { name: 'busy key' })).id;
    otherId = (await createKey(t, { name: 'quiet key' })).id;
    const record = (apiKeyId: string | null, outcome: string, createdAt: number) =>
      t.container.usage.record({ apiKeyId, outcome, endpoint: '/v1/companies', method: 'GET', statusCode: 200, createdAt });
    // A burst: 40 verifications in the first minute (30 VALID, 10 RATE_LIMITED), 5 in the third, 1 an hour later.
    for (let i = 0; i < 30; i++) record(keyId, 'VALID', T0 + i * 1_000);
    for (let i = 0; i < 10; i++) record(keyId, 'RATE_LIMITED', T0 + 30_000 + i);
    for (let i = 0; i < 5; i++) record(keyId, 'USAGE_EXCEEDED', T0 + 2 * MIN + i);
    record(keyId, 'VALID', T0 + HOUR);
    record(otherId, 'VALID', T0 + 10);
    record(null, 'NOT_FOUND', T0 + 20);
    await t.container.usage.flush();
  });
  afterEach(async () => t?.close());

  const usage = (id: string, query: string, key = t.adminKey) =>
    t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}/usage?${query}`, headers: bearer(key) });

  it('counts a key’s usage by outcome per minute, every bucket present', async () => {
    const response = await usage(keyId, `from=${iso(T0)}&to=${iso(T0 + 4 * MIN)}&granularity=minute`);
    expect(response.statusCode).toBe(200);
    const body = response.json() as UsageBody;
    expect(body).toMatchObject({ key_id: keyId, granularity: 'minute', from: iso(T0), to: iso(T0 + 4 * MIN) });
    expect(body.buckets).toEqual([
      { start: iso(T0), total: 40, outcomes: { VALID: 30, RATE_LIMITED: 10 } },
      { start: iso(T0 + MIN), total: 0, outcomes: {} },
      { start: iso(T0 + 2 * MIN), total: 5, outcomes: { USAGE_EXCEEDED: 5 } },
      { start: iso(T0 + 3 * MIN), total: 0, outcomes: {} },
    ]);
    expect(body.totals).toEqual({ total: 45, outcomes: { VALID: 30, RATE_LIMITED: 10, USAGE_EXCEEDED: 5 } });
  });

  it('buckets by hour and by day', async () => {
    const hours = (await usage(keyId, `from=${iso(T0)}&to=${iso(T0 + 2 * HOUR)}&granularity=hour`)).json() as UsageBody;
    expect(hours.buckets.map((b) => b.total)).toEqual([45, 1]);
    const days = (await usage(keyId, `from=${iso(T0)}&to=${iso(T0 + 86_400_000)}&granularity=day`)).json() as UsageBody;
    expect(days.buckets).toEqual([{ start: iso(T0), total: 46, outcomes: { VALID: 31, RATE_LIMITED: 10, USAGE_EXCEEDED: 5 } }]);
  });

  it('defaults to hourly buckets over the last day', async () => {
    const body = (await usage(keyId, '')).json() as UsageBody;
    expect(body.granularity).toBe('hour');
    expect(body.buckets.length).toBeGreaterThanOrEqual(24);
    expect(body.buckets.length).toBeLessThanOrEqual(25);
    expect(Date.parse(body.to) - Date.parse(body.from)).toBe(86_400_000);
    // Left out, `to` is the end of the current minute: the range is whole minutes (read from the minute counts).
    const to = Date.parse(body.to);
    expect(to % 60_000).toBe(0);
    expect(to - Date.now()).toBeGreaterThan(0);
    expect(to - Date.now()).toBeLessThanOrEqual(60_000);
  });

  it('lets whoever may read the key read its usage, and no one else', async () => {
    const reader = await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] });
    const plain = await createKey(t, { name: 'plain', scopes: ['inventory:read'] });
    const range = `from=${iso(T0)}&to=${iso(T0 + HOUR)}`;
    expect((await usage(keyId, range, reader.key)).statusCode).toBe(200);
    const forbidden = await usage(keyId, range, plain.key);
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ code: 'FORBIDDEN' });
    const anonymous = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${keyId}/usage?${range}` });
    expect(anonymous.statusCode).toBe(401);
    expect((await usage('0190a1b2-0000-7000-8000-000000000000', range)).json()).toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('rejects an empty or inverted range, too many buckets, and unknown parameters with 400', async () => {
    for (const query of [
      `from=${iso(T0)}&to=${iso(T0)}`,
      `from=${iso(T0 + HOUR)}&to=${iso(T0)}`,
      `from=${iso(T0)}&to=${iso(T0 + 30 * 86_400_000)}&granularity=minute`,
      'granularity=week',
      'from=yesterday',
      'verbose=true',
    ]) {
      const response = await usage(keyId, query);
      expect(response.statusCode, query).toBe(400);
      expect(response.json(), query).toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });

  it('gives admins verification totals by outcome and the busiest keys', async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/analytics/verifications?from=${iso(T0)}&to=${iso(T0 + 2 * HOUR)}`,
      headers: bearer(t.adminKey),
    });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      from: iso(T0),
      to: iso(T0 + 2 * HOUR),
      totals: { total: 48, outcomes: { VALID: 32, RATE_LIMITED: 10, USAGE_EXCEEDED: 5, NOT_FOUND: 1 } },
      top_keys: [
        {
          key_id: keyId,
          name: 'busy key',
          key_prefix: expect.any(String),
          total: 46,
          outcomes: { VALID: 31, RATE_LIMITED: 10, USAGE_EXCEEDED: 5 },
        },
        { key_id: otherId, name: 'quiet key', key_prefix: expect.any(String), total: 1, outcomes: { VALID: 1 } },
      ],
    });
    const one = await t.app.inject({
      method: 'GET',
      url: `/v1/analytics/verifications?from=${iso(T0)}&to=${iso(T0 + 2 * HOUR)}&limit=1`,
      headers: bearer(t.adminKey),
    });
    expect((one.json() as { top_keys: unknown[] }).top_keys).toHaveLength(1);
  });

  it('keeps analytics for admins: 403 for a management key, 401 anonymous', async () => {
    const writer = await createKey(t, { name: 'writer', scopes: ['keyward:keys:write'] });
    const denied = await t.app.inject({ method: 'GET', url: '/v1/analytics/verifications', headers: bearer(writer.key) });
    expect(denied.statusCode).toBe(403);
    expect(denied.json()).toMatchObject({ code: 'FORBIDDEN' });
    expect((await t.app.inject({ method: 'GET', url: '/v1/analytics/verifications' })).statusCode).toBe(401);
  });
});
