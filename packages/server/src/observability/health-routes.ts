import { Type } from '@fastify/type-provider-typebox';
import { ref } from '../http/schemas.js';
import type { App } from '../http/types.js';
import type { HealthService } from './health.js';

const checkState = (description: string) =>
  Type.Union([Type.Literal('ok'), Type.Literal('down'), Type.Literal('disabled')], { description });

export const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('down')], {
      description: '`ok`; `degraded`: serving without Redis or without cache invalidation; `down`: the database cannot be reached',
    }),
    checks: Type.Object({
      database: checkState('Whether the database answers a trivial query within `DATABASE_TIMEOUT_MS`'),
      redis: checkState('Whether Redis answers a PING; `disabled` without `REDIS_URL`'),
      invalidation: checkState('Whether cache invalidation messages from other instances are arriving'),
    }),
  },
  { $id: 'Readiness', description: 'Whether Keyward can serve, and the state of each dependency' },
);

const READY_EXAMPLE = { status: 'ok', checks: { database: 'ok', redis: 'disabled', invalidation: 'ok' } };
const DOWN_EXAMPLE = { status: 'down', checks: { database: 'down', redis: 'disabled', invalidation: 'ok' } };

export function healthRoutes(app: App, deps: { health: HealthService }): void {
  // The app serving /readyz logs each dependency's state changes (and probes between checks): the CLI's
  // one-shot commands, which build the same services, write nothing of the kind.
  deps.health.watch(app.log);
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'getLiveness',
        tags: ['Operations'],
        summary: 'Liveness',
        description: 'Answers while the process serves HTTP; it checks no dependency (see `/readyz`).',
        security: [],
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'The process is up', examples: [{ status: 'ok' }] }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        tags: ['Operations'],
        summary: 'Readiness: each dependency, and whether Keyward can serve',
        description:
          'Probes the database, Redis and the cache invalidation channel, each `ok` or `down` (`disabled`: not configured). ' +
          'Answers 503 only when the database cannot be reached: then only cached keys verify. With Redis or invalidation ' +
          'down Keyward still serves (`degraded`, 200): rate limits follow `RATE_LIMIT_FAIL_MODE`, and verifications read the ' +
          'database instead of trusting the cache. A probe waits at most `DATABASE_TIMEOUT_MS`.',
        security: [],
        response: {
          200: ref(Readiness, { description: 'Serving (`ok` or `degraded`)', examples: [READY_EXAMPLE] }),
          503: ref(Readiness, { description: 'The database cannot be reached', examples: [DOWN_EXAMPLE] }),
        },
      },
    },
    async (_request, reply) => {
      const readiness = await deps.health.check();
      return reply.code(readiness.status === 'down' ? 503 : 200).send(readiness);
    },
  );
}
