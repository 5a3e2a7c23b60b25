import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createGithubKeys, parseGithubKeys } from '../../packages/server/src/leaks/github-keys.js';

// GitHub's key list, cached: one load per hour, a load for an identifier the list lacks (at most once a minute),
// the last good list kept when a load fails. The clock and fetch are the test's, so nothing waits.

const pem = (curve: string) =>
  generateKeyPairSync('ec', { namedCurve: curve }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
const P256_A = pem('prime256v1');
const P256_B = pem('prime256v1');

const list = (...entries: [string, string][]) => ({
  public_keys: entries.map(([id, key]) => ({ key_identifier: id, key, is_current: true })),
});

/** A fetch answering each call with the next of `answers` (a list, or an HTTP status), recording the calls. */
function fakeFetch(answers: (object | number)[]) {
  const calls: { url: string; headers: Record<string, string> }[] = [];
  const fetch = (async (url: string, init?: RequestInit) => {
    calls.push({ url, headers: (init?.headers ?? {}) as Record<string, string> });
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    if (answer === undefined) throw new Error('no answer');
    if (typeof answer === 'number') return new Response('nope', { status: answer });
    return Response.json(answer);
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

function clock() {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const URL_ = 'https://keys.example/meta/public_keys/secret_scanning';

describe('GitHub’s secret-scanning keys', () => {
  it('loads the list once and answers from it, sending a User-Agent (GitHub’s API wants one)', async () => {
    const { fetch, calls } = fakeFetch([list(['a', P256_A])]);
    const keys = createGithubKeys({ url: URL_, file: null, fetch, now: clock().now });
    expect((await keys.keyFor('a')).ok).toBe(true);
    expect((await keys.keyFor('a')).ok).toBe(true);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.url).toBe(URL_);
    expect(calls[0]?.headers['user-agent']).toBe('keyward');
  });

  it('loads again for an unknown identifier, at most once a minute', async () => {
    const time = clock();
    const { fetch, calls } = fakeFetch([list(['a', P256_A]), list(['a', P256_A]), list(['a', P256_A], ['b', P256_B])]);
    const keys = createGithubKeys({ url: URL_, file: null, fetch, now: time.now });
    await keys.keyFor('a');
    time.advance(61_000);
    expect(await keys.keyFor('b')).toEqual({ ok: false, reason: 'unknown' });
    expect(calls).toHaveLength(2);
    expect(await keys.keyFor('b')).toEqual({ ok: false, reason: 'unknown' });
    expect(await keys.keyFor('made-up')).toEqual({ ok: false, reason: 'unknown' });
    expect(calls).toHaveLength(2);
    time.advance(60_000);
    expect((await keys.keyFor('b')).ok).toBe(true); // GitHub added it meanwhile
    expect(calls).toHaveLength(3);
  });

  it('loads again after an hour, and keeps the last good list when that fails', async () => {
    const time = clock();
    const { fetch, calls } = fakeFetch([list(['a', P256_A]), 500, list(['b', P256_B])]);
    const keys = createGithubKeys({ url: URL_, file: null, fetch, now: time.now });
    await keys.keyFor('a');
    time.advance(59 * 60_000);
    await keys.keyFor('a');
    expect(calls).toHaveLength(1);
    time.advance(2 * 60_000);
    expect((await keys.keyFor('a')).ok).toBe(true); // the load failed (500): the old list still answers
    expect(calls).toHaveLength(2);
    time.advance(61_000);
    expect((await keys.keyFor('b')).ok).toBe(true);
    expect(await keys.keyFor('a')).toEqual({ ok: false, reason: 'unknown' }); // rotated out
    expect(calls).toHaveLength(3);
  });

  it('is unavailable until a first list loads, trying again at most once a minute', async () => {
    const time = clock();
    const { fetch, calls } = fakeFetch([503, list(['a', P256_A])]);
    const keys = createGithubKeys({ url: URL_, file: null, fetch, now: time.now });
    expect(await keys.keyFor('a')).toMatchObject({ ok: false, reason: 'unavailable', cause: expect.stringContaining('503') });
    expect(await keys.keyFor('a')).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(calls).toHaveLength(1);
    time.advance(60_000);
    expect((await keys.keyFor('a')).ok).toBe(true);
  });

  it('makes one load of lookups arriving together', async () => {
    const { fetch, calls } = fakeFetch([list(['a', P256_A])]);
    const keys = createGithubKeys({ url: URL_, file: null, fetch, now: clock().now });
    const answers = await Promise.all([keys.keyFor('a'), keys.keyFor('a'), keys.keyFor('x')]);
    expect(answers.map((a) => a.ok)).toEqual([true, true, false]);
    expect(calls).toHaveLength(1);
  });

  it('keeps only P-256 public keys with an identifier', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const parsed = parseGithubKeys({
      public_keys: [
        { key_identifier: 'good', key: P256_A },
        { key_identifier: 'p384', key: pem('secp384r1') },
        { key_identifier: 'rsa', key: rsa },
        { key_identifier: 'garbage', key: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' },
        { key_identifier: '', key: P256_B },
        { key: P256_B },
        'not an object',
      ],
    });
    expect([...parsed.keys()]).toEqual(['good']);
    expect(() => parseGithubKeys({ keys: [] })).toThrow();
  });
});
