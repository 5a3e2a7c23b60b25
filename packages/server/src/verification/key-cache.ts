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
  /**
   * How long a look-up waits for the database when a record within the stale window could answer (default
   * 100 ms). A database that is slow, or silent until its timeout, does not hold the answer: the record
   * answers, and the load, left running, refreshes it (or marks the database unreachable).
   */
  staleWaitMs?: number;
  /** Called when {@link KeyCache.setLive} changes whether invalidation messages are arriving. */
  onLiveChange?: (live: boolean) => void;
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
   * When `load` fails because the database is unreachable, or does not answer within `staleWaitMs`, a cached
   * record within the stale window.
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
  /** Resolves once the load has run `staleWaitMs`; made when a caller has a stale record to fall back on. */
  overdue?: Promise<undefined>;
  timer?: NodeJS.Timeout;
}

type Settled = { key: ApiKey | undefined } | { error: unknown };

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
        clearTimeout(flight.timer);
        downUntil = 0;
        if (inflight.get(hash) === flight) inflight.delete(hash);
        if (!flight.invalidated) lru?.set(hash, { key: key ?? null, at, epoch: startedIn });
        return key;
      },
      (error: unknown) => {
        clearTimeout(flight.timer);
        if (inflight.get(hash) === flight) inflight.delete(hash);
        // Here, not in `get`: nobody may be waiting for a load that outran `staleWaitMs`.
        if (isUnavailable(error)) downUntil = now() + (options.outageRetryMs ?? 1_000);
        throw error;
      },
    );
    inflight.set(hash, flight);
    return flight;
  }

  function overdue(flight: Flight): Promise<undefined> {
    flight.overdue ??= new Promise((resolve) => {
      flight.timer = setTimeout(resolve, options.staleWaitMs ?? 100, undefined);
      flight.timer.unref();
    });
    return flight.overdue;
  }

  /** A record from the stale window, counted; peeked again, as an invalidation meanwhile removed what must not answer. */
  function staleAnswer(hash: string): Entry | undefined {
    const old = staleEntry(hash);
    if (old !== undefined) stale++;
    return old;
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
      const resting = staleEntry(hash);
      if (resting !== undefined && now() < downUntil) {
        stale++;
        return resting.key ?? undefined;
      }
      const flight = inflight.get(hash) ?? start(hash, load);
      if (resting !== undefined) {
        // The database gets `staleWaitMs` to answer; a stale record answers a slower one (stale-while-revalidate,
        // only while the database is failing to answer).
        const settled: Settled | undefined = await Promise.race([
          flight.promise.then(
            (key): Settled => ({ key }),
            (error: unknown): Settled => ({ error }),
          ),
          overdue(flight),
        ]);
        if (settled !== undefined && 'key' in settled) return settled.key;
        if (settled !== undefined && !isUnavailable(settled.error)) throw settled.error;
        const old = staleAnswer(hash);
        if (old !== undefined) return old.key ?? undefined;
        if (settled !== undefined) throw settled.error;
        // Invalidated while waiting: nothing stale may answer, so the load decides.
      }
      try {
        return await flight.promise;
      } catch (error) {
        if (!isUnavailable(error)) throw error;
        const old = staleAnswer(hash);
        if (old === undefined) throw error;
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
      const changed = value !== live;
      live = value;
      if (changed) options.onLiveChange?.(value);
    },

    clear() {
      lru?.clear();
      for (const flight of inflight.values()) flight.invalidated = true;
      inflight.clear();
    },

    stats: () => ({ size: lru?.size ?? 0, hits, misses, stale }),
  };
}
