import { execFile, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey } from '@keyward/sdk';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, CLI, type CliResult, cliEnv, runCli, tempFolder } from '../helpers/cli.js';

// The CLI's own usage, against the built CLI on a temporary SQLite database: `keys list`, `import`, and what
// `--help` says.

beforeAll(buildCli, 120_000);

const SLOW = 90_000;

/** The keys of `keys list --json`. */
const listed = (stdout: string) => (JSON.parse(stdout) as { data: { id: string; name: string; is_admin: boolean }[] }).data;

describe.concurrent('keyward keys list (built CLI)', () => {
  it(
    'refuses a --limit that is not a positive integer: a usage error (exit 2), no SQL error',
    async () => {
      const folder = tempFolder();
      try {
        const env = { DATABASE_URL: folder.databaseUrl };
        const limits = ['abc', '0', '-3', '2.5', '1e3'];
        const results = await Promise.all(limits.map((limit) => runCli(['keys', 'list', '--limit', limit], env, folder.dir)));
        results.forEach((result, i) => {
          const limit = limits[i];
          expect(result.code, limit).toBe(2);
          expect(result.stderr, limit).toContain("option '--limit <n>' argument");
          expect(result.stderr, limit).toContain('expected a positive integer');
          expect(result.stderr, limit).not.toMatch(/datatype mismatch|Sqlite/i);
          expect(result.stdout, limit).toBe('');
        });
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'prints a table, pages with --cursor (the next cursor on stderr), takes --user as id or external id',
    async () => {
      const folder = tempFolder();
      try {
        const env = { DATABASE_URL: folder.databaseUrl };
        expect((await runCli(['admin', 'create', '--name', 'ops'], env, folder.dir)).code).toBe(0);
        const created = await runCli(['users', 'create', '--external-id', 'acme-42'], env, folder.dir);
        expect(created.code).toBe(0);
        const userId = /created user (\S+)/.exec(created.stdout)?.[1] ?? '';
        expect(userId).not.toBe('');
        // Two keys of the user, imported (the CLI has no other way to make a user's key).
        const file = join(folder.dir, 'keys.jsonl');
        writeFileSync(
          file,
          [generateKey(), generateKey()]
            .map((key, i) => JSON.stringify({ key, name: `user key ${i}`, user_external_id: 'acme-42' }))
            .join('\n'),
        );
        expect((await runCli(['import', file, '--scheme', 'plaintext'], env, folder.dir)).code).toBe(0);

        const table = await runCli(['keys', 'list'], env, folder.dir);
        expect(table).toMatchObject({ code: 0, stderr: '' });
        const [header, ...lines] = table.stdout.trimEnd().split('\n');
        expect(header).toMatch(/^ID +PREFIX +STATUS +ADMIN +CREATED +NAME$/);
        expect(lines.map((line) => line.slice(header?.indexOf('ADMIN')).split(/ {2,}/))).toEqual([
          ['-', expect.any(String), 'user key 1'],
          ['-', expect.any(String), 'user key 0'],
          ['admin', expect.any(String), 'ops'],
        ]);

        const cut = await runCli(['keys', 'list', '--limit', '2', '--json'], env, folder.dir);
        expect(cut.code).toBe(0);
        const page = JSON.parse(cut.stdout) as { data: unknown[]; next_cursor: string };
        expect(page.data).toHaveLength(2);
        expect(cut.stderr).toBe('');
        const cutTable = await runCli(['keys', 'list', '--limit', '2'], env, folder.dir);
        expect(cutTable.stderr).toBe(`keyward: more keys: next page with --cursor ${page.next_cursor}\n`);
        const next = await runCli(['keys', 'list', '--limit', '2', '--cursor', page.next_cursor, '--json'], env, folder.dir);
        expect(listed(next.stdout).map((key) => key.name)).toEqual(['ops']);
        // A limit the list fits in exactly is no cut.
        expect(await runCli(['keys', 'list', '--limit', '3'], env, folder.dir)).toMatchObject({ code: 0, stderr: '' });

        const byExternal = await runCli(['keys', 'list', '--user', 'acme-42', '--json'], env, folder.dir);
        const byId = await runCli(['keys', 'list', '--user', userId, '--json'], env, folder.dir);
        expect(byExternal).toMatchObject({ code: 0, stderr: '' });
        expect(listed(byExternal.stdout).map((key) => key.name)).toEqual(['user key 1', 'user key 0']);
        expect(byId.stdout).toBe(byExternal.stdout);

        const unknown = await runCli(['keys', 'list', '--user', 'nobody'], env, folder.dir);
        expect(unknown.code).toBe(1);
        expect(unknown.stderr).toContain('USER_NOT_FOUND');
        expect(unknown.stdout).toBe('');
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});

describe.concurrent('keyward --help (built CLI)', () => {
  it.each([
    [['admin', 'create'], '--name <name>'],
    [['import'], '--scheme <scheme>'],
    [['token'], '--user <external-id>'],
    [['users', 'create'], '--external-id <id>'],
    [['gateway'], '--upstream <url>'],
  ])(
    '%j --help marks %s as required, and no optional option',
    async (command, option) => {
      const folder = tempFolder();
      try {
        const help = await runCli([...command, '--help'], {}, folder.dir);
        expect(help.code).toBe(0);
        // Each option's entry runs from its flags to the next line that starts with flags.
        const entries = help.stdout
          .slice(help.stdout.indexOf('Options:'))
          .split(/\n(?= {2}-)/)
          .map((entry) => entry.replace(/\s+/g, ' ').trim());
        const required = entries.filter((entry) => entry.endsWith('(required)'));
        expect(required).toHaveLength(1);
        expect(required[0]?.startsWith(option)).toBe(true);
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'import --help documents key_prefix, that the user must exist, and the exit code',
    async () => {
      const folder = tempFolder();
      try {
        const help = (await runCli(['import', '--help'], {}, folder.dir)).stdout.replace(/\s+/g, ' ');
        for (const text of ['"key_prefix"', 'default "imported"', 'the user must exist already', 'exit code 1']) {
          expect(help).toContain(text);
        }
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});

// util-linux `script` runs a command on a pseudo-terminal; without it only the non-terminal case is checked.
const hasScript = spawnSync('script', ['--version']).status === 0;

/** Runs `keyward <args>` with stderr (and stdout) on a pseudo-terminal; the output is both, as the terminal got it. */
function runCliOnTerminal(args: string[], vars: Record<string, string>, cwd: string): Promise<CliResult> {
  const command = [process.execPath, CLI, ...args].map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(' ');
  return new Promise((resolve) => {
    execFile('script', ['-qec', command, '/dev/null'], { cwd, env: cliEnv(vars), timeout: 20_000 }, (error, stdout) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout, stderr: '' });
    });
  });
}

describe.concurrent('keyward import (built CLI)', () => {
  /** A file of two good plaintext keys, one bad line, and one key of a user that does not exist. */
  function importFile(dir: string): { file: string; keys: string[] } {
    const keys = [generateKey(), generateKey(), generateKey()];
    const file = join(dir, 'keys.jsonl');
    const lines = [{ key: keys[0], name: 'a' }, { key: 'short' }, { key: keys[1], name: 'b' }, { key: keys[2], user_external_id: 'u_42' }];
    writeFileSync(file, `${lines.map((line) => JSON.stringify(line)).join('\n')}\n`);
    return { file, keys };
  }

  it(
    'draws no progress bar when stderr is not a terminal; rejected lines make exit code 1',
    async () => {
      const folder = tempFolder();
      try {
        const { file, keys } = importFile(folder.dir);
        const result = await runCli(['import', file, '--scheme', 'plaintext'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
        expect(result.code).toBe(1);
        expect(result.stdout).toBe('imported 2, skipped 0 already present, 2 rejected\n');
        const errors = result.stderr.split('\n').filter((line) => line !== '');
        expect(errors).toEqual([expect.stringMatching(/^line 2: /), 'line 4: no user with external id u_42']);
        expect(result.stderr).not.toContain('\r');
        for (const key of keys) expect(result.stdout + result.stderr).not.toContain(key);
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'reads CSV (guessed from the extension, or --format csv): quoted fields, scopes, metadata, bad rows by line',
    async () => {
      const folder = tempFolder();
      try {
        const keys = [generateKey(), generateKey()];
        const rows = ['name,key,scopes,is_admin', `"Smith, Jones",${keys[0]},"a:read,b:write",false`, `x,${keys[1]},,maybe`, 'y,short'];
        const csv = join(folder.dir, 'keys.csv');
        writeFileSync(csv, `${rows.join('\r\n')}\r\n`);
        const env = { DATABASE_URL: folder.databaseUrl };
        const result = await runCli(['import', csv, '--scheme', 'plaintext', '--json'], env, folder.dir);
        expect(result.code).toBe(1);
        expect(JSON.parse(result.stdout)).toEqual({
          imported: 1,
          skipped: 0,
          rejected: 2,
          errors: [
            { line: 3, message: 'is_admin must be true or false' },
            { line: 4, message: 'has 2 fields; the header has 4' },
          ],
        });
        const list = await runCli(['keys', 'list', '--json'], env, folder.dir);
        expect(listed(list.stdout)).toEqual([expect.objectContaining({ name: 'Smith, Jones', scopes: ['a:read', 'b:write'] })]);

        // The same rows under another extension, with --format; an unknown column refuses the file.
        const other = join(folder.dir, 'keys.txt');
        writeFileSync(other, rows.slice(0, 2).join('\n'));
        expect((await runCli(['import', other, '--scheme', 'plaintext', '--format', 'csv'], env, folder.dir)).stdout).toBe(
          'imported 0, skipped 1 already present, 0 rejected\n',
        );
        writeFileSync(other, `name,secret\nx,${keys[1]}\n`);
        const unknown = await runCli(['import', other, '--scheme', 'plaintext', '--format', 'csv'], env, folder.dir);
        expect(unknown.code).toBe(2);
        expect(unknown.stderr).toContain('column 2 of the first line is not a known column');
        for (const key of keys) expect(result.stdout + result.stderr + unknown.stderr).not.toContain(key);
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );

  it.skipIf(!hasScript)(
    'draws the progress bar on a terminal (needs util-linux `script`)',
    async () => {
      const folder = tempFolder();
      try {
        const { file } = importFile(folder.dir);
        const result = await runCliOnTerminal(['import', file, '--scheme', 'plaintext'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
        expect(result.code).toBe(1);
        expect(result.stdout).toMatch(/\r\[#{30}\] 4\/4 lines {2}\d+\/s {2}ETA 0s/);
        expect(result.stdout).toContain('imported 2, skipped 0 already present, 2 rejected');
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});
