// Domain records as the services see them: camelCase, parsed JSON, times in epoch milliseconds.

export type HashScheme = 'sha256' | 'bcrypt';
export type RefillInterval = 'day' | 'month';

export interface RateLimit {
  limit: number;
  windowSeconds: number;
}

export interface Quota {
  remaining: number;
  refill: { amount: number; interval: RefillInterval } | null;
  lastRefillAt: number | null;
}

export interface ApiKey {
  id: string;
  name: string;
  description: string | null;
  keyHash: string;
  keyPrefix: string;
  hashScheme: HashScheme;
  userId: string | null;
  isAdmin: boolean;
  scopes: string[];
  metadata: Record<string, unknown>;
  isActive: boolean;
  createdAt: number;
  createdBy: string;
  updatedAt: number;
  lastUsedAt: number | null;
  expiresAt: number | null;
  revokedAt: number | null;
  rolledFrom: string | null;
  /**
   * The id of the first key of this key's roll lineage: its own for a key never rolled from another. A roll
   * keeps it, so it names the credential's owner-facing identity across rolls (a host app owns resources by it).
   */
  lineageId: string;
  /**
   * The key whose rate limit and quota this one counts against: set on a rolled key, for its grace period, to
   * the key that replaced it; `null` when the key counts against its own.
   */
  budgetKeyId: string | null;
  /** When the key was rolled (replaced by a new one); `null` if never. Not shown in the API's views. */
  rolledAt: number | null;
  rateLimit: RateLimit | null;
  quota: Quota | null;
  /**
   * The owner's tier, read with the record when the verifier loads it (so the tier's default rate limit costs
   * no read per verification); absent when the record was read another way or the key has no owner.
   */
  ownerTier?: string | null;
}

export interface User {
  id: string;
  externalId: string;
  email: string | null;
  tier: string;
  createdAt: number;
  updatedAt: number;
}

export type KeyStatus = 'active' | 'inactive' | 'revoked' | 'expired';

export function keyStatus(key: ApiKey, now = Date.now()): KeyStatus {
  if (key.revokedAt !== null) return 'revoked';
  if (!key.isActive) return 'inactive';
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
  return 'active';
}

/** Who did something, as the audit log records it. */
export interface Actor {
  type: 'api_key' | 'user' | 'system';
  id: string;
}

export interface AuditEntry {
  id: string;
  actorType: string;
  actorId: string | null;
  action: string;
  targetType: string;
  targetId: string | null;
  changes: Record<string, unknown>;
  ip: string | null;
  createdAt: number;
}

/** The earliest instant Keyward takes: 1970-01-01T00:00:00Z. */
export const MIN_INSTANT_MS = 0;
/**
 * The latest instant Keyward takes: 9999-12-31T23:59:59.999Z. RFC 3339 years have four digits, yet an offset can
 * push one past 9999 (`9999-12-31T23:59:59.999-23:59`); stored, that instant could never be shown again.
 */
export const MAX_INSTANT_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
export const INSTANT_RANGE = '1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z';

/** True for an epoch-ms instant Keyward can store and show: finite, and within {@link INSTANT_RANGE}. */
export function isBoundedInstant(ms: number): boolean {
  return Number.isFinite(ms) && ms >= MIN_INSTANT_MS && ms <= MAX_INSTANT_MS;
}

/**
 * An instant (epoch ms) as the API shows it: ISO 8601 in UTC. Clamped to {@link INSTANT_RANGE}, so a row written
 * before inputs were bounded (an expiry in year 10000) still shows, as the latest instant, instead of failing the
 * response (and every list holding it).
 */
export const iso = (ms: number): string => new Date(Math.min(Math.max(ms, MIN_INSTANT_MS), MAX_INSTANT_MS)).toISOString();
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

// The verification vocabulary every wing shares (SPEC §5, §6): outcomes, a key's check, what limits report.

/** Verification outcomes (SPEC §5). */
export const VERIFY_CODES = [
  'VALID',
  'INVALID_FORMAT',
  'NOT_FOUND',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'INSUFFICIENT_SCOPES',
  'RATE_LIMITED',
  'USAGE_EXCEEDED',
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

/** The result of checking a presented key's identity and state (no scopes, limits or quota). */
export type KeyCheck =
  | { code: 'VALID'; key: ApiKey }
  | { code: 'REVOKED' | 'DISABLED' | 'EXPIRED'; key: ApiKey }
  | { code: 'INVALID_FORMAT' | 'NOT_FOUND'; key: null };

/** Rate-limit state reported with a verification (SPEC §5): `reset` is in unix seconds. */
export interface RateLimitState {
  limit: number;
  remaining: number;
  reset: number;
  /** The window's length (for `RateLimit-Policy`'s `w`). */
  windowSeconds?: number;
}

/** What a gate adds to the answer: the rate-limit state and/or the quota left. */
export interface GateReport {
  ratelimit?: RateLimitState;
  remaining?: number;
  /** With `USAGE_EXCEEDED`, when a quota that refills next does, in unix seconds (for `Retry-After`). */
  quotaReset?: number;
}

export type GateOutcome = ({ ok: true } & GateReport) | ({ ok: false; code: 'RATE_LIMITED' | 'USAGE_EXCEEDED' } & GateReport);

/** What a gate is asked to let through: units of quota and of the rate limit, at a time. */
export interface GateRequest {
  cost: number;
  rateLimitCost: number;
  now: number;
}

/**
 * A check run, in order, after scopes on a key that is otherwise valid: the rate limit, then the quota
 * (SPEC §6). The first gate that says no decides the code; what every gate run reports is merged.
 */
export interface VerifyGate {
  check(key: ApiKey, request: GateRequest): Promise<GateOutcome> | GateOutcome;
}

/** A value, or a promise of it: the cached path answers synchronously (no promise, no microtask). */
export type MaybePromise<T> = T | Promise<T>;

/** A quota as a caller sets it: the verifications left, and optionally a refill each day or month. */
export interface QuotaInput {
  remaining: number;
  refill?: { amount: number; interval: RefillInterval } | null;
}

/** The longest external user id (a JWT's `sub`) Keyward stores. */
export const MAX_EXTERNAL_ID_LENGTH = 255;
