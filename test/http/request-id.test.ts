import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../packages/server/src/app.js';
import { buildGateway } from '../../packages/server/src/gateway/app.js';
import { loggerOptions } from '../../packages/server/src/logger.js';
import { type Echoed, type EchoServer, startEcho } from '../gateway/echo.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';

// X-Request-Id: an acceptable incoming id is kept, anything else is replaced by a UUID; the id is echoed on
// every answer (successes, problems, 404s, what the router refuses), named in problem bodies as `request_id`,
// and carried by the request's log lines.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('X-Request-Id', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => t?.close());

  const send = (url: string, id: string | undefined, extra: Record<string, string> = {}) =>
    t.app.inject({ method: 'GET', url, headers: { ...(id === undefined ? {} : { 'x-request-id': id }), ...extra } });

  it('is kept when acceptable and echoed on a success, a problem, a 404 and a router refusal', async () => {
    const id = 'trace-1234.abc:XYZ_9-0';
    const ok = await send('/healthz', id);
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['x-request-id']).toBe(id);

    const verified = await t.app.inject({
      method: 'POST',
      url: '/v1/keys/verify',
      headers: { ...bearer(t.adminKey), 'x-request-id': id },
      payload: { key: 'kw_nope' },
    });
    expect(verified.statusCode).toBe(200);
    expect(verified.headers['x-request-id']).toBe(id);

    for (const [url, status] of [
      ['/v1/api-keys', 401],
      ['/no/such/route', 404],
      ['/v1/api-keys/%zz', 400],
      [`/v1/api-keys/${'a'.repeat(200)}`, 414],
    ] as const) {
      const response = await send(url, id);
      expect(response.statusCode, url).toBe(status);
      expect(response.headers['x-request-id'], url).toBe(id);
      expect(response.headers['content-type'], url).toMatch(/^application\/problem\+json/);
      expect((response.json() as { request_id?: string }).request_id, url).toBe(id);
    }
  });

  it('is made (a UUID, new for each request) when absent, too long, or not of [A-Za-z0-9._:-]', async () => {
    const seen = new Set<string>();
    for (const given of [undefined, '', 'a'.repeat(129), 'has space', 'quote"d', 'semi;colon', 'é']) {
      const response = await send('/v1/api-keys', given);
      const id = response.headers['x-request-id'];
      expect(id, String(given)).toMatch(UUID);
      expect((response.json() as { request_id?: string }).request_id).toBe(id);
      seen.add(String(id));
    }
    expect(seen.size).toBe(7);
    expect((await send('/healthz', 'a'.repeat(128))).headers['x-request-id']).toBe('a'.repeat(128));
  });

  it('is in the request’s log lines as request_id', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const debug = await createTestApp({ env: { LOG_LEVEL: 'debug' } });
    const app = await buildApp(debug.container, { loggerInstance: pino(loggerOptions('debug'), sink) });
    try {
      await app.inject({ method: 'GET', url: '/v1/api-keys', headers: { 'x-request-id': 'find-me-42' } });
      const mine = lines
        .map((line) => JSON.parse(line) as { request_id?: string; msg?: string })
        .filter((l) => l.request_id === 'find-me-42');
      expect(mine.map((l) => l.msg)).toEqual(expect.arrayContaining(['incoming request', 'request completed']));
    } finally {
      await app.close();
      await debug.close();
    }
  });
});

describe('X-Request-Id through the gateway', () => {
  let echo: EchoServer;
  let t: TestApp | undefined;
  beforeAll(async () => {
    echo = await startEcho();
  });
  afterAll(async () => echo?.close());
  afterEach(async () => t?.close());

  it('is sent upstream, echoed on the proxied answer and on the gateway’s own problems', async () => {
    t = await createTestApp();
    const gateway = await buildGateway(t.container, { upstream: echo.url });
    try {
      const { key } = await createKey(t);
      const proxied = await gateway.inject({ method: 'GET', url: '/orders', headers: { ...bearer(key), 'x-request-id': 'gw-1' } });
      expect(proxied.statusCode).toBe(200);
      expect((proxied.json() as Echoed).headers['x-request-id']).toBe('gw-1');
      expect(proxied.headers['x-request-id']).toBe('gw-1');

      const made = await gateway.inject({ method: 'GET', url: '/orders', headers: { ...bearer(key), 'x-request-id': 'bad id' } });
      const id = made.headers['x-request-id'];
      expect(id).toMatch(UUID);
      expect((made.json() as Echoed).headers['x-request-id']).toBe(id);

      const refused = await gateway.inject({ method: 'GET', url: '/orders', headers: { 'x-request-id': 'gw-2' } });
      expect(refused.statusCode).toBe(401);
      expect(refused.headers['x-request-id']).toBe('gw-2');
      expect((refused.json() as { request_id?: string }).request_id).toBe('gw-2');
    } finally {
      await gateway.close();
    }
  });
});
