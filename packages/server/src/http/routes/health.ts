import { Type } from '@fastify/type-provider-typebox';
import type { HealthService } from '../../services/health.js';
import type { App } from '../types.js';

export function healthRoutes(app: App, deps: { health: HealthService }): void {
  app.get(
    '/healthz',
    { schema: { tags: ['Operations'], summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        tags: ['Operations'],
        summary: 'Readiness: the database answers',
        response: {
          200: Type.Object({ status: Type.String(), database: Type.String() }),
          503: Type.Object({ status: Type.String(), database: Type.String() }),
        },
      },
    },
    async (_request, reply) => {
      const database = await deps.health.database();
      return reply.code(database === 'ok' ? 200 : 503).send({ status: database === 'ok' ? 'ok' : 'unavailable', database });
    },
  );
}
