import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from './tokens.js';

describe.each(DIALECTS)('tier key limit under concurrency on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('25 simultaneous self-service creates for a free user yield exactly 3 keys', async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'racer');
    const responses = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        t.app.inject({ method: 'POST', url: '/v1/users/me/api-keys', headers: bearer(token), payload: { name: `k${i}` } }),
      ),
    );
    const statuses = responses.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 201)).toHaveLength(3);
    expect(statuses.filter((s) => s === 400)).toHaveLength(22);
    for (const r of responses.filter((r) => r.statusCode === 400)) expect(r.json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });

    const db = t.container.db.db;
    expect(await db.selectFrom('api_keys').select('id').where('user_id', '=', userId).execute()).toHaveLength(3);
    expect(
      await db.selectFrom('audit_log').select('id').where('action', '=', 'key.create').where('actor_id', '=', userId).execute(),
    ).toHaveLength(3);
  });

  it('25 simultaneous admin creates for one user also stop at the user’s tier limit', async () => {
    t = await createTestApp({ dialect, env: { ...JWT_ENV, MAX_KEYS_PER_USER: '2' } });
    const { userId } = await signIn(t, 'capped');
    const responses = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        t.app.inject({ method: 'POST', url: '/v1/api-keys', headers: bearer(t.adminKey), payload: { name: `a${i}`, user_id: userId } }),
      ),
    );
    expect(responses.filter((r) => r.statusCode === 201)).toHaveLength(2);
    expect(await t.container.db.db.selectFrom('api_keys').select('id').where('user_id', '=', userId).execute()).toHaveLength(2);
  });
});
