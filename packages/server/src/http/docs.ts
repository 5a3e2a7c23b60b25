import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import swaggerUi from '@fastify/swagger-ui';
import type { App } from './types.js';

const require = createRequire(import.meta.url);

const REDOC_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Keyward API — ReDoc</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="/openapi.json"></redoc><script src="/redoc/redoc.standalone.js"></script></body></html>`;

/** `/openapi.json`, Swagger UI at `/docs` and ReDoc at `/redoc`, all served locally (no CDN). */
export async function docsRoutes(app: App): Promise<void> {
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/redoc', { schema: { hide: true } }, async (_request, reply) => reply.type('text/html').send(REDOC_PAGE));
  let bundle: Buffer | undefined;
  app.get('/redoc/redoc.standalone.js', { schema: { hide: true } }, async (_request, reply) => {
    bundle ??= await readFile(require.resolve('redoc/bundles/redoc.standalone.js'));
    return reply.type('application/javascript').header('cache-control', 'public, max-age=86400').send(bundle);
  });
}
