import type { ApiKey } from '../domain.js';
import { toApiKey } from '../keys/repository.js';
import type { Executor } from '../store/schema.js';

/** The keys with these SHA-256 hashes, by hash, in one query (a scan's batch: at most a few hundred). */
export async function findKeysByHashes(db: Executor, keyHashes: readonly string[]): Promise<Map<string, ApiKey>> {
  if (keyHashes.length === 0) return new Map();
  const rows = await db
    .selectFrom('api_keys')
    .selectAll()
    .where('key_hash', 'in', [...keyHashes])
    .execute();
  return new Map(rows.map((row) => [row.key_hash, toApiKey(row)]));
}
