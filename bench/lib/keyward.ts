import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Caller } from '../../packages/server/dist/callers/principal.js';
// The benchmark measures the built server (what `keyward serve` runs), not the TypeScript sources.
import { loadConfig } from '../../packages/server/dist/config.js';
import { type Container, createContainer } from '../../packages/server/dist/container.js';
import { migrateUp } from '../../packages/server/dist/store/migrator.js';

export type { Container };

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SERVER_CLI = join(REPO_ROOT, 'packages/server/dist/cli.js');
export const FLOOR_SERVER = join(REPO_ROOT, 'bench/floor-server.mjs');

/** The local operator, as the CLI acts: may create any key. */
export const SYSTEM: Caller = { principal: { kind: 'system', name: 'bench' }, ip: null };

/** A container on `databaseUrl` with the given extra settings (environment variable names), migrated. */
export async function openContainer(databaseUrl: string, env: Record<string, string> = {}): Promise<Container> {
  const container = createContainer(loadConfig({ DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent', ...env }));
  try {
    await migrateUp(container.db.db);
  } catch (error) {
    await container.close();
    throw error;
  }
  return container;
}

/** Creates a plain key (no owner, one scope) and returns its plaintext, which stays in this process's memory. */
export async function createKey(container: Container, name: string, scopes: string[] = ['bench:read']): Promise<string> {
  const created = await container.keys.create(SYSTEM, { name, scopes });
  if (!created.ok) throw new Error(`could not create a key: ${created.code}`);
  return created.value.key;
}

/**
 * One in-process verification of `key`: the verification code (`VALID`, …), synchronously when the
 * verifier answered synchronously (a cached key), else a promise of it.
 */
export type VerifyOnce = (key: string) => string | Promise<string>;

// Module level, not per call: tsx wraps every closure it creates in a naming helper that costs as much as
// a cached verification.
const codeOf = (result: Awaited<ReturnType<Container['verifier']['verify']>>): string => (result.ok ? result.value.code : result.code);

/** The verification entry point under test, and a label saying which one it is. */
export function verifierOf(container: Container): { verify: VerifyOnce; label: string } {
  const { verifier } = container;
  // What POST /v1/keys/verify calls, minus HTTP: caller check, format, cache/database, state, scopes, gates.
  return {
    verify: (key) => {
      const result = verifier.verify(SYSTEM, { key });
      return result instanceof Promise ? result.then(codeOf) : codeOf(result);
    },
    label: 'verifier.verify(caller, {key})',
  };
}
