import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { generateKey, hashApiKey } from '@keyward/sdk';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { buildApp } from '../../packages/server/src/app.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import type { App } from '../../packages/server/src/http/types.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { createChangeFeed } from '../../packages/server/src/verification/change-feed.js';
import type { KeyChangeListener } from '../../packages/server/src/verification/invalidation.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { post, waitFor, waitLive } from './helpers.js';

// GET /v1/keys/changes against a real listening server, read with fetch and the small SSE parser below.

interface SseEvent {
  event: string;
  data: string;
  /** The `id:` field of this event, if it had one. */
  id: string | undefined;
}

interface Stream {
  response: Response;
  events: SseEvent[];
  comments: string[];
  retry: number | null;
  /** Every byte received, as text (to check that no key is in it). */
  text(): string;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  /** Waits for an event of `type` (matching `match`) not taken yet, and takes it. */
  next(type: string, match?: (event: SseEvent) => boolean): Promise<SseEvent>;
  close(): void;
}

/** Opens the stream at `base` and parses it as the SSE specification says (fields, comments, blank-line events). */
async function openStream(base: string, key: string | null, headers: Record<string, string> = {}): Promise<Stream> {
  const abort = new AbortController();
  const response = await fetch(`${base}/v1/keys/changes`, {
    headers: { ...(key === null ? {} : bearer(key)), ...headers },
    signal: abort.signal,
  });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const taken = new Set<SseEvent>();
  let all = '';
  let pending = '';
  let retry: number | null = null;
  let block: { event: string; data: string[]; id: string | undefined } = { event: 'message', data: [], id: undefined };
  const line = (text: string) => {
    if (text === '') {
      if (block.data.length > 0 || block.id !== undefined) events.push({ event: block.event, data: block.data.join('\n'), id: block.id });
      block = { event: 'message', data: [], id: undefined };
      return;
    }
    if (text.startsWith(':')) return void comments.push(text.slice(1).trim());
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    const value = colon < 0 ? '' : text.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') block.event = value;
    else if (field === 'data') block.data.push(value);
    else if (field === 'id') block.id = value;
    else if (field === 'retry') retry = Number(value);
  };
  const ended = (async () => {
    const reader = response.body?.getReader();
    if (!reader) return;
    const decoder = new TextDecoder();
    try {
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        const text = decoder.decode(read.value, { stream: true });
        all += text;
        pending += text;
        let at = pending.indexOf('\n');
        while (at >= 0) {
          line(pending.slice(0, at));
          pending = pending.slice(at + 1);
          at = pending.indexOf('\n');
        }
      }
    } catch {
      // Aborted by the test.
    }
  })();
  return {
    response,
    events,
    comments,
    get retry() {
      return retry;
    },
    text: () => all,
    ended,
    async next(type, match = () => true) {
      let found: SseEvent | undefined;
      await waitFor(() => {
        found = events.find((e) => !taken.has(e) && e.event === type && match(e));
        return found !== undefined;
      }, `event ${type}`);
      if (!found) throw new Error(`no ${type}`);
      taken.add(found);
      return found;
    },
    close: () => abort.abort(),
  };
}

const hashOf = (event: SseEvent) => (JSON.parse(event.data) as { key_hash: string }).key_hash;
const changeOf = (key: string) => (event: SseEvent) => hashOf(event) === hashApiKey(key);

/** A test app listening on a free port of 127.0.0.1. */
async function listening(options: Parameters<typeof createTestApp>[0] = {}): Promise<{ t: TestApp; base: string }> {
  const t = await createTestApp(options);
  const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  return { t, base };
}

describe('GET /v1/keys/changes', () => {
  const apps: TestApp[] = [];
  const streams: Stream[] = [];
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.close();
    for (const app of apps.splice(0).reverse()) await app.close();
  });
  async function start(env: Record<string, string> = {}, database?: FreshDatabase) {
    const { t, base } = await listening({ env, ...(database ? { database } : {}) });
    apps.push(t);
    await waitLive(t.container);
    return { t, base };
  }
  async function open(base: string, key: string | null, headers: Record<string, string> = {}) {
    const stream = await openStream(base, key, headers);
    streams.push(stream);
    return stream;
  }

  it('answers 401 without a credential and 403 to a key without keyward:verify, as problem+json', async () => {
    const { t, base } = await start();
    const none = await fetch(`${base}/v1/keys/changes`);
    expect(none.status).toBe(401);
    expect(none.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await none.json()).toMatchObject({ code: 'AUTH_REQUIRED' });
    const reader = await createKey(t, { scopes: ['keyward:keys:read'] });
    const refused = await fetch(`${base}/v1/keys/changes`, { headers: bearer(reader.key) });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ code: 'FORBIDDEN' });
    const verifier = await createKey(t, { scopes: ['keyward:verify'] });
    const stream = await open(base, verifier.key);
    expect(stream.response.status).toBe(200);
    await stream.next('ready');
  });

  it('opens with retry: 1000 and ready (stream id, cache life, the current position), with the SSE headers', async () => {
    const { t, base } = await start({ CACHE_TTL_MS: '12345' });
    const stream = await open(base, t.adminKey);
    expect(stream.response.status).toBe(200);
    expect(stream.response.headers.get('content-type')).toBe('text/event-stream');
    expect(stream.response.headers.get('cache-control')).toBe('no-cache');
    expect(stream.response.headers.get('x-accel-buffering')).toBe('no');
    expect(stream.response.headers.get('x-request-id')).toBeTruthy();
    const ready = await stream.next('ready');
    expect(stream.retry).toBe(1000);
    expect(JSON.parse(ready.data)).toEqual({ stream_id: t.container.changeFeed.streamId, cache_ttl_ms: 12345 });
    expect(ready.id).toBe(t.container.changeFeed.position());
    expect(stream.text().startsWith('retry: 1000\n')).toBe(true);
  });

  it('sends key.changed with the key’s SHA-256 for a create, patch, deactivate, revoke, roll and delete, and never a key', async () => {
    const { t, base } = await start();
    const stream = await open(base, t.adminKey);
    const ready = await stream.next('ready');
    const streamId = JSON.parse(ready.data).stream_id as string;
    const ids: string[] = [];
    const sees = async (key: string) => {
      const event = await stream.next('key.changed', changeOf(key));
      expect(event.data).toBe(JSON.stringify({ key_hash: hashApiKey(key) }));
      expect(event.id).toMatch(new RegExp(`^${streamId}:\\d+$`));
      ids.push(event.id ?? '');
    };

    const a = await createKey(t);
    await sees(a.key);
    const patched = await t.app.inject({
      method: 'PATCH',
      url: `/v1/api-keys/${a.id}`,
      headers: bearer(t.adminKey),
      payload: { name: 'x' },
    });
    expect(patched.statusCode).toBe(200);
    await sees(a.key);
    expect((await post(t, `/v1/api-keys/${a.id}/deactivate`)).statusCode).toBe(200);
    await sees(a.key);
    expect((await post(t, `/v1/api-keys/${a.id}/revoke`)).statusCode).toBe(200);
    await sees(a.key);
    const b = await createKey(t);
    await sees(b.key);
    const rolled = await post(t, `/v1/api-keys/${b.id}/roll`, { grace_period_seconds: 60 });
    expect(rolled.statusCode).toBe(201);
    const next = (rolled.json() as { key: string }).key;
    await sees(b.key); // the old key's expiry moved
    await sees(next); // the new key exists (a remembered miss must go)
    const removed = await t.app.inject({
      method: 'DELETE',
      url: `/v1/api-keys/${(rolled.json() as { id: string }).id}`,
      headers: bearer(t.adminKey),
    });
    expect(removed.statusCode).toBe(204);
    await sees(next);

    // Numbered in order, one boot.
    const seqs = ids.map((id) => Number(id.split(':')[1]));
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    for (const key of [a.key, b.key, next, t.adminKey]) expect(stream.text()).not.toContain(key);
  });

  it('sends a `: ping` comment every KEY_CHANGES_HEARTBEAT_MS', async () => {
    const { t, base } = await start({ KEY_CHANGES_HEARTBEAT_MS: '20' });
    const stream = await open(base, t.adminKey);
    await stream.next('ready');
    await waitFor(() => stream.comments.filter((c) => c === 'ping').length >= 3, 'three heartbeats');
    expect(stream.text()).toContain('\n: ping\n\n');
  });

  it('replays what came after Last-Event-ID, and resets (with the current id) for an id it cannot resume', async () => {
    const { t, base } = await start();
    const first = await open(base, t.adminKey);
    const position = (await first.next('ready')).id ?? '';
    first.close();
    const a = await createKey(t);
    const b = await createKey(t);
    const { streamId } = t.container.changeFeed;
    await waitFor(() => t.container.changeFeed.position() !== position, 'the changes to be numbered');

    const resumed = await open(base, t.adminKey, { 'last-event-id': position });
    const ready = await resumed.next('ready');
    expect(ready.id).toBeUndefined(); // the client keeps its own position until the replay moves it
    const replayed = [await resumed.next('key.changed'), await resumed.next('key.changed')];
    expect(replayed.map(hashOf)).toEqual([hashApiKey(a.key), hashApiKey(b.key)]);
    expect(resumed.events.some((e) => e.event === 'reset')).toBe(false);
    // Live events follow the replay on the same stream.
    const c = await createKey(t);
    await resumed.next('key.changed', changeOf(c.key));

    const current = t.container.changeFeed.position();
    const upToDate = await open(base, t.adminKey, { 'last-event-id': current });
    await upToDate.next('ready');
    const d = await createKey(t);
    expect(hashOf(await upToDate.next('key.changed'))).toBe(hashApiKey(d.key)); // nothing replayed before it

    const seq = Number(current.split(':')[1]);
    for (const unknown of [`another-boot:${seq}`, `${streamId}:${seq + 1000}`, 'garbage']) {
      const reset = await open(base, t.adminKey, { 'last-event-id': unknown });
      await reset.next('ready');
      const event = await reset.next('reset');
      expect(event.id, unknown).toBe(t.container.changeFeed.position());
      expect(reset.events.filter((e) => e.event === 'key.changed')).toEqual([]);
    }
  });

  it('refuses streams past KEY_CHANGES_MAX_STREAMS with 503 and Retry-After, and takes one again once a stream ends', async () => {
    const { t, base } = await start({ KEY_CHANGES_MAX_STREAMS: '2' });
    const one = await open(base, t.adminKey);
    await open(base, t.adminKey);
    await one.next('ready');
    const full = await fetch(`${base}/v1/keys/changes`, { headers: bearer(t.adminKey) });
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('5');
    expect(await full.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    one.close();
    await waitFor(async () => {
      const again = await fetch(`${base}/v1/keys/changes`, { headers: bearer(t.adminKey) });
      const taken = again.status === 200;
      if (taken) streams.push({ close: () => void again.body?.cancel() } as Stream);
      else await again.body?.cancel();
      return taken;
    }, 'a stream to be free');
  });

  it('holds no stream for a client gone before it was answered', async () => {
    const { t, base } = await start({ KEY_CHANGES_MAX_STREAMS: '1' });
    const port = Number(new URL(base).port);
    // Keys this instance has not cached yet: authentication reads the database, and the client is gone meanwhile.
    const callers = await Promise.all(Array.from({ length: 20 }, () => createKey(t, { scopes: ['keyward:verify'] })));
    for (const caller of callers) {
      const socket = connect(port, '127.0.0.1');
      await once(socket, 'connect');
      socket.end(`GET /v1/keys/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${caller.key}\r\n\r\n`);
      socket.destroy();
    }
    // The one stream allowed is free.
    await waitFor(async () => {
      const response = await fetch(`${base}/v1/keys/changes`, { headers: bearer(t.adminKey) });
      await response.body?.cancel();
      return response.status === 200;
    }, 'a stream');
  });

  it('ends every open stream when the app closes; the close waits neither for them nor for a connection that sent nothing', async () => {
    const { t, base } = await listening();
    const stream = await openStream(base, t.adminKey);
    const other = await openStream(base, t.adminKey);
    await stream.next('ready');
    await other.next('ready');
    // A connection that has sent nothing yet, such as the spare Node's fetch opens after an aborted request.
    const silent = connect(Number(new URL(base).port), '127.0.0.1');
    await once(silent, 'connect');
    const outcome = await Promise.race([
      t.close().then(() => 'closed'),
      new Promise((resolve) => setTimeout(resolve, 5_000, 'still closing after 5 s')),
    ]);
    expect(outcome).toBe('closed');
    await stream.ended;
    await other.ended;
    silent.destroy();
  });

  it('a change made by another instance on the same SQLite file reaches the stream', async () => {
    const first = await start();
    const second = await start({ INITIAL_ADMIN_KEY: first.t.adminKey }, first.t.database);
    second.t.adminKey = first.t.adminKey;
    expect(first.t.container.invalidation.transport).toBe('sqlite');
    const stream = await open(first.base, first.t.adminKey);
    await stream.next('ready');
    const { key, id } = await createKey(second.t);
    await stream.next('key.changed', changeOf(key));
    await post(second.t, `/v1/api-keys/${id}/revoke`);
    const count = (k: string) => stream.events.filter((e) => e.event === 'key.changed' && changeOf(k)(e)).length;
    await waitFor(() => count(key) === 2, 'the revoke made on the other instance');

    // A change made on this instance is told once: its own announcement, coming back through the change log, is
    // not told again. The log is read in order, so once a later change from the other instance has arrived, the
    // echo has been read.
    const own = await createKey(first.t);
    await stream.next('key.changed', changeOf(own.key));
    const later = await createKey(second.t);
    await stream.next('key.changed', changeOf(later.key));
    expect(count(own.key)).toBe(1);
  });
});

describe('GET /v1/keys/changes over a stand-in invalidation channel', () => {
  let app: App | undefined;
  let database: FreshDatabase | undefined;
  afterEach(async () => {
    await app?.close();
    await database?.cleanup();
  });

  /** The real app, whose changes feed follows a channel the test drives (up or down, and changes). */
  async function withChannel() {
    const listeners = new Set<KeyChangeListener>();
    let live = true;
    const channel = {
      live: () => live,
      subscribe(listener: KeyChangeListener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
    database = await freshDatabase('sqlite');
    const adminKey = generateKey('kw');
    const config = loadConfig({ DATABASE_URL: database.url, INITIAL_ADMIN_KEY: adminKey, LOG_LEVEL: 'silent' });
    const container = createContainer(config);
    await migrateUp(container.db.db);
    await container.keys.bootstrap(adminKey);
    container.changeFeed.close();
    container.changeFeed = createChangeFeed({ invalidation: channel });
    app = await buildApp(container);
    app.addHook('onClose', async () => container.close());
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    return {
      base,
      adminKey,
      feed: container.changeFeed,
      turn(value: boolean) {
        live = value;
        for (const listener of listeners) listener.live(value);
      },
      changed(hash: string) {
        for (const listener of listeners) listener.changed(hash);
      },
    };
  }

  it('sends degraded when the channel goes down, then reset with an id; a stream opened while down is told degraded at once', async () => {
    const { base, adminKey, feed, turn } = await withChannel();
    const stream = await openStream(base, adminKey);
    await stream.next('ready');
    turn(false);
    await stream.next('degraded');
    const late = await openStream(base, adminKey);
    await late.next('ready');
    await late.next('degraded');
    turn(true);
    const reset = await stream.next('reset');
    expect(reset.id).toBe(feed.position());
    expect(JSON.parse(reset.data)).toEqual({ reason: 'channel_restored' });
    await late.next('reset');
    // A client that was away during the outage is reset by the replay.
    const away = await openStream(base, adminKey, { 'last-event-id': `${feed.streamId}:0` });
    await away.next('reset');
    for (const s of [stream, late, away]) s.close();
  });

  it('replays a full ring buffer (10 000 events) to a client that resumes', async () => {
    const { base, adminKey, feed, changed } = await withChannel();
    const position = feed.position();
    for (let n = 1; n <= 10_000; n++) changed(n.toString(16).padStart(64, '0'));
    const resumed = await openStream(base, adminKey, { 'last-event-id': position });
    await waitFor(() => resumed.events.filter((e) => e.event === 'key.changed').length === 10_000, 'the whole replay');
    expect(resumed.events.filter((e) => e.event === 'key.changed').at(-1)?.id).toBe(feed.position());
    resumed.close();
  });

  it('ends the stream of a client that stops reading, rather than holding what it leaves unread', async () => {
    const { base, adminKey, changed } = await withChannel();
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
    });
    const closed = once(socket, 'close');
    socket.write(`GET /v1/keys/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${adminKey}\r\n\r\n`);
    await waitFor(() => received.includes('event: ready'), 'the stream to open');
    socket.pause(); // reads nothing more
    // Far more than the socket buffers hold: what is left unread grows past the limit.
    for (let n = 0; n < 200_000; n++) changed(n.toString(16).padStart(64, '0'));
    await closed;
    expect(received.startsWith('HTTP/1.1 200')).toBe(true);
  });
});

// Two instances on one PostgreSQL schema: a change made on B reaches A's stream through PostgreSQL NOTIFY or
// Redis pub/sub; A's subscription killed, its stream says degraded, then reset once it has subscribed again.
const redisUrl = inject('redisUrl');
const hasPostgres = DIALECTS.includes('postgres');
for (const [transport, available, reason] of [
  ['postgres', true, ''],
  ['redis', redisUrl !== null, 'REDIS_URL is not set'],
] as const) {
  const runs = hasPostgres && available;
  const title = runs
    ? `GET /v1/keys/changes across instances through ${transport}`
    : `GET /v1/keys/changes across instances through ${transport} — skipped: ${hasPostgres ? reason : POSTGRES_SKIP_REASON}`;
  (runs ? describe : describe.skip)(title, () => {
    let database: FreshDatabase | undefined;
    const apps: TestApp[] = [];
    const streams: Stream[] = [];
    afterEach(async () => {
      for (const stream of streams.splice(0)) stream.close();
      for (const t of apps.splice(0).reverse()) await t.close();
      await database?.cleanup();
      database = undefined;
    });

    it('a change made on the other instance reaches the stream; an outage of the channel is degraded, then reset', async () => {
      database = await freshDatabase('postgres');
      const tag = `kwtest_${randomBytes(4).toString('hex')}`;
      const url = new URL(database.url);
      url.searchParams.set('application_name', tag);
      const prefix = `${tag}:`;
      const env = {
        DATABASE_URL: url.toString(),
        ...(transport === 'redis' && redisUrl ? { REDIS_URL: redisUrl, REDIS_PREFIX: prefix } : {}),
      };
      const a = await listening({ database, env });
      apps.push(a.t);
      const b = await listening({ database, env: { ...env, INITIAL_ADMIN_KEY: a.t.adminKey } });
      apps.push(b.t);
      b.t.adminKey = a.t.adminKey;
      await waitLive(a.t.container);
      await waitLive(b.t.container);
      expect(a.t.container.invalidation.transport).toBe(transport);

      const stream = await openStream(a.base, a.t.adminKey);
      streams.push(stream);
      await stream.next('ready');
      const { key, id } = await createKey(b.t);
      await stream.next('key.changed', changeOf(key));
      await post(b.t, `/v1/api-keys/${id}/revoke`);
      await stream.next('key.changed', changeOf(key));

      if (transport === 'postgres') {
        const admin = new pg.Client({ connectionString: inject('postgresUrl') ?? '' });
        await admin.connect();
        await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [tag]);
        await admin.end();
      } else {
        const redis = new Redis(redisUrl ?? '');
        const clients = String(await redis.client('LIST'));
        for (const line of clients.split('\n').filter((l) => l.includes(` name=${prefix}key-changed:sub `))) {
          const clientId = /(?:^|\s)id=(\d+)/.exec(line)?.[1];
          if (clientId) await redis.client('KILL', 'ID', clientId);
        }
        await redis.quit();
      }
      await stream.next('degraded');
      await stream.next('reset');
      await waitLive(b.t.container);
      const again = await createKey(b.t);
      await stream.next('key.changed', changeOf(again.key));
      expect(stream.text()).not.toContain(key);
    });
  });
}
