import { Writable } from 'node:stream';
import { generateKey } from '@keyward/sdk';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../packages/server/src/app.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createContainer } from '../../packages/server/src/container.js';
import { loggerOptions } from '../../packages/server/src/logger.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { freshDatabase } from '../helpers/db.js';

describe('request logging', () => {
  it('never writes a key put in a query string, a header or a body to the log, even at trace level', async () => {
    const db = await freshDatabase('sqlite');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const config = loadConfig({ DATABASE_URL: db.url, LOG_LEVEL: 'trace', AUTH_FAILURES_PER_MINUTE: '0' });
    const container = createContainer(config);
    await migrateUp(container.db.db);
    const app = await buildApp(container, { loggerInstance: pino(loggerOptions('trace'), sink) });
    try {
      const key = generateKey('kw');
      await app.inject({ method: 'GET', url: `/v1/api-keys?api_key=${key}`, headers: { authorization: `Bearer ${key}` } });
      await app.inject({ method: 'POST', url: '/v1/keys/verify', headers: { 'x-api-key': key }, payload: { key } });
      const log = lines.join('');
      expect(log).toContain('/v1/api-keys'); // the request was logged …
      expect(log).not.toContain(key); // … without the key anywhere
    } finally {
      await app.close();
      await container.close();
      await db.cleanup();
    }
  });
});
