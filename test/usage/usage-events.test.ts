import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';

// GET /v1/usage/events: the rows read back, newest first, by every filter, a page at a time or exported whole.

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);
const SEC = 1_000;
const iso = (ms: number) => new Date(ms).toISOString();

interface Row {
  id: string;
  key_id: string | null;
  endpoint: string | null;
  method: string | null;
  status_code: number | null;
  ip_address: string | null;
  user_agent: string | null;
  response_time_ms: number | null;
  outcome: string;
  tags: string[];
  created_at: string;
}
interface Page {
  data: Row[];
  next_cursor: string | null;
}

/** A row the fixture records; `name` goes in the user agent, so a row read back says which it is. */
interface Seeded {
  name: string;
  key: 'a' | 'b' | 'c' | null;
  outcome: string;
  status: number | null;
  endpoint: string | null;
  tags: string[] | null;
  at: number;
}

/**
 * 60 rows: key A (ownerless) 30, key B (user 1) 15, key C (user 2, signed in) 10, no key 5. Several rows share a
 * millisecond, so pages must break ties by id.
 */
function fixture(): Seeded[] {
  const rows: Seeded[] = [];
  const endpoints = ['/v1/companies', '/v1/companies/42', '/v1/invoices', '/v1/companiesx', null];
  const tagSets = [['route:/v1/companies', 'region:eu'], ['region:us'], null, ['route:/v1/invoices']];
  const outcomes = ['VALID', 'VALID', 'RATE_LIMITED', 'VALID', 'USAGE_EXCEEDED'];
  const statuses = [200, 201, 429, 404, 503, null];
  const keyOf = (i: number): Seeded['key'] => (i < 30 ? 'a' : i < 45 ? 'b' : i < 55 ? 'c' : null);
  for (let i = 0; i < 60; i++) {
    const key = keyOf(i);
    rows.push({
      name: `row-${i}`,
      key,
      outcome: key === null ? 'NOT_FOUND' : (outcomes[i % outcomes.length] as string),
      status: statuses[i % statuses.length] ?? null,
      endpoint: endpoints[i % endpoints.length] ?? null,
      tags: tagSets[i % tagSets.length] ?? null,
      // Three rows per second, the same millisecond each: ties on created_at.
      at: T0 + Math.floor(i / 3) * SEC,
    });
  }
  return rows;
}

/** Newest first, as the endpoint orders them: created_at desc, then the later-recorded row first (id desc). */
const newestFirst = (rows: Seeded[]) =>
  rows
    .map((row, i) => ({ row, i }))
    .sort((x, y) => y.row.at - x.row.at || y.i - x.i)
    .map(({ row }) => row.name);

describe.each(DIALECTS)('GET /v1/usage/events on %s', (dialect) => {
  let t: TestApp;
  let rows: Seeded[];
  let ids: { a: string; b: string; c: string };
  let user1: string;
  let user2: { token: string; userId: string };

  beforeEach(async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    user2 = await signIn(t, 'events-user-2');
    const u1 = await t.app.inject({
      method: 'POST',
      url: '/v1/users',
      headers: bearer(t.adminKey),
      payload: { external_id: 'events-user-1' },
    });
    user1 = (u1.json() as { id: string }).id;
    const a = (await createKey(t, { name: 'A' })).id;
    const b = (await createKey(t, { name: 'B', user_id: user1 })).id;
    const own = await t.app.inject({ method: 'POST', url: '/v1/users/me/api-keys', headers: bearer(user2.token), payload: { name: 'C' } });
    const c = (own.json() as { id: string }).id;
    ids = { a, b, c };
    rows = fixture();
    for (const row of rows) {
      t.container.usage.record({
        apiKeyId: row.key === null ? null : ids[row.key],
        outcome: row.outcome,
        endpoint: row.endpoint,
        method: 'GET',
        statusCode: row.status,
        ipAddress: '203.0.113.7',
        userAgent: row.name,
        responseTimeMs: 5,
        createdAt: row.at,
        tags: row.tags,
      });
    }
    await t.container.usage.flush();
  });
  afterEach(async () => t?.close());

  const get = (query: string, key: string = t.adminKey) =>
    t.app.inject({ method: 'GET', url: `/v1/usage/events${query ? `?${query}` : ''}`, headers: bearer(key) });

  /** Every page of `query` (limit `limit`), in order: the names of the rows. */
  async function allPages(query: string, key: string = t.adminKey, limit = 7): Promise<string[]> {
    const names: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 100; pages++) {
      const response = await get(`${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, key);
      expect(response.statusCode, response.body).toBe(200);
      const page = response.json() as Page;
      expect(page.data.length).toBeLessThanOrEqual(limit);
      names.push(...page.data.map((r) => r.user_agent ?? ''));
      cursor = page.next_cursor;
      if (cursor === null) return names;
      expect(page.data).toHaveLength(limit);
    }
    throw new Error('too many pages');
  }

  const keyIdOf = (row: Seeded) => (row.key === null ? null : ids[row.key]);

  it('answers the rows newest first, with every field', async () => {
    const response = await get('limit=3');
    expect(response.statusCode).toBe(200);
    const page = response.json() as Page;
    expect(page.data.map((r) => r.user_agent)).toEqual(newestFirst(rows).slice(0, 3));
    const newest = rows[59] as Seeded;
    expect(page.data[0]).toEqual({
      id: expect.stringMatching(/^\d+$/),
      key_id: null,
      endpoint: newest.endpoint,
      method: 'GET',
      status_code: newest.status,
      ip_address: '203.0.113.7',
      user_agent: 'row-59',
      response_time_ms: 5,
      outcome: 'NOT_FOUND',
      tags: newest.tags ?? [],
      created_at: iso(newest.at),
    });
    expect(page.next_cursor).toEqual(expect.any(String));
    // The default page is 100 rows: all 60 fit, and no cursor follows.
    const all = (await get('')).json() as Page;
    expect(all.data).toHaveLength(60);
    expect(all.next_cursor).toBeNull();
  });

  it('pages with the cursor: no row twice, none left out, ties on the same millisecond included', async () => {
    expect(await allPages('')).toEqual(newestFirst(rows));
    expect(await allPages('', t.adminKey, 3)).toEqual(newestFirst(rows));
    expect(await allPages('', t.adminKey, 1)).toEqual(newestFirst(rows));
  });

  it('pages a merged selection (a user’s keys, several outcomes) just as well', async () => {
    const ofUser1 = rows.filter((r) => r.key === 'b');
    expect(await allPages(`user_id=${user1}`, t.adminKey, 4)).toEqual(newestFirst(ofUser1));
    const limited = rows.filter((r) => r.outcome === 'RATE_LIMITED' || r.outcome === 'USAGE_EXCEEDED');
    expect(await allPages('outcome=RATE_LIMITED,USAGE_EXCEEDED', t.adminKey, 4)).toEqual(newestFirst(limited));
  });

  it('narrows by each filter', async () => {
    const cases: Array<[string, (r: Seeded) => boolean]> = [
      [`key_id=${ids.a}`, (r) => r.key === 'a'],
      [`user_id=${user1}`, (r) => r.key === 'b'],
      [`user_id=${user2.userId}`, (r) => r.key === 'c'],
      [`from=${iso(T0 + 5 * SEC)}&to=${iso(T0 + 9 * SEC)}`, (r) => r.at >= T0 + 5 * SEC && r.at < T0 + 9 * SEC],
      [`from=${iso(T0 + 18 * SEC)}`, (r) => r.at >= T0 + 18 * SEC],
      [`to=${iso(T0 + 2 * SEC)}`, (r) => r.at < T0 + 2 * SEC],
      ['outcome=RATE_LIMITED', (r) => r.outcome === 'RATE_LIMITED'],
      ['outcome=NOT_FOUND,USAGE_EXCEEDED', (r) => r.outcome === 'NOT_FOUND' || r.outcome === 'USAGE_EXCEEDED'],
      ['status=404', (r) => r.status === 404],
      ['status=5xx', (r) => r.status !== null && r.status >= 500],
      ['status=2XX', (r) => r.status !== null && r.status >= 200 && r.status < 300],
      ['endpoint=/v1/companies', (r) => r.endpoint === '/v1/companies'],
      ['endpoint=/v1/companies*', (r) => r.endpoint?.startsWith('/v1/companies') === true],
      ['endpoint=/v1/companies/*', (r) => r.endpoint?.startsWith('/v1/companies/') === true],
      ['endpoint=*', () => true],
      ['tag=region:eu', (r) => r.tags?.includes('region:eu') === true],
      ['tag=route:/v1/invoices', (r) => r.tags?.includes('route:/v1/invoices') === true],
      ['tag=nowhere', () => false],
      // Together: the filters all hold.
      [
        `key_id=${ids.a}&status=2xx&tag=region:eu`,
        (r) => r.key === 'a' && (r.status === 200 || r.status === 201) && r.tags?.includes('region:eu') === true,
      ],
      [
        `user_id=${user1}&outcome=VALID&endpoint=/v1/companies*`,
        (r) => r.key === 'b' && r.outcome === 'VALID' && r.endpoint?.startsWith('/v1/companies') === true,
      ],
      [
        `outcome=VALID,RATE_LIMITED&status=4xx`,
        (r) => (r.outcome === 'VALID' || r.outcome === 'RATE_LIMITED') && r.status !== null && r.status >= 400 && r.status < 500,
      ],
      [`key_id=${ids.b}&user_id=${user1}`, (r) => r.key === 'b'],
      [`key_id=${ids.b}&user_id=${user2.userId}`, () => false],
    ];
    for (const [query, keep] of cases) {
      const expected = newestFirst(rows.filter(keep));
      expect(expected.length > 0 || query.includes('nowhere') || query.includes(user2.userId), query).toBe(true);
      const page = (await get(`${query}&limit=1000`)).json() as Page;
      expect(
        page.data.map((r) => r.user_agent),
        query,
      ).toEqual(expected);
    }
    // The rows carry their key ids.
    const ofA = (await get(`key_id=${ids.a}&limit=1`)).json() as Page;
    expect(ofA.data[0]?.key_id).toBe(keyIdOf(rows[29] as Seeded));
  });

  it('refuses a malformed filter or cursor with 400 INVALID_REQUEST', async () => {
    for (const query of [
      'outcome=MAYBE',
      'outcome=VALID,,',
      'status=4x',
      'status=600',
      'status=abc',
      'limit=0',
      'limit=1001',
      'cursor=not-a-cursor',
      `cursor=${Buffer.from('12.x').toString('base64url')}`,
      `from=${iso(T0 + SEC)}&to=${iso(T0)}`,
      'format=xml',
      'tag=',
      'verbose=1',
    ]) {
      const response = await get(query);
      expect(response.statusCode, query).toBe(400);
      expect(response.json(), query).toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });

  describe('rights, as for the usage counts', () => {
    it('lets an admin read every row, those of unknown keys too', async () => {
      expect(await allPages('', t.adminKey, 50)).toEqual(newestFirst(rows));
    });

    it('lets an ownerless keyward:keys:read key read every key’s rows, not those of no key', async () => {
      const reader = await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] });
      expect(await allPages('', reader.key, 50)).toEqual(newestFirst(rows.filter((r) => r.key !== null)));
      expect((await get(`key_id=${ids.b}`, reader.key)).statusCode).toBe(200);
      expect((await get(`user_id=${user2.userId}`, reader.key)).statusCode).toBe(200);
    });

    it('lets a user’s keyward:keys:read key read only that user’s keys', async () => {
      const userReader = await createKey(t, { name: 'user reader', scopes: ['keyward:keys:read'], user_id: user1 });
      expect(await allPages('', userReader.key, 50)).toEqual(newestFirst(rows.filter((r) => r.key === 'b')));
      expect(await allPages(`user_id=${user1}`, userReader.key, 50)).toEqual(newestFirst(rows.filter((r) => r.key === 'b')));
      const other = await get(`key_id=${ids.a}`, userReader.key);
      expect(other.statusCode).toBe(403);
      expect(other.json()).toMatchObject({ code: 'FORBIDDEN' });
      expect((await get(`user_id=${user2.userId}`, userReader.key)).json()).toMatchObject({ code: 'FORBIDDEN' });
    });

    it('lets a signed-in user read their own keys’ rows and no one else’s', async () => {
      expect(await allPages('', user2.token, 50)).toEqual(newestFirst(rows.filter((r) => r.key === 'c')));
      expect(await allPages(`key_id=${ids.c}`, user2.token, 50)).toEqual(newestFirst(rows.filter((r) => r.key === 'c')));
      expect((await get(`key_id=${ids.b}`, user2.token)).json()).toMatchObject({ code: 'FORBIDDEN' });
      expect((await get(`user_id=${user1}`, user2.token)).json()).toMatchObject({ code: 'FORBIDDEN' });
    });

    it('refuses other credentials (403), anonymous callers (401), and names unknown keys and users (404)', async () => {
      const plain = await createKey(t, { name: 'plain', scopes: ['inventory:read'] });
      const verifier = await createKey(t, { name: 'verifier', scopes: ['keyward:verify'] });
      for (const key of [plain.key, verifier.key]) {
        const response = await get('', key);
        expect(response.statusCode).toBe(403);
        expect(response.json()).toMatchObject({ code: 'FORBIDDEN' });
        expect((await get('format=csv', key)).statusCode).toBe(403);
      }
      expect((await t.app.inject({ method: 'GET', url: '/v1/usage/events' })).statusCode).toBe(401);
      const unknownKey = await get('key_id=0190a1b2-0000-7000-8000-000000000000');
      expect(unknownKey.statusCode).toBe(404);
      expect(unknownKey.json()).toMatchObject({ code: 'KEY_NOT_FOUND' });
      const unknownUser = await get('user_id=0190a1b2-0000-7000-8000-000000000000');
      expect(unknownUser.statusCode).toBe(404);
      expect(unknownUser.json()).toMatchObject({ code: 'USER_NOT_FOUND' });
      expect((await get('key_id=0190a1b2-0000-7000-8000-000000000000&format=jsonl')).statusCode).toBe(404);
    });
  });

  describe('export', () => {
    it('streams the whole selection as CSV: headers, a header line, one CRLF line per row', async () => {
      const response = await get('format=csv&limit=2');
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('text/csv; charset=utf-8');
      expect(response.headers['content-disposition']).toBe('attachment; filename="usage-events.csv"');
      expect(response.headers['cache-control']).toBe('no-store');
      const lines = response.body.split('\r\n');
      expect(lines.pop()).toBe('');
      expect(lines[0]).toBe('id,created_at,key_id,outcome,method,endpoint,status_code,response_time_ms,ip_address,user_agent,tags');
      // `limit` does not apply: every row, newest first.
      expect(lines).toHaveLength(61);
      const newest = rows[59] as Seeded;
      expect(lines[1]).toMatch(
        new RegExp(
          `^\\d+,${iso(newest.at)},,NOT_FOUND,GET,${newest.endpoint ?? ''},${newest.status ?? ''},5,203\\.0\\.113\\.7,row-59,${newest.tags ? '"\\[.*\\]"' : ''}$`,
        ),
      );
      const names = lines.slice(1).map((line) => line.split(',')[9]);
      expect(names).toEqual(newestFirst(rows));
      // Tags are a JSON array, quoted as RFC 4180 asks.
      const tagged = lines.find((line) => line.includes('row-0,'));
      expect(tagged?.endsWith(',"[""route:/v1/companies"",""region:eu""]"')).toBe(true);
    });

    it('streams JSON Lines: each line the JSON page’s row, the same rows as the pages', async () => {
      const response = await get(`format=jsonl&key_id=${ids.a}`);
      expect(response.statusCode).toBe(200);
      expect(response.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
      expect(response.headers['content-disposition']).toBe('attachment; filename="usage-events.jsonl"');
      expect(response.body.endsWith('\n')).toBe(true);
      const exported = response.body
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as Row);
      const listed = ((await get(`key_id=${ids.a}&limit=1000`)).json() as Page).data;
      expect(exported).toEqual(listed);
      expect(exported).toHaveLength(30);
    });

    it('exports only what the caller may read, with the filters', async () => {
      const body = (await get('format=jsonl&tag=region:eu', user2.token)).body.trimEnd();
      const names = body === '' ? [] : body.split('\n').map((line) => (JSON.parse(line) as Row).user_agent);
      expect(names).toEqual(newestFirst(rows.filter((r) => r.key === 'c' && r.tags?.includes('region:eu') === true)));
      expect(names.length).toBeGreaterThan(0);
      const empty = await get(`format=csv&key_id=${ids.b}&user_id=${user2.userId}`);
      expect(empty.body).toBe('id,created_at,key_id,outcome,method,endpoint,status_code,response_time_ms,ip_address,user_agent,tags\r\n');
    });

    it('exports more rows than one read holds, in order, each once', async () => {
      const extra: string[] = [];
      // 2,500 rows over 2.5 s of one key: three reads of 1,000.
      for (let i = 0; i < 2_500; i++) {
        t.container.usage.record({ apiKeyId: ids.a, outcome: 'VALID', userAgent: `bulk-${i}`, createdAt: T0 + 100 * SEC + i });
        extra.unshift(`bulk-${i}`);
      }
      await t.container.usage.flush();
      const response = await get(`format=jsonl&key_id=${ids.a}&from=${iso(T0 + 100 * SEC)}`);
      const names = response.body
        .trimEnd()
        .split('\n')
        .map((line) => (JSON.parse(line) as Row).user_agent);
      expect(names).toEqual(extra);
    });

    it('keeps spreadsheet formulas out of CSV cells', async () => {
      for (const [i, agent] of ['=HYPERLINK("http://evil.test","x")', '+1+1', '-2+3', '@SUM(A1)', '\tcmd', 'plain, "quoted"'].entries()) {
        t.container.usage.record({
          apiKeyId: ids.a,
          outcome: 'VALID',
          userAgent: agent,
          endpoint: '=cmd|/C calc',
          createdAt: T0 + 200 * SEC + i,
        });
      }
      await t.container.usage.flush();
      const response = await get(`format=csv&from=${iso(T0 + 200 * SEC)}`);
      // Newest first; method, status, response time and address are empty, and there are no tags.
      const lines = response.body.split('\r\n').slice(1, -1);
      expect(lines).toHaveLength(6);
      for (const line of lines) expect(line).toContain(`,${ids.a},VALID,,'=cmd|/C calc,`);
      expect(lines.map((line) => line.slice(line.indexOf(',,,,') + 4))).toEqual([
        '"plain, ""quoted""",',
        "'\tcmd,",
        "'@SUM(A1),",
        "'-2+3,",
        "'+1+1,",
        `"'=HYPERLINK(""http://evil.test"",""x"")",`,
      ]);
    });
  });

  it('merges the keys of a user with more keys than it merges one by one', async () => {
    // 70 keys for one user: past the 64 ranges merged, one query over all of the user's keys.
    const big = await t.app.inject({
      method: 'POST',
      url: '/v1/users',
      headers: bearer(t.adminKey),
      payload: { external_id: 'events-user-big', tier: 'enterprise' },
    });
    const bigId = (big.json() as { id: string }).id;
    const many: string[] = [];
    for (let i = 0; i < 70; i++) {
      const created = await t.container.keys.create(
        { principal: { kind: 'system', name: 'test' }, ip: null },
        { name: `k${i}`, userId: bigId },
      );
      if (!created.ok) throw new Error(created.code);
      many.push(created.value.record.id);
    }
    const expected: string[] = [];
    for (let i = 0; i < 140; i++) {
      t.container.usage.record({
        apiKeyId: many[i % 70] ?? null,
        outcome: 'VALID',
        userAgent: `many-${i}`,
        createdAt: T0 + 300 * SEC + Math.floor(i / 2),
      });
      expected.unshift(`many-${i}`);
    }
    await t.container.usage.flush();
    const names = await allPages(`user_id=${bigId}&from=${iso(T0 + 300 * SEC)}`, t.adminKey, 33);
    expect(names).toEqual(expected);
  });
});
