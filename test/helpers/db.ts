import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import type { Dialect } from '../../packages/server/src/store/database.js';

/** The dialects storage tests run on: SQLite always, PostgreSQL when the run has a database (CI sets DATABASE_URL). */
export const DIALECTS: Dialect[] = inject('postgresUrl') ? ['sqlite', 'postgres'] : ['sqlite'];

/** Explains, in a skipped suite's name, why PostgreSQL tests did not run. */
export const POSTGRES_SKIP_REASON = 'PostgreSQL: skipped because DATABASE_URL is not a postgres:// URL';

export interface FreshDatabase {
  url: string;
  dialect: Dialect;
  /** For SQLite, the folder holding the database files. */
  dir: string | null;
  cleanup(): Promise<void>;
}

/** A new, empty database: a temporary SQLite file, or a new schema in this run's PostgreSQL database. */
export async function freshDatabase(dialect: Dialect = 'sqlite'): Promise<FreshDatabase> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'keyward-test-'));
    return {
      url: `sqlite:${join(dir, 'keyward.db')}`,
      dialect,
      dir,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const base = inject('postgresUrl');
  if (!base) throw new Error(POSTGRES_SKIP_REASON);
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  await client.query(`create schema ${schema}`);
  await client.end();
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: url.toString(),
    dialect,
    dir: null,
    cleanup: async () => {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
    },
  };
}
