import { hashApiKey } from '@keyward/sdk';
import type { ApiKey } from '../domain.js';
import { updateKey } from '../store/api-keys.repository.js';
import type { Executor } from '../store/schema.js';
import { lookUpKey, present } from './key-lookup.js';

/** Verification outcomes (SPEC §5), in the order the checks run. */
export const VERIFY_CODES = [
  'VALID',
  'INVALID_FORMAT',
  'NOT_FOUND',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'INSUFFICIENT_SCOPES',
  'RATE_LIMITED',
  'USAGE_EXCEEDED',
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

/** The result of checking a presented key's identity and state (no scopes, limits or quota). */
export type KeyCheck =
  | { code: 'VALID'; key: ApiKey }
  | { code: 'REVOKED' | 'DISABLED' | 'EXPIRED'; key: ApiKey }
  | { code: 'INVALID_FORMAT' | 'NOT_FOUND'; key: null };

export interface VerifierDeps {
  db: Executor;
  now?: () => number;
}

export interface Verifier {
  /** Format → look-up by hash → revoked → deactivated → expired. The first failure decides the code. */
  check(key: string): Promise<KeyCheck>;
}

export function stateOf(key: ApiKey, now: number): KeyCheck {
  if (key.revokedAt !== null) return { code: 'REVOKED', key };
  if (!key.isActive) return { code: 'DISABLED', key };
  if (key.expiresAt !== null && key.expiresAt <= now) return { code: 'EXPIRED', key };
  return { code: 'VALID', key };
}

export function createVerifier({ db, now = Date.now }: VerifierDeps): Verifier {
  return {
    async check(key) {
      const presented = present(key);
      if (presented === null) return { code: 'INVALID_FORMAT', key: null };
      let found = await lookUpKey(db, key, presented);
      if (!found) return { code: 'NOT_FOUND', key: null };
      if (found.hashScheme !== 'sha256') {
        // An imported key is upgraded to the native SHA-256 scheme the first time it verifies.
        found = (await updateKey(db, found.id, { keyHash: hashApiKey(key), hashScheme: 'sha256' })) ?? found;
      }
      return stateOf(found, now());
    },
  };
}
