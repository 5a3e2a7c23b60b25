import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashApiKey } from '@keyward/sdk';
import { createKey, openContainer, verifierOf } from './lib/keyward.js';
import { onCleanup } from './lib/processes.js';
import { formatNs, formatRatio, median, verdict } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface InProcessOptions {
  rounds: number;
  opsPerRound: number;
  log: (line: string) => void;
}

export const IN_PROCESS_TARGET = 1.5;

// A sink the optimiser cannot prove unused, so no loop below is dead code.
let sink = 0;

function timeHash(key: string, n: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += hashApiKey(key).charCodeAt(i & 63);
  return Number(process.hrtime.bigint() - start) / n;
}

// The floor again, behind one `await`: the least any asynchronous verify can cost. Context, not a target.
async function hashAsync(key: string): Promise<string> {
  return hashApiKey(key);
}

async function timeAsyncHash(key: string, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += (await hashAsync(key)).charCodeAt(i & 63);
  return Number(process.hrtime.bigint() - start) / n;
}

/**
 * Cached verification of one valid key, in process, against the SHA-256 floor: hashing the same key with
 * node:crypto in the same kind of loop. Rounds alternate which loop runs first; medians of the rounds.
 */
export async function runInProcess({ rounds, opsPerRound, log }: InProcessOptions): Promise<Table> {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-'));
  const removeDir = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const container = await openContainer(`sqlite:${join(dir, 'keyward.db')}`);
  try {
    const key = await createKey(container, 'bench in-process');
    const { verify, label } = verifierOf(container);
    const first = await verify(key);
    if (first !== 'VALID') throw new Error(`the benchmark key verified as ${first}, expected VALID`);

    let invalid = 0;
    const timeVerify = async (n: number) => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        // Awaited only when the verifier returned a promise: a synchronous answer is timed as it is.
        const answer = verify(key);
        if ((typeof answer === 'string' ? answer : await answer) !== 'VALID') invalid++;
      }
      return Number(process.hrtime.bigint() - start) / n;
    };

    // Warm-up: let the JIT settle on all three loops before anything is recorded.
    log(`in-process: warming up (${label})`);
    for (let i = 0; i < 3; i++) {
      timeHash(key, opsPerRound);
      await timeAsyncHash(key, opsPerRound);
      await timeVerify(opsPerRound);
    }

    const floor: number[] = [];
    const asyncFloor: number[] = [];
    const keyward: number[] = [];
    for (let round = 0; round < rounds; round++) {
      if (round % 2 === 0) {
        floor.push(timeHash(key, opsPerRound));
        asyncFloor.push(await timeAsyncHash(key, opsPerRound));
        keyward.push(await timeVerify(opsPerRound));
      } else {
        keyward.push(await timeVerify(opsPerRound));
        asyncFloor.push(await timeAsyncHash(key, opsPerRound));
        floor.push(timeHash(key, opsPerRound));
      }
    }
    if (invalid > 0) throw new Error(`${invalid} verifications of the benchmark key were not VALID`);
    // The claim is "a cached key": every timed verification must have been a cache hit.
    const { hits, misses } = container.keyCache.stats();
    if (misses > 1) throw new Error(`the key cache missed ${misses} times: this would not measure a cached key`);

    const floorNs = median(floor);
    const asyncNs = median(asyncFloor);
    const keywardNs = median(keyward);
    // Paired per round (the loops ran back to back), so drift in the machine's speed cancels out.
    const ratio = median(keyward.map((k, i) => k / (floor[i] ?? Number.NaN)));
    const asyncRatio = median(asyncFloor.map((a, i) => a / (floor[i] ?? Number.NaN)));
    return {
      title: 'In-process verification of a cached valid key vs the SHA-256 floor',
      headers: ['Case', 'median per op', 'ops/s', 'vs floor', 'target', ''],
      rows: [
        ['floor: hashApiKey(key) (node:crypto SHA-256)', formatNs(floorNs), fmtOps(floorNs), '1.00×', '', ''],
        ['floor + one await (context)', formatNs(asyncNs), fmtOps(asyncNs), formatRatio(asyncRatio), '', ''],
        [
          `Keyward ${label}`,
          formatNs(keywardNs),
          fmtOps(keywardNs),
          formatRatio(ratio),
          `≤ ${IN_PROCESS_TARGET.toFixed(1)}×`,
          verdict(ratio <= IN_PROCESS_TARGET),
        ],
      ],
      notes: [
        `${rounds} interleaved rounds × ${opsPerRound.toLocaleString('en-US')} ops of each loop, after 3 warm-up rounds; times are medians of rounds, "vs floor" the median of per-round ratios.`,
        `Key cache: ${hits.toLocaleString('en-US')} hits, ${misses} miss (the first verification).`,
        `Keyward rounds ranged ${formatNs(Math.min(...keyward))}–${formatNs(Math.max(...keyward))}; floor ${formatNs(Math.min(...floor))}–${formatNs(Math.max(...floor))}.`,
      ],
    };
  } finally {
    await container.close();
    await removeDir();
    if (sink === 0.5) log('');
  }
}

function fmtOps(nsPerOp: number): string {
  return `${(1e9 / nsPerOp / 1e6).toFixed(2)} M`;
}
