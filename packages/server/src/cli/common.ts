import { KeywardClient, KeywardError } from '@keyward/sdk';
import { type Command, InvalidArgumentError } from 'commander';
import type { Caller } from '../callers/principal.js';
import { type Config, ConfigError, loadConfig, loadDotEnv, redactUrl } from '../config.js';
import type { Container } from '../container.js';
import { INSTANT_RANGE, isBoundedInstant } from '../domain.js';
import type { Failure } from '../errors.js';

// What every command shares: output, failures and their exit codes, the two ways to reach Keyward.

/** The actor of changes the CLI makes on the database directly. */
export const operator: Caller = { principal: { kind: 'system', name: 'cli' }, ip: null };

/** Exit codes: 0 done, 1 failed, 2 the command was not used as it should be. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** A failure the command reports on one line of stderr, exit 1. */
export class CliFailure extends Error {}
/** A command used wrongly (a missing setting, a bad value found late), exit 2. */
export class UsageError extends Error {}

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function warn(line: string): void {
  process.stderr.write(`keyward: ${line}\n`);
}

/** `--json` output: one JSON document on stdout, nothing else there. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A failed service result (direct mode) becomes the same one line as a server's problem. */
export function unwrapResult<T>(result: { ok: true; value: T } | Failure): T {
  if (!result.ok) throw new CliFailure(`${result.code}${result.detail ? `: ${result.detail}` : ''}`);
  return result.value;
}

/** Reports what went wrong, on one line of stderr, and sets the exit code. */
export function report(error: unknown): void {
  if (error instanceof KeywardError) {
    const { code, problem } = error;
    warn(`${code}${problem.detail ? `: ${problem.detail}` : problem.title ? `: ${problem.title}` : ''}`);
    process.exitCode = EXIT.failure;
  } else if (error instanceof UsageError) {
    warn(error.message);
    process.exitCode = EXIT.usage;
  } else {
    warn(error instanceof Error ? error.message : String(error));
    process.exitCode = EXIT.failure;
  }
}

export function config(): Config {
  loadDotEnv();
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) throw new CliFailure(`invalid configuration: ${error.message}`);
    throw error;
  }
}

/**
 * Runs `work` against a migrated database, then closes it. The database side is loaded only here, so that a
 * command talking to a server starts quickly.
 */
export async function withContainer<T>(work: (c: Container) => Promise<T>, migrate = true): Promise<T> {
  const [{ createContainer }, { migrateUpAt }] = await Promise.all([import('../container.js'), import('../store/migrator.js')]);
  const container = createContainer(config());
  try {
    if (migrate) await migrateUpAt(container.db, container.config.databaseUrl);
    return await work(container);
  } finally {
    await container.close();
  }
}

// ---- Talking to a server ----------------------------------------------------------------------------------

/** The options of every command that can talk to a server. */
export interface RemoteOptions {
  url?: string;
  apiKey?: string;
  json?: boolean;
}

/** Adds `--json`, `--url` and `--api-key` to a command. */
export function remoteCommand(command: Command): Command {
  return command
    .option('--json', 'print JSON on stdout (nothing else goes there)')
    .option('--url <url>', 'a running Keyward, e.g. https://keys.example.com (default: KEYWARD_URL)')
    .option('--api-key <key>', 'an admin key for it (default: KEYWARD_API_KEY; prefer the variable: a flag shows in `ps`)');
}

/** The client for the server named by `--url` or KEYWARD_URL, or `null` when none is (direct mode). */
export function remoteOf(opts: RemoteOptions): KeywardClient | null {
  loadDotEnv();
  const url = opts.url ?? process.env.KEYWARD_URL;
  if (url === undefined || url === '') return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`KEYWARD_URL (or --url) is not a URL: ${redactUrl(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError('KEYWARD_URL (or --url) must start with http:// or https://');
  }
  const apiKey = opts.apiKey ?? process.env.KEYWARD_API_KEY;
  if (apiKey === undefined || apiKey === '') {
    throw new UsageError('KEYWARD_API_KEY (or --api-key) is not set: the server needs an admin key');
  }
  return new KeywardClient({ baseUrl: url, apiKey, timeoutMs: 30_000 });
}

/** The client of a command that only works through a server. */
export function needRemote(opts: RemoteOptions, command: string): KeywardClient {
  const client = remoteOf(opts);
  if (client === null) {
    throw new UsageError(`\`keyward ${command}\` talks to a running server: set KEYWARD_URL and KEYWARD_API_KEY (or --url, --api-key)`);
  }
  return client;
}

// ---- Option parsers (a bad value is a usage error, exit 2) ----------------------------------------------

export function positiveInteger(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(Number.isSafeInteger(n) && n >= 1)) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function isoDate(value: string): string {
  if (!isBoundedInstant(Date.parse(value))) {
    throw new InvalidArgumentError(`expected an ISO 8601 date between ${INSTANT_RANGE}, e.g. 2027-01-01T00:00:00Z`);
  }
  return value;
}

const DURATION_UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 };

/** `90s`, `15m`, `1h`, `7d` or plain seconds, as whole seconds (at least 1, or 0 when `zero` is allowed). */
export function duration(value: string, { zero = false } = {}): number {
  const match = /^(\d+)\s*([smhd]?)$/.exec(value.trim());
  const seconds = match ? Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds < (zero ? 0 : 1)) {
    throw new InvalidArgumentError('expected a duration such as 90s, 15m, 1h or 7d');
  }
  return seconds;
}

/** A comma- or space-separated list (scopes). */
export function list(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => item !== '');
}

/** A JSON object given on the command line (metadata). */
export function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('expected a JSON object, e.g. \'{"team":"billing"}\'');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError('expected a JSON object');
  return parsed as Record<string, unknown>;
}

/** `LIMIT/WINDOW`, e.g. `100/60s` or `1000/1h`: at most LIMIT verifications per window. */
export function rateLimit(value: string): { limit: number; window_seconds: number } {
  const [limit, window, ...rest] = value.split('/');
  if (limit === undefined || window === undefined || rest.length > 0) {
    throw new InvalidArgumentError('expected LIMIT/WINDOW, e.g. 100/60s or 1000/1h');
  }
  return { limit: positiveInteger(limit), window_seconds: duration(window) };
}
