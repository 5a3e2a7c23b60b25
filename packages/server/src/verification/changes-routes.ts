import type { ServerResponse } from 'node:http';
import { Type } from '@fastify/type-provider-typebox';
import { mayVerify } from '../callers/principal.js';
import type { Config } from '../config.js';
import { ProblemError } from '../errors.js';
import { callerOf } from '../http/auth.js';
import { REQUEST_ID_HEADER } from '../http/request-id.js';
import { ProblemResponse, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import type { ChangeEvent, ChangeFeed } from './change-feed.js';

/** What a client waits before reconnecting (the stream's `retry:` field). */
const RETRY_MS = 1_000;
/** Unread bytes a client may leave behind before its stream is ended: it reconnects and resumes. */
const MAX_UNREAD_BYTES = 1 << 20;
/** `Retry-After` when this instance has as many streams open as it allows. */
const FULL_RETRY_AFTER_SECONDS = 5;

const HEARTBEAT = ': ping\n\n';
const DEGRADED = 'event: degraded\ndata: {}\n\n';

function frame(streamId: string, event: ChangeEvent): string {
  const data = event.type === 'key.changed' ? `{"key_hash":"${event.keyHash}"}` : '{"reason":"channel_restored"}';
  return `id: ${streamId}:${event.seq}\nevent: ${event.type}\ndata: ${data}\n\n`;
}

const STREAM_EXAMPLE =
  'retry: 1000\nid: 0197a4d2-6c1e-4b3a-9f4e-2d8c5b1a7e90:41\nevent: ready\ndata: {"stream_id":"0197a4d2-6c1e-4b3a-9f4e-2d8c5b1a7e90","cache_ttl_ms":30000}\n\n' +
  ': ping\n\n' +
  'id: 0197a4d2-6c1e-4b3a-9f4e-2d8c5b1a7e90:42\nevent: key.changed\ndata: {"key_hash":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}\n\n';

const DESCRIPTION = [
  'For SDK clients that cache verifications: a server-sent-events stream of every key change this instance learns of, its own and every other instance’s. Needs an admin key or a key holding `keyward:verify`. It carries key hashes (SHA-256 hex of the key), never a key.',
  '',
  '- On connect: `retry: 1000`, then `event: ready` with `data: {"stream_id", "cache_ttl_ms"}` (`stream_id` names this boot of this instance; `cache_ttl_ms` is its `CACHE_TTL_MS`). Without `Last-Event-ID`, `ready` carries the id of the current position.',
  '- `event: key.changed`, `id: <stream_id>:<seq>`, `data: {"key_hash"}`: drop that key from your cache.',
  '- `: ping` comment lines every `KEY_CHANGES_HEARTBEAT_MS` (default 15 s).',
  '- Reconnect with `Last-Event-ID`: the events after it are replayed when this instance still holds them (the same boot, among its last 10 000 events); otherwise `event: reset` (drop your whole cache), with an id, then live events.',
  '- `event: degraded` when this instance’s invalidation channel goes down (changes made elsewhere may go unseen: treat it like a dropped stream), `event: reset` with an id when it is back.',
  '',
  'At most `KEY_CHANGES_MAX_STREAMS` streams (default 1 000) are open at once on an instance; more answer 503 with `Retry-After`. Streams end when the instance stops.',
].join('\n');

export interface KeyChangesDeps {
  changeFeed: ChangeFeed;
  config: Pick<Config, 'cacheTtlMs' | 'keyChangesHeartbeatMs' | 'keyChangesMaxStreams'>;
}

/** `GET /v1/keys/changes`: the changes feed as server-sent events. */
export function keyChangesRoutes(app: App, { changeFeed: feed, config }: KeyChangesDeps): void {
  /** Each open stream, by the function that ends it. */
  const open = new Set<() => void>();
  // Before the server stops accepting: an open stream would hold its connection, and the stop, for good.
  app.addHook('preClose', (done) => {
    for (const end of [...open]) end();
    done();
  });

  function stream(res: ServerResponse, lastEventId: string | undefined): void {
    // A client gone while it was being authenticated: its `close` has passed, so nothing would end the stream.
    if (res.socket === null || res.socket.destroyed) return;
    const { streamId } = feed;
    // What the connect burst (a replay may be 10 000 events) leaves unread is allowed on top.
    let unreadLimit = MAX_UNREAD_BYTES;
    const send = (text: string) => {
      if (res.writableEnded || res.destroyed) return;
      res.write(text);
      // A client that stopped reading: its stream ends rather than this instance holding what it does not read.
      if (res.writableLength > unreadLimit) res.destroy();
    };
    const ready = `event: ready\ndata: ${JSON.stringify({ stream_id: streamId, cache_ttl_ms: config.cacheTtlMs })}\n\n`;
    let head = `retry: ${RETRY_MS}\n`;
    // The id says where this client is, so that a reconnect resumes from here; a client that resumes keeps its
    // own until the replayed events move it on.
    if (lastEventId === undefined) head += `id: ${feed.position()}\n${ready}`;
    else {
      head += ready;
      const missed = feed.since(lastEventId);
      if (missed === null) head += `id: ${feed.position()}\nevent: reset\ndata: {"reason":"unknown_last_event_id"}\n\n`;
      else for (const event of missed) head += frame(streamId, event);
    }
    if (!feed.live()) head += DEGRADED;
    // Subscribed in the same turn as the replay was read: no event falls between them.
    const unsubscribe = feed.subscribe({
      event: (event) => send(frame(streamId, event)),
      degraded: () => send(DEGRADED),
    });
    const heartbeat = setInterval(() => send(HEARTBEAT), config.keyChangesHeartbeatMs);
    heartbeat.unref();
    const end = () => res.end();
    open.add(end);
    res.once('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(end);
    });
    unreadLimit += Buffer.byteLength(head);
    send(head);
  }

  app.get(
    '/v1/keys/changes',
    {
      schema: {
        operationId: 'streamKeyChanges',
        tags: ['Verification'],
        summary: 'Follow key changes (server-sent events)',
        description: DESCRIPTION,
        security: SECURED,
        headers: Type.Object({
          'last-event-id': Type.Optional(
            Type.String({ maxLength: 200, description: 'The id of the last event received, to resume after it (sent by SSE clients)' }),
          ),
        }),
        produces: ['text/event-stream'],
        response: {
          200: Type.String({ description: 'An endless `text/event-stream`', examples: [STREAM_EXAMPLE] }),
          ...problems(401, 403),
          503: ref(ProblemResponse, {
            description: `As many streams are open on this instance as \`KEY_CHANGES_MAX_STREAMS\` allows, or the database cannot be reached: retry after \`Retry-After\` seconds`,
          }),
        },
      },
    },
    async (request, reply) => {
      if (!mayVerify(callerOf(request).principal)) {
        throw new ProblemError('FORBIDDEN', 'following key changes needs an admin key or the keyward:verify scope');
      }
      if (open.size >= config.keyChangesMaxStreams) {
        throw new ProblemError('SERVICE_UNAVAILABLE', 'as many key-change streams are open on this instance as it allows', undefined, {
          'retry-after': String(FULL_RETRY_AFTER_SECONDS),
        });
      }
      const lastEventId = request.headers['last-event-id'];
      reply.hijack();
      // A hijacked reply sends only what is written here (not the headers hooks set).
      reply.raw.writeHead(200, {
        [REQUEST_ID_HEADER]: request.id,
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      stream(reply.raw, lastEventId === '' ? undefined : lastEventId);
    },
  );
}
