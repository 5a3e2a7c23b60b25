import type { Request, RequestHandler, Response } from 'express';
import {
  type AccessRule,
  assertTags,
  createKeywardAuth,
  type Decision,
  type GuardResult,
  type GuardState,
  guardRequest,
  isPending,
  type KeywardAuth,
  type KeywardAuthOptions,
  type KeywardIdentity,
  mergeRules,
  type RouteResolver,
} from './middleware.js';

declare global {
  namespace Express {
    interface Request {
      /** The verified caller; `null` when anonymous; `undefined` before a Keyward middleware ran. */
      keyward?: KeywardIdentity | null;
    }
  }
}

export interface KeywardExpressOptions extends KeywardAuthOptions {
  /** A core built elsewhere (shared cache), instead of the options above. */
  auth?: KeywardAuth;
}

/**
 * Builds a guard for a route rule; with no rule, the global `requireApiKey` alone decides and the request
 * spends Keyward's default cost. `authenticate()` is the global guard for apps whose routes carry their own
 * guard. `close()` stops the change feed and sends the queued usage reports (call it on shutdown).
 */
export type KeywardExpressGuard = ((rule?: AccessRule) => RequestHandler) & {
  /**
   * A global guard that adds no rule of its own: it verifies the key once, with the rule of the route's own
   * guard (found in the app's router), spends it and sets `req.keyward`; the route's guard then re-checks
   * locally. A route without a guard of its own is metered with the default rule (1 unit of rate limit, 1 of
   * quota).
   */
  authenticate(): RequestHandler;
  close(): Promise<void>;
};

const isEmpty = (record: Record<string, string>): boolean => {
  for (const _ in record) return false;
  return true;
};

function send(res: Response, decision: Extract<Decision, { ok: false }>): void {
  res.status(decision.status).set(decision.headers).type('application/problem+json').send(JSON.stringify(decision.problem));
}

// Express 5's router (the `router` package, 2.x), read structurally: an app's `router.stack` holds layers; a
// layer matches a path and is a middleware (a nested router has a `stack` of its own) or a route (`route`,
// whose `stack` holds the route's handlers, each for one method or all).
interface RouterLayer {
  handle: unknown;
  route?: RouteOfLayer;
  match(path: string): false | { path: string; pattern?: unknown };
}
interface RouteOfLayer {
  path: unknown;
  stack: Array<{ handle: unknown; method?: string }>;
  methods?: Record<string, boolean>;
  _handlesMethod(method: string): boolean;
}
/** One of our guards found on a request's way through the router. */
interface FoundGuard {
  fn: unknown;
  rule: AccessRule | null;
}

/** The path part of a request URL (`http://host/a?b` → `/a`), as the router reads it. */
function pathnameOf(url: string): string {
  const query = url.search(/[?#]/);
  const path = query < 0 ? url : url.slice(0, query);
  const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(path);
  return origin ? path.slice(origin[0].length) || '/' : path;
}

/**
 * Express middleware that authenticates requests with Keyward, sets `req.keyward` and enforces a rule.
 *
 * Each request is verified once, by the first Keyward guard it meets, with the rule of its route: that guard
 * finds the route's own guards in the app's router (Express 5) and verifies with its rule merged with theirs
 * (scopes together, the route's `cost` if set), so a key refused for the route's scopes spends nothing and a
 * metered key costs one round trip. The route's guards then re-check locally. Where the route cannot be found
 * (a mounted sub-app, Express 4) the first guard spends its own rule, and a route guard costing more verifies
 * again for the difference only (`ratelimit_cost` 0). Failures answer problem+json as Keyward does (401 with
 * `WWW-Authenticate`, 403, 429). Each request that presented a key is one usage row (tagged
 * `route:<pattern>`).
 *
 * @example
 * const keyward = keywardExpress({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * app.use(keyward.authenticate());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'], tags: ['team:crm'] }), (req, res) => {
 *   res.json({ companies: [], caller: req.keyward?.keyId });
 * });
 * app.get('/v1/me', (req, res) => res.json(req.keyward)); // metered with the default rule
 * process.once('SIGTERM', () => void keyward.close());
 */
export function keywardExpress(options: KeywardExpressOptions): KeywardExpressGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  // What each request's guards found so far; a later guard updates it before the report.
  // Kept on the request under this instance's own symbol: cheaper than a WeakMap entry per request, which the
  // collector must trace apart (the request's properties go with it).
  const stateKey = Symbol('keyward guard state');
  const stateOf = (req: Request): GuardState | undefined => (req as unknown as Record<symbol, GuardState | undefined>)[stateKey];
  // Every guard this instance made, with its rule (`null`: authenticate()), so the router walk can see them.
  const guards = new WeakMap<object, AccessRule | null>();
  // A route's guards per method: a route's handlers do not change once the app serves.
  const routeGuards = new WeakMap<object, Map<string, FoundGuard[]>>();

  function guardsOfRoute(route: RouteOfLayer, method: string): FoundGuard[] {
    let byMethod = routeGuards.get(route);
    if (byMethod === undefined) {
      byMethod = new Map();
      routeGuards.set(route, byMethod);
    }
    const known = byMethod.get(method);
    if (known !== undefined) return known;
    // As Route#dispatch reads it: HEAD runs the GET handlers when the route has no HEAD of its own.
    let verb = method.toLowerCase();
    if (verb === 'head' && !route.methods?.head) verb = 'get';
    const found: FoundGuard[] = [];
    for (const layer of route.stack) {
      if (layer.method && layer.method !== verb) continue;
      const rule = typeof layer.handle === 'function' ? guards.get(layer.handle) : undefined;
      if (rule !== undefined) found.push({ fn: layer.handle, rule });
    }
    byMethod.set(method, found);
    return found;
  }

  /**
   * Walks `stack` as the router would for `path` (relative to it): collects our guards on the way and stops at
   * the first route that takes the request. Returns the route's pattern (`null` when not a plain string), or
   * `undefined` when no route matched.
   */
  function walk(stack: RouterLayer[], path: string, method: string, prefix: string | null, found: FoundGuard[]): string | null | undefined {
    for (const layer of stack) {
      const match = layer.match(path);
      if (!match) continue;
      if (typeof match !== 'object') throw new TypeError('not the Express 5 router');
      const route = layer.route;
      if (route) {
        if (!route._handlesMethod(method)) continue;
        found.push(...guardsOfRoute(route, method));
        return typeof route.path === 'string' && prefix !== null ? prefix + route.path : null;
      }
      // A middleware layer runs only where its path ends on a segment boundary (the router's own check).
      const matched = match.path;
      if (matched.length > 0 && (!path.startsWith(matched) || (path[matched.length] ?? '/') !== '/')) continue;
      const handle = layer.handle;
      const rule = typeof handle === 'function' ? guards.get(handle) : undefined;
      if (rule !== undefined) {
        found.push({ fn: handle, rule });
        continue;
      }
      const nested = (handle as { stack?: unknown } | null)?.stack;
      if (typeof handle === 'function' && Array.isArray(nested)) {
        const rest = path.slice(matched.length);
        const mount = typeof match.pattern === 'string' && prefix !== null ? prefix + match.pattern.replace(/\/+$/, '') : null;
        const inner = walk(nested as RouterLayer[], rest.startsWith('/') ? rest : `/${rest}`, method, mount, found);
        if (inner !== undefined) return inner;
      }
    }
    return undefined;
  }

  /**
   * Walks the app's router for the request: our guards on its way, and the pattern of the route that takes it
   * (`undefined` when none matched or it is not a plain string). `null` when the router cannot be walked.
   */
  function routeOf(req: Request): { found: FoundGuard[]; route: string | undefined } | null {
    const app = req.app as unknown as { router?: { stack?: unknown }; parent?: unknown; path?: () => string };
    const stack = app.router?.stack;
    if (!Array.isArray(stack)) return null;
    let path = pathnameOf(req.originalUrl ?? req.url);
    // A sub-app mounted at a plain path sees the request below it; any other mount is not followed.
    let mount = '';
    if (app.parent !== undefined && typeof app.path === 'function') {
      mount = app.path().replace(/\/+$/, '');
      if (!path.startsWith(mount) || !['/', undefined].includes(path[mount.length])) return null;
      path = path.slice(mount.length) || '/';
    }
    const found: FoundGuard[] = [];
    return { found, route: walk(stack as RouterLayer[], path, req.method, mount, found) ?? undefined };
  }

  /** The rule of the request's one verification, found in the app's router; see {@link RouteResolver}. */
  function resolve(req: Request, self: RequestHandler, rule: AccessRule | null): ReturnType<RouteResolver> {
    const walked = routeOf(req);
    const index = walked?.found.findIndex((guard) => guard.fn === self) ?? -1;
    const later = index < 0 ? [] : (walked?.found.slice(index + 1) ?? []).map((guard) => guard.rule);
    const route = walked?.route;
    return { rule: index < 0 ? (rule ?? {}) : mergeRules(rule, later), ...(route === undefined ? {} : { route }) };
  }

  /** The pattern of the request's route for its usage report: the route that ran, else the one it would have. */
  function reportedRoute(req: Request): string | undefined {
    const pattern = req.route?.path;
    if (typeof pattern === 'string') return `${req.baseUrl ?? ''}${pattern}`;
    // Refused before its route ran: found the way the router would have.
    try {
      return routeOf(req)?.route;
    } catch {
      return undefined;
    }
  }

  function report(req: Request, res: Response, state: GuardState, started: number): void {
    // Read now: a socket closed by the client has no address left.
    const ipAddress = req.ip;
    // 'close' comes once, when the response is sent or the client went away first ('finish' only the former).
    res.once('close', () => {
      if (state.outcome === undefined) return;
      auth.record(state.outcome, {
        endpoint: req.originalUrl,
        route: reportedRoute(req),
        tags: state.tags,
        method: req.method,
        statusCode: res.headersSent ? res.statusCode : null,
        ipAddress,
        userAgent: req.headers['user-agent'],
        responseTimeMs: performance.now() - started,
      });
    });
  }

  function handler(rule: AccessRule | null): RequestHandler {
    assertTags(rule?.tags, 'keywardExpress');
    const guard: RequestHandler = (req, res, next) => {
      const header = req.headers['x-api-key'];
      const presented = {
        authorization: req.headers.authorization,
        apiKey: Array.isArray(header) ? header.join(', ') : header,
        path: req.originalUrl,
      };
      const known = stateOf(req);
      const started = performance.now();
      const find = known === undefined ? () => resolve(req, guard, rule) : undefined;
      const settle = ({ decision, state }: GuardResult): void => {
        if (known === undefined) {
          (req as unknown as Record<symbol, GuardState | undefined>)[stateKey] = state;
          report(req, res, state, started);
        }
        if (!decision.ok) {
          send(res, decision);
          return;
        }
        if (!isEmpty(decision.headers)) res.set(decision.headers);
        req.keyward = decision.identity;
        next();
      };
      const found = guardRequest(auth, presented, rule, known, find);
      // A cached key goes on in this same turn: no promise, no later tick.
      if (isPending(found)) found.then(settle, next);
      else settle(found);
    };
    guards.set(guard, rule);
    return guard;
  }
  const guard = (rule: AccessRule = {}) => handler(rule);
  return Object.assign(guard, { authenticate: () => handler(null), close: () => auth.close() });
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
