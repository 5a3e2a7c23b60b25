import { type Caller, keyReach, type Principal } from '../callers/principal.js';
import type { ApiKey, User } from '../domain.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import type { Page } from '../pagination.js';
import type { Db } from '../store/database.js';
import { findUserById } from '../users/repository.js';
import type { IdempotentRequest } from './idempotency.js';
import type { IssueResult, KeyService } from './service.js';

export interface SelfCreateKeyInput {
  /** Default: `Key ` and the display prefix, e.g. `Key kw_3xYkAb12`. */
  name?: string;
  description?: string | null;
  scopes?: string[];
  expiresAt?: number | null;
  metadata?: Record<string, unknown>;
}

export interface SelfListKeysInput {
  includeInactive?: boolean;
  limit?: number;
  cursor?: string;
  /** As for `KeyService.list`: name or display prefix containing this (any case), or the exact id. */
  q?: string;
}

export type SelfService = ReturnType<typeof createSelfService>;

/**
 * The user a principal acts for on the `/v1/users/me` routes: a user signed in with a JWT, or the owner of
 * a user-owned key (dual auth). Admin keys, ownerless keys and the operator have no "me".
 */
export function selfUserId(principal: Principal): string | null {
  if (principal.kind === 'user') return principal.user.id;
  if (principal.kind === 'key') return principal.key.userId;
  return null;
}

const notAUser = (): Failure<'FORBIDDEN'> =>
  err('FORBIDDEN', 'these routes are for a signed-in user (JWT) or a key that belongs to a user; admins use /v1/api-keys');

/**
 * Self-service: a user manages their own keys. The rules (own keys only, tier scopes, tier key limit, never
 * admin) are the KeyService's; this only pins every call to the caller's own user.
 */
export function createSelfService({ db: { db }, keys }: { db: Db; keys: KeyService }) {
  return {
    async me(caller: Caller): Promise<Result<User>> {
      const userId = selfUserId(caller.principal);
      if (userId === null) return notAUser();
      // A user-owned key reads its owner only with a management scope, as it reads that user's keys.
      if (caller.principal.kind === 'key' && keyReach(caller.principal, 'read') === null) {
        return err('FORBIDDEN', 'a key needs keyward:keys:read or keyward:keys:write for this');
      }
      const user = caller.principal.kind === 'user' ? caller.principal.user : await findUserById(db, userId);
      return user ? ok(user) : err('USER_NOT_FOUND');
    },

    async createKey(caller: Caller, input: SelfCreateKeyInput, options: { idempotency?: IdempotentRequest } = {}): Promise<IssueResult> {
      const userId = selfUserId(caller.principal);
      if (userId === null) return notAUser();
      return keys.create(caller, { ...input, userId, isAdmin: false }, options);
    },

    async listKeys(caller: Caller, input: SelfListKeysInput): Promise<Result<Page<ApiKey>>> {
      const userId = selfUserId(caller.principal);
      if (userId === null) return notAUser();
      return keys.list(caller, { ...input, userId });
    },

    async deleteKey(caller: Caller, id: string): Promise<Result<ApiKey>> {
      if (selfUserId(caller.principal) === null) return notAUser();
      return keys.remove(caller, id);
    },
  };
}
