import { Type } from '@fastify/type-provider-typebox';
import type { Metrics } from '../../services/metrics.js';
import type { App } from '../types.js';

/** `/metrics`: an operations endpoint like `/healthz`, outside the /v1 authentication scope. */
export function metricsRoutes(app: App, deps: { metrics: Metrics }): void {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['Operations'],
        summary: 'Prometheus metrics',
        description:
          'Prometheus text exposition: verifications by code, verification latency, cache hits and misses, rate-limit decisions, usage rows written and dropped, Redis errors, brute-force blocks, and the Node.js process metrics. Unauthenticated, like `/healthz`: expose it only to your monitoring network.',
        produces: ['text/plain'],
        response: { 200: Type.String({ description: 'Prometheus text format 0.0.4' }) },
      },
    },
    async (_request, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
  );
}
