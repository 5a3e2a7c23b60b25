// A host app for bench/sdk.ts: an Express or Fastify API with one route, `GET /v1/companies`, protected (or
// not) the way the SDK documents. Started by bench/sdk.ts as its own process, plain `node`, with the built SDK
// (packages/sdk/dist); prints its URL. HOST_MODE picks the variant:
//   express-auth    keywardExpress: global authenticate() + a route guard needing companies:read
//   express-plain   the same app and route, no authentication
//   express-direct  no middleware: the route calls POST /v1/keys/verify itself with fetch, once per request
//   fastify-auth    keywardFastify registered on the app, the route's config.keyward needing companies:read
//   fastify-plain   the same app and route, no authentication
// KEYWARD_URL and KEYWARD_VERIFY_KEY (a key holding keyward:verify) are read for the auth and direct modes.
// `GET /_bench/state` (outside authentication) says whether the SDK's change feed is live, how many requests
// the route answered, and how many errors the SDK reported (never a key: only the error's code and status).
import express from 'express';
import Fastify from 'fastify';
import { keywardExpress } from '../packages/sdk/dist/express.js';
import { keywardFastify } from '../packages/sdk/dist/fastify.js';
import { createKeywardAuth } from '../packages/sdk/dist/index.js';

const mode = process.env.HOST_MODE ?? '';
const keywardUrl = process.env.KEYWARD_URL ?? '';
const verifyKey = process.env.KEYWARD_VERIFY_KEY ?? '';
const ROUTE = '/v1/companies';
const SCOPES = ['companies:read'];
// The same answer in every mode: only the authentication in front of it differs.
const BODY = {
  data: [
    { id: 'acme', name: 'Acme Corporation' },
    { id: 'globex', name: 'Globex' },
  ],
};

const errors = { count: 0, last: null };
// Requests the route answered: what Keyward's verify calls and usage reports are counted against.
let served = 0;
const onError = (error) => {
  errors.count++;
  errors.last = `${error.code} ${error.status}`;
};
// One core, built here only to read `live()`; the adapters take it as their `auth` (a documented option).
const auth = mode.endsWith('-auth') ? createKeywardAuth({ baseUrl: keywardUrl, apiKey: verifyKey, onError }) : null;
const state = () => ({ live: auth?.live() ?? null, served, errors: errors.count, last_error: errors.last });

/** The direct round trip, as a host without the SDK would write it: one POST /v1/keys/verify per request. */
async function verifyDirectly(authorization) {
  const key = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')?.[1];
  if (key === undefined) return false;
  const response = await fetch(`${keywardUrl}/v1/keys/verify`, {
    method: 'POST',
    headers: { authorization: `Bearer ${verifyKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ key, scopes: SCOPES }),
  });
  const answer = await response.json();
  if (response.status !== 200) throw new Error(`verify answered ${response.status} ${answer?.code ?? ''}`);
  return answer.valid === true;
}

async function startExpress() {
  const app = express();
  app.get('/_bench/state', (_req, res) => {
    res.json(state());
  });
  if (mode === 'express-auth') {
    const keyward = keywardExpress({ auth });
    app.use(keyward.authenticate());
    app.get(ROUTE, keyward({ scopes: SCOPES }), (_req, res) => {
      served++;
      res.json(BODY);
    });
  } else if (mode === 'express-direct') {
    app.get(ROUTE, async (req, res) => {
      let valid;
      try {
        valid = await verifyDirectly(req.headers.authorization);
      } catch (error) {
        onError({ code: error instanceof Error ? error.message : 'error', status: 0 });
        res.status(503).json({ code: 'SERVICE_UNAVAILABLE' });
        return;
      }
      if (!valid) {
        res.status(401).json({ code: 'INVALID_CREDENTIALS' });
        return;
      }
      served++;
      res.json(BODY);
    });
  } else {
    app.get(ROUTE, (_req, res) => {
      served++;
      res.json(BODY);
    });
  }
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return `http://127.0.0.1:${server.address().port}`;
}

async function startFastify() {
  const app = Fastify({ logger: false });
  if (mode === 'fastify-auth') await app.register(keywardFastify({ auth }));
  app.get('/_bench/state', { config: { keyward: false } }, async () => state());
  app.get(ROUTE, { config: { keyward: { scopes: SCOPES } } }, async () => {
    served++;
    return BODY;
  });
  return app.listen({ host: '127.0.0.1', port: 0 });
}

if (!['express-auth', 'express-plain', 'express-direct', 'fastify-auth', 'fastify-plain'].includes(mode)) {
  process.stderr.write(`sdk-host: unknown HOST_MODE "${mode}"\n`);
  process.exit(2);
}
const url = mode.startsWith('express') ? await startExpress() : await startFastify();
process.stdout.write(`${mode} listening on ${url}\n`);

// The benchmark stops the host before Keyward: what is still queued for the usage report is not needed.
for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => process.exit(0));
