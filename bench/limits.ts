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

/**
 * Callers verifying at once, as the HTTP benchmark's 50 connections are: a server answers many requests at a
 * time, and a quota spend, a write each answer waits for, is committed for all the spends of a turn together.
 */
export const LIMITS_CONCURRENCY = 50;

/**
 * `n` verifications of one case by {@link LIMITS_CONCURRENCY} callers, each verifying one key after another;
 * ns per verification. What POST /v1/keys/verify does, minus HTTP.
 */
async function timeCase(container: Container, c: Case, n: number): Promise<number> {
  let started = 0;
  const caller = async () => {
    while (started < n) {
      const i = started++;
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
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: LIMITS_CONCURRENCY }, caller));
  // Writing the rows is part of the cost: the flush of what this round recorded is inside the timing.
  if (c.record) await container.usage.flush();
  return Number(process.hrtime.bigint() - start) / n;
}

/**
 * The time one metered verification takes at low load (one caller, about 200 a second, nothing else running):
 * µs, median of `n`. At this rate a spend commits at once on the event loop (see `createQuotaSpender`).
 */
async function meteredLatency(container: Container, key: string, n: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const start = process.hrtime.bigint();
    await container.verifier.verify(SYSTEM, { key });
    times.push(Number(process.hrtime.bigint() - start) / 1_000);
  }
  return median(times);
}

async function measure(container: Container, backend: string, opts: LimitsOptions): Promise<{ rows: string[][]; latencyUs: number }> {
  const limited = await makeKey(container, 'limited', true, false);
  const cases: Case[] = [
    { label: 'plain key, no usage rows (baseline)', key: await makeKey(container, 'plain', false, false), record: false },
    { label: 'usage rows only', key: await makeKey(container, 'recorded', false, false), record: true },
    { label: 'rate limit only', key: limited, record: false },
    { label: 'rate limit + usage rows', key: limited, record: true },
    { label: 'rate limit + quota + usage rows', key: await makeKey(container, 'metered', true, true), record: true },
  ];
  for (const c of cases) await timeCase(container, c, Math.min(200, opts.opsPerRound)); // warm caches and JIT
  const times = cases.map(() => [] as number[]);
  for (let round = 0; round < opts.rounds; round++) {
    // Alternate the order so drift in the machine's speed does not favour one case.
    const order = round % 2 === 0 ? cases.map((_, i) => i) : cases.map((_, i) => cases.length - 1 - i);
    for (const i of order) times[i]?.push(await timeCase(container, cases[i] as Case, opts.opsPerRound));
  }
  const latencyUs = await meteredLatency(container, cases[cases.length - 1]?.key ?? '', 200);
  const base = times[0] ?? [];
  const rows = cases.map((c, i) => {
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
  return { rows, latencyUs };
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
  const latencies: string[] = [];
  try {
    const backends: [string, Record<string, string>][] = [['memory', {}]];
    if (opts.redisUrl) backends.push(['redis', { REDIS_URL: opts.redisUrl, REDIS_PREFIX: `keyward-bench-${process.pid}:` }]);
    for (const [backend, env] of backends) {
      opts.log(`limits: ${backend} rate limiter`);
      const container = await openContainer(`sqlite:${join(dir, `${backend}.db`)}`, { AUTH_FAILURES_PER_MINUTE: '0', ...env });
      try {
        const measured = await measure(container, backend, opts);
        rows.push(...measured.rows);
        latencies.push(`${backend} ${measured.latencyUs.toFixed(0)} µs`);
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
      `${opts.rounds} alternating rounds × ${opts.opsPerRound.toLocaleString('en-US')} verifications per case by ${LIMITS_CONCURRENCY} concurrent callers; "vs plain" is the median per-round ratio of throughput to the plain key in the same round.`,
      'Usage rows are recorded as POST /v1/keys/verify records them (buffered, written in batches on the SQLite writer thread); writing them, to the last row of the round, is inside the timing.',
      `The quota is spent in the database in one atomic statement (exact across instances) and committed before the answer: under load on the SQLite writer thread, one commit for the spends of a turn; at low load at once on the event loop. At low load (one caller, about 200 verifications a second) a metered verification takes ${latencies.join(', ')} (median).`,
      opts.redisUrl
        ? 'Redis: REDIS_URL on 127.0.0.1, keys under a per-run prefix.'
        : 'Redis: not measured (set REDIS_URL or pass --redis URL).',
    ],
  };
}
