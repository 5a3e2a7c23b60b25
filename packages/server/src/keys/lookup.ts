import type { KeyShape } from '@keyward/sdk';
import bcrypt from 'bcryptjs';
import type { ApiKey } from '../domain.js';
import type { Executor } from '../store/schema.js';
import { findKeyByHash, findKeysByPrefix, updateKey } from './repository.js';

/** A presented key after the format check: its shape and SHA-256 hash. Never holds the plaintext. */
export interface Presented {
  shape: Exclude<KeyShape, 'invalid'>;
  hash: string;
}

/** The look-up prefix of an imported bcrypt key: the part before the first `.` (`amos_1a2b3c4d.<token>`). */
export function bcryptLookupPrefix(key: string): string | null {
  const dot = key.indexOf('.');
  return dot > 0 ? key.slice(0, dot) : null;
}

/**
 * Finds the stored record for a presented key: by SHA-256 hash, and for foreign-shaped keys also among
 * imported bcrypt keys by their look-up prefix (slow by design; such keys are upgraded on first use).
 */
export async function lookUpKey(db: Executor, key: string, presented: Presented): Promise<ApiKey | undefined> {
  const found = await findKeyByHash(db, presented.hash);
  if (found || presented.shape === 'native') return found;
  const prefix = bcryptLookupPrefix(key);
  if (prefix === null) return undefined;
  for (const candidate of await findKeysByPrefix(db, prefix, 'bcrypt')) {
    if (await bcrypt.compare(key, candidate.keyHash)) return candidate;
  }
  return undefined;
}

/**
 * The cache's loader: {@link lookUpKey}, then an imported key found by another scheme is upgraded to the
 * native SHA-256 scheme (once; from then on it is found by hash like any other key).
 */
export async function loadKey(db: Executor, key: string, presented: Presented): Promise<ApiKey | undefined> {
  const found = await lookUpKey(db, key, presented);
  if (!found || found.hashScheme === 'sha256') return found;
  return (await updateKey(db, found.id, { keyHash: presented.hash, hashScheme: 'sha256' })) ?? found;
}
