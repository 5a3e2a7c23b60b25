import type { Config } from './config.js';
import { type Authenticator, createAuthenticator } from './services/auth.js';
import { createHealthService, type HealthService } from './services/health.js';
import { createImportService, type ImportService } from './services/import-service.js';
import { createKeyService, type KeyService } from './services/key-service.js';
import { createVerifier, type Verifier } from './services/verifier.js';
import { type Db, openDatabase } from './store/database.js';

/** Everything the application is made of, built once here and passed down as typed arguments. */
export interface Container {
  config: Config;
  db: Db;
  verifier: Verifier;
  authenticator: Authenticator;
  keys: KeyService;
  importer: ImportService;
  health: HealthService;
  /** Flushes buffered work and closes connections. */
  close(): Promise<void>;
}

export function createContainer(config: Config, overrides: { db?: Db } = {}): Container {
  const db = overrides.db ?? openDatabase(config.databaseUrl);
  const verifier = createVerifier({ db: db.db });
  const authenticator = createAuthenticator({ verifier });
  const keys = createKeyService({ db, config });
  const importer = createImportService({ db });
  const health = createHealthService({ db });
  return {
    config,
    db,
    verifier,
    authenticator,
    keys,
    importer,
    health,
    async close() {
      await db.close();
    },
  };
}
