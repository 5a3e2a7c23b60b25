// Pure helpers shared by the SDK middleware and the Keyward server (its auth hook and gateway), so the two
// read credentials, match scopes and write rate-limit headers the same way.

/**
 * Whether one granted scope covers a required one: `*` covers all, `inventory:*` covers `inventory:read`.
 *
 * @example
 * scopeCovers('inventory:*', 'inventory:read'); // true
 * scopeCovers('inventory:read', 'inventory:write'); // false
 */
export function scopeCovers(granted: string, required: string): boolean {
  if (granted === required || granted === '*') return true;
  return granted.endsWith(':*') && required.startsWith(granted.slice(0, -1));
}

/**
 * Whether the granted scopes cover every required one (Keyward's rule, see {@link scopeCovers}).
 *
 * @example
 * hasScopes(['companies:*'], ['companies:read']); // true
 * hasScopes(['companies:read'], ['companies:write']); // false
 */
export function hasScopes(granted: readonly string[], required: readonly string[]): boolean {
  return required.every((r) => granted.some((g) => scopeCovers(g, r)));
}

/** The two headers a credential is read from. */
export interface CredentialHeaders {
  /** The `Authorization` header. */
  authorization?: string | undefined;
  /** The `X-API-Key` header. */
  apiKey?: string | undefined;
}

/**
 * The credential in `Authorization: Bearer …` or `X-API-Key: …` (as Keyward reads it); `undefined` when none
 * was sent. A non-Bearer `Authorization` header yields a credential that can never verify (`"\u0000"`): it is
 * a credential that cannot be read, not a missing one.
 *
 * @example
 * credentialOf({ authorization: 'Bearer kw_abc' }); // 'kw_abc'
 * credentialOf({ apiKey: ' kw_abc ' }); // 'kw_abc'
 * credentialOf({}); // undefined
 */
export function credentialOf(headers: CredentialHeaders): string | undefined {
  const header = headers.authorization;
  if (typeof header === 'string' && header !== '') {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return match?.[1] ?? '\u0000';
  }
  const apiKey = headers.apiKey?.trim();
  return apiKey === '' ? undefined : apiKey;
}

/**
 * Verify codes that mean "no valid credential", and the 401 problem code each becomes (as Keyward's own
 * routes answer them).
 *
 * @example
 * const code = UNAUTHENTICATED_CODES.REVOKED; // 'KEY_REVOKED'
 */
export const UNAUTHENTICATED_CODES = {
  INVALID_FORMAT: 'INVALID_CREDENTIALS',
  NOT_FOUND: 'INVALID_CREDENTIALS',
  EXPIRED: 'KEY_EXPIRED',
  DISABLED: 'KEY_DISABLED',
  REVOKED: 'KEY_REVOKED',
} as const;

/**
 * Whole seconds from `now` (epoch ms) until `reset` (unix seconds), at least `floor` and at most `cap` (pass the
 * window's length: `reset` is rounded up to a whole second, so counting up again could say 61 for a 60 s window).
 *
 * @example
 * secondsUntil(1_700_000_060, 1_700_000_000_000, 1); // 60
 * secondsUntil(1_700_000_061, 1_700_000_000_600, 1, 60); // 60, not 61
 */
export function secondsUntil(reset: number, now: number, floor: number, cap = Number.POSITIVE_INFINITY): number {
  return Math.max(floor, Math.min(cap, Math.ceil(reset - now / 1000)));
}

/** A key's rate-limit state, as `POST /v1/keys/verify` reports it. */
export interface RateLimitInfo {
  limit: number;
  remaining: number;
  /** When the window resets, in unix seconds. */
  reset: number;
  window_seconds?: number | undefined;
}

/**
 * `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft syntax) for a key with a rate
 * limit: the quota `q` (and window `w` when known), what is left `r` and seconds to reset `t`. No headers
 * for a key without one.
 *
 * @example
 * rateLimitHeaders({ limit: 100, remaining: 99, reset: 1_700_000_060, window_seconds: 60 }, 1_700_000_000_000);
 * // { 'ratelimit-policy': '"default";q=100;w=60', ratelimit: '"default";r=99;t=60' }
 */
export function rateLimitHeaders(ratelimit: RateLimitInfo | null | undefined, now = Date.now()): Record<string, string> {
  if (!ratelimit) return {};
  const window = ratelimit.window_seconds === undefined ? '' : `;w=${ratelimit.window_seconds}`;
  return {
    'ratelimit-policy': `"default";q=${ratelimit.limit}${window}`,
    ratelimit: `"default";r=${Math.max(0, ratelimit.remaining)};t=${secondsUntil(ratelimit.reset, now, 0, ratelimit.window_seconds)}`,
  };
}
