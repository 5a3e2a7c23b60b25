import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKey, hashApiKey } from '@keyward/sdk';
import bcrypt from 'bcryptjs';
import { afterEach, describe, expect, it } from 'vitest';
import { findKeyById } from '../../packages/server/src/keys/repository.js';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, freshDatabase } from '../helpers/db.js';

const operator = { principal: { kind: 'system' as const, name: 'cli' }, ip: null };

async function whoAmI(t: TestApp, key: string) {
  return t.app.inject({ method: 'GET', url: '/v1/api-keys/verify/current', headers: bearer(key) });
}

describe.each(DIALECTS)('key import on %s', (dialect) => {
  let t: TestApp;
  afterEach(async () => t?.close());

  it('imports plaintext keys of any printable form, hashed, and they authenticate', async () => {
    t = await createTestApp({ dialect });
    const legacy = 'Zr4_lJ0y-UrlSafeToken_abcdefghijklmnopqrstuv12'; // a bare token_urlsafe-style key
    const native = generateKey('sk_live');
    const lines = [
      JSON.stringify({ key: legacy, name: 'legacy', scopes: ['inventory:read'], metadata: { plan: 'gold' } }),
      JSON.stringify({ key: native, name: 'native' }),
    ];
    const outcome = await t.container.importer.importRecords(operator, lines, 'plaintext');
    expect(outcome).toEqual({ imported: 2, skipped: 0, errors: [] });

    const me = await whoAmI(t, legacy);
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({ name: 'legacy', scopes: ['inventory:read'], metadata: { plan: 'gold' }, hash_scheme: 'sha256' });
    expect((await whoAmI(t, native)).json()).toMatchObject({ name: 'native', key_prefix: native.slice(0, 'sk_live_'.length + 8) });
  });

  it('imports SHA-256 hashes and bcrypt hashes; a bcrypt key is upgraded to SHA-256 on first use', async () => {
    t = await createTestApp({ dialect });
    const hashedOnly = generateKey('kw');
    const amos = 'amos_1a2b3c4d.s3cretT0kenValue0123456789';
    const lines = [
      JSON.stringify({ key_hash: hashApiKey(hashedOnly), key_prefix: 'kw_legacy', name: 'sha' }),
      JSON.stringify({ key_hash: await bcrypt.hash(amos, 4), lookup_prefix: 'amos_1a2b3c4d', name: 'bcrypt' }),
    ];
    expect(await t.container.importer.importRecords(operator, lines, 'sha256')).toMatchObject({ imported: 1, errors: [{ line: 2 }] });
    expect(await t.container.importer.importRecords(operator, lines.slice(1), 'bcrypt')).toMatchObject({ imported: 1, errors: [] });

    expect((await whoAmI(t, hashedOnly)).json()).toMatchObject({ name: 'sha', key_prefix: 'kw_legacy' });
    const first = await whoAmI(t, amos);
    expect(first.statusCode).toBe(200);
    const id = (first.json() as { id: string }).id;
    const stored = await findKeyById(t.container.db.db, id);
    expect(stored).toMatchObject({ hashScheme: 'sha256', keyHash: hashApiKey(amos) });
    expect((await whoAmI(t, amos)).statusCode).toBe(200);
    expect((await whoAmI(t, 'amos_1a2b3c4d.wrongTokenValue0123456789')).statusCode).toBe(401);
  });

  it('an imported key works at once even right after it was looked up as unknown (negative cache dropped)', async () => {
    t = await createTestApp({ dialect, env: { CACHE_NEGATIVE_TTL_MS: '600000' } });
    const key = generateKey('kw');
    expect((await whoAmI(t, key)).statusCode).toBe(401);
    await t.container.importer.importRecords(operator, [JSON.stringify({ key, name: 'late' })], 'plaintext');
    expect((await whoAmI(t, key)).statusCode).toBe(200);
  });

  it('skips keys already present, rejects bad lines by number, and never echoes a key in an error', async () => {
    t = await createTestApp({ dialect });
    const key = generateKey('kw');
    const tampered = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    const lines = [JSON.stringify({ key }), 'not json', JSON.stringify({ key: tampered }), JSON.stringify({ key: 'short' })];
    const outcome = await t.container.importer.importRecords(operator, lines, 'plaintext');
    expect(outcome.imported).toBe(1);
    expect(outcome.errors.map((e) => e.line)).toEqual([2, 3, 4]);
    expect(JSON.stringify(outcome.errors)).not.toContain(tampered);
    expect(await t.container.importer.importRecords(operator, lines.slice(0, 1), 'plaintext')).toMatchObject({ imported: 0, skipped: 1 });
  });

  it('rejects a record whose name, description or metadata holds a key (push protection), naming the field', async () => {
    t = await createTestApp({ dialect });
    const pasted = generateKey('kw');
    const lines = [
      JSON.stringify({ key: generateKey('kw'), name: `copy of ${pasted}` }),
      JSON.stringify({ key: generateKey('kw'), description: pasted }),
      JSON.stringify({ key: generateKey('kw'), metadata: { notes: [`token=${pasted}`] } }),
      JSON.stringify({ key: generateKey('kw'), name: 'fine' }),
    ];
    const outcome = await t.container.importer.importRecords(operator, lines, 'plaintext');
    expect(outcome.imported).toBe(1);
    expect(outcome.errors.map((e) => [e.line, e.message.split(' ')[0]])).toEqual([
      [1, 'name'],
      [2, 'description'],
      [3, 'metadata.notes.0'],
    ]);
    expect(JSON.stringify(outcome.errors)).not.toContain(pasted);
    expect(JSON.stringify(await t.container.db.db.selectFrom('api_keys').selectAll().execute())).not.toContain(pasted);
  });
});

describe('keyward import (built CLI)', () => {
  it('imports a file with a progress bar and reports counts', async () => {
    const db = await freshDatabase('sqlite');
    try {
      const file = join(db.dir ?? '', 'keys.jsonl');
      const keys = Array.from({ length: 3 }, () => generateKey('kw'));
      writeFileSync(file, `${keys.map((key, i) => JSON.stringify({ key, name: `k${i}` })).join('\n')}\n`);
      const cli = join(import.meta.dirname, '../../packages/server/dist/cli.js');
      const env = { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'silent' };
      const { stdout, stderr } = await promisify(execFile)('node', [cli, 'import', file, '--scheme', 'plaintext'], { env });
      expect(stdout).toContain('imported 3, skipped 0 already present, 0 rejected');
      expect(stderr).toBe(''); // the progress bar is drawn only on a terminal
      for (const key of keys) expect(stdout + stderr).not.toContain(key);
      const listed = await promisify(execFile)('node', [cli, 'keys', 'list'], { env });
      expect(listed.stdout.trim().split('\n')).toHaveLength(4); // a header and three keys
    } finally {
      await db.cleanup();
    }
  });
});
