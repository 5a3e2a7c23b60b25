import { sql } from 'kysely';
import type { Dialect } from '../store/database.js';
import type { Executor, WebhookDeliveriesTable } from '../store/schema.js';

// The events wing's SQL: events, webhooks, their deliveries and attempts, the once-only marks and the sweep lease.

export interface EventRecord {
  id: string;
  type: string;
  data: Record<string, unknown>;
  createdAt: number;
}

export interface Webhook {
  id: string;
  url: string;
  description: string | null;
  /** The event types sent, or `['*']` for every one. */
  eventTypes: string[];
  enabled: boolean;
  /** The signing secret as stored (sealed, see `SecretBox`). */
  secret: string;
  disabledReason: string | null;
  failingSince: number | null;
  consecutiveFailures: number;
  createdAt: number;
  updatedAt: number;
}

export type DeliveryStatus = 'pending' | 'failed' | 'succeeded' | 'dead';

export interface Delivery {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  status: DeliveryStatus;
  attempts: number;
  maxAttempts: number;
  nextAttemptAt: number | null;
  lastAttemptAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface Attempt {
  id: string;
  deliveryId: string;
  attemptedAt: number;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
}

type WebhookRow = {
  id: string;
  url: string;
  description: string | null;
  event_types: string;
  enabled: boolean | number;
  secret: string;
  disabled_reason: string | null;
  failing_since: number | null;
  consecutive_failures: number;
  created_at: number;
  updated_at: number;
};

function toWebhook(row: WebhookRow): Webhook {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    eventTypes: JSON.parse(row.event_types) as string[],
    enabled: Boolean(row.enabled),
    secret: row.secret,
    disabledReason: row.disabled_reason,
    failingSince: row.failing_since,
    consecutiveFailures: row.consecutive_failures,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

type DeliveryRow = Omit<WebhookDeliveriesTable, 'locked_until' | 'claimed_by'> & { type: string };

function toDelivery(row: DeliveryRow): Delivery {
  return {
    id: row.id,
    webhookId: row.webhook_id,
    eventId: row.event_id,
    eventType: row.type,
    status: row.status as DeliveryStatus,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    nextAttemptAt: row.next_attempt_at,
    lastAttemptAt: row.last_attempt_at,
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const toEvent = (row: { id: string; type: string; data: string; created_at: number }): EventRecord => ({
  id: row.id,
  type: row.type,
  data: JSON.parse(row.data) as Record<string, unknown>,
  createdAt: row.created_at,
});

// ---- events ----

export async function insertEvent(db: Executor, event: EventRecord): Promise<void> {
  await db
    .insertInto('events')
    .values({ id: event.id, type: event.type, data: JSON.stringify(event.data), created_at: event.createdAt })
    .execute();
}

/** Newest first, `limit + 1` rows (the caller tells from the extra row whether a next page exists). */
export async function listEvents(db: Executor, filter: { type?: string | undefined; before?: string | undefined; limit: number }) {
  let query = db
    .selectFrom('events')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(filter.limit + 1);
  if (filter.type !== undefined) query = query.where('type', '=', filter.type);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return (await query.execute()).map(toEvent);
}

/** Deletes up to `limit` events older than `before`, with their deliveries and attempts (cascade); how many. */
export async function deleteEventsBefore(db: Executor, before: number, limit: number): Promise<number> {
  const ids = db.selectFrom('events').select('id').where('created_at', '<', before).limit(limit);
  const result = await db.deleteFrom('events').where('id', 'in', ids).executeTakeFirst();
  return Number(result.numDeletedRows);
}

// ---- webhooks ----

/** The enabled webhooks and what they subscribe to: read by every event written (a small table). */
export async function listEnabledSubscriptions(db: Executor): Promise<{ id: string; eventTypes: string[] }[]> {
  const rows = await db.selectFrom('webhooks').select(['id', 'event_types']).where('enabled', '=', true).execute();
  return rows.map((row) => ({ id: row.id, eventTypes: JSON.parse(row.event_types) as string[] }));
}

export async function insertWebhook(db: Executor, webhook: Webhook): Promise<void> {
  await db
    .insertInto('webhooks')
    .values({
      id: webhook.id,
      url: webhook.url,
      description: webhook.description,
      event_types: JSON.stringify(webhook.eventTypes),
      enabled: webhook.enabled,
      secret: webhook.secret,
      disabled_reason: webhook.disabledReason,
      failing_since: webhook.failingSince,
      consecutive_failures: webhook.consecutiveFailures,
      created_at: webhook.createdAt,
      updated_at: webhook.updatedAt,
    })
    .execute();
}

export async function findWebhook(db: Executor, id: string): Promise<Webhook | undefined> {
  const row = await db.selectFrom('webhooks').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toWebhook(row);
}

/**
 * Reads a webhook and, on PostgreSQL, locks it until the transaction ends (its failure counters change). `NO KEY
 * UPDATE`: events written meanwhile may still insert deliveries that refer to it.
 */
export async function findWebhookForUpdate(db: Executor, id: string, dialect: Dialect): Promise<Webhook | undefined> {
  let query = db.selectFrom('webhooks').selectAll().where('id', '=', id);
  if (dialect === 'postgres') query = query.forNoKeyUpdate();
  const row = await query.executeTakeFirst();
  return row && toWebhook(row);
}

export async function listWebhooks(db: Executor, filter: { before?: string | undefined; limit: number }): Promise<Webhook[]> {
  let query = db
    .selectFrom('webhooks')
    .selectAll()
    .orderBy('id', 'desc')
    .limit(filter.limit + 1);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return (await query.execute()).map(toWebhook);
}

export type WebhookChanges = Partial<Omit<Webhook, 'id' | 'createdAt'>>;

export async function updateWebhook(db: Executor, id: string, changes: WebhookChanges): Promise<Webhook | undefined> {
  const row = await db
    .updateTable('webhooks')
    .set({
      ...(changes.url === undefined ? {} : { url: changes.url }),
      ...(changes.description === undefined ? {} : { description: changes.description }),
      ...(changes.eventTypes === undefined ? {} : { event_types: JSON.stringify(changes.eventTypes) }),
      ...(changes.enabled === undefined ? {} : { enabled: changes.enabled }),
      ...(changes.secret === undefined ? {} : { secret: changes.secret }),
      ...(changes.disabledReason === undefined ? {} : { disabled_reason: changes.disabledReason }),
      ...(changes.failingSince === undefined ? {} : { failing_since: changes.failingSince }),
      ...(changes.consecutiveFailures === undefined ? {} : { consecutive_failures: changes.consecutiveFailures }),
      ...(changes.updatedAt === undefined ? {} : { updated_at: changes.updatedAt }),
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
  return row && toWebhook(row);
}

export async function deleteWebhook(db: Executor, id: string): Promise<boolean> {
  const result = await db.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

// ---- deliveries ----

export interface NewDelivery {
  id: string;
  webhookId: string;
  eventId: string;
  maxAttempts: number;
  at: number;
}

export async function insertDeliveries(db: Executor, deliveries: readonly NewDelivery[]): Promise<void> {
  if (deliveries.length === 0) return;
  await db
    .insertInto('webhook_deliveries')
    .values(
      deliveries.map((d) => ({
        id: d.id,
        webhook_id: d.webhookId,
        event_id: d.eventId,
        status: 'pending',
        attempts: 0,
        max_attempts: d.maxAttempts,
        next_attempt_at: d.at,
        created_at: d.at,
        updated_at: d.at,
      })),
    )
    .execute();
}

const deliveryColumns = [
  'webhook_deliveries.id',
  'webhook_deliveries.webhook_id',
  'webhook_deliveries.event_id',
  'webhook_deliveries.status',
  'webhook_deliveries.attempts',
  'webhook_deliveries.max_attempts',
  'webhook_deliveries.next_attempt_at',
  'webhook_deliveries.last_attempt_at',
  'webhook_deliveries.last_status_code',
  'webhook_deliveries.last_error',
  'webhook_deliveries.created_at',
  'webhook_deliveries.updated_at',
  'events.type',
] as const;

/** A webhook's deliveries, newest first, `limit + 1` rows. */
export async function listDeliveries(
  db: Executor,
  webhookId: string,
  filter: { status?: DeliveryStatus | undefined; before?: string | undefined; limit: number },
): Promise<Delivery[]> {
  let query = db
    .selectFrom('webhook_deliveries')
    .innerJoin('events', 'events.id', 'webhook_deliveries.event_id')
    .select(deliveryColumns)
    .where('webhook_deliveries.webhook_id', '=', webhookId)
    .orderBy('webhook_deliveries.id', 'desc')
    .limit(filter.limit + 1);
  if (filter.status !== undefined) query = query.where('webhook_deliveries.status', '=', filter.status);
  if (filter.before !== undefined) query = query.where('webhook_deliveries.id', '<', filter.before);
  return (await query.execute()).map(toDelivery);
}

export async function findDelivery(db: Executor, webhookId: string, id: string): Promise<Delivery | undefined> {
  const row = await db
    .selectFrom('webhook_deliveries')
    .innerJoin('events', 'events.id', 'webhook_deliveries.event_id')
    .select(deliveryColumns)
    .where('webhook_deliveries.webhook_id', '=', webhookId)
    .where('webhook_deliveries.id', '=', id)
    .executeTakeFirst();
  return row && toDelivery(row);
}

/** The deliveries of one event (every webhook it went to). */
export async function listDeliveriesOfEvent(db: Executor, eventId: string): Promise<Delivery[]> {
  const rows = await db
    .selectFrom('webhook_deliveries')
    .innerJoin('events', 'events.id', 'webhook_deliveries.event_id')
    .select(deliveryColumns)
    .where('webhook_deliveries.event_id', '=', eventId)
    .orderBy('webhook_deliveries.id')
    .execute();
  return rows.map(toDelivery);
}

/** Every attempt at the given deliveries, oldest first. */
export async function listAttempts(db: Executor, deliveryIds: readonly string[]): Promise<Attempt[]> {
  if (deliveryIds.length === 0) return [];
  const rows = await db.selectFrom('webhook_attempts').selectAll().where('delivery_id', 'in', deliveryIds).orderBy('id').execute();
  return rows.map((row) => ({
    id: row.id,
    deliveryId: row.delivery_id,
    attemptedAt: row.attempted_at,
    durationMs: row.duration_ms,
    statusCode: row.status_code,
    error: row.error,
  }));
}

/** Makes a delivery due now, allowing it `maxAttempts` attempts in all. */
export async function requeueDelivery(db: Executor, id: string, maxAttempts: number, at: number): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({ status: 'pending', max_attempts: maxAttempts, next_attempt_at: at, updated_at: at })
    .where('id', '=', id)
    .execute();
}

/**
 * Ends every delivery of a webhook still due (it was disabled): `dead`, with why. One being sent now (leased) is
 * left to its worker, which sees the webhook disabled when it records the attempt.
 */
export async function endDueDeliveries(db: Executor, webhookId: string, reason: string, at: number): Promise<void> {
  await db
    .updateTable('webhook_deliveries')
    .set({ status: 'dead', next_attempt_at: null, last_error: reason, updated_at: at })
    .where('webhook_id', '=', webhookId)
    .where('next_attempt_at', 'is not', null)
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', at)]))
    .execute();
}

/** A delivery claimed by a worker, with what it needs to send it. */
export interface ClaimedDelivery {
  id: string;
  attempts: number;
  maxAttempts: number;
  event: EventRecord;
  webhook: Webhook;
}

/**
 * Claims up to `limit` deliveries due at `now` whose lease (if any) has passed, for `token` until `leaseUntil`:
 * one UPDATE, so two workers never claim one delivery. PostgreSQL skips rows another worker's claim has locked
 * (`FOR UPDATE SKIP LOCKED`) rather than wait for them; SQLite runs one writer at a time.
 */
export async function claimDueDeliveries(
  db: Executor,
  dialect: Dialect,
  claim: { now: number; leaseUntil: number; token: string; limit: number },
): Promise<ClaimedDelivery[]> {
  let due = db
    .selectFrom('webhook_deliveries')
    .select('id')
    .where('next_attempt_at', '<=', claim.now)
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', claim.now)]))
    .orderBy('next_attempt_at')
    .limit(claim.limit);
  if (dialect === 'postgres') due = due.forUpdate().skipLocked();
  const claimed = await db
    .updateTable('webhook_deliveries')
    .set({ locked_until: claim.leaseUntil, claimed_by: claim.token })
    .where('id', 'in', due)
    .returning(['id'])
    .execute();
  if (claimed.length === 0) return [];
  const rows = await db
    .selectFrom('webhook_deliveries')
    .innerJoin('events', 'events.id', 'webhook_deliveries.event_id')
    .innerJoin('webhooks', 'webhooks.id', 'webhook_deliveries.webhook_id')
    .select([
      'webhook_deliveries.id as delivery_id',
      'webhook_deliveries.attempts',
      'webhook_deliveries.max_attempts',
      'events.id as event_id',
      'events.type as event_type',
      'events.data as event_data',
      'events.created_at as event_created_at',
      'webhooks.id',
      'webhooks.url',
      'webhooks.description',
      'webhooks.event_types',
      'webhooks.enabled',
      'webhooks.secret',
      'webhooks.disabled_reason',
      'webhooks.failing_since',
      'webhooks.consecutive_failures',
      'webhooks.created_at',
      'webhooks.updated_at',
    ])
    .where(
      'webhook_deliveries.id',
      'in',
      claimed.map((c) => c.id),
    )
    .where('webhook_deliveries.claimed_by', '=', claim.token)
    .orderBy('webhook_deliveries.next_attempt_at')
    .execute();
  return rows.map((row) => ({
    id: row.delivery_id,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    event: toEvent({ id: row.event_id, type: row.event_type, data: row.event_data, created_at: row.event_created_at }),
    webhook: toWebhook(row),
  }));
}

/** What an attempt came to, as the delivery records it. */
export interface AttemptOutcome {
  id: string;
  deliveryId: string;
  attemptedAt: number;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
}

export async function insertAttempt(db: Executor, attempt: AttemptOutcome): Promise<void> {
  await db
    .insertInto('webhook_attempts')
    .values({
      id: attempt.id,
      delivery_id: attempt.deliveryId,
      attempted_at: attempt.attemptedAt,
      duration_ms: attempt.durationMs,
      status_code: attempt.statusCode,
      error: attempt.error,
    })
    .execute();
}

/**
 * Settles a claimed delivery after an attempt, if `token` still holds it (a worker whose lease ran out and whose
 * delivery another worker claimed again leaves it to that one). Whether it was still held.
 */
export async function settleDelivery(
  db: Executor,
  id: string,
  token: string,
  settled: {
    status: DeliveryStatus;
    attempts: number;
    nextAttemptAt: number | null;
    lastAttemptAt: number;
    lastStatusCode: number | null;
    lastError: string | null;
  },
): Promise<boolean> {
  const result = await db
    .updateTable('webhook_deliveries')
    .set({
      status: settled.status,
      attempts: settled.attempts,
      next_attempt_at: settled.nextAttemptAt,
      last_attempt_at: settled.lastAttemptAt,
      last_status_code: settled.lastStatusCode,
      last_error: settled.lastError,
      locked_until: null,
      claimed_by: null,
      updated_at: settled.lastAttemptAt,
    })
    .where('id', '=', id)
    .where('claimed_by', '=', token)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

// ---- marks and leases ----

/** Records that `kind` was sent for `subjectId` in `period`; false when it was already (nothing written). */
export async function markOnce(db: Executor, mark: { kind: string; subjectId: string; period: string; at: number }): Promise<boolean> {
  const rows = await db
    .insertInto('event_marks')
    .values({ kind: mark.kind, subject_id: mark.subjectId, period: mark.period, created_at: mark.at })
    .onConflict((oc) => oc.columns(['kind', 'subject_id', 'period']).doNothing())
    .returning('kind')
    .execute();
  return rows.length > 0;
}

export async function deleteMarksBefore(db: Executor, before: number): Promise<void> {
  await db.deleteFrom('event_marks').where('created_at', '<', before).execute();
}

/** Takes (or keeps) the lease `name` for `holder` until `until`, unless another holder's lease runs past `now`. */
export async function takeLease(db: Executor, lease: { name: string; holder: string; now: number; until: number }): Promise<boolean> {
  const rows = await db
    .insertInto('worker_leases')
    .values({ name: lease.name, holder: lease.holder, until: lease.until })
    .onConflict((oc) =>
      oc
        .column('name')
        .doUpdateSet({ holder: lease.holder, until: lease.until })
        .where((eb) => eb.or([eb('worker_leases.until', '<=', lease.now), eb('worker_leases.holder', '=', lease.holder)])),
    )
    .returning('holder')
    .execute();
  return rows.length > 0;
}

// ---- keys, as events need them (read only: the key wing owns their changes) ----

/** A key's fields an event shows. */
export interface KeyFacts {
  id: string;
  name: string;
  keyPrefix: string;
  userId: string | null;
  isAdmin: boolean;
  lineageId: string;
  expiresAt: number | null;
}

const keyFactColumns = ['id', 'name', 'key_prefix', 'user_id', 'is_admin', 'lineage_id', 'expires_at'] as const;

const toKeyFacts = (row: {
  id: string;
  name: string;
  key_prefix: string;
  user_id: string | null;
  is_admin: boolean | number;
  lineage_id: string;
  expires_at: number | null;
}): KeyFacts => ({
  id: row.id,
  name: row.name,
  keyPrefix: row.key_prefix,
  userId: row.user_id,
  isAdmin: Boolean(row.is_admin),
  lineageId: row.lineage_id,
  expiresAt: row.expires_at,
});

export async function findKeyFacts(db: Executor, id: string): Promise<KeyFacts | undefined> {
  const row = await db.selectFrom('api_keys').select(keyFactColumns).where('id', '=', id).executeTakeFirst();
  return row && toKeyFacts(row);
}

/** The keys a user owns, all states (as events show them). */
export async function findKeyFactsOwnedBy(db: Executor, userId: string): Promise<KeyFacts[]> {
  return (await db.selectFrom('api_keys').select(keyFactColumns).where('user_id', '=', userId).orderBy('id').execute()).map(toKeyFacts);
}

/**
 * Live keys whose expiry falls in (`from`, `to`] and that have no mark `kind` for that expiry yet, soonest first.
 * `rolled`: whether keys replaced by a roll count (their grace period ends at their expiry).
 */
export async function keysExpiringUnmarked(
  db: Executor,
  filter: { from: number; to: number; kind: string; withRolled: boolean; limit: number },
): Promise<KeyFacts[]> {
  let query = db
    .selectFrom('api_keys')
    .select(keyFactColumns)
    .where('expires_at', '>', filter.from)
    .where('expires_at', '<=', filter.to)
    .where('revoked_at', 'is', null)
    .where('is_active', '=', true)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('event_marks')
            .select(sql.lit(1).as('one'))
            .where('event_marks.kind', '=', filter.kind)
            .whereRef('event_marks.subject_id', '=', 'api_keys.id')
            .where('event_marks.period', '=', sql<string>`cast(api_keys.expires_at as text)`),
        ),
      ),
    )
    .orderBy('expires_at')
    .limit(filter.limit);
  if (!filter.withRolled) query = query.where('rolled_at', 'is', null);
  return (await query.execute()).map(toKeyFacts);
}
