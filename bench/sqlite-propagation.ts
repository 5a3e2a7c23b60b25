import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '@keyward/sdk';
import { type Container, openContainer, SERVER_CLI, SYSTEM } from './lib/keyward.js';
import { onCleanup, type Server, startServer } from './lib/processes.js';
import { formatMs, median, percentile, verdict } from './lib/stats.js';
import type { Table } from './lib/table.js';

export interface SqlitePropagationOptions {
  /** Changes measured per case (half before, half after the other case's, alternating key by key). */
  changes: number;
  log: (line: string) => void;
}

/** A key changed in one process on a SQLite file must be refused by every other process within this. */
export const SQLITE_PROPAGATION_TARGET_MS = 100;

interface Target {
  id: string;
  key: string;
}

async function post(url: string, token: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

async function verifyCode(base: string, token: string, key: string): Promise<unknown> {
  const answer = await post(`${base}/v1/keys/verify`, token, { key });
  if (answer.status !== 200) throw new Error(`verify answered ${answer.status}`);
  return answer.json.code;
}

/** Verifies `key` on the server back to back until it is refused; the milliseconds from `since` to that answer. */
async function untilRevoked(base: string, token: string, key: string, since: number): Promise<number> {
  for (;;) {
    const code = await verifyCode(base, token, key);
    if (code === 'REVOKED') return performance.now() - since;
    if (code !== 'VALID') throw new Error(`verify answered ${String(code)} while waiting for REVOKED`);
    if (performance.now() - since > 10_000) throw new Error('the revocation was not seen within 10 s');
  }
}

async function createTargets(container: Container, count: number): Promise<Target[]> {
  const targets: Target[] = [];
  for (let i = 0; i < count; i++) {
    const created = await container.keys.create(SYSTEM, { name: `propagation ${i}` });
    if (!created.ok) throw new Error(`could not create a key: ${created.code}`);
    targets.push({ id: created.value.record.id, key: created.value.key });
  }
  return targets;
}

/**
 * How long a key revoked by another process on the same SQLite file (as `keyward keys revoke` does while
 * `keyward serve` runs) keeps verifying on `keyward serve`, against the same measurement with the revocation
 * made through serve's own API (same-process invalidation: the delay is one verify round trip).
 */
export async function runSqlitePropagation({ changes, log }: SqlitePropagationOptions): Promise<Table> {
  const dir = mkdtempSync(join(tmpdir(), 'keyward-bench-propagation-'));
  const removeDir = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  let server: Server | undefined;
  let container: Container | undefined;
  try {
    const databaseUrl = `sqlite:${join(dir, 'keyward.db')}`;
    const adminKey = generateKey('kw');
    // This process is the other process: its own container (and connection) on the file, as the CLI has.
    container = await openContainer(databaseUrl, { INITIAL_ADMIN_KEY: adminKey });
    await container.keys.bootstrap(adminKey);
    log(`sqlite-propagation: creating ${2 * changes} keys, starting keyward serve`);
    const remote = await createTargets(container, changes);
    const local = await createTargets(container, changes);
    server = await startServer({
      args: [SERVER_CLI, 'serve'],
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? tmpdir(),
        NODE_ENV: 'production',
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: databaseUrl,
        LOG_LEVEL: 'warn',
        INITIAL_ADMIN_KEY: adminKey,
      },
      urlPattern: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
    });
    const base = server.url;
    // Every key cached on the server before anything is changed: a refusal can then only come from invalidation.
    for (const target of [...remote, ...local]) {
      for (let i = 0; i < 2; i++)
        if ((await verifyCode(base, adminKey, target.key)) !== 'VALID') throw new Error('a new key did not verify');
    }

    log(`sqlite-propagation: ${changes} revocations in this process and ${changes} through the server, alternating`);
    const remoteMs: number[] = [];
    const localMs: number[] = [];
    for (let i = 0; i < changes; i++) {
      const subject = remote[i];
      const baseline = local[i];
      if (subject === undefined || baseline === undefined) break;
      const measure = [
        async () => {
          const revoked = await container?.keys.revoke(SYSTEM, subject.id);
          if (!revoked?.ok) throw new Error('revoke failed');
          remoteMs.push(await untilRevoked(base, adminKey, subject.key, performance.now()));
        },
        async () => {
          const revoked = await post(`${base}/v1/api-keys/${baseline.id}/revoke`, adminKey);
          if (revoked.status !== 200) throw new Error(`revoke answered ${revoked.status}`);
          localMs.push(await untilRevoked(base, adminKey, baseline.key, performance.now()));
        },
      ];
      // Alternate which goes first, so drift in the machine's speed hits both alike.
      if (i % 2 === 1) measure.reverse();
      for (const run of measure) {
        await run();
        // Off the 25 ms poll's phase: the next change does not start right after a poll every time.
        await new Promise((resolve) => setTimeout(resolve, 3 + (i % 7)));
      }
    }

    // Against the baseline's p99, not 0: on a loaded machine one verify round trip alone can take tens of ms.
    const allowed = SQLITE_PROPAGATION_TARGET_MS + percentile(localMs, 99);
    const row = (name: string, values: number[], target: string, result: string) => [
      name,
      formatMs(median(values)),
      formatMs(percentile(values, 99)),
      formatMs(Math.max(...values)),
      target,
      result,
    ];
    return {
      title: `SQLite: a key revoked in another process, until keyward serve refuses it (${changes} changes each)`,
      headers: ['Revoked', 'p50', 'p99', 'max', 'target', 'result'],
      rows: [
        row('through serve’s own API (baseline: same-process invalidation)', localMs, '—', ''),
        row(
          'in another process on the same file (as the CLI does)',
          remoteMs,
          `p99 ≤ baseline p99 + ${SQLITE_PROPAGATION_TARGET_MS} ms`,
          verdict(percentile(remoteMs, 99) <= allowed),
        ),
      ],
      notes: [
        'Time from the revocation having committed (the API answered / the key service returned) to the first verify answer REVOKED, verifying back to back over HTTP; the baseline is one verify round trip.',
        'The other process writes a row to key_changes; serve polls PRAGMA data_version every 25 ms and, when it moved, reads the new rows and drops those keys from its cache.',
        `Difference of medians: ${formatMs(median(remoteMs) - median(localMs))} (about half the poll interval is expected).`,
      ],
    };
  } finally {
    await server?.stop();
    await container?.close();
    await removeDir();
  }
}
