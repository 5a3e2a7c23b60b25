import { credentialOf, hasScopes, rateLimitHeaders, scopeCovers, secondsUntil, UNAUTHENTICATED_CODES } from '@keyward/sdk';
import { describe, expect, it } from 'vitest';
import * as principal from '../../packages/server/src/callers/principal.js';

describe('SDK shared helpers', () => {
  it('are the very functions the server uses, so the two cannot drift apart', () => {
    expect(principal.hasScopes).toBe(hasScopes);
    expect(principal.scopeCovers).toBe(scopeCovers);
  });

  it('read a credential as Keyward does', () => {
    expect(credentialOf({ authorization: 'bearer  kw_abc ' })).toBe('kw_abc');
    expect(credentialOf({ authorization: 'Basic dXNlcg==', apiKey: 'kw_abc' })).toBe('\u0000');
    expect(credentialOf({ authorization: '', apiKey: ' kw_abc ' })).toBe('kw_abc');
    expect(credentialOf({ apiKey: '  ' })).toBeUndefined();
    expect(credentialOf({})).toBeUndefined();
  });

  it('match the documented examples', () => {
    expect(scopeCovers('inventory:*', 'inventory:read')).toBe(true);
    expect(scopeCovers('inventory:read', 'inventory:write')).toBe(false);
    expect(secondsUntil(1_700_000_060, 1_700_000_000_000, 1)).toBe(60);
    expect(secondsUntil(1_700_000_000, 1_700_000_000_000, 1)).toBe(1);
    // A window that began 0.5 s into a second resets at x.5, which Keyward rounds up: never more than the window.
    expect(secondsUntil(1_700_000_061, 1_700_000_000_600, 1, 60)).toBe(60);
    expect(rateLimitHeaders({ limit: 2, remaining: 0, reset: 1_700_000_061, window_seconds: 60 }, 1_700_000_000_600).ratelimit).toBe(
      '"default";r=0;t=60',
    );
    expect(rateLimitHeaders({ limit: 100, remaining: 99, reset: 1_700_000_060, window_seconds: 60 }, 1_700_000_000_000)).toEqual({
      'ratelimit-policy': '"default";q=100;w=60',
      ratelimit: '"default";r=99;t=60',
    });
    expect(rateLimitHeaders({ limit: 5, remaining: -1, reset: 0 }, 1_700_000_000_000)).toEqual({
      'ratelimit-policy': '"default";q=5',
      ratelimit: '"default";r=0;t=0',
    });
    expect(rateLimitHeaders(undefined)).toEqual({});
    expect(UNAUTHENTICATED_CODES.REVOKED).toBe('KEY_REVOKED');
  });
});
