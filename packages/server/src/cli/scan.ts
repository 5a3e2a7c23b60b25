import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { displayPrefix, findKeys, type KeywardClient, KeywardError, type VerifyCode } from '@keyward/sdk';
import type { Command } from 'commander';
import type { Container } from '../container.js';
import type { ApiKey } from '../domain.js';
import { EXIT, operator, out, printJson, type RemoteOptions, remoteCommand, remoteOf, UsageError, warn, withContainer } from './common.js';

// `keyward scan PATH…`: finds Keyward keys in files (their checksum right, so no look-alike is reported) and,
// through a server or on the database, says which key each is and whether it is live; `--revoke` revokes them
// as leaked. Exit 1 when a key that is or may be live was found: made for pre-commit hooks and CI.

/** Files larger than this are skipped: keys sit in source and configuration, not in dumps and archives. */
export const MAX_SCANNED_BYTES = 5 * 1024 * 1024;
/** Folders never walked into: dependencies and Git's own store. */
const SKIPPED_FOLDERS = new Set(['.git', 'node_modules']);
/** A file with a NUL byte in its first bytes is binary (Git's rule). */
const BINARY_SNIFF_BYTES = 8000;
/** Keys per `POST /v1/leaks/report`. */
const REPORT_BATCH = 100;

/**
 * What a key found is, as far as the scan could tell: `active` (it works now), `deactivated` or `expired` (it can be
 * brought back), `revoked` (for good), `not_found` (no key of this Keyward: deleted, or another install's), or
 * `unchecked` (no server or database to ask).
 */
export type FoundStatus = 'active' | 'deactivated' | 'expired' | 'revoked' | 'not_found' | 'unchecked';

/** The statuses that fail the scan: the key works, can be made to work again, or may (nothing was asked). */
const LIVE: ReadonlySet<FoundStatus> = new Set(['active', 'deactivated', 'expired', 'unchecked']);

interface Finding {
  file: string;
  line: number;
  column: number;
  key: string;
}

interface KeyState {
  keyId: string | null;
  status: FoundStatus;
}

/** Asks a server or the database what keys are, and revokes them. */
interface Checker {
  check(keys: readonly string[]): Promise<Map<string, KeyState>>;
  /** Revokes each key, given where it was first seen. */
  revoke(found: ReadonlyMap<string, Finding>): Promise<void>;
}

/** A key's status from a verification with no scope, cost or rate-limit use: only its state can refuse it. */
function statusOfCode(code: VerifyCode): FoundStatus {
  switch (code) {
    case 'NOT_FOUND':
    case 'INVALID_FORMAT':
      return 'not_found';
    case 'REVOKED':
      return 'revoked';
    case 'DISABLED':
      return 'deactivated';
    case 'EXPIRED':
      return 'expired';
    default:
      return 'active';
  }
}

function statusOfRecord(key: ApiKey | undefined, now: number): FoundStatus {
  if (!key) return 'not_found';
  if (key.revokedAt !== null) return 'revoked';
  if (!key.isActive) return 'deactivated';
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
  return 'active';
}

function remoteChecker(client: KeywardClient): Checker {
  return {
    async check(keys) {
      const states = new Map<string, KeyState>();
      for (const key of keys) {
        // Checks the key's state only: nothing spent, no usage row.
        const result = await client.verifyKey({ key, cost: 0, ratelimit_cost: 0, record_usage: false });
        states.set(key, { keyId: result.key_id ?? null, status: statusOfCode(result.code) });
      }
      return states;
    },
    async revoke(found) {
      const keys = [...found.keys()];
      for (let i = 0; i < keys.length; i += REPORT_BATCH) {
        const { response, error } = await client.raw.POST('/v1/leaks/report', { body: { keys: keys.slice(i, i + REPORT_BATCH) } });
        if (!response.ok) throw KeywardError.fromResponse(response.status, error, response.headers);
      }
    },
  };
}

/** The database of DATABASE_URL (the container `withContainer` opened). */
function databaseChecker(container: Container): Checker {
  return {
    async check(keys) {
      const states = new Map<string, KeyState>();
      const now = Date.now();
      for (const key of keys) {
        const record = await container.leaks.lookUp(key);
        states.set(key, { keyId: record?.id ?? null, status: statusOfRecord(record, now) });
      }
      return states;
    },
    async revoke(found) {
      for (const [key, where] of found) {
        await container.leaks.revokeLeaked(operator, key, { source: 'scan', location: `${where.file}:${where.line}` });
      }
    },
  };
}

/** The files below `path` in name order, skipping dependency and Git folders and not following links. */
async function* filesOf(path: string): AsyncGenerator<string> {
  const stack = [path];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const info = next === path ? await stat(next) : await lstat(next);
    if (info.isFile()) {
      yield next;
    } else if (info.isDirectory()) {
      const entries = (await readdir(next, { withFileTypes: true })).filter((e) => !(e.isDirectory() && SKIPPED_FOLDERS.has(e.name)));
      // Pushed last name first, so that they are popped (and printed) in name order.
      entries.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
      for (const entry of entries) stack.push(join(next, entry.name));
    }
  }
}

/** The text of a file, or `null` when it is skipped (binary, or too large). */
async function textOf(file: string): Promise<string | null> {
  if ((await stat(file)).size > MAX_SCANNED_BYTES) return null;
  const bytes = await readFile(file);
  if (bytes.subarray(0, BINARY_SNIFF_BYTES).includes(0)) return null;
  return bytes.toString('utf8');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function scanCommand(program: Command): void {
  remoteCommand(program.command('scan'))
    .description(
      'Find Keyward keys in files and folders (or stdin with -): only strings in the key shape whose checksum is right. ' +
        'Skips .git, node_modules, binary files and files over 5 MB. With a server (KEYWARD_URL) or a database ' +
        '(DATABASE_URL set) it says which key each is and whether it is live. Never prints a key. Exit 1 when a key ' +
        'that is live (active, deactivated or expired: it can be brought back) was found, or any key when there is ' +
        'nothing to ask',
    )
    .argument('<paths...>', 'files or folders to scan; - reads stdin')
    .option('--revoke', 'revoke every live key found, audited as key.leaked (needs a server or a database)')
    .addHelpText('after', '\nExample (a pre-commit hook):\n  git diff --cached --name-only --diff-filter=ACM -z | xargs -0 -r keyward scan')
    .action(async (paths: string[], opts: RemoteOptions & { revoke?: boolean }) => {
      const findings: Finding[] = [];
      let scanned = 0;
      let skipped = 0;
      for (const path of paths) {
        if (path === '-') {
          scanned++;
          for (const f of findKeys(await readStdin())) findings.push({ file: '<stdin>', line: f.line, column: f.column, key: f.key });
          continue;
        }
        try {
          await stat(path);
        } catch {
          throw new UsageError(`no such file or folder: ${path}`);
        }
        for await (const file of filesOf(path)) {
          const text = await textOf(file);
          if (text === null) {
            skipped++;
            continue;
          }
          scanned++;
          for (const f of findKeys(text)) findings.push({ file, line: f.line, column: f.column, key: f.key });
        }
      }

      const client = remoteOf(opts);
      const onDatabase = client === null && Boolean(process.env.DATABASE_URL);
      if (opts.revoke && client === null && !onDatabase) {
        throw new UsageError('--revoke needs a server (KEYWARD_URL and KEYWARD_API_KEY) or a database (DATABASE_URL)');
      }
      const distinct = [...new Set(findings.map((f) => f.key))];
      let states = new Map<string, KeyState>();
      const revoked = new Set<string>();
      const ask = async (checker: Checker): Promise<void> => {
        states = await checker.check(distinct);
        if (!opts.revoke) return;
        // Each live key, with the first place it was seen: where its audit entry says it leaked.
        const live = new Map<string, Finding>();
        for (const f of findings) if (LIVE.has(states.get(f.key)?.status ?? 'unchecked') && !live.has(f.key)) live.set(f.key, f);
        await checker.revoke(live);
        for (const key of live.keys()) revoked.add(key);
      };
      if (distinct.length > 0 && client) await ask(remoteChecker(client));
      else if (distinct.length > 0 && onDatabase) await withContainer((c) => ask(databaseChecker(c)));
      const checked = client !== null || onDatabase;

      const stateOf = (key: string): KeyState => states.get(key) ?? { keyId: null, status: 'unchecked' };
      const liveCount = distinct.filter((key) => LIVE.has(stateOf(key).status)).length;
      const rows = findings.map((f) => {
        const { keyId, status } = stateOf(f.key);
        return {
          file: f.file,
          line: f.line,
          column: f.column,
          display_prefix: displayPrefix(f.key),
          key_id: keyId,
          status,
          revoked: revoked.has(f.key),
        };
      });
      if (opts.json) {
        printJson({ findings: rows, keys: distinct.length, live: liveCount, files_scanned: scanned, files_skipped: skipped });
      } else {
        for (const row of rows) {
          const where = `${row.file}:${row.line}:${row.column}`;
          if (row.status === 'unchecked') out(`${where}  ${row.display_prefix}`);
          else out(`${where}  ${row.display_prefix}  ${row.key_id ?? '-'}  ${row.status}${row.revoked ? ' (revoked now)' : ''}`);
        }
        const unchecked = !checked ? ' (unchecked: no server or database to ask)' : ` (${liveCount} live)`;
        warn(
          `${distinct.length} key${distinct.length === 1 ? '' : 's'} found${distinct.length > 0 ? unchecked : ''} in ${scanned} ` +
            `file${scanned === 1 ? '' : 's'}${skipped > 0 ? `; ${skipped} skipped (binary or over 5 MB)` : ''}`,
        );
      }
      if (liveCount > 0) process.exitCode = EXIT.failure;
    });
}
