import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '@keyward/sdk';
import autocannon, { type Request, type Result } from 'autocannon';
import { createKey, FLOOR_SERVER, openContainer, SERVER_CLI, SYSTEM } from './lib/keyward.js';
import { cpuTimeMs, onCleanup, type Pinning, pinSelf, type Server, startServer, unpinSelf } from './lib/processes.js';
import { formatCount, formatMs, formatPercent, formatRatio, median, verdict } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface HttpOptions {
  rounds: number;
  roundSeconds: number;
  warmSeconds: number;
  connections: number;
  randomKeys: number;
  pinning: Pinning | null;
  log: (line: string) => void;
}

export const HTTP_TARGETS = { hot: 0.85, random: 0.8 } as const;
const VERIFY_PATH = '/v1/keys/verify';

interface Round {
  rps: number;
  /** Server CPU time per completed request (µs); NaN where it cannot be read. */
  cpuUs: number;
  p50: number;
  p99: number;
  failed: number;
}

interface Target {
  name: string;
  url: string;
  pid: number | undefined;
}

/** A fixed environment: nothing from the caller's shell (DATABASE_URL, REDIS_URL, …) leaks into the server. */
function serverEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), NODE_ENV: 'production', ...extra };
}

async function post(url: string, token: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/**
 * The verifier key and the target keys, created through the key service before the server starts (the
 * same records the API would make, without 2,000 HTTP round trips); plaintexts stay in this process.
 */
async function createKeys(databaseUrl: string, count: number): Promise<{ verifierKey: string; keys: string[]; metered: string }> {
  const container = await openContainer(databaseUrl);
  try {
    const verifierKey = await createKey(container, 'bench verifier', ['keyward:verify']);
    const keys: string[] = [];
    for (let i = 0; i < count; i++) keys.push(await createKey(container, `bench target ${i}`));
    // A rate limit never reached and a quota never spent out: every verification counts and spends, none is refused.
    const created = await container.keys.create(SYSTEM, {
      name: 'bench metered',
      scopes: ['bench:read'],
      rateLimit: { limit: 1_000_000_000, windowSeconds: 3_600 },
      quota: { remaining: 1_000_000_000_000 },
    });
    if (!created.ok) throw new Error(`could not create the metered key: ${created.code}`);
    return { verifierKey, keys, metered: created.value.key };
  } finally {
    await container.close();
  }
}

/** Every key must verify as VALID on both servers before anything is measured (this also warms Keyward's cache). */
async function checkAll(target: Target, token: string, keys: readonly string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++];
      const { status, json } = await post(target.url + VERIFY_PATH, token, { key });
      if (status === 404) throw new Error(`${target.name}: POST ${VERIFY_PATH} does not exist (404)`);
      if (status !== 200 || json.valid !== true) {
        throw new Error(`${target.name}: a benchmark key did not verify (${status}): ${JSON.stringify(json).slice(0, 300)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

async function load(target: Target, token: string, bodies: readonly string[], seconds: number, connections: number): Promise<Round> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  const request: Request =
    bodies.length === 1
      ? { method: 'POST', path: VERIFY_PATH, headers, body: bodies[0] ?? '' }
      : {
          method: 'POST',
          path: VERIFY_PATH,
          headers,
          setupRequest: (req) => ({ ...req, body: bodies[Math.floor(Math.random() * bodies.length)] ?? '' }),
        };
  const cpuBefore = cpuTimeMs(target.pid);
  // Both servers answer `{"valid":true,…}` for a valid key; anything else (a rate limit, a quota, a bug)
  // must not pass as throughput. autocannon reads every body anyway, so this check costs next to nothing.
  const result: Result = await autocannon({
    url: target.url,
    connections,
    duration: seconds,
    requests: [request],
    verifyBody: (body) => body.startsWith('{"valid":true'),
  });
  const cpuAfter = cpuTimeMs(target.pid);
  return {
    rps: result.requests.total / result.duration,
    cpuUs: cpuBefore === null || cpuAfter === null ? Number.NaN : ((cpuAfter - cpuBefore) * 1000) / result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    failed: result.errors + result.timeouts + result.non2xx + result.mismatches,
  };
}

function cpuText(us: number): string {
  return Number.isFinite(us) ? `${us.toFixed(0)} µs` : 'n/a';
}

/**
 * POST /v1/keys/verify on a Keyward server vs a bare Fastify route, both separate processes loaded by
 * autocannon from this process, alternating rounds; one hot key, then random keys among `randomKeys`.
 */
export async function runHttp(options: HttpOptions): Promise<Table> {
  const { rounds, roundSeconds, warmSeconds, connections, randomKeys, pinning, log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-http-'));
  const removeDir = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const servers: Server[] = [];
  try {
    const databaseUrl = `sqlite:${join(dir, 'keyward.db')}`;
    log(`http: creating a verifier key and ${randomKeys.toLocaleString('en-US')} target keys`);
    const { verifierKey, keys, metered } = await createKeys(databaseUrl, randomKeys);
    const pinCpu = pinning?.serverCpu ?? null;
    log('http: starting the Keyward server and the floor server');
    const keyward = await startServer({
      args: [SERVER_CLI, 'serve'],
      cwd: dir,
      env: serverEnv({
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: databaseUrl,
        LOG_LEVEL: 'warn',
        // An admin key exists from the start, so the server does not generate and print one.
        INITIAL_ADMIN_KEY: generateKey('kw'),
      }),
      urlPattern: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
      pinCpu,
    });
    servers.push(keyward);
    const floor = await startServer({
      args: [FLOOR_SERVER],
      cwd: dir,
      env: serverEnv({}),
      urlPattern: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
      pinCpu,
    });
    servers.push(floor);
    const targets: Target[] = [
      { name: 'floor', url: floor.url, pid: floor.child.pid },
      { name: 'Keyward', url: keyward.url, pid: keyward.child.pid },
    ];

    for (const target of targets) await checkAll(target, verifierKey, [...keys, metered]);

    if (pinning) pinSelf(pinning.loadCpu);
    const cases = [
      { name: 'hot key', bodies: [JSON.stringify({ key: keys[0] })], target: HTTP_TARGETS.hot },
      {
        name: `random of ${randomKeys.toLocaleString('en-US')} keys`,
        bodies: keys.map((key) => JSON.stringify({ key })),
        target: HTTP_TARGETS.random,
      },
      // Issue 5's limits over HTTP: what a rate limit and a quota (a write committed before each answer) cost.
      { name: 'hot key, rate limit + quota', bodies: [JSON.stringify({ key: metered })], target: null },
    ];
    const rows: string[][] = [];
    let failed = 0;
    const spreads: string[] = [];
    const keywardRps = new Map<string, number>();
    for (const c of cases) {
      log(`http: ${c.name}: warm-up ${warmSeconds} s per server, then ${rounds} rounds × ${roundSeconds} s per server`);
      for (const target of targets) await load(target, verifierKey, c.bodies, warmSeconds, connections);
      const results = new Map<string, Round[]>(targets.map((t) => [t.name, []]));
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first, so drift (thermal, background work) hits both sides alike.
        const order = round % 2 === 0 ? targets : [...targets].reverse();
        for (const target of order) {
          const r = await load(target, verifierKey, c.bodies, roundSeconds, connections);
          failed += r.failed;
          results.get(target.name)?.push(r);
          log(
            `  round ${round + 1} ${target.name.padEnd(7)} ${formatCount(r.rps)} req/s  p50 ${formatMs(r.p50)}  p99 ${formatMs(r.p99)}  CPU ${cpuText(r.cpuUs)}/req`,
          );
        }
      }
      const summary = (name: string) => {
        const rs = results.get(name) ?? [];
        return {
          rps: median(rs.map((r) => r.rps)),
          p50: median(rs.map((r) => r.p50)),
          p99: median(rs.map((r) => r.p99)),
          cpuUs: median(rs.map((r) => r.cpuUs)),
        };
      };
      const f = summary('floor');
      const k = summary('Keyward');
      // Each round pairs one floor run with one Keyward run back to back: the median of those paired
      // ratios is steadier than a ratio of medians when the machine's speed drifts during the run.
      const fs = results.get('floor') ?? [];
      const ks = results.get('Keyward') ?? [];
      const ratios = ks.map((r, i) => r.rps / (fs[i]?.rps ?? Number.NaN));
      const share = median(ratios);
      spreads.push(`${c.name}: Keyward/floor per round ${ratios.map(formatPercent).join(', ')}.`);
      const cpuRatio = median(ks.map((r, i) => r.cpuUs / (fs[i]?.cpuUs ?? Number.NaN)));
      rows.push([
        c.name,
        'floor (bare Fastify)',
        formatCount(f.rps),
        formatMs(f.p50),
        formatMs(f.p99),
        cpuText(f.cpuUs),
        '',
        '100%',
        '',
        '',
      ]);
      rows.push([
        c.name,
        'Keyward',
        formatCount(k.rps),
        formatMs(k.p50),
        formatMs(k.p99),
        cpuText(k.cpuUs),
        formatRatio(cpuRatio),
        formatPercent(share),
        c.target === null ? '' : `≥ ${formatPercent(c.target)}`,
        c.target === null ? '' : verdict(share >= c.target),
      ]);
      keywardRps.set(c.name, k.rps);
    }
    const plainRps = keywardRps.get(cases[0]?.name ?? '') ?? Number.NaN;
    const meteredRps = keywardRps.get(cases[2]?.name ?? '') ?? Number.NaN;
    if (failed > 0)
      throw new Error(`${failed} requests failed (errors, timeouts, non-2xx, or not {"valid":true}) during the measured rounds`);
    return {
      title: `HTTP POST ${VERIFY_PATH}: Keyward vs a bare Fastify route (autocannon, c=${connections}, 127.0.0.1)`,
      headers: ['Case', 'Server', 'req/s', 'p50', 'p99', 'server CPU/req', 'CPU vs floor', 'req/s vs floor', 'target', ''],
      rows,
      notes: [
        `Medians of ${rounds} alternating rounds of ${roundSeconds} s per server, after ${warmSeconds} s of warm-up each; every response was 200 {"valid":true,…}. "vs floor" is the median of the per-round ratios.`,
        ...spreads,
        `hot key, rate limit + quota: Keyward answers ${formatPercent(meteredRps / plainRps)} of its plain hot-key requests/s (medians; the memory rate limiter, and a quota spend committed on the SQLite writer thread before each answer, the spends of a turn in one commit). Context, no target of its own.`,
        '"server CPU/req" is the server process\'s user+system CPU time during a round (from /proc) over the requests it completed; "CPU vs floor" the median per-round ratio. It explains the req/s ratio and moves less with other load on the machine.',
        'Both servers are separate `node` processes (Keyward: `keyward serve`, SQLite, LOG_LEVEL=warn; floor: bench/floor-server.mjs); autocannon runs in the benchmark process.',
        pinning
          ? `CPU pinning: each server on CPU ${pinning.serverCpu}, autocannon on CPU ${pinning.loadCpu} (taskset).`
          : 'No CPU pinning (fewer than 2 CPUs, no taskset, or --no-pin): servers and autocannon share the CPUs.',
      ],
    };
  } finally {
    if (pinning) unpinSelf();
    for (const server of servers.reverse()) await server.stop();
    await removeDir();
  }
}
