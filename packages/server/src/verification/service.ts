import { hashApiKey } from '@keyward/sdk';
import type { BruteForceGuard, GuardDecision } from '../callers/brute-force-guard.js';
import type { Caller } from '../callers/principal.js';
import type { MaybePromise, VerifyCode } from '../domain.js';
import type { Failure, Result } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { UsageRecorder } from '../usage/recorder.js';
import type { KeyCache } from './key-cache.js';
import type { Verifier, VerifyInput, VerifyOutcome, VerifyResult } from './verifier.js';

/** What the verify endpoint knows of the HTTP request, for its usage row. */
export interface VerificationRequest {
  method: string;
  userAgent: string | null;
  /** Milliseconds since the request arrived, read when the answer is ready. */
  elapsedMs: () => number;
  /** Stored on the usage row (`route:/v1/companies`, `region:eu`). */
  tags?: readonly string[] | undefined;
  /**
   * `false`: the caller reports the request this verification was made for itself (`POST /v1/usage/events`,
   * as the SDK middleware does), so this verification writes no usage row. Limits, quotas, `last_used_at` and
   * metrics are as for any verification. Default true.
   */
  recordUsage?: boolean | undefined;
}

export type VerificationResult = Result<VerifyOutcome, 'FORBIDDEN' | 'INVALID_COST' | 'RATE_LIMITED'>;

/** Codes that mean "no valid key was presented": what the brute-force guard counts. */
const FAILED: ReadonlySet<VerifyCode> = new Set(['INVALID_FORMAT', 'NOT_FOUND', 'REVOKED', 'DISABLED', 'EXPIRED']);

// The verify endpoint's brute-force guard counts per caller key AND client IP: a host backend relays its end
// users' keys, so its failures are theirs, and a per-IP count would let them block the whole backend (and,
// behind a shared NAT, its neighbours). Its budget (VERIFY_FAILURES_PER_MINUTE) is its own, higher one.
const guardScope = (caller: Caller): string => (caller.principal.kind === 'key' ? caller.principal.key.id : caller.principal.kind);

export type Verification = ReturnType<typeof createVerification>;

/**
 * `POST /v1/keys/verify` as a service: the brute-force guard, the verification itself, and one usage row per
 * answer (never the key), unless the caller reports the request itself (`recordUsage: false`). Synchronous when the verifier answers synchronously (a cached key).
 */
export function createVerification(deps: {
  verifier: Verifier;
  usage: Pick<UsageRecorder, 'record'>;
  verifyGuard: BruteForceGuard;
  /** Which keys this instance has seen records for: a blocked caller is still answered for them. */
  cache?: Pick<KeyCache, 'holds'> | undefined;
  metrics?: Pick<Metrics, 'verifyDuration'>;
}) {
  const { verifier, usage, verifyGuard, cache, metrics } = deps;
  return { verifyFor };

  function verifyFor(caller: Caller, input: VerifyInput, request: VerificationRequest): MaybePromise<VerificationResult> {
    // The guard's name for this caller is built only when the guard has someone blocked or counts a failure.
    // A blocked (or waiting) caller is held up only for keys this instance holds no record of. Guessing presents
    // keys no one has, so it stays stopped; but behind one host backend every end user shares the caller key and
    // address, and their real keys (seen before, so held) must keep verifying (SPEC §6: the guard never slows
    // valid traffic).
    const decided = verifyGuard.blocksAny()
      ? verifyGuard.check(caller.ip, guardScope(caller), () => cache?.holds(hashApiKey(input.key)) === true)
      : undefined;
    // As many of this caller's look-ups in flight as its budget: decided once one has ended.
    return decided instanceof Promise
      ? decided.then((d) => verifyAs(caller, input, request, d))
      : verifyAs(caller, input, request, decided);
  }

  function verifyAs(
    caller: Caller,
    input: VerifyInput,
    request: VerificationRequest,
    blocked: GuardDecision | undefined,
  ): MaybePromise<VerificationResult> {
    if (blocked?.blocked) {
      const refused: Failure<'RATE_LIMITED'> = {
        ok: false,
        code: 'RATE_LIMITED',
        detail: 'too many failed verifications from this caller and address; try again later',
        retryAfterSeconds: blocked.retryAfterSeconds,
      };
      return refused;
    }
    const finish = (result: VerifyResult): VerificationResult => {
      if (result.ok) {
        // One clock read serves the usage row and the latency histogram.
        const elapsedMs = request.elapsedMs();
        metrics?.verifyDuration.observe(elapsedMs / 1000);
        if (request.recordUsage !== false) {
          usage.record({
            apiKeyId: result.value.key?.id ?? null,
            outcome: result.value.code,
            endpoint: '/v1/keys/verify',
            method: request.method,
            statusCode: 200,
            ipAddress: caller.ip,
            userAgent: request.userAgent,
            responseTimeMs: elapsedMs,
            tags: request.tags,
          });
        }
      }
      return result;
    };
    const answer = (result: VerifyResult): MaybePromise<VerificationResult> =>
      result.ok && FAILED.has(result.value.code)
        ? verifyGuard.fail(caller.ip, guardScope(caller)).then(() => finish(result))
        : finish(result);
    // A look-up (a key not in the cache) is in flight until its failure, if any, has been counted. Only a
    // look-up: a gate's wait (a quota spend, the Redis rate limiter) is valid traffic and is not counted.
    let end: (() => void) | undefined;
    const result = verifier.verify(caller, input, () => {
      end = verifyGuard.track(caller.ip, guardScope(caller));
    });
    if (!(result instanceof Promise)) return answer(result);
    const answered = result.then(answer);
    answered.then(
      () => end?.(),
      () => end?.(),
    );
    return answered;
  }
}
