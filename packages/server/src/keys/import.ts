import { classifyKey, displayPrefix, hashApiKey } from '@keyward/sdk';
import { v7 as uuidv7 } from 'uuid';
import { audit } from '../audit/audit.js';
import type { Caller } from '../callers/principal.js';
import { type ApiKey, INSTANT_RANGE, isBoundedInstant } from '../domain.js';
import { metadataProblem } from '../input-bounds.js';
import type { Db } from '../store/database.js';
import { unstorableTextIn } from '../text.js';
import { findUserByExternalId } from '../users/repository.js';
import { findKeyByHash, insertKey } from './repository.js';

export type ImportScheme = 'plaintext' | 'sha256' | 'bcrypt';

/** One line of an import file (JSON Lines). Which of `key` / `key_hash` is required depends on the scheme. */
export interface ImportRecord {
  key?: unknown;
  key_hash?: unknown;
  lookup_prefix?: unknown;
  key_prefix?: unknown;
  name?: unknown;
  description?: unknown;
  scopes?: unknown;
  metadata?: unknown;
  user_external_id?: unknown;
  is_admin?: unknown;
  expires_at?: unknown;
}

export interface ImportOutcome {
  imported: number;
  skipped: number;
  /** Problems by line number; never contains a key or a hash. */
  errors: { line: number; message: string }[];
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

type Parsed =
  | { ok: true; key: Omit<ApiKey, 'id' | 'createdAt' | 'updatedAt' | 'userId'>; userExternalId: string | null }
  | { ok: false; message: string };

function str(value: unknown, max: number): string | null {
  return typeof value === 'string' && value.length > 0 && value.length <= max ? value : null;
}

/** Turns one import line into a key record; a plaintext key is hashed here and goes no further. */
export function parseImportRecord(record: ImportRecord, scheme: ImportScheme): Parsed {
  let keyHash: string;
  let keyPrefix: string;
  let hashScheme: ApiKey['hashScheme'] = 'sha256';
  if (scheme === 'plaintext') {
    if (typeof record.key !== 'string' || classifyKey(record.key) === 'invalid') {
      return { ok: false, message: 'key must be 16-256 printable characters (and a valid checksum in the kw_ shape)' };
    }
    keyHash = hashApiKey(record.key);
    keyPrefix = displayPrefix(record.key);
  } else if (scheme === 'sha256') {
    if (typeof record.key_hash !== 'string' || !SHA256_HEX.test(record.key_hash)) {
      return { ok: false, message: 'key_hash must be 64 lower-case hex characters' };
    }
    keyHash = record.key_hash;
    keyPrefix = str(record.key_prefix, 64) ?? 'imported';
  } else {
    const lookup = str(record.lookup_prefix, 64);
    if (typeof record.key_hash !== 'string' || !BCRYPT.test(record.key_hash) || lookup === null || lookup.includes('.')) {
      return { ok: false, message: 'bcrypt needs key_hash ($2a/$2b/$2y) and lookup_prefix (the part of the key before its first ".")' };
    }
    keyHash = record.key_hash;
    keyPrefix = lookup;
    hashScheme = 'bcrypt';
  }
  const scopes = record.scopes ?? [];
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string'))
    return { ok: false, message: 'scopes must be a list of strings' };
  // PostgreSQL cannot store NUL, and a lone surrogate is not text: refused on both databases, as the API does.
  const badText = unstorableTextIn(record, 'line')[0];
  if (badText) return { ok: false, message: `${badText.field} ${badText.message}` };
  const metadata = record.metadata ?? {};
  // The same bounds as the API's (a line is read by no schema): depth, size, and no unenforced `rate_limit`.
  const badMetadata = metadataProblem(metadata);
  if (badMetadata) {
    const where = badMetadata.field === 'metadata' ? '' : ' (import the key, then set it with PATCH /v1/api-keys/{id})';
    return { ok: false, message: `${badMetadata.field} ${badMetadata.message}${where}` };
  }
  let expiresAt: number | null = null;
  if (record.expires_at !== undefined && record.expires_at !== null) {
    expiresAt = typeof record.expires_at === 'string' ? Date.parse(record.expires_at) : Number.NaN;
    if (!isBoundedInstant(expiresAt)) return { ok: false, message: `expires_at must be an ISO 8601 date between ${INSTANT_RANGE}` };
  }
  return {
    ok: true,
    userExternalId: str(record.user_external_id, 256),
    key: {
      name: str(record.name, 200) ?? 'Imported key',
      description: str(record.description, 2000),
      keyHash,
      keyPrefix,
      hashScheme,
      isAdmin: record.is_admin === true,
      scopes: scopes as string[],
      metadata: metadata as Record<string, unknown>,
      isActive: true,
      createdBy: 'import',
      lastUsedAt: null,
      expiresAt,
      revokedAt: null,
      rolledFrom: null,
      budgetKeyId: null,
      rolledAt: null,
      rateLimit: null,
      quota: null,
    },
  };
}

export type ImportService = ReturnType<typeof createImportService>;

export function createImportService({ db: { db }, onKeyChanged = () => {} }: { db: Db; onKeyChanged?: (key: ApiKey) => void }) {
  return {
    /**
     * Imports keys from parsed JSON Lines, in transactions of `batchSize`, each key audited as `key.create`
     * with `source: import`. Keys already present (same hash) are skipped, so an import can be re-run.
     */
    async importRecords(
      caller: Caller,
      lines: AsyncIterable<string> | Iterable<string>,
      scheme: ImportScheme,
      onProgress: (done: number) => void = () => {},
      batchSize = 500,
    ): Promise<ImportOutcome> {
      const outcome: ImportOutcome = { imported: 0, skipped: 0, errors: [] };
      let batch: { line: number; text: string }[] = [];
      let lineNo = 0;
      const flush = async () => {
        const current = batch;
        batch = [];
        const inserted: ApiKey[] = [];
        await db.transaction().execute(async (trx) => {
          for (const { line, text } of current) {
            let record: ImportRecord;
            try {
              record = JSON.parse(text) as ImportRecord;
            } catch {
              outcome.errors.push({ line, message: 'not valid JSON' });
              continue;
            }
            const at = Date.now();
            const parsed = parseImportRecord(record, scheme);
            if (!parsed.ok) {
              outcome.errors.push({ line, message: parsed.message });
              continue;
            }
            if (await findKeyByHash(trx, parsed.key.keyHash)) {
              outcome.skipped += 1;
              continue;
            }
            let userId: string | null = null;
            if (parsed.userExternalId !== null) {
              const user = await findUserByExternalId(trx, parsed.userExternalId);
              if (!user) {
                outcome.errors.push({ line, message: `no user with external id ${parsed.userExternalId}` });
                continue;
              }
              userId = user.id;
            }
            const id = uuidv7();
            const key: ApiKey = { ...parsed.key, id, userId, createdAt: at, updatedAt: at };
            await insertKey(trx, key);
            inserted.push(key);
            await audit(
              trx,
              caller,
              'key.create',
              { type: 'api_key', id },
              { source: 'import', scheme, key_prefix: parsed.key.keyPrefix },
              at,
            );
            outcome.imported += 1;
          }
        });
        // After commit: drops any remembered "unknown key" for these hashes, here and on other instances.
        for (const key of inserted) onKeyChanged(key);
        onProgress(lineNo);
      };
      for await (const text of lines) {
        lineNo += 1;
        if (text.trim() === '') continue;
        batch.push({ line: lineNo, text });
        if (batch.length >= batchSize) await flush();
      }
      await flush();
      return outcome;
    },
  };
}
