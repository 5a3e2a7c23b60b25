import type { Context, MiddlewareHandler } from 'hono';
import {
  type AccessRule,
  costOf,
  createKeywardAuth,
  type Decision,
  type KeywardAuth,
  type KeywardAuthOptions,
  type KeywardIdentity,
  type RequestOutcome,
} from './middleware.js';

/** The context variables the middleware sets: `c.get('keyward')`. */
export interface KeywardVariables {
  /** The verified caller; `null` when anonymous. */
  keyward: KeywardIdentity | null;
}

export interface KeywardHonoOptions extends KeywardAuthOptions {
  /** A core built elsewhere (shared cache), instead of the options above. */
  auth?: KeywardAuth;
  /**
   * The client's address for the usage report. Hono has no portable one: by default, the socket address
   * under `@hono/node-server`, else none.
   */
  clientIp?: (c: Context) => string | undefined;
}

/**
 * Builds a middleware for a route rule; with no rule, the global `requireApiKey` alone decides. `close()`
 * sends the queued usage reports (call it on shutdown).
 */
export type KeywardHonoGuard = ((rule?: AccessRule) => MiddlewareHandler<{ Variables: KeywardVariables }>) & {
  close(): Promise<void>;
};

/** The socket address under `@hono/node-server` (`c.env.incoming`), read without depending on it. */
function nodeSocketAddress(c: Context): string | undefined {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: unknown } } } | undefined;
  const address = env?.incoming?.socket?.remoteAddress;
  return typeof address === 'string' ? address : undefined;
}

function problemResponse(decision: Extract<Decision, { ok: false }>): Response {
  return new Response(JSON.stringify(decision.problem), {
    status: decision.status,
    headers: { ...decision.headers, 'content-type': 'application/problem+json' },
  });
}

/**
 * Hono middleware that authenticates requests with Keyward, sets `c.get('keyward')` and enforces a rule.
 * Use it once globally and again per route: a later guard re-checks the identity the first one found
 * instead of verifying again, unless its rule's `cost` exceeds what was spent: then it verifies again for the
 * difference, so the quota is charged the route's cost in all. Failures answer problem+json as Keyward does (401 with `WWW-Authenticate`, 403).
 *
 * @example
 * const keyward = keywardHono({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * const app = new Hono<{ Variables: KeywardVariables }>();
 * app.use('*', keyward());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (c) => c.json({ caller: c.get('keyward')?.keyId }));
 */
export function keywardHono(options: KeywardHonoOptions): KeywardHonoGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  const clientIp = options.clientIp ?? nodeSocketAddress;
  // What each request's key came to and the quota it spent (by its context); a later route guard updates both.
  const outcomes = new WeakMap<Context, { outcome: RequestOutcome; spent: number }>();

  const guard =
    (rule: AccessRule = {}): MiddlewareHandler<{ Variables: KeywardVariables }> =>
    async (c, next) => {
      const path = c.req.path;
      const presented = { authorization: c.req.header('authorization'), apiKey: c.req.header('x-api-key'), path };
      const known = c.get('keyward');
      if (known !== undefined) {
        const state = outcomes.get(c);
        const extra = known !== null && state ? costOf(rule) - state.spent : 0;
        if (extra <= 0 || !state) {
          const decision = auth.permit(known, rule, path);
          if (state && decision.outcome && !decision.ok) state.outcome = decision.outcome;
          if (!decision.ok) return problemResponse(decision);
          await next();
          return;
        }
        // This route costs more than the global guard spent: verify again for the difference.
        const decision = await auth.authorize(presented, { ...rule, cost: extra, rateLimitCost: 0 });
        if (decision.outcome) state.outcome = decision.outcome;
        if (!decision.ok) return problemResponse(decision);
        state.spent += extra;
        for (const [name, value] of Object.entries(decision.headers)) c.header(name, value);
        c.set('keyward', decision.identity);
        await next();
        return;
      }
      const started = performance.now();
      const decision = await auth.authorize(presented, rule);
      const state = decision.outcome ? { outcome: decision.outcome, spent: costOf(rule) } : null;
      const report = (status: number) => {
        if (state === null) return;
        auth.record(state.outcome, {
          endpoint: path,
          method: c.req.method,
          statusCode: status,
          ipAddress: clientIp(c),
          userAgent: c.req.header('user-agent'),
          responseTimeMs: performance.now() - started,
        });
      };
      if (!decision.ok) {
        const response = problemResponse(decision);
        report(response.status);
        return response;
      }
      if (state) outcomes.set(c, state);
      for (const [name, value] of Object.entries(decision.headers)) c.header(name, value);
      c.set('keyward', decision.identity);
      try {
        await next();
      } finally {
        report(c.res.status);
      }
    };
  return Object.assign(guard, { close: () => auth.close() });
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
