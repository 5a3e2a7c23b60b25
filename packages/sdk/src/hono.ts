import type { Context, MiddlewareHandler } from 'hono';
import {
  type AccessRule,
  assertTags,
  createKeywardAuth,
  type Decision,
  type GuardState,
  guardRequest,
  isPending,
  type KeywardAuth,
  type KeywardAuthOptions,
  type KeywardIdentity,
  mergeRules,
  type RouteResolver,
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
 * guard. `close()` stops the change feed and sends the queued usage reports (call it on shutdown).
 */
export type KeywardHonoGuard = ((rule?: AccessRule) => MiddlewareHandler<{ Variables: KeywardVariables }>) & {
  /**
   * A global guard that adds no rule of its own: it verifies the key once, with the rule of the route's own
   * guard (found in the request's matched routes), spends it and sets `c.get('keyward')`; the route's guard
   * then re-checks locally. A route without a guard of its own is metered with the default rule (1 unit of
   * rate limit, 1 of quota).
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

/** One route Hono matched for a request: a middleware or handler, in the order they run. */
interface MatchedRoute {
  path: string;
  method: string;
  handler: unknown;
}

/** The handler a sub-app's route wraps when the sub-app has its own error handler (Hono's `COMPOSED_HANDLER`). */
const unwrap = (handler: unknown): unknown => (handler as { __COMPOSED_HANDLER?: unknown } | null)?.__COMPOSED_HANDLER ?? handler;

/**
 * The routes Hono matched for the request (`c.req.matchedRoutes`: kept, though Hono now points to its
 * `hono/route` helper, because that helper is missing from the Hono 4 releases this SDK supports).
 */
function matchedRoutes(c: Context): MatchedRoute[] {
  const routes = (c.req as unknown as { matchedRoutes?: unknown }).matchedRoutes;
  return Array.isArray(routes) ? (routes as MatchedRoute[]) : [];
}

/**
 * The pattern of the route that answers: the first handler registered for a method (not `use`/`all`) that
 * takes no `next` (Hono's own test for a final handler), else the first such route; `undefined` when none.
 */
function routePatternOf(routes: readonly MatchedRoute[]): string | undefined {
  const own = routes.filter((route) => route.method !== 'ALL');
  const final = own.find((route) => {
    const handler = unwrap(route.handler);
    return typeof handler === 'function' && handler.length < 2;
  });
  return (final ?? own[0])?.path;
}

/**
 * Hono middleware that authenticates requests with Keyward, sets `c.get('keyward')` and enforces a rule.
 *
 * Each request is verified once, by the first Keyward guard it meets, with the rule of its route: that guard
 * finds the route's own guards among the routes Hono matched and verifies with its rule merged with theirs
 * (scopes together, the route's `cost` if set), so a key refused for the route's scopes spends nothing and a
 * metered key costs one round trip. The route's guards then re-check locally. Failures answer problem+json as
 * Keyward does (401 with `WWW-Authenticate`, 403, 429); every answer, the handler's own `Response` included,
 * carries the key's RateLimit headers. Each request that presented a key is one usage row (tagged
 * `route:<pattern>`).
 *
 * @example
 * const keyward = keywardHono({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * const app = new Hono<{ Variables: KeywardVariables }>();
 * app.use('*', keyward.authenticate());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'], tags: ['team:crm'] }), (c) => c.json({ caller: c.get('keyward')?.keyId }));
 * app.get('/v1/me', (c) => c.json(c.get('keyward'))); // metered with the default rule
 */
export function keywardHono(options: KeywardHonoOptions): KeywardHonoGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  const clientIp = options.clientIp ?? nodeSocketAddress;
  // What each request's guards found so far (by its context); a later guard updates it before the report.
  const states = new WeakMap<Context, GuardState>();
  // Every guard this instance made, with its rule (`null`: authenticate()).
  const guards = new WeakMap<object, AccessRule | null>();

  /** The rule of the request's one verification: this guard's, merged with the guards after it on the route. */
  function resolve(c: Context, self: unknown, rule: AccessRule | null): ReturnType<RouteResolver> {
    const routes = matchedRoutes(c);
    const route = routePatternOf(routes);
    const at = unwrap(routes[c.req.routeIndex]?.handler) === self ? c.req.routeIndex : routes.findIndex((r) => unwrap(r.handler) === self);
    const later: Array<AccessRule | null> = [];
    for (const matched of at < 0 ? [] : routes.slice(at + 1)) {
      const handler = unwrap(matched.handler);
      const found = typeof handler === 'function' ? guards.get(handler) : undefined;
      if (found !== undefined) later.push(found);
      // The handler that answers ends the chain: guards after it never run.
      else if (typeof handler === 'function' && handler.length < 2) break;
    }
    return { rule: at < 0 ? (rule ?? {}) : mergeRules(rule, later), ...(route === undefined ? {} : { route }) };
  }

  function handler(rule: AccessRule | null): MiddlewareHandler<{ Variables: KeywardVariables }> {
    assertTags(rule?.tags, 'keywardHono');
    const guard: MiddlewareHandler<{ Variables: KeywardVariables }> = async (c, next) => {
      const path = c.req.path;
      const presented = { authorization: c.req.header('authorization'), apiKey: c.req.header('x-api-key'), path };
      const known = states.get(c);
      const started = performance.now();
      const find = known === undefined ? () => resolve(c, guard, rule) : undefined;
      // A cached key is decided at once: no await, so no extra turn before the handler.
      const found = guardRequest(auth, presented, rule, known, find);
      const { decision, state } = isPending(found) ? await found : found;
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
          route: routePatternOf(matchedRoutes(c)),
          tags: state.tags,
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
    guards.set(guard, rule);
    return guard;
  }
  const guard = (rule: AccessRule = {}) => handler(rule);
  return Object.assign(guard, { authenticate: () => handler(null), close: () => auth.close() });
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
