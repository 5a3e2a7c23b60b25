import { actorOf, type Caller } from '../callers/principal.js';
import { type Actor, type ApiKey, isoOrNull, type User } from '../domain.js';

// The events Keyward sends, and what their data holds: ids, names, display prefixes and what changed. Never a
// key, a hash or a token: these builders take the records apart field by field, so a new field on a record does
// not reach a payload unless it is named here.

export const EVENT_TYPES = [
  'key.created',
  'key.updated',
  'key.rolled',
  'key.deactivated',
  'key.activated',
  'key.revoked',
  'key.deleted',
  'key.expiring',
  'key.expired',
  'key.leaked',
  'quota.low',
  'quota.exhausted',
  'user.created',
  'user.updated',
  'user.deleted',
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

export function isEventType(value: string): value is EventType {
  return (EVENT_TYPES as readonly string[]).includes(value);
}

/** A key as events show it: never its hash. */
export interface KeySummary {
  id: string;
  name: string;
  key_prefix: string;
  user_id: string | null;
  is_admin: boolean;
  lineage_id: string;
  expires_at: string | null;
}

export function keySummary(key: Pick<ApiKey, 'id' | 'name' | 'keyPrefix' | 'userId' | 'isAdmin' | 'lineageId' | 'expiresAt'>): KeySummary {
  return {
    id: key.id,
    name: key.name,
    key_prefix: key.keyPrefix,
    user_id: key.userId,
    is_admin: key.isAdmin,
    lineage_id: key.lineageId,
    expires_at: isoOrNull(key.expiresAt),
  };
}

/** A user as events show them. */
export interface UserSummary {
  id: string;
  external_id: string;
  email: string | null;
  tier: string;
}

export function userSummary(user: Pick<User, 'id' | 'externalId' | 'email' | 'tier'>): UserSummary {
  return { id: user.id, external_id: user.externalId, email: user.email, tier: user.tier };
}

/** Who made a change, as the audit log names them; `system` for Keyward's own sweeps. */
export function actorData(caller: Caller): Actor {
  return actorOf(caller.principal);
}

export const SYSTEM_ACTOR: Actor = { type: 'system', id: 'keyward' };
