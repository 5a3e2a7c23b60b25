import type { Context, MiddlewareHandler } from 'hono';
import {
  type AccessRule,
  createKeywardAuth,
  type Decision,
  type GuardState,
  guardRequest,
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
  /**
   * The client's address for the usage report. Hono has no portable one: by default, the socket address
   * under `@hono/node-server`, else none.
   */
  clientIp?: (c: Context) => string | undefined;
}

/**
 * Builds a guard for a route rule; with no rule, the global `requireApiKey` alone decides and the request
 * spends Keyward's default cost. `authenticate()` is the global guard for apps whose routes carry their own
 * guard. `close()` sends the queued usage reports (call it on shutdown).
 */
export type KeywardHonoGuard = ((rule?: AccessRule) => MiddlewareHandler<{ Variables: KeywardVariables }>) & {
  /**
   * A global guard that verifies the key without spending anything (answering the 401s) and sets
   * `c.get('keyward')`; the route's own guard then verifies once with its rule and spends its cost. Every route
   * behind it needs a guard of its own (`keyward()` for the default rule): a route without one is not metered.
   */
  authenticate(): MiddlewareHandler<{ Variables: KeywardVariables }>;
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
 * Alone, `keyward(rule?)` verifies once with its rule and spends its `cost`. With route rules, use
 * `keyward.authenticate()` globally and `keyward(rule)` on each route: the global guard spends nothing, the
 * route's guard does the one spending verification, so a key refused for scopes spends neither quota nor rate
 * limit (as with Fastify). Failures answer problem+json as Keyward does (401 with `WWW-Authenticate`, 403, 429);
 * every answer, the handler's own `Response` included, carries the key's RateLimit headers.
 *
 * @example
 * const keyward = keywardHono({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * const app = new Hono<{ Variables: KeywardVariables }>();
 * app.use('*', keyward.authenticate());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (c) => c.json({ caller: c.get('keyward')?.keyId }));
 * app.get('/v1/me', keyward(), (c) => c.json(c.get('keyward')));
 */
export function keywardHono(options: KeywardHonoOptions): KeywardHonoGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  const clientIp = options.clientIp ?? nodeSocketAddress;
  // What each request's guards found so far (by its context); a later guard updates it before the report.
  const states = new WeakMap<Context, GuardState>();

  const handler =
    (rule: AccessRule | null): MiddlewareHandler<{ Variables: KeywardVariables }> =>
    async (c, next) => {
      const path = c.req.path;
      const presented = { authorization: c.req.header('authorization'), apiKey: c.req.header('x-api-key'), path };
      const known = states.get(c);
      const started = performance.now();
      const { decision, state } = await guardRequest(auth, presented, rule, known);
      if (known !== undefined) {
        // A guard behind another: the first one sets the headers on the answer and reports it.
        if (!decision.ok) return problemResponse(decision);
        c.set('keyward', decision.identity);
        await next();
        return;
      }
      const ipAddress = clientIp(c);
      const report = (status: number | null) => {
        if (state.outcome === undefined) return;
        auth.record(state.outcome, {
          endpoint: path,
          method: c.req.method,
          statusCode: status,
          ipAddress,
          userAgent: c.req.header('user-agent'),
          responseTimeMs: performance.now() - started,
        });
      };
      if (!decision.ok) {
        const response = problemResponse(decision);
        report(response.status);
        return response;
      }
      states.set(c, state);
      c.set('keyward', decision.identity);
      try {
        await next();
      } finally {
        // Set on the answer itself: a handler's own `new Response(…)` or a later guard's refusal replaces
        // whatever `c.header` prepared before it.
        for (const [name, value] of Object.entries(state.headers)) c.header(name, value);
        // A client that went away got no response (its request's signal says so, where the server sets it).
        report(c.req.raw.signal.aborted ? null : c.res.status);
      }
    };
  const guard = (rule: AccessRule = {}) => handler(rule);
  return Object.assign(guard, { authenticate: () => handler(null), close: () => auth.close() });
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
