import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { countUsableAdminKeys } from '../../packages/server/src/keys/repository.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { bearer, createKey } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';
import { type ClockedApp, codeOf, createClockedApp, post } from '../verify/helpers.js';

const HOUR = 3_600_000;

async function patch(t: ClockedApp, id: string, payload: Record<string, unknown>, asKey: string) {
  return t.app.inject({ method: 'PATCH', url: `/v1/api-keys/${id}`, headers: bearer(asKey), payload });
}

describe.each(DIALECTS)('key service review fixes on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('a user cannot pass the tier key limit by rolling with grace; grace 0 always rolls; expired keys free a slot', async () => {
    t = await createClockedApp({ dialect, env: JWT_ENV });
    const { token } = await signIn(t, 'alice');
    const me = (payload: Record<string, unknown> = { name: 'mine' }) =>
      t.app.inject({ method: 'POST', url: '/v1/users/me/api-keys', headers: bearer(token), payload });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push((await me()).json().id as string);
    // 2 of 3: one roll with grace fits (3 live keys), the next does not.
    expect((await post(t, `/v1/api-keys/${ids[0]}/roll`, { grace_period_seconds: 60 }, token)).statusCode).toBe(201);
    const refused = await post(t, `/v1/api-keys/${ids[1]}/roll`, { grace_period_seconds: 60 }, token);
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    expect((await me()).json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    // A roll without grace replaces the key: allowed even at the limit.
    expect((await post(t, `/v1/api-keys/${ids[1]}/roll`, { grace_period_seconds: 0 }, token)).statusCode).toBe(201);
    // Once the rolled-out key's grace is over it no longer takes a tier slot.
    t.clock.advance(61_000);
    expect((await me()).statusCode).toBe(201);
    expect((await me()).json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
  });

  it('rolling moves the quota: the old and the new key together never spend more than the original', async () => {
    t = await createClockedApp({ dialect });
    const old = await createKey(t, { quota: { remaining: 3, refill: { amount: 3, interval: 'day' } } });
    expect(await codeOf(t, old.key)).toBe('VALID');
    const rolled = (await post(t, `/v1/api-keys/${old.id}/roll`, { grace_period_seconds: 3600 })).json() as {
      key: string;
      quota: unknown;
    };
    expect(rolled.quota).toMatchObject({ remaining: 2, refill: { amount: 3, interval: 'day' } });
    const codes = [];
    for (const key of [old.key, rolled.key, old.key, rolled.key, old.key, rolled.key]) codes.push(await codeOf(t, key));
    expect(codes.filter((c) => c === 'VALID')).toHaveLength(2);
    expect(await codeOf(t, old.key)).toBe('USAGE_EXCEEDED');
  });

  it('a limited service key cannot lift its own limits, create unlimited keys or roll other keys', async () => {
    t = await createClockedApp({ dialect });
    const expiresAt = new Date(t.clock.now() + HOUR).toISOString();
    const svc = await createKey(t, {
      scopes: ['keyward:keys:write', 'billing:*'],
      quota: { remaining: 100 },
      rate_limit: { limit: 100, window_seconds: 3600 },
      expires_at: expiresAt,
    });
    const later = new Date(t.clock.now() + 2 * HOUR).toISOString();
    for (const payload of [{ quota: null }, { rate_limit: null }, { expires_at: null }, { expires_at: later }]) {
      const response = await patch(t, svc.id, payload, svc.key);
      expect(response.statusCode, JSON.stringify(payload)).toBe(403);
    }
    const sooner = new Date(t.clock.now() + HOUR / 2).toISOString();
    expect((await patch(t, svc.id, { expires_at: sooner }, svc.key)).statusCode).toBe(200);
    const create = await post(t, '/v1/api-keys', { name: 'escape', scopes: ['billing:read'], expires_at: sooner }, svc.key);
    expect(create.statusCode).toBe(403);
    const other = await createKey(t, { scopes: ['billing:read'] });
    expect((await post(t, `/v1/api-keys/${other.id}/roll`, {}, svc.key)).statusCode).toBe(403);
    expect((await patch(t, other.id, { quota: null }, svc.key)).statusCode).toBe(403);
    // Rotating itself keeps the same limits, so it is allowed.
    expect((await post(t, `/v1/api-keys/${svc.id}/roll`, {}, svc.key)).statusCode).toBe(201);
  });

  it('a service key with an expiry gives no key a later one; an unlimited one still sets limits, not its own', async () => {
    t = await createClockedApp({ dialect });
    const svc = await createKey(t, {
      scopes: ['keyward:keys:write', 'billing:*'],
      expires_at: new Date(t.clock.now() + HOUR).toISOString(),
    });
    const sooner = new Date(t.clock.now() + HOUR / 2).toISOString();
    expect((await post(t, '/v1/api-keys', { name: 'forever', scopes: ['billing:read'] }, svc.key)).statusCode).toBe(403);
    const child = await post(t, '/v1/api-keys', { name: 'short', scopes: ['billing:read'], expires_at: sooner }, svc.key);
    expect(child.statusCode).toBe(201);
    const childId = (child.json() as { id: string }).id;
    expect((await patch(t, childId, { expires_at: null }, svc.key)).statusCode).toBe(403);
    expect((await patch(t, childId, { quota: { remaining: 5 } }, svc.key)).statusCode).toBe(200);
    const forever = await createKey(t, { scopes: ['billing:read'] });
    expect((await post(t, `/v1/api-keys/${forever.id}/roll`, {}, svc.key)).statusCode).toBe(403);
    expect((await patch(t, svc.id, { rate_limit: { limit: 1000, window_seconds: 1 } }, svc.key)).statusCode).toBe(403);
  });

  it('users are created with the container clock', async () => {
    t = await createClockedApp({ dialect });
    t.clock.advance(10 * 86_400_000);
    const response = await post(t, '/v1/users', { external_id: 'clocked' });
    expect(response.statusCode).toBe(201);
    expect(Date.parse((response.json() as { created_at: string }).created_at)).toBe(t.clock.now());
  });
});

const postgres = DIALECTS.includes('postgres');

describe.skipIf(!postgres)(postgres ? 'concurrent bootstrap on PostgreSQL' : `concurrent bootstrap: ${POSTGRES_SKIP_REASON}`, () => {
  let database: FreshDatabase | undefined;
  afterEach(async () => database?.cleanup());

  for (const initial of [true, false]) {
    it(`two instances starting at once create exactly one admin key (${initial ? 'INITIAL_ADMIN_KEY' : 'generated'})`, async () => {
      // A race is not certain on one try: several rounds on fresh schemas make a missing lock show.
      for (let round = 0; round < 8; round++) {
        database = await freshDatabase('postgres');
        const env = { DATABASE_URL: database.url, LOG_LEVEL: 'silent', ...(initial ? { INITIAL_ADMIN_KEY: generateKey('kw') } : {}) };
        const config = loadConfig(env);
        const a = createContainer(config);
        const b = createContainer(config);
        try {
          await migrateUp(a.db.db);
          const results = await Promise.all([a.keys.bootstrap(config.initialAdminKey), b.keys.bootstrap(config.initialAdminKey)]);
          expect(results.filter((r) => r !== null)).toHaveLength(1);
          expect(await countUsableAdminKeys(a.db.db, Date.now())).toBe(1);
        } finally {
          await a.close();
          await b.close();
          await database.cleanup();
          database = undefined;
        }
      }
    });
  }
});
