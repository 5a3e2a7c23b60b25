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

/** The lines of `keys list` output: [id, prefix, status, admin, name]. */
const rows = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));

describe.concurrent('keyward keys list (built CLI)', () => {
  it(
    'refuses a --limit that is not a positive integer, with exit 1 and no SQL error',
    async () => {
      const folder = tempFolder();
      try {
        const env = { DATABASE_URL: folder.databaseUrl };
        const limits = ['abc', '0', '-3', '2.5', '1e3'];
        const results = await Promise.all(limits.map((limit) => runCli(['keys', 'list', '--limit', limit], env, folder.dir)));
        results.forEach((result, i) => {
          const limit = limits[i];
          expect(result.code, limit).toBe(1);
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
    'says on stderr when --limit cut the list, takes --user as id or external id, and shows the admin column',
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

        const all = await runCli(['keys', 'list'], env, folder.dir);
        expect(all).toMatchObject({ code: 0, stderr: '' });
        expect(rows(all.stdout).map((row) => [row[3], row[4]])).toEqual([
          ['-', 'user key 1'],
          ['-', 'user key 0'],
          ['admin', 'ops'],
        ]);

        const cut = await runCli(['keys', 'list', '--limit', '2'], env, folder.dir);
        expect(cut.code).toBe(0);
        expect(rows(cut.stdout)).toHaveLength(2);
        expect(cut.stderr).toBe('keyward: showing the first 2 keys; there are more (raise --limit to see them)\n');
        // A limit the list fits in exactly is no cut.
        expect(await runCli(['keys', 'list', '--limit', '3'], env, folder.dir)).toMatchObject({ code: 0, stderr: '' });

        const byExternal = await runCli(['keys', 'list', '--user', 'acme-42'], env, folder.dir);
        const byId = await runCli(['keys', 'list', '--user', userId], env, folder.dir);
        expect(byExternal).toMatchObject({ code: 0, stderr: '' });
        expect(rows(byExternal.stdout).map((row) => row[4])).toEqual(['user key 1', 'user key 0']);
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

  it.skipIf(!hasScript)(
    'draws the progress bar on a terminal (needs util-linux `script`)',
    async () => {
      const folder = tempFolder();
      try {
        const { file } = importFile(folder.dir);
        const result = await runCliOnTerminal(['import', file, '--scheme', 'plaintext'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
        expect(result.code).toBe(1);
        expect(result.stdout).toMatch(/\r\[#{30}\] 4\/4 lines/);
        expect(result.stdout).toContain('imported 2, skipped 0 already present, 2 rejected');
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});
