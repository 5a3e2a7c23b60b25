import type { Request, RequestHandler, Response } from 'express';
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
 * guard. `close()` sends the queued usage reports (call it on shutdown).
 */
export type KeywardExpressGuard = ((rule?: AccessRule) => RequestHandler) & {
  /**
   * A global guard that verifies the key without spending anything (answering the 401s) and sets
   * `req.keyward`; the route's own guard then verifies once with its rule and spends its cost. Every route
   * behind it needs a guard of its own (`keyward()` for the default rule): a route without one is not metered.
   */
  authenticate(): RequestHandler;
  close(): Promise<void>;
};

function send(res: Response, decision: Extract<Decision, { ok: false }>): void {
  res.status(decision.status).set(decision.headers).type('application/problem+json').send(JSON.stringify(decision.problem));
}

/**
 * Express middleware that authenticates requests with Keyward, sets `req.keyward` and enforces a rule.
 * Alone, `keyward(rule?)` verifies once with its rule and spends its `cost`. With route rules, use
 * `keyward.authenticate()` globally and `keyward(rule)` on each route: the global guard spends nothing, the
 * route's guard does the one spending verification, so a key refused for scopes spends neither quota nor rate
 * limit (as with Fastify). Failures answer problem+json as Keyward does (401 with `WWW-Authenticate`, 403, 429).
 *
 * @example
 * const keyward = keywardExpress({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * app.use(keyward.authenticate());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (req, res) => {
 *   res.json({ companies: [], caller: req.keyward?.keyId });
 * });
 * app.get('/v1/me', keyward(), (req, res) => res.json(req.keyward));
 */
export function keywardExpress(options: KeywardExpressOptions): KeywardExpressGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  // What each request's guards found so far; a later guard updates it before the report.
  const states = new WeakMap<Request, GuardState>();

  function report(req: Request, res: Response, state: GuardState, started: number): void {
    // Read now: a socket closed by the client has no address left.
    const ipAddress = req.ip;
    // 'close' comes once, when the response is sent or the client went away first ('finish' only the former).
    res.once('close', () => {
      if (state.outcome === undefined) return;
      auth.record(state.outcome, {
        endpoint: req.originalUrl,
        method: req.method,
        statusCode: res.headersSent ? res.statusCode : null,
        ipAddress,
        userAgent: req.headers['user-agent'],
        responseTimeMs: performance.now() - started,
      });
    });
  }

  const handler =
    (rule: AccessRule | null): RequestHandler =>
    (req, res, next) => {
      const header = req.headers['x-api-key'];
      const presented = {
        authorization: req.headers.authorization,
        apiKey: Array.isArray(header) ? header.join(', ') : header,
        path: req.originalUrl,
      };
      const known = states.get(req);
      const started = performance.now();
      guardRequest(auth, presented, rule, known).then(({ decision, state }) => {
        if (known === undefined) {
          states.set(req, state);
          report(req, res, state, started);
        }
        if (!decision.ok) return send(res, decision);
        res.set(decision.headers);
        req.keyward = decision.identity;
        next();
      }, next);
    };
  const guard = (rule: AccessRule = {}) => handler(rule);
  return Object.assign(guard, { authenticate: () => handler(null), close: () => auth.close() });
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
