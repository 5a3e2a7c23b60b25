import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SECRET_LENGTH = 43;
const CHECKSUM_LENGTH = 6;
const BODY_LENGTH = SECRET_LENGTH + CHECKSUM_LENGTH;
/** Characters of the secret shown in lists, after the prefix and `_`. */
export const DISPLAY_SECRET_CHARS = 8;

const PREFIX_PATTERN = /^[a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*$/;
const PRINTABLE_PATTERN = /^[\x21-\x7e]{16,256}$/;

/** The parts of a key in Keyward's native `{prefix}_{secret}{checksum}` shape. */
export interface ParsedKey {
  prefix: string;
  secret: string;
  checksum: string;
}

/**
 * How a presented string should be treated before any look-up:
 * `native` (Keyward shape, checksum correct), `foreign` (an imported key of some other printable form,
 * looked up by hash), or `invalid` (reject at once with `INVALID_FORMAT`).
 */
export type KeyShape = 'native' | 'foreign' | 'invalid';

function toBase62(value: bigint | number, width: number): string {
  let n = BigInt(value);
  let out = '';
  while (n > 0n) {
    out = ALPHABET.charAt(Number(n % 62n)) + out;
    n /= 62n;
  }
  return out.padStart(width, '0');
}

// CRC-32 (IEEE, the same as zlib's) over the ASCII characters of a key. Written out because it runs on
// every verification: a table loop over char codes costs far less than a call into zlib with a string.
const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

function crc32Ascii(text: string, end: number): number {
  let c = -1;
  for (let i = 0; i < end; i++) c = (CRC_TABLE[(c ^ text.charCodeAt(i)) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function checksumOf(prefixAndSecret: string): string {
  let n = crc32Ascii(prefixAndSecret, prefixAndSecret.length);
  let out = '';
  while (n > 0) {
    out = ALPHABET.charAt(n % 62) + out;
    n = Math.floor(n / 62);
  }
  return out.padStart(CHECKSUM_LENGTH, '0');
}

/** The value of each base62 digit (0–9, A–Z, a–z) by ASCII code; -1 for any other character. */
const DIGIT_VALUE = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) table[ALPHABET.charCodeAt(i)] = i;
  return table;
})();

const digitOf = (c: number): number => (c < 128 ? (DIGIT_VALUE[c] ?? -1) : -1);

const NOT_NATIVE = 0;
const NATIVE = 1;
const BAD_CHECKSUM = 2;

/**
 * Whether `key` has the native shape (`^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*_[A-Za-z0-9]{49}$`, prefix ≤ 20) and, if so, whether its
 * last 6 characters are the base62 CRC-32 of the rest. One pass over the char codes, computing the CRC while
 * checking the shape: it runs on every verification (twice per verify request), where the regex and a
 * second pass each cost about as much again.
 */
function nativeState(key: string): typeof NOT_NATIVE | typeof NATIVE | typeof BAD_CHECKSUM {
  const separator = key.length - BODY_LENGTH - 1;
  if (separator < 1 || separator > 20 || key.charCodeAt(separator) !== 95) return NOT_NATIVE;
  let crc = -1;
  // Prefix: `[a-z][a-z0-9]*` segments joined by single `_`.
  let segmentStart = true;
  for (let i = 0; i < separator; i++) {
    const c = key.charCodeAt(i);
    if (c >= 97 && c <= 122) segmentStart = false;
    else if (segmentStart) return NOT_NATIVE;
    else if (c === 95) segmentStart = true;
    else if (c < 48 || c > 57) return NOT_NATIVE;
    crc = (CRC_TABLE[(crc ^ c) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  if (segmentStart) return NOT_NATIVE;
  const end = key.length - CHECKSUM_LENGTH;
  // The separator, then the secret.
  for (let i = separator; i < end; i++) {
    const c = key.charCodeAt(i);
    if (i > separator && digitOf(c) < 0) return NOT_NATIVE;
    crc = (CRC_TABLE[(crc ^ c) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  let stored = 0;
  for (let i = end; i < key.length; i++) {
    const digit = digitOf(key.charCodeAt(i));
    if (digit < 0) return NOT_NATIVE;
    stored = stored * 62 + digit;
  }
  return stored === (crc ^ -1) >>> 0 ? NATIVE : BAD_CHECKSUM;
}

/**
 * Whether `prefix` is a valid key prefix: `[a-z][a-z0-9]*` segments joined by `_`, 1–20 characters.
 *
 * @example
 * isValidPrefix('sk_live'); // true
 * isValidPrefix('Live');    // false
 */
export function isValidPrefix(prefix: string): boolean {
  return prefix.length >= 1 && prefix.length <= 20 && PREFIX_PATTERN.test(prefix);
}

/**
 * Generates a new key `{prefix}_{secret}{checksum}` from 32 CSPRNG bytes.
 *
 * @example
 * const key = generateKey('kw'); // 'kw_3xY…' (52 characters)
 */
export function generateKey(prefix = 'kw'): string {
  if (!isValidPrefix(prefix)) throw new TypeError('invalid key prefix');
  const secret = toBase62(BigInt(`0x${randomBytes(32).toString('hex')}`), SECRET_LENGTH);
  const head = `${prefix}_${secret}`;
  return head + checksumOf(head);
}

/**
 * Splits a native key into prefix, secret and checksum; `null` if it is not in the native shape or its
 * checksum does not match.
 *
 * @example
 * parseKey(generateKey('sk_live'))?.prefix; // 'sk_live'
 * parseKey('sk_live_tampered');             // null
 */
export function parseKey(key: string): ParsedKey | null {
  if (nativeState(key) !== NATIVE) return null;
  const separator = key.length - BODY_LENGTH - 1;
  const end = key.length - CHECKSUM_LENGTH;
  return { prefix: key.slice(0, separator), secret: key.slice(separator + 1, end), checksum: key.slice(end) };
}

/**
 * Whether `key` is a native Keyward key with a correct checksum. Cheap: no hashing, no I/O.
 *
 * @example
 * isWellFormed(generateKey()); // true
 */
export function isWellFormed(key: string): boolean {
  return parseKey(key) !== null;
}

/**
 * Classifies a presented string (see {@link KeyShape}). A string in the native shape with a bad
 * checksum, or anything outside 16–256 printable characters, is `invalid`.
 *
 * @example
 * classifyKey(generateKey());           // 'native'
 * classifyKey('a-legacy-token-0123456'); // 'foreign'
 * classifyKey('short');                 // 'invalid'
 */
export function classifyKey(key: string): KeyShape {
  if (key.length > 256 || key.length < 16) return 'invalid';
  // The prefix is everything before the `_` that starts the 49-character body.
  const state = nativeState(key);
  if (state !== NOT_NATIVE) return state === NATIVE ? 'native' : 'invalid';
  return PRINTABLE_PATTERN.test(key) ? 'foreign' : 'invalid';
}

/** A native key found in a text by {@link findKeys}. */
export interface FoundKey {
  /** The key itself: a secret, to be handled as one (hash it, never print it). */
  key: string;
  /** Where it starts in the text, in UTF-16 code units from 0. */
  index: number;
  /** The line it starts on, from 1 (lines end at `\n`). */
  line: number;
  /** Where on that line it starts, from 1, in UTF-16 code units. */
  column: number;
}

/** The `_` before a key's 49-character body (secret and checksum): where every native key can be found from. */
const BODY_START = /_(?=[A-Za-z0-9]{49})/g;
const MAX_PREFIX_LENGTH = 20;

const isPrefixChar = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 95;

/**
 * Every native Keyward key in `text` whose checksum is right, in order: the scanner behind `keyward scan` and
 * push protection. A string in the key's shape with a wrong checksum is not reported, so look-alikes (examples,
 * hashes, other vendors' tokens) give no false positives. A key is found wherever it sits, even inside a longer
 * word: its prefix is the one (of the up to 20 `[a-z0-9_]` characters before the body) that makes the
 * checksum right.
 *
 * @example
 * for (const found of findKeys(source)) console.log(`${found.line}:${found.column}`, displayPrefix(found.key));
 */
export function findKeys(text: string): FoundKey[] {
  const found: FoundKey[] = [];
  const pattern = new RegExp(BODY_START.source, 'g');
  let line = 1;
  let lineStart = 0;
  let counted = 0;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    const separator = match.index;
    const end = separator + BODY_LENGTH + 1;
    // The longest prefix that makes the checksum right (a wrong one passes by chance once in 2^32).
    let start = -1;
    for (let length = 1; length <= MAX_PREFIX_LENGTH && separator - length >= 0; length++) {
      if (!isPrefixChar(text.charCodeAt(separator - length))) break;
      if (nativeState(text.slice(separator - length, end)) === NATIVE) start = separator - length;
    }
    if (start < 0) continue;
    for (; counted < start; counted++) {
      if (text.charCodeAt(counted) === 10) {
        line++;
        lineStart = counted + 1;
      }
    }
    found.push({ key: text.slice(start, end), index: start, line, column: start - lineStart + 1 });
    pattern.lastIndex = end;
  }
  return found;
}

/**
 * The display prefix of a key, safe to show in lists: for a native key the prefix, `_` and the first 8
 * characters of the 43-character secret; for any other key at most a quarter of it and never more than 8
 * characters (a 16-character imported key shows 4), so the part shown never weakens a short key much.
 *
 * @example
 * displayPrefix('kw_AbCdEfGh…');           // 'kw_AbCdEfGh'
 * displayPrefix('legacy-token-0123456789'); // 'legac'
 */
export function displayPrefix(key: string): string {
  const parsed = parseKey(key);
  if (parsed) return `${parsed.prefix}_${parsed.secret.slice(0, DISPLAY_SECRET_CHARS)}`;
  return key.slice(0, Math.min(DISPLAY_SECRET_CHARS, Math.floor(key.length / 4)));
}

/**
 * SHA-256 of the whole key, lower-case hex (64 characters): what Keyward stores and looks keys up by.
 * Use it to own records by key without ever storing the key.
 *
 * @example
 * await db.sessions.insert({ ownerKeyHash: hashApiKey(presentedKey) });
 */
export function hashApiKey(key: string): string {
  // One-shot `hash` (Node ≥ 20.12): no Hash object per call, about 2–3× cheaper than createHash here.
  return hash('sha256', key, 'hex');
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;

/**
 * Whether `key` hashes to `storedHash`, compared in constant time.
 *
 * @example
 * if (!verifyApiKeyHash(presentedKey, row.ownerKeyHash)) throw new Error('not yours');
 */
export function verifyApiKeyHash(key: string, storedHash: string): boolean {
  const actual = createHash('sha256').update(key, 'utf8').digest();
  const wellFormed = HEX_SHA256.test(storedHash);
  // Compare against a same-length buffer either way, so a malformed stored hash takes the same time.
  const expected = wellFormed ? Buffer.from(storedHash, 'hex') : Buffer.alloc(actual.length);
  return timingSafeEqual(actual, expected) && wellFormed;
}
