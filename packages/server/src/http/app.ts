import swagger from '@fastify/swagger';
import { registerAjvFormats, TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import type { Container } from '../container.js';
import { loggerOptions } from '../logger.js';
import { requireAuthentication } from './auth.js';
import { installProblemHandlers } from './problem.js';
import { apiKeyRoutes } from './routes/api-keys.js';
import { auditLogRoutes } from './routes/audit-logs.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { meRoutes } from './routes/me.js';
import { metricsRoutes } from './routes/metrics.js';
import { usageRoutes } from './routes/usage.js';
import { usageEventRoutes } from './routes/usage-events.js';
import { userRoutes } from './routes/users.js';
import { verifyRoutes } from './routes/verify.js';
import { ProblemResponse } from './schemas.js';
import type { App } from './types.js';

registerAjvFormats();

export interface BuildAppOptions {
  /** A pino logger to use instead of one built from the configuration (tests capture log lines with it). */
  loggerInstance?: FastifyBaseLogger;
}

/** Builds the HTTP application from the container: every route, hook and handler is registered here. */
export async function buildApp(container: Container, options: BuildAppOptions = {}): Promise<App> {
  const { config } = container;
  const app: App = Fastify({
    ...(options.loggerInstance ? { loggerInstance: options.loggerInstance } : { logger: loggerOptions(config.logLevel) }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    // Per-request log lines only at debug: they would cost the verify path a measurable share of its speed.
    logController: new LogController({ disableRequestLogging: config.logLevel !== 'debug' && config.logLevel !== 'trace' }),
    routerOptions: { ignoreTrailingSlash: true },
  })
    .setValidatorCompiler(TypeBoxValidatorCompiler)
    .withTypeProvider();

  app.decorateRequest('caller', null);
  installProblemHandlers(app);
  app.addSchema(ProblemResponse);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Keyward',
        version: '0.1.0',
        description:
          'Self-hosted API key service. Authenticate with `Authorization: Bearer <key or JWT>` or `X-API-Key: <key>`. Errors are RFC 9457 problem+json with a stable `code`.',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key or a user JWT' },
          apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
    },
  });
  await docsRoutes(app);
  healthRoutes(app, container);
  metricsRoutes(app, container);

  await app.register(async (v1: App) => {
    requireAuthentication(v1, container.authenticator, container.bruteForce);
    usageRoutes(v1, container);
    usageEventRoutes(v1, container);
    auditLogRoutes(v1, container);
    apiKeyRoutes(v1, container);
    verifyRoutes(v1, container);
    userRoutes(v1, container);
    meRoutes(v1, container);
  });

  return app;
}
