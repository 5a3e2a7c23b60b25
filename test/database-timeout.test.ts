import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../packages/server/src/config.js';
import { openDatabase } from '../packages/server/src/store/database.js';
import { DatabaseTimeoutError, isUnavailable } from '../packages/server/src/store/unavailable.js';
import { freshDatabase } from './helpers/db.js';

describe('DATABASE_TIMEOUT_MS', () => {
  it('defaults to 2 s and is validated', () => {
    expect(loadConfig({}).databaseTimeoutMs).toBe(2_000);
    expect(loadConfig({ DATABASE_TIMEOUT_MS: '750' }).databaseTimeoutMs).toBe(750);
    for (const bad of ['0', '5', 'soon', '1.5']) {
      expect(() => loadConfig({ DATABASE_TIMEOUT_MS: bad })).toThrow(ConfigError);
    }
  });

  it('is SQLite’s busy timeout', async () => {
    const database = await freshDatabase('sqlite');
    const db = openDatabase(database.url, { timeoutMs: 750 });
    try {
      expect(db.sqlite?.pragma('busy_timeout', { simple: true })).toBe(750);
    } finally {
      await db.close();
      await database.cleanup();
    }
  });

  it('makes a timed-out query an outage (503), not a bug (500)', () => {
    expect(isUnavailable(new DatabaseTimeoutError('a database query', 2_000))).toBe(true);
    expect(isUnavailable(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }))).toBe(true);
    expect(isUnavailable(new Error('Query read timeout'))).toBe(true);
  });
});
