import { type Kysely, sql } from 'kysely';
import { atomically } from './atomically.js';

// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

/**
 * Events and webhooks (an outbox):
 * - `events`: what happened (`key.created`, `quota.low`, …), written in the transaction of the change it reports.
 *   `data` is JSON text and never holds a key or a hash.
 * - `webhooks`: where events are sent. `secret` is the signing secret, sealed (AES-256-GCM with
 *   `WEBHOOK_ENCRYPTION_KEY`) or, without that key, stored as is (`plain:`): it must be usable to sign, so it
 *   cannot be hashed. `failing_since` and `consecutive_failures` tell when a URL keeps failing.
 * - `webhook_deliveries`: one per event and webhook subscribed to it, written with the event. `next_attempt_at`
 *   is set while one is due (null once it succeeded or died), so the worker's claim reads a partial index;
 *   `locked_until` / `claimed_by` are the lease of the instance delivering it.
 * - `webhook_attempts`: every attempt: when, how long, the status code or the error.
 * - `event_marks`: events that must be sent once per subject and period (`key.expiring` once per key and expiry,
 *   `quota.low` once per refill period): the primary key makes the once.
 * - `worker_leases`: which instance runs a periodic sweep now, so only one does.
 */
export async function up(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema
      .createTable('events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await trx.schema.createIndex('events_type_id_idx').on('events').columns(['type', 'id']).execute();
    await trx.schema.createIndex('events_created_at_idx').on('events').column('created_at').execute();

    await trx.schema
      .createTable('webhooks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('description', 'text')
      .addColumn('event_types', 'text', (c) => c.notNull())
      .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('disabled_reason', 'text')
      .addColumn('failing_since', 'bigint')
      .addColumn('consecutive_failures', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();

    await trx.schema
      .createTable('webhook_deliveries')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('webhook_id', 'text', (c) => c.notNull().references('webhooks.id').onDelete('cascade'))
      .addColumn('event_id', 'text', (c) => c.notNull().references('events.id').onDelete('cascade'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('max_attempts', 'integer', (c) => c.notNull())
      .addColumn('next_attempt_at', 'bigint')
      .addColumn('last_attempt_at', 'bigint')
      .addColumn('last_status_code', 'integer')
      .addColumn('last_error', 'text')
      .addColumn('locked_until', 'bigint')
      .addColumn('claimed_by', 'text')
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    // The worker's claim: deliveries due, oldest first; finished ones (null) are not in the index.
    await trx.schema
      .createIndex('webhook_deliveries_due_idx')
      .on('webhook_deliveries')
      .column('next_attempt_at')
      .where(sql.ref('next_attempt_at'), 'is not', null)
      .execute();
    await trx.schema.createIndex('webhook_deliveries_webhook_idx').on('webhook_deliveries').columns(['webhook_id', 'id']).execute();
    await trx.schema.createIndex('webhook_deliveries_event_idx').on('webhook_deliveries').column('event_id').execute();

    await trx.schema
      .createTable('webhook_attempts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('delivery_id', 'text', (c) => c.notNull().references('webhook_deliveries.id').onDelete('cascade'))
      .addColumn('attempted_at', 'bigint', (c) => c.notNull())
      .addColumn('duration_ms', 'integer', (c) => c.notNull())
      .addColumn('status_code', 'integer')
      .addColumn('error', 'text')
      .execute();
    await trx.schema.createIndex('webhook_attempts_delivery_idx').on('webhook_attempts').columns(['delivery_id', 'id']).execute();

    await trx.schema
      .createTable('event_marks')
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('subject_id', 'text', (c) => c.notNull())
      .addColumn('period', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('event_marks_pk', ['kind', 'subject_id', 'period'])
      .execute();
    await trx.schema.createIndex('event_marks_created_at_idx').on('event_marks').column('created_at').execute();

    await trx.schema
      .createTable('worker_leases')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('holder', 'text', (c) => c.notNull())
      .addColumn('until', 'bigint', (c) => c.notNull())
      .execute();
  });
}

export async function down(db: AnyDb): Promise<void> {
  await atomically(db, async (trx) => {
    await trx.schema.dropTable('worker_leases').execute();
    await trx.schema.dropTable('event_marks').execute();
    await trx.schema.dropTable('webhook_attempts').execute();
    await trx.schema.dropTable('webhook_deliveries').execute();
    await trx.schema.dropTable('webhooks').execute();
    await trx.schema.dropTable('events').execute();
  });
}
