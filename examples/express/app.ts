// A host API on Express whose `GET /v1/companies` needs a Keyward key holding `companies:read`.
// Run: npm run build && KEYWARD_URL=http://127.0.0.1:8080 KEYWARD_VERIFY_KEY=kw_… npx tsx examples/express/app.ts
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { type KeywardExpressOptions, keywardExpress } from '@keyward/sdk/express';
import express, { type Express } from 'express';

const COMPANIES = [
  { id: 'acme', name: 'Acme Corporation' },
  { id: 'globex', name: 'Globex' },
];

export function buildApp(options: KeywardExpressOptions): Express {
  const keyward = keywardExpress(options);
  const app = express();
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Everything after this line needs a key (unless requireApiKey is false). The global guard finds the route's
  // own guard and verifies once with its rule, spending its cost (a key without the scope spends nothing); a
  // route without a guard of its own spends the default (one unit of rate limit and of quota).
  app.use(keyward.authenticate());
  app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (req, res) => {
    res.json({ data: COMPANIES, caller: req.keyward });
  });
  return app;
}

export async function listen(options: KeywardExpressOptions, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const server = buildApp(options).listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
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
  process.stdout.write(`companies API (Express) on ${url}\n`);
}
