import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { displayPrefix, generateKey } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operator } from '../../packages/server/src/cli/common.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { buildCli, CLI, type CliResult, cliEnv, type RemoteServer, runCli, startServerWithAdmin, tempFolder } from '../helpers/cli.js';

// `keyward scan`, the built CLI: the walk (what it skips), the report (never the key), the exit code, and the
// liveness of what it finds on the database and through a server (`POST /v1/leaks/scan`, in batches), with --revoke.

const SLOW = 90_000;
const KEY = /[a-z][a-z0-9_]*_[A-Za-z0-9]{49}/;

beforeAll(buildCli, 120_000);

interface ScanJson {
  findings: {
    file: string;
    line: number;
    column: number;
    display_prefix: string;
    key_id: string | null;
    status: string;
    revoked: boolean;
  }[];
  keys: number;
  live: number;
  files_scanned: number;
  files_skipped: number;
}

/** Runs the CLI with `input` on its stdin. */
function runWithStdin(args: string[], input: string, cwd: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: cliEnv({}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const broken = (key: string) => `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;

describe.concurrent('keyward scan, with nothing to ask (built CLI)', () => {
  it(
    'reports file:line:col and the display prefix of each key, skips .git, node_modules, binary and big files, exits 1',
    async () => {
      const folder = tempFolder();
      try {
        const [a, b, c, hidden] = [generateKey(), generateKey('sk_live'), generateKey(), generateKey()];
        const tree = join(folder.dir, 'repo');
        mkdirSync(join(tree, 'src', 'config'), { recursive: true });
        mkdirSync(join(tree, 'node_modules', 'dep'), { recursive: true });
        mkdirSync(join(tree, '.git'), { recursive: true });
        writeFileSync(join(tree, 'src', 'app.ts'), `const ok = 1;\n    const key = '${a}';\n`);
        writeFileSync(join(tree, 'src', 'config', '.env'), `KEYWARD_KEY=${b}\nOTHER=${c} # and again: ${a}\n`);
        writeFileSync(join(tree, 'src', 'look-alike.txt'), `${broken(a)}\nkw_${'x'.repeat(49)}\n`);
        writeFileSync(join(tree, 'node_modules', 'dep', 'index.js'), hidden);
        writeFileSync(join(tree, '.git', 'config'), hidden);
        writeFileSync(join(tree, 'image.bin'), Buffer.concat([Buffer.from([0x89, 0x50, 0x00, 0x01]), Buffer.from(hidden)]));
        writeFileSync(join(tree, 'dump.sql'), `${'-- filler\n'.repeat(600_000)}${hidden}\n`); // over 5 MB

        const human = await runCli(['scan', 'repo'], {}, folder.dir);
        expect(human.code).toBe(1);
        expect(human.stdout.trimEnd().split('\n')).toEqual([
          `${join('repo', 'src', 'app.ts')}:2:18  ${displayPrefix(a)}`,
          `${join('repo', 'src', 'config', '.env')}:1:13  ${displayPrefix(b)}`,
          `${join('repo', 'src', 'config', '.env')}:2:7  ${displayPrefix(c)}`,
          `${join('repo', 'src', 'config', '.env')}:2:73  ${displayPrefix(a)}`,
        ]);
        expect(human.stderr).toMatch(/3 keys found \(unchecked: no server or database to ask\) in 3 files; 2 skipped/);

        const json = await runCli(['scan', 'repo', '--json'], {}, folder.dir);
        expect(json.code).toBe(1);
        const parsed = JSON.parse(json.stdout) as ScanJson;
        expect(parsed).toMatchObject({ keys: 3, live: 3, files_scanned: 3, files_skipped: 2 });
        expect(parsed.findings[0]).toEqual({
          file: join('repo', 'src', 'app.ts'),
          line: 2,
          column: 18,
          display_prefix: displayPrefix(a),
          key_id: null,
          status: 'unchecked',
          revoked: false,
        });
        for (const result of [human, json]) expect(result.stdout + result.stderr).not.toMatch(KEY);

        // A file named on its own is scanned, whatever folder it is in; a clean tree exits 0.
        expect((await runCli(['scan', join('repo', 'node_modules', 'dep', 'index.js')], {}, folder.dir)).code).toBe(1);
        const clean = await runCli(['scan', join('repo', 'src', 'look-alike.txt')], {}, folder.dir);
        expect(clean).toMatchObject({ code: 0, stdout: '' });
        expect(clean.stderr).toMatch(/0 keys found in 1 file/);
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'reads stdin with -, and refuses a missing path or --revoke with nothing to revoke on (exit 2)',
    async () => {
      const folder = tempFolder();
      try {
        const key = generateKey();
        const piped = await runWithStdin(['scan', '-'], `line one\nBearer ${key}\n`, folder.dir);
        expect(piped.code).toBe(1);
        expect(piped.stdout).toBe(`<stdin>:2:8  ${displayPrefix(key)}\n`);
        expect(await runWithStdin(['scan', '-'], 'nothing here\n', folder.dir)).toMatchObject({ code: 0, stdout: '' });

        const missing = await runCli(['scan', 'no-such-folder'], {}, folder.dir);
        expect(missing.code).toBe(2);
        expect(missing.stderr).toContain('no such file or folder: no-such-folder');
        writeFileSync(join(folder.dir, 'k.txt'), key);
        const revoke = await runCli(['scan', 'k.txt', '--revoke'], {}, folder.dir);
        expect(revoke.code).toBe(2);
        expect(revoke.stderr).toContain('--revoke needs a server');

        const help = await runCli(['scan', '--help'], {}, folder.dir);
        expect(help.code).toBe(0);
        expect(help.stdout).toContain('--revoke');
        expect(help.stdout).toContain('Exit 1');
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});

describe('keyward scan on the database (DATABASE_URL)', () => {
  it(
    'says which key it is and whether it is live; --revoke revokes it (key.leaked), then the scan passes',
    async () => {
      const folder = tempFolder();
      try {
        const env = { DATABASE_URL: folder.databaseUrl };
        const created = await runCli(['admin', 'create', '--name', 'pasted', '--json'], env, folder.dir);
        const admin = JSON.parse(created.stdout) as { id: string; key: string };
        const stranger = generateKey();
        writeFileSync(join(folder.dir, 'notes.md'), `admin: ${admin.key}\nsomeone else's: ${stranger}\n`);

        const first = await runCli(['scan', 'notes.md', '--json'], env, folder.dir);
        expect(first.code).toBe(1);
        const found = (JSON.parse(first.stdout) as ScanJson).findings;
        expect(found.map((f) => [f.key_id, f.status])).toEqual([
          [admin.id, 'active'],
          [null, 'not_found'],
        ]);

        const revoked = await runCli(['scan', 'notes.md', '--revoke'], env, folder.dir);
        expect(revoked.code).toBe(1); // a live key was found: the file still holds it
        expect(revoked.stdout).toContain(`notes.md:1:8  ${displayPrefix(admin.key)}  ${admin.id}  active (revoked now)`);
        expect(revoked.stdout).toContain(`notes.md:2:17  ${displayPrefix(stranger)}  -  not_found\n`);
        expect(revoked.stdout + revoked.stderr).not.toMatch(KEY);

        const after = await runCli(['scan', 'notes.md'], env, folder.dir);
        expect(after.code).toBe(0);
        expect(after.stdout).toContain(`${admin.id}  revoked`);

        // Audited as a leak found by the scan, with where it was found.
        const container = createContainer(loadConfig({ DATABASE_URL: folder.databaseUrl, LOG_LEVEL: 'silent' }));
        try {
          const page = await container.audit.list(operator, { action: 'key.leaked' });
          expect(page.ok && page.value.items).toEqual([
            expect.objectContaining({
              targetId: admin.id,
              actorId: 'cli',
              changes: expect.objectContaining({ source: 'scan', location: 'notes.md:1' }),
            }),
          ]);
        } finally {
          await container.close();
        }
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});

describe('keyward scan through a server (KEYWARD_URL)', () => {
  let folder: ReturnType<typeof tempFolder>;
  let server: RemoteServer;
  beforeAll(async () => {
    folder = tempFolder();
    server = await startServerWithAdmin(folder.databaseUrl, folder.dir);
  }, 120_000);
  afterAll(async () => {
    await server?.serve.stop('SIGKILL');
    folder?.cleanup();
  });

  it(
    'reports each key’s id and state; --revoke revokes the live ones, audited as found by the scan at file:line',
    async () => {
      const cli = (...args: string[]) => runCli(args, server.env, folder.dir);
      const make = async (name: string) =>
        JSON.parse((await cli('keys', 'create', '--name', name, '--json')).stdout) as { id: string; key: string };
      const live = await make('live');
      const off = await make('deactivated');
      const dead = await make('revoked');
      expect((await cli('keys', 'deactivate', off.id)).code).toBe(0);
      expect((await cli('keys', 'revoke', dead.id)).code).toBe(0);
      writeFileSync(join(folder.dir, 'leak.txt'), [live.key, off.key, dead.key].join('\n'));

      const first = await cli('scan', 'leak.txt', '--json');
      expect(first.code).toBe(1);
      expect((JSON.parse(first.stdout) as ScanJson).findings.map((f) => [f.key_id, f.status])).toEqual([
        [live.id, 'active'],
        [off.id, 'deactivated'],
        [dead.id, 'revoked'],
      ]);

      const revoked = await cli('scan', 'leak.txt', '--revoke', '--json');
      expect(revoked.code).toBe(1);
      expect((JSON.parse(revoked.stdout) as ScanJson).findings.map((f) => f.revoked)).toEqual([true, true, false]);
      for (const key of [live.key, off.key]) expect((await cli('verify', key, '--json')).stdout).toContain('"code": "REVOKED"');
      const audit = JSON.parse((await cli('audit', '--action', 'key.leaked', '--json')).stdout) as {
        data: { target_id: string; changes: { source: string; location?: string } }[];
      };
      expect(audit.data.map((e) => [e.target_id, e.changes.source, e.changes.location]).sort()).toEqual(
        [
          [live.id, 'scan', 'leak.txt:1'],
          [off.id, 'scan', 'leak.txt:2'],
        ].sort(),
      );

      const after = await cli('scan', 'leak.txt');
      expect(after.code).toBe(0);
      expect(after.stdout + after.stderr).not.toMatch(KEY);
    },
    SLOW,
  );

  it(
    'looks 1 200 fixture keys up in batches without tripping the verify guard, and --revoke still finds the live one',
    async () => {
      const cli = (...args: string[]) => runCli(args, server.env, folder.dir);
      const live = JSON.parse((await cli('keys', 'create', '--name', 'among fixtures', '--json')).stdout) as { id: string; key: string };
      // Checksum-valid keys of no Keyward, as a test suite's fixtures are: past VERIFY_FAILURES_PER_MINUTE (600).
      const fixtures = Array.from({ length: 1_200 }, () => generateKey());
      mkdirSync(join(folder.dir, 'fixtures'), { recursive: true });
      writeFileSync(
        join(folder.dir, 'fixtures', 'keys.ts'),
        `${fixtures.map((k) => `export const k = '${k}';`).join('\n')}\n${live.key}\n`,
      );

      const first = await cli('scan', 'fixtures', '--json');
      expect(first.stderr).toBe('');
      expect(first.code).toBe(1);
      const parsed = JSON.parse(first.stdout) as ScanJson;
      expect(parsed).toMatchObject({ keys: 1_201, live: 1 });
      expect(parsed.findings.filter((f) => f.status === 'not_found')).toHaveLength(1_200);
      expect(parsed.findings.at(-1)).toMatchObject({ key_id: live.id, status: 'active', line: 1_201 });

      const revoked = await cli('scan', 'fixtures', '--revoke', '--json');
      expect(revoked.code).toBe(1);
      expect((JSON.parse(revoked.stdout) as ScanJson).findings.filter((f) => f.revoked).map((f) => f.key_id)).toEqual([live.id]);
      expect((await cli('verify', live.key, '--json')).stdout).toContain('"code": "REVOKED"');
      const audit = JSON.parse((await cli('audit', '--action', 'key.leaked', '--target', live.id, '--json')).stdout) as {
        data: { changes: { source: string; location?: string } }[];
      };
      expect(audit.data.map((e) => e.changes)).toEqual([
        expect.objectContaining({ source: 'scan', location: join('fixtures', 'keys.ts:1201') }),
      ]);
      expect(revoked.stdout + revoked.stderr).not.toMatch(KEY);
    },
    SLOW,
  );
});
