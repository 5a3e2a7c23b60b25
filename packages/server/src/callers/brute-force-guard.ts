import { isIPv6 } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { Metrics } from '../metrics.js';
import type { RateLimiter } from '../store/rate-limiter.js';

/** Whether to serve a client, or refuse it (429 with `Retry-After`). */
export type GuardDecision = { blocked: false } | { blocked: true; retryAfterSeconds: number };

/**
 * Limits failed authentications and verifications per client: its address (an IPv6 address by its /64, see
 * {@link addressGroup}), within `scope` when one is given (the verify endpoint's caller key). Only failures are
 * counted, and `check` is a local memory look-up, so valid traffic costs nothing and never waits on Redis.
 */
export interface BruteForceGuard {
  /**
   * Call before doing any work for a client: a blocked client is refused at once (429 + Retry-After). `known`,
   * asked only when the client would be refused or made to wait, says whether its credential is no guess (a
   * key this instance holds, seen before): such a request is neither, so that behind a shared address someone
   * else's guesses never hold up real users, while guessing, which presents keys no one has, stays stopped.
   * A promise when the client has as many look-ups in flight as its budget: it settles once one has ended and
   * the client was checked again (see {@link track}).
   */
  check(address: string | null, scope?: string, known?: () => boolean): GuardDecision | Promise<GuardDecision>;
  /**
   * Whether any client is blocked on this instance now or was recently, or has a look-up in flight: when not,
   * `check` would say "not blocked" for every client, so a caller may skip building the client's name.
   */
  blocksAny(): boolean;
  /** Call after a failed authentication or verification by this client. */
  fail(address: string | null, scope?: string): Promise<void>;
  /**
   * Call when a look-up starts whose outcome is not known yet (a credential not in the cache); call what it
   * returns when it ends. Failures are counted only once known, so while a client has as many look-ups in
   * flight as its budget, `check` makes it wait for one to end (and refuses it once many wait): a burst sent at
   * once cannot try more than the budget before its failures count, and a burst of valid keys is served.
   */
  track(address: string | null, scope?: string): () => void;
}

export interface BruteForceGuardOptions {
  limiter: RateLimiter;
  /** Failures allowed per client per minute; 0 turns the guard off. */
  failuresPerMinute: number;
  metrics?: Metrics | undefined;
  now?: () => number;
  /** Most clients remembered as blocked at once on this instance. */
  maxBlocked?: number;
}

/**
 * What the guard counts an address as: an IPv6 address by its /64, the block a single host or home is given
 * and may pick any of its 2^64 addresses from (one guess from each would otherwise never be limited); an
 * IPv4 address (IPv4-mapped IPv6 too) as itself. Written out here: it is the one operation needed, and
 * node:net validates but does not expand addresses.
 */
export function addressGroup(address: string): string {
  if (!address.includes(':')) return address;
  const zone = address.indexOf('%');
  const bare = zone >= 0 ? address.slice(0, zone) : address;
  if (!isIPv6(bare)) return address;
  const groups = ipv6Groups(bare);
  // IPv4-mapped (::ffff:a.b.c.d, in any spelling): the IPv4 client it is.
  if (groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff) {
    const [high = 0, low = 0] = groups.slice(6);
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, an embedded IPv4 tail as two groups). */
function ipv6Groups(address: string): number[] {
  const parse = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((group) => {
          if (!group.includes('.')) return [Number.parseInt(group, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = group.split('.').map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const [head = '', tail] = address.split('::');
  const before = parse(head);
  if (tail === undefined) return before;
  const after = parse(tail);
  return [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
}

const nameOf = (address: string | null, scope: string | undefined): string => {
  const group = address === null ? 'unknown' : addressGroup(address);
  return scope === undefined ? group : `${scope}|${group}`;
};

const WINDOW_SECONDS = 60;
const NOT_BLOCKED: GuardDecision = { blocked: false };
// Refused for having too many look-ups in flight and waiting: they end within moments.
const BUSY: GuardDecision = { blocked: true, retryAfterSeconds: 1 };
/** Requests a client may have waiting for a look-up slot: this many per look-up it may have in flight, at least MIN_WAITING. */
const WAITING_PER_SLOT = 4;
const MIN_WAITING = 100;
const untracked = () => {};

export function createBruteForceGuard(options: BruteForceGuardOptions): BruteForceGuard {
  const { limiter, failuresPerMinute, metrics } = options;
  const now = options.now ?? Date.now;
  // Failures are counted in the shared limiter (Redis when configured); the verdict "blocked until T" is
  // remembered here, so checking costs no round trip. Another instance learns of a block at the client's
  // next failure there: at most one extra attempt per instance. What the limiter last said of a client not
  // blocked (failures it may still make, until when) bounds its look-ups in flight.
  const blockedUntil = new LRUCache<string, number>({ max: options.maxBlocked ?? 100_000 });
  const failuresLeft = new LRUCache<string, { remaining: number; resetAt: number }>({ max: options.maxBlocked ?? 100_000 });
  const rule = { limit: failuresPerMinute, windowSeconds: WINDOW_SECONDS };
  const maxWaiting = Math.max(MIN_WAITING, failuresPerMinute * WAITING_PER_SLOT);
  const inFlight = new Map<string, number>();
  // Requests waiting for one of a client's look-ups to end, in order of arrival.
  const waiting = new Map<string, (() => void)[]>();
  // All of them check again: some go ahead (as many as there are slots), the rest wait again or, once the
  // client is blocked, are refused. (Letting go only as many as slots freed would leave waiting for good those
  // behind a request that, blocked, started no look-up whose end would let them go.)
  const release = (client: string): void => {
    const queue = waiting.get(client);
    if (queue === undefined) return;
    waiting.delete(client);
    for (const next of queue) next();
  };

  /** The decision for a client now, or a wait for one of its look-ups to end (then decide again). */
  function decide(address: string | null, scope: string | undefined, known: (() => boolean) | undefined): GuardDecision | Promise<void> {
    if (failuresPerMinute === 0 || (blockedUntil.size === 0 && inFlight.size === 0)) return NOT_BLOCKED;
    const client = nameOf(address, scope);
    const until = blockedUntil.get(client);
    if (until !== undefined) {
      const msLeft = until - now();
      if (msLeft > 0) {
        if (known?.()) return NOT_BLOCKED;
        metrics?.bruteForceBlocks.inc();
        // `reset` is whole seconds (rounded up), so the block may outlast the window by under a second.
        return { blocked: true, retryAfterSeconds: Math.min(WINDOW_SECONDS, Math.ceil(msLeft / 1000)) };
      }
      blockedUntil.delete(client);
    }
    const flying = inFlight.get(client);
    if (flying === undefined) return NOT_BLOCKED;
    // Each look-up in flight may be one of the failures the client may still make in its window.
    const standing = failuresLeft.get(client);
    const left = standing !== undefined && standing.resetAt > now() ? standing.remaining : failuresPerMinute;
    if (flying < left || known?.()) return NOT_BLOCKED;
    const queue = waiting.get(client) ?? [];
    if (queue.length >= maxWaiting) {
      metrics?.bruteForceBlocks.inc();
      return BUSY;
    }
    waiting.set(client, queue);
    return new Promise<void>((resolve) => queue.push(resolve));
  }

  async function decideOnceFree(
    wait: Promise<void>,
    address: string | null,
    scope: string | undefined,
    known: (() => boolean) | undefined,
  ): Promise<GuardDecision> {
    for (let next = wait; ; ) {
      await next;
      const decided = decide(address, scope, known);
      if (!(decided instanceof Promise)) return decided;
      next = decided;
    }
  }

  return {
    check(address, scope, known) {
      const decided = decide(address, scope, known);
      return decided instanceof Promise ? decideOnceFree(decided, address, scope, known) : decided;
    },
    blocksAny: () => failuresPerMinute !== 0 && (blockedUntil.size > 0 || inFlight.size > 0),
    async fail(address, scope) {
      if (failuresPerMinute === 0) return;
      const client = nameOf(address, scope);
      const counted = await limiter.consume(`bf:${client}`, rule, 1);
      if (!counted.allowed || counted.remaining === 0) blockedUntil.set(client, counted.reset * 1000);
      else failuresLeft.set(client, { remaining: counted.remaining, resetAt: counted.reset * 1000 });
    },
    track(address, scope) {
      if (failuresPerMinute === 0) return untracked;
      const client = nameOf(address, scope);
      inFlight.set(client, (inFlight.get(client) ?? 0) + 1);
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        const left = (inFlight.get(client) ?? 1) - 1;
        if (left > 0) inFlight.set(client, left);
        else inFlight.delete(client);
        // By now this look-up's failure, if it was one, has been counted.
        release(client);
      };
    },
  };
}
