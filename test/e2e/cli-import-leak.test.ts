import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey, hashApiKey } from '@keyward/sdk';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, runCli, tempFolder } from '../helpers/cli.js';

// `keyward import FILE.csv` must never print a key (or a hash) it read from the file.
beforeAll(buildCli, 120_000);

describe('keyward import (CSV) error messages', () => {
  it('a CSV without a header row: the "unknown CSV column" error does not print the first key', async () => {
    const folder = tempFolder();
    try {
      const key = generateKey();
      const file = join(folder.dir, 'keys.csv');
      writeFileSync(file, `${key},billing\n${generateKey()},other\n`);
      const result = await runCli(['import', file, '--scheme', 'plaintext'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
      // The header is lower-cased before it is reported: the key comes out case-folded.
      expect((result.stderr + result.stdout).toLowerCase()).not.toContain(key.toLowerCase());
    } finally {
      folder.cleanup();
    }
  }, 60_000);

  it('a CSV without a header row, sha256 scheme: the error does not print the hash', async () => {
    const folder = tempFolder();
    try {
      const hash = hashApiKey(generateKey());
      const file = join(folder.dir, 'hashes.csv');
      writeFileSync(file, `${hash},sk_live_1\n`);
      const result = await runCli(['import', file, '--scheme', 'sha256'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
      expect(result.stderr + result.stdout).not.toContain(hash);
    } finally {
      folder.cleanup();
    }
  }, 60_000);

  it('a malformed quote: the "not valid CSV" error does not print the key in the cell', async () => {
    const folder = tempFolder();
    try {
      const key = generateKey();
      const file = join(folder.dir, 'keys.csv');
      // A stray quote inside an unquoted cell that holds the key.
      writeFileSync(file, `key,name\n${key}"x,billing\n`);
      const result = await runCli(['import', file, '--scheme', 'plaintext'], { DATABASE_URL: folder.databaseUrl }, folder.dir);
      expect(result.stderr + result.stdout).not.toContain(key);
    } finally {
      folder.cleanup();
    }
  }, 60_000);
});
