import { once } from 'node:events';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../packages/server/src/callers/principal.js';
import { EXPORT_LIMITS, EXPORT_RETRY_AFTER_SECONDS, type UsageEvent } from '../../packages/server/src/usage/events.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';
import { JWT_ENV, signIn } from '../users/tokens.js';

// Exports (GET /v1/usage/events?format=csv|jsonl) hold the database for as long as a download takes: a caller runs
// at most 2 at once, an instance 8; past either, 429 RATE_LIMITED with Retry-After. An export runs until its rows
// end, fail, or are given up. Exports are held open here through the service, which the route calls.

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);

type Export = AsyncIterableIterator<UsageEvent[]>;

describe.each(DIALECTS)('concurrent usage exports on %s', (dialect) => {
  let t: TestApp;
  let reader: { key: string; caller: Caller };

  beforeEach(async () => {
    t = await createTestApp({ dialect, env: JWT_ENV });
    const { key, id } = await createKey(t, { name: 'reader', scopes: ['keyward:keys:read'] });
    reader = { key, caller: await callerFor(key) };
    // Three rows of the reader's own key: every caller here may read them.
    for (let i = 0; i < 3; i++) t.container.usage.record({ apiKeyId: id, outcome: 'VALID', userAgent: `row-${i}`, createdAt: T0 + i });
    await t.container.usage.flush();
  });
  afterEach(async () => t?.close());

  /** The caller a credential authenticates as, as the route would see it. */
  async function callerFor(credential: string): Promise<Caller> {
    const principal = await t.container.authenticator.authenticate(credential);
    if (!principal.ok) throw new Error(principal.code);
    return { principal: principal.value, ip: null };
  }

  /** Starts an export for `caller` and holds it open (no row read). */
  async function hold(caller: Caller): Promise<Export> {
    const started = await t.container.usageAnalytics.exportEvents(caller, {});
    if (!started.ok) throw new Error(started.code);
    return started.value;
  }

  const download = (credential: string, format = 'csv') =>
    t.app.inject({ method: 'GET', url: `/v1/usage/events?format=${format}`, headers: bearer(credential) });

  it('refuses a third export by the same key with 429 RATE_LIMITED and Retry-After, until one ends', async () => {
    const held = [await hold(reader.caller), await hold(reader.caller)];
    const refused = await download(reader.key);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({ code: 'RATE_LIMITED', status: 429 });
    expect(refused.headers['retry-after']).toBe(String(EXPORT_RETRY_AFTER_SECONDS));
    expect((await download(reader.key, 'jsonl')).statusCode).toBe(429);
    // Pages are not exports; other callers are not held back.
    expect((await t.app.inject({ method: 'GET', url: '/v1/usage/events', headers: bearer(reader.key) })).statusCode).toBe(200);
    expect((await download(t.adminKey)).statusCode).toBe(200);
    // One ends (read to its end): the caller may export again.
    for await (const _ of held[0] as Export) {
      // Every chunk read.
    }
    const again = await download(reader.key);
    expect(again.statusCode).toBe(200);
    expect(again.body.split('\r\n')).toHaveLength(1 + 3 + 1);
    await held[1]?.return?.();
  });

  it('gives the slot back however the download ends: read to the end, refused, given up before a row, closed', async () => {
    // A finished download (in full, through the route) ends its export: many in a row, never refused.
    for (let i = 0; i < 2 * EXPORT_LIMITS.perCaller + 1; i++) expect((await download(reader.key)).statusCode).toBe(200);
    // Refused by its rights: nothing held.
    const plain = await createKey(t, { name: 'plain', scopes: ['inventory:read'] });
    for (let i = 0; i < EXPORT_LIMITS.perCaller + 1; i++) expect((await download(plain.key)).statusCode).toBe(403);
    const unknown = await callerFor(plain.key);
    expect((await t.container.usageAnalytics.exportEvents(unknown, {})).ok).toBe(false);
    // Given up before its first chunk (a generator's `finally` would not run): the slot comes back at once.
    for (let i = 0; i < EXPORT_LIMITS.perCaller + 1; i++) await (await hold(reader.caller)).return?.();
    // Its download stream closed (the client went away) before a chunk was read: the same.
    for (let i = 0; i < EXPORT_LIMITS.perCaller + 1; i++) {
      const stream = Readable.from(await hold(reader.caller));
      stream.destroy();
      await once(stream, 'close');
    }
    // Half read, then closed.
    for (let i = 0; i < EXPORT_LIMITS.perCaller + 1; i++) {
      const stream = Readable.from(await hold(reader.caller), { objectMode: true });
      const [first] = (await once(stream, 'data')) as [UsageEvent[]];
      expect(first).toHaveLength(3);
      stream.destroy();
      await once(stream, 'close');
    }
    expect((await download(reader.key)).statusCode).toBe(200);
  });

  it('counts a signed-in user’s exports as the user’s', async () => {
    const user = await signIn(t, 'exporter');
    const caller = await callerFor(user.token);
    const held = [await hold(caller), await hold(caller)];
    const refused = await download(user.token, 'jsonl');
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ code: 'RATE_LIMITED' });
    // A key of another caller is not held back by the user's exports.
    expect((await download(reader.key)).statusCode).toBe(200);
    for (const running of held) await running.return?.();
    expect((await download(user.token, 'jsonl')).statusCode).toBe(200);
  });

  it('runs at most 8 exports on the instance, whoever asks', async () => {
    const callers: Caller[] = Array.from({ length: EXPORT_LIMITS.perInstance + 1 }, (_, i) => ({
      principal: { kind: 'system', name: `operator-${i}` },
      ip: null,
    }));
    const held: Export[] = [];
    for (const caller of callers.slice(0, EXPORT_LIMITS.perInstance)) held.push(await hold(caller));
    const last = callers[EXPORT_LIMITS.perInstance] as Caller;
    const refused = await t.container.usageAnalytics.exportEvents(last, {});
    expect(refused).toMatchObject({ ok: false, code: 'RATE_LIMITED', retryAfterSeconds: EXPORT_RETRY_AFTER_SECONDS });
    expect((await download(reader.key)).statusCode).toBe(429);
    await held.pop()?.return?.();
    const started = await t.container.usageAnalytics.exportEvents(last, {});
    expect(started.ok).toBe(true);
    if (started.ok) held.push(started.value);
    for (const running of held) await running.return?.();
    expect((await download(reader.key)).statusCode).toBe(200);
  });
});
