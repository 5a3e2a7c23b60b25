import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, type RemoteServer, runCli, startServerWithAdmin, tempFolder } from '../helpers/cli.js';

// The CLI against a running server (KEYWARD_URL, KEYWARD_API_KEY): the built CLI, a real `keyward serve`, and no
// DATABASE_URL in the CLI's environment, so every answer comes through the HTTP API.

const SLOW = 90_000;
const KEY = /kw_[A-Za-z0-9]{49}/;

let folder: ReturnType<typeof tempFolder>;
let server: RemoteServer;

beforeAll(async () => {
  await buildCli();
  folder = tempFolder();
  server = await startServerWithAdmin(folder.databaseUrl, folder.dir);
}, 120_000);

afterAll(async () => {
  await server?.serve.stop('SIGKILL');
  folder?.cleanup();
});

const cli = (...args: string[]) => runCli(args, server.env, folder.dir);
const json = <T>(stdout: string) => JSON.parse(stdout) as T;

describe.concurrent('keyward against a running server (built CLI)', () => {
  it(
    'keys: create --json, get, list as a table, roll, revoke; verify then says REVOKED',
    async () => {
      const created = await cli('keys', 'create', '--name', 'billing', '--scopes', 'invoices:read', '--json');
      expect(created).toMatchObject({ code: 0, stderr: '' });
      const key = json<{ id: string; key: string; name: string; scopes: string[] }>(created.stdout);
      expect(key).toMatchObject({ name: 'billing', scopes: ['invoices:read'] });
      expect(key.key).toMatch(KEY);

      const shown = await cli('keys', 'get', key.id);
      expect(shown).toMatchObject({ code: 0, stderr: '' });
      expect(shown.stdout).toMatch(new RegExp(`^id +${key.id}$`, 'm'));
      expect(shown.stdout).toMatch(/^scopes +invoices:read$/m);

      const listed = await cli('keys', 'list', '--limit', '100');
      expect(listed.code).toBe(0);
      const [header, ...rows] = listed.stdout.trimEnd().split('\n');
      expect(header).toMatch(/^ID +PREFIX +STATUS +ADMIN +CREATED +NAME$/);
      // Aligned: every row's prefix starts in the header's PREFIX column.
      const column = header?.indexOf('PREFIX') ?? -1;
      const row = rows.find((line) => line.startsWith(key.id)) ?? '';
      expect(row.slice(column)).toMatch(/^kw_\S+ +active +- +\S+ \S+ +billing$/);

      const rolled = await cli('keys', 'roll', key.id, '--grace', '1h');
      expect(rolled.code).toBe(0);
      const [notice, newKey, ...rest] = rolled.stdout.trimEnd().split('\n');
      expect(notice).toMatch(/will not be shown again/);
      expect(newKey).toMatch(new RegExp(`^${KEY.source}$`));
      expect(rest).toEqual([]);

      expect(await cli('keys', 'revoke', key.id)).toMatchObject({ code: 0, stdout: expect.stringMatching(/^revoked /) });
      const verified = await cli('verify', key.key);
      expect(verified.code).toBe(1);
      expect(verified.stdout).toMatch(/^code +REVOKED$/m);
      const verifiedJson = await cli('verify', newKey ?? '', '--json');
      expect(verifiedJson.code).toBe(0);
      expect(json(verifiedJson.stdout)).toMatchObject({ valid: true, code: 'VALID' });

      // The key is printed only by the commands that issued it.
      for (const result of [shown, listed, verified, verifiedJson]) expect(result.stdout + result.stderr).not.toMatch(KEY);
    },
    SLOW,
  );

  it(
    'users: create, set-tier, delete (by external id), with tables and --json',
    async () => {
      const created = await cli('users', 'create', '--external-id', 'acme-7', '--email', 'ops@acme.test', '--json');
      expect(created).toMatchObject({ code: 0, stderr: '' });
      const user = json<{ id: string; tier: string }>(created.stdout);
      expect(user.tier).toBe('free');

      const tiered = await cli('users', 'set-tier', 'acme-7', 'pro');
      expect(tiered).toMatchObject({ code: 0, stdout: `user ${user.id} (external id acme-7) is now on the pro tier\n` });
      const shown = await cli('users', 'get', user.id);
      expect(shown.stdout).toMatch(/^tier +pro$/m);

      const refused = await cli('users', 'set-tier', 'acme-7', 'gold');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^keyward: INVALID_REQUEST: body\.tier: .+\n$/);

      expect(await cli('users', 'delete', 'acme-7', '--json')).toMatchObject({ code: 0 });
      const gone = await cli('users', 'get', 'acme-7');
      expect(gone).toMatchObject({ code: 1, stdout: '' });
      expect(gone.stderr).toMatch(/^keyward: USER_NOT_FOUND\b.*\n$/);
    },
    SLOW,
  );

  it(
    'exit codes: 0 for --version, 2 for a usage error, 1 with code and detail on one line for a 4xx',
    async () => {
      const [version, unknownOption, noServer, missing, tooMany] = await Promise.all([
        cli('--version'),
        cli('keys', 'list', '--colour'),
        runCli(['keys', 'get', 'x'], {}, folder.dir),
        cli('keys', 'get', '01a00000-0000-7000-8000-000000000000'),
        cli('keys', 'list', '--limit', '500'),
      ]);
      expect(version).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/) });
      expect(unknownOption.code).toBe(2);
      expect(unknownOption.stderr).toContain("unknown option '--colour'");
      expect(noServer).toMatchObject({ code: 2, stdout: '' });
      expect(noServer.stderr).toContain('set KEYWARD_URL and KEYWARD_API_KEY');
      expect(missing).toMatchObject({ code: 1, stdout: '', stderr: 'keyward: KEY_NOT_FOUND: No such API key\n' });
      expect(tooMany).toMatchObject({ code: 1, stdout: '' });
      expect(tooMany.stderr).toBe('keyward: INVALID_REQUEST: querystring.limit: must be <= 100\n');
    },
    SLOW,
  );

  it(
    'imports a CSV file through POST /v1/api-keys/import: counts, rejected lines, audited, the keys verify',
    async () => {
      const keys = [generateKey(), generateKey()];
      const file = join(folder.dir, 'remote.csv');
      writeFileSync(
        file,
        [
          'key,name,scopes,metadata',
          `${keys[0]},acme,"orders:read orders:write","{""plan"":""gold""}"`,
          'short,bad,,',
          `${keys[1]},"Smith, Jones",,`,
        ].join('\n'),
      );
      const imported = await cli('import', file, '--scheme', 'plaintext', '--json');
      expect(imported.code).toBe(1);
      expect(json(imported.stdout)).toEqual({
        imported: 2,
        skipped: 0,
        rejected: 1,
        errors: [{ line: 3, message: expect.stringMatching(/^key must be/) }],
      });
      expect(imported.stdout + imported.stderr).not.toContain(keys[0]);

      const again = await cli('import', file, '--scheme', 'plaintext');
      expect(again.stdout).toBe('imported 0, skipped 2 already present, 1 rejected\n');
      expect(again.stderr).toMatch(/^line 3: key must be/);

      const verified = json<{ valid: boolean; name: string; scopes: string[]; metadata: object }>(
        (await cli('verify', keys[0] ?? '', '--json')).stdout,
      );
      expect(verified).toMatchObject({ valid: true, name: 'acme', scopes: ['orders:read', 'orders:write'], metadata: { plan: 'gold' } });
      expect(json<{ name: string }>((await cli('verify', keys[1] ?? '', '--json')).stdout).name).toBe('Smith, Jones');

      const audit = json<{ data: { action: string; actor_type: string; changes: Record<string, unknown> }[] }>(
        (await cli('audit', '--action', 'key.create', '--limit', '100', '--json')).stdout,
      );
      const fromImport = audit.data.filter((entry) => entry.changes.source === 'import');
      expect(fromImport).toHaveLength(2);
      expect(fromImport.every((entry) => entry.actor_type === 'api_key')).toBe(true);
    },
    SLOW,
  );
});
