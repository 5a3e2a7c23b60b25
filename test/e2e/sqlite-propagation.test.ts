import { type ChildProcess, spawn } from 'node:child_process';
import { generateKey } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoServer, startEcho } from '../gateway/echo.js';
import { buildCli, CLI, call, cliEnv, freePort, runCli, startServe, tempFolder } from '../helpers/cli.js';

// Processes sharing one SQLite file (`npm start`'s default) hear of each other's key changes through the change
// log: a key revoked by the CLI, or through `keyward serve` beside `keyward gateway`, is refused by the other
// process within a poll (25 ms), not when its cache entry goes stale (CACHE_TTL_MS, 30 s by default). The bound
// here is generous (2 s) so a busy machine does not fail it; bench/sqlite-propagation.ts measures the delay.

const REFUSED_WITHIN_MS = 2_000;
const SLOW = 90_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true; resolves with the milliseconds it took, or throws past the bound. */
async function within(boundMs: number, probe: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  while (!(await probe())) {
    if (performance.now() - started > boundMs) throw new Error(`not seen within ${boundMs} ms`);
    await sleep(5);
  }
  return performance.now() - started;
}

async function verifyCode(base: string, adminKey: string, key: string): Promise<unknown> {
  const answer = await call(base, 'POST', '/v1/keys/verify', { key: adminKey, body: { key } });
  expect(answer.status).toBe(200);
  return answer.json.code;
}

/** Creates a key on `serve` and verifies it there twice, so that its record is cached in that process. */
async function cachedKey(base: string, adminKey: string): Promise<{ id: string; key: string }> {
  const created = await call(base, 'POST', '/v1/api-keys', { key: adminKey, body: { name: 'propagation' } });
  expect(created.status).toBe(201);
  const key = String(created.json.key);
  expect(await verifyCode(base, adminKey, key)).toBe('VALID');
  expect(await verifyCode(base, adminKey, key)).toBe('VALID');
  return { id: String(created.json.id), key };
}

interface GatewayProcess {
  url: string;
  stop(): Promise<void>;
}

async function startGateway(upstream: string, vars: Record<string, string>, cwd: string): Promise<GatewayProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [CLI, 'gateway', '--upstream', upstream, '--port', String(port)], {
    cwd,
    env: cliEnv({ HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...vars }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  const deadline = Date.now() + 45_000;
  while (!output.includes('Keyward gateway listening on')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`keyward gateway did not start:\n${output}`);
    }
    await sleep(25);
  }
  return { url: `http://127.0.0.1:${port}`, stop };
}

let echo: EchoServer;
beforeAll(async () => {
  await buildCli();
  echo = await startEcho();
}, 120_000);
afterAll(async () => echo?.close());

describe.concurrent('key changes between processes on one SQLite file', () => {
  it(
    '`keyward keys revoke` (the CLI) while `keyward serve` runs: serve refuses the key at once',
    async () => {
      const folder = tempFolder();
      const adminKey = generateKey();
      const vars = { DATABASE_URL: folder.databaseUrl, INITIAL_ADMIN_KEY: adminKey, LOG_LEVEL: 'silent' };
      const server = await startServe(vars, folder.dir);
      try {
        const { id, key } = await cachedKey(server.url, adminKey);
        const revoked = await runCli(['keys', 'revoke', id], vars, folder.dir);
        expect(revoked.stderr).toBe('');
        expect(revoked.code).toBe(0);
        await within(REFUSED_WITHIN_MS, async () => (await verifyCode(server.url, adminKey, key)) === 'REVOKED');
      } finally {
        await server.stop();
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    '`keyward gateway` beside `keyward serve`: a key revoked through serve is refused by the gateway at once',
    async () => {
      const folder = tempFolder();
      const adminKey = generateKey();
      const vars = { DATABASE_URL: folder.databaseUrl, INITIAL_ADMIN_KEY: adminKey, LOG_LEVEL: 'silent' };
      const server = await startServe(vars, folder.dir);
      const gateway = await startGateway(echo.url, { DATABASE_URL: folder.databaseUrl }, folder.dir);
      try {
        const { id, key } = await cachedKey(server.url, adminKey);
        const through = () => call(gateway.url, 'GET', '/anything', { key });
        expect((await through()).status).toBe(200);
        expect((await through()).status).toBe(200); // now cached in the gateway
        expect((await call(server.url, 'POST', `/v1/api-keys/${id}/revoke`, { key: adminKey })).status).toBe(200);
        await within(REFUSED_WITHIN_MS, async () => (await through()).status === 401);
      } finally {
        await gateway.stop();
        await server.stop();
        folder.cleanup();
      }
    },
    SLOW,
  );
});
