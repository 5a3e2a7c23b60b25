import type { NextFunction, Request, RequestHandler, Response } from 'express';
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
 * Builds a middleware for a route rule; with no rule, the global `requireApiKey` alone decides. `close()`
 * sends the queued usage reports (call it on shutdown).
 */
export type KeywardExpressGuard = ((rule?: AccessRule) => RequestHandler) & { close(): Promise<void> };

function send(res: Response, decision: Extract<Decision, { ok: false }>): void {
  res.status(decision.status).set(decision.headers).type('application/problem+json').send(JSON.stringify(decision.problem));
}

/**
 * Express middleware that authenticates requests with Keyward, sets `req.keyward` and enforces a rule.
 * Use it once globally and again per route: a later guard re-checks the identity the first one found
 * instead of verifying again, unless its rule's `cost` exceeds what was spent: then it verifies again for the
 * difference, so the quota is charged the route's cost in all. Failures answer problem+json as Keyward does (401 with `WWW-Authenticate`, 403).
 *
 * @example
 * const keyward = keywardExpress({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY });
 * app.use(keyward());
 * app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (req, res) => {
 *   res.json({ companies: [], caller: req.keyward?.keyId });
 * });
 */
export function keywardExpress(options: KeywardExpressOptions): KeywardExpressGuard {
  const auth = options.auth ?? createKeywardAuth(options);
  // What each request's key came to and the quota it spent; a later route guard updates both before the report.
  const outcomes = new WeakMap<Request, { outcome: RequestOutcome; spent: number }>();

  function track(req: Request, res: Response, outcome: RequestOutcome, spent: number, started: number): void {
    const state = { outcome, spent };
    outcomes.set(req, state);
    res.once('finish', () => {
      auth.record(state.outcome, {
        endpoint: req.originalUrl,
        method: req.method,
        statusCode: res.statusCode,
        ipAddress: req.ip,
        userAgent: req.headers['user-agent'],
        responseTimeMs: performance.now() - started,
      });
    });
  }

  const guard =
    (rule: AccessRule = {}) =>
    (req: Request, res: Response, next: NextFunction): void => {
      const path = req.originalUrl;
      const header = req.headers['x-api-key'];
      const presented = { authorization: req.headers.authorization, apiKey: Array.isArray(header) ? header.join(', ') : header, path };
      if (req.keyward !== undefined) {
        const state = outcomes.get(req);
        const extra = req.keyward !== null && state ? costOf(rule) - state.spent : 0;
        if (extra <= 0 || !state) {
          const decision = auth.permit(req.keyward, rule, path);
          if (state && decision.outcome && !decision.ok) state.outcome = decision.outcome;
          if (decision.ok) next();
          else send(res, decision);
          return;
        }
        // This route costs more than the global guard spent: verify again for the difference.
        auth.authorize(presented, { ...rule, cost: extra, rateLimitCost: 0 }).then((decision) => {
          if (decision.outcome) state.outcome = decision.outcome;
          if (!decision.ok) return send(res, decision);
          state.spent += extra;
          res.set(decision.headers);
          req.keyward = decision.identity;
          next();
        }, next);
        return;
      }
      const started = performance.now();
      auth.authorize(presented, rule).then((decision) => {
        if (decision.outcome) track(req, res, decision.outcome, costOf(rule), started);
        if (!decision.ok) return send(res, decision);
        res.set(decision.headers);
        req.keyward = decision.identity;
        next();
      }, next);
    };
  return Object.assign(guard, { close: () => auth.close() });
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
