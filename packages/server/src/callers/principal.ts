import { hasScopes } from '@keyward/sdk';
import type { Actor, ApiKey, User } from '../domain.js';

// Scope matching is the SDK's, so the server and the middleware can never disagree on it.
export { hasScopes, scopeCovers } from '@keyward/sdk';

/** Who is making a request: an API key, a user signed in with a JWT, or the local operator (CLI). */
export type Principal = { kind: 'key'; key: ApiKey } | { kind: 'user'; user: User } | { kind: 'system'; name: string };

/** The context every service call that changes something receives: who, and from where. */
export interface Caller {
  principal: Principal;
  ip: string | null;
}

export const MANAGEMENT_SCOPES = {
  verify: 'keyward:verify',
  keysRead: 'keyward:keys:read',
  keysWrite: 'keyward:keys:write',
} as const;

export function actorOf(principal: Principal): Actor {
  switch (principal.kind) {
    case 'key':
      return { type: 'api_key', id: principal.key.id };
    case 'user':
      return { type: 'user', id: principal.user.id };
    case 'system':
      return { type: 'system', id: principal.name };
  }
}

export function isAdmin(principal: Principal): boolean {
  return principal.kind === 'system' || (principal.kind === 'key' && principal.key.isAdmin);
}

/**
 * Which keys a principal may read or change: all of them, one user's, or none.
 * Admins and the CLI reach every key; a key with `keyward:keys:*` reaches every key, or only its owner's
 * keys when it belongs to a user; a signed-in user reaches only their own keys.
 */
export type KeyReach = { all: true } | { all: false; userId: string } | null;

export function keyReach(principal: Principal, mode: 'read' | 'write'): KeyReach {
  if (isAdmin(principal)) return { all: true };
  if (principal.kind === 'user') return { all: false, userId: principal.user.id };
  if (principal.kind !== 'key') return null;
  const needed = mode === 'read' ? [MANAGEMENT_SCOPES.keysRead, MANAGEMENT_SCOPES.keysWrite] : [MANAGEMENT_SCOPES.keysWrite];
  if (!needed.some((scope) => hasScopes(principal.key.scopes, [scope]))) return null;
  return principal.key.userId === null ? { all: true } : { all: false, userId: principal.key.userId };
}

export function reaches(reach: KeyReach, key: Pick<ApiKey, 'userId'>): boolean {
  return reach !== null && (reach.all || key.userId === reach.userId);
}

/** Whether a principal may call the verify endpoint: an admin key, or a key holding `keyward:verify`. */
export function mayVerify(principal: Principal): boolean {
  return isAdmin(principal) || (principal.kind === 'key' && hasScopes(principal.key.scopes, [MANAGEMENT_SCOPES.verify]));
}
