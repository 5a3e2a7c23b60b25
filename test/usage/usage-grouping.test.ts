import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// group_by on GET /v1/analytics/verifications/series and GET /v1/api-keys/{id}/usage: the outcome (today's
// shape), or the endpoint, status class, tag or key besides.

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);
const MIN = 60_000;
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

interface Counts {
  total: number;
  outcomes: Record<string, number>;
  groups?: Record<string, number>;
}
interface Series {
  key_id: string | null;
  group_by?: string;
  buckets: Array<Counts & { start: string }>;
  totals: Counts;
}

describe.each(DIALECTS)('usage grouped on %s', (dialect) => {
  let t: TestApp;
  let a: string;
  let b: string;

  beforeEach(async () => {
    t = await createTestApp({ dialect });
    a = (await createKey(t, { name: 'A' })).id;
    b = (await createKey(t, { name: 'B' })).id;
    const record = (
      apiKeyId: string | null,
      outcome: string,
      at: number,
      endpoint: string | null,
      statusCode: number | null,
      tags: string[] | null,
    ) => t.container.usage.record({ apiKeyId, outcome, endpoint, method: 'GET', statusCode, createdAt: at, tags });
    // Minute 0: key A 3 rows on /x (2 tagged eu+route, 1 untagged), key B 2 rows on /y with 404.
    record(a, 'VALID', T0 + 1_000, '/x', 200, ['region:eu', 'route:/x']);
    record(a, 'VALID', T0 + 2_000, '/x', 201, ['region:eu', 'route:/x']);
    record(a, 'RATE_LIMITED', T0 + 3_000, '/x', 429, null);
    record(b, 'VALID', T0 + 4_000, '/y', 404, ['region:us']);
    record(b, 'VALID', T0 + 5_000, '/y', 404, ['region:us']);
    // Minute 1: a row of no key (unknown), no endpoint or status; key A once more.
    record(null, 'NOT_FOUND', T0 + MIN + 1, null, null, null);
    record(a, 'VALID', T0 + MIN + 2, '/z', 503, ['region:eu']);
    await t.container.usage.flush();
  });
  afterEach(async () => t?.close());

  const series = (query: string) =>
    t.app.inject({ method: 'GET', url: `/v1/analytics/verifications/series?granularity=minute&${query}`, headers: bearer(t.adminKey) });
  const range = `from=${iso(T0)}&to=${iso(T0 + 2 * MIN)}`;

  it('keeps today’s shape for no group_by and for group_by=outcome', async () => {
    const plain = (await series(range)).json() as Series;
    expect(plain).not.toHaveProperty('group_by');
    expect(plain.buckets[0]).toEqual({ start: iso(T0), total: 5, outcomes: { VALID: 4, RATE_LIMITED: 1 } });
    expect(plain.totals).toEqual({ total: 7, outcomes: { VALID: 5, RATE_LIMITED: 1, NOT_FOUND: 1 } });
    expect((await series(`${range}&group_by=outcome`)).json()).toEqual(plain);
  });

  it('groups by endpoint, status class, tag and key, each bucket and the totals, besides the outcomes', async () => {
    const expected: Record<string, [Record<string, number>, Record<string, number>]> = {
      endpoint: [
        { '/x': 3, '/y': 2 },
        { '': 1, '/z': 1 },
      ],
      status_class: [
        { '2xx': 2, '4xx': 3 },
        { '': 1, '5xx': 1 },
      ],
      // A row counts once per tag it carries; untagged rows under ''.
      tag: [
        { 'region:eu': 2, 'route:/x': 2, 'region:us': 2, '': 1 },
        { '': 1, 'region:eu': 1 },
      ],
      key: [
        { [a]: 3, [b]: 2 },
        { '': 1, [a]: 1 },
      ],
    };
    for (const [by, [first, second]] of Object.entries(expected)) {
      const response = await series(`${range}&group_by=${by}`);
      expect(response.statusCode, by).toBe(200);
      const body = response.json() as Series;
      expect(body.group_by, by).toBe(by);
      expect(
        body.buckets.map((bucket) => bucket.groups),
        by,
      ).toEqual([first, second]);
      expect(
        body.buckets.map((bucket) => bucket.total),
        by,
      ).toEqual([5, 2]);
      expect(body.buckets[0]?.outcomes, by).toEqual({ VALID: 4, RATE_LIMITED: 1 });
      const totals: Record<string, number> = {};
      for (const part of [first, second]) for (const [group, n] of Object.entries(part)) totals[group] = (totals[group] ?? 0) + n;
      expect(body.totals.groups, by).toEqual(totals);
      expect(body.totals.total, by).toBe(7);
    }
  });

  it('groups a range that starts and ends inside a minute (key: the counts and the raw rows at its ends)', async () => {
    const body = (await series(`from=${iso(T0 + 2_500)}&to=${iso(T0 + MIN + 2)}&group_by=key`)).json() as Series;
    expect(body.buckets.map((bucket) => bucket.groups)).toEqual([{ [a]: 1, [b]: 2 }, { '': 1 }]);
    const hourly = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/analytics/verifications/series?granularity=hour&from=${iso(T0)}&to=${iso(T0 + HOUR)}&group_by=key`,
        headers: bearer(t.adminKey),
      })
    ).json() as Series;
    expect(hourly.buckets).toEqual([
      { start: iso(T0), total: 7, outcomes: { VALID: 5, RATE_LIMITED: 1, NOT_FOUND: 1 }, groups: { [a]: 4, [b]: 2, '': 1 } },
    ]);
  });

  it('groups one key’s usage (the series’ key_id, and GET /v1/api-keys/{id}/usage)', async () => {
    const one = (await series(`${range}&key_id=${a}&group_by=tag`)).json() as Series;
    expect(one.totals).toEqual({ total: 4, outcomes: { VALID: 3, RATE_LIMITED: 1 }, groups: { 'region:eu': 3, 'route:/x': 2, '': 1 } });
    const usage = await t.app.inject({
      method: 'GET',
      url: `/v1/api-keys/${a}/usage?granularity=minute&${range}&group_by=status_class`,
      headers: bearer(t.adminKey),
    });
    expect(usage.statusCode).toBe(200);
    const body = usage.json() as Series;
    expect(body.group_by).toBe('status_class');
    expect(body.buckets.map((bucket) => bucket.groups)).toEqual([{ '2xx': 2, '4xx': 1 }, { '5xx': 1 }]);
    const plain = (
      await t.app.inject({
        method: 'GET',
        url: `/v1/api-keys/${a}/usage?granularity=minute&${range}`,
        headers: bearer(t.adminKey),
      })
    ).json() as Series;
    expect(plain).not.toHaveProperty('group_by');
    expect(plain.totals).toEqual({ total: 4, outcomes: { VALID: 3, RATE_LIMITED: 1 } });
  });

  it('keeps the 50 largest groups; the rest count in the total only', async () => {
    for (let i = 0; i < 60; i++) {
      for (let n = 0; n <= (i < 50 ? 1 : 0); n++) {
        t.container.usage.record({ apiKeyId: a, outcome: 'VALID', endpoint: `/many/${i}`, createdAt: T0 + 10 * MIN + i * 10 + n });
      }
    }
    await t.container.usage.flush();
    const body = (await series(`from=${iso(T0 + 10 * MIN)}&to=${iso(T0 + 11 * MIN)}&group_by=endpoint`)).json() as Series;
    const groups = body.totals.groups ?? {};
    expect(Object.keys(groups)).toHaveLength(50);
    expect(Object.values(groups).every((n) => n === 2)).toBe(true);
    expect(body.totals.total).toBe(110);
  });

  it('refuses an unknown group_by with 400', async () => {
    const response = await series(`${range}&group_by=method`);
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
  });
});
