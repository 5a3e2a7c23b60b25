import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Container, openContainer, SYSTEM } from './lib/keyward.js';
import { onCleanup } from './lib/processes.js';
import { formatNs, formatPercent, median, verdict } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface LimitsOptions {
  rounds: number;
  opsPerRound: number;
  /** Also measure with the Redis rate limiter (REDIS_URL). */
  redisUrl: string | null;
  log: (line: string) => void;
}

export const LIMITS_TARGET = 0.8;

type Case = { label: string; key: string; record: boolean };

async function makeKey(container: Container, name: string, limits: boolean, quota: boolean): Promise<string> {
  const created = await container.keys.create(SYSTEM, {
    name,
    scopes: ['bench:read'],
    ...(limits ? { rateLimit: { limit: 1_000_000_000, windowSeconds: 3_600 } } : {}),
    ...(quota ? { quota: { remaining: 1_000_000_000_000 } } : {}),
  });
  if (!created.ok) throw new Error(`could not create a key: ${created.code}`);
  return created.value.key;
}

// A server's event loop turns between requests; a tight loop of synchronous verifications never would, and
// nothing queued behind it (such as handing a full batch of usage rows to the SQLite writer thread) could
// start until the round ended. So every case lets the loop turn once per this many verifications.
const TURN_EVERY = 100;
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Sequential verifications of one case; ns per verification. What POST /v1/keys/verify does, minus HTTP. */
async function timeCase(container: Container, c: Case, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    if (i % TURN_EVERY === TURN_EVERY - 1) await turn();
    const answer = container.verifier.verify(SYSTEM, { key: c.key });
    const result = answer instanceof Promise ? await answer : answer;
    const code = result.ok ? result.value.code : result.code;
    if (code !== 'VALID') throw new Error(`${c.label}: verification answered ${code}`);
    if (c.record) {
      container.usage.record({
        apiKeyId: result.ok ? (result.value.key?.id ?? null) : null,
        outcome: code,
        endpoint: '/v1/keys/verify',
        method: 'POST',
        statusCode: 200,
        ipAddress: '127.0.0.1',
        userAgent: 'bench',
        responseTimeMs: 0,
      });
    }
  }
  // Writing the rows is part of the cost: the flush of what this round recorded is inside the timing.
  if (c.record) await container.usage.flush();
  return Number(process.hrtime.bigint() - start) / n;
}

async function measure(container: Container, backend: string, opts: LimitsOptions): Promise<string[][]> {
  const cases: Case[] = [
    { label: 'plain key, no usage rows (baseline)', key: await makeKey(container, 'plain', false, false), record: false },
    { label: 'usage rows only', key: await makeKey(container, 'recorded', false, false), record: true },
    { label: 'rate limit only', key: await makeKey(container, 'limited', true, false), record: false },
    { label: 'rate limit + quota + usage rows', key: await makeKey(container, 'metered', true, true), record: true },
  ];
  cases.push({ label: 'rate limit + usage rows', key: cases[2]?.key ?? '', record: true });
  for (const c of cases) await timeCase(container, c, Math.min(200, opts.opsPerRound)); // warm caches and JIT
  const times = cases.map(() => [] as number[]);
  for (let round = 0; round < opts.rounds; round++) {
    // Alternate the order so drift in the machine's speed does not favour one case.
    const order = round % 2 === 0 ? cases.map((_, i) => i) : cases.map((_, i) => cases.length - 1 - i);
    for (const i of order) times[i]?.push(await timeCase(container, cases[i] as Case, opts.opsPerRound));
  }
  const base = times[0] ?? [];
  return cases.map((c, i) => {
    const ns = median(times[i] ?? []);
    const share = median((times[i] ?? []).map((t, r) => (base[r] ?? Number.NaN) / t));
    const judged = i === cases.length - 1 && backend === 'memory';
    return [
      backend,
      c.label,
      formatNs(ns),
      `${Math.round(1e9 / ns).toLocaleString('en-US')}/s`,
      formatPercent(share),
      judged ? `≥ ${formatPercent(LIMITS_TARGET)}` : '',
      judged ? verdict(share >= LIMITS_TARGET) : '',
    ];
  });
}

/**
 * Verification with rate limit + quota + usage recording on vs off, in the same run: one SQLite database, the
 * memory rate limiter (and the Redis one when REDIS_URL is given). The quota is spent in the database (exact
 * across instances), so a metered key costs a write per verification: shown on its own row.
 */
export async function runLimits(opts: LimitsOptions): Promise<Table> {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-limits-'));
  const removeDir = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const rows: string[][] = [];
  try {
    const backends: [string, Record<string, string>][] = [['memory', {}]];
    if (opts.redisUrl) backends.push(['redis', { REDIS_URL: opts.redisUrl, REDIS_PREFIX: `keyward-bench-${process.pid}:` }]);
    for (const [backend, env] of backends) {
      opts.log(`limits: ${backend} rate limiter`);
      const container = await openContainer(`sqlite:${join(dir, `${backend}.db`)}`, { AUTH_FAILURES_PER_MINUTE: '0', ...env });
      try {
        rows.push(...(await measure(container, backend, opts)));
      } finally {
        await container.close();
      }
    }
  } finally {
    await removeDir();
  }
  return {
    title: 'Verification with rate limit, quota and usage recording on vs off (in process, SQLite)',
    headers: ['Rate limiter', 'Case', 'median per verification', 'verifications/s', 'vs plain', 'target', ''],
    rows,
    notes: [
      `${opts.rounds} alternating rounds × ${opts.opsPerRound.toLocaleString('en-US')} sequential verifications per case; "vs plain" is the median per-round ratio of throughput to the plain key in the same round.`,
      'Usage rows are recorded as POST /v1/keys/verify records them (buffered, written in batches); writing them, to the last row of the round, is inside the timing.',
      'The quota is decremented in the database in one atomic statement (exact across instances), so a metered key pays a database write per verification.',
      opts.redisUrl
        ? 'Redis: REDIS_URL on 127.0.0.1, keys under a per-run prefix.'
        : 'Redis: not measured (set REDIS_URL or pass --redis URL).',
    ],
  };
}
