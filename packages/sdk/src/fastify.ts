import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import {
  type AccessRule,
  assertTags,
  createKeywardAuth,
  type Decision,
  isPending,
  type KeywardAuth,
  type KeywardAuthOptions,
  type KeywardIdentity,
  type RequestOutcome,
} from './middleware.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified caller; `null` for an anonymous request (when keys are not required) or a public route. */
    keyward: KeywardIdentity | null;
  }
  interface FastifyContextConfig {
    /** This route's Keyward rule (scopes, admin, requireApiKey, cost), or `false` for a public route. */
    keyward?: AccessRule | false;
  }
}

/** What a request's key came to, kept for its usage report (with the reply and address, see below). */
interface Seen {
  outcome: RequestOutcome;
  reply: FastifyReply;
  ip: string;
  route: string | undefined;
  tags: string[] | undefined;
}

export interface KeywardFastifyOptions extends KeywardAuthOptions {
  /** A core built elsewhere (shared cache), instead of the options above. */
  auth?: KeywardAuth;
}

/**
 * A Fastify plugin that authenticates every request of the instance it is registered on (not encapsulated)
 * with Keyward, before the body is read, sets `request.keyward`, and enforces each route's
 * `config.keyward` rule, verifying once per request with that rule (so its `cost` is what the quota is
 * charged, and a key refused for its scopes spends nothing); a route without a rule takes the default one
 * (1 unit of rate limit, 1 of quota). Failures answer problem+json as Keyward does (401 with
 * `WWW-Authenticate`, 403, 429). Each request that presented a key is one usage row in Keyward, reported once
 * answered and tagged `route:<pattern>` (unless `usage: false`); closing the app sends what is queued and
 * stops the change feed.
 *
 * @example
 * await app.register(keywardFastify({ baseUrl: KEYWARD_URL, apiKey: KEYWARD_VERIFY_KEY, tags: ['region:eu'] }));
 * app.get('/v1/companies', { config: { keyward: { scopes: ['companies:read'], tags: ['team:crm'] } } }, async (request) => {
 *   return { companies: [], caller: request.keyward?.keyId };
 * });
 * app.get('/healthz', { config: { keyward: false } }, async () => ({ status: 'ok' }));
 */
export function keywardFastify(options: KeywardFastifyOptions): FastifyPluginAsync {
  const auth = options.auth ?? createKeywardAuth(options);
  const plugin: FastifyPluginAsync = async (app) => {
    // What each request's key came to, for the usage report once the response is sent or the client went
    // away first (onResponse does not run then); taken out when reported, so a request is reported once.
    // (The reply and address are kept too: onRequestAbort is given the request alone, and a closed socket has
    // no address.) Kept on the request under a symbol of this plugin, declared to Fastify so every request has
    // the same shape: cheaper than a WeakMap entry per request.
    const seenKey = Symbol('keyward request outcome');
    app.decorateRequest(seenKey, null);
    const slot = (request: FastifyRequest) => request as unknown as Record<symbol, Seen | null>;
    const report = (request: FastifyRequest, answered: boolean): void => {
      const entry = slot(request)[seenKey];
      if (!entry) return;
      slot(request)[seenKey] = null;
      auth.record(entry.outcome, {
        endpoint: request.url,
        route: entry.route,
        tags: entry.tags,
        method: request.method,
        statusCode: answered ? entry.reply.statusCode : null,
        ipAddress: entry.ip,
        userAgent: request.headers['user-agent'],
        responseTimeMs: entry.reply.elapsedTime,
      });
    };
    app.decorateRequest('keyward', null);
    // Callback hooks, not async ones: no promise per request.
    app.addHook('onResponse', (request, _reply, done) => {
      report(request, true);
      done();
    });
    app.addHook('onRequestAbort', (request, done) => {
      report(request, false);
      done();
    });
    app.addHook('onClose', async () => auth.close());
    // A route's tags are checked as it is declared: a tag Keyward would refuse fails at start-up, not per request.
    app.addHook('onRoute', (route) => {
      const rule = (route.config as { keyward?: AccessRule | false } | undefined)?.keyward;
      if (rule) assertTags(rule.tags, `keywardFastify (${route.method} ${route.url})`);
    });
    // A callback hook: a cached key is decided at once, and the request goes on in the same turn.
    app.addHook('onRequest', (request, reply, done) => {
      // Read once: Fastify builds a new object for each read.
      const routeOptions = request.routeOptions;
      const rule = routeOptions.config.keyward;
      if (rule === false) return done();
      const header = request.headers['x-api-key'];
      // The route's pattern (`/v1/companies/:id`); none for a request no route matched (a 404).
      const route = routeOptions.url;
      const apply = (decision: Decision): void => {
        if (decision.outcome) slot(request)[seenKey] = { outcome: decision.outcome, reply, ip: request.ip, route, tags: rule?.tags };
        for (const _ in decision.headers) {
          reply.headers(decision.headers);
          break;
        }
        if (decision.ok) {
          request.keyward = decision.identity;
          done();
          return;
        }
        // Answered here: `done` is not called (Fastify's rule for a callback hook that replies).
        reply.code(decision.status).type('application/problem+json').send(decision.problem);
      };
      const decided = auth.authorize(
        {
          authorization: request.headers.authorization,
          apiKey: Array.isArray(header) ? header.join(', ') : header,
          path: request.url,
          route,
        },
        rule ?? {},
      );
      if (isPending(decided)) decided.then(apply, done);
      else apply(decided);
    });
  };
  // What fastify-plugin does: the hook then applies to the routes of the instance that registered the plugin.
  // Set by hand so the SDK needs no Fastify package at run time.
  Object.assign(plugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: '@keyward/sdk' });
  return plugin;
}

export type { AccessRule, KeywardAuthOptions, KeywardIdentity } from './middleware.js';
