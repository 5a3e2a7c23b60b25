import { type AddressInfo, connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway } from '../../packages/server/src/gateway/app.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// What Fastify's router and Node's HTTP parser answer before any Keyward code runs, over a real socket (Node's
// own refusals never reach `inject`): the same problem+json, with a catalogue code and a request id, from the
// API and from the gateway.

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes raw HTTP/1.1 and parses the one answer the server gives before it closes the connection. */
function exchange(port: number, text: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let received = '';
    const finish = () => {
      const [head = '', ...rest] = received.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    };
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      received += chunk;
      // The answer is complete once its declared body has arrived (a keep-alive answer leaves the socket open).
      const [head, body] = received.split('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(head ?? '')?.[1];
      if (body !== undefined && length !== undefined && Buffer.byteLength(body) >= Number(length)) {
        socket.destroy();
        finish();
      }
    });
    socket.on('close', finish);
    // The server may reset the connection while a large request is still being written; the answer came first.
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' || error.code === 'EPIPE' ? finish() : reject(error),
    );
  });
}

const request = (line: string, headers: string[] = []) => `${line}\r\nHost: localhost\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`;

function expectProblem(answer: RawAnswer, status: number, code: string): void {
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = JSON.parse(answer.body) as { status: number; code: string; request_id: string };
  expect(body).toMatchObject({ status, code });
  expect(body.request_id).toBeTruthy();
  expect(answer.headers['x-request-id']).toBe(body.request_id);
}

describe.each(['api', 'gateway'] as const)('framework errors from the %s over a socket', (kind) => {
  let t: TestApp;
  let server: FastifyInstance;
  let port: number;
  beforeAll(async () => {
    t = await createTestApp();
    server = kind === 'api' ? t.app : await buildGateway(t.container, { upstream: 'http://127.0.0.1:9' });
    await server.listen({ port: 0, host: '127.0.0.1' });
    port = (server.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    if (kind === 'gateway') await server?.close();
    await t?.close();
  });

  it('headers over Node’s limit: 431 HEADERS_TOO_LARGE', async () => {
    const answer = await exchange(port, request('GET /v1/api-keys HTTP/1.1', [`X-Big: ${'a'.repeat(20_000)}`]));
    expectProblem(answer, 431, 'HEADERS_TOO_LARGE');
  });

  it('a malformed request: 400 INVALID_REQUEST', async () => {
    const answer = await exchange(port, 'GET /v1/api-keys HTTP/1.1\r\nHost: localhost\r\nBad Header Name: x\r\n\r\n');
    expectProblem(answer, 400, 'INVALID_REQUEST');
  });

  it('a bad percent-encoding in the path: 400 INVALID_REQUEST', async () => {
    const answer = await exchange(port, request('GET /v1/api-keys/%zz HTTP/1.1', ['X-Request-Id: bad-url-1']));
    expectProblem(answer, 400, 'INVALID_REQUEST');
    expect(answer.headers['x-request-id']).toBe('bad-url-1');
  });
});

describe('framework errors from the API over a socket', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await createTestApp();
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    port = (t.app.server.address() as AddressInfo).port;
  });
  afterAll(async () => t?.close());

  it('an over-long path parameter: 414 URI_TOO_LONG', async () => {
    const answer = await exchange(port, request(`GET /v1/api-keys/${'a'.repeat(500)} HTTP/1.1`));
    expectProblem(answer, 414, 'URI_TOO_LONG');
  });

  it('a text/plain body: 415 UNSUPPORTED_MEDIA_TYPE, as the OpenAPI document says', async () => {
    const body = '{"key":"kw_x"}';
    const answer = await exchange(
      port,
      `POST /v1/keys/verify HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${t.adminKey}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expectProblem(answer, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });
});
