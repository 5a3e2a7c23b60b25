import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../packages/server/src/store/database.js';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';
import { buildCli, runCli, tempFolder } from '../helpers/cli.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { AUDIENCE, ISSUER, JWT_ENV } from './tokens.js';

let folder: ReturnType<typeof tempFolder>;
beforeAll(async () => {
  await buildCli();
  folder = tempFolder();
});
afterAll(() => folder?.cleanup());

describe('keyward token', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('mints a JWT the server accepts, for the external id, with the configured issuer, audience and ttl', async () => {
    const result = await runCli(
      ['token', '--user', 'cli-user', '--ttl', '15m'],
      { ...JWT_ENV, DATABASE_URL: folder.databaseUrl },
      folder.dir,
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const token = result.stdout.trim();
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ sub: 'cli-user', iss: ISSUER, aud: AUDIENCE });
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(900);
    // It provisions nothing by itself: no database was even opened.
    expect(existsSync(join(folder.dir, 'keyward.db'))).toBe(false);

    t = await createTestApp({ env: JWT_ENV });
    const me = await t.app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ external_id: 'cli-user', tier: 'free' });
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/users/me/api-keys',
      headers: bearer(token),
      payload: { name: 'from cli token' },
    });
    expect(created.statusCode).toBe(201);
  });

  it('defaults to one hour', async () => {
    const result = await runCli(['token', '--user', 'u'], { JWT_SECRET: JWT_ENV.JWT_SECRET }, folder.dir);
    const claims = decodeJwt(result.stdout.trim());
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBe(3600);
    expect(claims.iss).toBeUndefined();
  });

  it('fails clearly without JWT_SECRET, and on a bad --ttl', async () => {
    const noSecret = await runCli(['token', '--user', 'u'], {}, folder.dir);
    expect(noSecret.code).toBe(1);
    expect(noSecret.stdout).toBe('');
    expect(noSecret.stderr).toContain('JWT_SECRET is not set');
    const badTtl = await runCli(['token', '--user', 'u', '--ttl', 'soon'], { JWT_SECRET: JWT_ENV.JWT_SECRET }, folder.dir);
    expect(badTtl.code).not.toBe(0);
    expect(badTtl.stderr).toContain('duration');
  });

  it('documents the commands in --help', async () => {
    const help = await runCli(['--help'], {}, folder.dir);
    expect(help.stdout).toMatch(/users/);
    expect(help.stdout).toMatch(/token/);
    const users = await runCli(['users', '--help'], {}, folder.dir);
    expect(users.stdout).toMatch(/create/);
    expect(users.stdout).toMatch(/set-tier/);
    const token = await runCli(['token', '--help'], {}, folder.dir);
    expect(token.stdout).toContain('--ttl');
    expect(token.stdout).toContain('JWT_SECRET');
  });
});

describe.each(DIALECTS)('keyward users on %s', (dialect) => {
  let database: FreshDatabase;
  beforeAll(async () => {
    database = await freshDatabase(dialect);
  });
  afterAll(async () => database?.cleanup());

  it('creates a user and changes its tier by id or external id; errors exit 1 with the code', async () => {
    const env = { DATABASE_URL: database.url };
    const created = await runCli(
      ['users', 'create', '--external-id', 'acme-42', '--email', 'ops@acme.test', '--tier', 'pro'],
      env,
      folder.dir,
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const id = /created user (\S+)/.exec(created.stdout)?.[1];
    expect(id).toBeDefined();

    expect((await runCli(['users', 'set-tier', 'acme-42', 'enterprise'], env, folder.dir)).stdout).toContain('enterprise');
    expect((await runCli(['users', 'set-tier', id ?? '', 'free'], env, folder.dir)).code).toBe(0);

    const failures: Array<[string[], string]> = [
      [['users', 'create', '--external-id', 'acme-42'], 'USER_EXISTS'],
      [['users', 'create', '--external-id', 'other', '--tier', 'gold'], 'INVALID_REQUEST'],
      [['users', 'set-tier', 'acme-42', 'gold'], 'INVALID_REQUEST'],
      [['users', 'set-tier', 'nobody', 'pro'], 'USER_NOT_FOUND'],
    ];
    const results = await Promise.all(failures.map(([args]) => runCli(args, env, folder.dir)));
    results.forEach((result, i) => {
      expect(result.code, failures[i]?.[0].join(' ')).toBe(1);
      expect(result.stderr).toContain(failures[i]?.[1]);
    });

    const db = openDatabase(database.url);
    try {
      const users = await db.db.selectFrom('users').selectAll().execute();
      expect(users).toEqual([expect.objectContaining({ id, external_id: 'acme-42', email: 'ops@acme.test', tier: 'free' })]);
      const audits = await db.db
        .selectFrom('audit_log')
        .selectAll()
        .where('target_id', '=', id ?? '')
        .orderBy('id')
        .execute();
      expect(audits.map((a) => [a.action, a.actor_type, a.actor_id])).toEqual([
        ['user.create', 'system', 'cli'],
        ['user.update', 'system', 'cli'],
        ['user.update', 'system', 'cli'],
      ]);
    } finally {
      await db.close();
    }
  });
});
