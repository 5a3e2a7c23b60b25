import type { Dialect } from '../../packages/server/src/store/database.js';
import { bearer, createKey } from '../helpers/app.js';
import { type ClockedApp, createClockedApp } from '../verify/helpers.js';

/** One usage row as Keyward stored it. */
export interface StoredRow {
  keyId: string | null;
  endpoint: string | null;
  statusCode: number | null;
  outcome: string;
  tags: string[];
}

/**
 * A real Keyward (the app from the factory, a fresh database, a clock the test moves) listening on
 * 127.0.0.1, with a key for the middleware (`keyward:verify` only) and a `fetch` for the SDK that counts
 * the verify round trips it makes. The clock stands still: rate-limit windows do not roll over mid-test.
 */
export interface LiveKeyward {
  t: ClockedApp;
  url: string;
  /** The middleware's own key. */
  verifyKey: string;
  /** Verifications the SDK made through `fetch` so far. */
  verifyCalls(): number;
  fetch: (request: Request) => Promise<Response>;
  /** Creates a key through the API (admin) and returns its plaintext and id. */
  key(body?: Record<string, unknown>): Promise<{ key: string; id: string }>;
  revoke(id: string): Promise<void>;
  /** What is left of a key's quota. */
  quotaLeft(id: string): Promise<number>;
  /** What is left of a key's rate-limit window, read without spending or recording anything. */
  rateLeft(key: string): Promise<number>;
  /** Every usage row Keyward wrote, once its recorder has flushed. */
  rows(): Promise<StoredRow[]>;
  close(): Promise<void>;
}

export async function startKeyward(options: { dialect?: Dialect; env?: Record<string, string> } = {}): Promise<LiveKeyward> {
  const t = await createClockedApp({ dialect: options.dialect ?? 'sqlite', ...(options.env ? { env: options.env } : {}) });
  const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
  const verifyKey = (await createKey(t, { name: 'host middleware', scopes: ['keyward:verify'] })).key;
  let calls = 0;
  const admin = bearer(t.adminKey);
  return {
    t,
    url,
    verifyKey,
    verifyCalls: () => calls,
    fetch: (request) => {
      if (new URL(request.url).pathname === '/v1/keys/verify') calls++;
      return fetch(request);
    },
    key: async (body = {}) => {
      const { key, id } = await createKey(t, body);
      return { key, id };
    },
    async revoke(id) {
      const response = await t.app.inject({ method: 'POST', url: `/v1/api-keys/${id}/revoke`, headers: admin });
      if (response.statusCode !== 200) throw new Error(`revoke answered ${response.statusCode}`);
    },
    async quotaLeft(id) {
      const response = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${id}`, headers: admin });
      return (response.json() as { quota: { remaining: number } }).quota.remaining;
    },
    async rateLeft(key) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/keys/verify',
        headers: admin,
        payload: { key, cost: 0, ratelimit_cost: 0, record_usage: false },
      });
      return (response.json() as { ratelimit: { remaining: number } }).ratelimit.remaining;
    },
    async rows() {
      await t.container.usage.flush();
      const rows = await t.container.db.db
        .selectFrom('api_key_usage')
        .select(['api_key_id', 'endpoint', 'status_code', 'outcome', 'tags'])
        .execute();
      return rows.map((row) => ({
        keyId: row.api_key_id,
        endpoint: row.endpoint,
        statusCode: row.status_code,
        outcome: row.outcome,
        tags: tagsOf(row.tags),
      }));
    },
    close: () => t.close(),
  };
}

/** A stored `tags` value (a JSON text on SQLite, jsonb on PostgreSQL, or null) as a list. */
function tagsOf(value: unknown): string[] {
  const parsed = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  return Array.isArray(parsed) ? parsed.map(String) : [];
}

/** Polls `check` (each round may flush something) until it holds or `timeoutMs` passes; returns its last value. */
export async function settle<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Counts of each value. */
export function tally<T>(values: readonly T[], keyOf: (value: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) {
    const key = keyOf(value);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
