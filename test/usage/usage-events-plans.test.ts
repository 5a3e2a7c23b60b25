import type { CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listUsageEvents, type UsageEventFilter } from '../../packages/server/src/usage/events.repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';

// Which index each shape of GET /v1/usage/events walks on SQLite. SQLite has no statistics (no ANALYZE), so left
// to itself it may walk (outcome, created_at) for a key's `VALID` rows, half the table; the repository names the
// index that leads. PostgreSQL plans with its statistics: bench/usage-events-query.ts shows its plans on a
// million rows (a plan test there would only restate what its planner guessed for an empty table).

const KEY = 'api_key_usage_key_created_idx';
const OUTCOME = 'api_key_usage_outcome_created_idx';
const STATUS = 'api_key_usage_status_class_created_idx';
const TIME = 'api_key_usage_created_idx';

describe('usage event plans on sqlite', () => {
  let t: TestApp;
  let userId: string;
  let keyId: string;

  beforeAll(async () => {
    t = await createTestApp({ dialect: 'sqlite' });
    const user = await t.app.inject({ method: 'POST', url: '/v1/users', headers: bearer(t.adminKey), payload: { external_id: 'plans' } });
    userId = (user.json() as { id: string }).id;
    keyId = (await createKey(t, { name: 'k', user_id: userId })).id;
    await createKey(t, { name: 'k2', user_id: userId });
  });
  afterAll(async () => t?.close());

  /** The plan of every statement a page of `filter` runs (on an empty table: a walk, when bounded, and the page). */
  async function plan(filter: Omit<UsageEventFilter, 'scope'> & { scope?: UsageEventFilter['scope'] }, after = false): Promise<string[]> {
    const statements: CompiledQuery[] = [];
    await listUsageEvents(
      t.container.db.db,
      { scope: { kind: 'all' }, ...filter },
      { limit: 101, ...(after ? { after: { createdAt: 1_900_000_000_000, id: 1000 } } : {}) },
      (statement) => statements.push(statement),
    );
    const sqlite = t.container.db.sqlite;
    if (!sqlite) throw new Error('not sqlite');
    return statements.flatMap((compiled) =>
      (sqlite.prepare(`explain query plan ${compiled.sql}`).all(...compiled.parameters) as Array<{ detail: string }>).map(
        (row) => row.detail,
      ),
    );
  }
  /** The index every read of the table in `details` walks (each must walk one): `[index]` when they all walk the same. */
  const walked = (details: string[]) => [
    ...new Set(
      details
        .filter((d) => /\bapi_key_usage\b/.test(d) && !d.startsWith('LIST SUBQUERY'))
        .map((d) => /INDEX (\w+)/.exec(d)?.[1] ?? `no index: ${d}`),
    ),
  ];
  /** How many reads of the table walk `index`. */
  const uses = (details: string[], index: string) => details.filter((d) => d.includes(`INDEX ${index}`));
  const sorts = (details: string[]) => details.some((d) => d.includes('TEMP B-TREE'));
  /** A bounded walk counts its rows on the index alone (a covering index: no row is read). */
  const counted = (details: string[]) => details.some((d) => d.includes('USING COVERING INDEX'));

  it('walks one key’s range for key_id, whatever else is asked, in time order (no sort)', async () => {
    for (const extra of [
      {},
      { outcomes: ['VALID'] },
      { outcomes: ['VALID', 'RATE_LIMITED'] },
      { status: { class: 4 } },
      { status: { code: 404 } },
      { outcomes: ['VALID'], status: { class: 2 }, tag: 'region:eu', endpoint: { prefix: '/v1' } },
      { from: 1, to: 2 },
    ]) {
      const details = await plan({ scope: { kind: 'key', keyId }, ...extra });
      expect(walked(details), JSON.stringify({ extra, details })).toEqual([KEY]);
      expect(sorts(details), JSON.stringify(details)).toBe(false);
      // A filter besides the key bounds the walk, counted on the index.
      expect(counted(details), JSON.stringify({ extra, details })).toBe(Object.keys(extra).some((k) => k !== 'from' && k !== 'to'));
      expect((await plan({ scope: { kind: 'key', keyId }, ...extra }, true)).join(), JSON.stringify(extra)).toContain(
        `INDEX ${KEY} (api_key_id=? AND created_at`,
      );
    }
  });

  it('walks each of a user’s keys and merges them', async () => {
    const details = await plan({ scope: { kind: 'user', userId }, outcomes: ['VALID'], status: { class: 5 } });
    expect(walked(details)).toEqual([KEY]);
    // Two walks counted, and the two keys' pages merged.
    expect(uses(details, KEY)).toHaveLength(4);
    expect(details.join()).toContain('MERGE (UNION ALL)');
    expect(walked(await plan({ scope: { kind: 'user', userId } }))).toEqual([KEY]);
  });

  it('walks the outcome’s range for one outcome, one range per outcome for several', async () => {
    expect(walked(await plan({ outcomes: ['EXPIRED'] }))).toEqual([OUTCOME]);
    expect(walked(await plan({ outcomes: ['EXPIRED'], status: { class: 5 }, tag: 'x' }))).toEqual([OUTCOME]);
    expect(sorts(await plan({ outcomes: ['EXPIRED'] }))).toBe(false);
    expect(uses(await plan({ outcomes: ['EXPIRED', 'REVOKED', 'DISABLED'] }), OUTCOME)).toHaveLength(3);
    expect(walked(await plan({ outcomes: ['EXPIRED', 'REVOKED', 'DISABLED'] }))).toEqual([OUTCOME]);
    expect(walked(await plan({ scope: { kind: 'keys' }, outcomes: ['EXPIRED'] }))).toEqual([OUTCOME]);
  });

  it('walks the status class’s range for a status or a class', async () => {
    for (const status of [{ class: 5 }, { code: 503 }]) {
      const details = await plan({ status, endpoint: { exact: '/x' } });
      expect(walked(details), JSON.stringify(details)).toEqual([STATUS]);
      expect(sorts(details)).toBe(false);
    }
  });

  it('walks time for no filter, a range, an endpoint or a tag', async () => {
    for (const filter of [
      {},
      { from: 1, to: 2 },
      { endpoint: { prefix: '/v1/' } },
      { endpoint: { exact: '/v1/x' } },
      { tag: 'region:eu' },
    ]) {
      const details = await plan(filter);
      expect(walked(details), JSON.stringify({ filter, details })).toEqual([TIME]);
      expect(sorts(details)).toBe(false);
      expect(counted(details)).toBe('endpoint' in filter || 'tag' in filter);
    }
  });
});
