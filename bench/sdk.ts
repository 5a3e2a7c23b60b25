import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '@keyward/sdk';
import autocannon, { type Result } from 'autocannon';
import { type Container, openContainer, REPO_ROOT, SERVER_CLI, SYSTEM } from './lib/keyward.js';
import { cpuTimeMs, onCleanup, type Pinning, pinSelf, type Server, startServer, unpinSelf } from './lib/processes.js';
import { formatCount, formatMs, formatNs, formatPercent, formatRatio, median, percentile, verdict } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface SdkOptions {
  rounds: number;
  roundSeconds: number;
  warmSeconds: number;
  connections: number;
  /** Sequential requests per host for the one-connection latencies (in alternating blocks). */
  latencySamples: number;
  /** Revocations measured per side (host app, Keyward), alternating key by key. */
  changes: number;
  pinning: Pinning | null;
  log: (line: string) => void;
}

/**
 * Issue 15's targets: the SDK middleware on a hot unmetered key keeps this share of the same app's requests/s
 * without authentication; a key revoked in Keyward is refused by the host app within this (p99).
 */
export const SDK_TARGETS = { unmetered: 0.9, revocationP99Ms: 100 } as const;

const HOST_SCRIPT = join(REPO_ROOT, 'bench/sdk-host.mjs');
const ROUTE = '/v1/companies';
const SCOPES = ['companies:read'];
const LISTENING = /listening on (http:\/\/127\.0\.0\.1:\d+)/;
/** Every host answers this on success, whatever authenticates it: anything else must not pass as throughput. */
const OK_BODY_START = '{"data":';

type HostMode = 'express-auth' | 'express-plain' | 'express-direct' | 'fastify-auth' | 'fastify-plain';

interface Host {
  mode: HostMode;
  url: string;
  pid: number | undefined;
}

interface Keys {
  adminKey: string;
  verifierKey: string;
  hot: string;
  metered: string;
  /** Cached in the host app, then revoked: the subject of the revocation case. */
  viaHost: { id: string; key: string }[];
  /** Cached in Keyward, then revoked: its baseline. */
  viaKeyward: { id: string; key: string }[];
}

interface Round {
  rps: number;
  p50: number;
  p99: number;
  /** CPU time per completed request (µs) of the host and of Keyward; NaN where it cannot be read. */
  hostCpuUs: number;
  keywardCpuUs: number;
  /** Share of the round the host's CPU was busy (1 = one whole core). */
  hostBusy: number;
  /** `POST /v1/keys/verify` calls Keyward answered per request the host answered. */
  verifyCalls: number;
  failed: number;
}

/** A fixed environment: nothing from the caller's shell (DATABASE_URL, REDIS_URL, …) leaks into a process. */
function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), NODE_ENV: 'production', ...extra };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function createKeys(databaseUrl: string, changes: number): Promise<Keys> {
  const adminKey = generateKey('kw');
  const container: Container = await openContainer(databaseUrl, { INITIAL_ADMIN_KEY: adminKey });
  try {
    await container.keys.bootstrap(adminKey);
    const create = async (name: string, extra: Partial<Parameters<Container['keys']['create']>[1]> = {}) => {
      const created = await container.keys.create(SYSTEM, { name, scopes: SCOPES, ...extra });
      if (!created.ok) throw new Error(`could not create a key: ${created.code}`);
      return { id: created.value.record.id, key: created.value.key };
    };
    const verifier = await container.keys.create(SYSTEM, { name: 'bench host app', scopes: ['keyward:verify'] });
    if (!verifier.ok) throw new Error(`could not create the verifier key: ${verifier.code}`);
    const hot = await create('bench hot unmetered');
    // A rate limit never reached and a quota never spent out: every request counts and spends, none is refused.
    const metered = await create('bench metered', {
      rateLimit: { limit: 1_000_000_000, windowSeconds: 3_600 },
      quota: { remaining: 1_000_000_000_000 },
    });
    const viaHost = [];
    const viaKeyward = [];
    for (let i = 0; i < changes; i++) viaHost.push(await create(`bench revoked in host ${i}`));
    for (let i = 0; i < changes; i++) viaKeyward.push(await create(`bench revoked in Keyward ${i}`));
    return { adminKey, verifierKey: verifier.value.key, hot: hot.key, metered: metered.key, viaHost, viaKeyward };
  } finally {
    await container.close();
  }
}

interface HostState {
  /** The SDK's change feed is live (`null`: a host without the SDK). */
  live: boolean | null;
  /** Requests the route answered so far. */
  served: number;
  /** Errors the SDK reported (its `onError`), and the last one's code and status. */
  errors: number;
  last_error: string | null;
}

async function state(host: Host): Promise<HostState> {
  const response = await fetch(`${host.url}/_bench/state`);
  return (await response.json()) as HostState;
}

/** One request to the host's route: its status and the start of its body. */
async function get(host: Host, key: string | null): Promise<{ status: number; body: string }> {
  const response = await fetch(host.url + ROUTE, key === null ? {} : { headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, body: await response.text() };
}

async function expectStatus(host: Host, key: string | null, status: number, what: string): Promise<void> {
  const answer = await get(host, key);
  if (answer.status !== status)
    throw new Error(`${host.mode}: ${what} answered ${answer.status}, expected ${status}: ${answer.body.slice(0, 200)}`);
}

/** Waits until the SDK's change feed in `host` is live (the core's `live()`): only then does a cached key skip Keyward. */
async function untilLive(host: Host): Promise<void> {
  const started = performance.now();
  for (;;) {
    const s = await state(host);
    if (s.live === true) return;
    if (performance.now() - started > 10_000)
      throw new Error(`${host.mode}: the SDK's change feed did not go live within 10 s (${s.last_error ?? 'no error'})`);
    await sleep(20);
  }
}

/** What Keyward has answered so far (its /metrics, every status): verify calls and usage reports. */
async function keywardCounts(keywardUrl: string): Promise<{ verify: number; usageReports: number }> {
  const text = await (await fetch(`${keywardUrl}/metrics`)).text();
  const counts = { verify: 0, usageReports: 0 };
  for (const line of text.split('\n')) {
    if (!line.startsWith('keyward_http_requests_total{')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.includes('route="/v1/keys/verify"')) counts.verify += value;
    else if (line.includes('route="/v1/usage/events"') && line.includes('method="POST"')) counts.usageReports += value;
  }
  return counts;
}

async function load(host: Host, keyward: Server, key: string, seconds: number, connections: number): Promise<Round> {
  const counts = await keywardCounts(keyward.url);
  const served = (await state(host)).served;
  const hostCpu = cpuTimeMs(host.pid);
  const keywardCpu = cpuTimeMs(keyward.child.pid);
  const started = performance.now();
  const result: Result = await autocannon({
    url: host.url,
    connections,
    duration: seconds,
    requests: [{ method: 'GET', path: ROUTE, headers: { authorization: `Bearer ${key}` } }],
    verifyBody: (body) => body.startsWith(OK_BODY_START),
  });
  // Requests still in flight when autocannon stopped are finished by the host (and their verify calls made):
  // counted in this round, not in the next one, which may be another host's.
  let servedAfter = (await state(host)).served;
  for (let i = 0; i < 40; i++) {
    await sleep(25);
    const now = (await state(host)).served;
    if (now === servedAfter) break;
    servedAfter = now;
  }
  const elapsedMs = performance.now() - started;
  const hostCpuAfter = cpuTimeMs(host.pid);
  const keywardCpuAfter = cpuTimeMs(keyward.child.pid);
  const countsAfter = await keywardCounts(keyward.url);
  // Counted where the work is done: the requests the host answered in the round.
  const handled = servedAfter - served;
  const perRequest = (before: number | null, after: number | null) =>
    before === null || after === null ? Number.NaN : ((after - before) * 1000) / handled;
  return {
    rps: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    hostCpuUs: perRequest(hostCpu, hostCpuAfter),
    keywardCpuUs: perRequest(keywardCpu, keywardCpuAfter),
    hostBusy: hostCpu === null || hostCpuAfter === null ? Number.NaN : (hostCpuAfter - hostCpu) / elapsedMs,
    verifyCalls: (countsAfter.verify - counts.verify) / handled,
    failed: result.errors + result.timeouts + result.non2xx + result.mismatches,
  };
}

/** Sequential requests on one connection, each timed on its own (ms), in alternating blocks per host. */
async function latencies(hosts: readonly Host[], key: string, samples: number): Promise<Map<HostMode, number[]>> {
  const times = new Map<HostMode, number[]>(hosts.map((h) => [h.mode, []]));
  const block = 50;
  for (let done = 0; done < samples; done += block) {
    const order = (done / block) % 2 === 0 ? hosts : [...hosts].reverse();
    for (const host of order) {
      const list = times.get(host.mode) ?? [];
      for (let i = 0; i < Math.min(block, samples - done); i++) {
        const started = performance.now();
        const answer = await get(host, key);
        list.push(performance.now() - started);
        if (answer.status !== 200) throw new Error(`${host.mode}: answered ${answer.status} during the latency run`);
      }
    }
  }
  return times;
}

/** A difference in milliseconds, which may be negative (formatMs takes durations only). */
function signedMs(ms: number): string {
  return Number.isFinite(ms) ? `${ms < 0 ? '−' : '+'}${Math.abs(ms).toFixed(1)} ms` : 'n/a';
}

function cpuText(us: number): string {
  return Number.isFinite(us) ? `${us.toFixed(0)} µs` : 'n/a';
}

interface Case {
  name: string;
  subject: Host;
  baseline: Host;
  baselineLabel: string;
  subjectLabel: string;
  key: string;
  target: number | null;
}

/** The host app's refusal of a revoked key vs Keyward's own, over `changes` revocations each. */
async function revocations(
  keys: Keys,
  host: Host,
  keywardUrl: string,
  log: (line: string) => void,
): Promise<{ host: { fromReturn: number[]; fromStart: number[] }; keyward: { fromReturn: number[]; fromStart: number[] } }> {
  const adminHeaders = { authorization: `Bearer ${keys.adminKey}` };
  const verifierHeaders = { authorization: `Bearer ${keys.verifierKey}`, 'content-type': 'application/json' };
  const keywardCode = async (key: string): Promise<unknown> => {
    const response = await fetch(`${keywardUrl}/v1/keys/verify`, {
      method: 'POST',
      headers: verifierHeaders,
      body: JSON.stringify({ key }),
    });
    const json = (await response.json()) as Record<string, unknown>;
    if (response.status !== 200) throw new Error(`Keyward's verify answered ${response.status}`);
    return json.code;
  };
  // Refused yet? The host answers 401 for a revoked key; Keyward's verify answers `REVOKED`.
  const refusedByHost = async (key: string): Promise<boolean> => {
    const { status } = await get(host, key);
    if (status !== 200 && status !== 401) throw new Error(`the host answered ${status} while waiting for 401`);
    return status === 401;
  };
  const refusedByKeyward = async (key: string): Promise<boolean> => {
    const code = await keywardCode(key);
    if (code !== 'VALID' && code !== 'REVOKED') throw new Error(`Keyward's verify answered ${String(code)} while waiting for REVOKED`);
    return code === 'REVOKED';
  };

  // Every key cached where it will be refused before anything is revoked: a refusal can then only come from
  // the change reaching that cache (the host's through the change stream, Keyward's in its own process).
  for (const { key } of keys.viaHost) await expectStatus(host, key, 200, 'a revocation key, before its revocation');
  for (const { key } of keys.viaKeyward) {
    for (let i = 0; i < 2; i++) if ((await keywardCode(key)) !== 'VALID') throw new Error('a new key did not verify');
  }
  await untilLive(host);

  const measured = {
    host: { fromReturn: [] as number[], fromStart: [] as number[] },
    keyward: { fromReturn: [] as number[], fromStart: [] as number[] },
  };
  const measure = async (
    id: string,
    key: string,
    refused: (key: string) => Promise<boolean>,
    into: { fromReturn: number[]; fromStart: number[] },
  ) => {
    const start = performance.now();
    const revoked = await fetch(`${keywardUrl}/v1/api-keys/${id}/revoke`, { method: 'POST', headers: adminHeaders });
    await revoked.arrayBuffer();
    if (revoked.status !== 200) throw new Error(`revoke answered ${revoked.status}`);
    const returned = performance.now();
    // A tight loop: a new poll at most every 2 ms, at once when the last answer took longer.
    let pollStarted = returned;
    for (;;) {
      if (await refused(key)) break;
      if (performance.now() - returned > 10_000) throw new Error('the revocation was not seen within 10 s');
      const wait = pollStarted + 2 - performance.now();
      if (wait > 0) await sleep(wait);
      pollStarted = performance.now();
    }
    const refusedAt = performance.now();
    into.fromReturn.push(refusedAt - returned);
    into.fromStart.push(refusedAt - start);
  };
  log(`sdk: revocation: ${keys.viaHost.length} keys refused by the host app, ${keys.viaKeyward.length} by Keyward, alternating`);
  for (let i = 0; i < keys.viaHost.length; i++) {
    const subject = keys.viaHost[i];
    const baseline = keys.viaKeyward[i];
    if (subject === undefined || baseline === undefined) break;
    const runs = [
      () => measure(subject.id, subject.key, refusedByHost, measured.host),
      () => measure(baseline.id, baseline.key, refusedByKeyward, measured.keyward),
    ];
    // Alternate which goes first, so drift in the machine's speed hits both alike.
    if (i % 2 === 1) runs.reverse();
    for (const run of runs) {
      await run();
      await sleep(3 + (i % 7));
    }
  }
  const after = await state(host);
  if (after.live !== true) throw new Error("the host app's change feed was not live at the end of the revocation case");
  return measured;
}

/**
 * A host app (Express, Fastify) with the SDK middleware vs the same app without authentication on a hot
 * unmetered key; with a metered key vs the app calling `POST /v1/keys/verify` itself; and how soon a host app
 * refuses a key revoked in Keyward vs Keyward's own refusal. Keyward and each host app are separate `node`
 * processes; autocannon runs in this process.
 */
export async function runSdk(options: SdkOptions): Promise<Table[]> {
  const { rounds, roundSeconds, warmSeconds, connections, latencySamples, changes, pinning, log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-sdk-'));
  const removeDir = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const servers: Server[] = [];
  try {
    const databaseUrl = `sqlite:${join(dir, 'keyward.db')}`;
    log(`sdk: creating keys (${2 * changes} to revoke), starting keyward serve and 5 host apps`);
    const keys = await createKeys(databaseUrl, changes);
    const keyward = await startServer({
      args: [SERVER_CLI, 'serve'],
      cwd: dir,
      env: env({ PORT: '0', HOST: '127.0.0.1', DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn', INITIAL_ADMIN_KEY: keys.adminKey }),
      urlPattern: LISTENING,
      // Keyward stands for a service elsewhere: never on the host app's core (its usage ingestion is not the host's cost).
      pinCpu: pinning?.loadCpu ?? null,
    });
    servers.push(keyward);
    const modes: HostMode[] = ['express-auth', 'express-plain', 'express-direct', 'fastify-auth', 'fastify-plain'];
    const hosts = new Map<HostMode, Host>();
    for (const mode of modes) {
      const server = await startServer({
        args: [HOST_SCRIPT],
        cwd: dir,
        env: env({ HOST_MODE: mode, KEYWARD_URL: keyward.url, KEYWARD_VERIFY_KEY: keys.verifierKey }),
        urlPattern: LISTENING,
        pinCpu: pinning?.serverCpu ?? null,
      });
      servers.push(server);
      hosts.set(mode, { mode, url: server.url, pid: server.child.pid });
    }
    const host = (mode: HostMode): Host => {
      const found = hosts.get(mode);
      if (found === undefined) throw new Error(`no host ${mode}`);
      return found;
    };

    // Each host does what it says before anything is measured: the guarded ones refuse no key and a wrong
    // one, every one answers a valid key; and the SDK's change feed is live with the hot key cached.
    const wrongKey = generateKey('kw');
    for (const mode of ['express-auth', 'fastify-auth'] as const) {
      await expectStatus(host(mode), null, 401, 'no key');
      await expectStatus(host(mode), wrongKey, 401, 'an unknown key');
      await expectStatus(host(mode), keys.hot, 200, 'the hot key');
      await expectStatus(host(mode), keys.metered, 200, 'the metered key');
      await untilLive(host(mode));
    }
    await expectStatus(host('express-direct'), wrongKey, 401, 'an unknown key');
    await expectStatus(host('express-direct'), keys.metered, 200, 'the metered key');
    for (const mode of ['express-plain', 'fastify-plain'] as const) await expectStatus(host(mode), keys.hot, 200, 'the hot key');

    const cases: Case[] = [
      {
        name: 'Express, hot unmetered key',
        subject: host('express-auth'),
        subjectLabel: 'keywardExpress',
        baseline: host('express-plain'),
        baselineLabel: 'no auth (baseline)',
        key: keys.hot,
        target: SDK_TARGETS.unmetered,
      },
      {
        name: 'Fastify, hot unmetered key',
        subject: host('fastify-auth'),
        subjectLabel: 'keywardFastify',
        baseline: host('fastify-plain'),
        baselineLabel: 'no auth (baseline)',
        key: keys.hot,
        target: SDK_TARGETS.unmetered,
      },
      {
        name: 'Express, metered key',
        subject: host('express-auth'),
        subjectLabel: 'keywardExpress',
        baseline: host('express-direct'),
        baselineLabel: 'fetch POST /v1/keys/verify (baseline)',
        key: keys.metered,
        target: null,
      },
    ];

    if (pinning) pinSelf(pinning.loadCpu);
    const rows: string[][] = [];
    const notes: string[] = [];
    let failed = 0;
    for (const c of cases) {
      const pair = [c.baseline, c.subject];
      log(`sdk: ${c.name}: warm-up ${warmSeconds} s per host, then ${rounds} rounds × ${roundSeconds} s per host`);
      // Usage reports over the whole case: only the SDK host sends any (the direct baseline's verify records its own row).
      const reportsBefore = (await keywardCounts(keyward.url)).usageReports;
      const servedBefore = (await state(c.subject)).served;
      for (const h of pair) await load(h, keyward, c.key, warmSeconds, connections);
      const results = new Map<HostMode, Round[]>(pair.map((h) => [h.mode, []]));
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first, so drift (thermal, background work) hits both alike.
        const order = round % 2 === 0 ? pair : [...pair].reverse();
        for (const h of order) {
          const r = await load(h, keyward, c.key, roundSeconds, connections);
          failed += r.failed;
          results.get(h.mode)?.push(r);
          log(
            `  round ${round + 1} ${h.mode.padEnd(14)} ${formatCount(r.rps)} req/s  p50 ${formatMs(r.p50)}  p99 ${formatMs(r.p99)}  host CPU ${cpuText(r.hostCpuUs)}/req (busy ${formatPercent(r.hostBusy)})  verify calls/req ${r.verifyCalls.toFixed(3)}`,
          );
        }
      }
      const reports = (await keywardCounts(keyward.url)).usageReports - reportsBefore;
      const reported = (await state(c.subject)).served - servedBefore;
      const oneConnection = await latencies(pair, c.key, latencySamples);
      const bs = results.get(c.baseline.mode) ?? [];
      const ss = results.get(c.subject.mode) ?? [];
      // Each round pairs one baseline run with one subject run back to back: the median of those paired
      // ratios is steadier than a ratio of medians when the machine's speed drifts during the run.
      const ratios = ss.map((r, i) => r.rps / (bs[i]?.rps ?? Number.NaN));
      const share = median(ratios);
      const cpuRatio = median(ss.map((r, i) => r.hostCpuUs / (bs[i]?.hostCpuUs ?? Number.NaN)));
      const row = (label: string, h: Host, rs: Round[], last: string[]) => {
        const lat = oneConnection.get(h.mode) ?? [];
        return [
          c.name,
          label,
          formatCount(median(rs.map((r) => r.rps))),
          formatMs(median(rs.map((r) => r.p50))),
          formatMs(median(rs.map((r) => r.p99))),
          formatNs(median(lat) * 1e6),
          formatNs(percentile(lat, 99) * 1e6),
          cpuText(median(rs.map((r) => r.hostCpuUs))),
          cpuText(median(rs.map((r) => r.keywardCpuUs))),
          median(rs.map((r) => r.verifyCalls)).toFixed(2),
          ...last,
        ];
      };
      rows.push(row(c.baselineLabel, c.baseline, bs, ['100%', '', '', '']));
      rows.push(
        row(c.subjectLabel, c.subject, ss, [
          formatPercent(share),
          formatRatio(cpuRatio),
          c.target === null ? '' : `≥ ${formatPercent(c.target)}`,
          c.target === null ? '' : verdict(share >= c.target),
        ]),
      );
      const busy = (rs: Round[]) => formatPercent(median(rs.map((r) => r.hostBusy)));
      notes.push(
        `${c.name}: ${c.subjectLabel}/baseline per round ${ratios.map(formatPercent).join(', ')}; host CPU busy (median) ${busy(bs)} baseline, ${busy(ss)} ${c.subjectLabel}; ${c.subjectLabel} sent its usage in ${formatCount(reports)} reports for ${formatCount(reported)} requests (${formatCount(reported / reports)} events per report; the most a report takes is 500).`,
      );
    }
    if (failed > 0) throw new Error(`${failed} requests failed (errors, timeouts, non-2xx, or another body) during the measured rounds`);
    if (pinning) unpinSelf();

    const revoked = await revocations(keys, host('express-auth'), keyward.url, log);
    for (const mode of ['express-auth', 'fastify-auth'] as const) {
      const s = await state(host(mode));
      if (s.errors > 0) throw new Error(`${mode}: the SDK reported ${s.errors} errors (last: ${s.last_error ?? 'unknown'})`);
    }

    const throughput: Table = {
      title: `SDK middleware in a host app vs the same app without it (autocannon, c=${connections}, 127.0.0.1)`,
      headers: [
        'Case',
        'Host app',
        'req/s',
        'p50',
        'p99',
        'p50 1 conn',
        'p99 1 conn',
        'host CPU/req',
        'Keyward CPU/req',
        'verify calls/req',
        'req/s vs baseline',
        'host CPU vs baseline',
        'target',
        '',
      ],
      rows,
      notes: [
        `Medians of ${rounds} alternating rounds of ${roundSeconds} s per host, after ${warmSeconds} s of warm-up each; every response was 200 {"data":…}. "vs baseline" is the median of the per-round ratios.`,
        ...notes,
        `"p50/p99 1 conn": ${latencySamples} sequential requests per host on one connection from the benchmark process, each timed on its own (alternating blocks of 50); the c=${connections} latencies are autocannon's (1 ms resolution, mostly queueing).`,
        '"host CPU/req" and "Keyward CPU/req": each process\'s user+system CPU time during a round (from /proc) over the requests the host answered in it. "verify calls/req": POST /v1/keys/verify calls Keyward answered (its /metrics) per request the host answered.',
        "Usage reporting is on (the default): each host request is one usage event, sent to POST /v1/usage/events in batches of up to 500; the metered baseline's verify records its own usage row.",
        'The SDK hosts use the documented patterns: Express `app.use(keyward.authenticate())` + `keyward({ scopes: ["companies:read"] })` on the route; Fastify `keywardFastify` + the route\'s `config.keyward`. Each host app is its own `node` process (bench/sdk-host.mjs, built SDK).',
        pinning
          ? `CPU pinning: each host app on CPU ${pinning.serverCpu}; Keyward and autocannon on CPU ${pinning.loadCpu} (taskset).`
          : 'No CPU pinning (fewer than 2 CPUs, no taskset, or --no-pin): host apps, Keyward and autocannon share the CPUs.',
      ],
    };
    const revRow = (name: string, m: { fromReturn: number[]; fromStart: number[] }, target: string, result: string) => [
      name,
      formatMs(median(m.fromReturn)),
      formatMs(percentile(m.fromReturn, 99)),
      formatMs(Math.max(...m.fromReturn)),
      formatMs(median(m.fromStart)),
      formatMs(percentile(m.fromStart, 99)),
      formatMs(Math.max(...m.fromStart)),
      target,
      result,
    ];
    const revocation: Table = {
      title: `Revocation to refusal: a key revoked through Keyward's API, until it is refused (${changes} changes each)`,
      headers: ['Refused by', 'p50', 'p99', 'max', 'p50 from start', 'p99 from start', 'max from start', 'target', ''],
      rows: [
        revRow("Keyward's POST /v1/keys/verify (baseline)", revoked.keyward, '—', ''),
        revRow(
          'host app (Express + SDK, change stream)',
          revoked.host,
          `p99 < ${SDK_TARGETS.revocationP99Ms} ms`,
          verdict(percentile(revoked.host.fromReturn, 99) < SDK_TARGETS.revocationP99Ms),
        ),
      ],
      notes: [
        'p50/p99/max: from the revoke call (POST /v1/api-keys/:id/revoke) having returned to the first refusal; "from start": from the revoke call\'s start (adds the revoke round trip).',
        "The key is polled after the revoke returned, a new request at most every 2 ms: the host app until it answers 401, Keyward's verify until it answers REVOKED. Each key was cached (host: verified once through it; Keyward: verified twice) and the host's change stream live before the first revocation.",
        `Difference of medians (host − Keyward): ${signedMs(median(revoked.host.fromReturn) - median(revoked.keyward.fromReturn))}: the change stream's hop plus the host's verify round trip that finds the key revoked.`,
      ],
    };
    return [throughput, revocation];
  } finally {
    if (pinning) unpinSelf();
    for (const server of servers.reverse()) await server.stop();
    await removeDir();
  }
}
