import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProblemError } from '../errors.js';
import type { Authenticator } from '../services/auth.js';
import type { BruteForceGuard } from '../services/brute-force-guard.js';
import type { Caller } from '../services/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every route that requires a credential. */
    caller: Caller | null;
  }
}

/** The credential in `Authorization: Bearer …` or `X-API-Key: …`; `undefined` when none was sent. */
export function credentialOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header === 'string' && header !== '') {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    // A non-Bearer Authorization header is a credential we cannot read, not a missing one.
    return match?.[1] ?? '\u0000';
  }
  const apiKey = request.headers['x-api-key'];
  return typeof apiKey === 'string' ? apiKey.trim() : undefined;
}

export const WWW_AUTHENTICATE = 'Bearer realm="keyward"';

/** The authenticated caller of a route that required authentication. */
export function callerOf(request: FastifyRequest): Caller {
  if (request.caller === null) throw new ProblemError('AUTH_REQUIRED', undefined, undefined, { 'www-authenticate': WWW_AUTHENTICATE });
  return request.caller;
}

/**
 * Adds an `onRequest` hook to the given scope that authenticates every request in it; a failure is a 401
 * problem with `WWW-Authenticate`. Routes then read `callerOf(request)`.
 * With a `guard`, a client IP that failed too often is refused (429 + `Retry-After`) before any look-up,
 * and each rejected credential counts against its IP; a missing credential is not a guess and does not.
 */
export function requireAuthentication(app: FastifyInstance, authenticator: Authenticator, guard?: BruteForceGuard): void {
  app.addHook('onRequest', async (request) => {
    const blocked = guard?.check(request.ip);
    if (blocked?.blocked) {
      throw new ProblemError('RATE_LIMITED', 'too many failed authentications from this address; try again later', undefined, {
        'retry-after': String(blocked.retryAfterSeconds),
      });
    }
    const result = await authenticator.authenticate(credentialOf(request));
    if (!result.ok) {
      if (guard && result.code !== 'AUTH_REQUIRED' && result.code !== 'SERVICE_UNAVAILABLE') await guard.fail(request.ip);
      if (result.code === 'SERVICE_UNAVAILABLE') throw new ProblemError(result.code, result.detail, undefined, { 'retry-after': '5' });
      const error = result.code === 'AUTH_REQUIRED' ? 'Bearer realm="keyward"' : 'Bearer realm="keyward", error="invalid_token"';
      throw new ProblemError(result.code, result.detail, undefined, { 'www-authenticate': error });
    }
    request.caller = { principal: result.value, ip: request.ip };
  });
}
