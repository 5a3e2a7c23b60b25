import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';
import { JWT_ENV, signIn } from './tokens.js';

const ME = '/v1/users/me/api-keys';

describe('giving a key a longer life (PATCH expires_at)', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('an expired key of a user counts again: bringing it back must fit the tier’s key limit (free: 3)', async () => {
    let clock = Date.now();
    t = await createTestApp({ env: JWT_ENV, now: () => clock });
    const { token } = await signIn(t, 'mallory');
    const create = (payload: Record<string, unknown>) => t.app.inject({ method: 'POST', url: ME, headers: bearer(token), payload });
    const expiring = (await create({ name: 'a', expires_at: new Date(clock + 5_000).toISOString() })).json() as { id: string; key: string };
    for (const name of ['b', 'c']) expect((await create({ name })).statusCode).toBe(201);
    clock += 10_000; // `a` has expired and no longer counts
    expect((await create({ name: 'd' })).statusCode).toBe(201);
    const revive = (headers: Record<string, string>) =>
      t.app.inject({ method: 'PATCH', url: `/v1/api-keys/${expiring.id}`, headers, payload: { expires_at: null } });
    const refused = await revive(bearer(token));
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    const still = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(expiring.key) });
    expect(still.statusCode).toBe(401);
    // An admin may (the operator's decision).
    expect((await revive(bearer(t.adminKey))).statusCode).toBe(200);
  });

  it('a rolled key is not given a longer life by anyone but an admin: its replacement is the live key', async () => {
    t = await createTestApp({ env: JWT_ENV });
    const { token } = await signIn(t, 'leaky');
    const old = (await t.app.inject({ method: 'POST', url: ME, headers: bearer(token), payload: { name: 'leaked' } })).json() as {
      id: string;
    };
    expect((await t.app.inject({ method: 'POST', url: `/v1/api-keys/${old.id}/roll`, headers: bearer(t.adminKey) })).statusCode).toBe(201);
    const extend = (headers: Record<string, string>, expiresAt: string | null) =>
      t.app.inject({ method: 'PATCH', url: `/v1/api-keys/${old.id}`, headers, payload: { expires_at: expiresAt } });
    const refused = await extend(bearer(token), null);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'KEY_WAS_ROLLED' });
    // Deleting the replacement does not undo the roll.
    const replacement = (await t.app.inject({ method: 'GET', url: ME, headers: bearer(token) })).json() as {
      data: { id: string; rolled_from: string | null }[];
    };
    const successor = replacement.data.find((k) => k.rolled_from === old.id);
    expect(successor).toBeDefined();
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/api-keys/${successor?.id}`, headers: bearer(token) })).statusCode).toBe(204);
    expect((await extend(bearer(token), null)).json()).toMatchObject({ code: 'KEY_WAS_ROLLED' });
    // An admin may extend it.
    expect((await extend(bearer(t.adminKey), null)).statusCode).toBe(200);
  });
});
