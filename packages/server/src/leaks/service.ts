import { verify } from 'node:crypto';
import { classifyKey, findKeys, hashApiKey } from '@keyward/sdk';
import { type AuditedFields, audit, diff } from '../audit/audit.js';
import type { BruteForceGuard } from '../callers/brute-force-guard.js';
import { type Caller, keyReach } from '../callers/principal.js';
import { type ApiKey, isoOrNull } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import { actorData, keySummary } from '../events/catalogue.js';
import { emitEvent } from '../events/outbox.js';
import { findKeyByHash, findKeyForUpdate, updateKey } from '../keys/repository.js';
import type { Db } from '../store/database.js';
import type { GithubKeys } from './github-keys.js';
import { findKeysByHashes } from './repository.js';

// Leaked keys, reported by GitHub's secret scanning, by anyone holding one, or found by `keyward scan`: each real
// key is revoked at once and audited as `key.leaked`, saying where it was seen. The key service has no revocation
// that records a source, so this wing revokes through the key repository, as the key service does
// (`keys/service.ts`, `revoke`), and tells the caches through the key service's change hook.

/** Where a leak was reported from, as its audit entry says. */
export type LeakSource = 'github' | 'report' | 'scan';

/** What the audit entry records of a leak besides its source: never the key. */
export interface LeakNote {
  source: LeakSource;
  /** Where the key was seen: GitHub's URL of the match. */
  url?: string;
  /** GitHub's name for the pattern that matched, and where on GitHub it was found (`commit`, `gist`, …). */
  tokenType?: string;
  foundIn?: string;
  /** `keyward scan`: the file and line. */
  location?: string;
}

/** One match of a GitHub secret-scanning report. */
export interface GithubMatch {
  token: string;
  type: string;
  url?: string | undefined;
  source?: string | undefined;
}

/** GitHub's partner feedback for one match: whether the token was a real key. Never the token itself. */
export interface GithubFeedback {
  token_hash: string;
  token_type: string;
  label: 'true_positive' | 'false_positive';
}

/** A key `keyward scan` found, and where (`file:line`): the audit entry of its revocation says so. */
export interface ScanFinding {
  key: string;
  location?: string | undefined;
}

/**
 * What a scanned key is: `active` (it works now), `deactivated` or `expired` (it can be brought back),
 * `revoked` (for good), or `not_found` (no key of this Keyward).
 */
export type ScannedStatus = 'active' | 'deactivated' | 'expired' | 'revoked' | 'not_found';

/** The statuses of a key that works or can be made to work again: the ones a scan revokes. */
const LIVE_STATUSES: ReadonlySet<ScannedStatus> = new Set(['active', 'deactivated', 'expired']);

/** One finding of a scan, by its position in the request: never the key. */
export interface ScanResult {
  index: number;
  keyId: string | null;
  /** The key's status when it was looked up (before a revocation by this request). */
  status: ScannedStatus;
  /** Whether this request revoked it. */
  revoked: boolean;
}

export function scannedStatus(key: ApiKey | undefined, now: number): ScannedStatus {
  if (!key) return 'not_found';
  if (key.revokedAt !== null) return 'revoked';
  if (!key.isActive) return 'deactivated';
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
  return 'active';
}

export interface LeakServiceDeps {
  db: Db;
  /** The key service's change hook: caches on every instance drop the keys revoked. */
  announceChanged: (keys: readonly Pick<ApiKey, 'keyHash'>[]) => void;
  githubKeys: GithubKeys;
  /** Counts `POST /v1/leaks/report` requests per client address. */
  reportGuard: BruteForceGuard;
  now?: () => number;
}

export type LeakService = ReturnType<typeof createLeakService>;

const GITHUB: Caller['principal'] = { kind: 'system', name: 'github' };
const REPORTER: Caller['principal'] = { kind: 'system', name: 'leak-report' };
/** The guard's scope for report counts: apart from the addresses' failed authentications. */
const REPORT_SCOPE = 'leak-report';
/** GitHub's URL and names are kept in the audit entry up to this length. */
const MAX_NOTE_LENGTH = 2_000;
/** Seconds GitHub is asked to wait when its keys cannot be loaded. */
const KEYS_RETRY_SECONDS = 60;

const REVOKED: AuditedFields<ApiKey> = { isActive: ['is_active'], revokedAt: ['revoked_at', isoOrNull] };

const clip = (text: string): string => (text.length > MAX_NOTE_LENGTH ? text.slice(0, MAX_NOTE_LENGTH) : text);

function noteFields(note: LeakNote): Record<string, string> {
  const fields: Record<string, string> = { source: note.source };
  if (note.url) fields.url = clip(note.url);
  if (note.tokenType) fields.token_type = clip(note.tokenType);
  if (note.foundIn) fields.found_in = clip(note.foundIn);
  if (note.location) fields.location = clip(note.location);
  return fields;
}

const headerValue = (value: string | string[] | undefined): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;

export function createLeakService({ db: { db, dialect }, announceChanged, githubKeys, reportGuard, now = Date.now }: LeakServiceDeps) {
  /**
   * The key a presented string is, by its SHA-256 hash; `undefined` for anything else. Strings that cannot be
   * a key (a native shape with a wrong checksum, or not 16–256 printable characters) are never looked up.
   * Imported bcrypt keys not yet verified once are not found: checking one costs a bcrypt comparison per
   * candidate, which an unauthenticated caller must not be able to ask for.
   */
  async function lookUp(token: string): Promise<ApiKey | undefined> {
    if (classifyKey(token) === 'invalid') return undefined;
    return findKeyByHash(db, hashApiKey(token));
  }

  /**
   * Revokes the key a presented string is, if it is one, and audits the leak as `key.leaked` (a key revoked
   * already is audited too: the report says where it was seen). The key as it is afterwards; `undefined` when
   * the string is no key of this Keyward.
   */
  async function revokeLeaked(caller: Caller, token: string, note: LeakNote): Promise<ApiKey | undefined> {
    const found = await lookUp(token);
    return found && revokeLeakedKey(caller, found.id, note);
  }

  /** {@link revokeLeaked} for a key already found (by id): a batch that looked its keys up once revokes them. */
  async function revokeLeakedKey(caller: Caller, id: string, note: LeakNote): Promise<ApiKey | undefined> {
    const revoked = await db.transaction().execute(async (trx): Promise<ApiKey | undefined> => {
      const current = await findKeyForUpdate(trx, id, dialect);
      if (!current) return undefined;
      const at = now();
      const changes = current.revokedAt === null ? { isActive: false, revokedAt: at } : {};
      const after = current.revokedAt === null ? ((await updateKey(trx, current.id, { ...changes, updatedAt: at })) ?? current) : current;
      await audit(
        trx,
        caller,
        'key.leaked',
        { type: 'api_key', id: current.id },
        { ...noteFields(note), ...diff(current, changes, REVOKED) },
        at,
      );
      // Receivers watching revocations hear of this one too; `key.leaked` says where the key was seen.
      const revokedNow = current.revokedAt === null;
      if (revokedNow) await emitEvent(trx, 'key.revoked', { key: keySummary(after), actor: actorData(caller) }, at);
      await emitEvent(trx, 'key.leaked', { key: keySummary(after), ...noteFields(note), revoked: revokedNow }, at);
      return after;
    });
    if (revoked) announceChanged([revoked]);
    return revoked;
  }

  return {
    lookUp,
    revokeLeaked,

    /**
     * `keyward scan` through a server: what each found key is, in one look-up for the batch, and with `revoke`
     * each live one revoked and audited as `key.leaked` (source `scan`, with its location; a key found twice is
     * revoked once, at its first location). For a caller that reaches every key (an admin, or a key holding
     * `keyward:keys:write` that belongs to no user): it answers about any key, so it must not be open to others.
     * No brute-force count: the caller is trusted, and a repository of fixture keys must not lock it out. A
     * location holding a key is refused (`SECRET_IN_FIELD`), since it would be stored in the audit entry.
     */
    async scanKeys(caller: Caller, findings: readonly ScanFinding[], revoke: boolean): Promise<Result<ScanResult[]>> {
      if (keyReach(caller.principal, 'write')?.all !== true) {
        return err('FORBIDDEN', 'scanning for leaked keys needs an admin key, or keyward:keys:write on a key of no user');
      }
      for (const [index, finding] of findings.entries()) {
        if (finding.location !== undefined && findKeys(finding.location).length > 0) {
          const field = `body.findings.${index}.location`;
          const message = 'holds an API key: it would be stored in the audit entry';
          return err('SECRET_IN_FIELD', `${field}: ${message}`, [{ field, message }]);
        }
      }
      const hashes = findings.map((finding) => (classifyKey(finding.key) === 'invalid' ? null : hashApiKey(finding.key)));
      const found = await findKeysByHashes(db, [...new Set(hashes.filter((hash): hash is string => hash !== null))]);
      const at = now();
      const results = findings.map((_, index): ScanResult => {
        const hash = hashes[index];
        const key = hash === null || hash === undefined ? undefined : found.get(hash);
        return { index, keyId: key?.id ?? null, status: scannedStatus(key, at), revoked: false };
      });
      if (!revoke) return ok(results);
      const revokedNow = new Set<string>();
      for (const [index, result] of results.entries()) {
        const finding = findings[index];
        if (!finding || result.keyId === null || !LIVE_STATUSES.has(result.status)) continue;
        if (!revokedNow.has(result.keyId)) {
          const note: LeakNote = { source: 'scan', ...(finding.location ? { location: finding.location } : {}) };
          if ((await revokeLeakedKey(caller, result.keyId, note)) === undefined) continue;
          revokedNow.add(result.keyId);
        }
        result.revoked = true;
      }
      return ok(results);
    },

    /**
     * Checks a GitHub secret-scanning report's signature: ECDSA P-256 with SHA-256 over the body exactly as
     * received, base64 of the DER signature, by the key GitHub's list names `identifier`. node:crypto does it
     * all (OpenSSL reads the PEM key and the DER signature), so no library is needed.
     */
    async checkGithubSignature(
      body: Buffer,
      identifierHeader: string | string[] | undefined,
      signatureHeader: string | string[] | undefined,
    ): Promise<Result<null>> {
      const identifier = headerValue(identifierHeader);
      const signature = headerValue(signatureHeader);
      if (identifier === undefined || signature === undefined) {
        return err('INVALID_SIGNATURE', 'the Github-Public-Key-Identifier and Github-Public-Key-Signature headers are required');
      }
      const found = await githubKeys.keyFor(identifier);
      if (!found.ok && found.reason === 'unavailable') {
        return {
          ...err('SERVICE_UNAVAILABLE', 'GitHub’s secret-scanning keys cannot be loaded; send the report again later'),
          retryAfterSeconds: KEYS_RETRY_SECONDS,
        };
      }
      if (!found.ok) return err('INVALID_SIGNATURE', 'no GitHub secret-scanning key has this identifier');
      let valid = false;
      try {
        valid = verify('sha256', body, found.key, Buffer.from(signature, 'base64'));
      } catch {
        // A signature OpenSSL cannot even read is no valid one.
      }
      return valid ? ok(null) : err('INVALID_SIGNATURE', 'the signature does not match the body');
    },

    /**
     * Takes a report whose signature was checked: each token that is a real key is revoked, the others are
     * ignored. The feedback names each match by its token's SHA-256 hash, in the report's order.
     */
    async takeGithubReport(matches: readonly GithubMatch[], ip: string | null): Promise<GithubFeedback[]> {
      const caller: Caller = { principal: GITHUB, ip };
      const real = new Map<string, boolean>();
      const feedback: GithubFeedback[] = [];
      for (const match of matches) {
        const hash = hashApiKey(match.token);
        let isReal = real.get(hash);
        if (isReal === undefined) {
          const note: LeakNote = { source: 'github', tokenType: match.type };
          if (match.url) note.url = match.url;
          if (match.source) note.foundIn = match.source;
          isReal = (await revokeLeaked(caller, match.token, note)) !== undefined;
          real.set(hash, isReal);
        }
        feedback.push({ token_hash: hash, token_type: match.type, label: isReal ? 'true_positive' : 'false_positive' });
      }
      return feedback;
    },

    /**
     * Anyone holding a key may have it revoked: each real key among `keys` is. The answer is the same whatever
     * the keys were, and requests are counted per client address (`RATE_LIMITED` past the limit).
     */
    async takeReport(ip: string | null, keys: readonly string[]): Promise<Result<{ received: number }>> {
      const decision = await reportGuard.check(ip, REPORT_SCOPE);
      if (decision.blocked) {
        return {
          ...err('RATE_LIMITED', 'too many leak reports from this address; try again later'),
          retryAfterSeconds: decision.retryAfterSeconds,
        };
      }
      // Counted before the work, and in flight until counted, so a burst cannot outrun the count.
      const counted = reportGuard.track(ip, REPORT_SCOPE);
      try {
        await reportGuard.fail(ip, REPORT_SCOPE);
      } finally {
        counted();
      }
      const caller: Caller = { principal: REPORTER, ip };
      for (const key of new Set(keys)) await revokeLeaked(caller, key, { source: 'report' });
      return ok({ received: keys.length });
    },
  };
}
