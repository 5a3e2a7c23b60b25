// `npm run bench`: every figure is printed next to a baseline measured in the same run. See bench/README.md.
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { runHttp } from './http.js';
import { runInProcess } from './in-process.js';
import { cleanUpAll, planPinning } from './lib/processes.js';
import { renderTable, type Table } from './lib/table.js';
import { runLimits } from './limits.js';
import { runSdk } from './sdk.js';
import { runSqlitePropagation } from './sqlite-propagation.js';
import { runUncached } from './uncached.js';

const SECTIONS = ['in-process', 'limits', 'http', 'uncached', 'sqlite-propagation', 'sdk'] as const;
type Section = (typeof SECTIONS)[number];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    pg: { type: 'string' },
    redis: { type: 'string' },
    only: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`Usage: npm run bench -- [--quick] [--pg postgres://…] [--only ${SECTIONS.join(',')}] [--no-pin]
  --quick   about two minutes: shorter rounds, 10k vs 100k keys for the uncached case
  --pg URL  also measure uncached verification on PostgreSQL (default: DATABASE_URL if it is postgres://)
  --redis URL  also measure limits with the Redis rate limiter (default: REDIS_URL)
  --only    run some sections only (comma-separated)
  --no-pin  do not pin servers and load generator to separate CPUs with taskset
`);
  process.exit(0);
}

const quick = values.quick;
const only = values.only ? values.only.split(',').map((s) => s.trim()) : [...SECTIONS];
for (const s of only) {
  if (!SECTIONS.includes(s as Section)) {
    process.stderr.write(`bench: unknown section "${s}" (choose from ${SECTIONS.join(', ')})\n`);
    process.exit(2);
  }
}
const envPg = process.env.DATABASE_URL && /^postgres(ql)?:\/\//.test(process.env.DATABASE_URL) ? process.env.DATABASE_URL : null;
const postgresUrl = values.pg ?? envPg;
if (postgresUrl !== null && !/^postgres(ql)?:\/\//.test(postgresUrl)) {
  process.stderr.write('bench: --pg must be a postgres:// URL\n');
  process.exit(2);
}
const pgHost = postgresUrl ? new URL(postgresUrl).hostname : null;
if (pgHost !== null && pgHost !== '127.0.0.1' && pgHost !== 'localhost' && pgHost !== '::1') {
  process.stderr.write(`bench: PostgreSQL must be local (127.0.0.1), got ${pgHost}\n`);
  process.exit(2);
}

const started = performance.now();
const log = (line: string) => {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);
};

// The run stops by itself: past this budget, children are killed, schemas dropped, and the process exits.
const hardLimitMs = (quick ? 5 : 11) * 60_000;
const deadline = setTimeout(() => {
  log(`hard time limit of ${hardLimitMs / 60_000} min reached: stopping`);
  void cleanUpAll().finally(() => process.exit(1));
}, hardLimitMs);
deadline.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUpAll().finally(() => process.exit(130));
  });
}

const pinning = planPinning(!values['no-pin']);
const tables: Table[] = [];
const failures: string[] = [];

async function section(name: Section, run: () => Promise<Table | Table[]>): Promise<void> {
  if (!only.includes(name)) return;
  try {
    const produced = await run();
    for (const table of Array.isArray(produced) ? produced : [produced]) {
      tables.push(table);
      process.stderr.write(`\n${renderTable(table)}\n`);
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    failures.push(`${name}: ${message}`);
    log(`${name} FAILED: ${message}`);
  }
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const loadStart = loadavg()
  .map((l) => l.toFixed(2))
  .join(' / ');
// Other work on the machine moves every figure; say so up front rather than print noise as a result.
if ((loadavg()[0] ?? 0) > cpus().length / 2) log(`warning: load average ${loadStart} on ${cpus().length} CPUs: expect noisy figures`);
const header = [
  `# Keyward benchmark (${quick ? 'quick' : 'full'} run)`,
  '',
  `${new Date().toISOString()} · Node ${process.version} · ${cpus().length} × ${cpu} · ${(totalmem() / 2 ** 30).toFixed(0)} GiB · ${process.platform}`,
  `Load average at start: ${loadStart}. Figures are ratios to a baseline measured in the same run; absolute numbers depend on the machine.`,
  '',
].join('\n');
log(`${quick ? 'quick' : 'full'} run: ${only.join(', ')}${postgresUrl ? ' (with PostgreSQL)' : ''}`);

await section('in-process', () => runInProcess({ rounds: quick ? 11 : 21, opsPerRound: quick ? 20_000 : 30_000, log }));
await section('limits', () =>
  runLimits({ rounds: quick ? 5 : 9, opsPerRound: quick ? 2_000 : 5_000, redisUrl: values.redis ?? process.env.REDIS_URL ?? null, log }),
);
await section('http', () =>
  runHttp({
    // Many short rounds rather than a few long ones: this machine's speed has been seen to swing by half
    // within seconds, and only close alternation lets both servers see the same swings.
    rounds: quick ? 3 : 11,
    roundSeconds: 2,
    warmSeconds: quick ? 1 : 3,
    connections: 50,
    randomKeys: 2_000,
    pinning,
    log,
  }),
);
await section('uncached', () =>
  runUncached({
    sizes: quick ? [10_000, 100_000] : [10_000, 1_000_000],
    realKeys: quick ? 1_000 : 2_000,
    rounds: quick ? 10 : 20,
    samplesPerRound: quick ? 300 : 500,
    postgresUrl,
    log,
  }),
);
await section('sqlite-propagation', () => runSqlitePropagation({ changes: 100, log }));
await section('sdk', () =>
  runSdk({
    rounds: quick ? 3 : 9,
    roundSeconds: 2,
    warmSeconds: quick ? 1 : 3,
    connections: 50,
    latencySamples: quick ? 300 : 1_000,
    changes: 100,
    pinning,
    log,
  }),
);

await cleanUpAll();
clearTimeout(deadline);
process.stdout.write(`${header}\n${tables.map(renderTable).join('\n')}`);
process.stdout.write(`\nTotal time: ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
if (failures.length) {
  process.stdout.write(`\nFAILED sections:\n${failures.map((f) => `- ${f}`).join('\n')}\n`);
  process.exitCode = 1;
}
