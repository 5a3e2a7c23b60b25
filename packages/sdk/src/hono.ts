import type { MiddlewareHandler } from 'hono';
import {
  type AccessRule,
  createKeywardAuth,
  type Decision,
  type KeywardAuth,
  type KeywardAuthOptions,
  type KeywardIdentity,
} from './middleware.js';

/** The context variables the middleware sets: `c.get('keyward')`. */
export interface KeywardVariables {
  /** The verified caller; `null` when anonymous. */
  keyward: KeywardIdentity | null;
}

export interface KeywardHonoOptions extends KeywardAuthOptions {
  /** A core built elsewhere (shared cache), instead of the options above. */
  auth?: KeywardAuth;
}

/** Builds a middleware for a route rule; with no rule, the global `requireApiKey` alone decides. */
export type KeywardHonoGuard = (rule?: AccessRule) => MiddlewareHandler<{ Variables: KeywardVariables }>;

function problemResponse(decision: Extract<Decision, { ok: false }>): Response {
  return new Response(JSON.stringify(decision.problem), {
    status: decision.status,
    headers: { ...decision.headers, 'content-type': 'application/problem+json' },
  });
}

/**
 * Hono middleware that authenticates requests with Keyward, sets `c.get('keyward')` and enforces a rule.
 * Use it once globally and again per route: a later guard re-checks the identity the first one found
 * instead of verifying again. Failures answer problem+json as Keyward does (401 with `WWW-Authenticate`, 403).
 *
 * @example
 * const keyward = keywardHono({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * const app = new Hono<{ Variables: KeywardVariables }>();
 * app.use('*', keyward());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (c) => c.json({ caller: c.get('keyward')?.keyId }));
 */
export function keywardHono(options: KeywardHonoOptions): KeywardHonoGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  return (rule = {}) =>
    async (c, next) => {
      const path = c.req.path;
      const known = c.get('keyward');
      const decision =
        known !== undefined
          ? auth.permit(known, rule, path)
          : await auth.authorize({ authorization: c.req.header('authorization'), apiKey: c.req.header('x-api-key'), path }, rule);
      if (!decision.ok) return problemResponse(decision);
      for (const [name, value] of Object.entries(decision.headers)) c.header(name, value);
      c.set('keyward', decision.identity);
      await next();
    };
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
