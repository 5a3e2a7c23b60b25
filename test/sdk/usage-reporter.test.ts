import { createKeywardAuth, createUsageReporter, generateKey, KeywardError, type UsageEvent } from '@keyward/sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { stubKeyward, validAnswer } from './stub-keyward.js';

const event = (i: number): UsageEvent => ({ key_id: `k${i}`, outcome: 'VALID', endpoint: `/r/${i}`, method: 'GET', status_code: 200 });

/** A stand-in for `KeywardClient.reportUsage` that records batches and fails as told. */
function fakeClient() {
  const batches: UsageEvent[][] = [];
  const state = { fail: null as null | KeywardError };
  return {
    batches,
    state,
    client: {
      async reportUsage(events: UsageEvent[]) {
        if (state.fail) throw state.fail;
        batches.push(events);
        return { accepted: events.length };
      },
    },
  };
}

const problem = (status: number) => new KeywardError({ type: 'about:blank', title: 'x', status, code: `HTTP_${status}` });

afterEach(() => {
  vi.useRealTimers();
});

describe('SDK usage reporter', () => {
  it('sends a full batch at once, the rest on flush, in batches of at most batchSize', async () => {
    const { client, batches } = fakeClient();
    const reporter = createUsageReporter(client, { batchSize: 3, flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 3; i++) reporter.record(event(i));
    await vi.waitFor(() => expect(batches.map((b) => b.length)).toEqual([3]));
    // Fewer than a batch waits for the interval (or a flush).
    for (let i = 3; i < 5; i++) reporter.record(event(i));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(reporter.buffered()).toBe(2);
    for (let i = 5; i < 10; i++) reporter.record(event(i));
    await reporter.flush();
    expect(batches.flat().map((e) => e.key_id)).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`));
    expect(Math.max(...batches.map((b) => b.length))).toBe(3);
    await reporter.close();
  });

  it('sends only full batches while busy: events arriving during a POST wait for the next full batch or the timer', async () => {
    const batches: UsageEvent[][] = [];
    let release: () => void = () => {};
    const client = {
      reportUsage(events: UsageEvent[]) {
        batches.push(events);
        return new Promise<{ accepted: number }>((resolve) => {
          release = () => resolve({ accepted: events.length });
        });
      },
    };
    const reporter = createUsageReporter(client, { batchSize: 3, flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 3; i++) reporter.record(event(i));
    await vi.waitFor(() => expect(batches).toHaveLength(1));
    // A trickle during the POST: before, it went out as a small batch of its own the moment the POST ended.
    reporter.record(event(3));
    reporter.record(event(4));
    release();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(batches.map((b) => b.length)).toEqual([3]);
    expect(reporter.buffered()).toBe(2);
    const flushed = reporter.flush();
    await vi.waitFor(() => expect(batches).toHaveLength(2));
    release();
    await flushed;
    expect(batches.map((b) => b.length)).toEqual([3, 2]);
  });

  it('never sends more than 500 events in one report', async () => {
    const { client, batches } = fakeClient();
    const reporter = createUsageReporter(client, { batchSize: 10_000, flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 1_200; i++) reporter.record(event(i));
    await reporter.flush();
    expect(batches.map((b) => b.length)).toEqual([500, 500, 200]);
  });

  it('flushes on its interval, with no timer left while idle', async () => {
    vi.useFakeTimers();
    const { client, batches } = fakeClient();
    const reporter = createUsageReporter(client, { flushIntervalMs: 1_000 });
    expect(vi.getTimerCount()).toBe(0);
    reporter.record(event(1));
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(batches).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([[event(1)]]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('is bounded: beyond maxBuffered, events are dropped and counted', async () => {
    const { client, state, batches } = fakeClient();
    state.fail = KeywardError.network(new TypeError('fetch failed'));
    const reporter = createUsageReporter(client, { batchSize: 5, maxBuffered: 10, flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 25; i++) reporter.record(event(i));
    await reporter.flush();
    expect(reporter.buffered()).toBe(10);
    expect(reporter.dropped()).toBe(15);
    state.fail = null;
    await reporter.close();
    expect(batches.flat()).toHaveLength(10);
    expect(reporter.buffered()).toBe(0);
  });

  it('keeps a batch Keyward could not take for now (network, 5xx, 429) and drops one it refused (4xx)', async () => {
    const { client, state, batches } = fakeClient();
    const errors: KeywardError[] = [];
    const reporter = createUsageReporter(client, { flushIntervalMs: 3_600_000, onError: (e) => errors.push(e) });
    for (const fail of [KeywardError.network(new Error('down')), problem(503), problem(429)]) {
      state.fail = fail;
      reporter.record(event(batches.length));
      await reporter.flush();
      expect(reporter.dropped()).toBe(0);
    }
    expect(reporter.buffered()).toBe(3);
    state.fail = problem(403);
    await reporter.flush();
    expect(reporter.dropped()).toBe(3);
    expect(errors.map((e) => e.status)).toEqual([0, 503, 429, 403]);
    state.fail = null;
    reporter.record(event(9));
    await reporter.close();
    expect(batches).toEqual([[event(9)]]);
  });
});

describe('SDK middleware core: usage reporting', () => {
  it('records through the core, clipping long fields, and sends nothing with usage: false', async () => {
    const keyward = stubKeyward();
    const key = generateKey('kw');
    keyward.answers[key] = validAnswer({ key_id: 'k1' });
    const auth = createKeywardAuth({ baseUrl: 'http://keyward.test', apiKey: generateKey('kw'), fetch: keyward.fetch });
    const decision = await auth.authorize({ authorization: `Bearer ${key}`, path: '/x' });
    expect(decision.outcome).toEqual({ keyId: 'k1', code: 'VALID' });
    auth.record(decision.outcome ?? { keyId: null, code: 'VALID' }, {
      endpoint: `/x/${'a'.repeat(3000)}?secret=1`,
      method: 'GET',
      statusCode: 200,
      ipAddress: '203.0.113.9',
      userAgent: 'u'.repeat(2000),
      responseTimeMs: 1.6,
    });
    await auth.close();
    const [sent] = keyward.usage.flat();
    expect(sent).toMatchObject({
      key_id: 'k1',
      outcome: 'VALID',
      method: 'GET',
      status_code: 200,
      ip_address: '203.0.113.9',
      response_time_ms: 2,
    });
    expect(sent?.endpoint).toHaveLength(1024);
    expect(sent?.endpoint).not.toContain('?');
    expect(sent?.user_agent).toHaveLength(512);

    const off = stubKeyward();
    const quiet = createKeywardAuth({ baseUrl: 'http://keyward.test', apiKey: generateKey('kw'), fetch: off.fetch, usage: false });
    quiet.record({ keyId: 'k1', code: 'VALID' }, { endpoint: '/x', method: 'GET', statusCode: 200, responseTimeMs: 1 });
    await quiet.close();
    expect(off.usage).toHaveLength(0);
  });
});
