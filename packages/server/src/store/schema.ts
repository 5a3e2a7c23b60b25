import type { ColumnType, Generated, Insertable, Kysely, Selectable, Transaction, Updateable } from 'kysely';

// Times are epoch milliseconds in both dialects (bigint in PostgreSQL): the same arithmetic buckets
// usage by minute/hour/day on SQLite and PostgreSQL, and comparisons need no dialect-specific casts.
// JSON columns (scopes, metadata, changes) are text holding JSON, mapped in the repositories.
// Booleans are boolean in PostgreSQL and 0/1 in SQLite (see SqliteBooleanPlugin).

export interface UsersTable {
  id: string;
  external_id: string;
  email: string | null;
  tier: string;
  created_at: number;
  updated_at: number;
}

export interface ApiKeysTable {
  id: string;
  name: string;
  description: string | null;
  key_hash: string;
  key_prefix: string;
  hash_scheme: string;
  user_id: string | null;
  is_admin: ColumnType<boolean, boolean, boolean>;
  scopes: string;
  metadata: string;
  is_active: ColumnType<boolean, boolean, boolean>;
  created_at: number;
  created_by: string;
  updated_at: number;
  last_used_at: number | null;
  expires_at: number | null;
  revoked_at: number | null;
  rolled_from: string | null;
  /** The id of the first key of this key's roll lineage (its own for a key never rolled from another). */
  lineage_id: string;
  budget_key_id: string | null;
  rolled_at: number | null;
  rate_limit_limit: number | null;
  rate_limit_window_seconds: number | null;
  quota_remaining: number | null;
  quota_refill_amount: number | null;
  quota_refill_interval: string | null;
  quota_last_refill_at: number | null;
}

export interface ApiKeyUsageTable {
  /** Given by the database (SQLite row id, PostgreSQL identity); shown as a string by `GET /v1/usage/events`. */
  id: Generated<number>;
  api_key_id: string | null;
  endpoint: string | null;
  method: string | null;
  status_code: number | null;
  ip_address: string | null;
  user_agent: string | null;
  response_time_ms: number | null;
  outcome: string;
  created_at: number;
  /**
   * The request's tags: a JSON array of strings, or null for none. Written as JSON text; read back as text on
   * SQLite, as the parsed array on PostgreSQL (jsonb).
   */
  tags: ColumnType<string | string[] | null, string | null | undefined, string | null>;
}

/** Usage rows counted per key, minute (epoch ms, UTC) and outcome; `api_key_id` '' for rows with no key. */
export interface ApiKeyUsageMinutesTable {
  minute: number;
  api_key_id: string;
  outcome: string;
  count: number;
}

export interface AuditLogTable {
  id: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string;
  target_id: string | null;
  changes: string;
  ip: string | null;
  created_at: number;
}

/**
 * Keys changed, by hash, for the other processes on the same SQLite file (which poll it); rows are pruned after a
 * few minutes. PostgreSQL announces changes with NOTIFY and leaves it empty.
 */
export interface KeyChangesTable {
  /** Handed out in commit order, never reused (AUTOINCREMENT / identity). */
  seq: Generated<number>;
  key_hash: string;
  created_at: number;
}

/** One `Idempotency-Key` a caller used on a create or roll that succeeded (never a plaintext key). */
export interface IdempotencyKeysTable {
  caller: string;
  idempotency_key: string;
  request_hash: string;
  key_id: string;
  created_at: number;
}

/** Something that happened (`key.created`, `quota.low`, …): written in the transaction of the change it reports. */
export interface EventsTable {
  id: string;
  type: string;
  /** JSON text: ids, names, display prefixes, what changed. Never a key or a hash. */
  data: string;
  created_at: number;
}

/** Where events are sent (Standard Webhooks). */
export interface WebhooksTable {
  id: string;
  url: string;
  description: string | null;
  /** JSON text: the event types sent, or `["*"]` for every one. */
  event_types: string;
  enabled: ColumnType<boolean, boolean, boolean>;
  /** The signing secret, sealed (`aes256gcm:…`) or, without `WEBHOOK_ENCRYPTION_KEY`, as is (`plain:…`). */
  secret: string;
  disabled_reason: string | null;
  /** When the current run of failed attempts began; null after a success. */
  failing_since: number | null;
  consecutive_failures: number;
  created_at: number;
  updated_at: number;
}

/** One event to one webhook: `pending` → `succeeded`, or `failed` (a retry is due) → … → `dead`. */
export interface WebhookDeliveriesTable {
  id: string;
  webhook_id: string;
  event_id: string;
  status: string;
  attempts: number;
  max_attempts: number;
  /** When the next attempt is due; null once the delivery succeeded or died. */
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  /** The lease of the instance delivering it now: another may claim it once this has passed. */
  locked_until: number | null;
  claimed_by: string | null;
  created_at: number;
  updated_at: number;
}

/** Every attempt at a delivery. */
export interface WebhookAttemptsTable {
  id: string;
  delivery_id: string;
  attempted_at: number;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
}

/** An event sent once per subject and period (`key.expiring` per key and expiry, `quota.low` per refill period). */
export interface EventMarksTable {
  kind: string;
  subject_id: string;
  period: string;
  created_at: number;
}

/** Which instance runs a periodic job now (until `until`). */
export interface WorkerLeasesTable {
  name: string;
  holder: string;
  until: number;
}

export interface Database {
  users: UsersTable;
  api_keys: ApiKeysTable;
  api_key_usage: ApiKeyUsageTable;
  api_key_usage_minutes: ApiKeyUsageMinutesTable;
  audit_log: AuditLogTable;
  idempotency_keys: IdempotencyKeysTable;
  key_changes: KeyChangesTable;
  events: EventsTable;
  webhooks: WebhooksTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
  event_marks: EventMarksTable;
  worker_leases: WorkerLeasesTable;
}

/** A database handle or an open transaction: repositories take either as their first argument. */
export type Executor = Kysely<Database> | Transaction<Database>;

export type UserRow = Selectable<UsersTable>;
export type NewUserRow = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type ApiKeyRow = Selectable<ApiKeysTable>;
export type NewApiKeyRow = Insertable<ApiKeysTable>;
export type ApiKeyUpdate = Updateable<ApiKeysTable>;
export type ApiKeyUsageRow = Selectable<ApiKeyUsageTable>;
export type NewApiKeyUsageRow = Insertable<ApiKeyUsageTable>;
export type AuditLogRow = Selectable<AuditLogTable>;
export type NewAuditLogRow = Insertable<AuditLogTable>;
export type IdempotencyKeyRow = Selectable<IdempotencyKeysTable>;
