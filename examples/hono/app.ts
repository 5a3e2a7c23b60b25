// A host API on Hono whose `GET /v1/companies` needs a Keyward key holding `companies:read`.
// Run: npm run build && KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_VERIFY_KEY=kw_… npx tsx examples/hono/app.ts
import { pathToFileURL } from 'node:url';
import { serve } from '@hono/node-server';
import { type KeywardHonoOptions, type KeywardVariables, keywardHono } from '@keyward/sdk/hono';
import { Hono } from 'hono';

const COMPANIES = [
  { id: 'acme', name: 'Acme Corporation' },
  { id: 'globex', name: 'Globex' },
];

export function buildApp(options: KeywardHonoOptions): Hono<{ Variables: KeywardVariables }> {
  const keyward = keywardHono(options);
  const app = new Hono<{ Variables: KeywardVariables }>();
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  // Everything after this line needs a key (unless requireApiKey is false). The global guard finds the route's
  // own guard and verifies once with its rule, spending its cost (a key without the scope spends nothing); a
  // route without a guard of its own spends the default (one unit of rate limit and of quota).
  app.use('*', keyward.authenticate());
  app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (c) => c.json({ data: COMPANIES, caller: c.get('keyward') }));
  return app;
}

export async function listen(options: KeywardHonoOptions, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const app = buildApp(options);
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, (info) => {
      resolve({
        url: `http://127.0.0.1:${info.port}`,
        close: () => new Promise((done, fail) => server.close((error) => (error ? fail(error) : done()))),
      });
    });
  });
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
  process.stdout.write(`companies API (Hono) on ${url}\n`);
}
