// A host API on Fastify whose `GET /v1/companies` needs a Keyward key holding `companies:read`.
// Run: npm run build && KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_VERIFY_KEY=kw_… npx tsx examples/fastify/app.ts
import { pathToFileURL } from 'node:url';
import { type KeywardFastifyOptions, keywardFastify } from '@keyward/sdk/fastify';
import Fastify, { type FastifyInstance } from 'fastify';

const COMPANIES = [
  { id: 'acme', name: 'Acme Corporation' },
  { id: 'globex', name: 'Globex' },
];

export async function buildApp(keyward: KeywardFastifyOptions): Promise<FastifyInstance> {
  const app = Fastify();
  // Registered on the root instance: every route below is checked, by its `config.keyward` rule.
  await app.register(keywardFastify(keyward));
  app.get('/healthz', { config: { keyward: false } }, async () => ({ status: 'ok' }));
  app.get('/v1/companies', { config: { keyward: { scopes: ['companies:read'] } } }, async (request) => ({
    data: COMPANIES,
    caller: request.keyward,
  }));
  return app;
}

export async function listen(keyward: KeywardFastifyOptions, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const app = await buildApp(keyward);
  const url = await app.listen({ port, host: '127.0.0.1' });
  return { url, close: () => app.close() };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { url } = await listen(
    {
      baseUrl: process.env.KEYWARD_URL ?? 'http://127.0.0.1:8080',
      apiKey: process.env.KEYWARD_VERIFY_KEY ?? '',
      requireApiKey: process.env.REQUIRE_API_KEY !== 'false',
    },
    Number(process.env.PORT ?? 3000),
  );
  process.stdout.write(`companies API (Fastify) on ${url}\n`);
}
