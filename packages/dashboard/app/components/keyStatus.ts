import type { ApiKey } from '@keyward/sdk';

export type KeyState = 'active' | 'deactivated' | 'revoked' | 'expired' | 'expires-soon' | 'quota-empty' | 'quota-low';

export const STATE_LABEL: Record<KeyState, string> = {
  active: 'Active',
  deactivated: 'Deactivated',
  revoked: 'Revoked',
  expired: 'Expired',
  'expires-soon': 'Expires soon',
  'quota-empty': 'Quota used up',
  'quota-low': 'Quota low',
};

export const STATE_COLOR: Record<KeyState, string> = {
  active: 'teal',
  deactivated: 'gray',
  revoked: 'red',
  expired: 'gray',
  'expires-soon': 'orange',
  'quota-empty': 'red',
  'quota-low': 'yellow',
};

const SOON_MS = 7 * 24 * 3600 * 1000;

type KeyLike = Pick<ApiKey, 'status' | 'expires_at' | 'quota'>;

/** The badge a key gets: its stored status, refined by what the record shows (expiry near, quota low). */
export function keyState(key: KeyLike, now = Date.now()): KeyState {
  if (key.status === 'revoked') return 'revoked';
  if (key.status === 'inactive') return 'deactivated';
  if (key.status === 'expired' || (key.expires_at && Date.parse(key.expires_at) <= now)) return 'expired';
  if (key.quota) {
    if (key.quota.remaining === 0) return 'quota-empty';
    const base = key.quota.refill?.amount ?? 0;
    if (base > 0 ? key.quota.remaining <= base * 0.1 : key.quota.remaining <= 10) return 'quota-low';
  }
  if (key.expires_at && Date.parse(key.expires_at) - now < SOON_MS) return 'expires-soon';
  return 'active';
}

/** Whether a key can still be used or changed back (not revoked, not expired). */
export const isLive = (key: KeyLike, now = Date.now()): boolean => {
  const state = keyState(key, now);
  return state !== 'revoked' && state !== 'expired';
};
