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
  /** Given by the database (SQLite row id, PostgreSQL identity); never shown outside it. */
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

export interface Database {
  users: UsersTable;
  api_keys: ApiKeysTable;
  api_key_usage: ApiKeyUsageTable;
  api_key_usage_minutes: ApiKeyUsageMinutesTable;
  audit_log: AuditLogTable;
  idempotency_keys: IdempotencyKeysTable;
  key_changes: KeyChangesTable;
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
