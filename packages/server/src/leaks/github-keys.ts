import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';

// The public keys GitHub signs secret-scanning reports with, by identifier: GitHub's published list
// (`{"public_keys": [{"key_identifier": "…", "key": "-----BEGIN PUBLIC KEY-----…", "is_current": true}]}`),
// fetched from a URL or read from a file of the same shape.

/** A key for an identifier, or why there is none: GitHub never listed it, or the list cannot be had. */
export type GithubKeyLookup =
  | { ok: true; key: KeyObject }
  | { ok: false; reason: 'unknown' }
  | { ok: false; reason: 'unavailable'; cause: string };

export interface GithubKeys {
  keyFor(identifier: string): Promise<GithubKeyLookup>;
}

export interface GithubKeysOptions {
  /** Where the list is fetched from (`LEAKS_GITHUB_KEYS_URL`); unused when `file` is set. */
  url: string;
  /** A file holding the list instead (`LEAKS_GITHUB_KEYS_FILE`). */
  file: string | null;
  /** A fetch to use instead of the global one (tests). */
  fetch?: typeof fetch;
  now?: () => number;
  /** How long a list is trusted before it is loaded again: an hour (keys are rotated rarely and announced). */
  ttlMs?: number;
  /** The least time between two loads made for an identifier the list does not hold (so that made-up identifiers cannot make Keyward hammer GitHub). */
  retryMs?: number;
  /** How long a fetch may take. */
  timeoutMs?: number;
}

const HOUR_MS = 60 * 60 * 1000;

/** The P-256 keys of a list, by identifier; entries of any other kind or shape are left out. */
export function parseGithubKeys(body: unknown): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  const list = typeof body === 'object' && body !== null ? (body as { public_keys?: unknown }).public_keys : undefined;
  if (!Array.isArray(list)) throw new Error('the key list has no public_keys array');
  for (const entry of list as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { key_identifier: id, key: pem } = entry as { key_identifier?: unknown; key?: unknown };
    if (typeof id !== 'string' || id === '' || typeof pem !== 'string') continue;
    try {
      const key = createPublicKey(pem);
      if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') keys.set(id, key);
    } catch {
      // Not a public key: GitHub's contract is ECDSA P-256, nothing else verifies a report.
    }
  }
  return keys;
}

/**
 * GitHub's keys, cached: the list is loaded on first use and again once it is older than `ttlMs`, and an
 * identifier it does not hold loads it again at once (a key GitHub has just added). Loads start at most once per
 * `retryMs`, whatever the requests say, and those in flight together are one. A failed load keeps the last good
 * list; with none yet, lookups answer `unavailable` (the report gets a 503, and GitHub sends it again).
 */
export function createGithubKeys(options: GithubKeysOptions): GithubKeys {
  const { url, file } = options;
  const fetchList = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const ttlMs = options.ttlMs ?? HOUR_MS;
  const retryMs = options.retryMs ?? 60_000;
  const timeoutMs = options.timeoutMs ?? 5_000;
  let keys: Map<string, KeyObject> | null = null;
  let loadedAt = 0;
  let triedAt = Number.NEGATIVE_INFINITY;
  let lastFailure = '';
  let loading: Promise<void> | null = null;

  async function read(): Promise<unknown> {
    if (file !== null) return JSON.parse(await readFile(file, 'utf8'));
    const response = await fetchList(url, {
      headers: { accept: 'application/json', 'user-agent': 'keyward' },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) throw new Error(`GitHub's key list answered ${response.status}`);
    return response.json();
  }

  function load(): Promise<void> {
    loading ??= (async () => {
      triedAt = now();
      try {
        keys = parseGithubKeys(await read());
        loadedAt = now();
      } catch (error) {
        lastFailure = error instanceof Error ? error.message : String(error);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  return {
    async keyFor(identifier) {
      if (loading) await loading;
      const stale = keys === null || now() - loadedAt >= ttlMs;
      if ((stale || keys?.has(identifier) !== true) && now() - triedAt >= retryMs) await load();
      if (keys === null) return { ok: false, reason: 'unavailable', cause: lastFailure };
      const key = keys.get(identifier);
      return key ? { ok: true, key } : { ok: false, reason: 'unknown' };
    },
  };
}
