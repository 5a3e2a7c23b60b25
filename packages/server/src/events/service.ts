import { v7 as uuidv7 } from 'uuid';
import { type Caller, isAdmin } from '../callers/principal.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import { decodeCursor, encodeCursor, type Page } from '../pagination.js';
import type { Db } from '../store/database.js';
import { checkTarget, type Resolver, resolveAll } from './address-guard.js';
import { isEventType } from './catalogue.js';
import { MAX_ATTEMPTS } from './outbox.js';
import {
  type Attempt,
  type Delivery,
  type DeliveryStatus,
  deleteWebhook,
  type EventRecord,
  endDueDeliveries,
  findDelivery,
  findWebhook,
  insertWebhook,
  listAttempts,
  listDeliveries,
  listEvents,
  listWebhooks,
  requeueDelivery,
  updateWebhook,
  type Webhook,
  type WebhookChanges,
} from './repository.js';
import { newSigningSecret, type SecretBox } from './signing.js';

export interface WebhookInput {
  url: string;
  description?: string | null;
  /** Event types, or `['*']` for all (the default). */
  eventTypes?: string[];
  enabled?: boolean;
}

export type WebhookUpdate = Partial<WebhookInput>;

/** A webhook with its signing secret: answered once, when made or rolled. */
export interface WebhookWithSecret {
  webhook: Webhook;
  secret: string;
}

export interface DeliveryWithAttempts extends Delivery {
  attemptLog: Attempt[];
}

export interface WebhookServiceDeps {
  db: Db;
  secrets: SecretBox;
  /** `WEBHOOK_ALLOW_PRIVATE`. */
  allowPrivate: boolean;
  resolve?: Resolver;
  now?: () => number;
}

export type WebhookService = ReturnType<typeof createWebhookService>;

export const MAX_URL_LENGTH = 2_048;
export const MAX_WEBHOOK_DESCRIPTION_LENGTH = 500;

const forbidden = (): Failure<'FORBIDDEN'> => err('FORBIDDEN', 'only an admin may manage webhooks');

function invalid(field: string, message: string): Failure<'INVALID_REQUEST'> {
  return err('INVALID_REQUEST', `${field}: ${message}`, [{ field, message }]);
}

function page<T extends { id: string }>(rows: T[], limit: number): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}

/** Webhooks (admin only): where events go, their secrets, their deliveries; and the events themselves. */
export function createWebhookService({ db: { db }, secrets, allowPrivate, resolve = resolveAll, now = Date.now }: WebhookServiceDeps) {
  /** The URL as stored, or why it may not be used: http(s), and a public address unless `WEBHOOK_ALLOW_PRIVATE`. */
  async function checkUrl(text: string): Promise<Result<string>> {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return invalid('body.url', 'must be an absolute http or https URL');
    }
    if (text.length > MAX_URL_LENGTH) return invalid('body.url', `must be at most ${MAX_URL_LENGTH} characters`);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return invalid('body.url', 'must use http or https');
    const target = await checkTarget(url, allowPrivate, resolve);
    if (!target.ok) {
      const message = `${target.reason}; set WEBHOOK_ALLOW_PRIVATE=true to allow private and loopback addresses`;
      return err('WEBHOOK_URL_NOT_ALLOWED', `body.url: ${message}`, [{ field: 'body.url', message }]);
    }
    return ok(url.toString());
  }

  function checkEventTypes(types: string[] | undefined): Result<string[] | undefined> {
    if (types === undefined) return ok(undefined);
    const unique = [...new Set(types)];
    if (unique.length === 0) return invalid('body.event_types', 'must name at least one event type, or "*"');
    const unknown = unique.find((type) => type !== '*' && !isEventType(type));
    if (unknown !== undefined) return invalid('body.event_types', `"${unknown}" is no event type`);
    return ok(unique.includes('*') ? ['*'] : unique);
  }

  function checkDescription(description: string | null | undefined): Failure | null {
    if (typeof description === 'string' && description.length > MAX_WEBHOOK_DESCRIPTION_LENGTH) {
      return invalid('body.description', `must be at most ${MAX_WEBHOOK_DESCRIPTION_LENGTH} characters`);
    }
    return null;
  }

  async function reachable(caller: Caller, id: string): Promise<Result<Webhook>> {
    if (!isAdmin(caller.principal)) return forbidden();
    const webhook = await findWebhook(db, id);
    return webhook ? ok(webhook) : err('WEBHOOK_NOT_FOUND');
  }

  return {
    async create(caller: Caller, input: WebhookInput): Promise<Result<WebhookWithSecret>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const bad = checkDescription(input.description);
      if (bad) return bad;
      const types = checkEventTypes(input.eventTypes ?? ['*']);
      if (!types.ok) return types;
      const url = await checkUrl(input.url);
      if (!url.ok) return url;
      const at = now();
      const id = uuidv7();
      const secret = newSigningSecret();
      const webhook: Webhook = {
        id,
        url: url.value,
        description: input.description ?? null,
        eventTypes: types.value ?? ['*'],
        enabled: input.enabled ?? true,
        secret: secrets.seal(secret, id),
        disabledReason: null,
        failingSince: null,
        consecutiveFailures: 0,
        createdAt: at,
        updatedAt: at,
      };
      await insertWebhook(db, webhook);
      return ok({ webhook, secret });
    },

    async list(caller: Caller, input: { limit?: number; cursor?: string }): Promise<Result<Page<Webhook>>> {
      if (!isAdmin(caller.principal)) return forbidden();
      const before = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
      if (before === null) return invalid('querystring.cursor', 'is not a cursor from a previous page');
      const limit = input.limit ?? 20;
      return ok(page(await listWebhooks(db, { before, limit }), limit));
    },

    get: reachable,

    /**
     * Changes a webhook. Enabling one clears why it was disabled and its failure count; disabling one ends the
     * deliveries it still had due (`dead`; the retry endpoint sends one again).
     */
    async update(caller: Caller, id: string, input: WebhookUpdate): Promise<Result<Webhook>> {
      const found = await reachable(caller, id);
      if (!found.ok) return found;
      const bad = checkDescription(input.description);
      if (bad) return bad;
      const types = checkEventTypes(input.eventTypes);
      if (!types.ok) return types;
      const changes: WebhookChanges = {};
      if (input.url !== undefined) {
        const url = await checkUrl(input.url);
        if (!url.ok) return url;
        changes.url = url.value;
      }
      if (input.description !== undefined) changes.description = input.description;
      if (types.value !== undefined) changes.eventTypes = types.value;
      const at = now();
      if (input.enabled === true && !found.value.enabled) {
        Object.assign(changes, { enabled: true, disabledReason: null, failingSince: null, consecutiveFailures: 0 });
      } else if (input.enabled === false && found.value.enabled) {
        Object.assign(changes, { enabled: false, disabledReason: 'disabled by an admin' });
      }
      const updated = await db.transaction().execute(async (trx) => {
        const webhook = await updateWebhook(trx, id, { ...changes, updatedAt: at });
        if (webhook && changes.enabled === false) await endDueDeliveries(trx, id, 'the webhook was disabled', at);
        return webhook;
      });
      return updated ? ok(updated) : err('WEBHOOK_NOT_FOUND');
    },

    /** Deletes a webhook with its deliveries and their attempts. */
    async remove(caller: Caller, id: string): Promise<Result<null>> {
      if (!isAdmin(caller.principal)) return forbidden();
      return (await deleteWebhook(db, id)) ? ok(null) : err('WEBHOOK_NOT_FOUND');
    },

    /**
     * A new signing secret, answered once; the old one signs nothing more. Deliveries that fail because the
     * receiver still checks the old one are retried on their schedule, signed anew at each attempt.
     */
    async rollSecret(caller: Caller, id: string): Promise<Result<WebhookWithSecret>> {
      const found = await reachable(caller, id);
      if (!found.ok) return found;
      const secret = newSigningSecret();
      const webhook = await updateWebhook(db, id, { secret: secrets.seal(secret, id), updatedAt: now() });
      return webhook ? ok({ webhook, secret }) : err('WEBHOOK_NOT_FOUND');
    },

    /** A webhook's deliveries, newest first, each with every attempt made. */
    async listDeliveries(
      caller: Caller,
      id: string,
      input: { status?: DeliveryStatus; limit?: number; cursor?: string },
    ): Promise<Result<Page<DeliveryWithAttempts>>> {
      const found = await reachable(caller, id);
      if (!found.ok) return found;
      const before = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
      if (before === null) return invalid('querystring.cursor', 'is not a cursor from a previous page');
      const limit = input.limit ?? 20;
      const { items, nextCursor } = page(await listDeliveries(db, id, { status: input.status, before, limit }), limit);
      const attempts = await listAttempts(
        db,
        items.map((d) => d.id),
      );
      return ok({
        items: items.map((d) => ({ ...d, attemptLog: attempts.filter((a) => a.deliveryId === d.id) })),
        nextCursor,
      });
    },

    /**
     * Sends a delivery again, now: one more attempt for one that died or succeeded; one still scheduled is
     * brought forward. Refused while the webhook is disabled (enable it first).
     */
    async retryDelivery(caller: Caller, webhookId: string, deliveryId: string): Promise<Result<DeliveryWithAttempts>> {
      const found = await reachable(caller, webhookId);
      if (!found.ok) return found;
      if (!found.value.enabled) return err('WEBHOOK_DISABLED', 'enable the webhook before retrying its deliveries');
      const delivery = await findDelivery(db, webhookId, deliveryId);
      if (!delivery) return err('DELIVERY_NOT_FOUND');
      const finished = delivery.status === 'dead' || delivery.status === 'succeeded';
      await requeueDelivery(db, deliveryId, finished ? delivery.attempts + 1 : Math.max(delivery.maxAttempts, MAX_ATTEMPTS), now());
      const requeued = await findDelivery(db, webhookId, deliveryId);
      if (!requeued) return err('DELIVERY_NOT_FOUND');
      return ok({ ...requeued, attemptLog: await listAttempts(db, [deliveryId]) });
    },

    /** Events, newest first, of one type or all. */
    async listEvents(caller: Caller, input: { type?: string; limit?: number; cursor?: string }): Promise<Result<Page<EventRecord>>> {
      if (!isAdmin(caller.principal)) return forbidden();
      if (input.type !== undefined && !isEventType(input.type)) return invalid('querystring.type', `"${input.type}" is no event type`);
      const before = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
      if (before === null) return invalid('querystring.cursor', 'is not a cursor from a previous page');
      const limit = input.limit ?? 20;
      return ok(page(await listEvents(db, { type: input.type, before, limit }), limit));
    },
  };
}
