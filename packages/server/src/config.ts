import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { classifyKey, isValidPrefix } from '@keyward/sdk';

export interface RateLimitSetting {
  limit: number;
  windowSeconds: number;
}

export interface TierSetting {
  /** Most keys a user of this tier may hold; `null` for unlimited. */
  maxKeys: number | null;
  /** Default rate limit for this tier's keys when a key has none of its own. */
  rateLimit: RateLimitSetting | null;
  /** Scopes a user may grant their own keys; `null` means the default rule (see SPEC §4). */
  scopes: string[] | null;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  port: number;
  host: string;
  databaseUrl: string;
  redisUrl: string | null;
  /** Prefix of every Redis key and channel Keyward uses (`REDIS_PREFIX`), so deployments can share a Redis. */
  redisPrefix: string;
  keyPrefix: string;
  initialAdminKey: string | null;
  requireApiKey: boolean;
  tiers: Record<string, TierSetting>;
  defaultTier: string;
  maxKeysPerUser: number | null;
  jwtSecret: string | null;
  jwtJwksUrl: string | null;
  jwtIssuer: string | null;
  jwtAudience: string | null;
  logLevel: LogLevel;
  bodyLimitBytes: number;
  /**
   * Which proxies' `X-Forwarded-For` entries to believe for the client IP (Fastify's `trustProxy`): none
   * (`false`), those the listed proxy addresses/CIDRs added, or every one (`true`).
   */
  trustProxy: boolean | string[];
  cacheMaxEntries: number;
  cacheTtlMs: number;
  cacheNegativeTtlMs: number;
  cacheStaleTtlMs: number;
  lastUsedFlushMs: number;
  usageFlushMs: number;
  usageRetentionDays: number;
  rateLimitFailMode: 'open' | 'closed';
  authFailuresPerMinute: number;
  /**
   * Failed verifications per minute on `POST /v1/keys/verify`, counted per caller key AND client IP
   * (`VERIFY_FAILURES_PER_MINUTE`, 0 = off): a host's end users presenting bad keys must not block its backend.
   */
  verifyFailuresPerMinute: number;
  /** Where GitHub's secret-scanning public keys are fetched from (`LEAKS_GITHUB_KEYS_URL`). */
  leaksGithubKeysUrl: string;
  /** A file holding those keys instead, in the same JSON (`LEAKS_GITHUB_KEYS_FILE`): for tests and air-gapped installs. */
  leaksGithubKeysFile: string | null;
  /** `POST /v1/leaks/report` requests per minute per client address (`LEAKS_REPORTS_PER_MINUTE`, 0 = no limit). */
  leaksReportsPerMinute: number;
  /** Deliver webhooks to loopback, private and link-local addresses too (`WEBHOOK_ALLOW_PRIVATE`, default false). */
  webhookAllowPrivate: boolean;
  /**
   * Seals webhook signing secrets at rest with AES-256-GCM (`WEBHOOK_ENCRYPTION_KEY`: 32 bytes as base64 or hex);
   * without it they are stored as is.
   */
  webhookEncryptionKey: string | null;
  /** How long before a key's `expires_at` `key.expiring` is sent, in ms (`WEBHOOK_KEY_EXPIRING_BEFORE`, default 7d). */
  webhookKeyExpiringBeforeMs: number;
  /** `quota.low` when what is left falls to this fraction of the refill amount (`WEBHOOK_QUOTA_LOW_FRACTION`, 0 = off). */
  webhookQuotaLowFraction: number;
  /** Events (with their deliveries and attempts) are kept this many days (`EVENTS_RETENTION_DAYS`). */
  eventsRetentionDays: number;
  /** Usage rows written per batch at most; a full batch is flushed at once (`USAGE_BATCH_SIZE`). */
  usageBatchSize: number;
  /** Usage rows held in memory at most; more are dropped and counted (`USAGE_BUFFER_MAX`). */
  usageBufferMax: number;
  /** A Redis command not answered within this is a Redis failure (`REDIS_TIMEOUT_MS`). */
  redisTimeoutMs: number;
  /**
   * A database connection, a wait for a pooled one, or a query not done within this is a database failure
   * (`DATABASE_TIMEOUT_MS`): the request answers 503, or a cached key from the stale window. SQLite's busy timeout.
   */
  databaseTimeoutMs: number;
  /** How often an open `GET /v1/keys/changes` stream gets a `: ping` comment (`KEY_CHANGES_HEARTBEAT_MS`). */
  keyChangesHeartbeatMs: number;
  /** Most `GET /v1/keys/changes` streams open at once on this instance; more get 503 (`KEY_CHANGES_MAX_STREAMS`). */
  keyChangesMaxStreams: number;
  /** Serve the web dashboard at `/` (`DASHBOARD`, default true). */
  dashboard: boolean;
  /** The dashboard's build folder (`DASHBOARD_DIR`; default: packages/dashboard/dist beside the server). */
  dashboardDir: string | null;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

export const DEFAULT_TIERS: Record<string, TierSetting> = {
  free: { maxKeys: 3, rateLimit: { limit: 60, windowSeconds: 60 }, scopes: null },
  pro: { maxKeys: 10, rateLimit: { limit: 600, windowSeconds: 60 }, scopes: null },
  enterprise: { maxKeys: null, rateLimit: null, scopes: null },
};

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/**
 * A URL as it may be printed: its scheme only (`postgres://…`), or `…` when it has none. Whatever follows the
 * scheme may hold a password (`user:pass@`, `?password=`), and a malformed URL cannot be trusted to show where
 * it starts or ends, so none of it is shown.
 */
export function redactUrl(value: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/{0,2}/i.exec(value)?.[0] ?? '';
  return scheme.length < value.length ? `${scheme}…` : scheme;
}

// Secrets are never echoed back in an error, nor a URL-valued setting past its scheme; other values are, so the
// operator sees what was read.
function shown(name: string, value: string): string {
  if (/SECRET|ADMIN_KEY|PASSWORD|TOKEN/.test(name)) return '';
  return ` (got "${/_URL$/.test(name) ? redactUrl(value) : value}")`;
}

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new ConfigError(name, `must be an integer from ${min} to ${max}${shown(name, value)}`);
  }
  return Number(value);
}

function optionalInteger(env: Env, name: string, min: number): number | null {
  return raw(env, name) === undefined ? null : integer(env, name, 0, min);
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new ConfigError(name, `must be true or false${shown(name, value)}`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const found = allowed.find((a) => a === value.toLowerCase());
  if (!found) throw new ConfigError(name, `must be one of ${allowed.join(', ')}${shown(name, value)}`);
  return found;
}

function url(env: Env, name: string, protocols: readonly string[]): string | null {
  const value = raw(env, name);
  if (value === undefined) return null;
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(name, `must be a URL (${protocols.join(', ')})${shown(name, value)}`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}${shown(name, value)}`);
  }
  return value;
}

const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as `7d`, `12h`, `30m` or `90s`, in milliseconds, between `min` and `max`. */
function duration(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const match = /^(\d+)(s|m|h|d)$/.exec(value);
  const ms = match ? Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? 0) : Number.NaN;
  if (!(ms >= min && ms <= max)) {
    throw new ConfigError(
      name,
      `must be a duration such as 7d, 12h, 30m or 90s, from ${min / 1000} s to ${max / 86_400_000} days${shown(name, value)}`,
    );
  }
  return ms;
}

/** A number from 0 up to (not including) 1, such as `0.1`. */
function fraction(env: Env, name: string, fallback: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!/^(0(\.\d+)?|\.\d+)$/.test(value)) throw new ConfigError(name, `must be a number from 0 up to 1, such as 0.1${shown(name, value)}`);
  return Number(value);
}

/** 32 bytes as base64 (44 characters, or 43 unpadded) or hex (64): an AES-256 key. Never echoed back. */
function encryptionKey(env: Env, name: string): string | null {
  const value = raw(env, name);
  if (value === undefined) return null;
  const hex = /^[0-9a-fA-F]{64}$/.test(value);
  const base64 = /^[A-Za-z0-9+/_-]{43}=?$/.test(value) && Buffer.from(value, 'base64').length === 32;
  if (!hex && !base64) throw new ConfigError(name, 'must be 32 random bytes as base64 or hex (e.g. `openssl rand -base64 32`)');
  return value;
}

/** GitHub's published list of the keys that sign secret-scanning reports. */
export const GITHUB_SECRET_SCANNING_KEYS_URL = 'https://api.github.com/meta/public_keys/secret_scanning';

// proxy-addr's names for address ranges, which Fastify accepts among the addresses.
const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

function trustedProxy(entry: string): boolean {
  if (PROXY_RANGES.has(entry)) return true;
  const [address = '', prefix, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/**
 * `TRUST_PROXY`: `false` (default: the socket's address); the proxies' addresses or CIDRs, comma-separated (and
 * `loopback`, `linklocal`, `uniquelocal`): the client is the last `X-Forwarded-For` address not added by one
 * of them; or `true`: every hop is trusted and the client is the left-most address, which the client itself
 * can write unless the proxy in front replaces the header. A bare number is refused, `1` included: Express and
 * Fastify read it as a hop count, so reading it as `true` would let a client behind one proxy pick its own IP
 * (and Fastify 5 refuses hop counts: it cannot tell a proxy from a client that sent enough hops).
 */
function trustProxy(env: Env): boolean | string[] {
  const value = raw(env, 'TRUST_PROXY');
  if (value === undefined || /^(false|no|off)$/i.test(value)) return false;
  if (/^(true|yes|on)$/i.test(value)) return true;
  if (/^\d+$/.test(value)) {
    throw new ConfigError(
      'TRUST_PROXY',
      `hop counts are not supported; give true, false, or the proxies' addresses/CIDRs${shown('TRUST_PROXY', value)}`,
    );
  }
  const entries = value.split(',').map((entry) => entry.trim());
  if (entries.every(trustedProxy)) return entries;
  throw new ConfigError(
    'TRUST_PROXY',
    `must be false, the proxies' addresses or CIDRs separated by commas, or true${shown('TRUST_PROXY', value)}`,
  );
}

function databaseUrl(env: Env): string {
  const value = raw(env, 'DATABASE_URL') ?? 'sqlite:./data/keyward.db';
  if (/^sqlite:.+/.test(value) || /^postgres(ql)?:\/\/.+/.test(value)) return value;
  throw new ConfigError('DATABASE_URL', `must be sqlite:PATH or postgres://…${shown('DATABASE_URL', value)}`);
}

function redisPrefix(env: Env): string {
  const value = raw(env, 'REDIS_PREFIX') ?? 'keyward:';
  if (!/^[A-Za-z0-9_:.-]{1,64}$/.test(value))
    throw new ConfigError('REDIS_PREFIX', `must be 1-64 of [A-Za-z0-9_:.-]${shown('REDIS_PREFIX', value)}`);
  return value;
}

const TIER_EXAMPLE = '{"max_keys": 3, "rate_limit": {"limit": 60, "window_seconds": 60}, "scopes": [...]}';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The first field of `value` not in `allowed`, so a misspelt setting is refused rather than silently dropped. */
function unknownField(value: Record<string, unknown>, allowed: readonly string[]): string | undefined {
  return Object.keys(value).find((field) => !allowed.includes(field));
}

function parseRateLimit(tier: string, value: unknown): RateLimitSetting | null {
  if (value === null || value === undefined) return null;
  const problem = `${tier}.rate_limit must be {"limit": n >= 1, "window_seconds": n >= 1} or null`;
  if (!isObject(value)) throw new ConfigError('TIERS', problem);
  const extra = unknownField(value, ['limit', 'window_seconds']);
  if (extra !== undefined) throw new ConfigError('TIERS', `${tier}.rate_limit has an unknown field "${extra}"; ${problem}`);
  const { limit, window_seconds: windowSeconds } = value;
  if (!Number.isSafeInteger(limit) || !Number.isSafeInteger(windowSeconds) || (limit as number) < 1 || (windowSeconds as number) < 1) {
    throw new ConfigError('TIERS', problem);
  }
  return { limit: limit as number, windowSeconds: windowSeconds as number };
}

function parseTier(tier: string, setting: unknown): TierSetting {
  if (!isObject(setting)) throw new ConfigError('TIERS', `${tier} must be an object like ${TIER_EXAMPLE}`);
  const extra = unknownField(setting, ['max_keys', 'rate_limit', 'scopes']);
  if (extra !== undefined) {
    throw new ConfigError('TIERS', `${tier} has an unknown field "${extra}" (known: max_keys, rate_limit, scopes)`);
  }
  const { max_keys: maxKeys = null, rate_limit: rateLimit, scopes = null } = setting;
  if (maxKeys !== null && !(Number.isSafeInteger(maxKeys) && (maxKeys as number) >= 0)) {
    throw new ConfigError('TIERS', `${tier}.max_keys must be a non-negative integer or null`);
  }
  if (scopes !== null && !(Array.isArray(scopes) && scopes.every((x) => typeof x === 'string'))) {
    throw new ConfigError('TIERS', `${tier}.scopes must be a list of strings or null`);
  }
  return { maxKeys: maxKeys as number | null, rateLimit: parseRateLimit(tier, rateLimit), scopes: scopes as string[] | null };
}

function tiers(env: Env): Record<string, TierSetting> {
  const value = raw(env, 'TIERS');
  if (value === undefined) return DEFAULT_TIERS;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new ConfigError('TIERS', `must be JSON like {"free": ${TIER_EXAMPLE}}`);
  }
  if (!isObject(parsed) || Object.keys(parsed).length === 0) {
    throw new ConfigError('TIERS', 'must be a non-empty JSON object of tier name to settings');
  }
  const out: Record<string, TierSetting> = {};
  for (const [tier, setting] of Object.entries(parsed)) {
    if (!/^[a-z][a-z0-9_-]{0,31}$/.test(tier)) throw new ConfigError('TIERS', `tier name "${tier}" must match [a-z][a-z0-9_-]{0,31}`);
    out[tier] = parseTier(tier, setting);
  }
  return out;
}

/** A tier's settings; for a tier no longer configured, the default tier's (never none: never unlimited). */
export function tierSettingOf(config: Pick<Config, 'tiers' | 'defaultTier'>, tier: string): TierSetting | undefined {
  return Object.hasOwn(config.tiers, tier) ? config.tiers[tier] : config.tiers[config.defaultTier];
}

/**
 * Reads and validates the configuration. Throws a {@link ConfigError} naming the first bad variable.
 * Secrets (`INITIAL_ADMIN_KEY`, `JWT_SECRET`) are never echoed in an error, and URLs only up to their scheme.
 */
export function loadConfig(env: Env = process.env): Config {
  const keyPrefix = raw(env, 'KEY_PREFIX') ?? 'kw';
  if (!isValidPrefix(keyPrefix)) {
    throw new ConfigError('KEY_PREFIX', `must be [a-z][a-z0-9]* segments joined by _, 1-20 chars (got "${keyPrefix}")`);
  }
  const initialAdminKey = raw(env, 'INITIAL_ADMIN_KEY') ?? null;
  if (initialAdminKey !== null && classifyKey(initialAdminKey) === 'invalid') {
    throw new ConfigError('INITIAL_ADMIN_KEY', 'must be 16-256 printable characters without spaces, with a valid checksum if in kw_ shape');
  }
  const jwtSecret = raw(env, 'JWT_SECRET') ?? null;
  if (jwtSecret !== null && jwtSecret.length < 32) {
    throw new ConfigError('JWT_SECRET', 'must be at least 32 characters');
  }
  const tierTable = tiers(env);
  const defaultTier = raw(env, 'DEFAULT_TIER') ?? (Object.hasOwn(tierTable, 'free') ? 'free' : (Object.keys(tierTable)[0] ?? 'free'));
  // Own tiers only: `constructor` or `toString` are names every object answers to.
  if (!Object.hasOwn(tierTable, defaultTier)) {
    throw new ConfigError('DEFAULT_TIER', `must name a tier in TIERS (got "${defaultTier}")`);
  }
  return {
    port: integer(env, 'PORT', 8080, 0, 65535),
    host: raw(env, 'HOST') ?? '127.0.0.1',
    databaseUrl: databaseUrl(env),
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']),
    redisPrefix: redisPrefix(env),
    keyPrefix,
    initialAdminKey,
    requireApiKey: boolean(env, 'REQUIRE_API_KEY', true),
    tiers: tierTable,
    defaultTier,
    maxKeysPerUser: optionalInteger(env, 'MAX_KEYS_PER_USER', 0),
    jwtSecret,
    jwtJwksUrl: url(env, 'JWT_JWKS_URL', ['https:', 'http:']),
    jwtIssuer: raw(env, 'JWT_ISSUER') ?? null,
    jwtAudience: raw(env, 'JWT_AUDIENCE') ?? null,
    logLevel: oneOf(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 64 * 1024, 1024),
    trustProxy: trustProxy(env),
    cacheMaxEntries: integer(env, 'CACHE_MAX_ENTRIES', 10_000, 0),
    cacheTtlMs: integer(env, 'CACHE_TTL_MS', 30_000, 0),
    cacheNegativeTtlMs: integer(env, 'CACHE_NEGATIVE_TTL_MS', 2_000, 0),
    cacheStaleTtlMs: integer(env, 'CACHE_STALE_TTL_MS', 300_000, 0),
    lastUsedFlushMs: integer(env, 'LAST_USED_FLUSH_MS', 5_000, 10),
    usageFlushMs: integer(env, 'USAGE_FLUSH_MS', 1_000, 10),
    usageRetentionDays: integer(env, 'USAGE_RETENTION_DAYS', 90, 0),
    rateLimitFailMode: oneOf(env, 'RATE_LIMIT_FAIL_MODE', ['open', 'closed'] as const, 'open'),
    authFailuresPerMinute: integer(env, 'AUTH_FAILURES_PER_MINUTE', 60, 0),
    verifyFailuresPerMinute: integer(env, 'VERIFY_FAILURES_PER_MINUTE', 600, 0),
    leaksGithubKeysUrl: url(env, 'LEAKS_GITHUB_KEYS_URL', ['https:', 'http:']) ?? GITHUB_SECRET_SCANNING_KEYS_URL,
    leaksGithubKeysFile: raw(env, 'LEAKS_GITHUB_KEYS_FILE') ?? null,
    leaksReportsPerMinute: integer(env, 'LEAKS_REPORTS_PER_MINUTE', 10, 0),
    webhookAllowPrivate: boolean(env, 'WEBHOOK_ALLOW_PRIVATE', false),
    webhookEncryptionKey: encryptionKey(env, 'WEBHOOK_ENCRYPTION_KEY'),
    webhookKeyExpiringBeforeMs: duration(env, 'WEBHOOK_KEY_EXPIRING_BEFORE', 7 * 86_400_000, 60_000, 365 * 86_400_000),
    webhookQuotaLowFraction: fraction(env, 'WEBHOOK_QUOTA_LOW_FRACTION', 0.1),
    eventsRetentionDays: integer(env, 'EVENTS_RETENTION_DAYS', 30, 1, 3_650),
    usageBatchSize: integer(env, 'USAGE_BATCH_SIZE', 500, 1, 100_000),
    usageBufferMax: integer(env, 'USAGE_BUFFER_MAX', 50_000, 1),
    redisTimeoutMs: integer(env, 'REDIS_TIMEOUT_MS', 500, 10, 60_000),
    databaseTimeoutMs: integer(env, 'DATABASE_TIMEOUT_MS', 2_000, 10, 600_000),
    keyChangesHeartbeatMs: integer(env, 'KEY_CHANGES_HEARTBEAT_MS', 15_000, 10, 600_000),
    keyChangesMaxStreams: integer(env, 'KEY_CHANGES_MAX_STREAMS', 1_000, 1, 100_000),
    dashboard: boolean(env, 'DASHBOARD', true),
    dashboardDir: raw(env, 'DASHBOARD_DIR') ?? null,
  };
}

/** Loads `.env` from the working directory into `process.env` (values already set win), if the file exists. */
export function loadDotEnv(path = '.env'): void {
  if (existsSync(path)) process.loadEnvFile(path);
}
