import pg from 'pg';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A PostgreSQL database made for this test run (dropped after it), or null when DATABASE_URL is not postgres. */
    postgresUrl: string | null;
    /** REDIS_URL when set; tests use their own key prefix/channel per run. */
    redisUrl: string | null;
  }
}

/**
 * Each run gets its own PostgreSQL database (`keyward_test_<time>_<pid>`), and each test its own schema
 * inside it (see helpers/db.ts), so runs and tests never see each other's rows.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const base = process.env.DATABASE_URL;
  project.provide('redisUrl', process.env.REDIS_URL ?? null);
  if (!base?.startsWith('postgres')) {
    project.provide('postgresUrl', null);
    return async () => {};
  }
  const name = `keyward_test_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  project.provide('postgresUrl', url.toString());
  return async () => {
    const client = new pg.Client({ connectionString: base });
    await client.connect();
    await client.query(`drop database if exists ${name} with (force)`);
    await client.end();
  };
}
