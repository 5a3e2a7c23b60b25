import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKey } from '@keyward/sdk';

/** A Keyward server on a fresh SQLite file, serving the dashboard. */
export interface RunningKeyward {
  url: string;
  adminKey: string;
  jwtSecret: string;
  stop(): Promise<void>;
}

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
export const DASHBOARD_DIST = join(REPO, 'packages/dashboard/dist');

function environment(dir: string, port: number) {
  return {
    DATABASE_URL: `sqlite:${join(dir, 'keyward.db')}`,
    INITIAL_ADMIN_KEY: generateKey('kw'),
    JWT_SECRET: `e2e-${'s'.repeat(40)}`,
    LOG_LEVEL: process.env.E2E_LOG_LEVEL ?? 'silent',
    HOST: '127.0.0.1',
    PORT: String(port),
    // The webhook step delivers to a receiver the test runs on 127.0.0.1.
    WEBHOOK_ALLOW_PRIVATE: 'true',
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The real `keyward serve` (packages/server/dist/cli.js, built by `npm run build`), once it serves the dashboard. */
export async function startServe(): Promise<RunningKeyward> {
  const cli = join(REPO, 'packages/server/dist/cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build`);
  const dir = mkdtempSync(join(tmpdir(), 'keyward-dashboard-e2e-'));
  const port = await freePort();
  const env = environment(dir, port);
  const child: ChildProcess = spawn(process.execPath, [cli, 'serve'], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'pipe' });
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`keyward serve did not start:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    adminKey: env.INITIAL_ADMIN_KEY,
    jwtSecret: env.JWT_SECRET,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
