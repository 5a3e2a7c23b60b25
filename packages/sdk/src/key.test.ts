import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  classifyKey,
  DISPLAY_SECRET_CHARS,
  displayPrefix,
  generateKey,
  hashApiKey,
  isValidPrefix,
  isWellFormed,
  parseKey,
  verifyApiKeyHash,
} from './key.js';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

// The checksum as SPEC §2 words it, written out again here so the tests do not trust the code they test.
function specChecksum(prefixAndSecret: string): string {
  let n = BigInt(crc32(prefixAndSecret));
  let out = '';
  while (n > 0n) {
    out = BASE62.charAt(Number(n % 62n)) + out;
    n /= 62n;
  }
  return out.padStart(6, '0');
}

/** A key with a correct checksum for any prefix and secret, even ones Keyward would never generate. */
function withChecksum(prefix: string, secret: string): string {
  return `${prefix}_${secret}${specChecksum(`${prefix}_${secret}`)}`;
}

const SECRET = 'a'.repeat(43);

describe('isValidPrefix', () => {
  it.each(['kw', 'gw', 'sk_live', 'a', 'a1', 'a_b_c', 'k'.repeat(20)])('accepts %s', (prefix) => {
    expect(isValidPrefix(prefix)).toBe(true);
  });
  it.each(['', 'Kw', 'KW', '1kw', '_kw', 'kw_', 'kw__live', 'kw-live', 'kw live', 'sk_1ive', 'k'.repeat(21), 'kw.x', 'é'])(
    'rejects %j',
    (prefix) => {
      expect(isValidPrefix(prefix)).toBe(false);
    },
  );
});

describe('generateKey', () => {
  it('has the shape {prefix}_{43-char secret}{6-char checksum}, only [A-Za-z0-9_]', () => {
    for (let i = 0; i < 200; i++) {
      const key = generateKey();
      expect(key).toHaveLength(2 + 1 + 43 + 6);
      expect(key).toMatch(/^kw_[A-Za-z0-9]{49}$/);
      const secret = key.slice(3, 46);
      expect(key.slice(46)).toBe(specChecksum(`kw_${secret}`));
    }
  });

  it('defaults to kw and takes any valid prefix', () => {
    expect(generateKey().startsWith('kw_')).toBe(true);
    const key = generateKey('sk_live');
    expect(key).toMatch(/^sk_live_[A-Za-z0-9]{49}$/);
    expect(parseKey(key)).toEqual({ prefix: 'sk_live', secret: key.slice(8, 51), checksum: key.slice(51) });
    expect(generateKey('k'.repeat(20))).toHaveLength(20 + 1 + 49);
  });

  it('throws on an invalid prefix', () => {
    for (const prefix of ['', 'Bad', '1x', 'a_', 'k'.repeat(21)]) {
      expect(() => generateKey(prefix)).toThrow(TypeError);
    }
  });

  it('gives a different key every time, with secrets covering the whole base62 alphabet', () => {
    const keys = new Set(Array.from({ length: 2000 }, () => generateKey()));
    expect(keys.size).toBe(2000);
    const seen = new Set([...keys].flatMap((k) => [...k.slice(3, 46)]));
    expect(seen.size).toBe(62);
  });

  it('encodes 256 bits: the secret decodes to a number below 2^256', () => {
    for (let i = 0; i < 100; i++) {
      const secret = generateKey().slice(3, 46);
      const value = [...secret].reduce((n, c) => n * 62n + BigInt(BASE62.indexOf(c)), 0n);
      expect(value < 2n ** 256n).toBe(true);
    }
  });
});

describe('parseKey and classifyKey', () => {
  it('parses a generated key and classifies it native', () => {
    const key = generateKey();
    expect(parseKey(key)).toEqual({ prefix: 'kw', secret: key.slice(3, 46), checksum: key.slice(46) });
    expect(isWellFormed(key)).toBe(true);
    expect(classifyKey(key)).toBe('native');
  });

  it('accepts a key built to the spec by someone else (leading zeros in secret and checksum)', () => {
    const key = withChecksum('sk_live', `000${'Z'.repeat(40)}`);
    expect(parseKey(key)?.prefix).toBe('sk_live');
    expect(classifyKey(key)).toBe('native');
  });

  it('rejects every single-character change at every position', () => {
    const key = generateKey('sk_live');
    let tried = 0;
    for (let i = 0; i < key.length; i++) {
      const original = key.charAt(i);
      // Replacements of the same class keep the native shape, so only the checksum can catch them.
      const segmentStart = i === 0 || key.charAt(i - 1) === '_';
      const pool =
        original === '_'
          ? '-.'
          : i >= 'sk_live'.length
            ? BASE62
            : segmentStart
              ? 'abcdefghijklmnopqrstuvwxyz'
              : 'abcdefghijklmnopqrstuvwxyz0123456789';
      for (const replacement of pool) {
        if (replacement === original) continue;
        const tampered = key.slice(0, i) + replacement + key.slice(i + 1);
        tried++;
        expect(parseKey(tampered), tampered).toBeNull();
        // A changed `_` takes the string out of the native shape: then it is a foreign key (looked up by hash).
        expect(classifyKey(tampered), tampered).toBe(original === '_' ? 'foreign' : 'invalid');
      }
    }
    expect(tried).toBeGreaterThan(3000);
  });

  it('rejects swapped adjacent characters', () => {
    const key = generateKey();
    for (let i = 3; i < key.length - 1; i++) {
      if (key.charAt(i) === key.charAt(i + 1)) continue;
      const swapped = key.slice(0, i) + key.charAt(i + 1) + key.charAt(i) + key.slice(i + 2);
      expect(parseKey(swapped)).toBeNull();
      expect(classifyKey(swapped)).toBe('invalid');
    }
  });

  it('rejects truncated keys', () => {
    const key = generateKey();
    for (let length = 0; length < key.length; length++) {
      const head = key.slice(0, length);
      expect(parseKey(head)).toBeNull();
      expect(classifyKey(head)).toBe(length < 16 ? 'invalid' : 'foreign');
      const tail = key.slice(key.length - length);
      expect(parseKey(tail)).toBeNull();
    }
    // Dropping the first letter leaves a native shape (prefix `w`) whose checksum no longer matches.
    expect(classifyKey(key.slice(1))).toBe('invalid');
  });

  it('rejects extended keys', () => {
    const key = generateKey();
    for (const extra of ['a', '0', 'Z', '_', '__', 'abcdef', ' ', '\n']) {
      expect(parseKey(key + extra)).toBeNull();
      expect(parseKey(extra + key)).toBeNull();
    }
    expect(classifyKey(`${key}a`)).toBe('foreign');
    expect(classifyKey(`${key} `)).toBe('invalid');
    expect(classifyKey(`${key}\n`)).toBe('invalid');
    // An extra prefix segment keeps the native shape, so the checksum decides.
    expect(classifyKey(`x_${key}`)).toBe('invalid');
  });

  it('rejects garbage', () => {
    const garbage = [
      '',
      ' ',
      'kw_',
      'kw_'.padEnd(52, ' '),
      `kw_${'!'.repeat(49)}`,
      'Bearer kw_abc',
      'null',
      'undefined',
      '\u0000'.repeat(52),
      `kw_${'é'.repeat(49)}`,
      `kw_${'a'.repeat(48)}\u00e9`,
      'x'.repeat(10_000),
      '😀'.repeat(30),
    ];
    for (const value of garbage) {
      expect(parseKey(value), JSON.stringify(value.slice(0, 20))).toBeNull();
      expect(isWellFormed(value)).toBe(false);
    }
    expect(classifyKey('')).toBe('invalid');
    expect(classifyKey('x'.repeat(10_000))).toBe('invalid');
    expect(classifyKey('\u0000'.repeat(52))).toBe('invalid');
    expect(classifyKey(`kw_${'é'.repeat(49)}`)).toBe('invalid');
    expect(classifyKey('😀'.repeat(30))).toBe('invalid');
  });

  it('does not parse wrong prefix shapes even with a correct checksum', () => {
    const shapes = ['KW', 'Kw', '1kw', 'kw-live', 'k'.repeat(21), 'kw.live'];
    for (const prefix of shapes) {
      const key = withChecksum(prefix, SECRET);
      expect(parseKey(key), prefix).toBeNull();
      // Not the native shape: a printable string of legal length, so it may be an imported key.
      expect(classifyKey(key), prefix).toBe('foreign');
    }
    for (const key of [`_kw_${SECRET}${specChecksum(`_kw_${SECRET}`)}`, `kw__${SECRET}${specChecksum(`kw__${SECRET}`)}`]) {
      expect(parseKey(key)).toBeNull();
    }
    // The longest legal prefix parses; the same key with a correct checksum and a 21-char prefix does not.
    expect(parseKey(withChecksum('k'.repeat(20), SECRET))?.prefix).toBe('k'.repeat(20));
  });

  it('rejects a secret or checksum of the wrong length even when the total length is right', () => {
    const key = generateKey();
    const secret = key.slice(3, 46);
    const shortSecret = `kw_${secret.slice(1)}`;
    expect(parseKey(shortSecret + specChecksum(shortSecret))).toBeNull();
    const longChecksum = `kw_${secret.slice(1)}${specChecksum(`kw_${secret.slice(1)}`)}0`;
    expect(longChecksum).toHaveLength(key.length);
    expect(parseKey(longChecksum)).toBeNull();
  });
});

describe('classifyKey: foreign (imported) keys of any printable form', () => {
  it('accepts 16 to 256 printable characters', () => {
    expect(classifyKey('a'.repeat(15))).toBe('invalid');
    expect(classifyKey('a'.repeat(16))).toBe('foreign');
    expect(classifyKey('~'.repeat(256))).toBe('foreign');
    expect(classifyKey('a'.repeat(257))).toBe('invalid');
  });

  it('accepts token_urlsafe, bcrypt-style look-up prefixes and punctuation', () => {
    for (let i = 0; i < 50; i++) {
      expect(classifyKey(randomBytes(32).toString('base64url'))).toBe('foreign');
    }
    expect(classifyKey(`amos_1a2b3c4d.${randomBytes(24).toString('base64url')}`)).toBe('foreign');
    expect(classifyKey('sk-proj-!#$%&()*+,-./:;<=>?@[]^`{|}')).toBe('foreign');
    expect(classifyKey(randomBytes(40).toString('hex'))).toBe('foreign');
  });

  it('rejects whitespace, control and non-ASCII characters', () => {
    for (const bad of [' ', '\t', '\n', '\r', '\u0000', '\u007f', 'é', '\u00a0', '€']) {
      expect(classifyKey(`abcdefgh${bad}ijklmnop`), JSON.stringify(bad)).toBe('invalid');
    }
  });
});

describe('displayPrefix', () => {
  it('is the prefix, `_` and the first 8 characters of the secret for a native key', () => {
    const key = generateKey();
    expect(DISPLAY_SECRET_CHARS).toBe(8);
    expect(displayPrefix(key)).toBe(key.slice(0, 11));
    const live = generateKey('sk_live');
    expect(displayPrefix(live)).toBe(live.slice(0, 'sk_live_'.length + 8));
  });

  it('shows at most a quarter, and never more than 8 characters, of any other key', () => {
    const token = randomBytes(32).toString('base64url'); // 43 characters
    expect(displayPrefix(token)).toBe(token.slice(0, 8));
    const tampered = `${generateKey().slice(0, -1)}!`;
    expect(displayPrefix(tampered)).toBe(tampered.slice(0, 8));
    expect(displayPrefix('abcdefghijklmnop')).toBe('abcd'); // a 16-character key keeps 12 characters hidden
    expect(displayPrefix('abcdefghijklmnopqrstu')).toBe('abcde');
  });

  it('never reveals enough of the secret to matter', () => {
    const key = generateKey();
    expect(key.length - displayPrefix(key).length).toBe(43 - 8 + 6);
  });
});

describe('hashApiKey and verifyApiKeyHash', () => {
  it('is SHA-256 over the UTF-8 key, lower-case hex (known vectors)', () => {
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hashApiKey('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const key = generateKey();
    expect(hashApiKey(key)).toBe(createHash('sha256').update(Buffer.from(key, 'utf8')).digest('hex'));
    expect(hashApiKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApiKey('é')).toBe(
      createHash('sha256')
        .update(Buffer.from([0xc3, 0xa9]))
        .digest('hex'),
    );
  });

  it('is true only for the key that was hashed', () => {
    const key = generateKey();
    const stored = hashApiKey(key);
    expect(verifyApiKeyHash(key, stored)).toBe(true);
    expect(verifyApiKeyHash(generateKey(), stored)).toBe(false);
    expect(verifyApiKeyHash(key.slice(0, -1), stored)).toBe(false);
    expect(verifyApiKeyHash(`${key} `, stored)).toBe(false);
    expect(verifyApiKeyHash('', hashApiKey(''))).toBe(true);
  });

  it('is false, without throwing, for a malformed stored hash', () => {
    const key = generateKey();
    const stored = hashApiKey(key);
    const malformed = [
      '',
      'not-a-hash',
      stored.slice(0, 63),
      `${stored}0`,
      `${stored}\n`,
      'g'.repeat(64),
      ` ${stored.slice(1)}`,
      '0'.repeat(64),
    ];
    for (const bad of malformed) {
      expect(verifyApiKeyHash(key, bad), JSON.stringify(bad)).toBe(false);
    }
  });
});
