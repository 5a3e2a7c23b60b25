import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { generateKey } from '@keyward/sdk';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { updateKey } from '../../packages/server/src/keys/repository.js';
import { openDatabase } from '../../packages/server/src/store/database.js';
import { buildCli, call, runCli, type ServeProcess, startServe, tempFolder } from '../helpers/cli.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';

// Two `keyward serve` processes (the built CLI) share one PostgreSQL schema. A key is deactivated and
// activated 100 times on A; after each change B is polled until it answers the new state. Freshness is an
// hour, so B can only learn of a change through a message. Prints p50/p99 of the delay from A's answer to
// B's first answer showing the change; asserts only that every change arrives (within 5 s).
const redisUrl = inject('redisUrl');
const CHANGES = 100;
const MODES = [
  ['postgres LISTEN/NOTIFY', 'postgres', true, ''],
  ['redis pub/sub', 'redis', redisUrl !== null, 'REDIS_URL is not set'],
] as const;
const hasPostgres = DIALECTS.includes('postgres');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

for (const [label, mode, available, reason] of MODES) {
  const runs = hasPostgres && available;
  const title = runs
    ? `propagation between two server processes via ${label}`
    : `propagation via ${label} — skipped: ${hasPostgres ? reason : POSTGRES_SKIP_REASON}`;
  (runs ? describe : describe.skip)(title, () => {
    const stops: Array<() => Promise<unknown> | unknown> = [];
    let database: FreshDatabase | undefined;
    beforeAll(async () => buildCli(), 120_000);
    afterEach(async () => {
      for (const stop of stops.splice(0).reverse()) await stop();
      await database?.cleanup();
      database = undefined;
    });

    it(`every one of ${CHANGES} changes on A, and a revoke from the CLI, is seen on B`, { timeout: 180_000 }, async () => {
      database = await freshDatabase('postgres');
      const folder = tempFolder();
      stops.push(folder.cleanup);
      const adminKey = generateKey('kw');
      const env = {
        DATABASE_URL: database.url,
        INITIAL_ADMIN_KEY: adminKey,
        CACHE_TTL_MS: '3600000',
        LOG_LEVEL: 'warn',
        ...(mode === 'redis' && redisUrl ? { REDIS_URL: redisUrl, REDIS_PREFIX: `kwtest_${randomBytes(4).toString('hex')}:` } : {}),
      };
      const servers: ServeProcess[] = [];
      for (const _ of ['A', 'B']) {
        // One after the other: the first migrates and bootstraps the shared schema.
        const server = await startServe(env, folder.dir);
        servers.push(server);
        stops.push(() => server.stop('SIGTERM'));
      }
      const [a, b] = servers;
      if (!a || !b) throw new Error('servers did not start');
      const created = await call(a.url, 'POST', '/v1/api-keys', { key: adminKey, body: { name: 'propagated' } });
      const { key, id } = created.json as { key: string; id: string };
      const codeOnB = async () => (await call(b.url, 'POST', '/v1/keys/verify', { key: adminKey, body: { key } })).json.code;

      // Control: B must answer from its cache (so it is subscribed and trusts its entries). A change made
      // straight in the database, which announces nothing, must not be seen by B.
      const direct = openDatabase(database.url);
      stops.push(() => direct.close());
      const answersFromCache = async () => {
        expect(await codeOnB()).toBe('VALID');
        await updateKey(direct.db, id, { isActive: false });
        const seen = await codeOnB();
        await updateKey(direct.db, id, { isActive: true });
        return seen === 'VALID';
      };
      const until = Date.now() + 15_000;
      while (!(await answersFromCache())) {
        if (Date.now() > until) throw new Error('B never answered from its cache');
        await sleep(50);
      }

      const delays: number[] = [];
      let polls = 0;
      for (let i = 0; i < CHANGES; i++) {
        const [action, expected] = i % 2 === 0 ? ['deactivate', 'DISABLED'] : ['activate', 'VALID'];
        const changed = await call(a.url, 'POST', `/v1/api-keys/${id}/${action}`, { key: adminKey });
        expect(changed.status).toBe(200);
        const answered = performance.now();
        let code = await codeOnB();
        polls++;
        while (code !== expected && performance.now() - answered < 5_000) {
          code = await codeOnB();
          polls++;
        }
        expect(code, `change ${i + 1} (${action}) seen on B`).toBe(expected);
        delays.push(performance.now() - answered);
      }
      expect(await answersFromCache()).toBe(true); // still answering from its cache at the end

      // A one-shot CLI process (the operator's `keyward keys revoke`) announces its change before exiting.
      const revoked = await runCli(['keys', 'revoke', id], env, folder.dir);
      expect(revoked.code).toBe(0);
      const revokedAt = performance.now();
      while ((await codeOnB()) !== 'REVOKED' && performance.now() - revokedAt < 5_000) await sleep(5);
      expect(await codeOnB()).toBe('REVOKED');

      const sorted = [...delays].sort((x, y) => x - y);
      const ms = (v: number) => `${v.toFixed(2)} ms`;
      console.log(
        `propagation via ${label}, ${CHANGES} changes (A's answer → B answers the change): ` +
          `p50 ${ms(percentile(sorted, 50))}, p99 ${ms(percentile(sorted, 99))}, max ${ms(sorted.at(-1) ?? Number.NaN)} ` +
          `(${(polls / CHANGES).toFixed(1)} verify calls per change; load average ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} CPUs)`,
      );
    });
  });
}
