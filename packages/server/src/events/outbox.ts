import { v7 as uuidv7 } from 'uuid';
import type { Executor } from '../store/schema.js';
import type { EventType } from './catalogue.js';
import { insertDeliveries, insertEvent, listEnabledSubscriptions } from './repository.js';

// The outbox: an event is written in the transaction of the change it reports, with one pending delivery per
// enabled webhook subscribed to its type. A change rolled back leaves no event; a change committed leaves its
// deliveries for the worker (`delivery.ts`), which sends them after the commit, however the process ends.

/** Retries after a failed attempt, per Standard Webhooks' recommendation: about a day and a quarter in all. */
export const RETRY_SCHEDULE_MS: readonly number[] = [
  5_000,
  5 * 60_000,
  30 * 60_000,
  2 * 3_600_000,
  5 * 3_600_000,
  10 * 3_600_000,
  10 * 3_600_000,
];

/** Attempts a delivery gets: the first, and one per retry. */
export const MAX_ATTEMPTS = RETRY_SCHEDULE_MS.length + 1;

/** Whether a webhook subscribed to `eventTypes` wants `type`. */
export function subscribes(eventTypes: readonly string[], type: string): boolean {
  return eventTypes.includes('*') || eventTypes.includes(type);
}

/**
 * Writes event `type` with `data` in `trx`, the transaction of the change it reports, and a delivery for each
 * enabled webhook that wants it. `data` holds ids, names, display prefixes and what changed: never a key or a hash
 * (build it with the catalogue's summaries). Returns the event's id.
 */
export async function emitEvent(trx: Executor, type: EventType, data: Record<string, unknown>, at: number): Promise<string> {
  const id = uuidv7();
  await insertEvent(trx, { id, type, data, createdAt: at });
  const webhooks = (await listEnabledSubscriptions(trx)).filter((webhook) => subscribes(webhook.eventTypes, type));
  await insertDeliveries(
    trx,
    webhooks.map((webhook) => ({ id: uuidv7(), webhookId: webhook.id, eventId: id, maxAttempts: MAX_ATTEMPTS, at })),
  );
  return id;
}
