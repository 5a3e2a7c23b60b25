import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKey, hashApiKey, isWellFormed, parseKey, verifyApiKeyHash } from '@keyward/sdk';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, REPO } from '../helpers/cli.js';

const run = promisify(execFile);

describe('@keyward/sdk as a package', () => {
  beforeAll(async () => {
    await buildCli(); // builds packages/sdk too
  });

  it('resolves its entry point and framework subpaths from the built files', async () => {
    const script = `
      const entries = await Promise.all(['@keyward/sdk', '@keyward/sdk/fastify', '@keyward/sdk/express', '@keyward/sdk/hono'].map((m) => import(m)));
      console.log(JSON.stringify(entries.map((e) => Object.keys(e).sort())));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO });
    const [main, fastify, express, hono] = JSON.parse(stdout) as string[][];
    expect(main).toEqual(
      expect.arrayContaining([
        'hashApiKey',
        'verifyApiKeyHash',
        'parseKey',
        'isWellFormed',
        'KeywardClient',
        'KeywardError',
        'createKeywardAuth',
      ]),
    );
    expect(fastify).toContain('keywardFastify');
    expect(express).toContain('keywardExpress');
    expect(hono).toContain('keywardHono');
  });

  it('needs no framework at run time: the adapters import only types from Fastify, Express and Hono', () => {
    for (const file of ['index.js', 'middleware.js', 'fastify.js', 'express.js', 'hono.js']) {
      const code = readFileSync(join(REPO, 'packages/sdk/dist', file), 'utf8');
      expect(code, file).not.toMatch(/from ['"](fastify|express|hono)['"]|require\(['"](fastify|express|hono)['"]\)/);
    }
  });
});

describe('owning records by key hash (the README pattern)', () => {
  it('lists "my sessions" by the hash of the presented key, never storing the key', () => {
    const sessions: Array<{ id: string; ownerKeyHash: string }> = [];
    const mine = generateKey('kw');
    const theirs = generateKey('kw');
    for (const [id, key] of [
      ['s1', mine],
      ['s2', theirs],
      ['s3', mine],
    ] as const) {
      if (isWellFormed(key)) sessions.push({ id, ownerKeyHash: hashApiKey(key) });
    }
    const myHash = hashApiKey(mine);
    expect(sessions.filter((s) => s.ownerKeyHash === myHash).map((s) => s.id)).toEqual(['s1', 's3']);
    expect(JSON.stringify(sessions)).not.toContain(parseKey(mine)?.secret);
    expect(sessions.every((s) => verifyApiKeyHash(mine, s.ownerKeyHash) === (s.ownerKeyHash === myHash))).toBe(true);
  });
});
