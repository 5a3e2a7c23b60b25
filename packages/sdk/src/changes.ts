import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { KeywardError } from './errors.js';

// A client for Keyward's `GET /v1/keys/changes` server-sent-events stream: which keys changed (by SHA-256
// hash, never the key), resumable with `Last-Event-ID`, with heartbeats. The middleware subscribes to drop a
// revoked key from its cache at once; anything else may too (a worker holding its own cache of keys).

/**
 * What a {@link subscribeKeyChanges} feed tells its owner, synchronously and in stream order. A handler that
 * throws does not stop the feed: its error is thrown again on its own, as an uncaught exception.
 */
export interface KeyChangeHandlers {
  /** The key with this SHA-256 hash (lower-case hex, as `hashApiKey` gives) changed: forget what you know of it. */
  onChange(keyHash: string): void;
  /** Changes may have been missed (a reconnect Keyward could not resume, or its own cache coming back): forget every key. */
  onReset(): void;
  /**
   * The feed became live (`true`: the stream is up and Keyward vouches for it) or stopped being live (`false`:
   * the stream dropped, Keyward sent `degraded`, or the feed was closed). Called on each change, not repeated.
   */
  onLive?(live: boolean): void;
  /**
   * The stream could not be opened or broke: a network failure or a silent stream (`NETWORK_ERROR`, status 0),
   * or Keyward's answer (401/403: the feed's key is wrong or lacks `keyward:verify`). The feed keeps retrying.
   */
  onError?(error: KeywardError): void;
}

export interface KeyChangeFeedOptions {
  /** Where Keyward listens, e.g. `https://keys.example.com`. */
  baseUrl: string;
  /** An admin key or one holding `keyward:verify`. Sent only as `Authorization: Bearer`. */
  apiKey: string;
  /** A `fetch` to use instead of the global one; it must stream the response body. */
  fetch?: (input: Request) => Promise<Response>;
  /** No byte (event or heartbeat) for this long means the connection is dead: reconnect (default 45 000 ms). */
  heartbeatTimeoutMs?: number;
  /**
   * The wait before reconnecting: from `min`, doubling with each failed try up to `max`, with jitter (default
   * 250..10 000 ms). A refused key (401, 403) or a Keyward without the stream (404) waits `max` every time.
   */
  reconnectDelayMs?: { min: number; max: number };
}

/** A running subscription. */
export interface KeyChangeFeed {
  /** Whether the stream is up and not degraded: only then is a key not reported changed known to be unchanged. */
  live(): boolean;
  /**
   * Stops the feed (aborting the open connection, no more reconnects); resolves once it has stopped. Node's
   * fetch may then keep one unused connection to Keyward (nodejs/undici#5845) until a next request uses it.
   */
  close(): Promise<void>;
}

const DEFAULT_HEARTBEAT_TIMEOUT_MS = 45_000;
const DEFAULT_RECONNECT_DELAY_MS = { min: 250, max: 10_000 };
const KEY_HASH = /^[0-9a-f]{64}$/;
// An id goes back in a header: only printable ASCII of the length Keyward takes is kept.
const EVENT_ID = /^[\x20-\x7e]{1,200}$/;
/** Answers that retrying soon cannot fix: the feed waits the longest delay between tries. */
const LASTING_REFUSALS = new Set([401, 403, 404]);

/**
 * Subscribes to Keyward's key changes (`GET /v1/keys/changes`). The feed connects at once, calls `onLive(true)`
 * when Keyward says `ready`, `onChange(hash)` for each changed key and `onReset()` when changes may have been
 * missed. When the connection drops or goes silent for `heartbeatTimeoutMs` it reconnects with backoff, sending
 * `Last-Event-ID` so Keyward replays what came after (or answers `reset`). It never holds the process open
 * with a timer; the open connection is an in-flight request like any other, so call `close()` on shutdown.
 *
 * @example
 * const cache = new Map<string, Identity>(); // by hashApiKey(key)
 * const feed = subscribeKeyChanges(
 *   { baseUrl: 'http://127.0.0.1:8080', apiKey: process.env.KEYWARD_VERIFY_KEY ?? '' },
 *   {
 *     onChange: (keyHash) => cache.delete(keyHash),
 *     onReset: () => cache.clear(),
 *     onLive: (live) => console.log(live ? 'key changes: live' : 'key changes: down'),
 *     onError: (error) => console.warn('key changes:', error.code),
 *   },
 * );
 * process.once('SIGTERM', () => void feed.close());
 */
export function subscribeKeyChanges(options: KeyChangeFeedOptions, handlers: KeyChangeHandlers): KeyChangeFeed {
  const url = `${options.baseUrl.replace(/\/+$/, '')}/v1/keys/changes`;
  const fetchStream = options.fetch ?? ((request: Request) => fetch(request));
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
  const minDelay = Math.max(0, options.reconnectDelayMs?.min ?? DEFAULT_RECONNECT_DELAY_MS.min);
  const maxDelay = Math.max(minDelay, options.reconnectDelayMs?.max ?? DEFAULT_RECONNECT_DELAY_MS.max);

  let closed = false;
  let isLive = false;
  let lastEventId: string | undefined;
  /** Whether a stream was ever opened: a later one that cannot resume must start from a reset. */
  let connectedBefore = false;
  /** Tries since the stream last stayed up for a while: the backoff's exponent. */
  let failures = 0;
  /** Ends the connection in progress, if any. */
  let stopAttempt: (() => void) | null = null;
  let wake: (() => void) | null = null;

  function setLive(value: boolean): void {
    if (isLive === value) return;
    isLive = value;
    call(() => handlers.onLive?.(value));
  }

  function report(error: KeywardError): void {
    if (!closed) call(() => handlers.onError?.(error));
  }

  /** One connection, from request to end. Returns how long to wait before the next. */
  async function connect(): Promise<number> {
    const controller = new AbortController();
    let reader: ReadableStreamDefaultReader<string> | undefined;
    const stop = (): void => {
      controller.abort();
      // Node's fetch does not always error a body already being read when its request is aborted: the read
      // could wait for good. Cancelling it ends it either way.
      reader?.cancel().catch(() => {});
    };
    stopAttempt = stop;
    let silent = false;
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    // Armed from the start, so a connection that hangs before its headers is given up too; re-armed on every
    // chunk. Re-created rather than `refresh`ed: not every runtime's timers have it.
    const arm = (): void => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        silent = true;
        stop();
      }, heartbeatTimeoutMs);
      (watchdog as { unref?: () => void }).unref?.();
    };
    arm();
    const resumeFrom = lastEventId;
    let readyAt: number | null = null;
    let request: Request | null = null;
    try {
      const headers: Record<string, string> = {
        accept: 'text/event-stream',
        'cache-control': 'no-cache',
        authorization: `Bearer ${options.apiKey}`,
      };
      if (resumeFrom !== undefined) headers['last-event-id'] = resumeFrom;
      // Held until the read loop ends: Node links a Request's signal to the controller's only weakly, so a
      // `fetch` that does not keep the Request could let it be collected and `close()` would abort nothing.
      request = new Request(url, { headers, signal: controller.signal });
      const response = await fetchStream(request);
      if (!response.ok) {
        const error = KeywardError.fromResponse(response.status, await bodyOf(response), response.headers);
        report(error);
        if (LASTING_REFUSALS.has(response.status)) return maxDelay;
        // A Retry-After (429, 503) is a floor, within the longest delay.
        return Math.max(backoff(), Math.min(maxDelay, (error.retryAfter ?? 0) * 1000));
      }
      const type = response.headers.get('content-type') ?? '';
      if (!type.startsWith('text/event-stream') || response.body === null) {
        await response.body?.cancel();
        report(KeywardError.fromResponse(response.status, `expected text/event-stream, got ${type || 'no content type'}`));
        return backoff();
      }
      // The stream's `retry:` is not taken: the feed's own bounded, jittered backoff decides.
      const parser = createParser({
        onEvent: (message) => {
          if (message.id !== undefined) lastEventId = EVENT_ID.test(message.id) ? message.id : undefined;
          if (message.event === 'ready' && readyAt === null) {
            readyAt = Date.now();
            // A stream that cannot resume (nothing seen to resume from) has missed whatever changed meanwhile.
            if (connectedBefore && resumeFrom === undefined) call(() => handlers.onReset());
            connectedBefore = true;
            setLive(true);
          } else {
            dispatch(message, readyAt !== null);
          }
        },
      });
      reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        parser.feed(value);
      }
      if (closed) return 0;
      // Ended by the server (not an error: only a reconnect and `onLive(false)`), or cut here for silence.
      if (silent) report(silence());
      return afterDrop(readyAt);
    } catch (error) {
      if (closed) return 0;
      report(silent ? silence() : KeywardError.network(error));
      return afterDrop(readyAt);
    } finally {
      request = null;
      clearTimeout(watchdog);
      stopAttempt = null;
      setLive(false);
    }
  }

  function dispatch(message: EventSourceMessage, ready: boolean): void {
    switch (message.event) {
      case 'key.changed': {
        const keyHash = hashIn(message.data);
        // A change that cannot be read could be any key: forget them all rather than keep a revoked one.
        if (keyHash === null) call(() => handlers.onReset());
        else call(() => handlers.onChange(keyHash));
        return;
      }
      case 'reset':
        call(() => handlers.onReset());
        // After `degraded`, Keyward's own channel is back: live again.
        if (ready) setLive(true);
        return;
      case 'degraded':
        setLive(false);
        return;
      default:
      // Events this version does not know are left alone, so the server can add some.
    }
  }

  const silence = (): KeywardError => KeywardError.network(new Error(`no event or heartbeat for ${heartbeatTimeoutMs} ms`));

  /** The delay after a stream that ended: short after one that stayed up, growing for one that keeps dropping. */
  function afterDrop(readyAt: number | null): number {
    if (readyAt !== null && Date.now() - readyAt >= maxDelay) failures = 0;
    return backoff();
  }

  function backoff(): number {
    const base = Math.min(maxDelay, minDelay * 2 ** Math.min(failures, 30));
    failures++;
    // Half fixed, half random: instances restarted together do not reconnect together.
    return base / 2 + Math.random() * (base / 2);
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      timer.unref?.();
      wake = () => {
        clearTimeout(timer);
        wake = null;
        resolve();
      };
    });
  }

  const running = (async () => {
    while (!closed) {
      const delay = await connect();
      if (!closed) await sleep(delay);
    }
  })();

  return {
    live: () => isLive,
    async close() {
      closed = true;
      stopAttempt?.();
      wake?.();
      await running;
      setLive(false);
    },
  };
}

/** The `key_hash` of a `key.changed` event's data; `null` when it has none that looks like a SHA-256 hex. */
function hashIn(data: string): string | null {
  try {
    const parsed: unknown = JSON.parse(data);
    if (typeof parsed !== 'object' || parsed === null) return null;
    const keyHash = (parsed as { key_hash?: unknown }).key_hash;
    return typeof keyHash === 'string' && KEY_HASH.test(keyHash) ? keyHash : null;
  } catch {
    return null;
  }
}

/** An error answer's body: its JSON (a problem) when it has one, else its text. */
async function bodyOf(response: Response): Promise<unknown> {
  try {
    const text = await response.text();
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  } catch {
    return undefined;
  }
}

/**
 * Runs a handler so that its throwing neither stops the feed nor vanishes: the error is thrown again on its own
 * (an uncaught exception, as from an event listener), while the stream goes on.
 */
function call(handler: () => void): void {
  try {
    handler();
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}
