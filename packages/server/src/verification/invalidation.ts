import { Redis } from 'ioredis';
import pg from 'pg';
import type { ApiKey } from '../domain.js';
import type { Metrics } from '../metrics.js';
import type { Db } from '../store/database.js';
import type { KeyCache } from './key-cache.js';
import {
  KEY_CHANGED_CHANNEL,
  type KeyChangeReader,
  listenKeyChanged,
  notifyKeyChanged,
  openKeyChangeReader,
  pingListener,
  pruneKeyChanges,
  recordKeyChange,
} from './key-events.repository.js';

/**
 * How changes reach other instances: Redis pub/sub, PostgreSQL LISTEN/NOTIFY, the change log of a SQLite file
 * (every process on that file: `keyward serve`, `keyward gateway`, the CLI), or nowhere (an in-memory database).
 */
export type Transport = 'redis' | 'postgres' | 'sqlite' | 'local';

/**
 * Keeps every instance's key cache in step with the database. Messages carry a key hash only — never a
 * key, never a record — and only say "look this one up again".
 */
export interface Invalidation {
  readonly transport: Transport;
  /** After a committed change to a key: forget it here at once and tell every other instance. */
  keyChanged(key: Pick<ApiKey, 'keyHash'>): void;
  /** Whether messages from other instances are arriving (always true for `local`). */
  live(): boolean;
  /**
   * Hears every key change this instance learns of, its own and other instances', once its cache has dropped
   * the key; and each time the channel goes down or comes back. Returns the function that stops it.
   */
  subscribe(listener: KeyChangeListener): () => void;
  /** Waits for announcements still being sent, then disconnects. */
  close(): Promise<void>;
}

/** What {@link Invalidation.subscribe} tells: the changes feed (`GET /v1/keys/changes`) listens. */
export interface KeyChangeListener {
  /** A key changed, here or on another instance: its stored hash (SHA-256 hex; an imported key's bcrypt hash until first used). */
  changed(keyHash: string): void;
  /** The channel went down (`false`: changes from other instances may be missed) or came back (`true`). */
  live(live: boolean): void;
}

/** A pub/sub channel for changed key hashes. */
interface Channel {
  publish(hash: string): Promise<void>;
  close(): Promise<void>;
}

interface Listener {
  message(hash: string): void;
  /** `true` once subscribed (again); `false` when messages may be missed. */
  live(live: boolean): void;
}

const HASH = /^[0-9a-f]{64}$/;
const RETRY_MAX_MS = 2_000;
const HEARTBEAT_MS = 5_000;
/** How long a heartbeat may go unanswered before the connection counts as lost. */
const HEARTBEAT_TIMEOUT_MS = 2_000;
const noop = () => {};

function redisChannel(url: string, name: string, listener: Listener, onError: () => void): Channel {
  const retryStrategy = (times: number) => Math.min(times * 100, RETRY_MAX_MS);
  // Subscribing by hand on every `ready` (instead of ioredis's autoResubscribe) tells us exactly when the
  // subscription is back, which is when the cache may trust its entries again.
  const sub = new Redis(url, { autoResubscribe: false, maxRetriesPerRequest: null, retryStrategy, connectionName: `${name}:sub` });
  // A publish on a connection that went silent fails after a while (and is sent again) rather than waiting for
  // good, which would also hold up close().
  const pub = new Redis(url, {
    maxRetriesPerRequest: 2,
    commandTimeout: HEARTBEAT_TIMEOUT_MS,
    retryStrategy,
    connectionName: `${name}:pub`,
  });
  // ioredis reconnects by itself (an unhandled 'error' event would crash the process); errors are counted.
  sub.on('error', onError);
  pub.on('error', onError);
  sub.on('close', () => listener.live(false));
  sub.on('ready', () => {
    sub.subscribe(name).then(
      () => listener.live(true),
      () => sub.disconnect(true),
    );
  });
  sub.on('message', (channel: string, payload: string) => {
    if (channel === name && HASH.test(payload)) listener.message(payload);
  });
  // A connection that stops carrying packets without closing (a dead host, a dropped route) is only noticed
  // by using it: TCP keepalive takes hours. A subscriber may PING; no answer in time and it reconnects, and
  // until it has subscribed again the cache trusts nothing.
  const heartbeat = setInterval(() => {
    if (sub.status !== 'ready') return;
    // Only the connection pinged: once it has closed, ioredis is already reconnecting.
    const lost = () => sub.status === 'ready' && sub.disconnect(true);
    const timer = setTimeout(lost, HEARTBEAT_TIMEOUT_MS).unref();
    sub.ping().then(
      () => clearTimeout(timer),
      () => {
        clearTimeout(timer);
        lost();
      },
    );
  }, HEARTBEAT_MS).unref();
  return {
    async publish(hash) {
      await pub.publish(name, hash);
    },
    async close() {
      clearInterval(heartbeat);
      sub.disconnect();
      await pub.quit().catch(() => pub.disconnect());
    },
  };
}

function postgresChannel(url: string, db: Db, listener: Listener): Channel {
  let current: { client: pg.Client; state: { dead: boolean } } | null = null;
  let closed = false;
  let attempts = 0;
  let retry: NodeJS.Timeout | undefined;

  function lost(c: pg.Client, state: { dead: boolean }): void {
    if (state.dead) return;
    state.dead = true;
    if (current?.client === c) current = null;
    listener.live(false);
    c.end().catch(noop);
    if (!closed) retry = setTimeout(connect, Math.min(2 ** attempts++ * 50, RETRY_MAX_MS)).unref();
  }

  function connect(): void {
    // A dedicated connection: LISTEN holds it for the process's lifetime, so it cannot come from the pool.
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000, keepAlive: true });
    const state = { dead: false };
    c.on('error', () => lost(c, state));
    c.on('end', () => lost(c, state));
    c.on('notification', (n) => {
      if (n.channel === KEY_CHANGED_CHANNEL && n.payload !== undefined && HASH.test(n.payload)) listener.message(n.payload);
    });
    c.connect()
      .then(() => listenKeyChanged(c))
      .then(() => {
        if (closed) return void c.end().catch(noop);
        current = { client: c, state };
        attempts = 0;
        listener.live(true);
      })
      .catch(() => lost(c, state));
  }

  // A connection cut without a FIN (a dead host, a dropped route) is only noticed by using it (as for Redis).
  const heartbeat = setInterval(() => {
    const listening = current;
    if (listening === null) return;
    const timer = setTimeout(() => lost(listening.client, listening.state), HEARTBEAT_TIMEOUT_MS).unref();
    pingListener(listening.client).then(
      () => clearTimeout(timer),
      () => {
        clearTimeout(timer);
        lost(listening.client, listening.state);
      },
    );
  }, HEARTBEAT_MS).unref();

  connect();
  return {
    async publish(hash) {
      await notifyKeyChanged(db.db, hash);
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(heartbeat);
      await current?.client.end().catch(noop);
    },
  };
}

/** How often a SQLite process looks for changes committed by the others. */
const SQLITE_POLL_MS = 25;
/** Change-log rows read per look; more are read at the next one. */
const SQLITE_BATCH = 5_000;
/** How long change-log rows are kept: far longer than any reader lags, unless its process was stopped. */
const SQLITE_KEEP_MS = 5 * 60_000;
const SQLITE_PRUNE_EVERY_MS = 60_000;
/** How long the change log may stay unreadable before the cache stops trusting its entries. */
const SQLITE_FAIL_AFTER_MS = 1_000;

/**
 * SQLite has no NOTIFY. A change is a row in `key_changes`; every process polls its own connection's
 * `data_version` (a read of shared memory that moves only when another connection has committed) and, when it
 * moved, reads the rows after the last one it saw. A verification itself does no I/O. SQLite has one writer at
 * a time, so sequence numbers are committed in order and a reader that has seen N has seen all before it.
 */
function sqliteChannel(db: Db, path: string, listener: Listener): Channel {
  const reader: KeyChangeReader = openKeyChangeReader(path);
  let last: number | null = null;
  let version: number | null = null;
  let failingSince: number | null = null;
  let lastPrune = 0;
  let up = false;
  // Only transitions are passed on: going live clears the expected echoes and starts a new cache epoch.
  const setUp = (value: boolean) => {
    if (value !== up) listener.live(value);
    up = value;
  };

  function poll(): void {
    try {
      const moved = reader.dataVersion();
      if (last === null) {
        // Starting (or after an outage): the cache holds nothing from before, so earlier changes do not matter.
        last = reader.latest();
        version = moved;
        failingSince = null;
        setUp(true);
        return;
      }
      if (moved === version) return;
      const rows = reader.since(last, SQLITE_BATCH);
      // A full batch may have more behind it: look again at the next tick even if nothing else is committed.
      version = rows.length === SQLITE_BATCH ? null : moved;
      // Rows after `last` pruned before they were read (this process was stopped for minutes): changes may have
      // been missed, so nothing cached is trusted (going live again starts a new epoch).
      if (rows[0] !== undefined && rows[0].seq !== last + 1) setUp(false);
      for (const row of rows) listener.message(row.keyHash);
      last = rows.at(-1)?.seq ?? last;
      failingSince = null;
      setUp(true);
    } catch {
      // Busy or unreadable for a moment: the rows stay in the log and are read at a later tick. Only a lasting
      // failure means changes could go unseen for long.
      const now = Date.now();
      failingSince ??= now;
      if (now - failingSince >= SQLITE_FAIL_AFTER_MS) setUp(false);
    }
  }

  poll();
  const timer = setInterval(poll, SQLITE_POLL_MS).unref();
  return {
    async publish(hash) {
      const at = Date.now();
      await recordKeyChange(db.db, hash, at);
      if (at - lastPrune >= SQLITE_PRUNE_EVERY_MS) {
        lastPrune = at;
        await pruneKeyChanges(db.db, at - SQLITE_KEEP_MS);
      }
    },
    async close() {
      clearInterval(timer);
      reader.close();
    },
  };
}

export interface InvalidationDeps {
  cache: KeyCache;
  db: Db;
  config: { redisUrl: string | null; redisPrefix: string; databaseUrl: string };
  /** Counts errors on the Redis connections (`operation="invalidation"`). */
  metrics?: Pick<Metrics, 'redisErrors'> | undefined;
}

/**
 * Redis pub/sub when `REDIS_URL` is set, else LISTEN/NOTIFY on PostgreSQL, else the change log of the SQLite
 * file (local only for an in-memory database, which no other process can open). Until the subscription is up — and again whenever it drops — the cache treats
 * nothing as fresh, so a missed message can never leave a stale record answering.
 */
export function createInvalidation({ cache, db, config, metrics }: InvalidationDeps): Invalidation {
  const sqlitePath = db.sqlite !== undefined && !db.sqlite.memory ? db.sqlite.name : null;
  const transport: Transport = config.redisUrl
    ? 'redis'
    : db.dialect === 'postgres'
      ? 'postgres'
      : sqlitePath !== null
        ? 'sqlite'
        : 'local';
  let isLive = transport === 'local';
  cache.setLive(isLive);
  // Our own announcements come back to us. This instance already dropped the record when it made the
  // change, so its echo is skipped: it would only throw away a record reloaded since. Messages are alike
  // (a hash), so any one message for the hash is skipped; a later one still arrives after every change
  // that preceded it. Counts are reset whenever the subscription drops, so a lost echo cannot linger.
  const echoes = new Map<string, number>();
  const unexpect = (hash: string) => {
    const n = echoes.get(hash);
    if (n === undefined) return false;
    if (n <= 1) echoes.delete(hash);
    else echoes.set(hash, n - 1);
    return true;
  };
  // Told after the cache: a client told of a change and asking again finds this instance's cache without it.
  const subscribers = new Set<KeyChangeListener>();
  const changed = (hash: string) => {
    for (const subscriber of subscribers) subscriber.changed(hash);
  };
  const listener: Listener = {
    message: (hash) => {
      if (unexpect(hash)) return;
      cache.invalidate(hash);
      changed(hash);
    },
    live: (value) => {
      echoes.clear();
      const moved = value !== isLive;
      isLive = value;
      cache.setLive(value);
      if (moved) for (const subscriber of subscribers) subscriber.live(value);
    },
  };
  const channel: Channel | null =
    transport === 'redis' && config.redisUrl
      ? redisChannel(config.redisUrl, `${config.redisPrefix}key-changed`, listener, () =>
          metrics?.redisErrors.inc({ operation: 'invalidation' }),
        )
      : transport === 'postgres'
        ? postgresChannel(config.databaseUrl, db, listener)
        : transport === 'sqlite' && sqlitePath !== null
          ? sqliteChannel(db, sqlitePath, listener)
          : null;
  const pending = new Set<Promise<void>>();
  // Announcements that failed (this instance could not reach Redis or PostgreSQL just then), sent again until
  // they go through: other instances, whose own subscription may be fine the whole time, would otherwise keep
  // the changed record until it left its freshness (CACHE_TTL_MS).
  const unannounced = new Set<string>();
  let retry: NodeJS.Timeout | null = null;
  let closing = false;
  let closed: Promise<void> | null = null;
  let ended = false;

  function announce(hash: string): void {
    // Once the channel is closed, a publish could wait for good.
    if (channel === null || ended) return;
    if (isLive) echoes.set(hash, (echoes.get(hash) ?? 0) + 1);
    const sent: Promise<void> = channel
      .publish(hash)
      .catch(() => {
        unexpect(hash);
        if (closing) return;
        unannounced.add(hash);
        if (transport === 'redis') metrics?.redisErrors.inc({ operation: 'invalidation' });
        announceLater();
      })
      .then(() => {
        pending.delete(sent);
      });
    pending.add(sent);
  }

  function announceLater(): void {
    if (retry !== null || closing) return;
    retry = setTimeout(() => {
      retry = null;
      const again = [...unannounced];
      unannounced.clear();
      for (const hash of again) announce(hash);
    }, ANNOUNCE_RETRY_MS);
    retry.unref();
  }

  return {
    transport,
    keyChanged(key) {
      const hash = key.keyHash;
      cache.invalidate(hash);
      changed(hash);
      announce(hash);
    },
    live: () => isLive,
    subscribe(subscriber) {
      subscribers.add(subscriber);
      return () => subscribers.delete(subscriber);
    },
    close() {
      closed ??= (async () => {
        // A one-shot CLI command (`keyward keys revoke`) must announce its change before the process exits: what
        // failed is tried once more.
        if (retry !== null) clearTimeout(retry);
        await Promise.all(pending);
        closing = true;
        const again = [...unannounced];
        unannounced.clear();
        for (const hash of again) announce(hash);
        await Promise.all(pending);
        ended = true;
        await channel?.close();
      })();
      return closed;
    },
  };
}

/** How long after a failed announcement it is sent again (and again, until it goes through). */
const ANNOUNCE_RETRY_MS = 500;
