import { classifyKey, displayPrefix, hashApiKey } from '@keyward/sdk';
import { v7 as uuidv7 } from 'uuid';
import { audit } from '../audit/audit.js';
import { type Caller, isAdmin } from '../callers/principal.js';
import { type ApiKey, INSTANT_RANGE, isBoundedInstant } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import { metadataProblem } from '../input-bounds.js';
import { findSecretInFields } from '../secrets.js';
import type { Db } from '../store/database.js';
import { unstorableTextIn } from '../text.js';
import { findUserByExternalId } from '../users/repository.js';
import { lockImports } from './import.repository.js';
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
  | { ok: true; key: Omit<ApiKey, 'id' | 'lineageId' | 'createdAt' | 'updatedAt' | 'userId'>; userExternalId: string | null }
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
  // Push protection, as create and PATCH: a key pasted into a descriptive field would be stored in plaintext.
  const secretIn = findSecretInFields({ name: str(record.name, 200), description: str(record.description, 2000), metadata });
  if (secretIn) return { ok: false, message: `${secretIn} holds an API key: keys must not be stored in descriptive fields` };
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

/** One record to import, numbered as in its file; `error` when the file's line could not be read as a record. */
export type ImportEntry = { line: number; record: ImportRecord } | { line: number; error: string };

/** What became of one record: the id of the key imported or already present, or why it was rejected. */
export type ImportResult =
  | { line: number; status: 'imported' | 'skipped'; id: string }
  | { line: number; status: 'rejected'; message: string };

export interface ImportOptions {
  /** Called after each batch with the line number reached. */
  onProgress?: (line: number) => void;
  /** Called for each record (the HTTP route answers them); no key or hash is in it. */
  onResult?: (result: ImportResult) => void;
  batchSize?: number;
}

/** The most records one `POST /v1/api-keys/import` takes. */
export const MAX_IMPORT_BATCH = 1000;

export type ImportService = ReturnType<typeof createImportService>;

export function createImportService({ db: { db, dialect }, onKeyChanged = () => {} }: { db: Db; onKeyChanged?: (key: ApiKey) => void }) {
  /**
   * Imports records in transactions of `batchSize`, each key audited as `key.create` with `source: import`.
   * Keys already present (same hash) are skipped, so an import can be re-run.
   */
  async function importEntries(
    caller: Caller,
    entries: AsyncIterable<ImportEntry> | Iterable<ImportEntry>,
    scheme: ImportScheme,
    { onProgress = () => {}, onResult = () => {}, batchSize = 500 }: ImportOptions = {},
  ): Promise<ImportOutcome> {
    const outcome: ImportOutcome = { imported: 0, skipped: 0, errors: [] };
    const reject = (line: number, message: string) => {
      outcome.errors.push({ line, message });
      onResult({ line, status: 'rejected', message });
    };
    let batch: ImportEntry[] = [];
    let lastLine = 0;
    const flush = async () => {
      const current = batch;
      batch = [];
      const inserted: ApiKey[] = [];
      const results: ImportResult[] = [];
      await db.transaction().execute(async (trx) => {
        await lockImports(trx, dialect);
        for (const entry of current) {
          const { line } = entry;
          if ('error' in entry) {
            results.push({ line, status: 'rejected', message: entry.error });
            continue;
          }
          const at = Date.now();
          const parsed = parseImportRecord(entry.record, scheme);
          if (!parsed.ok) {
            results.push({ line, status: 'rejected', message: parsed.message });
            continue;
          }
          const present = await findKeyByHash(trx, parsed.key.keyHash);
          if (present) {
            results.push({ line, status: 'skipped', id: present.id });
            continue;
          }
          let userId: string | null = null;
          if (parsed.userExternalId !== null) {
            const user = await findUserByExternalId(trx, parsed.userExternalId);
            if (!user) {
              results.push({ line, status: 'rejected', message: `no user with external id ${parsed.userExternalId}` });
              continue;
            }
            userId = user.id;
          }
          const id = uuidv7();
          const key: ApiKey = { ...parsed.key, id, lineageId: id, userId, createdAt: at, updatedAt: at };
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
          results.push({ line, status: 'imported', id });
        }
      });
      // Counted after commit: a batch that failed to commit imported nothing.
      for (const result of results) {
        if (result.status === 'rejected') reject(result.line, result.message);
        else {
          if (result.status === 'imported') outcome.imported += 1;
          else outcome.skipped += 1;
          onResult(result);
        }
      }
      // After commit: drops any remembered "unknown key" for these hashes, here and on other instances.
      for (const key of inserted) onKeyChanged(key);
      onProgress(lastLine);
    };
    for await (const entry of entries) {
      lastLine = entry.line;
      batch.push(entry);
      if (batch.length >= batchSize) await flush();
    }
    await flush();
    return outcome;
  }

  return {
    importEntries,

    /** Imports keys from the lines of a JSON Lines file (blank lines are skipped); see {@link importEntries}. */
    importRecords(
      caller: Caller,
      lines: AsyncIterable<string> | Iterable<string>,
      scheme: ImportScheme,
      onProgress: (done: number) => void = () => {},
      batchSize = 500,
    ): Promise<ImportOutcome> {
      return importEntries(caller, jsonLinesEntries(lines), scheme, { onProgress, batchSize });
    },

    /**
     * Imports one batch sent over HTTP (admin only), in one transaction. Each record is answered on its own,
     * numbered from 1 in the order sent: a bad record is rejected, the others are imported.
     */
    async importBatch(caller: Caller, scheme: ImportScheme, records: ImportRecord[]): Promise<Result<ImportResult[]>> {
      if (!isAdmin(caller.principal)) return err('FORBIDDEN', 'only an admin may import keys');
      if (records.length > MAX_IMPORT_BATCH) return err('INVALID_REQUEST', `at most ${MAX_IMPORT_BATCH} records per request`);
      const results: ImportResult[] = [];
      await importEntries(
        caller,
        records.map((record, i) => ({ line: i + 1, record })),
        scheme,
        { onResult: (result) => results.push(result), batchSize: MAX_IMPORT_BATCH },
      );
      return ok(results);
    },
  };
}

/** Numbered entries from the lines of a JSON Lines file; blank lines are skipped but counted. */
export async function* jsonLinesEntries(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<ImportEntry> {
  let line = 0;
  for await (const text of lines) {
    line += 1;
    if (text.trim() === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      yield { line, error: 'not valid JSON' };
      continue;
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) yield { line, error: 'not a JSON object' };
    else yield { line, record: record as ImportRecord };
  }
}
