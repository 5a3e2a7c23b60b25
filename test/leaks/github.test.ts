import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// POST /v1/leaks/github: GitHub's secret-scanning partner contract. The signature is checked over the body's
// exact bytes with GitHub's published test vector, then end to end with a P-256 key pair made here.

// GitHub's test key and two bodies it signed, from its partner documentation
// (https://docs.github.com/en/code-security/secret-scanning/secret-scanning-partnership-program/secret-scanning-partner-program):
// the compact body of today's page, and the spaced one earlier versions of the page showed, under the same key.
const GITHUB_KEY_ID = '90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a';
const GITHUB_PUBLIC_KEY = [
  '-----BEGIN PUBLIC KEY-----',
  'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUq',
  'kCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==',
  '-----END PUBLIC KEY-----',
].join('\n');
const GITHUB_BODY = '[{"token":"some_token","type":"some_type","url":"some_url"}]';
const GITHUB_SIGNATURE = 'MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=';
const GITHUB_SPACED_BODY = '[{"token": "some_token", "type": "some_type", "url": "some_url"}]';
const GITHUB_SPACED_SIGNATURE = 'MEUCICxTWEpKo7BorLKutFZDS6ie+YFg6ecU7kEA6rUUSJqsAiEA9bK0Iy6vk2QpZOOg2IpBhZ3JRVdwXx1zmgmNAR7Izpc=';

const OUR_KEY_ID = 'f'.repeat(64);
const ours = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const signed = (body: string, key: KeyObject = ours.privateKey) => sign('sha256', Buffer.from(body), key).toString('base64');

interface Feedback {
  token_hash: string;
  token_type: string;
  label: string;
}

describe.each(DIALECTS)('POST /v1/leaks/github (%s)', (dialect) => {
  let t: TestApp;
  let dir: string;
  afterEach(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}): Promise<TestApp> {
    // GitHub's list, in its own shape: the published test key and the key pair this test signs with.
    dir = mkdtempSync(join(tmpdir(), 'keyward-leaks-'));
    const keysFile = join(dir, 'github-keys.json');
    writeFileSync(
      keysFile,
      JSON.stringify({
        public_keys: [
          { key_identifier: GITHUB_KEY_ID, key: GITHUB_PUBLIC_KEY, is_current: true },
          { key_identifier: OUR_KEY_ID, key: ours.publicKey.export({ type: 'spki', format: 'pem' }), is_current: true },
        ],
      }),
    );
    return createTestApp({ dialect, env: { LEAKS_GITHUB_KEYS_FILE: keysFile, ...env } });
  }

  const report = (body: string, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url: '/v1/leaks/github', headers: { 'content-type': 'application/json', ...headers }, payload: body });

  const verifyCode = async (key: string) =>
    (
      (await t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(t.adminKey), payload: { key } })).json() as {
        code: string;
      }
    ).code;

  const leakAudits = async () =>
    (
      (await t.app.inject({ method: 'GET', url: '/v1/audit-logs?action=key.leaked', headers: bearer(t.adminKey) })).json() as {
        data: { target_id: string; actor_type: string; actor_id: string; changes: Record<string, unknown> }[];
      }
    ).data;

  it('accepts GitHub’s published test vector, compact and spaced: the bytes are verified as sent', async () => {
    t = await start();
    for (const [body, signature] of [
      [GITHUB_BODY, GITHUB_SIGNATURE],
      [GITHUB_SPACED_BODY, GITHUB_SPACED_SIGNATURE],
    ] as const) {
      const response = await report(body, { 'GITHUB-PUBLIC-KEY-IDENTIFIER': GITHUB_KEY_ID, 'GITHUB-PUBLIC-KEY-SIGNATURE': signature });
      expect(response.statusCode, body).toBe(200);
      expect(response.json()).toEqual([{ token_hash: sha256('some_token'), token_type: 'some_type', label: 'false_positive' }]);
    }
    // The compact body's signature does not cover the spaced body, though both parse to the same JSON.
    const swapped = await report(GITHUB_SPACED_BODY, {
      'github-public-key-identifier': GITHUB_KEY_ID,
      'github-public-key-signature': GITHUB_SIGNATURE,
    });
    expect(swapped.statusCode).toBe(401);
    expect(swapped.json()).toMatchObject({ code: 'INVALID_SIGNATURE' });
  });

  it('revokes a real key at once (verify says REVOKED), audits key.leaked with the URL, ignores the rest', async () => {
    t = await start();
    const real = await createKey(t, { name: 'leaked one' });
    const bystander = await createKey(t, { name: 'bystander' });
    expect(await verifyCode(real.key)).toBe('VALID'); // now in the cache: the revocation must reach it
    const unknown = generateKey();
    const lookAlike = `${real.key.slice(0, -1)}${real.key.endsWith('A') ? 'B' : 'A'}`;
    // Odd spacing, a newline, keys in GitHub's order and an extra member: signed as is, never re-serialized.
    const body = `[\n  {"source":"commit", "token":"${real.key}","type":"keyward_api_key","url":"https://github.com/octo/app/blob/1a2b/.env"},\n{"token":"${unknown}","type":"keyward_api_key","url":""},{"token":"${lookAlike}","type":"keyward_api_key","extra":1}\n]`;
    const response = await report(body, { 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': signed(body) });
    expect(response.statusCode).toBe(200);
    expect(response.json<Feedback[]>()).toEqual([
      { token_hash: sha256(real.key), token_type: 'keyward_api_key', label: 'true_positive' },
      { token_hash: sha256(unknown), token_type: 'keyward_api_key', label: 'false_positive' },
      { token_hash: sha256(lookAlike), token_type: 'keyward_api_key', label: 'false_positive' },
    ]);
    expect(response.body).not.toContain(real.key);

    expect(await verifyCode(real.key)).toBe('REVOKED');
    expect(await verifyCode(bystander.key)).toBe('VALID');
    const audits = await leakAudits();
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({
      target_id: real.id,
      actor_type: 'system',
      actor_id: 'github',
      changes: {
        source: 'github',
        url: 'https://github.com/octo/app/blob/1a2b/.env',
        token_type: 'keyward_api_key',
        found_in: 'commit',
        is_active: { from: true, to: false },
        revoked_at: { from: null },
      },
    });
    expect(JSON.stringify(audits)).not.toContain(real.key);

    // Reported again (GitHub retries): still a true positive, still revoked, audited again.
    const again = await report(body, { 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': signed(body) });
    expect(again.json<Feedback[]>()[0]?.label).toBe('true_positive');
    expect(await leakAudits()).toHaveLength(2);
  });

  it('refuses a bad, missing or foreign signature, an unknown key id and a tampered body, revoking nothing', async () => {
    t = await start();
    const real = await createKey(t);
    const body = JSON.stringify([{ token: real.key, type: 'keyward_api_key', url: 'https://github.com/x' }]);
    const tampered = body.replace('github.com/x', 'github.com/y');
    const cases: [string, string, Record<string, string>][] = [
      ['no headers', body, {}],
      ['no signature', body, { 'github-public-key-identifier': OUR_KEY_ID }],
      ['no identifier', body, { 'github-public-key-signature': signed(body) }],
      [
        'signed by another key',
        body,
        { 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': signed(body, stranger.privateKey) },
      ],
      [
        'an identifier GitHub never listed',
        body,
        { 'github-public-key-identifier': 'a'.repeat(64), 'github-public-key-signature': signed(body) },
      ],
      ['GitHub’s key, our signature', body, { 'github-public-key-identifier': GITHUB_KEY_ID, 'github-public-key-signature': signed(body) }],
      ['a tampered body', tampered, { 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': signed(body) }],
      [
        'a signature that is not DER',
        body,
        { 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': 'bm90IGEgc2lnbmF0dXJl' },
      ],
    ];
    for (const [name, payload, headers] of cases) {
      const response = await report(payload, headers);
      expect(response.statusCode, name).toBe(401);
      expect(response.headers['content-type'], name).toMatch(/^application\/problem\+json/);
      expect(response.headers['www-authenticate'], name).toBeDefined();
      expect(response.json(), name).toMatchObject({ code: 'INVALID_SIGNATURE' });
    }
    expect(await verifyCode(real.key)).toBe('VALID');
    expect(await leakAudits()).toEqual([]);
  });

  it('reads the header names in any case over a real connection', async () => {
    t = await start();
    const real = await createKey(t);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as AddressInfo;
    const body = JSON.stringify([{ token: real.key, type: 'keyward_api_key', url: '' }]);
    const response = await fetch(`http://127.0.0.1:${port}/v1/leaks/github`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Github-Public-Key-Identifier': OUR_KEY_ID,
        'GITHUB-PUBLIC-KEY-SIGNATURE': signed(body),
      },
      body,
    });
    expect(response.status).toBe(200);
    expect(((await response.json()) as Feedback[])[0]?.label).toBe('true_positive');
    expect(await verifyCode(real.key)).toBe('REVOKED');
  });

  it('answers 400 for a signed body that is not a report, 415 for another media type', async () => {
    t = await start();
    const headersFor = (body: string) => ({ 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': signed(body) });
    for (const body of ['not json', '{"token":"x"}', '[{"type":"t"}]', '[{"token":"a\\u0000b","type":"t"}]']) {
      const response = await report(body, headersFor(body));
      expect(response.statusCode, body).toBe(400);
      expect(response.json(), body).toMatchObject({ code: 'INVALID_REQUEST' });
    }
    const text = await t.app.inject({
      method: 'POST',
      url: '/v1/leaks/github',
      headers: { 'content-type': 'text/plain', ...headersFor('[]') },
      payload: '[]',
    });
    expect(text.statusCode).toBe(415);
  });

  it('answers 503 with Retry-After when GitHub’s keys cannot be loaded, and revokes nothing', async () => {
    t = await start({ LEAKS_GITHUB_KEYS_FILE: '/nonexistent/keyward/github-keys.json' });
    const real = await createKey(t);
    const body = JSON.stringify([{ token: real.key, type: 'keyward_api_key' }]);
    const response = await report(body, { 'github-public-key-identifier': OUR_KEY_ID, 'github-public-key-signature': signed(body) });
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBeDefined();
    expect(response.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(await verifyCode(real.key)).toBe('VALID');
  });
});
