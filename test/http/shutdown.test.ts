import { connect } from 'node:net';
import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../packages/server/src/config.js';
import { startServer } from '../../packages/server/src/server.js';
import { openDatabase } from '../../packages/server/src/store/database.js';
import { freePort } from '../helpers/cli.js';
import { DIALECTS, type FreshDatabase, freshDatabase } from '../helpers/db.js';

describe.each(DIALECTS)('stopping the server (SIGTERM) on %s', (dialect) => {
  let database: FreshDatabase;
  afterEach(async () => database?.cleanup());

  it('does not wait for keep-alive clients: a connection answering when the stop began is closed once answered, and usage is flushed', async () => {
    database = await freshDatabase(dialect);
    const adminKey = generateKey('kw');
    const env = { DATABASE_URL: database.url, INITIAL_ADMIN_KEY: adminKey, LOG_LEVEL: 'silent', USAGE_FLUSH_MS: '3600000' };
    const server = await startServer(loadConfig({ ...env, PORT: String(await freePort()) }), () => {});
    const { port } = new URL(server.url);

    // A keep-alive request still being sent when the stop begins: its body arrives afterwards.
    const body = JSON.stringify({ key: generateKey('kw') });
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answer = '';
    socket.on('data', (chunk) => {
      answer += chunk.toString();
    });
    const socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      `POST /v1/keys/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nAuthorization: Bearer ${adminKey}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));

    const started = Date.now();
    const stopped = server.stop().then(() => Date.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.write(body.slice(10));

    const tookMs = await Promise.race([
      stopped,
      new Promise<number>((resolve) => setTimeout(() => resolve(Number.POSITIVE_INFINITY), 5_000)),
    ]);
    expect(tookMs).toBeLessThan(5_000);
    await socketClosed;
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(answer).toContain('"code":"NOT_FOUND"');
    // The verification's usage row was written on the way out.
    const db = openDatabase(database.url);
    try {
      const rows = await db.db.selectFrom('api_key_usage').select('outcome').execute();
      expect(rows).toEqual([{ outcome: 'NOT_FOUND' }]);
    } finally {
      await db.close();
    }
    await stopped;
  }, 90_000);
});
