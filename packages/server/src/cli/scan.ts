import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { displayPrefix, findKeys, type KeywardClient } from '@keyward/sdk';
import type { Command } from 'commander';
import type { Container } from '../container.js';
import type { ApiKey } from '../domain.js';
import { MAX_LOCATION_LENGTH, MAX_SCANNED_KEYS } from '../leaks/routes.js';
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
  /** Revoked by this scan. */
  revoked?: boolean;
}

/** Asks a server or the database what keys are, and revokes them. */
interface Checker {
  /**
   * What each key is, given where it was first seen; with `revoke`, each live one is revoked too, audited as
   * `key.leaked` with that place.
   */
  check(found: ReadonlyMap<string, Finding>, revoke: boolean): Promise<Map<string, KeyState>>;
}

function statusOfRecord(key: ApiKey | undefined, now: number): FoundStatus {
  if (!key) return 'not_found';
  if (key.revokedAt !== null) return 'revoked';
  if (!key.isActive) return 'deactivated';
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
  return 'active';
}

/** Where a finding is, as its audit entry says it: `file:line`, its end kept when too long. */
const locationOf = (f: Finding): string => `${f.file}:${f.line}`.slice(-MAX_LOCATION_LENGTH);

/**
 * Through a server: `POST /v1/leaks/scan`, a batch of keys at a time. Not `POST /v1/keys/verify` (each key not
 * found counts as a failed verification, so a repository of fixture keys would lock the scan out) nor the
 * public `POST /v1/leaks/report` (limited per address, and it audits no location).
 */
function remoteChecker(client: KeywardClient): Checker {
  return {
    async check(found, revoke) {
      const states = new Map<string, KeyState>();
      const entries = [...found];
      for (let i = 0; i < entries.length; i += MAX_SCANNED_KEYS) {
        const batch = entries.slice(i, i + MAX_SCANNED_KEYS);
        const findings = batch.map(([key, f]) => ({ key, location: locationOf(f) }));
        const { results } = await client.scanLeakedKeys({ findings, revoke });
        for (const result of results) {
          const key = batch[result.index]?.[0];
          if (key !== undefined) states.set(key, { keyId: result.key_id, status: result.status, revoked: result.revoked });
        }
      }
      return states;
    },
  };
}

/** The database of DATABASE_URL (the container `withContainer` opened). */
function databaseChecker(container: Container): Checker {
  return {
    async check(found, revoke) {
      const states = new Map<string, KeyState>();
      const now = Date.now();
      for (const key of found.keys()) {
        const record = await container.leaks.lookUp(key);
        states.set(key, { keyId: record?.id ?? null, status: statusOfRecord(record, now) });
      }
      if (!revoke) return states;
      for (const [key, where] of found) {
        const state = states.get(key);
        if (!state || !LIVE.has(state.status)) continue;
        await container.leaks.revokeLeaked(operator, key, { source: 'scan', location: `${where.file}:${where.line}` });
        state.revoked = true;
      }
      return states;
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
      // Each key, with the first place it was seen: where its audit entry says it leaked.
      const first = new Map<string, Finding>();
      for (const f of findings) if (!first.has(f.key)) first.set(f.key, f);
      const distinct = [...first.keys()];
      const revoke = opts.revoke === true;
      let states = new Map<string, KeyState>();
      if (distinct.length > 0 && client) states = await remoteChecker(client).check(first, revoke);
      else if (distinct.length > 0 && onDatabase) states = await withContainer((c) => databaseChecker(c).check(first, revoke));
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
          revoked: states.get(f.key)?.revoked === true,
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
