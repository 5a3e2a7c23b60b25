import { LRUCache } from 'lru-cache';
import { type KeyChangeFeed, subscribeKeyChanges } from './changes.js';
import { KeywardClient, type VerifyCode, type VerifyKeyInput, type VerifyKeyResult } from './client.js';
import { KeywardError, type Problem } from './errors.js';
import { classifyKey, hashApiKey } from './key.js';
import { credentialOf, hasScopes, rateLimitHeaders, secondsUntil, UNAUTHENTICATED_CODES } from './shared.js';
import { createUsageReporter, type RecordedUsageEvent, type UsageReportingOptions } from './usage-reporter.js';

// The framework-agnostic core of the Fastify, Express and Hono middleware: read the credential, verify it
// through Keyward (with a local cache that Keyward's change feed keeps honest), decide. Each adapter only
// translates requests and responses, and finds the route's rule before the request's one verification.

/**
 * Who called: attached to the request by the middleware once the key verified. Frozen, deeply: the cache
 * hands the same object to every request of a key, so a handler must not change it (copy it to adapt it).
 */
export interface KeywardIdentity {
  readonly keyId: string;
  /**
   * The key's lineage: the same for a key and every key rolled from it, so a record owned by the caller keeps
   * its owner across rolls. Absent when Keyward does not report it (older servers).
   */
  readonly lineageId?: string;
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
   * Rate-limit units this request uses (sent as `ratelimit_cost`; default 1 on the server). A route guard that
   * verifies again for quota beyond what the request's verification spent sends 0: a request counts once.
   */
  rateLimitCost?: number;
  /**
   * Tags for this route's usage rows (and its verification), besides the `route:<pattern>` tag the middleware
   * adds and the global `tags`: at most 9, each 1 to 64 characters without control characters.
   */
  tags?: string[];
}

/** How the middleware follows Keyward's key changes (`GET /v1/keys/changes`); `true` takes the defaults. */
export interface KeyChangesOptions {
  /** No event or heartbeat for this long means the stream is dead: reconnect (default 45 000 ms). */
  heartbeatTimeoutMs?: number;
  /** The wait before reconnecting, doubling from `min` up to `max` (default 250..10 000 ms). */
  reconnectDelayMs?: { min: number; max: number };
}

export interface KeywardAuthOptions {
  /** Where Keyward listens. Ignored when `client` is given. */
  baseUrl?: string;
  /** A key holding `keyward:verify` (or an admin key): the middleware's own credential for `POST /v1/keys/verify`. */
  apiKey?: string;
  /** A client to verify through, instead of `baseUrl` + `apiKey`. */
  client?: KeywardClient;
  /** A `fetch` to use instead of the global one. Ignored when `client` is given (but used by the change feed). */
  fetch?: (input: Request) => Promise<Response>;
  /** Give up on Keyward after this long and answer 503 (default 5 000 ms). Ignored when `client` is given. */
  timeoutMs?: number;
  /**
   * The `REQUIRE_API_KEY` switch (default `true`). When `false`, a request without a key passes as anonymous
   * (no identity), except on routes that require scopes or admin; a presented key that fails is still a 401.
   */
  requireApiKey?: boolean;
  /**
   * The local cache of verified keys, by SHA-256 of the key (never the key): `false` to verify every request
   * (and keep nothing for `staleWindowMs`). A key without a rate limit or quota that verified `VALID` is
   * answered from here for `liveTtlMs` (default 300 000) while the change feed is live, which drops a changed
   * key at once, else for `ttlMs` (default 5 000). Keys with a rate limit or quota are never answered from
   * here (each request must reach Keyward to count), only kept for the stale window. `maxEntries` default 1 000.
   */
  cache?: { maxEntries?: number; ttlMs?: number; liveTtlMs?: number } | false;
  /**
   * Follow Keyward's key changes (`GET /v1/keys/changes`, server-sent events) to drop a changed key from the
   * cache at once. On by default when `baseUrl` and `apiKey` are given (the same key is used); `false` turns
   * it off (then the cache lives `cache.ttlMs`).
   */
  changes?: boolean | KeyChangesOptions;
  /**
   * When Keyward cannot be reached (network error, timeout, 5xx), a key Keyward vouched for this long ago at
   * most is still let through, from what was last known (rate limit and quota are not spent then); any other
   * key gets 503. Keyward vouches for a key when it verifies `VALID`; for a key without a rate limit or quota,
   * also all the while the change feed is live (no change reported means unchanged), so the window runs from
   * the later of its verification and the moment the feed stopped being live. A key the feed reported changed
   * is dropped, never answered from here. Default 60 000 ms; 0 turns it off.
   */
  staleWindowMs?: number;
  /** Tags for every usage row and verification (e.g. `region:eu`): at most 9, each 1 to 64 characters. */
  tags?: string[];
  /**
   * Called when Keyward cannot be reached or refuses the middleware's own key (the request then fails
   * 503/500, or is answered from a recent verification), when the change feed fails, and when a usage report
   * could not be sent.
   */
  onError?: (error: KeywardError) => void;
  /**
   * Reports each request that presented a key (endpoint, method, status, IP, user agent, response time,
   * outcome, tags) to Keyward's `POST /v1/usage/events`, in batches in the background: never on the request's
   * path, bounded, best-effort (see {@link UsageReportingOptions}). That report is the request's one usage
   * row: the verifications made for it are sent with `record_usage: false`. `false` turns it off; then each
   * verification is a row of its own, and a request answered from the cache leaves none.
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
  /** The matched route pattern (`/v1/companies/:id`) for the `route:` tag; the endpoint when unknown. */
  route?: string | undefined;
  /** The tags of the rules that judged the request (the global `tags` are added). */
  tags?: readonly string[] | undefined;
}

/** A value, or a promise of it: the middleware answers a cached key at once, without a promise. */
export type MaybePromise<T> = T | Promise<T>;

/** Whether a {@link MaybePromise} is still to come (a promise or another thenable). */
export function isPending<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** The outcome for one request: pass (with the identity, or `null` for anonymous), or a problem to answer. */
export type Decision =
  | { ok: true; identity: KeywardIdentity | null; headers: Record<string, string>; outcome?: RequestOutcome; rule?: AccessRule }
  | { ok: false; status: number; problem: Problem; headers: Record<string, string>; outcome?: RequestOutcome; rule?: AccessRule };
// `outcome` is set whenever a key was presented and judged (absent for anonymous requests, and when Keyward
// could not be asked): what the adapter reports with `record` once the response is known. `rule` is the rule
// of the request's spending verification when Keyward was asked (with `ok`, what it spent); absent when
// nothing was to be spent (a cached key, an anonymous request, an answer from the stale window).

/** What the middleware reads from a request. */
export interface PresentedCredentials {
  /** The `Authorization` header. */
  authorization?: string | undefined;
  /** The `X-API-Key` header. */
  apiKey?: string | undefined;
  /** The request path (the problem's `instance`); a query string is dropped. */
  path: string;
  /** The matched route pattern, for the verification's `route:` tag; the path when unknown. */
  route?: string | undefined;
}

/**
 * Finds, when a request's key must be verified (never for a cached key), the rule of that verification —
 * the first guard's rule merged with the route's own guards (see {@link mergeRules}) — and the matched route
 * pattern. May throw: the first guard's rule is used then.
 */
export type RouteResolver = () => { rule: AccessRule; route?: string | undefined };

export interface KeywardAuth {
  /** Whether requests without a key are refused by default. */
  readonly requireApiKey: boolean;
  /**
   * Reads, verifies and checks the credential of one request against a route's rule, spending its cost in one
   * verification. With `resolve`, a verification uses the rule it finds instead (a cached key is checked
   * against `rule` alone: it has nothing to spend). A decision made without asking Keyward (a cached key, no
   * key, a malformed one) comes at once, not as a promise: `await` it either way, or check with {@link isPending}.
   */
  authorize(request: PresentedCredentials, rule?: AccessRule, resolve?: RouteResolver): MaybePromise<Decision>;
  /**
   * Reads and verifies the credential of one request without spending anything (`cost` and `ratelimit_cost`
   * 0): refuses only what comes before scopes in Keyward's order (no key when one is required, malformed,
   * unknown, revoked, deactivated, expired). A key over its rate limit or quota passes with its identity.
   * The adapters no longer use it (their first guard spends, once, with the route's rule). Comes at once when
   * Keyward need not be asked, as `authorize`.
   */
  authenticate(request: PresentedCredentials): MaybePromise<Decision>;
  /**
   * Checks an identity already decided by `authorize` (`null`: anonymous) against another rule, without
   * verifying again: for a route guard behind a global one, so a request is verified (and spends quota) once.
   */
  permit(identity: KeywardIdentity | null, rule: AccessRule, path: string): Decision;
  /** Whether Keyward's change feed is live (then the cache lives `cache.liveTtlMs`). */
  live(): boolean;
  /** Forgets every cached verification. */
  clearCache(): void;
  /**
   * Queues the usage report of one request (a push: never waits, never throws). No-op with `usage: false`.
   * Call it once for each request `authorize` judged: with reporting on, that is its one usage row.
   */
  record(outcome: RequestOutcome, response: SeenResponse): void;
  /** Sends the queued usage reports now; resolves when done (never rejects). */
  flush(): Promise<void>;
  /** Stops the change feed, sends the queued usage reports and stops the background timer: call on shutdown. */
  close(): Promise<void>;
}

/** The quota units a request checked against `rule` spends: its `cost`, else Keyward's default of 1. */
export const costOf = (rule: AccessRule): number => rule.cost ?? 1;

/**
 * The rule of a request's one verification: the first guard's rule (`null` for `authenticate()`) with the
 * rules of the guards after it. Scopes and tags are the union, `admin` holds if any says so, `cost` and
 * `rateLimitCost` are the largest a later guard sets (else the first guard's), `requireApiKey` the last set.
 *
 * @example
 * mergeRules({ cost: 2 }, [{ scopes: ['companies:read'] }]); // { scopes: ['companies:read'], cost: 2 }
 * mergeRules(null, [{ scopes: ['a'] }, { scopes: ['b'], cost: 5 }]); // { scopes: ['a', 'b'], cost: 5 }
 */
export function mergeRules(first: AccessRule | null, later: readonly (AccessRule | null)[]): AccessRule {
  const rules = [first, ...later].filter((rule): rule is AccessRule => rule !== null);
  const routes = later.filter((rule): rule is AccessRule => rule !== null);
  const merged: AccessRule = {};
  const scopes = [...new Set(rules.flatMap((rule) => rule.scopes ?? []))];
  if (scopes.length > 0) merged.scopes = scopes;
  if (rules.some((rule) => rule.admin === true)) merged.admin = true;
  const requireApiKey = rules.findLast((rule) => rule.requireApiKey !== undefined)?.requireApiKey;
  if (requireApiKey !== undefined) merged.requireApiKey = requireApiKey;
  const largest = (pick: (rule: AccessRule) => number | undefined): number | undefined => {
    const set = routes.map(pick).filter((value): value is number => value !== undefined);
    return set.length > 0 ? Math.max(...set) : first === null ? undefined : pick(first);
  };
  const cost = largest((rule) => rule.cost);
  if (cost !== undefined) merged.cost = cost;
  const rateLimitCost = largest((rule) => rule.rateLimitCost);
  if (rateLimitCost !== undefined) merged.rateLimitCost = rateLimitCost;
  const tags = [...new Set(rules.flatMap((rule) => rule.tags ?? []))];
  if (tags.length > 0) merged.tags = tags;
  return merged;
}

/** Tags a usage row or verification carries at most (Keyward's limit), and their length. */
const MAX_TAGS = 10;
const MAX_TAG_LENGTH = 64;

const validTag = (tag: unknown): tag is string => {
  if (typeof tag !== 'string' || tag === '') return false;
  const chars = Array.from(tag);
  return chars.length <= MAX_TAG_LENGTH && chars.every((c) => (c.codePointAt(0) ?? 0) > 0x1f && c !== '\u007f');
};

/**
 * Throws a `TypeError` (at start-up, where a guard or the middleware is built) for tags Keyward would refuse:
 * more than 9 (the route tag takes the tenth), or one that is empty, longer than 64 characters or holds a
 * control character.
 *
 * @example
 * assertTags(['region:eu', 'team:crm'], 'my guard'); // fine
 * assertTags(['x'.repeat(65)], 'my guard'); // TypeError: my guard: a tag is 1 to 64 characters …
 */
export function assertTags(tags: readonly string[] | undefined, where: string): void {
  if (tags === undefined) return;
  if (!Array.isArray(tags) || tags.length > MAX_TAGS - 1) throw new TypeError(`${where}: \`tags\` takes at most ${MAX_TAGS - 1} tags`);
  for (const tag of tags) {
    if (!validTag(tag)) {
      throw new TypeError(`${where}: a tag is 1 to ${MAX_TAG_LENGTH} characters without control characters (got ${JSON.stringify(tag)})`);
    }
  }
}

/** What the Express or Hono guards of one request have found so far (kept by the adapter per request). */
export interface GuardState {
  /** What the key came to, for the usage report; `undefined` when no key was presented (not reported). */
  outcome: RequestOutcome | undefined;
  identity: KeywardIdentity | null;
  /**
   * Quota units the request's verification spent; `Infinity` when nothing is to be spent (a cached key has no
   * quota, an anonymous request no key).
   */
  spent: number;
  /** The RateLimit headers Keyward last reported for the key: every answer carries them. */
  headers: Record<string, string>;
  /** The tags of the rules that judged the request, for the usage report. */
  tags: string[];
}

/**
 * One Express or Hono guard on one request. The first guard on a request (`state` `undefined`) does the
 * request's one spending verification, with the rule `resolve` finds (its own rule merged with the route's
 * guards), so a key refused for the route's scopes spends nothing; `rule` `null` is `authenticate()`, which
 * adds nothing of its own. A later guard re-checks its rule locally, and verifies again only for a cost beyond
 * what was spent (with `ratelimit_cost` 0: a request counts once against the rate limit) — which happens only
 * when `resolve` could not see it. The state to keep is returned.
 */
export function guardRequest(
  auth: KeywardAuth,
  presented: PresentedCredentials,
  rule: AccessRule | null,
  state: GuardState | undefined,
  resolve?: RouteResolver,
): MaybePromise<GuardResult> {
  const own = rule ?? {};
  if (state === undefined) {
    // A cached key is answered at once: the adapter then goes on synchronously, without a promise's turn.
    const decided = auth.authorize(presented, own, resolve);
    return isPending(decided) ? decided.then((decision) => firstGuard(decision, own)) : firstGuard(decided, own);
  }
  for (const tag of own.tags ?? []) if (!state.tags.includes(tag)) state.tags.push(tag);
  // A guard that sets no cost takes the one already spent (as the merge does).
  const extra = rule?.cost === undefined ? 0 : rule.cost - state.spent;
  if (state.identity === null || extra <= 0) return laterGuard(auth.permit(state.identity, own, presented.path), state);
  return Promise.resolve(auth.authorize(presented, { ...own, cost: extra, rateLimitCost: 0 })).then((decision) => {
    if (decision.ok) state.spent += extra;
    return laterGuard(decision, state);
  });
}

/** What one guard found: its decision (with every header the request's guards gathered) and the state to keep. */
export interface GuardResult {
  decision: Decision;
  state: GuardState;
}

function firstGuard(decision: Decision, own: AccessRule): GuardResult {
  const identity = decision.ok ? decision.identity : null;
  const headers = decision.ok ? decision.headers : {};
  const spent = decision.ok && decision.rule ? costOf(decision.rule) : Number.POSITIVE_INFINITY;
  const tags = [...(decision.rule?.tags ?? own.tags ?? [])];
  return { decision, state: { outcome: decision.outcome, identity, spent, headers, tags } };
}

function laterGuard(decision: Decision, state: GuardState): GuardResult {
  if (decision.outcome) state.outcome = decision.outcome;
  if (decision.ok) state.identity = decision.identity;
  // A local check brings no header: nothing to merge (the common case, a cached key behind authenticate()).
  if (!isEmpty(decision.headers)) state.headers = { ...state.headers, ...decision.headers };
  return { decision: { ...decision, headers: state.headers }, state };
}

const isEmpty = (record: Record<string, string>): boolean => {
  for (const _ in record) return false;
  return true;
};

const DEFAULT_CACHE = { maxEntries: 1_000, ttlMs: 5_000, liveTtlMs: 300_000 };
const DEFAULT_STALE_WINDOW_MS = 60_000;
/** The longest response time Keyward takes in a usage report (24 h): one longer would void its whole batch. */
const MAX_RESPONSE_TIME_MS = 86_400_000;
/** Tag lists the middleware keeps composed (per route and rule tags) before it starts over. */
const MAX_MEMO_TAG_LISTS = 1_000;
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

/** What the cache keeps of a key that verified `VALID`. */
interface CachedKey {
  identity: KeywardIdentity;
  /** When the key itself expires (epoch ms); `null` for never. */
  expiresAt: number | null;
  /**
   * When Keyward last answered `VALID` for it (epoch ms): its freshness, and the stale window's start (for an
   * unmetered key, the feed's vouching may start the window later).
   */
  verifiedAt: number;
  /**
   * A key with a rate limit or quota: never a cache hit, kept only for the stale window, which runs from its
   * verification alone (the feed reports changes to a key, not what its counters hold).
   */
  metered: boolean;
}

/** {@link UNAUTHENTICATED_CODES}, looked up by any verify code. */
const UNAUTHENTICATED: Partial<Record<string, ProblemCode>> = UNAUTHENTICATED_CODES;

function identityOf(result: VerifyKeyResult): KeywardIdentity | null {
  if (typeof result.key_id !== 'string') return null;
  return deepFreeze({
    keyId: result.key_id,
    ...(typeof result.lineage_id === 'string' ? { lineageId: result.lineage_id } : {}),
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

/** A verification in flight: made stale by a change to its key meanwhile (its answer may predate it). */
interface Pending {
  stale: boolean;
}

/**
 * The core of the middleware: verifies presented keys through Keyward's `POST /v1/keys/verify`, with a local
 * cache keyed by the key's SHA-256 that Keyward's change feed keeps honest, and decides each request against
 * a route's {@link AccessRule}. The Fastify, Express and Hono adapters are thin wrappers around `authorize`
 * and `record`; use the core directly for another framework, and report each request with `record` (with
 * usage reporting on, its verifications write no usage row of their own).
 *
 * @example
 * const auth = createKeywardAuth({ baseUrl: 'http://127.0.0.1:8080', apiKey: process.env.KEYWARD_VERIFY_KEY });
 * const started = performance.now();
 * const decision = await auth.authorize(
 *   { authorization: req.headers.authorization, apiKey: req.headers['x-api-key'], path: req.url, route: '/v1/companies' },
 *   { scopes: ['companies:read'] },
 * );
 * res.once('close', () => {
 *   if (decision.outcome) auth.record(decision.outcome, {
 *     endpoint: req.url, route: '/v1/companies', method: req.method, statusCode: res.statusCode,
 *     responseTimeMs: performance.now() - started,
 *   });
 * });
 * if (!decision.ok) return res.status(decision.status).json(decision.problem);
 */
export function createKeywardAuth(options: KeywardAuthOptions): KeywardAuth {
  const client = options.client ?? clientFor(options);
  const requireApiKey = options.requireApiKey ?? true;
  assertTags(options.tags, 'createKeywardAuth');
  const globalTags = options.tags ?? [];
  const cacheOptions = options.cache === false ? null : { ...DEFAULT_CACHE, ...options.cache };
  const staleWindowMs = Math.max(0, options.staleWindowMs ?? DEFAULT_STALE_WINDOW_MS);
  // The store holds verified keys for their cache life and for the stale window; hits need a life above 0.
  const store =
    cacheOptions && cacheOptions.maxEntries > 0 && Math.max(cacheOptions.ttlMs, cacheOptions.liveTtlMs, staleWindowMs) > 0
      ? new LRUCache<string, CachedKey>({ max: cacheOptions.maxEntries })
      : null;

  const reporter =
    options.usage === false
      ? null
      : createUsageReporter(client, { ...options.usage, ...(options.onError ? { onError: options.onError } : {}) });

  // The change feed, opened with the first request (a core built and never used opens no connection).
  const feedWanted = options.changes !== false && store !== null && !!options.baseUrl && !!options.apiKey;
  let feed: KeyChangeFeed | null = null;
  let closed = false;
  /** When the feed last stopped being live (epoch ms): it vouched for every cached key until then. */
  let liveUntil = Number.NEGATIVE_INFINITY;
  const pending = new Map<string, Set<Pending>>();
  const forget = (hash: string): void => {
    store?.delete(hash);
    for (const p of pending.get(hash) ?? []) p.stale = true;
  };
  const forgetAll = (): void => {
    store?.clear();
    for (const set of pending.values()) for (const p of set) p.stale = true;
  };
  function startFeed(): void {
    if (!feedWanted || feed !== null || closed) return;
    const tuning = typeof options.changes === 'object' ? options.changes : {};
    feed = subscribeKeyChanges(
      {
        baseUrl: options.baseUrl ?? '',
        apiKey: options.apiKey ?? '',
        ...(options.fetch ? { fetch: options.fetch } : {}),
        ...(tuning.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: tuning.heartbeatTimeoutMs }),
        ...(tuning.reconnectDelayMs === undefined ? {} : { reconnectDelayMs: tuning.reconnectDelayMs }),
      },
      {
        onChange: forget,
        onReset: forgetAll,
        onLive: (value) => {
          if (!value) liveUntil = Date.now();
        },
        onError: (error) => options.onError?.(error),
      },
    );
  }
  const live = (): boolean => feed?.live() ?? false;
  /**
   * Up to when Keyward is known to hold a cached key as it was verified: its verification, or for an unmetered
   * key, the feed's vouching since (a changed key is no longer in the cache: the feed dropped it).
   */
  const vouchedAt = (entry: CachedKey, now: number): number =>
    entry.metered ? entry.verifiedAt : Math.max(entry.verifiedAt, live() ? now : liveUntil);
  /** How long a verified, unmetered key is answered from the cache: long only while the feed vouches for it. */
  const cacheLife = (): number => (cacheOptions === null ? 0 : live() ? cacheOptions.liveTtlMs : cacheOptions.ttlMs);
  const expired = (entry: CachedKey, now: number): boolean => entry.expiresAt !== null && entry.expiresAt <= now;

  // Routes that require scopes or admin need a key whatever the global switch says.
  const keyRequired = (rule: AccessRule): boolean =>
    (rule.requireApiKey ?? requireApiKey) || rule.admin === true || (rule.scopes?.length ?? 0) > 0;

  /** The tags of a row or verification: the route's, the rule's, the global ones; at most Keyward's 10. */
  function composeTags(route: string, ruleTags: readonly string[] | undefined): string[] {
    const routeTag = Array.from(`route:${route.split('?')[0] ?? route}`)
      .slice(0, MAX_TAG_LENGTH)
      .join('');
    const tags = new Set([routeTag, ...(ruleTags ?? []), ...globalTags].filter(validTag));
    return [...tags].slice(0, MAX_TAGS);
  }
  // Every request of a route carries the same tags: composed once per route and rule tags. A route is a
  // pattern, or a path when the adapter knows none, so the memo is bounded (emptied when full). The lists are
  // shared between rows: only ever serialised.
  const tagMemo = new Map<string, Map<string, string[]>>();
  let tagMemoSize = 0;
  function tagsFor(route: string, ruleTags: readonly string[] | undefined): string[] {
    // JSON names a list of tags unambiguously; no tags (the common case) needs no name at all.
    const name = ruleTags === undefined || ruleTags.length === 0 ? '' : JSON.stringify(ruleTags);
    let byRule = tagMemo.get(route);
    const known = byRule?.get(name);
    if (known !== undefined) return known;
    const tags = composeTags(route, ruleTags);
    if (tagMemoSize >= MAX_MEMO_TAG_LISTS) {
      tagMemo.clear();
      tagMemoSize = 0;
      byRule = undefined;
    }
    if (byRule === undefined) {
      byRule = new Map();
      tagMemo.set(route, byRule);
    }
    byRule.set(name, tags);
    tagMemoSize++;
    return tags;
  }

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
  async function verify(
    key: string,
    hash: string | null,
    rule: AccessRule,
    request: PresentedCredentials,
    checkOnly: boolean,
  ): Promise<Decision> {
    const path = request.path;
    const body: VerifyKeyInput = checkOnly ? { key, cost: 0, ratelimit_cost: 0 } : { key };
    if (rule.scopes?.length) body.scopes = [...rule.scopes];
    if (!checkOnly && rule.cost !== undefined) body.cost = rule.cost;
    if (!checkOnly && rule.rateLimitCost !== undefined) body.ratelimit_cost = rule.rateLimitCost;
    body.tags = tagsFor(request.route ?? path, rule.tags);
    // The request's usage report is its one row; without reports, the verification is.
    if (reporter !== null) body.record_usage = false;
    const mark: Pending = { stale: false };
    if (hash !== null) pending.set(hash, (pending.get(hash) ?? new Set()).add(mark));
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
      // Keyward down or slow: not the caller's fault. A key verified a moment ago still passes (as Keyward
      // itself answers from its cache while its database is down); any other waits. Keyward refusing our own
      // key: a misconfiguration here.
      if (failure.status === 0 || failure.status >= 500) {
        const last = hash === null ? undefined : store?.get(hash);
        const now = Date.now();
        if (last && !mark.stale && now - vouchedAt(last, now) < staleWindowMs && !expired(last, now))
          return check(last.identity, rule, path, {});
        return deny('SERVICE_UNAVAILABLE', path, 'the key could not be verified; try again shortly', { 'retry-after': '5' });
      }
      return deny('INTERNAL_ERROR', path);
    } finally {
      if (hash !== null) {
        const set = pending.get(hash);
        set?.delete(mark);
        if (set?.size === 0) pending.delete(hash);
      }
    }
    const now = Date.now();
    const headers = rateLimitHeaders(result.ratelimit, now);
    const identity = identityOf(result);
    if (result.valid && identity) {
      // An answer that a change to the key overtook is not kept: it may already be wrong.
      if (store !== null && hash !== null && !mark.stale) {
        const metered = result.ratelimit != null || result.remaining != null;
        store.set(hash, { identity, expiresAt: result.expires_at ? Date.parse(result.expires_at) : null, verifiedAt: now, metered });
      }
      return { ...check(identity, rule, path, headers), ...(checkOnly ? {} : { rule }) };
    }
    const outcome: RequestOutcome = { keyId: identity?.keyId ?? null, code: result.code };
    const unauthenticated = UNAUTHENTICATED[result.code];
    if (unauthenticated || !identity) {
      // No longer a key to answer for while Keyward is down.
      if (hash !== null) store?.delete(hash);
      const refused = deny(unauthenticated ?? 'INVALID_CREDENTIALS', path, undefined, { 'www-authenticate': INVALID_TOKEN });
      return { ...refused, outcome, ...(checkOnly ? {} : { rule }) };
    }
    if (checkOnly) return { ok: true, identity, headers, outcome };
    return { ...refusal(result, rule, path, headers, now), outcome, rule };
  }

  function permit(identity: KeywardIdentity | null, rule: AccessRule, path: string): Decision {
    if (identity) return check(identity, rule, path, {});
    if (keyRequired(rule)) return deny('AUTH_REQUIRED', path, undefined, { 'www-authenticate': REALM });
    return { ok: true, identity: null, headers: {} };
  }

  // Not async: a decision made here without Keyward (a cache hit above all) returns at once, so an adapter
  // goes on in the same turn; only `verify` returns a promise.
  function decide(request: PresentedCredentials, rule: AccessRule, checkOnly: boolean, resolve?: RouteResolver): MaybePromise<Decision> {
    startFeed();
    const path = request.path;
    const key = credentialOf(request);
    if (key === undefined) return permit(null, rule, path);
    const invalid = (): Decision => ({
      ...deny('INVALID_CREDENTIALS', path, undefined, { 'www-authenticate': INVALID_TOKEN }),
      outcome: { keyId: null, code: 'INVALID_FORMAT' },
    });
    if (key.length > MAX_KEY_LENGTH) return invalid();
    // Only keys that verified are kept, so a hit needs no format check: the hot path is one hash and one look-up.
    const hash = store ? hashApiKey(key) : null;
    if (store && hash !== null) {
      const hit = store.get(hash);
      const now = Date.now();
      if (hit && expired(hit, now)) store.delete(hash);
      else if (hit && !hit.metered && now - hit.verifiedAt < cacheLife()) return check(hit.identity, rule, path, {});
    }
    // A malformed key or bad checksum never costs a round trip.
    if (classifyKey(key) === 'invalid') return invalid();
    if (checkOnly || resolve === undefined) return verify(key, hash, rule, request, checkOnly);
    let found: ReturnType<RouteResolver>;
    try {
      found = resolve();
    } catch {
      found = { rule };
    }
    return verify(key, hash, found.rule, found.route === undefined ? request : { ...request, route: found.route }, false);
  }

  return {
    requireApiKey,
    // A throw becomes a rejection, as when `decide` was async.
    authorize(request, rule = {}, resolve) {
      try {
        return decide(request, rule, false, resolve);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    authenticate(request) {
      try {
        return decide(request, {}, true);
      } catch (error) {
        return Promise.reject(error);
      }
    },
    permit,
    live,
    clearCache: () => store?.clear(),
    record(outcome, response) {
      if (reporter === null) return;
      const endpoint = response.endpoint.split('?')[0] ?? response.endpoint;
      const event: RecordedUsageEvent = {
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
        // Epoch ms: the reporter writes it as ISO 8601 when the batch is sent, off the request's path.
        occurred_at: Date.now() - response.responseTimeMs,
        tags: tagsFor(response.route ?? endpoint, response.tags),
      };
      reporter.record(event);
    },
    flush: () => reporter?.flush() ?? Promise.resolve(),
    async close() {
      closed = true;
      const stopping = feed?.close();
      feed = null;
      await Promise.all([stopping, reporter?.close()]);
    },
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
