import { generateKey } from '@keyward/sdk';
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, ping } from '../../packages/server/src/store/database.js';
import { isUnavailable } from '../../packages/server/src/store/unavailable.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, type FreshDatabase, freshDatabase, POSTGRES_SKIP_REASON } from '../helpers/db.js';
import { proxyInFrontOf, type TcpProxy } from '../helpers/tcp-proxy.js';
import { codeOf, verify, waitFor, waitLive } from './helpers.js';

// PostgreSQL goes silent: a TCP proxy between Keyward and it keeps every connection open, accepts new ones, and
// carries nothing (a dropped route, a stalled server). Nothing is refused, so only timeouts can end a wait.
const hasPostgres = DIALECTS.includes('postgres');
const suite = hasPostgres ? describe : describe.skip;
const TIMEOUT_MS = 1_000;

/** `request`'s answer and how long it took; fails (instead of hanging the test) when there is none in 5 s. */
async function timed(request: Promise<LightMyRequestResponse>): Promise<{ response: LightMyRequestResponse; ms: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
  });
  try {
    const response = await Promise.race([request, hung]);
    return { response, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

suite(
  hasPostgres ? 'a silent database (PostgreSQL behind a black-holing TCP proxy)' : `a silent database — ${POSTGRES_SKIP_REASON}`,
  () => {
    let proxy: TcpProxy | undefined;
    let database: FreshDatabase | undefined;
    let t: TestApp | undefined;
    afterEach(async () => {
      proxy?.restore();
      await t?.close();
      await proxy?.close();
      await database?.cleanup();
      t = undefined;
      proxy = undefined;
      database = undefined;
    });

    it('never hangs a request: cached keys answer from the stale window at once, the rest 503 within DATABASE_TIMEOUT_MS, and service resumes', {
      timeout: 60_000,
    }, async () => {
      database = await freshDatabase('postgres');
      const proxied = await proxyInFrontOf(database.url, 5432);
      proxy = proxied.proxy;
      t = await createTestApp({
        database,
        databaseUrl: proxied.url,
        env: { DATABASE_TIMEOUT_MS: String(TIMEOUT_MS), CACHE_TTL_MS: '60000', CACHE_STALE_TTL_MS: '300000' },
      });
      const app = t;
      await waitLive(app.container);
      const { key } = await createKey(app);
      expect(await codeOf(app, key)).toBe('VALID');

      // An earlier outage: once the listener is back, nothing cached before it is fresh (this key and the admin
      // key), so each must be looked up again, from a database that is about to go silent.
      proxy.cut();
      await waitFor(() => !app.container.invalidation.live(), 'the listener to notice the outage');
      proxy.restore();
      await waitLive(app.container);
      proxy.freeze();

      // Cached keys: answered from the stale window, without waiting for the database, again and again while
      // their refreshes time out and are tried again.
      const until = Date.now() + 2.5 * TIMEOUT_MS;
      let answers = 0;
      while (Date.now() < until) {
        const { response, ms } = await timed(verify(app, { key }));
        expect(response.statusCode, response.body).toBe(200);
        expect(response.json()).toMatchObject({ code: 'VALID' });
        expect(ms).toBeLessThan(500);
        answers++;
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      expect(answers).toBeGreaterThan(5);

      // A key never seen, and a management call: 503 problem+json with Retry-After, within the timeout.
      for (const request of [
        verify(app, { key: generateKey('kw') }),
        app.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(app.adminKey) }),
      ]) {
        const { response, ms } = await timed(request);
        expect(response.statusCode, response.body).toBe(503);
        expect(response.headers['content-type']).toContain('application/problem+json');
        expect(response.headers['retry-after']).toMatch(/^\d+$/);
        expect(response.json()).toMatchObject({ status: 503, code: 'SERVICE_UNAVAILABLE' });
        expect(ms).toBeLessThan(TIMEOUT_MS + 750);
      }
      const readiness = await timed(app.app.inject({ method: 'GET', url: '/readyz' }));
      expect(readiness.response.statusCode).toBe(503);
      expect(readiness.response.json()).toMatchObject({ status: 'down', checks: { database: 'down' } });
      expect(readiness.ms).toBeLessThan(TIMEOUT_MS + 750);

      // The proxy forwards again: everything works, with no restart.
      proxy.restore();
      await waitFor(
        async () => (await app.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(app.adminKey) })).statusCode === 200,
        'management calls to work again',
      );
      expect(await codeOf(app, generateKey('kw'))).toBe('NOT_FOUND');
      expect(await codeOf(app, key)).toBe('VALID');
      expect((await app.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    });

    it('fails a new connection, and a query on an open one, within the timeout, as unavailable', { timeout: 30_000 }, async () => {
      database = await freshDatabase('postgres');
      const proxied = await proxyInFrontOf(database.url, 5432);
      proxy = proxied.proxy;
      const db = openDatabase(proxied.url, { timeoutMs: TIMEOUT_MS, poolSize: 2 });
      try {
        await ping(db.db); // one connection open in the pool
        proxy.freeze();
        // The open connection's query, then (the pool's second) a new connection's handshake, then the wait for a
        // pooled connection while both are busy: each fails within the timeout.
        const started = Date.now();
        const outcomes = await Promise.allSettled([ping(db.db), ping(db.db), ping(db.db)]);
        expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 750);
        for (const outcome of outcomes) {
          expect(outcome.status).toBe('rejected');
          if (outcome.status === 'rejected') expect(isUnavailable(outcome.reason), String(outcome.reason)).toBe(true);
        }
        proxy.restore();
        await waitFor(
          async () =>
            ping(db.db).then(
              () => true,
              () => false,
            ),
          'the database to answer again',
        );
      } finally {
        await db.close();
      }
    });
  },
);
