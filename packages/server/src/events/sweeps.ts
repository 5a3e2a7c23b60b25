import { hostname } from 'node:os';
import { iso } from '../domain.js';
import type { Db } from '../store/database.js';
import { keySummary } from './catalogue.js';
import { emitEvent } from './outbox.js';
import { deleteEventsBefore, deleteMarksBefore, type KeyFacts, keysExpiringUnmarked, markOnce, takeLease } from './repository.js';

// Events no request causes: a key's expiry drawing near (`key.expiring`) and passing (`key.expired`). A sweep
// runs every minute on the instance holding the sweep lease (one at a time across instances); each key's event is
// written with a mark (kind, key, expiry) in one transaction, so it is sent once per key and expiry even if two
// sweeps overlap. A new expiry (PATCH) is a new mark: the key is announced again. The sweep also prunes old events.

/** Keys that expired this long ago at most are still announced (e.g. after every instance was down a while). */
export const EXPIRED_LOOKBACK_MS = 7 * 24 * 3_600_000;
const LEASE_NAME = 'event-sweeps';
const BATCH = 100;
/** Batches per kind per run: a backlog is worked off over several runs. */
const MAX_BATCHES = 20;
const DAY_MS = 24 * 3_600_000;

export interface EventSweepsDeps {
  db: Db;
  /** `WEBHOOK_KEY_EXPIRING_BEFORE`: how long before `expires_at` a key is announced as expiring. */
  expiringBeforeMs: number;
  /** `EVENTS_RETENTION_DAYS`: events (with their deliveries) older than this are deleted. */
  retentionDays: number;
  now?: () => number;
  instanceId?: string;
  intervalMs?: number;
  onError?: (error: unknown) => void;
}

export type EventSweeps = ReturnType<typeof createEventSweeps>;

export function createEventSweeps({
  db: { db },
  expiringBeforeMs,
  retentionDays,
  now = Date.now,
  instanceId = `${hostname()}:${process.pid}`,
  intervalMs = 60_000,
  onError = () => {},
}: EventSweepsDeps) {
  /** Announces each unmarked key whose expiry is in (from, to]; how many. */
  async function announce(
    kind: 'key.expiring' | 'key.expired',
    window: { from: number; to: number; withRolled: boolean },
    at: number,
    data: (key: KeyFacts & { expiresAt: number }) => Record<string, unknown>,
  ): Promise<number> {
    let count = 0;
    for (let batch = 0; batch < MAX_BATCHES; batch++) {
      const keys = await keysExpiringUnmarked(db, { ...window, kind, limit: BATCH });
      await db.transaction().execute(async (trx) => {
        for (const key of keys) {
          if (key.expiresAt === null) continue;
          if (!(await markOnce(trx, { kind, subjectId: key.id, period: String(key.expiresAt), at }))) continue;
          await emitEvent(trx, kind, data({ ...key, expiresAt: key.expiresAt }), at);
          count++;
        }
      });
      if (keys.length < BATCH) break;
    }
    return count;
  }

  /** One sweep, if this instance holds (or takes) the lease; `null` when another instance does. */
  async function runOnce(): Promise<{ expiring: number; expired: number } | null> {
    const at = now();
    // Held for a run and a half: renewed by each run, taken over by another instance if this one stops.
    if (!(await takeLease(db, { name: LEASE_NAME, holder: instanceId, now: at, until: at + Math.round(intervalMs * 1.5) }))) return null;
    const expiring = await announce('key.expiring', { from: at, to: at + expiringBeforeMs, withRolled: false }, at, (key) => ({
      key: keySummary(key),
      expires_at: iso(key.expiresAt),
      expires_in_seconds: Math.max(0, Math.round((key.expiresAt - at) / 1000)),
    }));
    const expired = await announce('key.expired', { from: at - EXPIRED_LOOKBACK_MS, to: at, withRolled: true }, at, (key) => ({
      key: keySummary(key),
      expired_at: iso(key.expiresAt),
    }));
    for (let batch = 0; batch < MAX_BATCHES; batch++) {
      if ((await deleteEventsBefore(db, at - retentionDays * DAY_MS, 1_000)) < 1_000) break;
    }
    // A mark outlives the window in which it could be asked for again (the expiring window, the lookback, a month).
    await deleteMarksBefore(db, at - expiringBeforeMs - EXPIRED_LOOKBACK_MS - 62 * DAY_MS);
    return { expiring, expired };
  }

  let timer: NodeJS.Timeout | null = null;
  let running: Promise<unknown> | null = null;
  return {
    runOnce,
    /** Sweeps now and every interval until `stop`; `report` hears of sweeps that failed. */
    start(report: (error: unknown) => void = onError): void {
      if (timer) return;
      onError = report;
      const tick = (): void => {
        if (running) return;
        running = runOnce()
          .catch(onError)
          .finally(() => {
            running = null;
          });
      };
      tick();
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      await running;
    },
  };
}
