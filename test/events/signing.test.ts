import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../packages/server/src/config.js';
import { checkTarget, isPublicAddress } from '../../packages/server/src/events/address-guard.js';
import { createSecretBox, newSigningSecret, parseEncryptionKey, signPayload } from '../../packages/server/src/events/signing.js';

// Signing as Standard Webhooks does it, secrets sealed at rest, which addresses a webhook may reach, and the settings.

describe('signing', () => {
  it('makes the signature the standardwebhooks library makes (and verifies)', () => {
    const secret = newSigningSecret();
    const body = JSON.stringify({ type: 'key.created', timestamp: '2030-01-01T00:00:00.000Z', data: { key: { id: 'k1' } } });
    const at = new Date();
    const ours = signPayload(secret, 'msg_1', Math.floor(at.getTime() / 1000), body);
    expect(ours).toBe(new Webhook(secret).sign('msg_1', at, body));
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': ours };
    expect(new Webhook(secret).verify(body, headers)).toMatchObject({ type: 'key.created' });
  });

  it('makes secrets of 24 random bytes, whsec_-prefixed, each new', () => {
    const a = newSigningSecret();
    expect(a).toMatch(/^whsec_/);
    expect(Buffer.from(a.slice(6), 'base64')).toHaveLength(24);
    expect(newSigningSecret()).not.toBe(a);
  });
});

describe('the secret box', () => {
  const key = Buffer.alloc(32, 9).toString('base64');

  it('seals with AES-256-GCM and opens only with the same key, for the same webhook', () => {
    const box = createSecretBox(key);
    const secret = newSigningSecret();
    const sealed = box.seal(secret, 'wh_1');
    expect(sealed).toMatch(/^aes256gcm:/);
    expect(sealed).not.toContain(secret.slice(6));
    expect(box.seal(secret, 'wh_1')).not.toBe(sealed); // a nonce each time
    expect(box.open(sealed, 'wh_1')).toBe(secret);
    expect(box.open(sealed, 'wh_2')).toBeNull();
    expect(createSecretBox(Buffer.alloc(32, 8).toString('hex')).open(sealed, 'wh_1')).toBeNull();
    expect(createSecretBox(null).open(sealed, 'wh_1')).toBeNull();
    const [nonce, body, tag] = sealed.slice('aes256gcm:'.length).split('.');
    const flipped = `${body?.startsWith('A') ? 'B' : 'A'}${body?.slice(1)}`;
    expect(box.open(`aes256gcm:${nonce}.${flipped}.${tag}`, 'wh_1')).toBeNull();
  });

  it('without a key stores the secret as is (marked), and opens such a secret with or without one', () => {
    const plain = createSecretBox(null).seal('whsec_abc', 'wh_1');
    expect(plain).toBe('plain:whsec_abc');
    expect(createSecretBox(key).open(plain, 'wh_1')).toBe('whsec_abc');
  });

  it('takes a key of 32 bytes as base64 or hex only', () => {
    expect(parseEncryptionKey(Buffer.alloc(32).toString('hex'))).toHaveLength(32);
    expect(parseEncryptionKey(Buffer.alloc(32).toString('base64url'))).toHaveLength(32);
    expect(parseEncryptionKey(Buffer.alloc(16).toString('base64'))).toBeNull();
    expect(parseEncryptionKey('not a key')).toBeNull();
  });
});

describe('which addresses a webhook may reach', () => {
  it('allows public unicast addresses only', () => {
    for (const address of ['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '64:ff9b::808:808'])
      expect(isPublicAddress(address), address).toBe(true);
    for (const address of [
      '127.0.0.1',
      '10.0.0.1',
      '172.16.5.4',
      '172.31.255.255',
      '192.168.0.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1',
      '::7f00:1', // IPv4-compatible (::/96): 127.0.0.1
      'ff02::1',
      'not-an-ip',
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
    expect(isPublicAddress('172.32.0.1')).toBe(true);
  });

  it('refuses a name if any address it resolves to is not public, or if it does not resolve', async () => {
    const url = new URL('https://hooks.example.test/x');
    const mixed = await checkTarget(url, false, async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ]);
    expect(mixed).toEqual({ ok: false, reason: 'hooks.example.test resolves to 127.0.0.1, which is not a public address' });
    expect(await checkTarget(url, false, async () => [{ address: '93.184.216.34', family: 4 }])).toEqual({
      ok: true,
      address: '93.184.216.34',
      family: 4,
    });
    expect(
      await checkTarget(url, false, async () => {
        throw new Error('ENOTFOUND');
      }),
    ).toEqual({ ok: false, reason: 'hooks.example.test does not resolve' });
    expect(await checkTarget(url, true, async () => [{ address: '127.0.0.1', family: 4 }])).toMatchObject({ ok: true, address: null });
    expect(await checkTarget(new URL('file:///etc/passwd'), true)).toMatchObject({ ok: false });
  });
});

describe('webhook settings', () => {
  it('reads durations, fractions and the encryption key, refusing bad values without echoing the key', () => {
    const defaults = loadConfig({});
    expect(defaults).toMatchObject({
      webhookAllowPrivate: false,
      webhookEncryptionKey: null,
      webhookKeyExpiringBeforeMs: 7 * 86_400_000,
      webhookQuotaLowFraction: 0.1,
      eventsRetentionDays: 30,
    });
    expect(
      loadConfig({ WEBHOOK_KEY_EXPIRING_BEFORE: '12h', WEBHOOK_QUOTA_LOW_FRACTION: '0.25', WEBHOOK_ALLOW_PRIVATE: 'true' }),
    ).toMatchObject({
      webhookKeyExpiringBeforeMs: 43_200_000,
      webhookQuotaLowFraction: 0.25,
      webhookAllowPrivate: true,
    });
    expect(() => loadConfig({ WEBHOOK_KEY_EXPIRING_BEFORE: '7' })).toThrow(ConfigError);
    expect(() => loadConfig({ WEBHOOK_QUOTA_LOW_FRACTION: '1.5' })).toThrow(ConfigError);
    const bad = 'this-is-not-a-32-byte-key-but-a-secret';
    expect(() => loadConfig({ WEBHOOK_ENCRYPTION_KEY: bad })).toThrow(ConfigError);
    try {
      loadConfig({ WEBHOOK_ENCRYPTION_KEY: bad });
    } catch (error) {
      expect(String(error)).not.toContain(bad);
    }
  });
});
