import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { displayPrefix, generateKey, hashApiKey } from '@keyward/sdk';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, call, runCli, startServe, tempFolder } from '../helpers/cli.js';

// After a full flow against the built server, no plaintext key may be found in any SQLite file (db, -wal,
// -shm) or in anything the server wrote, except the one intentional print of a generated admin key.

/** Every file in the database folder, read now, as one buffer per file name. */
function databaseFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name))]));
}

/** The parts of a key that must never be stored or logged: all of it, and the secret after the display prefix. */
function secretParts(key: string): string[] {
  return [key, key.slice(displayPrefix(key).length)];
}

function findIn(files: Map<string, Buffer>, needle: string): string[] {
  return [...files].filter(([, content]) => content.includes(Buffer.from(needle, 'utf8'))).map(([name]) => name);
}

beforeAll(buildCli, 120_000);

describe('no plaintext key at rest or in the log', () => {
  it('after bootstrap, create, use, patch, deactivate, revoke and delete', { timeout: 90_000 }, async () => {
    const folder = tempFolder();
    const server = await startServe({ DATABASE_URL: folder.databaseUrl, LOG_LEVEL: 'trace' }, folder.dir);
    try {
      const base = server.url;
      const lines = server.stdout().split('\n');
      const saveAt = lines.findIndex((line) => line.includes('Save it now'));
      const printed = /^ {4}(kw_[A-Za-z0-9]{49})$/.exec(lines[saveAt + 2] ?? '');
      expect(printed).not.toBeNull();
      const admin = printed?.[1] ?? '';

      /** Every plaintext the flow sees: created keys, and keys presented that the server must not keep. */
      const plaintexts = new Map<string, string>([['generated admin key', admin]]);
      /** Keys that still exist at the end, whose hash must be in the database. */
      const stored = new Set<string>([admin]);

      const create = async (label: string, body: Record<string, unknown>, as = admin, via: 'bearer' | 'x-api-key' = 'bearer') => {
        const response = await call(base, 'POST', '/v1/api-keys', { key: as, via, body: { name: label, ...body } });
        expect(response.status, label).toBe(201);
        const key = String(response.json.key);
        plaintexts.set(label, key);
        stored.add(key);
        return { key, id: String(response.json.id) };
      };

      const regular = await create('regular', { metadata: { team: 'ops' }, expires_at: '2031-01-01T00:00:00Z' });
      const custom = await create('custom prefix', { prefix: 'sk_live', scopes: ['inventory:read'] });
      const second = await create('second admin', { is_admin: true }, admin, 'x-api-key');
      const writer = await create('writer', { scopes: ['keyward:keys:write', 'inventory:*'] }, second.key);
      const byWriter = await create('made by writer', { scopes: ['inventory:read'] }, writer.key, 'x-api-key');
      const doomed = await create('revoked', {});
      const gone = await create('deleted', {});

      // A key made by the CLI while the server runs: its one print is to the CLI's own stdout.
      const cli = await runCli(['admin', 'create', '--name', 'from the CLI'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
      expect(cli.code).toBe(0);
      const cliKey = cli.stdout.trim().split('\n').at(-1) ?? '';
      expect(cli.stdout.split(cliKey)).toHaveLength(2);
      plaintexts.set('CLI admin key', cliKey);
      stored.add(cliKey);

      // Use every key, both ways, and change them.
      for (const key of [admin, regular.key, custom.key, second.key, writer.key, byWriter.key, cliKey]) {
        expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key })).status).toBe(200);
        expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key, via: 'x-api-key' })).status).toBe(200);
      }
      expect((await call(base, 'GET', '/v1/api-keys?include_inactive=true', { key: cliKey })).status).toBe(200);
      expect((await call(base, 'PATCH', `/v1/api-keys/${regular.id}`, { key: writer.key, body: { name: 'renamed' } })).status).toBe(200);
      expect((await call(base, 'POST', `/v1/api-keys/${custom.id}/deactivate`, { key: admin })).status).toBe(200);
      expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key: custom.key })).status).toBe(401);
      expect((await call(base, 'POST', `/v1/api-keys/${custom.id}/activate`, { key: admin })).status).toBe(200);
      expect((await call(base, 'POST', `/v1/api-keys/${doomed.id}/revoke`, { key: admin })).status).toBe(200);
      expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key: doomed.key })).status).toBe(401);
      expect((await call(base, 'DELETE', `/v1/api-keys/${gone.id}`, { key: admin })).status).toBe(204);
      expect((await call(base, 'GET', '/v1/api-keys/verify/current', { key: gone.key })).status).toBe(401);
      stored.delete(gone.key);

      // Keys presented but never issued, and a key smuggled into a body that is refused: none may be kept.
      const unknown = generateKey();
      const tampered = `${regular.key.slice(0, -1)}${regular.key.endsWith('0') ? '1' : '0'}`;
      const foreign = randomBytes(32).toString('base64url');
      const smuggled = generateKey();
      for (const [label, key] of [
        ['unknown key', unknown],
        ['tampered key', tampered],
        ['foreign key', foreign],
      ] as const) {
        plaintexts.set(label, key);
        expect((await call(base, 'GET', '/v1/api-keys', { key })).status).toBe(401);
        expect((await call(base, 'GET', '/v1/api-keys', { key, via: 'x-api-key' })).status).toBe(401);
      }
      plaintexts.set('key in a refused body', smuggled);
      const refused = await call(base, 'POST', '/v1/api-keys', { key: admin, body: { name: 'smuggler', key: smuggled } });
      expect(refused.status).toBe(400);
      expect(refused.text).not.toContain(smuggled);

      const scan = (when: string) => {
        const files = databaseFiles(folder.dir);
        expect([...files.keys()].some((name) => name.endsWith('.db'))).toBe(true);
        for (const [label, key] of plaintexts) {
          for (const part of secretParts(key)) expect(findIn(files, part), `${when}: ${label} in ${[...files.keys()]}`).toEqual([]);
        }
        // The scan reads the right files: what is stored (hash, display prefix) is found in them.
        for (const key of stored) {
          expect(findIn(files, hashApiKey(key)).length, `${when}: hash of a stored key`).toBeGreaterThan(0);
          expect(findIn(files, displayPrefix(key)).length, `${when}: display prefix`).toBeGreaterThan(0);
        }
      };
      // While running (rows may be only in the WAL), and after shutdown (checkpointed into the db file).
      scan('running');
      expect(await server.stop('SIGTERM')).toBe(0);
      scan('stopped');

      // The log: the generated admin key appears exactly once, on its own line after "Save it now".
      const log = `${server.stdout()}\n${server.stderr()}`;
      expect(log.split(admin)).toHaveLength(2);
      const logLines = server.stdout().split('\n');
      expect(logLines[saveAt + 2]).toBe(`    ${admin}`);
      const rest = [...logLines.slice(0, saveAt + 2), ...logLines.slice(saveAt + 3), ...server.stderr().split('\n')].join('\n');
      for (const [label, key] of plaintexts) {
        for (const part of secretParts(key)) expect(rest.includes(part), `log: ${label}`).toBe(false);
      }
      // ...and the log is worth scanning: a line per request, with the routes and ids in it.
      expect(rest.match(/"msg":"incoming request"/g)?.length ?? 0).toBeGreaterThan(30);
      expect(rest).toContain(regular.id);
    } finally {
      await server.stop('SIGKILL');
      folder.cleanup();
    }
  });
});
