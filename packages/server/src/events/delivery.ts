import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { hostname } from 'node:os';
import { v7 as uuidv7 } from 'uuid';
import { iso } from '../domain.js';
import type { Db } from '../store/database.js';
import { checkTarget, pinnedLookup, type Resolver, resolveAll } from './address-guard.js';
import { RETRY_SCHEDULE_MS } from './outbox.js';
import {
  type ClaimedDelivery,
  claimDueDeliveries,
  type DeliveryStatus,
  endDueDeliveries,
  findWebhookForUpdate,
  insertAttempt,
  settleDelivery,
  updateWebhook,
} from './repository.js';
import { type SecretBox, signPayload } from './signing.js';

// The delivery worker: claims due deliveries (a lease, so several instances never send one delivery at once, and
// one killed mid-delivery leaves it to be claimed again once its lease has passed: at least once), POSTs each per
// Standard Webhooks, records the attempt and schedules the next (backoff with jitter for about a day, then dead).
// A webhook whose every attempt has failed for a day is disabled, saying why.

/** One POST: its status code, or a thrown error (no connection, no answer in time). */
export type Sender = (request: {
  url: URL;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  lookup?: LookupFunction | undefined;
}) => Promise<number>;

/**
 * POSTs with node:http(s): no redirect is followed (a 3xx is a failure), the connection is new each time and goes
 * where `lookup` says, and the answer's body is not read (only its status counts).
 */
export const sendHttp: Sender = ({ url, headers, body, timeoutMs, lookup }) =>
  new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const request = client.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        agent: false,
        ...(lookup ? { lookup } : {}),
      },
      (response) => {
        clearTimeout(timer);
        resolve(response.statusCode ?? 0);
        response.destroy();
      },
    );
    const timer = setTimeout(() => request.destroy(new TimeoutError(timeoutMs)), timeoutMs);
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    request.end(body);
  });

class TimeoutError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms / 1000} s`);
    this.name = 'TimeoutError';
  }
}

/** A short description of a failed send: never the URL (its query may hold a token). */
function describe(error: unknown): string {
  if (error instanceof TimeoutError) return error.message;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return `connection failed (${code})`;
  return 'connection failed';
}

/** A failed attempt's error, as stored: short. */
const clip = (text: string): string => (text.length > 200 ? `${text.slice(0, 199)}…` : text);

export interface DeliveryWorkerDeps {
  db: Db;
  secrets: SecretBox;
  /** `WEBHOOK_ALLOW_PRIVATE`: deliver to loopback and private addresses too. */
  allowPrivate: boolean;
  now?: () => number;
  /** In [0, 1): the jitter of the retry delays. */
  random?: () => number;
  resolve?: Resolver;
  send?: Sender;
  /** Names this instance's claims (with a random part per claim). */
  instanceId?: string;
  /** Deliveries claimed, and sent at once, per round. */
  batchSize?: number;
  /** How long a claim holds; a delivery claimed by a process that died is claimed again after it. */
  leaseMs?: number;
  timeoutMs?: number;
  pollMs?: number;
  /** A webhook whose every attempt failed for this long (and at least `MIN_FAILURES_TO_DISABLE` times) is disabled. */
  disableAfterMs?: number;
  onError?: (error: unknown) => void;
}

export const DELIVERY_TIMEOUT_MS = 10_000;
export const DELIVERY_LEASE_MS = 60_000;
export const DISABLE_AFTER_MS = 24 * 3_600_000;
const MIN_FAILURES_TO_DISABLE = 5;
const USER_AGENT = 'Keyward-Webhooks/1';

export type DeliveryWorker = ReturnType<typeof createDeliveryWorker>;

export function createDeliveryWorker({
  db: { db, dialect },
  secrets,
  allowPrivate,
  now = Date.now,
  random = Math.random,
  resolve = resolveAll,
  send = sendHttp,
  instanceId = `${hostname()}:${process.pid}`,
  batchSize = 10,
  leaseMs = DELIVERY_LEASE_MS,
  timeoutMs = DELIVERY_TIMEOUT_MS,
  pollMs = 1_000,
  disableAfterMs = DISABLE_AFTER_MS,
  onError = () => {},
}: DeliveryWorkerDeps) {
  /** The delay before the retry that follows attempt number `attempts` (from 1): the schedule, ±20 %. */
  const retryDelay = (attempts: number): number => {
    const base = RETRY_SCHEDULE_MS[Math.min(attempts - 1, RETRY_SCHEDULE_MS.length - 1)] ?? 0;
    return Math.round(base * (0.8 + 0.4 * random()));
  };

  /** Sends one claimed delivery: its status code, or why it was not sent or not answered. */
  async function attempt(claimed: ClaimedDelivery, at: number): Promise<{ statusCode: number | null; error: string | null }> {
    const { event, webhook } = claimed;
    const secret = secrets.open(webhook.secret, webhook.id);
    if (secret === null) {
      return { statusCode: null, error: 'the signing secret cannot be opened (WEBHOOK_ENCRYPTION_KEY changed?): roll the secret' };
    }
    let url: URL;
    try {
      url = new URL(webhook.url);
    } catch {
      return { statusCode: null, error: 'the URL is not valid' };
    }
    const target = await checkTarget(url, allowPrivate, resolve);
    if (!target.ok) return { statusCode: null, error: clip(`refused: ${target.reason}`) };
    const body = JSON.stringify({ type: event.type, timestamp: iso(event.createdAt), data: event.data });
    const timestamp = Math.floor(at / 1000);
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': event.id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signPayload(secret, event.id, timestamp, body),
    };
    try {
      const lookup = target.address === null ? undefined : pinnedLookup(target.address, target.family);
      const statusCode = await send({ url, headers, body, timeoutMs, lookup });
      return { statusCode, error: statusCode >= 200 && statusCode < 300 ? null : `HTTP ${statusCode}` };
    } catch (error) {
      return { statusCode: null, error: clip(describe(error)) };
    }
  }

  /** Records an attempt and settles the delivery; on failure, counts it against the webhook (and may disable it). */
  async function record(
    claimed: ClaimedDelivery,
    token: string,
    at: number,
    durationMs: number,
    outcome: { statusCode: number | null; error: string | null },
  ): Promise<void> {
    await db.transaction().execute(async (trx) => {
      await insertAttempt(trx, { id: uuidv7(), deliveryId: claimed.id, attemptedAt: at, durationMs, ...outcome });
      // Locked first (as a disabling does), so its failure count and the disabling are one decision.
      const webhook = await findWebhookForUpdate(trx, claimed.webhook.id, dialect);
      const attempts = claimed.attempts + 1;
      const succeeded = outcome.error === null;
      // A webhook disabled while this was being sent gets no retry.
      const last = attempts >= claimed.maxAttempts || !webhook?.enabled;
      const status: DeliveryStatus = succeeded ? 'succeeded' : last ? 'dead' : 'failed';
      const held = await settleDelivery(trx, claimed.id, token, {
        status,
        attempts,
        nextAttemptAt: status === 'failed' ? at + retryDelay(attempts) : null,
        lastAttemptAt: at,
        lastStatusCode: outcome.statusCode,
        lastError: outcome.error,
      });
      // Another worker claimed it again (this one's lease ran out): the attempt stays recorded, the rest is its.
      if (!held || !webhook) return;
      if (succeeded) {
        if (webhook.failingSince !== null || webhook.consecutiveFailures !== 0) {
          await updateWebhook(trx, webhook.id, { failingSince: null, consecutiveFailures: 0 });
        }
        return;
      }
      const failingSince = webhook.failingSince ?? at;
      const failures = webhook.consecutiveFailures + 1;
      if (webhook.enabled && at - failingSince >= disableAfterMs && failures >= MIN_FAILURES_TO_DISABLE) {
        const hours = Math.round((at - failingSince) / 3_600_000);
        const reason = clip(`every attempt failed for ${hours} hours (${failures} in a row; last: ${outcome.error})`);
        await updateWebhook(trx, webhook.id, {
          enabled: false,
          disabledReason: reason,
          failingSince,
          consecutiveFailures: failures,
          updatedAt: at,
        });
        await endDueDeliveries(trx, webhook.id, 'the webhook was disabled', at);
      } else {
        await updateWebhook(trx, webhook.id, { failingSince, consecutiveFailures: failures });
      }
    });
  }

  async function deliver(claimed: ClaimedDelivery, token: string): Promise<void> {
    const at = now();
    if (!claimed.webhook.enabled) {
      // Disabled after this delivery was written: it ends without an attempt.
      await settleDelivery(db, claimed.id, token, {
        status: 'dead',
        attempts: claimed.attempts,
        nextAttemptAt: null,
        lastAttemptAt: at,
        lastStatusCode: null,
        lastError: 'the webhook is disabled',
      });
      return;
    }
    const started = performance.now();
    const outcome = await attempt(claimed, at);
    await record(claimed, token, at, Math.round(performance.now() - started), outcome);
  }

  /** Claims the deliveries due now (up to a batch) and sends them; how many were claimed. */
  async function runOnce(): Promise<number> {
    const at = now();
    const token = `${instanceId}:${uuidv7()}`;
    const claimed = await claimDueDeliveries(db, dialect, { now: at, leaseUntil: at + leaseMs, token, limit: batchSize });
    const settled = await Promise.allSettled(claimed.map((delivery) => deliver(delivery, token)));
    for (const result of settled) if (result.status === 'rejected') onError(result.reason);
    return claimed.length;
  }

  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let stopped = true;
  const schedule = (ms: number): void => {
    timer = setTimeout(tick, ms);
    timer.unref();
  };
  const tick = (): void => {
    timer = null;
    running = runOnce()
      // A full batch: more may be due at once.
      .then((count) => (count === batchSize ? 0 : pollMs))
      .catch((error: unknown) => {
        onError(error);
        return pollMs * 5;
      })
      .then((next) => {
        running = null;
        if (!stopped) schedule(next);
      });
  };

  return {
    runOnce,
    /** Polls for due deliveries until `stop`; `report` hears of rounds that failed (say, the database is down). */
    start(report: (error: unknown) => void = onError): void {
      if (!stopped) return;
      onError = report;
      stopped = false;
      schedule(0);
    },
    /** Stops polling; waits for the round in flight. */
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await running;
    },
  };
}
