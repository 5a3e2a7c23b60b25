import { Writable } from 'node:stream';
import { generateKey, hashApiKey } from '@keyward/sdk';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../packages/server/src/app.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { loggerOptions } from '../../packages/server/src/logger.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { DIALECTS, freshDatabase } from '../helpers/db.js';

// Two imports of the same keys at once (a CLI retry after a lost answer, two operators) on PostgreSQL.
describe.skipIf(!DIALECTS.includes('postgres'))('POST /v1/api-keys/import, concurrent batches with the same keys (PostgreSQL)', () => {
  it('answers both (imported / skipped), never 500, and logs no key hash', async () => {
    const db = await freshDatabase('postgres');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const adminKey = generateKey('kw');
    const config = loadConfig({ DATABASE_URL: db.url, LOG_LEVEL: 'info', INITIAL_ADMIN_KEY: adminKey });
    const container = createContainer(config);
    await migrateUp(container.db.db);
    await container.keys.bootstrap(config.initialAdminKey);
    const app = await buildApp(container, { loggerInstance: pino(loggerOptions('info'), sink) });
    try {
      const hashes = Array.from({ length: 300 }, () => hashApiKey(generateKey()));
      const body = { scheme: 'sha256', records: hashes.map((key_hash) => ({ key_hash })) };
      const send = () =>
        app.inject({ method: 'POST', url: '/v1/api-keys/import', headers: { authorization: `Bearer ${adminKey}` }, payload: body });
      const answers = await Promise.all([send(), send()]);
      const statuses = answers.map((a) => a.statusCode);
      const log = lines.join('');
      const leaked = hashes.filter((h) => log.includes(h));
      expect(statuses).toEqual([200, 200]);
      expect(leaked).toEqual([]);
    } finally {
      await app.close();
      await container.close();
      await db.cleanup();
    }
  });
});
