import type { KeywardClient, UsageEvent } from './client.js';
import { KeywardError } from './errors.js';

/** How the middleware reports the requests it saw to Keyward (`POST /v1/usage/events`). */
export interface UsageReportingOptions {
  /** Send what is buffered at least this often (default 5 000 ms). */
  flushIntervalMs?: number;
  /** Events per report, at most 500 (Keyward's limit); a full batch is sent at once (default 500). */
  batchSize?: number;
  /** Events held at most while Keyward is slow or down; more are dropped (default 10 000). */
  maxBuffered?: number;
}

/** A usage event as recorded: `occurred_at` may be epoch ms, written as ISO 8601 when its batch is sent. */
export type RecordedUsageEvent = Omit<UsageEvent, 'occurred_at'> & { occurred_at?: string | number | null | undefined };

/**
 * Buffers usage events and sends them in batches, in the background. Best-effort by design: `record` is a
 * push that never waits, the buffer is bounded (what does not fit is dropped and counted), a batch that
 * Keyward could not take for a passing reason (network, 5xx, 429) is kept for the next try, and one it
 * refused (4xx) is dropped. Nothing here ever throws into a request.
 */
export interface UsageReporter {
  record(event: RecordedUsageEvent): void;
  /** Sends everything buffered now (one report at a time); resolves when done, never rejects. */
  flush(): Promise<void>;
  /** Events dropped so far (buffer full or refused by Keyward). */
  dropped(): number;
  /** Events waiting to be sent. */
  buffered(): number;
  /** Stops the timer and sends what is buffered. Recording afterwards starts it again. */
  close(): Promise<void>;
}

export const MAX_REPORT_EVENTS = 500;

// Events of one batch mostly share their millisecond (thousands of requests a second): the last time written
// is kept, so most events need no Date of their own.
let lastMs = Number.NaN;
let lastIso = '';
function isoOf(ms: number): string {
  const whole = Math.trunc(ms);
  if (whole !== lastMs) {
    lastIso = new Date(whole).toISOString();
    lastMs = whole;
  }
  return lastIso;
}

/** The event as Keyward takes it: its time in ISO 8601 (none for a time that is not one: Keyward's own then). */
function asSent(event: RecordedUsageEvent): UsageEvent {
  const at = event.occurred_at;
  if (typeof at !== 'number') return event as UsageEvent;
  return { ...event, occurred_at: Number.isFinite(at) ? isoOf(at) : null };
}

export function createUsageReporter(
  client: Pick<KeywardClient, 'reportUsage'>,
  options: UsageReportingOptions & { onError?: ((error: KeywardError) => void) | undefined } = {},
): UsageReporter {
  const intervalMs = options.flushIntervalMs ?? 5_000;
  const batchSize = Math.max(1, Math.min(MAX_REPORT_EVENTS, options.batchSize ?? MAX_REPORT_EVENTS));
  const maxBuffered = Math.max(batchSize, options.maxBuffered ?? 10_000);
  let buffer: RecordedUsageEvent[] = [];
  let lost = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;

  // A one-shot timer while something waits: an idle middleware keeps no timer, and it never holds the
  // process open (unref, where the runtime has it).
  function schedule(): void {
    if (timer !== null || buffer.length === 0) return;
    timer = setTimeout(() => {
      timer = null;
      void flush();
    }, intervalMs);
    (timer as { unref?: () => void }).unref?.();
  }

  // `fullOnly`: a batch that filled sends full batches only; what arrives meanwhile waits for the next full
  // batch or the timer. Sending every few events that trickled in during a POST would cost a POST each.
  async function sendAll(fullOnly = false): Promise<void> {
    while (buffer.length >= (fullOnly ? batchSize : 1)) {
      const batch = buffer.slice(0, batchSize);
      buffer = buffer.slice(batch.length);
      try {
        await client.reportUsage(batch.map(asSent));
      } catch (error) {
        const failure = error instanceof KeywardError ? error : KeywardError.network(error);
        options.onError?.(failure);
        const passing = failure.status === 0 || failure.status === 429 || failure.status >= 500;
        if (!passing) {
          lost += batch.length;
          continue;
        }
        // Put it back in front of what arrived meanwhile, as far as it fits, and try again later.
        const kept = batch.slice(0, Math.max(0, maxBuffered - buffer.length));
        lost += batch.length - kept.length;
        buffer = [...kept, ...buffer];
        return;
      }
    }
  }

  let chain: Promise<void> = Promise.resolve();
  function flush(fullOnly = false): Promise<void> {
    chain = chain.then(() => sendAll(fullOnly)).then(schedule, schedule);
    return chain;
  }

  return {
    record(event) {
      if (buffer.length >= maxBuffered) {
        lost++;
        return;
      }
      buffer.push(event);
      if (buffer.length === batchSize) void flush(true);
      else schedule();
    },
    flush: () => flush(),
    dropped: () => lost,
    buffered: () => buffer.length,
    async close() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await flush();
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
