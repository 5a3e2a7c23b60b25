import { randomUUID } from 'node:crypto';
import type { Invalidation } from './invalidation.js';

/**
 * One numbered event of an instance's changes feed: a key changed, or the instance's invalidation channel came
 * back after an outage (changes made meanwhile may have been missed, so a client drops everything it cached).
 */
export type ChangeEvent = { seq: number; type: 'key.changed'; keyHash: string } | { seq: number; type: 'reset' };

/** Someone following the feed (an open `GET /v1/keys/changes` stream). */
export interface ChangeSubscriber {
  event(event: ChangeEvent): void;
  /** The invalidation channel went down: until the `reset` that follows, changes may go unseen. */
  degraded(): void;
}

/**
 * Every key change this instance learns of (its own and, through its invalidation channel, every other
 * instance's), numbered, for SDK clients that keep a cache. Numbers restart with each boot, so an event id
 * names the boot too (`<stream_id>:<seq>`): an id from another boot or another instance cannot be resumed.
 * Holds key hashes only, never a key.
 */
export interface ChangeFeed {
  /** This boot's id: random, the first part of every event id. */
  readonly streamId: string;
  /** The id of the newest event (`<stream_id>:0` before the first). */
  position(): string;
  /** Whether the invalidation channel is up (changes from other instances are arriving). */
  live(): boolean;
  /**
   * The events after `lastEventId`, oldest first; `null` when they cannot all be given (an id of another boot
   * or instance, one not handed out yet, or one older than the ring buffer holds).
   */
  since(lastEventId: string): ChangeEvent[] | null;
  /** Hears every event and outage from now on; returns the function that stops it. */
  subscribe(subscriber: ChangeSubscriber): () => void;
  /** Stops following the invalidation channel. */
  close(): void;
}

export interface ChangeFeedOptions {
  invalidation: Pick<Invalidation, 'live' | 'subscribe'>;
  /** Events kept for resuming streams (default 10 000). */
  capacity?: number;
  streamId?: string;
}

const EVENT_ID = /^(.+):(\d{1,15})$/;
/** What clients cache keys by. An imported key not yet upgraded still has its bcrypt hash: no client holds that. */
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function createChangeFeed({ invalidation, capacity = 10_000, streamId = randomUUID() }: ChangeFeedOptions): ChangeFeed {
  // A ring buffer: the event numbered `seq` sits at `seq % capacity` while it is among the newest `capacity`.
  const ring: (ChangeEvent | undefined)[] = new Array(capacity);
  const subscribers = new Set<ChangeSubscriber>();
  let seq = 0;
  let live = invalidation.live();

  function append(event: ChangeEvent): void {
    ring[event.seq % capacity] = event;
    seq = event.seq;
    // A copy: a subscriber may leave (its stream ends) while being told.
    for (const subscriber of [...subscribers]) subscriber.event(event);
  }

  const stop = invalidation.subscribe({
    changed: (keyHash) => {
      if (SHA256_HEX.test(keyHash)) append({ seq: seq + 1, type: 'key.changed', keyHash });
    },
    live: (up) => {
      if (up === live) return;
      live = up;
      if (up) append({ seq: seq + 1, type: 'reset' });
      else for (const subscriber of [...subscribers]) subscriber.degraded();
    },
  });

  return {
    streamId,
    position: () => `${streamId}:${seq}`,
    live: () => live,
    since(lastEventId) {
      const match = EVENT_ID.exec(lastEventId);
      if (match === null || match[1] !== streamId) return null;
      const after = Number(match[2]);
      // Every event after `after` must still be held: the oldest held is `seq - capacity + 1`.
      if (after > seq || after < seq - capacity) return null;
      const events: ChangeEvent[] = [];
      for (let n = after + 1; n <= seq; n++) {
        const event = ring[n % capacity];
        if (event?.seq !== n) return null;
        events.push(event);
      }
      return events;
    },
    subscribe(subscriber) {
      subscribers.add(subscriber);
      return () => subscribers.delete(subscriber);
    },
    close() {
      stop();
      subscribers.clear();
    },
  };
}
