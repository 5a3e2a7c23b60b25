import { createKeywardAuth, generateKey, hashApiKey, type KeywardAuthOptions, type KeywardError } from '@keyward/sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type LiveKeyward, startKeyward } from './live-keyward.js';
import { stubKeyward, validAnswer } from './stub-keyward.js';

// The middleware's cache with Keyward's change feed (issue 15, item 5; contract G): a changed key is dropped
// at once while the feed is live, the cache lives long only while it is, and while Keyward cannot be reached
// a key verified recently keeps passing for a bounded window. Cache lives are checked on a fake `Date`; the
// feed's delivery is awaited by what it causes, never by a sleep.

const path = '/v1/companies';
const bearer = (key: string) => ({ authorization: `Bearer ${key}`, path });
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  vi.useRealTimers();
  for (const close of closers.splice(0)) await close();
});

function setup(options: Partial<KeywardAuthOptions> = {}) {
  const keyward = stubKeyward();
  const errors: KeywardError[] = [];
  const auth = createKeywardAuth({
    baseUrl: 'http://keyward.test',
    apiKey: generateKey('kw'),
    fetch: keyward.fetch,
    onError: (error) => errors.push(error),
    // Reconnects that fail fast and often: a test that drops the stream watches it stay down.
    changes: { reconnectDelayMs: { min: 5, max: 20 } },
    ...options,
  });
  closers.push(() => auth.close());
  return { keyward, auth, errors };
}

/** A key the stub answers VALID for (no rate limit or quota unless `fields` say so). */
function keyIn(keyward: ReturnType<typeof stubKeyward>, fields: Parameters<typeof validAnswer>[0] = {}): string {
  const key = generateKey('kw');
  keyward.answers[key] = validAnswer(fields);
  return key;
}

describe('the cache with the change feed (stubbed Keyward)', () => {
  it('opens the feed with the first request only, and closes it with close()', async () => {
    const { keyward, auth } = setup();
    expect(keyward.changes.connections).toBe(0);
    await auth.authorize(bearer(keyIn(keyward)));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    expect(keyward.changes.open()).toBe(1);
    await auth.close();
    expect(auth.live()).toBe(false);
    expect(keyward.changes.open()).toBe(0);
  });

  it('with changes: false, opens no feed (and the cache lives ttlMs)', async () => {
    const { keyward, auth } = setup({ changes: false });
    await auth.authorize(bearer(keyIn(keyward)));
    expect(keyward.changes.connections).toBe(0);
    expect(auth.live()).toBe(false);
  });

  it('while live, answers a key for liveTtlMs, and drops it the moment Keyward says it changed', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { keyward, auth } = setup({ cache: { ttlMs: 5_000, liveTtlMs: 300_000 } });
    const key = keyIn(keyward, { key_id: 'k1' });
    await auth.authorize(bearer(key));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    vi.setSystemTime(Date.now() + 60_000);
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: 'k1' } });
    expect(keyward.seen).toHaveLength(1);
    // Revoked in Keyward: the feed says so, and the next request asks again.
    keyward.answers[key] = validAnswer({ key_id: 'k1', valid: false, code: 'REVOKED' });
    keyward.changes.changed(hashApiKey(key));
    await vi.waitFor(async () => expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, problem: { code: 'KEY_REVOKED' } }));
    expect(keyward.seen).toHaveLength(2);
    vi.setSystemTime(Date.now() + 300_000);
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false });
  });

  it('drops every key on reset', async () => {
    const { keyward, auth } = setup();
    const [a, b] = [keyIn(keyward), keyIn(keyward)];
    await auth.authorize(bearer(a));
    await auth.authorize(bearer(b));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    keyward.changes.send('reset');
    await vi.waitFor(async () => {
      await auth.authorize(bearer(b));
      expect(keyward.seen.filter((s) => s.body?.key === b)).toHaveLength(2);
    });
    await auth.authorize(bearer(a));
    expect(keyward.seen.filter((s) => s.body?.key === a)).toHaveLength(2);
  });

  it('falls back to ttlMs while the stream is down or Keyward says it is degraded', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    for (const down of ['dropped', 'degraded'] as const) {
      const { keyward, auth, errors } = setup({ cache: { ttlMs: 5_000, liveTtlMs: 300_000 } });
      const key = keyIn(keyward);
      await auth.authorize(bearer(key));
      await vi.waitFor(() => expect(auth.live()).toBe(true));
      if (down === 'dropped') {
        keyward.state.changesFailWith = 503;
        keyward.changes.drop();
      } else keyward.changes.send('degraded');
      await vi.waitFor(() => expect(auth.live()).toBe(false));
      vi.setSystemTime(Date.now() + 4_000);
      await auth.authorize(bearer(key));
      expect(keyward.seen).toHaveLength(1);
      vi.setSystemTime(Date.now() + 2_000);
      await auth.authorize(bearer(key));
      expect(keyward.seen).toHaveLength(2);
      // The feed's failures are reported (the stream refused while down).
      if (down === 'dropped') await vi.waitFor(() => expect(errors.map((e) => e.status)).toContain(503));
    }
  });

  it('does not keep an answer a change to its key overtook', async () => {
    const { keyward, auth } = setup();
    const [key, marker] = [keyIn(keyward), keyIn(keyward)];
    await auth.authorize(bearer(marker));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    // The verification of `key` waits until the change has been delivered.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const inner = keyward.fetch;
    const fetch = async (request: Request) => {
      if (new URL(request.url).pathname === '/v1/keys/verify' && (await request.clone().json()).key === key) await held;
      return inner(request);
    };
    const slow = createKeywardAuth({ baseUrl: 'http://keyward.test', apiKey: generateKey('kw'), fetch });
    closers.push(() => slow.close());
    await slow.authorize(bearer(marker));
    await vi.waitFor(() => expect(slow.live()).toBe(true));
    const verifying = slow.authorize(bearer(key));
    keyward.changes.changed(hashApiKey(key));
    keyward.changes.changed(hashApiKey(marker));
    // Changes arrive in order: once `marker` is dropped, the change to `key` was seen too.
    await vi.waitFor(async () => {
      await slow.authorize(bearer(marker));
      expect(keyward.seen.filter((s) => s.body?.key === marker).length).toBeGreaterThanOrEqual(3);
    });
    release();
    expect(await verifying).toMatchObject({ ok: true });
    await slow.authorize(bearer(key));
    expect(keyward.seen.filter((s) => s.body?.key === key)).toHaveLength(2);
  });

  it('reads lineage_id into the identity', async () => {
    const { keyward, auth } = setup();
    const key = keyIn(keyward, { key_id: 'k2', lineage_id: 'k1' });
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: 'k2', lineageId: 'k1' } });
  });
});

describe('the stale window: Keyward unreachable (stubbed Keyward)', () => {
  it.each([['network' as const], [502], [503]])(
    'keeps answering for keys verified within staleWindowMs (%s), metered ones too, and 503 after it and for any other key',
    async (failure) => {
      vi.useFakeTimers({ toFake: ['Date'] });
      const { keyward, auth, errors } = setup({ changes: false, staleWindowMs: 60_000 });
      const plain = keyIn(keyward, { key_id: 'plain', scopes: ['companies:read'] });
      const metered = keyIn(keyward, { key_id: 'metered', remaining: 10 });
      const revoked = keyIn(keyward, { valid: false, code: 'REVOKED' });
      for (const key of [plain, metered, revoked]) await auth.authorize(bearer(key));
      const spent = { ...keyward.spent };
      keyward.state.failWith = failure;
      vi.setSystemTime(Date.now() + 30_000);
      // Past the cache life, within the window: from what was last known, the rule still checked.
      expect(await auth.authorize(bearer(plain), { scopes: ['companies:read'] })).toMatchObject({
        ok: true,
        identity: { keyId: 'plain' },
        outcome: { keyId: 'plain', code: 'VALID' },
      });
      expect(await auth.authorize(bearer(plain), { scopes: ['billing:read'] })).toMatchObject({ ok: false, status: 403 });
      expect(await auth.authorize(bearer(metered))).toMatchObject({ ok: true, identity: { keyId: 'metered' } });
      // Nothing Keyward did not see is spent.
      expect(keyward.spent).toEqual(spent);
      for (const key of [revoked, generateKey('kw')]) {
        expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503, problem: { code: 'SERVICE_UNAVAILABLE' } });
      }
      expect(errors.length).toBeGreaterThanOrEqual(5);
      vi.setSystemTime(Date.now() + 31_000);
      for (const key of [plain, metered]) expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503 });
    },
  );

  it('drops a key from the window when Keyward says it changed', async () => {
    const { keyward, auth } = setup({ cache: { ttlMs: 0, liveTtlMs: 0 } });
    const key = keyIn(keyward);
    await auth.authorize(bearer(key));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    keyward.changes.changed(hashApiKey(key));
    keyward.state.failWith = 'network';
    // The change comes in through the feed: until then the window still holds the key.
    await vi.waitFor(async () => expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503 }));
  });

  it('measures the window from when the live feed last vouched for a key, not from its one verification', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { keyward, auth } = setup({ cache: { ttlMs: 5_000, liveTtlMs: 300_000 }, staleWindowMs: 60_000 });
    const [key, changed] = [keyIn(keyward, { key_id: 'hot' }), keyIn(keyward, { key_id: 'changed' })];
    for (const k of [key, changed]) await auth.authorize(bearer(k));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    // Four minutes of cache hits while the feed is live: no round trip, so no fresh verification.
    for (let i = 0; i < 8; i++) {
      vi.setSystemTime(Date.now() + 30_000);
      expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: 'hot' } });
    }
    expect(keyward.seen).toHaveLength(2);
    // The feed reports one key changed, then Keyward goes away: the stream drops and verifications fail.
    // The stream is read in order, so the change is delivered before the feed stops being live.
    keyward.changes.changed(hashApiKey(changed));
    keyward.state.changesFailWith = 'network';
    keyward.state.failWith = 'network';
    keyward.changes.drop();
    await vi.waitFor(() => expect(auth.live()).toBe(false));
    vi.setSystemTime(Date.now() + 6_000);
    // Past the cache life, so Keyward is asked; it cannot answer, and the feed vouched for the key 6 s ago.
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: 'hot' } });
    expect(keyward.seen).toHaveLength(3);
    // The changed key was dropped: never answered from the window.
    expect(await auth.authorize(bearer(changed))).toMatchObject({ ok: false, status: 503 });
    vi.setSystemTime(Date.now() + 53_000);
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: 'hot' } });
    vi.setSystemTime(Date.now() + 2_000);
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503, problem: { code: 'SERVICE_UNAVAILABLE' } });
  });

  it("runs a metered key's window from its last verification: the feed does not vouch for its counters", async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { keyward, auth } = setup({ staleWindowMs: 60_000 });
    const key = keyIn(keyward, { key_id: 'metered', remaining: 10 });
    await auth.authorize(bearer(key));
    await vi.waitFor(() => expect(auth.live()).toBe(true));
    vi.setSystemTime(Date.now() + 90_000);
    keyward.state.changesFailWith = 'network';
    keyward.state.failWith = 'network';
    keyward.changes.drop();
    await vi.waitFor(() => expect(auth.live()).toBe(false));
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503 });
  });

  it('keeps no window with staleWindowMs 0, nor with the cache off', async () => {
    for (const options of [{ staleWindowMs: 0 }, { cache: false as const }]) {
      const { keyward, auth } = setup({ changes: false, ...options });
      const key = keyIn(keyward, { remaining: 5 });
      await auth.authorize(bearer(key));
      keyward.state.failWith = 'network';
      expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503 });
    }
  });
});

describe('the cache against a real Keyward', () => {
  let keyward: LiveKeyward | undefined;
  afterEach(async () => {
    await keyward?.close();
    keyward = undefined;
  });

  it('drops a revoked key as soon as Keyward publishes the change, with no round trip before it', async () => {
    keyward = await startKeyward();
    const live = keyward;
    const auth = createKeywardAuth({ baseUrl: live.url, apiKey: live.verifyKey, fetch: live.fetch, cache: { ttlMs: 60_000 } });
    closers.push(() => auth.close());
    const { key, id } = await live.key({ scopes: ['companies:read'] });
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: id } });
    await vi.waitFor(() => expect(auth.live()).toBe(true), { timeout: 5_000 });
    for (let i = 0; i < 3; i++) expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true });
    expect(live.verifyCalls()).toBe(1);
    await live.revoke(id);
    // A cache life of a minute: only the change feed can make this happen within the wait.
    await vi.waitFor(async () => expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, problem: { code: 'KEY_REVOKED' } }), {
      timeout: 5_000,
    });
  });

  it('answers from the stale window while Keyward is down, and 503 once the window has passed', async () => {
    keyward = await startKeyward();
    const live = keyward;
    const auth = createKeywardAuth({ baseUrl: live.url, apiKey: live.verifyKey, fetch: live.fetch, changes: false, timeoutMs: 2_000 });
    closers.push(() => auth.close());
    const { key, id } = await live.key({ scopes: ['companies:read'], rate_limit: { limit: 100, window_seconds: 60 } });
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true });
    // Keyward stops listening.
    live.t.app.server.closeAllConnections();
    await new Promise<void>((resolve) => live.t.app.server.close(() => resolve()));
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 30_000);
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: true, identity: { keyId: id } });
    vi.setSystemTime(Date.now() + 31_000);
    expect(await auth.authorize(bearer(key))).toMatchObject({ ok: false, status: 503 });
  });
});
