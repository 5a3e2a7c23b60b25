import type { KeyCheck, MaybePromise } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import type { Principal } from './principal.js';

export type AuthFailureCode =
  | 'AUTH_REQUIRED'
  | 'INVALID_CREDENTIALS'
  | 'KEY_EXPIRED'
  | 'KEY_DISABLED'
  | 'KEY_REVOKED'
  | 'TOKEN_EXPIRED'
  // JWT signing keys (JWKS) unreachable: not the caller's fault, so 503 rather than 401.
  | 'SERVICE_UNAVAILABLE';
export type AuthResult = Result<Principal, AuthFailureCode>;

/** Signs a user in from a JWT; absent until JWT settings are configured. */
export type JwtAuthenticator = (token: string) => Promise<AuthResult>;

export interface Authenticator {
  /**
   * Resolves a presented credential (an API key or a JWT) to a principal, or says why not (401s, or 503).
   * Synchronous for a cached key (no promise on the hot path); `await` works on either.
   */
  /** `onLookup`: called when an API key must be looked up (not in the cache); see `Verifier.check`. */
  authenticate(credential: string | undefined, onLookup?: () => void): MaybePromise<AuthResult>;
}

// A JWT is three base64url segments; its header always starts with `{"` (eyJ). Keys never contain dots
// in the native shape, so the two are told apart by form alone.
const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

export function looksLikeJwt(credential: string): boolean {
  return JWT_SHAPE.test(credential);
}

function fromCheck(checked: KeyCheck): AuthResult {
  switch (checked.code) {
    case 'VALID':
      return ok({ kind: 'key', key: checked.key });
    case 'EXPIRED':
      return err('KEY_EXPIRED');
    case 'DISABLED':
      return err('KEY_DISABLED');
    case 'REVOKED':
      return err('KEY_REVOKED');
    default:
      return err('INVALID_CREDENTIALS');
  }
}

/** What authentication asks of verification: a key's identity and state (the verifier, given by the container). */
export interface KeyChecker {
  check(key: string, onLookup?: () => void): MaybePromise<KeyCheck>;
}

export function createAuthenticator(deps: { verifier: KeyChecker; jwt?: JwtAuthenticator | null }): Authenticator {
  return {
    authenticate(credential, onLookup) {
      if (credential === undefined || credential === '') return err('AUTH_REQUIRED');
      if (looksLikeJwt(credential)) {
        return deps.jwt ? deps.jwt(credential) : err('INVALID_CREDENTIALS', 'JWT sign-in is not configured');
      }
      const checked = deps.verifier.check(credential, onLookup);
      return checked instanceof Promise ? checked.then(fromCheck) : fromCheck(checked);
    },
  };
}
