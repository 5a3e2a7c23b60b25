import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type OutgoingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway } from '../../packages/server/src/gateway/app.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { type Echoed, type EchoServer, startEcho } from './echo.js';

// How the gateway behaves as an HTTP intermediary (RFC 9110 §7.6): hop-by-hop headers, Expect, paths that
// only look like traversal, and the X-Forwarded-For chain. Access rules and limits are in gateway.test.ts.

let echo: EchoServer;
beforeAll(async () => {
  echo = await startEcho();
});
afterAll(async () => echo?.close());

const echoed = (response: { json(): unknown }) => response.json() as Echoed;

/** An upstream answering every request `ok` with these response headers. */
async function startUpstream(headers: OutgoingHttpHeaders): Promise<{ server: Server; url: string }> {
  const server = createServer((_request, response) => {
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) response.setHeader(name, value);
    response.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Writes raw HTTP/1.1 and collects the answer until the server closes the connection or `waitMs` passes. */
function exchange(port: number, text: string, waitMs = 2000): Promise<{ head: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let received = '';
    const done = (closedByServer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ head: received.split('\r\n\r\n')[0] ?? '', closedByServer });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.setEncoding('latin1').on('data', (chunk: string) => {
      received += chunk;
    });
    socket.on('end', () => done(true));
    socket.on('error', reject);
  });
}

describe('keyward gateway as an HTTP proxy', () => {
  let t: TestApp | undefined;
  let gateway: FastifyInstance | undefined;
  let upstream: Server | undefined;
  afterEach(async () => {
    await gateway?.close();
    await t?.close();
    upstream?.closeAllConnections();
    upstream?.close();
    t = undefined;
    gateway = undefined;
    upstream = undefined;
  });

  async function setup(options: { env?: Record<string, string>; upstream?: string } = {}) {
    t = await createTestApp(options.env ? { env: options.env } : {});
    gateway = await buildGateway(t.container, { upstream: options.upstream ?? echo.url });
    await gateway.ready();
    const { key } = await createKey(t);
    return { t, gateway, key };
  }

  it('forwards an upload sent with Expect: 100-continue (Node answers the 100; Expect is not sent on)', async () => {
    const f = await setup();
    await f.gateway.listen({ port: 0, host: '127.0.0.1' });
    const { port } = f.gateway.server.address() as AddressInfo;
    const body = randomBytes(64 * 1024);
    const result = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const headers = {
        ...bearer(f.key),
        expect: '100-continue',
        'content-type': 'application/octet-stream',
        'content-length': body.length,
      };
      const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: '/v1/upload', headers }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      // The body goes only once the gateway has said 100 Continue.
      req.on('continue', () => req.end(body));
      req.on('error', reject);
    });
    expect(result.status).toBe(200);
    const seen = JSON.parse(result.text) as Echoed;
    expect(seen.headers.expect).toBeUndefined();
    expect(seen.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('drops the client’s hop-by-hop headers and those its Connection names, and keeps the rest', async () => {
    const f = await setup();
    const hopByHop = {
      connection: 'x-hop-one, X-Hop-Two',
      'x-hop-one': '1',
      'x-hop-two': '2',
      'keep-alive': 'timeout=5, max=100',
      upgrade: 'h2c',
      te: 'trailers, deflate',
      trailer: 'x-checksum',
      'proxy-connection': 'keep-alive',
      'proxy-authorization': 'Basic cHJveHk6c2VjcmV0',
    };
    const response = await f.gateway.inject({
      method: 'GET',
      url: '/v1/orders',
      headers: { ...bearer(f.key), ...hopByHop, 'x-custom': 'kept' },
    });
    expect(response.statusCode).toBe(200);
    const seen = echoed(response).headers;
    for (const name of Object.keys(hopByHop).filter((n) => n !== 'connection')) expect(seen[name], name).toBeUndefined();
    // What reaches the upstream is its own connection's business (undici's keep-alive), not the client's.
    expect(seen.connection).toBe('keep-alive');
    expect(seen['x-custom']).toBe('kept');
    expect(seen.authorization).toBeUndefined();
    expect(seen['x-keyward-key-id']).toEqual(expect.any(String));
  });

  it('drops the upstream’s hop-by-hop response headers, so a client’s Connection: close is honoured', async () => {
    const up = await startUpstream({
      connection: 'keep-alive, X-Internal-Hop',
      'x-internal-hop': 'upstream-only',
      'keep-alive': 'timeout=99',
      'proxy-authenticate': 'Basic realm="inner"',
      'x-end-to-end': 'kept',
    });
    upstream = up.server;
    const f = await setup({ upstream: up.url });
    await f.gateway.listen({ port: 0, host: '127.0.0.1' });
    const { port } = f.gateway.server.address() as AddressInfo;
    const { head, closedByServer } = await exchange(
      port,
      `GET /v1/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${f.key}\r\nConnection: close\r\n\r\n`,
    );
    const lines = head.toLowerCase().split('\r\n');
    expect(lines[0]).toBe('http/1.1 200 ok');
    expect(lines).toContain('x-end-to-end: kept');
    expect(lines).toContain('connection: close');
    expect(lines.filter((line) => /^(x-internal-hop|keep-alive|proxy-authenticate):/.test(line))).toEqual([]);
    expect(closedByServer).toBe(true);
  });

  it('forwards segments that only start with ".." as they are; traversal stays refused', async () => {
    const f = await setup();
    for (const url of ['/v1/notes/...', '/v1/files/..hidden', '/v1/search/..%20x?q=..%2F', '/v1/a/.../b/', '/v1/..a:b']) {
      const response = await f.gateway.inject({ method: 'GET', url, headers: bearer(f.key) });
      expect(response.statusCode, url).toBe(200);
      expect(echoed(response).url, url).toBe(url);
    }
    // A real dot segment is resolved before forwarding, as before.
    const resolved = await f.gateway.inject({ method: 'GET', url: '/v1/a/../b/./c', headers: bearer(f.key) });
    expect(echoed(resolved).url).toBe('/v1/b/c');
    const before = echo.received.length;
    for (const url of ['/v1/..%2Fadmin', '/v1/%2e%2e%2fadmin', '/v1/..%5Cadmin']) {
      const refused = await f.gateway.inject({ method: 'GET', url, headers: bearer(f.key) });
      expect(refused.statusCode, url).toBe(400);
      expect(refused.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    expect(echo.received.length).toBe(before);
  });

  it('keeps the upstream’s base path for those paths too', async () => {
    const f = await setup({ upstream: `${echo.url}/base/v2` });
    const response = await f.gateway.inject({ method: 'GET', url: '/files/..hidden?x=1', headers: bearer(f.key) });
    expect(echoed(response).url).toBe('/base/v2/files/..hidden?x=1');
    const doubled = await f.gateway.inject({ method: 'GET', url: '//evil.example/...', headers: bearer(f.key) });
    expect(echoed(doubled).url).toBe('/base/v2//evil.example/...');
  });

  const forged = { 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6', forwarded: 'for=6.6.6.6' };

  it('with TRUST_PROXY=false replaces a client’s X-Forwarded-For and drops its X-Real-IP and Forwarded', async () => {
    const f = await setup();
    const seen = echoed(await f.gateway.inject({ method: 'GET', url: '/v1/orders', headers: { ...bearer(f.key), ...forged } })).headers;
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-real-ip']).toBeUndefined();
    expect(seen.forwarded).toBeUndefined();
  });

  it('appends to X-Forwarded-For only from a trusted proxy; from any other peer it is replaced', async () => {
    const f = await setup({ env: { TRUST_PROXY: '10.0.0.9' } });
    const fromProxy = echoed(
      await f.gateway.inject({ method: 'GET', url: '/v1/orders', remoteAddress: '10.0.0.9', headers: { ...bearer(f.key), ...forged } }),
    ).headers;
    expect(fromProxy['x-forwarded-for']).toBe('6.6.6.6, 10.0.0.9');
    expect(fromProxy['x-real-ip']).toBe('6.6.6.6');
    expect(fromProxy.forwarded).toBe('for=6.6.6.6');

    const direct = echoed(
      await f.gateway.inject({ method: 'GET', url: '/v1/orders', remoteAddress: '192.0.2.1', headers: { ...bearer(f.key), ...forged } }),
    ).headers;
    expect(direct['x-forwarded-for']).toBe('192.0.2.1');
    expect(direct['x-real-ip']).toBeUndefined();
    expect(direct.forwarded).toBeUndefined();
  });
});
