import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  generateKey,
  hashApiKey,
  type KeyChangeFeed,
  type KeyChangeFeedOptions,
  type KeywardError,
  subscribeKeyChanges,
} from '@keyward/sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { REPO } from '../helpers/cli.js';

// The key-change feed against a tiny server speaking contract F (`GET /v1/keys/changes`), then against the
// real Keyward app. Timing-sensitive behaviour (backoff, heartbeat re-arming) runs on fake timers over an
// in-memory stream.

const API_KEY = generateKey('kw');
const hashA = hashApiKey(generateKey('kw'));
const hashB = hashApiKey(generateKey('kw'));

const sse = (event: string, data: unknown, id?: string): string =>
  `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const READY = `retry: 1000\n${sse('ready', { stream_id: 'boot1', cache_ttl_ms: 5000 })}`;

interface Connection {
  headers: IncomingHttpHeaders;
  url: string;
  res: ServerResponse;
  send(text: string): void;
  /** Ends the stream from the server's side. */
  end(): void;
  closed: Promise<void>;
}

/** A server for `GET /v1/keys/changes`: each connection is kept for the test to write to; `refuse` answers instead. */
async function changesServer() {
  const connections: Connection[] = [];
  const state = { refuse: null as null | { status: number; body: unknown } };
  const server: Server = createServer((req, res) => {
    if (state.refuse) {
      res.writeHead(state.refuse.status, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify(state.refuse.body));
      connections.push({ headers: req.headers, url: req.url ?? '', res, send() {}, end() {}, closed: Promise.resolve() });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    connections.push({
      headers: req.headers,
      url: req.url ?? '',
      res,
      send: (text) => res.write(text),
      end: () => res.end(),
      closed: once(res, 'close').then(() => undefined),
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    state,
    /** The n-th connection (1-based), once it has come. */
    async connection(n: number): Promise<Connection> {
      await vi.waitFor(() => expect(connections.length).toBeGreaterThanOrEqual(n), { timeout: 5_000, interval: 5 });
      return connections[n - 1] as Connection;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What the handlers saw, in order. */
function recorder() {
  const seen: string[] = [];
  const errors: KeywardError[] = [];
  return {
    seen,
    errors,
    handlers: {
      onChange: (hash: string) => seen.push(`change ${hash}`),
      onReset: () => seen.push('reset'),
      onLive: (live: boolean) => seen.push(`live ${live}`),
      onError: (error: KeywardError) => errors.push(error),
    },
  };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(options: Partial<KeyChangeFeedOptions> = {}) {
  const server = await changesServer();
  const record = recorder();
  const feed = subscribeKeyChanges(
    { baseUrl: `${server.url}/`, apiKey: API_KEY, reconnectDelayMs: { min: 1, max: 5 }, ...options },
    record.handlers,
  );
  cleanups.push(server.close, () => feed.close());
  return { server, feed, ...record };
}

const until = (check: () => void) => vi.waitFor(check, { timeout: 5_000, interval: 5 });

describe('subscribeKeyChanges against a server speaking the contract', () => {
  it('connects with the key in Authorization only, and is live once the server says ready', async () => {
    const { server, feed, seen } = await setup();
    const first = await server.connection(1);
    expect(first.url).toBe('/v1/keys/changes');
    expect(first.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(first.headers.accept).toBe('text/event-stream');
    expect(first.headers['last-event-id']).toBeUndefined();
    expect(feed.live()).toBe(false);
    first.send(READY);
    await until(() => expect(feed.live()).toBe(true));
    expect(seen).toEqual(['live true']);
  });

  it('hands each key.changed hash to onChange, in order; an unreadable change resets', async () => {
    const { server, seen } = await setup();
    const first = await server.connection(1);
    first.send(READY);
    first.send(sse('key.changed', { key_hash: hashA }, 'boot1:1'));
    first.send(sse('key.changed', { key_hash: hashB }, 'boot1:2'));
    first.send(sse('key.changed', { key_hash: 'not a hash' }, 'boot1:3'));
    // An event this version does not know changes nothing.
    first.send(sse('key.renamed', { key_hash: hashA }, 'boot1:4'));
    await until(() => expect(seen).toHaveLength(4));
    expect(seen).toEqual(['live true', `change ${hashA}`, `change ${hashB}`, 'reset']);
  });

  it('on a dropped stream is not live, and reconnects with Last-Event-ID set to the last id seen', async () => {
    const { server, feed, seen, errors } = await setup();
    const first = await server.connection(1);
    first.send(READY);
    first.send(sse('key.changed', { key_hash: hashA }, 'boot1:7'));
    first.send(': ping\n\n');
    await until(() => expect(seen).toContain(`change ${hashA}`));
    first.end();
    const second = await server.connection(2);
    await until(() => expect(seen).toContain('live false'));
    expect(feed.live()).toBe(false);
    expect(second.headers['last-event-id']).toBe('boot1:7');
    expect(second.headers.authorization).toBe(`Bearer ${API_KEY}`);
    // Keyward resumes from there: the replayed change arrives, and no reset is needed.
    second.send(READY);
    second.send(sse('key.changed', { key_hash: hashB }, 'boot1:8'));
    await until(() => expect(seen).toHaveLength(5));
    expect(seen).toEqual(['live true', `change ${hashA}`, 'live false', 'live true', `change ${hashB}`]);
    expect(feed.live()).toBe(true);
    // A stream the server ended is no error.
    expect(errors).toEqual([]);
  });

  it('calls onReset on a reset event (a Last-Event-ID Keyward could not resume from)', async () => {
    const { server, feed, seen } = await setup();
    const first = await server.connection(1);
    first.send(READY);
    first.send(sse('key.changed', { key_hash: hashA }, 'boot1:3'));
    first.end();
    const second = await server.connection(2);
    expect(second.headers['last-event-id']).toBe('boot1:3');
    second.send(sse('ready', { stream_id: 'boot2', cache_ttl_ms: 5000 }));
    second.send(sse('reset', {}));
    second.send(sse('key.changed', { key_hash: hashB }, 'boot2:1'));
    await until(() => expect(seen).toHaveLength(6));
    expect(seen).toEqual(['live true', `change ${hashA}`, 'live false', 'live true', 'reset', `change ${hashB}`]);
    expect(feed.live()).toBe(true);
  });

  it('resets by itself on a reconnect with no id to resume from (changes while it was down are unknown)', async () => {
    const { server, seen } = await setup();
    const first = await server.connection(1);
    first.send(READY);
    await until(() => expect(seen).toEqual(['live true']));
    first.end();
    const second = await server.connection(2);
    expect(second.headers['last-event-id']).toBeUndefined();
    second.send(READY);
    await until(() => expect(seen).toHaveLength(4));
    expect(seen).toEqual(['live true', 'live false', 'reset', 'live true']);
  });

  it('is not live while Keyward is degraded, and live again at the reset that follows', async () => {
    const { server, feed, seen } = await setup();
    const first = await server.connection(1);
    first.send(READY);
    first.send(sse('degraded', {}));
    await until(() => expect(seen).toEqual(['live true', 'live false']));
    expect(feed.live()).toBe(false);
    first.send(sse('reset', {}));
    await until(() => expect(seen).toHaveLength(4));
    expect(seen).toEqual(['live true', 'live false', 'reset', 'live true']);
    expect(feed.live()).toBe(true);
    // Degraded is not a drop: the same connection goes on.
    expect(server.connections).toHaveLength(1);
  });

  it('gives up on a silent stream after heartbeatTimeoutMs and reconnects, reporting it', async () => {
    const { server, seen, errors } = await setup({ heartbeatTimeoutMs: 100 });
    const first = await server.connection(1);
    first.send(READY);
    first.send(sse('key.changed', { key_hash: hashA }, 'boot1:1'));
    // Nothing more: no event, no heartbeat.
    await first.closed;
    const second = await server.connection(2);
    expect(second.headers['last-event-id']).toBe('boot1:1');
    await until(() => expect(seen).toContain('live false'));
    expect(errors.map((e) => [e.status, e.code, e.problem.detail])).toEqual([[0, 'NETWORK_ERROR', 'no event or heartbeat for 100 ms']]);
  });

  it('stops on close: aborts the connection, says not live, and never reconnects', async () => {
    const { server, feed, seen } = await setup();
    const first = await server.connection(1);
    first.send(READY);
    await until(() => expect(feed.live()).toBe(true));
    await feed.close();
    expect(feed.live()).toBe(false);
    expect(seen).toEqual(['live true', 'live false']);
    await first.closed;
    // The loop has ended when close resolves: nothing can connect after it.
    expect(server.connections).toHaveLength(1);
    await feed.close(); // idempotent
    expect(seen).toEqual(['live true', 'live false']);
  });

  it('closes at once while waiting to reconnect', async () => {
    const { server, feed } = await setup({ reconnectDelayMs: { min: 600_000, max: 600_000 } });
    (await server.connection(1)).end();
    await (await server.connection(1)).closed;
    // Waiting ten minutes before the next try; close does not wait for it.
    await feed.close();
    expect(server.connections).toHaveLength(1);
  });

  it('reports a 401 as a KeywardError, stays not live, and keeps trying', async () => {
    const { server, feed, errors } = await setup({ reconnectDelayMs: { min: 1, max: 1 } });
    const problem = {
      type: 'https://keyward.dev/problems/invalid-credentials',
      title: 'The API key or token is not valid',
      status: 401,
      code: 'INVALID_CREDENTIALS',
    };
    server.state.refuse = { status: 401, body: problem };
    await server.connection(2);
    expect(feed.live()).toBe(false);
    expect(errors[0]).toMatchObject({ name: 'KeywardError', status: 401, code: 'INVALID_CREDENTIALS', problem });
    // The key never appears in what is reported.
    expect(JSON.stringify(errors.map((e) => ({ ...e.problem, message: e.message })))).not.toContain(API_KEY);
    // Fixed: the next try connects and goes live.
    server.state.refuse = null;
    const good = await server.connection(server.connections.length + 1);
    good.send(READY);
    await until(() => expect(feed.live()).toBe(true));
  });

  it('reports a 403 (a key without keyward:verify) the same way', async () => {
    const { server, errors } = await setup();
    server.state.refuse = { status: 403, body: { type: 'about:blank', title: 'Forbidden', status: 403, code: 'FORBIDDEN' } };
    await server.connection(1);
    await until(() => expect(errors[0]).toMatchObject({ status: 403, code: 'FORBIDDEN' }));
  });

  it('reports an answer that is not an event stream, and a Keyward that cannot be reached', async () => {
    const record = recorder();
    const server = createServer((_req, res) => res.end('<html>a proxy page</html>'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const feed = subscribeKeyChanges({ baseUrl: url, apiKey: API_KEY, reconnectDelayMs: { min: 1, max: 5 } }, record.handlers);
    await until(() => expect(record.errors.length).toBeGreaterThan(0));
    expect(record.errors[0]).toMatchObject({ status: 200, code: 'HTTP_200' });
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const before = record.errors.length;
    await until(() => expect(record.errors.slice(before).some((e) => e.code === 'NETWORK_ERROR')).toBe(true));
    await feed.close();
    expect(record.seen).toEqual([]);
  });

  it('keeps streaming when a handler throws (the error is rethrown on its own)', async () => {
    const server = await changesServer();
    cleanups.push(server.close);
    const seen: string[] = [];
    const thrown: unknown[] = [];
    const onUncaught = (error: unknown) => thrown.push(error);
    // Vitest reports uncaught errors: this test catches the one it causes.
    process.prependListener('uncaughtException', onUncaught);
    cleanups.push(async () => void process.off('uncaughtException', onUncaught));
    const feed = subscribeKeyChanges(
      { baseUrl: server.url, apiKey: API_KEY },
      {
        onChange: (hash) => {
          if (hash === hashA) throw new Error('handler bug');
          seen.push(hash);
        },
        onReset: () => {},
      },
    );
    cleanups.push(() => feed.close());
    const first = await server.connection(1);
    first.send(READY);
    first.send(sse('key.changed', { key_hash: hashA }, 'boot1:1'));
    first.send(sse('key.changed', { key_hash: hashB }, 'boot1:2'));
    await until(() => expect(seen).toEqual([hashB]));
    await until(() => expect(thrown).toEqual([new Error('handler bug')]));
    expect(server.connections).toHaveLength(1);
    expect(feed.live()).toBe(true);
  });
});

/**
 * A `fetch` over in-memory streams: each call is a connection the test writes to; aborting errors it, unless
 * `ignoreAbort` (as Node's fetch sometimes does not, for a body already being read).
 */
function memoryFetch({ ignoreAbort = false } = {}) {
  const calls: Array<{ request: Request; push(text: string): void; end(): void }> = [];
  const answers: Array<() => Response> = [];
  const fetch = async (request: Request): Promise<Response> => {
    const answer = answers.shift();
    if (answer) {
      calls.push({ request, push() {}, end() {} });
      return answer();
    }
    let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
    });
    if (!ignoreAbort) request.signal.addEventListener('abort', () => controller?.error(request.signal.reason));
    const encoder = new TextEncoder();
    calls.push({ request, push: (text) => controller?.enqueue(encoder.encode(text)), end: () => controller?.close() });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  };
  return { fetch, calls, answers };
}

describe('subscribeKeyChanges timing (fake timers)', () => {
  it('re-arms the heartbeat watchdog on every byte: a pinged stream stays, a silent one is dropped', async () => {
    vi.useFakeTimers();
    const memory = memoryFetch();
    const record = recorder();
    const feed = subscribeKeyChanges(
      {
        baseUrl: 'http://keyward.test',
        apiKey: API_KEY,
        fetch: memory.fetch,
        heartbeatTimeoutMs: 1_000,
        reconnectDelayMs: { min: 10, max: 10 },
      },
      record.handlers,
    );
    cleanups.push(() => feed.close());
    await vi.advanceTimersByTimeAsync(0);
    expect(memory.calls).toHaveLength(1);
    memory.calls[0]?.push(READY);
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(900);
      memory.calls[0]?.push(': ping\n\n');
    }
    await vi.advanceTimersByTimeAsync(900);
    expect(memory.calls).toHaveLength(1);
    expect(feed.live()).toBe(true);
    await vi.advanceTimersByTimeAsync(100);
    expect(feed.live()).toBe(false);
    expect(record.errors.map((e) => e.code)).toEqual(['NETWORK_ERROR']);
    await vi.advanceTimersByTimeAsync(10);
    expect(memory.calls).toHaveLength(2);
  });

  it('waits the longest delay after a 401, and backs off exponentially (min doubling to max) on other failures', async () => {
    vi.useFakeTimers();
    // No jitter: the upper end of each wait.
    vi.spyOn(Math, 'random').mockReturnValue(1);
    const memory = memoryFetch();
    const unavailable = () => new Response('down', { status: 503 });
    const refused = () =>
      Response.json(
        { type: 'about:blank', title: 'The API key or token is not valid', status: 401, code: 'INVALID_CREDENTIALS' },
        { status: 401 },
      );
    memory.answers.push(refused, refused, unavailable, unavailable, unavailable, unavailable);
    const record = recorder();
    const feed = subscribeKeyChanges(
      { baseUrl: 'http://keyward.test', apiKey: API_KEY, fetch: memory.fetch, reconnectDelayMs: { min: 100, max: 500 } },
      record.handlers,
    );
    cleanups.push(() => feed.close());
    const connectsAt: number[] = [];
    let last = 0;
    for (let t = 0; t <= 2_500; t += 10) {
      await vi.advanceTimersByTimeAsync(t === 0 ? 0 : 10);
      for (; last < memory.calls.length; last++) connectsAt.push(t);
    }
    // 401 → the longest wait, twice; then 503 → 100, 200, 400, 500 (capped); then the stream stays up.
    expect(connectsAt).toEqual([0, 500, 1_000, 1_100, 1_300, 1_700, 2_200]);
    expect(record.errors.map((e) => e.status)).toEqual([401, 401, 503, 503, 503, 503]);
    expect(record.errors[0]?.code).toBe('INVALID_CREDENTIALS');
  });
});

describe('a fetch whose body does not end when its request is aborted', () => {
  it('still closes, and still gives up on a silent stream', async () => {
    const memory = memoryFetch({ ignoreAbort: true });
    const record = recorder();
    const feed = subscribeKeyChanges(
      {
        baseUrl: 'http://keyward.test',
        apiKey: API_KEY,
        fetch: memory.fetch,
        heartbeatTimeoutMs: 50,
        reconnectDelayMs: { min: 1, max: 1 },
      },
      record.handlers,
    );
    cleanups.push(() => feed.close());
    await until(() => expect(memory.calls).toHaveLength(1));
    memory.calls[0]?.push(READY);
    // Silent: cut, reported, and tried again.
    await until(() => expect(memory.calls).toHaveLength(2));
    expect(record.errors.map((e) => e.problem.detail)).toEqual(['no event or heartbeat for 50 ms']);
    memory.calls[1]?.push(READY);
    await until(() => expect(feed.live()).toBe(true));
    await feed.close();
    expect(feed.live()).toBe(false);
  });
});

describe('the process is not held open', () => {
  it('by a feed that cannot connect (its timers are unref’d)', async () => {
    const tsx = join(REPO, 'node_modules/tsx/dist/cli.mjs');
    const script = `
      import { subscribeKeyChanges } from './packages/sdk/src/changes.ts';
      subscribeKeyChanges({ baseUrl: 'http://127.0.0.1:9', apiKey: 'x'.repeat(20), reconnectDelayMs: { min: 60000, max: 60000 } }, { onChange() {}, onReset() {} });`;
    // Exits on its own (a held process would hit the timeout and fail).
    const { stderr } = await promisify(execFile)(process.execPath, [tsx, '--eval', script], { cwd: REPO, timeout: 20_000 });
    expect(stderr).toBe('');
  });
});

describe('subscribeKeyChanges against the real Keyward app', () => {
  let t: TestApp;
  let feed: KeyChangeFeed | undefined;
  afterEach(async () => {
    await feed?.close();
    // Node's fetch leaves one never-used connection behind after an aborted stream (nodejs/undici#5845), and
    // Node's server.close waits for it: in one process, close it here.
    t?.app.server.closeAllConnections();
    await t?.close();
  });

  it('goes live and hears a revoked key’s hash, never the key', async () => {
    t = await createTestApp();
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: { authorization: `Bearer ${t.adminKey}` },
      payload: { name: 'feed', scopes: ['keyward:verify'] },
    });
    const verifyKey = (created.json() as { key: string }).key;
    const target = await t.app.inject({
      method: 'POST',
      url: '/v1/api-keys',
      headers: { authorization: `Bearer ${t.adminKey}` },
      payload: { name: 'to revoke' },
    });
    const { key, id } = target.json() as { key: string; id: string };
    const record = recorder();
    feed = subscribeKeyChanges({ baseUrl: base, apiKey: verifyKey }, record.handlers);
    await until(() => expect(feed?.live()).toBe(true));
    const revoked = await t.app.inject({
      method: 'POST',
      url: `/v1/api-keys/${id}/revoke`,
      headers: { authorization: `Bearer ${t.adminKey}` },
    });
    expect(revoked.statusCode).toBe(200);
    await until(() => expect(record.seen).toContain(`change ${hashApiKey(key)}`));
    expect(record.errors).toEqual([]);
    expect(record.seen.join(' ')).not.toContain(key);
  });
});
