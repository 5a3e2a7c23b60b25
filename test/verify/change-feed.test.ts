import { describe, expect, it } from 'vitest';
import { type ChangeEvent, createChangeFeed } from '../../packages/server/src/verification/change-feed.js';
import type { KeyChangeListener } from '../../packages/server/src/verification/invalidation.js';

// The changes feed on its own, over a stand-in invalidation channel the test drives.

function channel(initiallyLive = true) {
  const listeners = new Set<KeyChangeListener>();
  let live = initiallyLive;
  return {
    live: () => live,
    subscribe(listener: KeyChangeListener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    changed: (hash: string) => {
      for (const listener of listeners) listener.changed(hash);
    },
    turn(value: boolean) {
      live = value;
      for (const listener of listeners) listener.live(value);
    },
    listeners,
  };
}

const hash = (n: number) => n.toString(16).padStart(64, '0');
const hashes = (events: ChangeEvent[] | null) => events?.map((e) => (e.type === 'key.changed' ? e.keyHash : 'reset'));

describe('the changes feed', () => {
  it('numbers each change in order, names its boot in every id, and tells subscribers', () => {
    const source = channel();
    const feed = createChangeFeed({ invalidation: source, streamId: 'boot-1' });
    const heard: ChangeEvent[] = [];
    feed.subscribe({ event: (e) => heard.push(e), degraded: () => {} });
    expect(feed.position()).toBe('boot-1:0');
    source.changed(hash(1));
    source.changed(hash(2));
    expect(heard).toEqual([
      { seq: 1, type: 'key.changed', keyHash: hash(1) },
      { seq: 2, type: 'key.changed', keyHash: hash(2) },
    ]);
    expect(feed.position()).toBe('boot-1:2');
  });

  it('tells only SHA-256 hashes (an imported key not yet upgraded has a bcrypt hash no client holds)', () => {
    const source = channel();
    const feed = createChangeFeed({ invalidation: source, streamId: 's' });
    source.changed('$2b$10$abcdefghijklmnopqrstuuN8e0w8wq1nH6Zr6b5b5b5b5b5b5b5b5');
    expect(feed.position()).toBe('s:0');
    source.changed(hash(1));
    expect(feed.position()).toBe('s:1');
  });

  it('gives a random stream id per feed', () => {
    const a = createChangeFeed({ invalidation: channel() });
    const b = createChangeFeed({ invalidation: channel() });
    expect(a.streamId).not.toBe(b.streamId);
  });

  it('replays what came after a held id; null for another boot, a future id, garbage or one older than the ring', () => {
    const source = channel();
    const feed = createChangeFeed({ invalidation: source, streamId: 'boot-1', capacity: 3 });
    expect(feed.since('boot-1:0')).toEqual([]);
    for (let n = 1; n <= 5; n++) source.changed(hash(n));
    // Events 3, 4 and 5 are held.
    expect(hashes(feed.since('boot-1:2'))).toEqual([hash(3), hash(4), hash(5)]);
    expect(hashes(feed.since('boot-1:4'))).toEqual([hash(5)]);
    expect(feed.since('boot-1:5')).toEqual([]);
    expect(feed.since('boot-1:1')).toBeNull(); // event 2 is gone
    expect(feed.since('boot-1:0')).toBeNull();
    expect(feed.since('boot-1:6')).toBeNull();
    expect(feed.since('boot-2:4')).toBeNull();
    expect(feed.since('garbage')).toBeNull();
    expect(feed.since('boot-1:')).toBeNull();
  });

  it('tells subscribers degraded when the channel goes down, and adds a numbered reset when it comes back', () => {
    const source = channel();
    const feed = createChangeFeed({ invalidation: source, streamId: 's' });
    const heard: string[] = [];
    feed.subscribe({ event: (e) => heard.push(`${e.type}:${e.seq}`), degraded: () => heard.push('degraded') });
    source.changed(hash(1));
    source.turn(false);
    expect(feed.live()).toBe(false);
    source.turn(false); // no news: told once
    source.turn(true);
    source.turn(true);
    expect(feed.live()).toBe(true);
    expect(heard).toEqual(['key.changed:1', 'degraded', 'reset:2']);
    // A client that left before the outage is reset by the replay.
    expect(hashes(feed.since('s:1'))).toEqual(['reset']);
  });

  it('starts as the channel is (a channel not up yet is degraded), and stops following it on close', () => {
    const source = channel(false);
    const feed = createChangeFeed({ invalidation: source });
    expect(feed.live()).toBe(false);
    const heard: ChangeEvent[] = [];
    const stop = feed.subscribe({ event: (e) => heard.push(e), degraded: () => {} });
    source.turn(true);
    expect(heard.map((e) => e.type)).toEqual(['reset']);
    stop();
    source.changed(hash(1));
    expect(heard).toHaveLength(1);
    feed.close();
    expect(source.listeners.size).toBe(0);
  });
});
