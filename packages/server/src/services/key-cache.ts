import { LRUCache } from 'lru-cache';
import type { ApiKey } from '../domain.js';
import { isUnavailable } from '../store/unavailable.js';

export interface KeyCacheOptions {
  /** Most records held; `0` turns the cache off (every verification reads the database). */
  maxEntries: number;
  /** How long a found record is trusted without asking the database. */
  ttlMs: number;
  /** How long a miss ("no such key") is remembered. */
  negativeTtlMs: number;
  /** How long past its freshness a record may still answer while the database is unreachable. */
  staleTtlMs: number;
  /**
   * After the database was found unreachable, how long stale records answer without asking it again
   * (default 1 s); a key with no stale record still asks.
   */
  outageRetryMs?: number;
  now?: () => number;
}

export interface KeyCacheStats {
  size: number;
  hits: number;
  misses: number;
  /** Answers given from a record past its freshness because the database could not be reached. */
  stale: number;
}

/**
 * Key records by SHA-256 key hash (never by plaintext). A record is fresh while it is younger than its
 * freshness AND the cache is live — i.e. the invalidation channel is connected, so no change can have
 * been missed. Entries that are not fresh are kept (within the LRU bound) to answer during an outage.
 */
export interface KeyCache {
  /**
   * The fresh entry for `hash`, without waiting: the record, `null` for a remembered miss, or `undefined`
   * when there is nothing fresh (then call {@link get}). The hot path of every verification, which passes
   * the time it has already read as `at`.
   */
  fresh(hash: string, at?: number): ApiKey | null | undefined;
  /**
   * The record for `hash`: the cached one when fresh, else from `load` (one load per hash at a time).
   * When `load` fails because the database is unreachable, a cached record within the stale window.
   */
  get(hash: string, load: () => Promise<ApiKey | undefined>): Promise<ApiKey | undefined>;
  /** Whether a key record (not a remembered miss) is held for `hash`, fresh or not. Changes no order or count. */
  holds(hash: string): boolean;
  /** Forgets `hash` now, including any load in flight (its result is returned but not kept). */
  invalidate(hash: string): void;
  /**
   * Whether invalidation messages are arriving. Going live starts a new epoch: every entry cached before
   * is no longer fresh, since changes made while not live may have been missed.
   */
  setLive(live: boolean): void;
  clear(): void;
  stats(): KeyCacheStats;
}

interface Entry {
  /** `null` remembers that no key has this hash. */
  key: ApiKey | null;
  /** When the load that produced this entry started (a change committed after it is not in it). */
  at: number;
  epoch: number;
}

interface Flight {
  promise: Promise<ApiKey | undefined>;
  invalidated: boolean;
}

// lru-cache holds the bounded LRU; freshness is kept here because it depends on the invalidation
// channel (epochs), on the entry kind (negative entries are brief) and on outages (stale-if-error),
// none of which lru-cache's single TTL and fetch() express.
export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const now = options.now ?? Date.now;
  const lru = options.maxEntries > 0 ? new LRUCache<string, Entry>({ max: options.maxEntries }) : null;
  const inflight = new Map<string, Flight>();
  let epoch = 0;
  let live = true;
  // After a load failed because the database was unreachable: until then, a record within its stale window
  // answers without asking again. A database that stops answering without refusing makes each attempt wait
  // for a timeout, which every verification of a stale key would otherwise pay.
  let downUntil = 0;
  let hits = 0;
  let misses = 0;
  let stale = 0;

  const freshFor = (entry: Entry) => (entry.key === null ? options.negativeTtlMs : options.ttlMs);
  /** The entry for `hash` if it may still answer during an outage. */
  const staleEntry = (hash: string): Entry | undefined => {
    const old = lru?.peek(hash);
    return old !== undefined && now() - old.at < freshFor(old) + options.staleTtlMs ? old : undefined;
  };

  function start(hash: string, load: () => Promise<ApiKey | undefined>): Flight {
    const at = now();
    const startedIn = epoch;
    const flight: Flight = { promise: Promise.resolve(undefined), invalidated: false };
    flight.promise = load().then(
      (key) => {
        downUntil = 0;
        if (inflight.get(hash) === flight) inflight.delete(hash);
        if (!flight.invalidated) lru?.set(hash, { key: key ?? null, at, epoch: startedIn });
        return key;
      },
      (error: unknown) => {
        if (inflight.get(hash) === flight) inflight.delete(hash);
        throw error;
      },
    );
    inflight.set(hash, flight);
    return flight;
  }

  function fresh(hash: string, at = now()): ApiKey | null | undefined {
    const entry = lru?.get(hash);
    if (entry === undefined || !live || entry.epoch !== epoch || at - entry.at >= freshFor(entry)) return undefined;
    hits++;
    return entry.key;
  }

  return {
    fresh,

    async get(hash, load) {
      const cached = fresh(hash);
      if (cached !== undefined) return cached ?? undefined;
      misses++;
      const resting = now() < downUntil ? staleEntry(hash) : undefined;
      if (resting !== undefined) {
        stale++;
        return resting.key ?? undefined;
      }
      const flight = inflight.get(hash) ?? start(hash, load);
      try {
        return await flight.promise;
      } catch (error) {
        if (!isUnavailable(error)) throw error;
        downUntil = now() + (options.outageRetryMs ?? 1_000);
        // Peek again: an invalidation during the load removed what must no longer answer.
        const old = staleEntry(hash);
        if (old === undefined) throw error;
        stale++;
        return old.key ?? undefined;
      }
    },

    holds: (hash) => (lru?.peek(hash)?.key ?? null) !== null,

    invalidate(hash) {
      lru?.delete(hash);
      const flight = inflight.get(hash);
      if (flight) {
        flight.invalidated = true;
        inflight.delete(hash);
      }
    },

    setLive(value) {
      // Back in touch: nothing cached before is trusted, and the database is asked again at once.
      if (value && !live) {
        epoch++;
        downUntil = 0;
      }
      live = value;
    },

    clear() {
      lru?.clear();
      for (const flight of inflight.values()) flight.invalidated = true;
      inflight.clear();
    },

    stats: () => ({ size: lru?.size ?? 0, hits, misses, stale }),
  };
}
