import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../../packages/server/src/http/types.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
// A fixed clock for every service: the hour after T0 plus a bit, so "the last 24 hours" is known exactly.
const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);
const NOW = T0 + 5 * HOUR + 30 * MIN + 15_000;
const iso = (ms: number) => new Date(ms).toISOString();

interface SeriesBody {
  key_id: string | null;
  granularity: string;
  from: string;
  to: string;
  buckets: Array<{ start: string; total: number; outcomes: Record<string, number> }>;
  totals: { total: number; outcomes: Record<string, number> };
}

interface ActivityBody {
  from: string;
  to: string;
  granularity: string;
  data: Array<{ key_id: string; total: number; buckets: number[] }>;
}

describe.each(DIALECTS)('verification series and key activity on %s', (dialect) => {
  let t: TestApp;
  let app: App;
  let busyId: string;
  let quietId: string;
  let user: { token: string; userId: string };
  let userKeyId: string;

  const record = (apiKeyId: string | null, outcome: string, createdAt: number) =>
    t.container.usage.record({ apiKeyId, outcome, endpoint: '/v1/companies', method: 'GET', statusCode: 200, createdAt });

  beforeEach(async () => {
    t = await createTestApp({ dialect, env: JWT_ENV, now: () => NOW });
    app = t.app;
    busyId = (await createKey(t, { name: 'busy key' })).id;
    quietId = (await createKey(t, { name: 'quiet key' })).id;
    user = await signIn(t, 'series-user');
    const own = await t.app.inject({
      method: 'POST',
      url: '/v1/users/me/api-keys',
      headers: bearer(user.token),
      payload: { name: 'mine' },
    });
    userKeyId = (own.json() as { id: string }).id;
    // Minute 0: 30 VALID + 10 RATE_LIMITED on the busy key; minute 2: 5 USAGE_EXCEEDED; an hour later 1 VALID.
    for (let i = 0; i < 30; i++) record(busyId, 'VALID', T0 + i * 1_000);
    for (let i = 0; i < 10; i++) record(busyId, 'RATE_LIMITED', T0 + 30_000 + i);
    for (let i = 0; i < 5; i++) record(busyId, 'USAGE_EXCEEDED', T0 + 2 * MIN + i);
    record(busyId, 'VALID', T0 + HOUR);
    record(quietId, 'VALID', T0 + 10);
    record(null, 'NOT_FOUND', T0 + 20);
    // The user's key: 3 VALID in minute 1, 2 INSUFFICIENT_SCOPES two hours in.
    for (let i = 0; i < 3; i++) record(userKeyId, 'VALID', T0 + MIN + i);
    for (let i = 0; i < 2; i++) record(userKeyId, 'INSUFFICIENT_SCOPES', T0 + 2 * HOUR + i);
    await t.container.usage.flush();
  });
  afterEach(async () => {
    await t?.close();
  });

  const series = (query: string, key: string = t.adminKey) =>
    app.inject({ method: 'GET', url: `/v1/analytics/verifications/series?${query}`, headers: bearer(key) });
  const activity = (ids: readonly string[], key: string = t.adminKey) =>
    app.inject({ method: 'GET', url: `/v1/analytics/keys/activity?key_ids=${ids.join(',')}`, headers: bearer(key) });

  it('counts every verification by outcome per minute, empty minutes included', async () => {
    const response = await series(`from=${iso(T0)}&to=${iso(T0 + 4 * MIN)}&granularity=minute`);
    expect(response.statusCode).toBe(200);
    const body = response.json() as SeriesBody;
    expect(body).toMatchObject({ key_id: null, granularity: 'minute', from: iso(T0), to: iso(T0 + 4 * MIN) });
    expect(body.buckets).toEqual([
      { start: iso(T0), total: 42, outcomes: { VALID: 31, RATE_LIMITED: 10, NOT_FOUND: 1 } },
      { start: iso(T0 + MIN), total: 3, outcomes: { VALID: 3 } },
      { start: iso(T0 + 2 * MIN), total: 5, outcomes: { USAGE_EXCEEDED: 5 } },
      { start: iso(T0 + 3 * MIN), total: 0, outcomes: {} },
    ]);
    expect(body.totals).toEqual({ total: 50, outcomes: { VALID: 34, RATE_LIMITED: 10, USAGE_EXCEEDED: 5, NOT_FOUND: 1 } });
  });

  it('counts a range that starts and ends inside a minute from the raw rows at its ends', async () => {
    const body = (await series(`from=${iso(T0 + 29_000)}&to=${iso(T0 + 2 * MIN + 3)}&granularity=minute`)).json() as SeriesBody;
    // From 0:29: the last VALID of minute 0 (0:29) and all 10 RATE_LIMITED; minute 1 whole; 3 of minute 2's 5.
    expect(body.buckets).toEqual([
      { start: iso(T0), total: 11, outcomes: { VALID: 1, RATE_LIMITED: 10 } },
      { start: iso(T0 + MIN), total: 3, outcomes: { VALID: 3 } },
      { start: iso(T0 + 2 * MIN), total: 3, outcomes: { USAGE_EXCEEDED: 3 } },
    ]);
  });

  it('buckets by hour (the default, over the last 24 hours) and by day', async () => {
    const byDefault = (await series('')).json() as SeriesBody;
    expect(byDefault.granularity).toBe('hour');
    const to = Math.floor(NOW / MIN) * MIN + MIN;
    expect(byDefault.to).toBe(iso(to));
    expect(byDefault.from).toBe(iso(to - DAY));
    expect(byDefault.buckets).toHaveLength(25); // the range does not start on an hour
    expect(byDefault.buckets.map((b) => b.total).slice(-6)).toEqual([50, 1, 2, 0, 0, 0]);
    const days = (await series(`from=${iso(T0 - DAY)}&to=${iso(T0 + 2 * DAY)}&granularity=day`)).json() as SeriesBody;
    expect(days.buckets).toEqual([
      { start: iso(T0 - DAY), total: 0, outcomes: {} },
      {
        start: iso(T0),
        total: 53,
        outcomes: { VALID: 35, RATE_LIMITED: 10, USAGE_EXCEEDED: 5, NOT_FOUND: 1, INSUFFICIENT_SCOPES: 2 },
      },
      { start: iso(T0 + DAY), total: 0, outcomes: {} },
    ]);
  });

  it('narrows to one key with key_id', async () => {
    const response = await series(`from=${iso(T0)}&to=${iso(T0 + 2 * HOUR)}&key_id=${busyId}`);
    expect(response.statusCode).toBe(200);
    const body = response.json() as SeriesBody;
    expect(body.key_id).toBe(busyId);
    expect(body.buckets).toEqual([
      { start: iso(T0), total: 45, outcomes: { VALID: 30, RATE_LIMITED: 10, USAGE_EXCEEDED: 5 } },
      { start: iso(T0 + HOUR), total: 1, outcomes: { VALID: 1 } },
    ]);
    const unknown = await series(`key_id=0190a1b2-0000-7000-8000-000000000000`);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('refuses a range of too many buckets, naming granularity, and other bad queries with 400', async () => {
    const tooMany = await series(`from=${iso(T0)}&to=${iso(T0 + 30 * DAY)}&granularity=minute`);
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json()).toMatchObject({ code: 'INVALID_REQUEST', errors: [{ field: 'querystring.granularity' }] });
    for (const query of [`from=${iso(T0)}&to=${iso(T0)}`, 'granularity=week', 'from=yesterday', 'verbose=true']) {
      const response = await series(query);
      expect(response.statusCode, query).toBe(400);
      expect(response.json(), query).toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });

  it('shows a user, and a key of theirs with keyward:keys:read, only their own keys', async () => {
    const range = `from=${iso(T0)}&to=${iso(T0 + 3 * HOUR)}`;
    const expected = [
      { start: iso(T0), total: 3, outcomes: { VALID: 3 } },
      { start: iso(T0 + HOUR), total: 0, outcomes: {} },
      { start: iso(T0 + 2 * HOUR), total: 2, outcomes: { INSUFFICIENT_SCOPES: 2 } },
    ];
    const mine = await series(range, user.token);
    expect(mine.statusCode).toBe(200);
    expect((mine.json() as SeriesBody).buckets).toEqual(expected);
    const reader = await createKey(t, { name: 'user reader', user_id: user.userId, scopes: ['keyward:keys:read'] });
    expect(((await series(range, reader.key)).json() as SeriesBody).buckets).toEqual(expected);
    // Another's key by id: 403, as reading that key is.
    const others = await series(`${range}&key_id=${busyId}`, user.token);
    expect(others.statusCode).toBe(403);
    expect(others.json()).toMatchObject({ code: 'FORBIDDEN' });
    // A service key with keyward:keys:read sees every key's verifications, but not those of unknown keys.
    const service = await createKey(t, { name: 'service reader', scopes: ['keyward:keys:read'] });
    const all = (await series(range, service.key)).json() as SeriesBody;
    expect(all.totals).toEqual({ total: 52, outcomes: { VALID: 35, RATE_LIMITED: 10, USAGE_EXCEEDED: 5, INSUFFICIENT_SCOPES: 2 } });
  });

  it('refuses a key without keyward:keys:read (403) and no credential (401)', async () => {
    const plain = await createKey(t, { name: 'plain', scopes: ['inventory:read'] });
    for (const response of [await series('', plain.key), await activity([busyId], plain.key)]) {
      expect(response.statusCode).toBe(403);
      expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
    }
    expect((await app.inject({ method: 'GET', url: '/v1/analytics/verifications/series' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: `/v1/analytics/keys/activity?key_ids=${busyId}` })).statusCode).toBe(401);
  });

  it('gives the hourly activity of three keys over the last 24 hours in one request', async () => {
    const to = Math.floor(NOW / MIN) * MIN + MIN;
    const from = to - DAY;
    // Hour 0 of the window, hour 5, the last hour, and rows just outside it on either side.
    const third = (await createKey(t, { name: 'third key' })).id;
    record(third, 'VALID', from);
    record(third, 'RATE_LIMITED', from + 5 * HOUR + 10_000);
    record(third, 'VALID', to - 1);
    record(third, 'VALID', from - 1);
    record(third, 'VALID', to);
    await t.container.usage.flush();
    const response = await activity([busyId, third, quietId]);
    expect(response.statusCode).toBe(200);
    const body = response.json() as ActivityBody;
    expect(body).toMatchObject({ from: iso(from), to: iso(to), granularity: 'hour' });
    expect(body.data.map((d) => d.key_id)).toEqual([busyId, third, quietId]);
    const hours = (set: Record<number, number>) => Array.from({ length: 24 }, (_, i) => set[i] ?? 0);
    // The window starts 18 h 29 min before T0: T0 and its first minutes fall in hour 18, T0 + 1 h in hour 19.
    const t0Hour = Math.floor((T0 - from) / HOUR);
    const t0Next = Math.floor((T0 + HOUR - from) / HOUR);
    expect(body.data[0]).toEqual({ key_id: busyId, total: 46, buckets: hours({ [t0Hour]: 45, [t0Next]: 1 }) });
    expect(body.data[1]).toEqual({ key_id: third, total: 3, buckets: hours({ 0: 1, 5: 1, 23: 1 }) });
    expect(body.data[2]).toEqual({ key_id: quietId, total: 1, buckets: hours({ [t0Hour]: 1 }) });
  });

  it('leaves out of the activity the keys a caller may not read, unknown ids and repeats', async () => {
    const unknown = '0190a1b2-0000-7000-8000-000000000000';
    const mine = await activity([busyId, userKeyId, unknown, userKeyId], user.token);
    expect(mine.statusCode).toBe(200);
    expect((mine.json() as ActivityBody).data.map((d) => d.key_id)).toEqual([userKeyId]);
    expect((mine.json() as ActivityBody).data[0]?.total).toBe(5);
    const admin = (await activity([unknown, userKeyId, busyId])).json() as ActivityBody;
    expect(admin.data.map((d) => d.key_id)).toEqual([userKeyId, busyId]);
  });

  it('refuses more than 100 key ids, or none, with 400', async () => {
    const ids = Array.from({ length: 101 }, (_, i) => `0190a1b2-0000-7000-8000-${String(i).padStart(12, '0')}`);
    const tooMany = await activity(ids);
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json()).toMatchObject({ code: 'INVALID_REQUEST', errors: [{ field: 'querystring.key_ids' }] });
    expect((await activity(ids.slice(0, 100))).statusCode).toBe(200);
    for (const url of [
      '/v1/analytics/keys/activity',
      '/v1/analytics/keys/activity?key_ids=',
      `/v1/analytics/keys/activity?key_ids=${busyId},,`,
    ]) {
      const response = await app.inject({ method: 'GET', url, headers: bearer(t.adminKey) });
      expect(response.statusCode, url).toBe(400);
      expect(response.json(), url).toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });
});

describe('the series routes in the OpenAPI document', () => {
  let t: TestApp;
  afterEach(async () => {
    await t?.close();
  });

  it('names both operations, under the usage tag, with their responses and examples', async () => {
    t = await createTestApp();
    const document = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, { get?: { operationId?: string; tags?: string[]; responses?: Record<string, { content?: object }> } }>;
    };
    const usageTag = document.paths['/v1/api-keys/{id}/usage']?.get?.tags;
    for (const [path, operationId] of [
      ['/v1/analytics/verifications/series', 'getVerificationSeries'],
      ['/v1/analytics/keys/activity', 'getKeysActivity'],
    ] as const) {
      const operation = document.paths[path]?.get;
      expect(operation?.operationId, path).toBe(operationId);
      expect(operation?.tags, path).toEqual(usageTag);
      expect(JSON.stringify(operation?.responses?.['200']?.content), path).toContain('example');
      expect(Object.keys(operation?.responses ?? {}), path).toEqual(expect.arrayContaining(['200', '400', '401', '403']));
    }
  });
});
