import type { Caller } from '../callers/principal.js';
import { mayVerify } from '../callers/principal.js';
import type { VerifyCode } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import type { UsageRecorder } from './recorder.js';

/** One request a host application saw (through the SDK middleware or the gateway), as it reports it. */
export interface ReportedRequest {
  keyId: string | null;
  outcome: VerifyCode;
  endpoint?: string | null | undefined;
  method?: string | null | undefined;
  statusCode?: number | null | undefined;
  ipAddress?: string | null | undefined;
  userAgent?: string | null | undefined;
  responseTimeMs?: number | null | undefined;
  /** Epoch ms; default (and at most) now. */
  occurredAt?: number | null | undefined;
  /** Up to 10 short strings (`route:/v1/companies`); the SDK middleware sets a route tag. */
  tags?: readonly string[] | null | undefined;
}

export type UsageIngest = ReturnType<typeof createUsageIngest>;

/**
 * `POST /v1/usage/events`: usage rows reported by the SDK middleware for the requests it saw (most of which
 * never reached the verify endpoint, thanks to its cache). Rows go through the same bounded, batched
 * recorder as verifications: accepting them is a push, and what does not fit is dropped and counted.
 */
export function createUsageIngest({ usage, now = Date.now }: { usage: Pick<UsageRecorder, 'record'>; now?: () => number }) {
  return {
    /** Whoever may verify keys may report what they were used for: an admin key or `keyward:verify`. */
    report(caller: Caller, requests: readonly ReportedRequest[]): Result<{ accepted: number }, 'FORBIDDEN'> {
      if (!mayVerify(caller.principal)) return err('FORBIDDEN', 'reporting usage needs an admin key or the keyward:verify scope');
      const at = now();
      for (const r of requests) {
        usage.record({
          apiKeyId: r.keyId,
          outcome: r.outcome,
          endpoint: r.endpoint,
          method: r.method,
          statusCode: r.statusCode,
          ipAddress: r.ipAddress,
          userAgent: r.userAgent,
          responseTimeMs: r.responseTimeMs,
          tags: r.tags,
          // A reporter's clock ahead of ours must not put rows in the future.
          createdAt: r.occurredAt == null ? at : Math.min(r.occurredAt, at),
        });
      }
      return ok({ accepted: requests.length });
    },
  };
}
