import type { CompiledQuery } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../packages/server/src/callers/principal.js';
import { createUsageAnalytics } from '../../packages/server/src/usage/analytics.js';
import { countScopedUsageByGroup, type UsageDimension } from '../../packages/server/src/usage/repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// group_by on GET /v1/analytics/verifications/series and GET /v1/api-keys/{id}/usage: the outcome (today's
// shape), or the endpoint, status class, tag or key besides: the 50 largest groups, picked by the database, over
// at most a budget of the newest rows (made small here).

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
    // The 50 with two rows each are named; the 10 with one row count in the total only.
    expect(Object.keys(groups).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `/many/${i}`).sort());
    expect(Object.values(groups).every((n) => n === 2)).toBe(true);
    expect(body.totals.total).toBe(110);
    expect(body.buckets).toHaveLength(1);
    expect(body.buckets[0]?.total).toBe(110);
    expect(body.buckets[0]?.groups).toEqual(groups);
  });

  it('breaks ties at the 50th group by name, the same on every database', async () => {
    // 55 paths, one row each, named so that byte order and a locale's order differ (`B` before `a` in bytes).
    const names = Array.from({ length: 55 }, (_, i) => `/${i % 2 === 0 ? 'a' : 'B'}-${String(i).padStart(2, '0')}`);
    for (const [i, name] of names.entries()) {
      t.container.usage.record({ apiKeyId: a, outcome: 'VALID', endpoint: name, createdAt: T0 + 20 * MIN + i });
    }
    await t.container.usage.flush();
    const body = (await series(`from=${iso(T0 + 20 * MIN)}&to=${iso(T0 + 21 * MIN)}&group_by=endpoint`)).json() as Series;
    const bytewise = [...names].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    expect(Object.keys(body.totals.groups ?? {})).toEqual(bytewise.slice(0, 50));
    expect(body.totals.total).toBe(55);
  });

  it('keeps the 50 largest keys and tags too, picked by the database', async () => {
    // Keys need not exist to be counted: 55 made-up key ids, and 55 tags, the first 50 with two rows each.
    for (let i = 0; i < 55; i++) {
      for (let n = 0; n <= (i < 50 ? 1 : 0); n++) {
        t.container.usage.record({
          apiKeyId: `key-${String(i).padStart(2, '0')}`,
          outcome: 'VALID',
          tags: [`tag-${String(i).padStart(2, '0')}`],
          createdAt: T0 + 30 * MIN + i * 10 + n,
        });
      }
    }
    await t.container.usage.flush();
    for (const [by, prefix] of [
      ['key', 'key-'],
      ['tag', 'tag-'],
    ] as const) {
      const body = (await series(`from=${iso(T0 + 30 * MIN)}&to=${iso(T0 + 31 * MIN)}&group_by=${by}`)).json() as Series;
      expect(Object.keys(body.totals.groups ?? {}), by).toEqual(
        Array.from({ length: 50 }, (_, i) => `${prefix}${String(i).padStart(2, '0')}`),
      );
      expect(Object.values(body.totals.groups ?? {}).every((n) => n === 2)).toBe(true);
      expect(body.totals.total, by).toBe(105);
    }
  });

  describe('bounded work', () => {
    const ADMIN: Caller = { principal: { kind: 'system', name: 'test' }, ip: null };
    const minutes = { from: T0, to: T0 + 2 * MIN, granularity: 'minute' as const };

    it('counts groups over the newest rows of the budget only; older rows count in the total and outcomes only', async () => {
      // A budget of 5 rows: the 7 rows of the fixture less the two oldest (key A's first two, on /x, 2xx, tagged).
      const analytics = createUsageAnalytics({ db: t.container.db, keys: t.container.keys, groupScanRows: 5 });
      const expected: Record<string, [Record<string, number>, Record<string, number>]> = {
        endpoint: [
          { '/x': 1, '/y': 2 },
          { '': 1, '/z': 1 },
        ],
        status_class: [{ '4xx': 3 }, { '': 1, '5xx': 1 }],
        tag: [
          { '': 1, 'region:us': 2 },
          { '': 1, 'region:eu': 1 },
        ],
        // The key comes from the per-minute counts: no budget, every row.
        key: [
          { [a]: 3, [b]: 2 },
          { '': 1, [a]: 1 },
        ],
      };
      for (const [by, [first, second]] of Object.entries(expected)) {
        const counted = await analytics.verificationSeries(ADMIN, { ...minutes, groupBy: by as UsageDimension });
        if (!counted.ok) throw new Error(counted.code);
        expect(
          counted.value.buckets.map((bucket) => bucket.groups),
          by,
        ).toEqual([first, second]);
        expect(counted.value.totals.total, by).toBe(7);
        expect(counted.value.totals.outcomes, by).toEqual({ VALID: 5, RATE_LIMITED: 1, NOT_FOUND: 1 });
        expect(
          counted.value.buckets.map((bucket) => bucket.total),
          by,
        ).toEqual([5, 2]);
      }
    });

    it('walks at most the budget, by the index, and asks the database for the largest groups only (LIMIT)', async () => {
      const statements: CompiledQuery[] = [];
      const rows = await countScopedUsageByGroup(
        t.container.db.db,
        { scope: { kind: 'all' }, from: T0, to: T0 + 2 * MIN, bucketMs: MIN, by: 'endpoint', groups: 2, scanRows: 5 },
        (statement) => statements.push(statement),
      );
      // Where the walk stops: the 5th newest row, found by its index (offset 4, one row), before any row is read.
      const [walk, grouped] = statements;
      expect(statements).toHaveLength(2);
      expect(walk?.sql).toMatch(/order by "created_at" desc, "id" desc limit \S+ offset \S+$/);
      expect(walk?.parameters.slice(-2)).toEqual([1, 4]);
      // The largest groups are picked in the database: a LIMIT of `groups`, and only their counts come back.
      expect(grouped?.sql).toMatch(/limit (\?|\$\d+)\)/);
      expect(grouped?.parameters).toContain(2);
      expect(grouped?.parameters).toContain(T0 + 3_000);
      // Of the newest 5 rows: /y 2, then '', /x and /z 1 each (the tie broken by name: '').
      expect(rows).toEqual([
        { bucket: T0, group: '/y', count: 2 },
        { bucket: T0 + MIN, group: '', count: 1 },
      ]);
      expect(rows.reduce((sum, row) => sum + row.count, 0)).toBeLessThanOrEqual(5);
    });

    it('bounds the rows of a user’s keys too: each key walks its share, down to the newest stop', async () => {
      const user = await t.app.inject({
        method: 'POST',
        url: '/v1/users',
        headers: bearer(t.adminKey),
        payload: { external_id: 'grouping' },
      });
      const userId = (user.json() as { id: string }).id;
      const c = (await createKey(t, { name: 'C', user_id: userId })).id;
      const d = (await createKey(t, { name: 'D', user_id: userId })).id;
      // Key C at 10, 20, 30, 40 ms into minute 5, key D at 15, 25, 35, 45.
      for (const at of [10, 20, 30, 40]) {
        t.container.usage.record({ apiKeyId: c, outcome: 'VALID', endpoint: '/c', createdAt: T0 + 5 * MIN + at });
        t.container.usage.record({ apiKeyId: d, outcome: 'VALID', endpoint: '/d', createdAt: T0 + 5 * MIN + at + 5 });
      }
      await t.container.usage.flush();
      const count = (scanRows: number) =>
        countScopedUsageByGroup(t.container.db.db, {
          scope: { kind: 'user', userId },
          from: T0,
          to: T0 + 10 * MIN,
          bucketMs: 10 * MIN,
          by: 'endpoint',
          groups: 50,
          scanRows,
        });
      // 3 rows a key: C stops at 20, D at 25; the walk ends at the newer, 25: C's 30 and 40, D's 25, 35 and 45.
      expect(await count(3)).toEqual([
        { bucket: T0, group: '/c', count: 2 },
        { bucket: T0, group: '/d', count: 3 },
      ]);
      expect(await count(1_000)).toEqual([
        { bucket: T0, group: '/c', count: 4 },
        { bucket: T0, group: '/d', count: 4 },
      ]);
    });
  });

  it('refuses an unknown group_by with 400', async () => {
    const response = await series(`${range}&group_by=method`);
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
  });
});
