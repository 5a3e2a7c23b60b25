import { LRUCache } from 'lru-cache';
import { KeywardClient, type VerifyCode, type VerifyKeyInput, type VerifyKeyResult } from './client.js';
import { KeywardError, type Problem } from './errors.js';
import { classifyKey, hashApiKey } from './key.js';
import { credentialOf, hasScopes, rateLimitHeaders, secondsUntil, UNAUTHENTICATED_CODES } from './shared.js';
import { createUsageReporter, type UsageReportingOptions } from './usage-reporter.js';

// The framework-agnostic core of the Fastify, Express and Hono middleware: read the credential, verify it
// through Keyward (with a small cache), decide. Each adapter only translates requests and responses.

/**
 * Who called: attached to the request by the middleware once the key verified. Frozen, deeply: the cache
 * hands the same object to every request of a key, so a handler must not change it (copy it to adapt it).
 */
export interface KeywardIdentity {
  readonly keyId: string;
  readonly userId: string | null;
  readonly scopes: readonly string[];
  readonly isAdmin: boolean;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** What a route requires. Scopes use Keyward's matching: `inventory:*` covers `inventory:read`, `*` all. */
export interface AccessRule {
  /** Every one of these scopes must be granted (implies a key is required). */
  scopes?: string[];
  /** Only admin keys (implies a key is required). */
  admin?: boolean;
  /** Overrides the global `requireApiKey` for this route. */
  requireApiKey?: boolean;
  /** Quota units this request spends (sent to Keyward as `cost`; default 1 on the server). */
  cost?: number;
  /**
   * Rate-limit units this request uses (sent as `ratelimit_cost`; default 1 on the server). The Express and
   * Hono route guards send 0 when they verify again for a route's extra quota cost: a request counts once.
   */
  rateLimitCost?: number;
}

export interface KeywardAuthOptions {
  /** Where Keyward listens. Ignored when `client` is given. */
  baseUrl?: string;
  /** A key holding `keyward:verify` (or an admin key): the middleware's own credential for `POST /v1/keys/verify`. */
  apiKey?: string;
  /** A client to verify through, instead of `baseUrl` + `apiKey`. */
  client?: KeywardClient;
  /** A `fetch` to use instead of the global one. Ignored when `client` is given. */
  fetch?: (input: Request) => Promise<Response>;
  /** Give up on Keyward after this long and answer 503 (default 5 000 ms). Ignored when `client` is given. */
  timeoutMs?: number;
  /**
   * The `REQUIRE_API_KEY` switch (default `true`). When `false`, a request without a key passes as anonymous
   * (no identity), except on routes that require scopes or admin; a presented key that fails is still a 401.
   */
  requireApiKey?: boolean;
  /**
   * The local cache of verified keys, by SHA-256 of the key (never the key): `false` to verify every request.
   * Only `VALID` answers are kept, and only for keys without a rate limit or quota (those must reach Keyward
   * on every request). A key revoked in Keyward may keep passing here for up to `ttlMs`.
   */
  cache?: { maxEntries?: number; ttlMs?: number } | false;
  /**
   * Called when Keyward cannot be reached or refuses the middleware's own key (the request then fails
   * 503/500), and when a usage report could not be sent.
   */
  onError?: (error: KeywardError) => void;
  /**
   * Reports each request that presented a key (endpoint, method, status, IP, user agent, response time,
   * outcome) to Keyward's `POST /v1/usage/events`, in batches in the background: never on the request's
   * path, bounded, best-effort (see {@link UsageReportingOptions}). `false` turns it off. Cached requests,
   * which never reach Keyward's verify endpoint, are counted this way too.
   */
  usage?: UsageReportingOptions | false;
}

/** What a request's key came to: the key's id (`null` when unknown or malformed) and a verification code. */
export interface RequestOutcome {
  keyId: string | null;
  code: VerifyCode;
}

/** What an adapter knows once the response is sent, for the usage report. */
export interface SeenResponse {
  /** The request path; a query string is dropped. */
  endpoint: string;
  method: string;
  /** `null` when no response was sent: the client went away first. */
  statusCode: number | null;
  ipAddress?: string | undefined;
  userAgent?: string | undefined;
  responseTimeMs: number;
}

/** The outcome for one request: pass (with the identity, or `null` for anonymous), or a problem to answer. */
export type Decision =
  | { ok: true; identity: KeywardIdentity | null; headers: Record<string, string>; outcome?: RequestOutcome }
  | { ok: false; status: number; problem: Problem; headers: Record<string, string>; outcome?: RequestOutcome };
// `outcome` is set whenever a key was presented and judged (absent for anonymous requests, and when Keyward
// could not be asked): what the adapter reports with `record` once the response is known.

/** What the middleware reads from a request. */
export interface PresentedCredentials {
  /** The `Authorization` header. */
  authorization?: string | undefined;
  /** The `X-API-Key` header. */
  apiKey?: string | undefined;
  /** The request path (the problem's `instance`); a query string is dropped. */
  path: string;
}

export interface KeywardAuth {
  /** Whether requests without a key are refused by default. */
  readonly requireApiKey: boolean;
  /** Reads, verifies and checks the credential of one request against a route's rule (spending its cost). */
  authorize(request: PresentedCredentials, rule?: AccessRule): Promise<Decision>;
  /**
   * Reads and verifies the credential of one request without spending anything (`cost` and `ratelimit_cost`
   * 0): refuses only what comes before scopes in Keyward's order (no key when one is required, malformed,
   * unknown, revoked, deactivated, expired). A key over its rate limit or quota passes with its identity:
   * whether the route's scopes come first is for the `authorize` that spends to decide.
   */
  authenticate(request: PresentedCredentials): Promise<Decision>;
  /**
   * Checks an identity already decided by `authorize` (`null`: anonymous) against another rule, without
   * verifying again: for a route guard behind a global one, so a request is verified (and spends quota) once.
   */
  permit(identity: KeywardIdentity | null, rule: AccessRule, path: string): Decision;
  /** Forgets every cached verification. */
  clearCache(): void;
  /** Queues the usage report of one request (a push: never waits, never throws). No-op with `usage: false`. */
  record(outcome: RequestOutcome, response: SeenResponse): void;
  /** Sends the queued usage reports now; resolves when done (never rejects). */
  flush(): Promise<void>;
  /** Sends the queued usage reports and stops the background timer: call on shutdown. */
  close(): Promise<void>;
}

/** The quota units a request checked against `rule` spends: its `cost`, else Keyward's default of 1. */
export const costOf = (rule: AccessRule): number => rule.cost ?? 1;

/** What the Express or Hono guards of one request have found so far (kept by the adapter per request). */
export interface GuardState {
  /** What the key came to, for the usage report; `undefined` when no key was presented (not reported). */
  outcome: RequestOutcome | undefined;
  identity: KeywardIdentity | null;
  /** Quota units spent so far; `null` while the request is only authenticated (nothing spent yet). */
  spent: number | null;
  /** The RateLimit headers Keyward last reported for the key: every answer carries them. */
  headers: Record<string, string>;
}

/**
 * One Express or Hono guard on one request. `rule` `null` is `authenticate()`: verify without spending. The
 * first guard on a request authenticates or authorizes with its rule (one spending verification). A guard
 * behind `authenticate()` does the request's one spending verification, with its rule (so a key refused for
 * scopes spends nothing). A guard behind a spending one re-checks locally, and verifies again only for a
 * cost beyond what was spent (with `ratelimit_cost` 0: a request counts once against the rate limit).
 * `state` is the request's state (`undefined` for the first guard); the one to keep is returned.
 */
export async function guardRequest(
  auth: KeywardAuth,
  presented: PresentedCredentials,
  rule: AccessRule | null,
  state: GuardState | undefined,
): Promise<{ decision: Decision; state: GuardState }> {
  if (state === undefined) {
    const decision = rule === null ? await auth.authenticate(presented) : await auth.authorize(presented, rule);
    const identity = decision.ok ? decision.identity : null;
    const headers = decision.ok ? decision.headers : {};
    return { decision, state: { outcome: decision.outcome, identity, spent: rule === null ? null : costOf(rule), headers } };
  }
  let decision: Decision;
  if (rule === null || state.identity === null) {
    decision = auth.permit(state.identity, rule ?? {}, presented.path);
  } else if (state.spent === null) {
    decision = await auth.authorize(presented, rule);
    if (decision.ok) state.spent = costOf(rule);
  } else {
    const extra = costOf(rule) - state.spent;
    if (extra <= 0) decision = auth.permit(state.identity, rule, presented.path);
    else {
      decision = await auth.authorize(presented, { ...rule, cost: extra, rateLimitCost: 0 });
      if (decision.ok) state.spent += extra;
    }
  }
  if (decision.outcome) state.outcome = decision.outcome;
  if (decision.ok) state.identity = decision.identity;
  state.headers = { ...state.headers, ...decision.headers };
  return { decision: { ...decision, headers: state.headers }, state };
}

const DEFAULT_CACHE = { maxEntries: 1_000, ttlMs: 5_000 };
/** The longest response time Keyward takes in a usage report (24 h): one longer would void its whole batch. */
const MAX_RESPONSE_TIME_MS = 86_400_000;
/** Longer strings are never keys (SPEC §2): refused before they are even hashed. */
const MAX_KEY_LENGTH = 256;

/**
 * The same catalogue the server uses (its `errors.ts`) for the answers the middleware gives; a test keeps
 * the two in step.
 */
export const MIDDLEWARE_PROBLEMS = {
  AUTH_REQUIRED: { status: 401, title: 'An API key or token is required' },
  INVALID_CREDENTIALS: { status: 401, title: 'The API key or token is not valid' },
  KEY_EXPIRED: { status: 401, title: 'The API key has expired' },
  KEY_DISABLED: { status: 401, title: 'The API key is deactivated' },
  KEY_REVOKED: { status: 401, title: 'The API key is revoked' },
  FORBIDDEN: { status: 403, title: 'This credential is not allowed to do that' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  USAGE_EXCEEDED: { status: 429, title: 'The API key has used up its quota' },
  INTERNAL_ERROR: { status: 500, title: 'Internal error' },
  SERVICE_UNAVAILABLE: { status: 503, title: 'The service is temporarily unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;
type ProblemCode = keyof typeof MIDDLEWARE_PROBLEMS;

const REALM = 'Bearer realm="keyward"';
const INVALID_TOKEN = 'Bearer realm="keyward", error="invalid_token"';

/** A problem+json body shaped exactly as Keyward shapes its own. */
export function problemOf(code: ProblemCode, path: string, detail?: string): Problem {
  const { status, title } = MIDDLEWARE_PROBLEMS[code];
  return {
    type: `https://keyward.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
    instance: path.split('?')[0] ?? path,
  };
}

function deny(code: ProblemCode, path: string, detail?: string, headers: Record<string, string> = {}): Decision {
  const problem = problemOf(code, path, detail);
  return { ok: false, status: problem.status, problem, headers };
}

interface CachedKey {
  identity: KeywardIdentity;
  expiresAt: number | null;
}

/** {@link UNAUTHENTICATED_CODES}, looked up by any verify code. */
const UNAUTHENTICATED: Partial<Record<string, ProblemCode>> = UNAUTHENTICATED_CODES;

function identityOf(result: VerifyKeyResult): KeywardIdentity | null {
  if (typeof result.key_id !== 'string') return null;
  return deepFreeze({
    keyId: result.key_id,
    userId: result.user_id ?? null,
    scopes: result.scopes ?? [],
    isAdmin: result.is_admin ?? false,
    metadata: result.metadata ?? {},
  });
}

/** Freezes a JSON value and everything in it (an identity is shared through the cache). */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/**
 * The core of the middleware: verifies presented keys through Keyward's `POST /v1/keys/verify`, with a small
 * local cache keyed by the key's SHA-256, and decides each request against a route's {@link AccessRule}.
 * The Fastify, Express and Hono adapters are thin wrappers around `authorize`.
 *
 * @example
 * const auth = createKeywardAuth({ baseUrl: 'http://127.0.0.1:8080', apiKey: process.env.KEYWARD_VERIFY_KEY });
 * const decision = await auth.authorize(
 *   { authorization: req.headers.authorization, apiKey: req.headers['x-api-key'], path: req.url },
 *   { scopes: ['companies:read'] },
 * );
 * if (!decision.ok) return res.status(decision.status).json(decision.problem);
 */
export function createKeywardAuth(options: KeywardAuthOptions): KeywardAuth {
  const client = options.client ?? clientFor(options);
  const requireApiKey = options.requireApiKey ?? true;
  const cacheOptions = options.cache === false ? null : { ...DEFAULT_CACHE, ...options.cache };
  const cache =
    cacheOptions && cacheOptions.maxEntries > 0 && cacheOptions.ttlMs > 0
      ? new LRUCache<string, CachedKey>({ max: cacheOptions.maxEntries, ttl: cacheOptions.ttlMs })
      : null;

  // Routes that require scopes or admin need a key whatever the global switch says.
  const keyRequired = (rule: AccessRule): boolean =>
    (rule.requireApiKey ?? requireApiKey) || rule.admin === true || (rule.scopes?.length ?? 0) > 0;

  const reporter =
    options.usage === false
      ? null
      : createUsageReporter(client, { ...options.usage, ...(options.onError ? { onError: options.onError } : {}) });

  function check(identity: KeywardIdentity, rule: AccessRule, path: string, headers: Record<string, string>): Decision {
    // Refused here for admin or scopes: reported as Keyward would have answered it.
    const refused = (detail: string): Decision => ({
      ...deny('FORBIDDEN', path, detail, headers),
      outcome: { keyId: identity.keyId, code: 'INSUFFICIENT_SCOPES' },
    });
    if (rule.admin && !identity.isAdmin) return refused('this route requires an admin key');
    const scopes = rule.scopes ?? [];
    if (!hasScopes(identity.scopes, scopes)) return refused(`this key lacks a required scope (${scopes.join(', ')})`);
    return { ok: true, identity, headers, outcome: { keyId: identity.keyId, code: 'VALID' } };
  }

  // `checkOnly`: authenticate without spending, and let valid-state refusals (rate limit, quota) through.
  async function verify(key: string, hash: string | null, rule: AccessRule, path: string, checkOnly = false): Promise<Decision> {
    const body: VerifyKeyInput = checkOnly ? { key, cost: 0, ratelimit_cost: 0 } : { key };
    if (rule.scopes?.length) body.scopes = [...rule.scopes];
    if (!checkOnly && rule.cost !== undefined) body.cost = rule.cost;
    if (!checkOnly && rule.rateLimitCost !== undefined) body.ratelimit_cost = rule.rateLimitCost;
    let result: VerifyKeyResult;
    try {
      result = await client.verifyKey(body);
    } catch (error) {
      const failure = error instanceof KeywardError ? error : KeywardError.network(error);
      options.onError?.(failure);
      // Keyward's brute-force guard slowing this service down: passed on as it came, with its Retry-After.
      if (failure.status === 429) {
        const retry: Record<string, string> = failure.retryAfter === undefined ? {} : { 'retry-after': String(failure.retryAfter) };
        return deny('RATE_LIMITED', path, 'too many failed verifications; try again later', retry);
      }
      // Keyward down or slow: not the caller's fault. Keyward refusing our own key: a misconfiguration here.
      if (failure.status === 0 || failure.status >= 500) {
        return deny('SERVICE_UNAVAILABLE', path, 'the key could not be verified; try again shortly', { 'retry-after': '5' });
      }
      return deny('INTERNAL_ERROR', path);
    }
    const now = Date.now();
    const headers = rateLimitHeaders(result.ratelimit, now);
    const identity = identityOf(result);
    if (result.valid && identity) {
      const perRequest = result.ratelimit != null || result.remaining != null;
      if (cache && hash !== null && !perRequest) {
        cache.set(hash, { identity, expiresAt: result.expires_at ? Date.parse(result.expires_at) : null });
      }
      return check(identity, rule, path, headers);
    }
    const outcome: RequestOutcome = { keyId: identity?.keyId ?? null, code: result.code };
    const unauthenticated = UNAUTHENTICATED[result.code];
    if (unauthenticated || !identity) {
      return { ...deny(unauthenticated ?? 'INVALID_CREDENTIALS', path, undefined, { 'www-authenticate': INVALID_TOKEN }), outcome };
    }
    if (checkOnly) return { ok: true, identity, headers, outcome };
    return { ...refusal(result, rule, path, headers, now), outcome };
  }

  function permit(identity: KeywardIdentity | null, rule: AccessRule, path: string): Decision {
    if (identity) return check(identity, rule, path, {});
    if (keyRequired(rule)) return deny('AUTH_REQUIRED', path, undefined, { 'www-authenticate': REALM });
    return { ok: true, identity: null, headers: {} };
  }

  async function decide(request: PresentedCredentials, rule: AccessRule, checkOnly: boolean): Promise<Decision> {
    const path = request.path;
    const key = credentialOf(request);
    if (key === undefined) return permit(null, rule, path);
    const invalid = (): Decision => ({
      ...deny('INVALID_CREDENTIALS', path, undefined, { 'www-authenticate': INVALID_TOKEN }),
      outcome: { keyId: null, code: 'INVALID_FORMAT' },
    });
    if (key.length > MAX_KEY_LENGTH) return invalid();
    // Only keys that verified are cached, so a hit needs no format check: the hot path is one hash and one look-up.
    const hash = cache ? hashApiKey(key) : null;
    if (cache && hash !== null) {
      const hit = cache.get(hash);
      if (hit && (hit.expiresAt === null || hit.expiresAt > Date.now())) return check(hit.identity, rule, path, {});
      if (hit) cache.delete(hash);
    }
    // A malformed key or bad checksum never costs a round trip.
    if (classifyKey(key) === 'invalid') return invalid();
    return verify(key, hash, rule, path, checkOnly);
  }

  return {
    requireApiKey,
    authorize: (request, rule = {}) => decide(request, rule, false),
    authenticate: (request) => decide(request, {}, true),
    permit,
    clearCache: () => cache?.clear(),
    record(outcome, response) {
      if (reporter === null) return;
      const endpoint = response.endpoint.split('?')[0] ?? response.endpoint;
      reporter.record({
        key_id: outcome.keyId,
        outcome: outcome.code,
        // Clipped as Keyward stores them, so a report stays small.
        endpoint: endpoint.slice(0, 1024),
        method: response.method.slice(0, 16),
        status_code: response.statusCode !== null && response.statusCode >= 100 && response.statusCode <= 599 ? response.statusCode : null,
        ip_address: response.ipAddress?.slice(0, 64) ?? null,
        user_agent: response.userAgent?.slice(0, 512) ?? null,
        // Keyward refuses a whole batch over one longer time (an SSE stream open for days): clamped to its limit.
        response_time_ms: Math.min(MAX_RESPONSE_TIME_MS, Math.max(0, Math.round(response.responseTimeMs))),
        occurred_at: new Date(Date.now() - response.responseTimeMs).toISOString(),
      });
    },
    flush: () => reporter?.flush() ?? Promise.resolve(),
    close: () => reporter?.close() ?? Promise.resolve(),
  };
}

/** The answer for a found, valid-state key Keyward refused: scopes (403), rate limit or quota (429). */
function refusal(result: VerifyKeyResult, rule: AccessRule, path: string, headers: Record<string, string>, now: number): Decision {
  switch (result.code) {
    case 'INSUFFICIENT_SCOPES':
      return deny('FORBIDDEN', path, `this key lacks a required scope (${(rule.scopes ?? []).join(', ')})`, headers);
    case 'RATE_LIMITED':
      return deny('RATE_LIMITED', path, 'this key is over its rate limit', {
        ...headers,
        'retry-after': String(secondsUntil(result.ratelimit?.reset ?? 0, now, 1, result.ratelimit?.window_seconds)),
      });
    case 'USAGE_EXCEEDED':
      // Retry-After when the quota refills; a quota that never does has none to give.
      return deny(
        'USAGE_EXCEEDED',
        path,
        'this key has used up its quota',
        result.quota_reset === undefined ? headers : { ...headers, 'retry-after': String(secondsUntil(result.quota_reset, now, 1)) },
      );
    default:
      return deny('FORBIDDEN', path, `the key did not verify (${result.code})`, headers);
  }
}

function clientFor(options: KeywardAuthOptions): KeywardClient {
  if (!options.baseUrl || !options.apiKey) throw new TypeError('createKeywardAuth needs `client`, or `baseUrl` and `apiKey`');
  return new KeywardClient({
    baseUrl: options.baseUrl,
    apiKey: options.apiKey,
    timeoutMs: options.timeoutMs ?? 5_000,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}
