import { Type } from '@fastify/type-provider-typebox';
import type { App } from '../http/types.js';
import type { Metrics } from '../metrics.js';
import type { HealthService } from './health.js';

/** A request no route matched (a 404 from the not-found handler): one series for all of them. */
const UNMATCHED = 'unmatched';

/**
 * `/metrics`: an operations endpoint like `/healthz`, outside the /v1 authentication scope. Registered on the
 * root instance before the /v1 routes, its `onResponse` hook counts every request the app answers.
 */
export function metricsRoutes(app: App, deps: { metrics: Metrics; health?: HealthService }): void {
  const { http } = deps.metrics;
  app.addHook('onResponse', (request, reply, done) => {
    http.record(request.method, request.routeOptions.url ?? UNMATCHED, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'getMetrics',
        tags: ['Operations'],
        summary: 'Prometheus metrics',
        description:
          'Prometheus text exposition: verifications by code, verification latency, cache hits and misses, rate-limit decisions, ' +
          'usage rows written and dropped, Redis errors, brute-force blocks, whether each dependency is up ' +
          '(`keyward_dependency_up{dependency="database|redis|invalidation"}`, probed at each scrape), HTTP requests and their ' +
          'duration by method, route pattern and status (`keyward_http_requests_total`, `keyward_http_request_duration_seconds`), ' +
          'and the Node.js process metrics. Unauthenticated, like `/healthz`: expose it only to your monitoring network.',
        security: [],
        produces: ['text/plain'],
        response: {
          200: Type.String({
            description: 'Prometheus text format 0.0.4',
            examples: [
              '# HELP keyward_verifications_total Key verifications, by verification code\n# TYPE keyward_verifications_total counter\nkeyward_verifications_total{code="VALID"} 4102\n',
            ],
          }),
        },
      },
    },
    async (_request, reply) => {
      // The dependency gauges say what holds now, not at the last change noticed.
      await deps.health?.check();
      return reply.type(deps.metrics.contentType).send(await deps.metrics.render());
    },
  );
}
