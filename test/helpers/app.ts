import { generateKey } from '@keyward/sdk';
import { buildApp } from '../../packages/server/src/app.js';
import { type Config, loadConfig } from '../../packages/server/src/config.js';
import { type Container, createContainer } from '../../packages/server/src/container.js';
import type { App } from '../../packages/server/src/http/types.js';
import type { Dialect } from '../../packages/server/src/store/database.js';
import { migrateUp } from '../../packages/server/src/store/migrator.js';
import { type FreshDatabase, freshDatabase } from './db.js';

export interface TestApp {
  app: App;
  container: Container;
  config: Config;
  database: FreshDatabase;
  /** The bootstrap admin key (from INITIAL_ADMIN_KEY). */
  adminKey: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  dialect?: Dialect;
  /** Extra environment variables for the configuration (DATABASE_URL and INITIAL_ADMIN_KEY are set for you). */
  env?: Record<string, string>;
  /** Build the app over an existing database instead of a fresh one. */
  database?: FreshDatabase;
  /** Connect to this URL instead of the database's own (e.g. through a TCP proxy). */
  databaseUrl?: string;
  /** The clock for every service (tests move it by hand instead of waiting). */
  now?: () => number;
}

/** A fresh database, migrated and bootstrapped, and the app built from the factory (in-process, `app.inject`). */
export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const database = options.database ?? (await freshDatabase(options.dialect ?? 'sqlite'));
  const adminKey = generateKey('kw');
  const config = loadConfig({
    DATABASE_URL: options.databaseUrl ?? database.url,
    INITIAL_ADMIN_KEY: adminKey,
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  const container = createContainer(config, options.now ? { now: options.now } : {});
  await migrateUp(container.db.db);
  await container.keys.bootstrap(config.initialAdminKey);
  const app = await buildApp(container);
  await app.ready();
  return {
    app,
    container,
    config,
    database,
    adminKey,
    async close() {
      await app.close();
      await container.close();
      if (!options.database) await database.cleanup();
    },
  };
}

export function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` };
}

/** Creates a key through the API as `asKey` (the admin key by default) and returns the plaintext and id. */
export async function createKey(
  t: TestApp,
  body: Record<string, unknown> = {},
  asKey: string = t.adminKey,
): Promise<{ key: string; id: string; body: Record<string, unknown> }> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/api-keys',
    headers: bearer(asKey),
    payload: { name: 'test key', ...body },
  });
  if (response.statusCode !== 201) throw new Error(`create key failed: ${response.statusCode} ${response.body}`);
  const json = response.json() as { key: string; id: string };
  return { key: json.key, id: json.id, body: json as unknown as Record<string, unknown> };
}
