import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../packages/server/src/callers/principal.js';
import { createUsageEvents, type UsageEvent, type UsageEvents } from '../../packages/server/src/usage/events.js';
import { listUsageEvents } from '../../packages/server/src/usage/events.repository.js';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// A filter no index serves walks a bounded number of rows per page: a page may end short (even empty) with a
// cursor, and following the cursors still gives every row once, in order. Budgets are made small here (10, then
// 40 rows) so a few hundred rows show it.

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);
const ADMIN: Caller = { principal: { kind: 'system', name: 'test' }, ip: null };
const BUDGETS = [10, 40];

describe.each(DIALECTS)('bounded walks of usage rows on %s', (dialect) => {
  let t: TestApp;
  let events: UsageEvents;
  let a: string;
  let b: string;
  let userId: string;
  /** Names (user agents) of the 300 rows, newest first, with their tag and key. */
  let all: Array<{ name: string; rare: boolean; key: string; outcome: string }>;

  beforeEach(async () => {
    t = await createTestApp({ dialect });
    const user = await t.app.inject({ method: 'POST', url: '/v1/users', headers: bearer(t.adminKey), payload: { external_id: 'budget' } });
    userId = (user.json() as { id: string }).id;
    a = (await createKey(t, { name: 'A', user_id: userId })).id;
    b = (await createKey(t, { name: 'B', user_id: userId })).id;
    events = createUsageEvents({ db: t.container.db.db, keys: t.container.keys, scanBudgets: BUDGETS });
    all = [];
    const rare = new Set([7, 8, 150, 290]);
    for (let i = 0; i < 300; i++) {
      const key = i % 3 === 0 ? b : a;
      const outcome = i % 5 === 0 ? 'RATE_LIMITED' : i % 7 === 0 ? 'USAGE_EXCEEDED' : 'VALID';
      t.container.usage.record({
        apiKeyId: key,
        outcome,
        userAgent: `row-${i}`,
        endpoint: rare.has(i) ? '/rare' : '/common',
        createdAt: T0 + Math.floor(i / 2),
        tags: rare.has(i) ? ['rare'] : null,
      });
      all.unshift({ name: `row-${i}`, rare: rare.has(i), key, outcome });
    }
    await t.container.usage.flush();
  });
  afterEach(async () => t?.close());

  /** Every page of `query`, in order: the rows, and how many rows each page held. */
  async function pages(query: Parameters<UsageEvents['list']>[1]): Promise<{ names: string[]; sizes: number[] }> {
    const names: string[] = [];
    const sizes: number[] = [];
    let cursor: string | undefined;
    for (let n = 0; n < 500; n++) {
      const page = await events.list(ADMIN, { ...query, cursor });
      if (!page.ok) throw new Error(page.code);
      names.push(...page.value.items.map((e) => e.userAgent ?? ''));
      sizes.push(page.value.items.length);
      if (page.value.nextCursor === null) return { names, sizes };
      cursor = page.value.nextCursor;
    }
    throw new Error('too many pages');
  }

  async function exported(query: Parameters<UsageEvents['export']>[1]): Promise<string[]> {
    const chunks = await events.export(ADMIN, query);
    if (!chunks.ok) throw new Error(chunks.code);
    const names: string[] = [];
    for await (const chunk of chunks.value) names.push(...chunk.map((e: UsageEvent) => e.userAgent ?? ''));
    return names;
  }

  it('ends a page where the walk runs out, and the cursors still give every row once, in order', async () => {
    const expected = all.filter((r) => r.rare).map((r) => r.name);
    // PostgreSQL finds a tag's rows by its GIN index: no walk to bound there.
    for (const query of [...(dialect === 'sqlite' ? [{ tag: 'rare' }] : []), { endpoint: '/rare' }, { endpoint: '/ra*' }]) {
      const { names, sizes } = await pages({ ...query, limit: 2 });
      expect(names, JSON.stringify(query)).toEqual(expected);
      // 300 rows at most 40 a page: short and empty pages on the way, each with a cursor.
      expect(sizes.length, JSON.stringify(query)).toBeGreaterThanOrEqual(300 / 40);
      expect(sizes).toContain(0);
      expect(sizes.every((n) => n <= 2)).toBe(true);
      expect(await exported(query), JSON.stringify(query)).toEqual(expected);
    }
  });

  it('reads no further than the budget: no match, no row, and where it stopped', async () => {
    const first = await listUsageEvents(
      t.container.db.db,
      { scope: { kind: 'all' }, endpoint: { exact: '/absent' } },
      { limit: 5, budgets: BUDGETS },
    );
    expect(first.rows).toEqual([]);
    // The 40th newest row: rows 299 … 260, two a millisecond.
    expect(first.scannedTo).toEqual({ createdAt: T0 + 130, id: expect.any(Number) });
    const full = await listUsageEvents(t.container.db.db, { scope: { kind: 'all' } }, { limit: 5, budgets: BUDGETS });
    expect(full.rows).toHaveLength(5);
    expect(full.scannedTo).toBeNull();
    // A page that fills within the first budget stops there.
    const common = await listUsageEvents(
      t.container.db.db,
      { scope: { kind: 'all' }, endpoint: { exact: '/common' } },
      { limit: 5, budgets: BUDGETS },
    );
    expect(common.rows.map((r) => r.user_agent)).toEqual(['row-299', 'row-298', 'row-297', 'row-296', 'row-295']);
    expect(common.scannedTo).toBeNull();
  });

  it('bounds merged walks too: a user’s keys, several outcomes', async () => {
    const ofUser = await pages({ userId, tag: 'rare', limit: 3 });
    expect(ofUser.names).toEqual(all.filter((r) => r.rare).map((r) => r.name));
    const oneKey = await pages({ keyId: a, outcome: 'USAGE_EXCEEDED', limit: 4 });
    expect(oneKey.names).toEqual(all.filter((r) => r.key === a && r.outcome === 'USAGE_EXCEEDED').map((r) => r.name));
    const limited = all.filter((r) => r.outcome !== 'VALID' && r.rare).map((r) => r.name);
    expect((await pages({ outcome: 'RATE_LIMITED,USAGE_EXCEEDED', endpoint: '/rare', limit: 1 })).names).toEqual(limited);
    expect(await exported({ userId, outcome: 'RATE_LIMITED', endpoint: '/common' })).toEqual(
      all.filter((r) => r.outcome === 'RATE_LIMITED' && !r.rare).map((r) => r.name),
    );
  });

  it('fills pages as usual when an index serves every filter', async () => {
    const { names, sizes } = await pages({ keyId: b, limit: 25 });
    expect(names).toEqual(all.filter((r) => r.key === b).map((r) => r.name));
    expect(sizes.slice(0, -1).every((n) => n === 25)).toBe(true);
    if (dialect === 'postgres') {
      const tagged = await pages({ tag: 'rare', limit: 2 });
      expect(tagged.names).toEqual(all.filter((r) => r.rare).map((r) => r.name));
      expect(tagged.sizes).toEqual([2, 2]);
    }
  });
});
