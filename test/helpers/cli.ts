import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root and the built CLI that `npm start` and users run. */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(REPO, 'packages/server/dist/cli.js');
const TSC = join(REPO, 'node_modules/typescript/bin/tsc');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Several test files build at once (one per Vitest worker); a lock directory makes them take turns, so two
// `tsc -b` runs never write the same outputs together. A lock older than two minutes is a crashed run's.
const LOCK = join(tmpdir(), `keyward-build-${createHash('sha256').update(REPO).digest('hex').slice(0, 12)}.lock`);

async function withBuildLock<T>(work: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 120_000) rmSync(LOCK, { recursive: true, force: true });
      } catch {
        // Released between the two calls: try again.
      }
      await sleep(100);
    }
  }
  try {
    return await work();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/**
 * Brings `packages/*\/dist` up to date with `tsc -b` (incremental: about a second when nothing changed).
 * A type error elsewhere in the tree does not stop the tests as long as the CLI was emitted.
 */
export async function buildCli(): Promise<void> {
  await withBuildLock(
    () =>
      new Promise<void>((resolve, reject) => {
        execFile(process.execPath, [TSC, '-b', 'packages/sdk', 'packages/server'], { cwd: REPO }, (error, stdout) => {
          if (error && !existsSync(CLI)) reject(new Error(`tsc -b failed and the CLI is not built:\n${stdout}`));
          else resolve();
        });
      }),
  );
}

/** A port that was free a moment ago: the OS picks it (listen on 0), then the listener is closed. */
export async function freePort(): Promise<number> {
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

/** A temporary folder for one test's SQLite database; `cleanup` removes it. */
export function tempFolder(): { dir: string; databaseUrl: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-e2e-'));
  return { dir, databaseUrl: `sqlite:${join(dir, 'keyward.db')}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The environment a child CLI gets: only PATH and what the test sets, so the test run's own DATABASE_URL,
 * REDIS_URL or .env never leak into it.
 */
export function cliEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', ...vars };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `keyward <args>` to completion, in `cwd` (a temporary folder, so no stray .env is read). */
export function runCli(args: string[], vars: Record<string, string>, cwd: string): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: cliEnv(vars), timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ServeProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the process wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `keyward serve` (the built CLI) on a free port and resolves once it listens. `vars` must hold
 * DATABASE_URL; PORT and HOST are set here. Call `stop()` in `afterAll`/`finally`: it is safe to call twice.
 */
export async function startServe(vars: Record<string, string>, cwd: string): Promise<ServeProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'serve'], {
    cwd,
    env: cliEnv({ PORT: String(port), HOST: '127.0.0.1', ...vars }),
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
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };

  const deadline = Date.now() + 45_000;
  while (!stdout.includes('Keyward listening on')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`keyward serve did not start (exit ${child.exitCode}):\n${stdout}\n${stderr}`);
    }
    await sleep(25);
  }
  return { url: `http://127.0.0.1:${port}`, port, child, stdout: () => stdout, stderr: () => stderr, stop };
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body; `{}` when there was none (204) or it was not JSON. */
  json: Record<string, unknown>;
}

/** A real HTTP request (global fetch) with a key sent as `Authorization: Bearer` or `X-API-Key`. */
export async function call(
  base: string,
  method: string,
  path: string,
  options: { key?: string; via?: 'bearer' | 'x-api-key'; body?: unknown } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = {};
  if (options.key !== undefined) {
    if (options.via === 'x-api-key') headers['x-api-key'] = options.key;
    else headers.authorization = `Bearer ${options.key}`;
  }
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(base + path, {
    method,
    headers,
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = {};
  }
  return { status: response.status, headers: response.headers, text, json };
}

export interface RemoteServer {
  serve: ServeProcess;
  /** The environment of a CLI that talks to this server: KEYWARD_URL and an admin KEYWARD_API_KEY, no database. */
  env: Record<string, string>;
  adminKey: string;
}

/**
 * Creates an admin key with `keyward admin create --json` on a fresh database, then starts `keyward serve` on it.
 * `stop()` the server in `afterAll`.
 */
export async function startServerWithAdmin(databaseUrl: string, cwd: string): Promise<RemoteServer> {
  const created = await runCli(['admin', 'create', '--name', 'cli tests', '--json'], { DATABASE_URL: databaseUrl }, cwd);
  if (created.code !== 0) throw new Error(`admin create failed: ${created.stderr}`);
  const adminKey = (JSON.parse(created.stdout) as { key: string }).key;
  const serve = await startServe({ DATABASE_URL: databaseUrl }, cwd);
  return { serve, adminKey, env: { KEYWARD_URL: serve.url, KEYWARD_API_KEY: adminKey } };
}
