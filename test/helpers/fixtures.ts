import { generateKey, hashApiKey } from '@keyward/sdk';
import { v7 as uuidv7 } from 'uuid';
import type { ApiKey } from '../../packages/server/src/domain.js';

/** A complete key record for repository-level tests (a fresh random key, hashed; never stored in plaintext). */
export function newApiKey(overrides: Partial<ApiKey> = {}, now = Date.now()): ApiKey {
  const key = generateKey();
  const id = uuidv7();
  return {
    id,
    lineageId: id,
    name: 'a key',
    description: null,
    keyHash: hashApiKey(key),
    keyPrefix: key.slice(0, 11),
    hashScheme: 'sha256',
    userId: null,
    isAdmin: false,
    scopes: [],
    metadata: {},
    isActive: true,
    createdAt: now,
    createdBy: 'test',
    updatedAt: now,
    lastUsedAt: null,
    expiresAt: null,
    revokedAt: null,
    rolledFrom: null,
    budgetKeyId: null,
    rolledAt: null,
    rateLimit: null,
    quota: null,
    ...overrides,
  };
}
