import type { ApiKey } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import type { Executor } from '../store/schema.js';
import type { KeyCache } from './key-cache.js';
import { loadKey, type Presented, present } from './key-lookup.js';
import type { LastUsedRecorder } from './last-used.js';
import type { Metrics } from './metrics.js';
import { type Caller, hasScopes, isAdmin, MANAGEMENT_SCOPES, type Principal } from './principal.js';

/** Verification outcomes (SPEC §5). */
export const VERIFY_CODES = [
  'VALID',
  'INVALID_FORMAT',
  'NOT_FOUND',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'INSUFFICIENT_SCOPES',
  'RATE_LIMITED',
  'USAGE_EXCEEDED',
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

/** The result of checking a presented key's identity and state (no scopes, limits or quota). */
export type KeyCheck =
  | { code: 'VALID'; key: ApiKey }
  | { code: 'REVOKED' | 'DISABLED' | 'EXPIRED'; key: ApiKey }
  | { code: 'INVALID_FORMAT' | 'NOT_FOUND'; key: null };

/** Rate-limit state reported with a verification (SPEC §5): `reset` is in unix seconds. */
export interface RateLimitState {
  limit: number;
  remaining: number;
  reset: number;
  /** The window's length (for `RateLimit-Policy`'s `w`). */
  windowSeconds?: number;
}

/** What a gate adds to the answer: the rate-limit state and/or the quota left. */
export interface GateReport {
  ratelimit?: RateLimitState;
  remaining?: number;
}

export type GateOutcome = ({ ok: true } & GateReport) | ({ ok: false; code: 'RATE_LIMITED' | 'USAGE_EXCEEDED' } & GateReport);

/**
 * A check run, in order, after scopes on a key that is otherwise valid: the rate limit, then the quota
 * (SPEC §6). The first gate that says no decides the code; what every gate run reports is merged.
 */
export interface VerifyGate {
  check(key: ApiKey, request: { cost: number; now: number }): Promise<GateOutcome> | GateOutcome;
}

export interface VerifyInput {
  key: string;
  scopes?: readonly string[] | undefined;
  /** Units of quota to spend; a non-negative integer, default 1. */
  cost?: number | undefined;
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
  /** Verifications by code and their latency (verify only), key cache hits and misses (every check). */
  metrics?: Pick<Metrics, 'verifications' | 'verifyDuration' | 'cacheLookups'> | undefined;
}

export interface Verifier {
  /**
   * Format+checksum → look-up by hash (cache, then database) → revoked → deactivated → expired. The first
   * failure decides the code. A malformed key is answered before any cache or database work.
   */
  check(key: string): Promise<KeyCheck>;
  /** `POST /v1/keys/verify`: {@link check}, then required scopes, then the gates (rate limit, quota). */
  verify(caller: Caller, input: VerifyInput): Promise<Result<VerifyOutcome, 'FORBIDDEN' | 'INVALID_COST'>>;
}

export function stateOf(key: ApiKey, now: number): KeyCheck {
  if (key.revokedAt !== null) return { code: 'REVOKED', key };
  if (!key.isActive) return { code: 'DISABLED', key };
  if (key.expiresAt !== null && key.expiresAt <= now) return { code: 'EXPIRED', key };
  return { code: 'VALID', key };
}

/** Whether a principal may call the verify endpoint: an admin key, or a key holding `keyward:verify`. */
export function mayVerify(principal: Principal): boolean {
  return isAdmin(principal) || (principal.kind === 'key' && hasScopes(principal.key.scopes, [MANAGEMENT_SCOPES.verify]));
}

const INVALID_FORMAT: KeyCheck = { code: 'INVALID_FORMAT', key: null };
const NOT_FOUND: KeyCheck = { code: 'NOT_FOUND', key: null };

export function createVerifier({ db, cache, lastUsed, gates = [], load = loadKey, now = Date.now, metrics }: VerifierDeps): Verifier {
  // Bound children: counting then costs no label hashing on the hot path.
  const cacheHit = metrics?.cacheLookups.labels('hit');
  const cacheMiss = metrics?.cacheLookups.labels('miss');
  const byCode = new Map(VERIFY_CODES.map((code) => [code, metrics?.verifications.labels(code)]));

  async function check(key: string): Promise<KeyCheck> {
    const presented = present(key);
    if (presented === null) return INVALID_FORMAT;
    // A fresh cached answer needs no await; otherwise the plaintext stays in this closure for the one load
    // (imported bcrypt keys need it) and is never kept.
    let found = cache?.fresh(presented.hash);
    if (cache) (found === undefined ? cacheMiss : cacheHit)?.inc();
    if (found === undefined) {
      const loader = () => load(db, key, presented);
      found = (cache ? await cache.get(presented.hash, loader) : await loader()) ?? null;
    }
    if (found === null) return NOT_FOUND;
    const at = now();
    const state = stateOf(found, at);
    if (state.code === 'VALID') lastUsed?.touch(found.id, at);
    return state;
  }

  async function verify(caller: Caller, input: VerifyInput): Promise<Result<VerifyOutcome, 'FORBIDDEN' | 'INVALID_COST'>> {
    if (!mayVerify(caller.principal)) return err('FORBIDDEN', 'verifying keys needs an admin key or the keyward:verify scope');
    const cost = input.cost ?? 1;
    if (!Number.isSafeInteger(cost) || cost < 0) {
      return err('INVALID_COST', 'body.cost: must be a non-negative integer', [
        { field: 'body.cost', message: 'must be a non-negative integer' },
      ]);
    }
    const checked = await check(input.key);
    if (checked.code !== 'VALID') return ok(checked);
    const key = checked.key;
    if (input.scopes && input.scopes.length > 0 && !hasScopes(key.scopes, input.scopes)) {
      return ok({ code: 'INSUFFICIENT_SCOPES', key });
    }
    if (gates.length === 0) return ok(checked);
    const report: GateReport = {};
    const at = now();
    for (const gate of gates) {
      // A gate with nothing to do answers synchronously: no await, no extra turn of the event loop.
      const pending = gate.check(key, { cost, now: at });
      const outcome = pending instanceof Promise ? await pending : pending;
      if (outcome.ratelimit !== undefined) report.ratelimit = outcome.ratelimit;
      if (outcome.remaining !== undefined) report.remaining = outcome.remaining;
      if (!outcome.ok) return ok({ code: outcome.code, key, ...report });
    }
    return ok({ code: 'VALID', key, ...report });
  }

  return {
    check,
    verify: metrics
      ? async (caller, input) => {
          const started = performance.now();
          const result = await verify(caller, input);
          if (result.ok) {
            metrics.verifyDuration.observe((performance.now() - started) / 1000);
            byCode.get(result.value.code)?.inc();
          }
          return result;
        }
      : verify,
  };
}
