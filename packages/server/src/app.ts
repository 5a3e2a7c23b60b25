import type { Socket } from 'node:net';
import swagger from '@fastify/swagger';
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import { hashApiKey } from '@keyward/sdk';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Bindings, ChildLoggerOptions } from 'fastify/types/logger.js';
import { looksLikeJwt } from './callers/authenticator.js';
import type { Container } from './container.js';
import { requireAuthentication } from './http/auth.js';
import { logController, loggerOptions } from './logger.js';
import './http/formats.js';
import { AUDIT_SCHEMAS, auditLogRoutes } from './audit/routes.js';
import { EVENT_PAYLOAD_SCHEMAS, OPENAPI_WEBHOOKS } from './events/payloads.js';
import { WEBHOOK_SCHEMAS, WEBHOOKS_TAG, webhookRoutes } from './events/routes.js';
import { dashboardRoutes } from './http/dashboard.js';
import { docsRoutes } from './http/docs.js';
import { installInputGuards } from './http/input-guards.js';
import { documentedSchema, finishOpenapiDocument, OPENAPI_HEADERS, OPENAPI_TAGS } from './http/openapi.js';
import { installProblemHandlers, PROBLEM_SERVER_OPTIONS } from './http/problem.js';
import { HTTP_SCHEMAS } from './http/schemas.js';
import { type App, SECURED } from './http/types.js';
import { importRoutes } from './keys/import-routes.js';
import { meRoutes } from './keys/me-routes.js';
import { apiKeyRoutes } from './keys/routes.js';
import { LEAKS_TAG, leakRoutes, leakScanRoutes } from './leaks/routes.js';
import { healthRoutes, Readiness } from './observability/health-routes.js';
import { metricsRoutes } from './observability/metrics-routes.js';
import { UsageEvent, usageEventRoutes } from './usage/events-routes.js';
import { USAGE_SCHEMAS, usageRoutes } from './usage/routes.js';
import { usageSeriesRoutes } from './usage/series-routes.js';
import { USER_SCHEMAS, userRoutes } from './users/routes.js';
import { keyChangesRoutes } from './verification/changes-routes.js';
import { VerifyKeyResponse, verifyRoutes } from './verification/routes.js';

/**
 * A request's logger, made on first use. Request lines are off unless LOG_LEVEL is debug or trace, so most
 * requests log nothing, yet Fastify's default builds a pino child for each one (bindings serialised,
 * redaction set up): a few microseconds on every verification. The lines written are the same.
 */
class LazyChildLogger implements FastifyBaseLogger {
  #child: FastifyBaseLogger | null = null;
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Bindings;
  readonly #options: ChildLoggerOptions;
  constructor(parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }
  #real(): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options);
    return this.#child;
  }
  get level(): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level;
  }
  set level(level: string) {
    this.#real().level = level;
  }
  fatal(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.fatal, real, args);
  }
  error(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.error, real, args);
  }
  warn(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.warn, real, args);
  }
  info(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.info, real, args);
  }
  debug(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.debug, real, args);
  }
  trace(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.trace, real, args);
  }
  silent(...args: unknown[]): void {
    const real = this.#real();
    Reflect.apply(real.silent, real, args);
  }
  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#real().child(bindings, options);
  }
}

export interface BuildAppOptions {
  /** A pino logger to use instead of one built from the configuration (tests capture log lines with it). */
  loggerInstance?: FastifyBaseLogger;
}

/** The schemas that are named components of the OpenAPI document, from every wing: registered once, on the root. */
const SHARED_SCHEMAS = [
  ...HTTP_SCHEMAS,
  ...USER_SCHEMAS,
  ...AUDIT_SCHEMAS,
  ...USAGE_SCHEMAS,
  UsageEvent,
  VerifyKeyResponse,
  Readiness,
  ...WEBHOOK_SCHEMAS,
  ...EVENT_PAYLOAD_SCHEMAS,
];

/** While closing, how often connections that have gone idle are closed. */
const IDLE_SWEEP_MS = 100;

/**
 * A stop (SIGTERM) closes each keep-alive connection as soon as it has nothing in flight. The server stops only
 * once every connection has ended, and Node closes the idle ones only at the moment the stop begins: a client's
 * connection answering a request then would stay open for the keep-alive timeout (72 s), and the buffered usage
 * rows and `last_used_at` values, written after the server has stopped, would wait as long (past any orchestrator's
 * grace period). A connection that has sent nothing yet is closed too: Node counts it as busy until its headers
 * timeout (60 s), and clients open such spares (Node's fetch does after an aborted request, such as a closed
 * `GET /v1/keys/changes` stream). Nothing is added per request, only a set entry per connection.
 */
export function closeConnectionsOnceIdle(app: FastifyInstance): void {
  const connections = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
  });
  app.addHook('preClose', (done) => {
    const sweep = setInterval(() => {
      app.server.closeIdleConnections();
      for (const socket of connections) if (socket.bytesRead === 0) socket.destroy();
    }, IDLE_SWEEP_MS);
    sweep.unref();
    app.server.once('close', () => clearInterval(sweep));
    done();
  });
}

/** Builds the HTTP application from the container: every route, hook and handler is registered here. */
export async function buildApp(container: Container, options: BuildAppOptions = {}): Promise<App> {
  const { config } = container;
  const app: App = Fastify({
    ...(options.loggerInstance ? { loggerInstance: options.loggerInstance } : { logger: loggerOptions(config.logLevel) }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    logController: logController(config.logLevel),
    // Request ids (X-Request-Id), and what the router and Node refuse before any hook, as problem+json.
    ...PROBLEM_SERVER_OPTIONS,
    routerOptions: { ignoreTrailingSlash: true },
    childLoggerFactory: (logger, bindings, options) => new LazyChildLogger(logger, bindings, options),
  })
    .setValidatorCompiler(TypeBoxValidatorCompiler)
    .withTypeProvider();

  app.decorateRequest('caller', null);
  closeConnectionsOnceIdle(app);
  installProblemHandlers(app);
  installInputGuards(app);
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Keyward',
        version: '0.1.0',
        description:
          'Self-hosted API key service. Authenticate with `Authorization: Bearer <key or JWT>` or `X-API-Key: <key>`. Errors are RFC 9457 problem+json with a stable `code`.',
        license: { name: 'MIT', identifier: 'MIT' },
        contact: { name: 'Keyward', url: 'https://keyward.dev' },
      },
      servers: [{ url: 'http://127.0.0.1:8080', description: 'A Keyward started with the defaults (`npx keyward serve`)' }],
      tags: [...OPENAPI_TAGS, LEAKS_TAG, WEBHOOKS_TAG],
      // What Keyward sends to a webhook's URL, one entry per event type (OpenAPI 3.1).
      webhooks: OPENAPI_WEBHOOKS,
      security: SECURED,
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key or a user JWT' },
          apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'An API key' },
        },
        headers: OPENAPI_HEADERS,
      },
    },
    // Components are named by their `$id` (`#/components/schemas/ApiKey`), not `def-0`.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transform: ({ schema, url }) => ({ schema: documentedSchema(schema), url }),
    transformObject: (document) => {
      if (!('openapiObject' in document)) return document.swaggerObject;
      return finishOpenapiDocument(document.openapiObject);
    },
  });
  await docsRoutes(app);
  healthRoutes(app, container);
  metricsRoutes(app, container);
  // No credential: outside the authenticated /v1 scope below.
  await leakRoutes(app, container);
  if (config.dashboard) await dashboardRoutes(app, config.dashboardDir ? { root: config.dashboardDir } : {});

  await app.register(async (v1: App) => {
    requireAuthentication(v1, container.authenticator, {
      guard: container.bruteForce,
      known: (credential) => looksLikeJwt(credential) || container.keyCache.holds(hashApiKey(credential)),
    });
    usageRoutes(v1, container);
    usageSeriesRoutes(v1, container);
    usageEventRoutes(v1, container);
    auditLogRoutes(v1, container);
    apiKeyRoutes(v1, container);
    importRoutes(v1, container);
    verifyRoutes(v1, container);
    keyChangesRoutes(v1, container);
    userRoutes(v1, container);
    meRoutes(v1, container);
    webhookRoutes(v1, container);
    leakScanRoutes(v1, container);
  });

  return app;
}
