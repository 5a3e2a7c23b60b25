import { afterEach, describe, expect, it } from 'vitest';
import { ERRORS } from '../../packages/server/src/errors.js';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';

interface Operation {
  requestBody?: { required?: boolean };
  responses: Record<string, unknown>;
}

describe('the OpenAPI document', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  async function operations(): Promise<[string, Operation][]> {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, Operation>>;
    };
    return Object.entries(doc.paths)
      .filter(([path]) => path.startsWith('/v1/'))
      .flatMap(([path, methods]) => Object.entries(methods).map(([method, op]): [string, Operation] => [`${method} ${path}`, op]));
  }

  it('lists 429 and 503 on every /v1 operation, and 413 and 415 on every one that takes a body', async () => {
    t = await createTestApp();
    const ops = await operations();
    expect(ops.length).toBeGreaterThan(15);
    for (const [name, op] of ops) {
      expect(Object.keys(op.responses), name).toEqual(expect.arrayContaining(['429', '503']));
      if (op.requestBody) expect(Object.keys(op.responses), name).toEqual(expect.arrayContaining(['413', '415']));
    }
  });

  it('says what the server does: a body too large is 413, one not JSON is 415, on a route that lists them', async () => {
    t = await createTestApp({ env: { BODY_LIMIT_BYTES: '1024' } });
    const create = (payload: string, type: string) =>
      t.app.inject({ method: 'POST', url: '/v1/api-keys', headers: { ...bearer(t.adminKey), 'content-type': type }, payload });
    expect((await create(JSON.stringify({ name: 'x'.repeat(2_000) }), 'application/json')).statusCode).toBe(413);
    expect((await create('<key/>', 'application/xml')).statusCode).toBe(415);
  });

  it('names every code of the error catalogue, and marks the roll body optional (a bare POST rolls)', async () => {
    t = await createTestApp();
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      components: { schemas: Record<string, { properties: { code: { enum?: string[] } } }> };
      paths: Record<string, Record<string, Operation>>;
    };
    const problem = Object.values(doc.components.schemas).find((schema) => schema.properties?.code?.enum);
    expect(problem?.properties.code.enum?.sort()).toEqual(Object.keys(ERRORS).sort());
    expect(doc.paths['/v1/api-keys/{id}/roll']?.post?.requestBody?.required).toBe(false);
    expect(doc.paths['/v1/api-keys']?.post?.requestBody?.required).toBe(true);
  });
});
