import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, CLI, call, cliEnv, freePort, runCli, tempFolder } from '../helpers/cli.js';
import { type Echoed, type EchoServer, startEcho } from './echo.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface GatewayProcess {
  url: string;
  stdout(): string;
  stop(): Promise<number | null>;
}

/** Starts the built `keyward gateway` on a free port and resolves once it listens. */
async function startGateway(args: string[], vars: Record<string, string>, cwd: string): Promise<GatewayProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [CLI, 'gateway', ...args, '--port', String(port)], {
    cwd,
    env: cliEnv({ HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...vars }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  const deadline = Date.now() + 45_000;
  while (!stdout.includes('Keyward gateway listening on')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`keyward gateway did not start (exit ${child.exitCode}):\n${stdout}\n${stderr}`);
    }
    await sleep(25);
  }
  return { url: `http://127.0.0.1:${port}`, stdout: () => stdout, stop };
}

let echo: EchoServer;
beforeAll(async () => {
  await buildCli();
  echo = await startEcho();
}, 120_000);
afterAll(async () => echo?.close());

const SLOW = 90_000;

describe.concurrent('keyward gateway (built CLI)', () => {
  it(
    'migrates without creating an admin key, proxies with the rules file, and flushes usage on SIGTERM',
    async () => {
      const folder = tempFolder();
      const rules = join(folder.dir, 'gateway.json');
      writeFileSync(
        rules,
        JSON.stringify({
          routes: [
            { path: '/public/**', public: true },
            { path: '/admin/**', scopes: ['admin:all'] },
          ],
        }),
      );
      const vars = { DATABASE_URL: folder.databaseUrl };
      const gateway = await startGateway(['--upstream', `${echo.url}/api`, '--config', rules], vars, folder.dir);
      try {
        expect(gateway.stdout()).toContain(`forwarding to ${echo.url}/api`);
        expect(gateway.stdout()).not.toContain('Save it now');
        const db = new Database(join(folder.dir, 'keyward.db'), { readonly: true });
        expect(db.prepare('select count(*) as n from api_keys').get()).toEqual({ n: 0 });
        db.close();

        // The key comes from the CLI (as it would from `keyward serve`), in the database the gateway shares.
        const created = await runCli(['admin', 'create', '--name', 'gateway test'], vars, folder.dir);
        expect(created.code).toBe(0);
        const key = created.stdout.trim().split('\n').at(-1) ?? '';

        const ok = await call(gateway.url, 'GET', '/orders/1?x=1', { key, via: 'x-api-key' });
        expect(ok.status).toBe(200);
        const seen = ok.json as unknown as Echoed;
        expect(seen.url).toBe('/api/orders/1?x=1');
        expect(seen.headers['x-keyward-key-id']).toEqual(expect.any(String));
        expect(seen.headers['x-api-key']).toBeUndefined();
        expect((await call(gateway.url, 'GET', '/public/docs')).status).toBe(200);
        const refused = await call(gateway.url, 'GET', '/orders/1');
        expect(refused.status).toBe(401);
        expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(refused.json).toMatchObject({ code: 'AUTH_REQUIRED' });
        // Route scopes are checked as POST /v1/keys/verify checks them: an admin key without the scope is refused.
        const scoped = await call(gateway.url, 'POST', '/admin/reindex', { key, body: { all: true } });
        expect(scoped.status).toBe(403);
        expect(scoped.json).toMatchObject({ code: 'FORBIDDEN' });

        expect(await gateway.stop()).toBe(0);
        const after = new Database(join(folder.dir, 'keyward.db'), { readonly: true });
        const rows = after.prepare('select endpoint, method, status_code, outcome from api_key_usage order by created_at, id').all();
        after.close();
        expect(rows).toEqual([
          { endpoint: '/orders/1', method: 'GET', status_code: 200, outcome: 'VALID' },
          { endpoint: '/admin/reindex', method: 'POST', status_code: 403, outcome: 'INSUFFICIENT_SCOPES' },
        ]);
      } finally {
        await gateway.stop();
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'refuses a bad rules file or upstream with one clear error and exit 1; --help documents the command',
    async () => {
      const folder = tempFolder();
      try {
        const rules = join(folder.dir, 'rules.json');
        writeFileSync(rules, JSON.stringify({ routes: [{ method: 'GET', path: 'v1/*', scopes: ['x'] }] }));
        const vars = { DATABASE_URL: folder.databaseUrl };
        const badRules = await runCli(['gateway', '--upstream', echo.url, '--config', rules], vars, folder.dir);
        expect(badRules.code).toBe(1);
        expect(badRules.stderr.trim()).toMatch(
          /^keyward: invalid gateway rules: .*rules\.json: routes\[0\]\.path: must match pattern "\^\/"$/,
        );

        const badUpstream = await runCli(['gateway', '--upstream', 'ftp://example.com'], vars, folder.dir);
        expect(badUpstream.code).toBe(2);
        expect(badUpstream.stderr).toContain('expected an http:// or https:// URL');
        // An upstream URL may carry a password: it is refused without being shown past its scheme.
        const withPassword = await runCli(['gateway', '--upstream', 'ftp://u:s3cret@h'], vars, folder.dir);
        expect(withPassword.code).toBe(2);
        expect(withPassword.stderr).toContain('expected an http:// or https:// URL (got "ftp://…")');
        expect(withPassword.stderr).not.toContain('s3cret');

        const help = await runCli(['gateway', '--help'], {}, folder.dir);
        expect(help.code).toBe(0);
        for (const text of ['--upstream <url>', '(required)', '--config <file>', '--port <n>', 'X-Keyward-Key-Id', 'REQUIRE_API_KEY']) {
          expect(help.stdout).toContain(text);
        }
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});
