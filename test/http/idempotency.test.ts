import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';
import { type ClockedApp, createClockedApp } from '../verify/helpers.js';

const ME = '/v1/users/me/api-keys';
const DAY_MS = 24 * 60 * 60 * 1000;

interface Created {
  id: string;
  key: string;
  name: string;
  key_prefix: string;
  rolled_from: string | null;
}

function send(t: TestApp, url: string, options: { as?: string; idem?: string; payload?: Record<string, unknown> } = {}) {
  return t.app.inject({
    method: 'POST',
    url,
    headers: { ...bearer(options.as ?? t.adminKey), ...(options.idem === undefined ? {} : { 'idempotency-key': options.idem }) },
    ...(options.payload === undefined ? {} : { payload: options.payload }),
  });
}

function created(response: LightMyRequestResponse): Created {
  if (response.statusCode !== 201) throw new Error(`expected 201, got ${response.statusCode} ${response.body}`);
  return response.json() as Created;
}

/** Every key the admin can list (the API's own view), with inactive ones. */
async function listedKeys(t: TestApp): Promise<Created[]> {
  const all: Created[] = [];
  let cursor: string | null = null;
  do {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/api-keys?include_inactive=true&limit=100${cursor ? `&cursor=${cursor}` : ''}`,
      headers: bearer(t.adminKey),
    });
    const page = response.json() as { data: Created[]; next_cursor: string | null };
    all.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return all;
}

const named = async (t: TestApp, name: string) => (await listedKeys(t)).filter((k) => k.name === name);

describe.each(DIALECTS)('Idempotency-Key on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('a repeat of a create answers 409 IDEMPOTENCY_KEY_REUSED naming the key created, and creates nothing', async () => {
    t = await createClockedApp({ dialect });
    const payload = { name: 'once', scopes: ['a:read'] };
    const first = created(await send(t, '/v1/api-keys', { idem: 'create-1', payload }));
    // The same body in another key order is the same request.
    const again = await send(t, '/v1/api-keys', { idem: 'create-1', payload: { scopes: ['a:read'], name: 'once' } });
    expect(again.statusCode).toBe(409);
    expect(again.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(again.json()).toMatchObject({ status: 409, code: 'IDEMPOTENCY_KEY_REUSED', key_id: first.id });
    expect(again.body).not.toContain(first.key);
    expect((await named(t, 'once')).map((k) => k.id)).toEqual([first.id]);
    // Without the header every request creates a key, as before.
    created(await send(t, '/v1/api-keys', { payload }));
    expect(await named(t, 'once')).toHaveLength(2);
  });

  it('the same idempotency key with a different request answers 422 IDEMPOTENCY_KEY_MISMATCH', async () => {
    t = await createClockedApp({ dialect });
    const first = created(await send(t, '/v1/api-keys', { idem: 'k', payload: { name: 'a' } }));
    const other = await send(t, '/v1/api-keys', { idem: 'k', payload: { name: 'b' } });
    expect(other.statusCode).toBe(422);
    expect(other.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_MISMATCH' });
    // Another route is another request too.
    const roll = await send(t, `/v1/api-keys/${first.id}/roll`, { idem: 'k' });
    expect(roll.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_MISMATCH' });
    expect(await named(t, 'b')).toHaveLength(0);
    expect((await listedKeys(t)).filter((k) => k.rolled_from === first.id)).toHaveLength(0);
  });

  it('idempotency keys are per caller: two callers using the same one both create a key', async () => {
    t = await createClockedApp({ dialect });
    const other = await createKey(t, { name: 'second admin', is_admin: true });
    const a = created(await send(t, '/v1/api-keys', { idem: 'shared', payload: { name: 'mine' } }));
    const b = created(await send(t, '/v1/api-keys', { as: other.key, idem: 'shared', payload: { name: 'mine' } }));
    expect(a.id).not.toBe(b.id);
    expect(await named(t, 'mine')).toHaveLength(2);
  });

  it('a refused request (4xx) does not use the idempotency key up', async () => {
    t = await createClockedApp({ dialect, env: JWT_ENV });
    // Refused by validation, then by the service inside the transaction: a corrected request goes through.
    expect((await send(t, '/v1/api-keys', { idem: 'retry', payload: { name: 'x', scopes: 'nope' } })).statusCode).toBe(400);
    const noUser = await send(t, '/v1/api-keys', {
      idem: 'retry',
      payload: { name: 'x', user_id: '01900000-0000-7000-8000-000000000000' },
    });
    expect(noUser.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    created(await send(t, '/v1/api-keys', { idem: 'retry', payload: { name: 'x' } }));

    // The same request refused at the tier's key limit succeeds once a key is freed.
    const { token } = await signIn(t, 'capped');
    const mine = [];
    for (let i = 0; i < 3; i++) mine.push(created(await send(t, ME, { as: token, payload: { name: `k${i}` } })));
    const full = await send(t, ME, { as: token, idem: 'later', payload: { name: 'k3' } });
    expect(full.json()).toMatchObject({ code: 'KEY_LIMIT_REACHED' });
    const freed = await t.app.inject({ method: 'DELETE', url: `${ME}/${mine[0]?.id}`, headers: bearer(token) });
    expect(freed.statusCode).toBe(204);
    const retried = created(await send(t, ME, { as: token, idem: 'later', payload: { name: 'k3' } }));
    expect((await send(t, ME, { as: token, idem: 'later', payload: { name: 'k3' } })).json()).toMatchObject({
      code: 'IDEMPOTENCY_KEY_REUSED',
      key_id: retried.id,
    });
  });

  it('10 concurrent repeats of a create make exactly one key; the others answer 409', async () => {
    t = await createClockedApp({ dialect });
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => send(t, '/v1/api-keys', { idem: 'race', payload: { name: 'raced' } })),
    );
    const keys = await named(t, 'raced');
    expect(keys).toHaveLength(1);
    expect(responses.filter((r) => r.statusCode === 201).map((r) => (r.json() as Created).id)).toEqual([keys[0]?.id]);
    for (const r of responses.filter((r) => r.statusCode !== 201)) {
      expect(r.statusCode).toBe(409);
      expect(r.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', key_id: keys[0]?.id });
    }
  });

  it('10 concurrent repeats of a self-service create make exactly one key', async () => {
    t = await createClockedApp({ dialect, env: JWT_ENV });
    const { token } = await signIn(t, 'racer');
    const responses = await Promise.all(Array.from({ length: 10 }, () => send(t, ME, { as: token, idem: 'race' })));
    expect(responses.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(responses.filter((r) => r.statusCode === 409)).toHaveLength(9);
    const mine = await t.app.inject({ method: 'GET', url: ME, headers: bearer(token) });
    expect((mine.json() as { data: unknown[] }).data).toHaveLength(1);
  });

  it('10 concurrent repeats of a roll roll once; a repeat afterwards names the new key', async () => {
    t = await createClockedApp({ dialect });
    const old = await createKey(t, { name: 'rolled' });
    const responses = await Promise.all(
      Array.from({ length: 10 }, () =>
        send(t, `/v1/api-keys/${old.id}/roll`, { idem: 'roll-once', payload: { grace_period_seconds: 60 } }),
      ),
    );
    const successors = (await listedKeys(t)).filter((k) => k.rolled_from === old.id);
    expect(successors).toHaveLength(1);
    expect(responses.filter((r) => r.statusCode === 201)).toHaveLength(1);
    for (const r of responses.filter((r) => r.statusCode !== 201)) {
      expect(r.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', key_id: successors[0]?.id });
    }
    const later = await send(t, `/v1/api-keys/${old.id}/roll`, { idem: 'roll-once', payload: { grace_period_seconds: 60 } });
    expect(later.json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', key_id: successors[0]?.id });
  });

  it('expires after 24 hours: the same idempotency key then creates a new key', async () => {
    t = await createClockedApp({ dialect });
    const first = created(await send(t, '/v1/api-keys', { idem: 'daily', payload: { name: 'daily' } }));
    t.clock.advance(DAY_MS - 1000);
    expect((await send(t, '/v1/api-keys', { idem: 'daily', payload: { name: 'daily' } })).statusCode).toBe(409);
    t.clock.advance(2000);
    const second = created(await send(t, '/v1/api-keys', { idem: 'daily', payload: { name: 'daily' } }));
    expect(second.id).not.toBe(first.id);
    expect((await send(t, '/v1/api-keys', { idem: 'daily', payload: { name: 'daily' } })).json()).toMatchObject({ key_id: second.id });
  });

  it('prunes expired idempotency keys now and then', async () => {
    t = await createClockedApp({ dialect });
    created(await send(t, '/v1/api-keys', { idem: 'old-1', payload: { name: 'p' } }));
    created(await send(t, '/v1/api-keys', { idem: 'old-2', payload: { name: 'p' } }));
    t.clock.advance(DAY_MS + 60 * 60 * 1000);
    created(await send(t, '/v1/api-keys', { idem: 'new', payload: { name: 'p' } }));
    const rows = await t.container.db.db.selectFrom('idempotency_keys').select('idempotency_key').execute();
    expect(rows.map((r) => r.idempotency_key)).toEqual(['new']);
  });

  it('refuses an idempotency key that is empty, longer than 255 or not printable ASCII (400)', async () => {
    t = await createClockedApp({ dialect });
    for (const idem of ['', 'x'.repeat(256), 'tab\there', 'del\u007f']) {
      const response = await send(t, '/v1/api-keys', { idem, payload: { name: 'bad' } });
      expect(response.statusCode, JSON.stringify(idem)).toBe(400);
      expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    created(await send(t, '/v1/api-keys', { idem: `${'x'.repeat(254)}~`, payload: { name: 'bad' } }));
    expect(await named(t, 'bad')).toHaveLength(1);
  });
});

describe.each(DIALECTS)('rolling a key already rolled on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('is refused with 409 KEY_WAS_ROLLED naming the live replacement, and issues nothing', async () => {
    t = await createClockedApp({ dialect });
    const first = await createKey(t, { name: 'lineage' });
    const second = created(await send(t, `/v1/api-keys/${first.id}/roll`, { payload: { grace_period_seconds: 600 } }));
    const refused = await send(t, `/v1/api-keys/${first.id}/roll`, { payload: { grace_period_seconds: 600 } });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'KEY_WAS_ROLLED', key_id: second.id });
    // The replacement rolled in turn (with grace, then at once): the first key names the newest.
    const third = created(await send(t, `/v1/api-keys/${second.id}/roll`, { payload: { grace_period_seconds: 600 } }));
    expect((await send(t, `/v1/api-keys/${first.id}/roll`)).json()).toMatchObject({ code: 'KEY_WAS_ROLLED', key_id: third.id });
    const fourth = created(await send(t, `/v1/api-keys/${third.id}/roll`));
    expect((await send(t, `/v1/api-keys/${first.id}/roll`)).json()).toMatchObject({ code: 'KEY_WAS_ROLLED', key_id: fourth.id });
    expect((await send(t, `/v1/api-keys/${second.id}/roll`)).json()).toMatchObject({ code: 'KEY_WAS_ROLLED', key_id: fourth.id });
    // The live one rolls; with no live replacement left the refusal names none.
    await send(t, `/v1/api-keys/${fourth.id}/revoke`);
    const orphan = await send(t, `/v1/api-keys/${first.id}/roll`);
    expect(orphan.json()).toMatchObject({ code: 'KEY_WAS_ROLLED' });
    expect(orphan.json()).not.toHaveProperty('key_id');
    expect((await named(t, 'lineage')).map((k) => k.id).sort()).toEqual([first.id, second.id, third.id, fourth.id].sort());
  });

  it('a refused roll does not use its idempotency key up', async () => {
    t = await createClockedApp({ dialect });
    const first = await createKey(t, { name: 'lineage' });
    const second = created(await send(t, `/v1/api-keys/${first.id}/roll`, { payload: { grace_period_seconds: 600 } }));
    expect((await send(t, `/v1/api-keys/${first.id}/roll`, { idem: 'r' })).json()).toMatchObject({ code: 'KEY_WAS_ROLLED' });
    created(await send(t, `/v1/api-keys/${second.id}/roll`, { idem: 'r' }));
  });
});

describe.each(DIALECTS)('a key’s name is optional on %s', (dialect) => {
  let t: ClockedApp;
  afterEach(async () => t?.close());

  it('POST /v1/api-keys with {} names the key from its display prefix', async () => {
    t = await createClockedApp({ dialect });
    const key = created(await send(t, '/v1/api-keys', { payload: {} }));
    expect(key.name).toBe(`Key ${key.key_prefix}`);
    expect(key.name).toMatch(/^Key kw_[A-Za-z0-9]{8}$/);
  });

  it('POST /v1/users/me/api-keys with no body at all (seed 004), or {}, creates a key with defaults', async () => {
    t = await createClockedApp({ dialect, env: JWT_ENV });
    const { token, userId } = await signIn(t, 'seed-004');
    const bare = created(await send(t, ME, { as: token }));
    expect(bare).toMatchObject({ name: `Key ${bare.key_prefix}`, user_id: userId, is_admin: false, scopes: [] });
    const empty = created(await send(t, ME, { as: token, payload: {} }));
    expect(empty.name).toBe(`Key ${empty.key_prefix}`);
    // A bare POST and `{}` are the same request to an idempotency key.
    created(await send(t, ME, { as: token, idem: 'bare' }));
    expect((await send(t, ME, { as: token, idem: 'bare', payload: {} })).json()).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
  });

  it('the OpenAPI document: the self-service body optional, `name` optional, Idempotency-Key a documented header', async () => {
    t = await createClockedApp({ dialect });
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<
        string,
        Record<
          string,
          {
            parameters?: { in: string; name: string; schema: { maxLength?: number } }[];
            requestBody?: { required?: boolean; content: Record<string, { schema: { required?: string[] } }> };
            responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }>;
          }
        >
      >;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    // Errors name the Problem component.
    const schemaOf = (ref: string | undefined) => doc.components.schemas[(ref ?? '').replace('#/components/schemas/', '')];
    expect(doc.paths[ME]?.post?.requestBody?.required).toBe(false);
    for (const [path, op] of [
      ['/v1/api-keys', doc.paths['/v1/api-keys']?.post],
      [ME, doc.paths[ME]?.post],
      ['/v1/api-keys/{id}/roll', doc.paths['/v1/api-keys/{id}/roll']?.post],
    ] as const) {
      expect(op?.parameters?.find((p) => p.in === 'header' && p.name === 'idempotency-key')?.schema.maxLength, path).toBe(255);
      expect(op?.requestBody?.content['application/json']?.schema.required ?? [], path).not.toContain('name');
      expect(Object.keys(op?.responses ?? {}), path).toEqual(expect.arrayContaining(['409', '422']));
      expect(schemaOf(op?.responses['409']?.content?.['application/problem+json']?.schema.$ref)?.properties, path).toHaveProperty('key_id');
    }
  });
});
