import type { IncomingHttpHeaders } from 'node:http';
import replyFrom from '@fastify/reply-from';
import { hashApiKey, rateLimitHeaders as rateLimitHeadersOf, secondsUntil, UNAUTHENTICATED_CODES } from '@keyward/sdk';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { closeConnectionsOnceIdle } from '../app.js';
import type { Caller } from '../callers/principal.js';
import { redactUrl } from '../config.js';
import type { Container } from '../container.js';
import type { ApiKey, RateLimitState, VerifyCode } from '../domain.js';
import { ProblemError } from '../errors.js';
import { credentialOf, WWW_AUTHENTICATE } from '../http/auth.js';
import { installProblemHandlers, PROBLEM_SERVER_OPTIONS, sendProblem, toProblemError } from '../http/problem.js';
import { REQUEST_ID_HEADER } from '../http/request-id.js';
import { logController, loggerOptions } from '../logger.js';
import type { VerifyResult } from '../verification/verifier.js';
import { DEFAULT_RULES, type GatewayRules, type RouteAccess, requestTarget, ruleFor } from './rules.js';

export interface GatewayOptions {
  /** The API behind the gateway, `http(s)://host[:port][/base/path]` (see {@link parseUpstream}). */
  upstream: string;
  /** Route rules; without them every request needs a key (or none, with REQUIRE_API_KEY=false). */
  rules?: GatewayRules;
  /** How long the upstream may take to send its response headers before the client gets 504 (default 60 s). */
  headersTimeoutMs?: number;
  /** A pino logger to use instead of one built from the configuration (tests capture log lines with it). */
  loggerInstance?: FastifyBaseLogger;
}

/**
 * Checks an `--upstream` value and returns it as the base every request path is appended to (always ending
 * in `/`, so `http://api:9000/v2` forwards `/users` to `/v2/users`). Throws an Error saying what is wrong.
 */
export function parseUpstream(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`expected an http:// or https:// URL (got "${redactUrl(value)}")`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`expected an http:// or https:// URL (got "${redactUrl(value)}")`);
  }
  if (url.username !== '' || url.password !== '') throw new Error('the upstream URL must not carry credentials');
  if (url.search !== '' || url.hash !== '') throw new Error('the upstream URL must not have a query string or fragment');
  if (!url.pathname.endsWith('/')) url.pathname = `${url.pathname}/`;
  return url.href;
}

/** Headers that carry the caller's credential or Keyward's identity: never forwarded as the client sent them. */
const KEY_HEADERS = ['authorization', 'x-api-key'];
const IDENTITY_PREFIX = 'x-keyward-';

const INVALID_TOKEN = 'Bearer realm="keyward", error="invalid_token"';

/** What the gateway learned about a request before forwarding it. */
interface Passage {
  /** The normalised path forwarded upstream (and recorded as the usage row's endpoint). */
  path: string;
  /** The verification outcome when a key was presented and checked; no usage row without one. */
  outcome: VerifyCode | null;
  keyId: string | null;
  /** The key the request is forwarded as; `null` for an anonymous request. */
  key: ApiKey | null;
  /** The matched rule's path pattern, for the usage row's `route:` tag. */
  route?: string | undefined;
}

/** `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft), exactly as the SDK middleware sends them. */
function rateLimitHeaders(state: RateLimitState | undefined, now: number): Record<string, string> {
  if (state === undefined) return {};
  const { limit, remaining, reset, windowSeconds } = state;
  return rateLimitHeadersOf({ limit, remaining, reset, window_seconds: windowSeconds }, now);
}

function joined(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1; the list Go's httputil.ReverseProxy uses, plus `Expect`): they describe
 * one connection, not the message, so they are dropped in both directions, with every header `Connection`
 * names. `Expect: 100-continue` has already been answered by Node (and undici refuses to send it);
 * `Proxy-Authorization` is a credential for a proxy, not for the upstream.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

/** `headers` without its hop-by-hop headers; `connection` is the `Connection` value naming the others. */
function endToEnd<T extends Record<string, unknown>>(headers: T, connection: string | string[] | undefined): T {
  const named = new Set(
    (joined(connection) ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter((name) => name !== ''),
  );
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!HOP_BY_HOP.has(lower) && !named.has(lower)) out[name] = value;
  }
  return out as T;
}

/** Client-supplied headers that claim where the request came from (besides X-Forwarded-For). */
const CLIENT_ADDRESS_HEADERS = ['x-real-ip', 'forwarded'];

/**
 * The headers sent upstream: the client's, minus hop-by-hop headers, its credential and any `X-Keyward-*` it
 * made up, plus the verified identity and the usual `X-Forwarded-*`.
 *
 * `X-Forwarded-For` is extended only when Fastify believed the one received, i.e. TRUST_PROXY trusts the
 * peer that sent it (`request.ips` then holds more than the peer): the peer is appended, and `X-Real-IP` /
 * `Forwarded` pass as that proxy set them. Otherwise nothing vouches for those headers (a client can write
 * any): `X-Forwarded-For` is replaced by the peer's address, `X-Real-IP` and `Forwarded` are removed.
 * `X-Forwarded-Proto` and `X-Forwarded-Host` are always the gateway's own reading (Fastify's, under the same
 * trust rule).
 */
function upstreamHeaders(request: FastifyRequest, headers: IncomingHttpHeaders, key: ApiKey | null): IncomingHttpHeaders {
  const trusted = (request.ips?.length ?? 0) > 1;
  const out: IncomingHttpHeaders = {};
  // reply-from has already removed the Connection header (and what it names) from `headers`: read the client's.
  for (const [name, value] of Object.entries(endToEnd(headers, request.headers.connection))) {
    if (KEY_HEADERS.includes(name) || name.startsWith(IDENTITY_PREFIX)) continue;
    if (!trusted && CLIENT_ADDRESS_HEADERS.includes(name)) continue;
    out[name] = value;
  }
  const peer = request.raw.socket.remoteAddress ?? request.ip;
  const forwardedFor = trusted ? joined(headers['x-forwarded-for']) : undefined;
  out['x-forwarded-for'] = forwardedFor ? `${forwardedFor}, ${peer}` : peer;
  out['x-forwarded-proto'] = request.protocol;
  // The request's id (the client's when it was acceptable) goes upstream, so one id finds it in both logs.
  out[REQUEST_ID_HEADER] = request.id;
  if (request.host) out['x-forwarded-host'] = request.host;
  if (key !== null) {
    out['x-keyward-key-id'] = key.id;
    if (key.userId !== null) out['x-keyward-user-id'] = key.userId;
    // Scopes never contain commas or spaces (see the Scope schema): a plain comma-separated list.
    out['x-keyward-scopes'] = key.scopes.join(',');
  }
  return out;
}

/**
 * The upstream URL a normalised path (see {@link requestTarget}) is forwarded to: under the base, whose path
 * it keeps as a prefix (a path starting with `//` cannot name another host). `null` if it would leave the
 * base, which a normalised path cannot do: a check kept where the URL is made.
 */
function upstreamUrl(base: string, path: string): string | null {
  const url = new URL(`.${path}`, base).href;
  return url.startsWith(base) ? url : null;
}

/**
 * The gateway (`keyward gateway`): a reverse proxy that verifies the presented key with the container's
 * verifier (same cache, invalidation, rate limits and quotas as `keyward serve`), applies the route rules,
 * records usage and forwards the request upstream without the key. The container is the caller's to close.
 */
export async function buildGateway(container: Container, options: GatewayOptions): Promise<FastifyInstance> {
  const { config, verifier, usage, bruteForce, keyCache, metrics } = container;
  const rules = options.rules ?? DEFAULT_RULES;
  const base = parseUpstream(options.upstream);
  const now = Date.now;
  const passages = new WeakMap<FastifyRequest, Passage>();

  const app = Fastify({
    ...(options.loggerInstance ? { loggerInstance: options.loggerInstance } : { logger: loggerOptions(config.logLevel) }),
    trustProxy: config.trustProxy,
    logController: logController(config.logLevel),
    // Request ids, and a URL the router cannot decode (`/%zz`) or headers over Node's limit, refused before any
    // hook: as problem+json, like every refusal.
    ...PROBLEM_SERVER_OPTIONS,
  });
  installProblemHandlers(app);
  closeConnectionsOnceIdle(app);
  // Bodies are streamed upstream as they arrive, whatever their type: nothing is parsed, buffered or capped here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  await app.register(replyFrom, {
    base,
    // One info line per request would cost the hot path; errors are still logged (without headers).
    disableRequestLogging: true,
    // Only the wait for headers is bounded (as nginx's proxy_read_timeout, 60 s): a long stream may go on.
    undici: { headersTimeout: options.headersTimeoutMs ?? 60_000 },
  });

  /** Lets a verified request through (with its rate-limit headers), or refuses it as the verify answer says. */
  async function admit(
    request: FastifyRequest,
    reply: FastifyReply,
    passage: Passage,
    access: RouteAccess,
    verified: VerifyResult,
  ): Promise<void> {
    if (!verified.ok) throw toProblemError(verified);
    metrics.verifyDuration.observe(reply.elapsedTime / 1000);
    const outcome = verified.value;
    passage.outcome = outcome.code;
    passage.keyId = outcome.key?.id ?? null;
    const limits = rateLimitHeaders(outcome.ratelimit, now());

    switch (outcome.code) {
      case 'VALID':
        passage.key = outcome.key;
        reply.headers(limits);
        return;
      case 'INVALID_FORMAT':
      case 'NOT_FOUND':
      case 'EXPIRED':
      case 'DISABLED':
      case 'REVOKED':
        await bruteForce.fail(request.ip);
        throw new ProblemError(UNAUTHENTICATED_CODES[outcome.code], undefined, undefined, { 'www-authenticate': INVALID_TOKEN });
      case 'INSUFFICIENT_SCOPES':
        throw new ProblemError('FORBIDDEN', `this key lacks a scope this route requires (${access.scopes.join(', ')})`, undefined, limits);
      case 'RATE_LIMITED':
        throw new ProblemError('RATE_LIMITED', 'this key is over its rate limit', undefined, {
          ...limits,
          'retry-after': String(secondsUntil(outcome.ratelimit?.reset ?? 0, now(), 1, outcome.ratelimit?.windowSeconds)),
        });
      case 'USAGE_EXCEEDED':
        // Retry-After when the quota refills; a quota that never does has none to give.
        throw new ProblemError(
          'USAGE_EXCEEDED',
          'this key has used up its quota',
          undefined,
          outcome.quotaReset === undefined ? limits : { ...limits, 'retry-after': String(secondsUntil(outcome.quotaReset, now(), 1)) },
        );
    }
  }

  app.addHook('onRequest', async (request, reply) => {
    const target = requestTarget(request.url);
    if (target === null) throw new ProblemError('INVALID_REQUEST', 'the request path is not valid');
    const passage: Passage = { path: target.path, outcome: null, keyId: null, key: null };
    passages.set(request, passage);
    const access = ruleFor(rules, request.method, target.segments);
    passage.route = access.route;
    if (access.public) return;

    const credential = credentialOf(request);
    if (credential === undefined || credential === '') {
      // A route that names scopes cannot be satisfied anonymously, whatever REQUIRE_API_KEY says.
      if (!config.requireApiKey && access.scopes.length === 0) return;
      throw new ProblemError('AUTH_REQUIRED', undefined, undefined, { 'www-authenticate': WWW_AUTHENTICATE });
    }
    // A blocked (or waiting) address is still served at once the keys this instance holds (real keys, seen
    // before): behind one shared address, someone else's guesses must not hold up real users, and guessing
    // presents keys no one has.
    const blocked = await bruteForce.check(request.ip, undefined, () => keyCache.holds(hashApiKey(credential)));
    if (blocked.blocked) {
      throw new ProblemError('RATE_LIMITED', 'too many failed authentications from this address; try again later', undefined, {
        'retry-after': String(blocked.retryAfterSeconds),
      });
    }
    const caller: Caller = { principal: { kind: 'system', name: 'gateway' }, ip: request.ip };
    // A look-up (a key not in the cache) is in flight until its failure, if any, has been counted.
    let end: (() => void) | undefined;
    const verifying = verifier.verify(caller, { key: credential, scopes: access.scopes, cost: access.cost }, () => {
      end = bruteForce.track(request.ip);
    });
    try {
      await admit(request, reply, passage, access, await verifying);
    } finally {
      end?.();
    }
  });

  app.all('/*', async (request, reply) => {
    const passage = passages.get(request);
    if (passage === undefined) throw new ProblemError('INTERNAL_ERROR');
    const target = upstreamUrl(base, passage.path);
    if (target === null) throw new ProblemError('INVALID_REQUEST', 'the request path is not valid');
    // reply-from refuses a source path containing `/..` even where that is no dot segment (`/notes/...`,
    // `/files/..hidden`), and this path is already normalised. So the whole URL is this request's upstream,
    // with an empty query, and the source `?` resolves to exactly that URL (reply-from's own check that the
    // result stays under the upstream then holds trivially); reply-from adds the client's query string.
    reply.from('?', {
      getUpstream: () => `${target}?`,
      rewriteRequestHeaders: (_raw, headers) => upstreamHeaders(request, headers, passage.key),
      // The answer carries this request's id, whatever id the upstream echoed.
      rewriteHeaders: (headers) => ({ ...endToEnd(headers, headers.connection), [REQUEST_ID_HEADER]: request.id }),
      // A gateway passes the upstream's answers on as they are: no retries, not even of a GET's 503.
      retryDelay: () => null,
      onError: (_raw, { error }) => {
        const timedOut = (error as { statusCode?: number }).statusCode === 504;
        // 5xx bodies never carry internals: the log has the cause, the client a stable code.
        sendProblem(
          reply,
          timedOut ? 'GATEWAY_TIMEOUT' : 'BAD_GATEWAY',
          timedOut ? 'the upstream service did not answer in time' : 'the upstream service could not be reached',
        );
      },
    });
    return reply;
  });

  app.addHook('onResponse', async (request, reply) => {
    const passage = passages.get(request);
    if (passage?.outcome == null) return;
    // Never the key: the key's id, what happened, and where. The query string is left out (keys end up there).
    usage.record({
      apiKeyId: passage.keyId,
      outcome: passage.outcome,
      endpoint: passage.path,
      method: request.method,
      statusCode: reply.statusCode,
      ipAddress: request.ip,
      userAgent: request.headers['user-agent'] ?? null,
      responseTimeMs: reply.elapsedTime,
      tags: passage.route === undefined ? null : [`route:${passage.route}`],
    });
  });

  return app;
}
