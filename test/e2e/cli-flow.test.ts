import { displayPrefix, generateKey } from '@keyward/sdk';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, call, runCli, type ServeProcess, startServe, tempFolder } from '../helpers/cli.js';

// The flow a user of a classic admin-key API expects, against the built CLI (`keyward serve`) on a
// temporary SQLite database and a free port, over real HTTP.

const FUTURE = '2031-06-01T12:00:00.000Z';
const GENERATED_KEY_LINE = /^ {4}(kw_[A-Za-z0-9]{49})$/;

type Json = Record<string, unknown>;
const ids = (body: Json) => (body.data as Json[]).map((k) => k.id);

/** The generated admin key printed after the "Save it now" line, checking the print's exact shape. */
function printedAdminKey(stdout: string): string {
  const lines = stdout.split('\n');
  const at = lines.findIndex((line) => line.includes('Save it now'));
  expect(at).toBeGreaterThanOrEqual(0);
  expect(lines[at + 1]).toBe('');
  const match = GENERATED_KEY_LINE.exec(lines[at + 2] ?? '');
  expect(match).not.toBeNull();
  return match?.[1] ?? '';
}

beforeAll(buildCli, 120_000);

// Each test spawns its own processes on its own folder and port, so they run side by side. Starting the
// built CLI costs 0.3-2 s (it loads Fastify, Kysely, pg, ioredis...), hence the generous time limit.
const SLOW = 90_000;

describe.concurrent('keyward serve and the CLI', () => {
  it(
    'bootstraps with INITIAL_ADMIN_KEY, then creates, lists, reads, patches, deactivates, activates and deletes keys; SIGTERM exits 0',
    async () => {
      const folder = tempFolder();
      const adminKey = generateKey();
      const server = await startServe({ DATABASE_URL: folder.databaseUrl, INITIAL_ADMIN_KEY: adminKey, LOG_LEVEL: 'debug' }, folder.dir);
      try {
        const base = server.url;
        expect(server.stdout()).toContain(`Admin key from INITIAL_ADMIN_KEY stored (hashed) as ${displayPrefix(adminKey)}…`);
        expect(server.stdout()).not.toContain('Save it now');
        expect((await call(base, 'GET', '/healthz')).json).toEqual({ status: 'ok' });
        expect((await call(base, 'GET', '/readyz')).status).toBe(200);

        const me = await call(base, 'GET', '/v1/api-keys/verify/current', { key: adminKey });
        expect(me.status).toBe(200);
        expect(me.json).toMatchObject({ is_admin: true, name: 'Initial admin key', key_prefix: displayPrefix(adminKey) });
        const adminId = me.json.id;

        // Create: name, is_admin, expires_at, metadata.
        const created = await call(base, 'POST', '/v1/api-keys', {
          key: adminKey,
          body: { name: 'Billing service', is_admin: false, expires_at: FUTURE, metadata: { team: 'billing', tier: 2 } },
        });
        expect(created.status).toBe(201);
        expect(created.headers.get('cache-control')).toBe('no-store');
        expect(created.json).toMatchObject({
          name: 'Billing service',
          is_admin: false,
          expires_at: FUTURE,
          metadata: { team: 'billing', tier: 2 },
        });
        const key = String(created.json.key);
        const id = created.json.id;
        expect(key).toMatch(/^kw_[A-Za-z0-9]{49}$/);

        // List, with and without include_inactive; get.
        const listed = await call(base, 'GET', '/v1/api-keys', { key: adminKey });
        expect(listed.status).toBe(200);
        expect(ids(listed.json)).toEqual([id, adminId]);
        expect(listed.text).not.toContain(key);
        const got = await call(base, 'GET', `/v1/api-keys/${id}`, { key: adminKey, via: 'x-api-key' });
        expect(got.json).toMatchObject({ id, name: 'Billing service', status: 'active' });
        expect(got.text).not.toContain(key);

        // Patch name and metadata.
        const patched = await call(base, 'PATCH', `/v1/api-keys/${id}`, {
          key: adminKey,
          body: { name: 'Billing service (prod)', metadata: { team: 'billing', env: 'prod' } },
        });
        expect(patched.status).toBe(200);
        expect(patched.json).toMatchObject({
          name: 'Billing service (prod)',
          metadata: { team: 'billing', env: 'prod' },
          expires_at: FUTURE,
        });

        // Deactivate: gone from the default list, there with include_inactive, and the key stops working.
        const off = await call(base, 'POST', `/v1/api-keys/${id}/deactivate`, { key: adminKey });
        expect(off.json).toMatchObject({ is_active: false, status: 'inactive' });
        expect(ids((await call(base, 'GET', '/v1/api-keys', { key: adminKey })).json)).toEqual([adminId]);
        expect(ids((await call(base, 'GET', '/v1/api-keys?include_inactive=true', { key: adminKey })).json)).toEqual([id, adminId]);
        const refused = await call(base, 'GET', '/v1/api-keys/verify/current', { key });
        expect(refused.status).toBe(401);
        expect(refused.headers.get('www-authenticate')).toContain('Bearer');
        expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(refused.json.code).toBe('KEY_DISABLED');

        // Activate: the key works again and reads its own, patched record.
        expect((await call(base, 'POST', `/v1/api-keys/${id}/activate`, { key: adminKey })).json).toMatchObject({ status: 'active' });
        const self = await call(base, 'GET', '/v1/api-keys/verify/current', { key, via: 'x-api-key' });
        expect(self.status).toBe(200);
        expect(self.json).toMatchObject({ id, name: 'Billing service (prod)', metadata: { env: 'prod' }, is_admin: false });
        expect(self.text).not.toContain(key);
        // A regular key cannot manage keys.
        expect((await call(base, 'GET', '/v1/api-keys', { key })).status).toBe(403);

        // A second admin key, created with X-API-Key, can do what the first can.
        const second = await call(base, 'POST', '/v1/api-keys', {
          key: adminKey,
          via: 'x-api-key',
          body: { name: 'Second admin', is_admin: true },
        });
        expect(second.status).toBe(201);
        const secondKey = String(second.json.key);
        expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key: secondKey })).json).toMatchObject({ is_admin: true });
        const bySecond = await call(base, 'POST', '/v1/api-keys', { key: secondKey, body: { name: 'made by the second admin' } });
        expect(bySecond.status).toBe(201);
        expect(bySecond.json.created_by).toBe(second.json.id);
        expect((await call(base, 'DELETE', `/v1/api-keys/${bySecond.json.id}`, { key: secondKey })).status).toBe(204);
        expect(ids((await call(base, 'GET', '/v1/api-keys', { key: secondKey })).json)).toEqual([second.json.id, id, adminId]);

        // Delete: 204, then 404, and the key no longer authenticates.
        const deleted = await call(base, 'DELETE', `/v1/api-keys/${id}`, { key: adminKey });
        expect(deleted.status).toBe(204);
        expect(deleted.text).toBe('');
        const missing = await call(base, 'GET', `/v1/api-keys/${id}`, { key: adminKey });
        expect(missing.status).toBe(404);
        expect(missing.json.code).toBe('KEY_NOT_FOUND');
        expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key })).status).toBe(401);

        // LOG_LEVEL=debug writes a line per request (and never a key: see no-plaintext.test.ts).
        expect(server.stdout()).toMatch(/"msg":"incoming request"/);
        expect(server.stderr()).toBe('');

        expect(await server.stop('SIGTERM')).toBe(0);
        expect(server.stdout()).toContain('SIGTERM received');
      } finally {
        await server.stop('SIGKILL');
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'prints a generated admin key once, with a "Save it now" line, when INITIAL_ADMIN_KEY is not set',
    async () => {
      const folder = tempFolder();
      const servers: ServeProcess[] = [];
      try {
        const first = await startServe({ DATABASE_URL: folder.databaseUrl }, folder.dir);
        servers.push(first);
        const key = printedAdminKey(first.stdout());
        expect(first.stdout().split(key)).toHaveLength(2);
        const me = await call(first.url, 'GET', '/v1/api-keys/verify/current', { key });
        expect(me.status).toBe(200);
        expect(me.json).toMatchObject({ is_admin: true });
        expect(await first.stop()).toBe(0);

        // The next start finds the admin key and prints nothing; the key still works.
        const again = await startServe({ DATABASE_URL: folder.databaseUrl }, folder.dir);
        servers.push(again);
        expect(again.stdout()).not.toContain('Save it now');
        expect(again.stdout()).not.toContain(key);
        expect((await call(again.url, 'GET', '/v1/api-keys', { key })).status).toBe(200);
        expect(await again.stop()).toBe(0);
      } finally {
        for (const server of servers) await server.stop('SIGKILL');
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'admin create --name N --expires ISO prints a new admin key once, and it works',
    async () => {
      const folder = tempFolder();
      let server: ServeProcess | undefined;
      try {
        const created = await runCli(
          ['admin', 'create', '--name', 'CI admin', '--expires', '2031-01-01T00:00:00Z'],
          { DATABASE_URL: folder.databaseUrl },
          folder.dir,
        );
        expect(created.code).toBe(0);
        expect(created.stderr).toBe('');
        const lines = created.stdout.trim().split('\n');
        expect(lines).toHaveLength(2);
        expect(lines[0]).toMatch(/^Admin key "CI admin" \(id [0-9a-f-]{36}\)\. Save it now/);
        const key = lines[1] ?? '';
        expect(key).toMatch(/^kw_[A-Za-z0-9]{49}$/);

        // The database already has an admin key, so serve generates none.
        server = await startServe({ DATABASE_URL: folder.databaseUrl }, folder.dir);
        expect(server.stdout()).not.toContain('Save it now');
        const me = await call(server.url, 'GET', '/v1/api-keys/verify/current', { key });
        expect(me.status).toBe(200);
        expect(me.json).toMatchObject({ name: 'CI admin', is_admin: true, expires_at: '2031-01-01T00:00:00.000Z', created_by: 'cli' });
        expect(await server.stop()).toBe(0);

        // Bad input: an error on stderr, no key printed; exit code 1 when Keyward refused, 2 for a usage error.
        const bad: [string[], number][] = [
          [['admin', 'create', '--name', 'late', '--expires', '2020-01-01T00:00:00Z'], 1],
          [['admin', 'create', '--name', 'bad', '--expires', 'next tuesday'], 2],
          [['admin', 'create'], 2],
        ];
        const failures = await Promise.all(bad.map(([args]) => runCli(args, { DATABASE_URL: folder.databaseUrl }, folder.dir)));
        failures.forEach((failed, i) => {
          expect(failed.code, bad[i]?.[0].join(' ')).toBe(bad[i]?.[1]);
          expect(failed.stdout).not.toMatch(/kw_[A-Za-z0-9]{49}/);
          expect(failed.stderr).not.toBe('');
        });
        expect(failures[0]?.stderr).toContain('INVALID_REQUEST');
      } finally {
        await server?.stop('SIGKILL');
        folder.cleanup();
      }
    },
    SLOW,
  );

  it(
    'migrate status, up, down report what they did',
    async () => {
      const folder = tempFolder();
      const env = { DATABASE_URL: folder.databaseUrl };
      try {
        const before = await runCli(['migrate', 'status'], env, folder.dir);
        expect(before.code).toBe(0);
        const pending = before.stdout.trim().split('\n');
        expect(pending[0]).toBe('pending  0001-initial');
        for (const line of pending) expect(line).toMatch(/^pending {2}\d{4}-[a-z0-9-]+$/);
        const names = pending.map((line) => line.replace('pending  ', ''));

        const up = await runCli(['migrate', 'up'], env, folder.dir);
        expect(up).toMatchObject({ code: 0, stdout: `applied: ${names.join(', ')}\n` });
        expect((await runCli(['migrate', 'up'], env, folder.dir)).stdout).toBe('already up to date\n');
        const applied = (await runCli(['migrate', 'status'], env, folder.dir)).stdout.trim().split('\n');
        expect(applied).toHaveLength(names.length);
        applied.forEach((line, i) => {
          expect(line).toMatch(new RegExp(`^applied {2}${names[i]} {2}\\d{4}-\\d{2}-\\d{2}T[\\d:.]+Z$`));
        });

        const last = names.at(-1);
        const down = await runCli(['migrate', 'down'], env, folder.dir);
        expect(down).toMatchObject({ code: 0, stdout: `reverted: ${last}\n` });
        const after = (await runCli(['migrate', 'status'], env, folder.dir)).stdout.trim().split('\n');
        expect(after.at(-1)).toBe(`pending  ${last}`);
        expect((await runCli(['migrate', 'up'], env, folder.dir)).stdout).toBe(`applied: ${last}\n`);
      } finally {
        folder.cleanup();
      }
    },
    SLOW,
  );
});
