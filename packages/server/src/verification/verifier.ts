import { classifyKey, hashApiKey } from '@keyward/sdk';
import { type Caller, hasScopes, mayVerify } from '../callers/principal.js';
import type { ApiKey, GateOutcome, GateReport, GateRequest, KeyCheck, MaybePromise, VerifyCode, VerifyGate } from '../domain.js';
import { VERIFY_CODES } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import { loadKey, type Presented } from '../keys/lookup.js';
import { isValidCost } from '../limits/quota.js';
import type { Metrics } from '../metrics.js';
import type { Executor } from '../store/schema.js';
import type { KeyCache } from './key-cache.js';
import type { LastUsedRecorder } from './last-used.js';

const invalidUnits = (field: string): VerifyResult =>
  err('INVALID_COST', `${field}: must be a non-negative integer`, [{ field, message: 'must be a non-negative integer' }]);

export interface VerifyInput {
  key: string;
  scopes?: readonly string[] | undefined;
  /** Units of quota to spend; a non-negative integer, default 1. */
  cost?: number | undefined;
  /**
   * Units of the rate limit to use; a non-negative integer, default 1. 0 checks the limit without using it:
   * a follow-up verification of a request already counted.
   */
  rateLimitCost?: number | undefined;
}

export interface VerifyOutcome extends GateReport {
  code: VerifyCode;
  /** The stored record; `null` when the key is malformed or unknown. */
  key: ApiKey | null;
}

export interface VerifierDeps {
  db: Executor;
  /** Shared by the verify endpoint and the authenticator; without one, every check reads the database. */
  cache?: KeyCache;
  lastUsed?: Pick<LastUsedRecorder, 'touch'>;
  gates?: readonly VerifyGate[];
  /** Finds the record for a well-formed key (tests count calls to it). */
  load?: (db: Executor, key: string, presented: Presented) => Promise<ApiKey | undefined>;
  now?: () => number;
  /** Verifications by code (verify only), key cache hits and misses (every check). */
  metrics?: Pick<Metrics, 'hot'> | undefined;
}

export type VerifyResult = Result<VerifyOutcome, 'FORBIDDEN' | 'INVALID_COST'>;

export interface Verifier {
  /**
   * Format+checksum → look-up by hash (cache, then database) → revoked → deactivated → expired. The first
   * failure decides the code. A malformed key is answered before any cache or database work. Synchronous
   * when the answer is in the cache; `await` works on either. `onLookup` is called, synchronously, when the
   * key is not in the cache and must be looked up (what the brute-force guards count while in flight).
   */
  check(key: string, onLookup?: () => void): MaybePromise<KeyCheck>;
  /**
   * `POST /v1/keys/verify`: {@link check}, then required scopes, then the gates (rate limit, quota).
   * Synchronous when the key is cached and no gate has work to wait for. `onLookup` as for {@link check}.
   */
  verify(caller: Caller, input: VerifyInput, onLookup?: () => void): MaybePromise<VerifyResult>;
}

export function stateOf(key: ApiKey, now: number): KeyCheck {
  if (key.revokedAt !== null) return { code: 'REVOKED', key };
  if (!key.isActive) return { code: 'DISABLED', key };
  if (key.expiresAt !== null && key.expiresAt <= now) return { code: 'EXPIRED', key };
  return { code: 'VALID', key };
}

const INVALID_FORMAT: KeyCheck = { code: 'INVALID_FORMAT', key: null };
const NOT_FOUND: KeyCheck = { code: 'NOT_FOUND', key: null };

export function createVerifier({ db, cache, lastUsed, gates = [], load = loadKey, now = Date.now, metrics }: VerifierDeps): Verifier {
  // Plain-number children, folded into prom-client on scrape: counting costs no label hashing here.
  const cacheHit = metrics?.hot.cacheLookups('hit');
  const cacheMiss = metrics?.hot.cacheLookups('miss');
  const byCode = new Map(VERIFY_CODES.map((code) => [code, metrics?.hot.verifications(code)]));
  const counted = (result: VerifyResult): VerifyResult => {
    if (result.ok) byCode.get(result.value.code)?.inc();
    return result;
  };

  // `at` is read once per verification and passed on: a clock read costs about as much as a cache look-up.
  function settle(found: ApiKey | null | undefined, at: number): KeyCheck {
    if (found == null) return NOT_FOUND;
    const state = stateOf(found, at);
    if (state.code === 'VALID') lastUsed?.touch(found.id, at);
    return state;
  }
  const settleNow = (found: ApiKey | undefined): KeyCheck => settle(found, now());

  function checkAt(key: string, at: number, onLookup: (() => void) | undefined): MaybePromise<KeyCheck> {
    const shape = classifyKey(key);
    if (shape === 'invalid') return INVALID_FORMAT;
    const hash = hashApiKey(key);
    // A fresh cached answer needs no promise; otherwise the plaintext stays in this closure for the one
    // load (imported bcrypt keys need it) and is never kept.
    if (cache) {
      const found = cache.fresh(hash, at);
      if (found !== undefined) {
        cacheHit?.inc();
        return settle(found, at);
      }
      cacheMiss?.inc();
      onLookup?.();
      return cache.get(hash, () => load(db, key, { shape, hash })).then(settleNow);
    }
    onLookup?.();
    return load(db, key, { shape, hash }).then(settleNow);
  }

  /** Runs the gates from `index` on: synchronously while they answer synchronously. */
  function runGates(key: ApiKey, request: GateRequest, index: number, report: GateReport): MaybePromise<VerifyResult> {
    for (let i = index; i < gates.length; i++) {
      const gate = gates[i] as VerifyGate;
      const outcome = gate.check(key, request);
      if (outcome instanceof Promise) {
        return outcome.then((settled) => (merge(settled, report) ? runGates(key, request, i + 1, report) : denied(key, settled, report)));
      }
      if (!merge(outcome, report)) return denied(key, outcome, report);
    }
    // Nothing reported (no limit, no quota): the check's own answer, without copying it.
    return report.ratelimit === undefined && report.remaining === undefined
      ? ok({ code: 'VALID', key })
      : ok({ code: 'VALID', key, ...report });
  }

  function afterCheck(checked: KeyCheck, input: VerifyInput, cost: number, at: number): MaybePromise<VerifyResult> {
    if (checked.code !== 'VALID') return ok(checked);
    const key = checked.key;
    if (input.scopes && input.scopes.length > 0 && !hasScopes(key.scopes, input.scopes)) {
      return ok({ code: 'INSUFFICIENT_SCOPES', key });
    }
    if (gates.length === 0) return ok(checked);
    return runGates(key, { cost, rateLimitCost: input.rateLimitCost ?? 1, now: at }, 0, {});
  }

  function verify(caller: Caller, input: VerifyInput, onLookup?: () => void): MaybePromise<VerifyResult> {
    if (!mayVerify(caller.principal)) return err('FORBIDDEN', 'verifying keys needs an admin key or the keyward:verify scope');
    const cost = input.cost ?? 1;
    if (!isValidCost(cost)) return invalidUnits('body.cost');
    if (input.rateLimitCost !== undefined && !isValidCost(input.rateLimitCost)) return invalidUnits('body.ratelimit_cost');
    const at = now();
    const checked = checkAt(input.key, at, onLookup);
    // After a database load, the gates see the time the record arrived, as the state check did.
    const result =
      checked instanceof Promise ? checked.then((c) => afterCheck(c, input, cost, now())) : afterCheck(checked, input, cost, at);
    return result instanceof Promise ? result.then(counted) : counted(result);
  }

  return { check: (key, onLookup) => checkAt(key, now(), onLookup), verify };
}

/** Adds what a gate reports to `report`; whether the gate let the verification through. */
function merge(outcome: GateOutcome, report: GateReport): boolean {
  if (outcome.ratelimit !== undefined) report.ratelimit = outcome.ratelimit;
  if (outcome.remaining !== undefined) report.remaining = outcome.remaining;
  if (outcome.quotaReset !== undefined) report.quotaReset = outcome.quotaReset;
  return outcome.ok;
}

function denied(key: ApiKey, outcome: GateOutcome, report: GateReport): VerifyResult {
  // `merge` has run: a denial carries its code.
  return ok({ code: outcome.ok ? 'VALID' : outcome.code, key, ...report });
}
