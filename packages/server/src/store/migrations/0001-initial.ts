import type { Kysely } from 'kysely';

// One set of migrations for SQLite and PostgreSQL: only types both understand (text, bigint, integer,
// boolean). Ids are text (UUIDv7), times epoch milliseconds.
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the current schema type.
type AnyDb = Kysely<any>;

export async function up(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('external_id', 'text', (c) => c.notNull().unique())
    .addColumn('email', 'text')
    .addColumn('tier', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('key_hash', 'text', (c) => c.notNull())
    .addColumn('key_prefix', 'text', (c) => c.notNull())
    .addColumn('hash_scheme', 'text', (c) => c.notNull().defaultTo('sha256'))
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('is_admin', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('scopes', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('metadata', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('is_active', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .addColumn('expires_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .addColumn('rolled_from', 'text')
    .addColumn('rate_limit_limit', 'integer')
    .addColumn('rate_limit_window_seconds', 'integer')
    .addColumn('quota_remaining', 'bigint')
    .addColumn('quota_refill_amount', 'bigint')
    .addColumn('quota_refill_interval', 'text')
    .addColumn('quota_last_refill_at', 'bigint')
    .execute();
  await db.schema.createIndex('api_keys_key_hash_uq').on('api_keys').column('key_hash').unique().execute();
  await db.schema.createIndex('api_keys_key_prefix_idx').on('api_keys').column('key_prefix').execute();
  await db.schema.createIndex('api_keys_user_id_idx').on('api_keys').column('user_id').execute();
  await db.schema.createIndex('api_keys_is_active_idx').on('api_keys').column('is_active').execute();
  await db.schema.createIndex('api_keys_expires_at_idx').on('api_keys').column('expires_at').execute();
  await db.schema.createIndex('api_keys_created_at_idx').on('api_keys').column('created_at').execute();

  await db.schema
    .createTable('api_key_usage')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('api_key_id', 'text')
    .addColumn('endpoint', 'text')
    .addColumn('method', 'text')
    .addColumn('status_code', 'integer')
    .addColumn('ip_address', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('response_time_ms', 'integer')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('api_key_usage_key_created_idx').on('api_key_usage').columns(['api_key_id', 'created_at']).execute();
  await db.schema.createIndex('api_key_usage_created_idx').on('api_key_usage').column('created_at').execute();

  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target_type', 'text', (c) => c.notNull())
    .addColumn('target_id', 'text')
    .addColumn('changes', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('ip', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('audit_log_created_idx').on('audit_log').column('created_at').execute();
  await db.schema.createIndex('audit_log_target_idx').on('audit_log').columns(['target_id', 'created_at']).execute();
  await db.schema.createIndex('audit_log_actor_idx').on('audit_log').columns(['actor_id', 'created_at']).execute();
}

export async function down(db: AnyDb): Promise<void> {
  await db.schema.dropTable('audit_log').execute();
  await db.schema.dropTable('api_key_usage').execute();
  await db.schema.dropTable('api_keys').execute();
  await db.schema.dropTable('users').execute();
}
