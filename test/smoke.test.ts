import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from './helpers/app.js';
import { DIALECTS } from './helpers/db.js';

describe.each(DIALECTS)('smoke on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('creates a key and reads it back as that key', async () => {
    t = await createTestApp({ dialect });
    const { key, id } = await createKey(t, { name: 'smoke' });
    const current = await t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(key) });
    expect(current.statusCode).toBe(200);
    expect(current.json()).toMatchObject({ id, name: 'smoke', is_admin: false });
    expect(current.body).not.toContain(key);
  });
});
