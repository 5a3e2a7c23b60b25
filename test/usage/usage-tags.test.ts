import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendUsageRow, type UsageValue, usageRowValues } from '../../packages/server/src/usage/repository.js';
import { tagsColumn, tagsOf } from '../../packages/server/src/usage/tags.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// Tags on usage rows (POST /v1/keys/verify and POST /v1/usage/events), and `record_usage: false`: the caller
// reports the request itself, so the verification writes no row, yet spends as any other.

interface Row {
  key_id: string | null;
  endpoint: string | null;
  outcome: string;
  tags: string[];
  user_agent: string | null;
}

describe('tags as stored', () => {
  it('are JSON text of at most 10 tags of at most 64 characters, none empty, no NUL; none is null', () => {
    expect(tagsColumn(undefined)).toBeNull();
    expect(tagsColumn(null)).toBeNull();
    expect(tagsColumn([])).toBeNull();
    expect(tagsColumn([''])).toBeNull();
    expect(tagsColumn(['route:/v1/companies', 'region:eu'])).toBe('["route:/v1/companies","region:eu"]');
    const many = Array.from({ length: 12 }, (_, i) => `t${i}`);
    expect(JSON.parse(tagsColumn(many) ?? '[]')).toEqual(many.slice(0, 10));
    expect(JSON.parse(tagsColumn(['x'.repeat(70)]) ?? '[]')).toEqual(['x'.repeat(64)]);
    expect(JSON.parse(tagsColumn(['a\u0000b']) ?? '[]')).toEqual(['a\uFFFDb']);
  });

  it('read back from JSON text (SQLite) or an array (PostgreSQL); nothing stored is no tags', () => {
    expect(tagsOf(null)).toEqual([]);
    expect(tagsOf('["a","b"]')).toEqual(['a', 'b']);
    expect(tagsOf(['a', 'b'])).toEqual(['a', 'b']);
    expect(tagsOf('not json')).toEqual([]);
  });

  it('go last in a buffered row, as the insert reads them', () => {
    const row = {
      api_key_id: 'key',
      endpoint: '/path',
      method: 'GET',
      status_code: 201,
      ip_address: '10.0.0.1',
      user_agent: 'agent',
      response_time_ms: 7,
      outcome: 'VALID',
      created_at: 1,
      tags: '["a"]',
    };
    const appended: UsageValue[] = [];
    appendUsageRow(appended, 'key', '/path', 'GET', 201, '10.0.0.1', 'agent', 7, 'VALID', 1, '["a"]');
    expect(appended).toEqual(usageRowValues([row]));
  });
});

describe.each(DIALECTS)('tags and record_usage on %s', (dialect) => {
  let t: TestApp;
  let verifier: string;

  beforeEach(async () => {
    t = await createTestApp({ dialect });
    verifier = (await createKey(t, { name: 'host backend', scopes: ['keyward:verify'] })).key;
  });
  afterEach(async () => t?.close());

  const verify = (payload: Record<string, unknown>) =>
    t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(verifier), payload });

  async function rows(query = ''): Promise<Row[]> {
    await t.container.usage.flush();
    const response = await t.app.inject({ method: 'GET', url: `/v1/usage/events?limit=1000${query}`, headers: bearer(t.adminKey) });
    expect(response.statusCode, response.body).toBe(200);
    return (response.json() as { data: Row[] }).data;
  }

  it('stores the tags of a verification on its usage row', async () => {
    const target = await createKey(t, { name: 'target' });
    expect((await verify({ key: target.key, tags: ['route:/v1/companies', 'region:eu'] })).json()).toMatchObject({ code: 'VALID' });
    expect((await verify({ key: target.key })).json()).toMatchObject({ code: 'VALID' });
    const found = await rows(`&key_id=${target.id}`);
    expect(found.map((r) => [r.endpoint, r.tags])).toEqual([
      ['/v1/keys/verify', []],
      ['/v1/keys/verify', ['route:/v1/companies', 'region:eu']],
    ]);
    expect((await rows(`&tag=region:eu`)).map((r) => r.key_id)).toEqual([target.id]);
  });

  it('stores the tags of reported events, null or none as no tags', async () => {
    const target = await createKey(t, { name: 'target' });
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/usage/events',
      headers: bearer(verifier),
      payload: {
        events: [
          { key_id: target.id, outcome: 'VALID', endpoint: '/a', user_agent: 'first', tags: ['route:/a', 'region:us'] },
          { key_id: target.id, outcome: 'VALID', endpoint: '/b', user_agent: 'second', tags: null },
          { key_id: target.id, outcome: 'VALID', endpoint: '/c', user_agent: 'third' },
        ],
      },
    });
    expect(response.statusCode).toBe(202);
    const found = await rows(`&key_id=${target.id}`);
    expect(Object.fromEntries(found.map((r) => [r.user_agent, r.tags]))).toEqual({
      first: ['route:/a', 'region:us'],
      second: [],
      third: [],
    });
    expect((await rows('&tag=route:/a')).map((r) => r.user_agent)).toEqual(['first']);
  });

  it('refuses more than 10 tags, a tag over 64 characters, an empty one or one with a control character', async () => {
    const target = await createKey(t, { name: 'target' });
    for (const tags of [
      Array.from({ length: 11 }, (_, i) => `t${i}`),
      ['x'.repeat(65)],
      [''],
      ['tab\there'],
      ['new\nline'],
      ['nul\u0000'],
      ['del\u007f'],
      [42],
    ]) {
      const verified = await verify({ key: target.key, tags });
      expect(verified.statusCode, JSON.stringify(tags)).toBe(400);
      expect(verified.json()).toMatchObject({ code: 'INVALID_REQUEST' });
      const reported = await t.app.inject({
        method: 'POST',
        url: '/v1/usage/events',
        headers: bearer(verifier),
        payload: { events: [{ key_id: target.id, outcome: 'VALID', tags }] },
      });
      expect(reported.statusCode, JSON.stringify(tags)).toBe(400);
    }
    // Ten tags of 64 characters (any but control characters) are fine.
    const fine = Array.from({ length: 10 }, (_, i) => `${i}`.padEnd(64, 'é'));
    expect((await verify({ key: target.key, tags: fine })).statusCode).toBe(200);
    expect((await rows(`&key_id=${target.id}`))[0]?.tags).toEqual(fine);
  });

  it('writes no usage row for record_usage: false, yet spends the rate limit and quota and updates last_used_at', async () => {
    const target = await createKey(t, { name: 'metered', rate_limit: { limit: 3, window_seconds: 60 }, quota: { remaining: 10 } });
    const first = await verify({ key: target.key, cost: 4, record_usage: false, tags: ['route:/x'] });
    expect(first.json()).toMatchObject({ code: 'VALID', remaining: 6, ratelimit: { limit: 3, remaining: 2 } });
    const second = await verify({ key: target.key, cost: 4, record_usage: false });
    expect(second.json()).toMatchObject({ code: 'VALID', remaining: 2, ratelimit: { remaining: 1 } });
    // Quota: 2 left, 4 asked.
    expect((await verify({ key: target.key, cost: 4, record_usage: false })).json()).toMatchObject({ code: 'USAGE_EXCEEDED' });
    // Rate limit: 3 used by now.
    expect((await verify({ key: target.key, cost: 0, record_usage: false })).json()).toMatchObject({ code: 'RATE_LIMITED' });
    expect(await rows(`&key_id=${target.id}`)).toEqual([]);
    // Counted nowhere either: the per-minute counts come from the same rows.
    const usage = await t.app.inject({
      method: 'GET',
      url: `/v1/api-keys/${target.id}/usage?granularity=minute`,
      headers: bearer(t.adminKey),
    });
    expect((usage.json() as { totals: { total: number } }).totals.total).toBe(0);
    await t.container.lastUsed.flush();
    const key = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${target.id}`, headers: bearer(t.adminKey) });
    expect((key.json() as { last_used_at: string | null }).last_used_at).not.toBeNull();
    // record_usage true (and left out) write their row.
    const other = await createKey(t, { name: 'unmetered' });
    await verify({ key: other.key, record_usage: true });
    await verify({ key: other.key });
    expect(await rows(`&key_id=${other.id}`)).toHaveLength(2);
  });

  it('writes no usage row for record_usage: false on a failed verification either', async () => {
    const revoked = await createKey(t, { name: 'revoked' });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${revoked.id}/revoke`, headers: bearer(t.adminKey) });
    expect((await verify({ key: revoked.key, record_usage: false })).json()).toMatchObject({ code: 'REVOKED' });
    expect((await verify({ key: 'kw_notarealkey', record_usage: false })).json()).toMatchObject({ code: 'INVALID_FORMAT' });
    expect(await rows()).toEqual([]);
  });
});
