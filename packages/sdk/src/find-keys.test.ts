import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { findKeys, generateKey } from './key.js';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** A key with a correct checksum for any prefix and secret (SPEC §2, written out again here). */
function withChecksum(prefix: string, secret: string): string {
  let n = BigInt(crc32(`${prefix}_${secret}`));
  let checksum = '';
  while (n > 0n) {
    checksum = BASE62.charAt(Number(n % 62n)) + checksum;
    n /= 62n;
  }
  return `${prefix}_${secret}${checksum.padStart(6, '0')}`;
}

const broken = (key: string) => `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;

describe('findKeys', () => {
  it('finds every key with its line and column, in order', () => {
    const a = generateKey();
    const b = generateKey('sk_live');
    const c = generateKey('gw');
    const text = `const key = "${a}";\n\n  KEYWARD_KEY=${b}\r\nurl: https://x.test/?k=${c}&y=1`;
    expect(findKeys(text)).toEqual([
      { key: a, index: 13, line: 1, column: 14 },
      { key: b, index: text.indexOf(b), line: 3, column: 15 },
      { key: c, index: text.indexOf(c), line: 4, column: 24 },
    ]);
  });

  it('finds a key glued to other word characters, choosing the prefix the checksum names', () => {
    const key = generateKey('sk_live');
    expect(findKeys(`Xmy_${key}and_more`).map((f) => f.key)).toEqual([key]);
    expect(findKeys(`prefix${generateKey('kw')}`)).toHaveLength(1);
    // Every prefix shape, the longest (20 characters) included.
    for (const prefix of ['a', 'a1', 'a_b_c', 'k'.repeat(20), 'x9_y8']) {
      const found = generateKey(prefix);
      expect(findKeys(` ${found} `).map((f) => f.key)).toEqual([found]);
    }
    expect(findKeys(withChecksum('kw', '0'.repeat(43))).map((f) => f.key)).toEqual([withChecksum('kw', '0'.repeat(43))]);
  });

  it('finds nothing in look-alikes: a wrong checksum, length or prefix, other vendors’ tokens', () => {
    const key = generateKey();
    const lookAlikes = [
      broken(key),
      key.slice(0, -1), // a character short: the body is 48, not 49
      `kw_${'a'.repeat(49)}`,
      key.replace('kw_', 'KW_'),
      key.replace('kw_', 'kw-'),
      key.replace('kw_', '_'),
      withChecksum('k'.repeat(21), 'a'.repeat(43)).slice(1), // only a 21-character prefix would make it right
      'ghp_1234567890abcdefghijklmnopqrstuvwxyz12',
      'sk_live_51H8cJ2KZvKYlo2C0aIiXfl3Xm1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6',
      'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx',
      'AKIAIOSFODNN7EXAMPLE',
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      `kw_${'Z'.repeat(43)}000000`,
    ];
    for (const text of lookAlikes) expect(findKeys(`x ${text} y`), text).toEqual([]);
  });

  it('finds each of many keys in a large text, and none in text without any', () => {
    const keys = Array.from({ length: 200 }, (_, i) => generateKey(i % 2 ? 'kw' : 'sk_test'));
    const text = keys.map((k, i) => `${'filler_text '.repeat(i % 7)}${k}`).join('\n');
    expect(findKeys(text).map((f) => f.key)).toEqual(keys);
    expect(findKeys('snake_case_identifier_'.repeat(10_000))).toEqual([]);
  });
});
