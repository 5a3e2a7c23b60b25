import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { containsPattern } from '../../packages/server/src/keys/repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';

interface KeyPage {
  data: { id: string; name: string; key_prefix: string; user_id: string | null }[];
  next_cursor: string | null;
}

async function get(t: TestApp, url: string, credential: string = t.adminKey): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'GET', url, headers: bearer(credential) });
}

/** The names a key list answers with, after checking it answered 200. */
async function names(t: TestApp, url: string, credential?: string): Promise<string[]> {
  const response = await get(t, url, credential);
  expect(response.statusCode, response.body).toBe(200);
  return (response.json() as KeyPage).data.map((k) => k.name).sort();
}

const search = (q: string, more = '') => `/v1/api-keys?q=${encodeURIComponent(q)}${more}`;

describe('containsPattern', () => {
  it('escapes the LIKE wildcards and the escape character', () => {
    expect(containsPattern('50%_off\\')).toBe('%50\\%\\_off\\\\%');
  });
});

describe.each(DIALECTS)('key search (q) on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t.close());

  it('matches a name substring in any case, a display prefix, or an exact id', async () => {
    t = await createTestApp({ dialect });
    const billing = await createKey(t, { name: 'Billing service' });
    await createKey(t, { name: 'old-BILLING' });
    await createKey(t, { name: 'Reports' });

    expect(await names(t, search('billing'))).toEqual(['Billing service', 'old-BILLING']);
    expect(await names(t, search('BiLLiNg SeR'))).toEqual(['Billing service']);

    const prefix = billing.body.key_prefix as string;
    expect(await names(t, search(prefix.toUpperCase()))).toEqual(['Billing service']);
    expect(await names(t, search(prefix.slice(0, -2)))).toContain('Billing service');

    expect(await names(t, search(billing.id))).toEqual(['Billing service']);
    // An id matches whole, not in part.
    expect(await names(t, search(billing.id.slice(0, 20)))).toEqual([]);
    expect(await names(t, search('nothing like this'))).toEqual([]);
  });

  it('takes % and _ literally', async () => {
    t = await createTestApp({ dialect });
    await createKey(t, { name: '50% off' });
    await createKey(t, { name: '500 off' });
    await createKey(t, { name: 'a_b' });
    await createKey(t, { name: 'axb' });
    await createKey(t, { name: 'back\\slash' });

    expect(await names(t, search('%'))).toEqual(['50% off']);
    expect(await names(t, search('0%'))).toEqual(['50% off']);
    // (Not `_` alone: every display prefix holds one, `kw_…`.)
    expect(await names(t, search('a_b'))).toEqual(['a_b']);
    expect(await names(t, search('\\'))).toEqual(['back\\slash']);
  });

  it('combines with user_id, include_inactive and cursor paging', async () => {
    t = await createTestApp({ dialect, env: { ...JWT_ENV, DEFAULT_TIER: 'enterprise' } });
    const { userId } = await signIn(t, 'ada');
    for (const n of [1, 2, 3]) await createKey(t, { name: `ada search ${n}`, user_id: userId });
    await createKey(t, { name: 'ada other', user_id: userId });
    await createKey(t, { name: 'ownerless search' });
    const revoked = await createKey(t, { name: 'ada search revoked', user_id: userId });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${revoked.id}/revoke`, headers: bearer(t.adminKey) });

    expect(await names(t, search('SEARCH', `&user_id=${userId}`))).toEqual(['ada search 1', 'ada search 2', 'ada search 3']);
    expect(await names(t, search('search', `&user_id=${userId}&include_inactive=true`))).toHaveLength(4);

    const first = (await get(t, search('search', `&user_id=${userId}&limit=2`))).json() as KeyPage;
    expect(first.data.map((k) => k.name)).toEqual(['ada search 3', 'ada search 2']);
    expect(first.next_cursor).not.toBeNull();
    const second = (await get(t, search('search', `&user_id=${userId}&limit=2&cursor=${first.next_cursor}`))).json() as KeyPage;
    expect(second.data.map((k) => k.name)).toEqual(['ada search 1']);
    expect(second.next_cursor).toBeNull();
  });

  it("shows a user's JWT only their own keys, on both key lists", async () => {
    t = await createTestApp({ dialect, env: { ...JWT_ENV, DEFAULT_TIER: 'enterprise' } });
    const ada = await signIn(t, 'ada');
    const bob = await signIn(t, 'bob');
    await createKey(t, { name: 'shared name ada', user_id: ada.userId });
    const bobs = await createKey(t, { name: 'shared name bob', user_id: bob.userId });
    await createKey(t, { name: 'shared name admin' });

    expect(await names(t, `/v1/users/me/api-keys?q=SHARED`, ada.token)).toEqual(['shared name ada']);
    expect(await names(t, `/v1/users/me/api-keys?q=${bobs.id}`, ada.token)).toEqual([]);
    expect(await names(t, search('shared'), ada.token)).toEqual(['shared name ada']);
    expect(await names(t, search(bobs.id), ada.token)).toEqual([]);
  });

  it('refuses an empty or overlong q (400 INVALID_REQUEST)', async () => {
    t = await createTestApp({ dialect });
    for (const url of ['/v1/api-keys?q=', search('x'.repeat(201)), '/v1/users/me/api-keys?q=']) {
      const response = await get(t, url);
      expect(response.statusCode, url).toBe(400);
      expect((response.json() as { code: string }).code).toBe('INVALID_REQUEST');
    }
    expect((await get(t, search('x'.repeat(200)))).statusCode).toBe(200);
  });
});

describe.each(DIALECTS)('users carry key_count on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t.close());

  it('counts the keys each user owns, in every state, on list and get', async () => {
    t = await createTestApp({ dialect, env: { ...JWT_ENV, DEFAULT_TIER: 'enterprise' } });
    const ada = await signIn(t, 'ada');
    const bob = await signIn(t, 'bob');
    await signIn(t, 'cy');
    await createKey(t, { name: 'a1', user_id: ada.userId });
    const revoked = await createKey(t, { name: 'a2', user_id: ada.userId });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${revoked.id}/revoke`, headers: bearer(t.adminKey) });
    const inactive = await createKey(t, { name: 'a3', user_id: ada.userId });
    await t.app.inject({ method: 'POST', url: `/v1/api-keys/${inactive.id}/deactivate`, headers: bearer(t.adminKey) });
    await createKey(t, { name: 'b1', user_id: bob.userId });
    await createKey(t, { name: 'ownerless' });

    const list = await get(t, '/v1/users');
    expect(list.statusCode).toBe(200);
    const counts = Object.fromEntries(
      (list.json() as { data: { external_id: string; key_count: number }[] }).data.map((u) => [u.external_id, u.key_count]),
    );
    expect(counts).toEqual({ ada: 3, bob: 1, cy: 0 });

    const one = await get(t, `/v1/users/${ada.userId}`);
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({ id: ada.userId, external_id: 'ada', key_count: 3 });

    const paged = (await get(t, '/v1/users?limit=1')).json() as { data: { key_count: number }[]; next_cursor: string };
    expect(paged.data).toEqual([expect.objectContaining({ external_id: 'cy', key_count: 0 })]);
  });
});
