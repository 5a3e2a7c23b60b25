import { credentialOf as credentialOfHeaders } from '@keyward/sdk';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Authenticator, AuthResult } from '../callers/authenticator.js';
import type { BruteForceGuard, GuardDecision } from '../callers/brute-force-guard.js';
import type { Caller } from '../callers/principal.js';
import { ProblemError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every route that requires a credential. */
    caller: Caller | null;
  }
}

/**
 * The credential in `Authorization: Bearer …` or `X-API-Key: …`, parsed as the SDK middleware parses it;
 * `undefined` when none was sent. A repeated `X-API-Key` header is not one credential: ignored.
 */
export function credentialOf(request: FastifyRequest): string | undefined {
  const apiKey = request.headers['x-api-key'];
  return credentialOfHeaders({ authorization: request.headers.authorization, apiKey: typeof apiKey === 'string' ? apiKey : undefined });
}

export const WWW_AUTHENTICATE = 'Bearer realm="keyward"';

/** The authenticated caller of a route that required authentication. */
export function callerOf(request: FastifyRequest): Caller {
  if (request.caller === null) throw new ProblemError('AUTH_REQUIRED', undefined, undefined, { 'www-authenticate': WWW_AUTHENTICATE });
  return request.caller;
}

/** The brute-force guard of the authentication hook, and which credentials it never holds up. */
export interface AuthGuard {
  guard: BruteForceGuard;
  /**
   * Whether `credential` is no guess: a key this instance holds a record of (a real key, seen before), or a
   * JWT (a signature cannot be guessed; a forged one still counts as a failure). Served even from a blocked
   * address, and never made to wait for the address's look-ups.
   */
  known(credential: string): boolean;
}

/**
 * Adds an `onRequest` hook to the given scope that authenticates every request in it; a failure is a 401
 * problem with `WWW-Authenticate`. Routes then read `callerOf(request)`.
 * With a guard, a client IP that failed too often is refused (429 + `Retry-After`) before any look-up, unless
 * it presents a key this instance holds (a real key: guessing presents keys no one has, while behind a shared
 * address someone else's guesses must not lock out real users); each rejected credential counts against its IP;
 * a missing credential is not a guess and does not.
 */
export function requireAuthentication(app: FastifyInstance, authenticator: Authenticator, guarded?: AuthGuard): void {
  const guard = guarded?.guard;
  const accept = (request: FastifyRequest, ip: string, result: AuthResult): Promise<void> | undefined => {
    if (result.ok) {
      request.caller = { principal: result.value, ip };
      return undefined;
    }
    return refuse(ip, result);
  };
  const refuse = async (ip: string, result: Exclude<AuthResult, { ok: true }>): Promise<never> => {
    if (guard && result.code !== 'AUTH_REQUIRED' && result.code !== 'SERVICE_UNAVAILABLE') await guard.fail(ip);
    if (result.code === 'SERVICE_UNAVAILABLE') throw new ProblemError(result.code, result.detail, undefined, { 'retry-after': '5' });
    const error = result.code === 'AUTH_REQUIRED' ? 'Bearer realm="keyward"' : 'Bearer realm="keyward", error="invalid_token"';
    throw new ProblemError(result.code, result.detail, undefined, { 'www-authenticate': error });
  };
  const authenticate = (request: FastifyRequest, done: (error?: Error) => void): void => {
    const credential = credentialOf(request);
    const decision = guard?.check(request.ip, undefined, () => credential !== undefined && guarded?.known(credential) === true);
    // As many of this address's look-ups in flight as its budget: decided once one has ended.
    if (decision instanceof Promise) void decision.then((decided) => authenticateAs(request, credential, decided, done));
    else authenticateAs(request, credential, decision, done);
  };
  const authenticateAs = (
    request: FastifyRequest,
    credential: string | undefined,
    decision: GuardDecision | undefined,
    done: (error?: Error) => void,
  ): void => {
    const ip = request.ip;
    if (decision?.blocked) {
      done(
        new ProblemError('RATE_LIMITED', 'too many failed authentications from this address; try again later', undefined, {
          'retry-after': String(decision.retryAfterSeconds),
        }),
      );
      return;
    }
    // A key look-up (a key not in the cache) is in flight until its failure, if any, has been counted.
    let end: (() => void) | undefined;
    const result = authenticator.authenticate(credential, () => {
      end = guard?.track(ip);
    });
    const pending = result instanceof Promise ? result.then((settled) => accept(request, ip, settled)) : accept(request, ip, result);
    if (pending === undefined) done();
    else
      pending.then(
        () => {
          end?.();
          done();
        },
        (error: unknown) => {
          end?.();
          done(error instanceof Error ? error : new Error(String(error)));
        },
      );
  };
  // A callback hook, not an async one: a cached key is accepted synchronously, with no promise and no
  // extra turn of the microtask queue on every request.
  app.addHook('onRequest', (request, _reply, done) => authenticate(request, done));
}
