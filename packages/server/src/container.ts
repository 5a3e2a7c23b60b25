import { type AuditService, createAuditService } from './audit/service.js';
import { type Authenticator, createAuthenticator } from './callers/authenticator.js';
import { type BruteForceGuard, createBruteForceGuard } from './callers/brute-force-guard.js';
import { createJwtAuthenticator } from './callers/jwt.js';
import type { Config } from './config.js';
import { createDeliveryWorker, type DeliveryWorker } from './events/delivery.js';
import { createQuotaEvents, type QuotaEvents } from './events/quota-events.js';
import { createWebhookService, type WebhookService } from './events/service.js';
import { createSecretBox } from './events/signing.js';
import { createEventSweeps, type EventSweeps } from './events/sweeps.js';
import { createImportService, type ImportService } from './keys/import.js';
import { lastUsedStatements } from './keys/repository.js';
import { createSelfService, type SelfService } from './keys/self-service.js';
import { createKeyService, type KeyService } from './keys/service.js';
import { createGithubKeys } from './leaks/github-keys.js';
import { createLeakService, type LeakService } from './leaks/service.js';
import { createQuotaGate, createRateLimitGate, loadKeyWithOwnerTier } from './limits/gates.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createDependencyMonitor, createHealthService, type HealthService } from './observability/health.js';
import { type Db, openDatabase } from './store/database.js';
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from './store/rate-limiter.js';
import { closeRedis, openRedis, type Redis } from './store/redis.js';
import { createStatementWriter } from './store/statement-writer.js';
import { createUsageAnalytics, type UsageAnalytics } from './usage/analytics.js';
import { createUsageIngest, type UsageIngest } from './usage/ingest.js';
import { createUsageRecorder, type UsageRecorder } from './usage/recorder.js';
import { createUserService, type UserService } from './users/service.js';
import { type ChangeFeed, createChangeFeed } from './verification/change-feed.js';
import { createInvalidation, type Invalidation } from './verification/invalidation.js';
import { createKeyCache, type KeyCache } from './verification/key-cache.js';
import { createLastUsedRecorder, type LastUsedRecorder } from './verification/last-used.js';
import { createVerification, type Verification } from './verification/service.js';
import { createVerifier, type Verifier } from './verification/verifier.js';

/** Everything the application is made of, built once here and passed down as typed arguments. */
export interface Container {
  config: Config;
  db: Db;
  verifier: Verifier;
  /** Key records by hash, shared by the verify endpoint and authentication. */
  keyCache: KeyCache;
  /** Keeps every instance's key cache in step (Redis pub/sub, PostgreSQL LISTEN/NOTIFY, or local). */
  invalidation: Invalidation;
  /** Every key change this instance learns of, numbered, for `GET /v1/keys/changes`. */
  changeFeed: ChangeFeed;
  lastUsed: LastUsedRecorder;
  authenticator: Authenticator;
  keys: KeyService;
  users: UserService;
  selfService: SelfService;
  importer: ImportService;
  /** Readiness probes, and each dependency's state changes (logged and in `/metrics`). */
  health: HealthService;
  /** This container's Prometheus registry and instruments (never prom-client's global registry). */
  metrics: Metrics;
  /** The connection rate limits use; null without `REDIS_URL`. */
  redis: Redis | null;
  /** Per-key rate limits and the brute-force guard's counters: Redis when configured, else memory. */
  rateLimiter: RateLimiter;
  /** Failed authentications per client IP. */
  bruteForce: BruteForceGuard;
  /** Failed verifications on `POST /v1/keys/verify`, per caller key and client IP (its own budget). */
  verifyGuard: BruteForceGuard;
  /** `POST /v1/keys/verify`: guard, verification and its usage row. */
  verification: Verification;
  /** Usage rows, buffered and written in batches. */
  usage: UsageRecorder;
  usageAnalytics: UsageAnalytics;
  /** Usage rows reported by the SDK middleware (`POST /v1/usage/events`). */
  usageIngest: UsageIngest;
  audit: AuditService;
  /** Leaked keys reported by GitHub, by anyone holding one, or found by `keyward scan`: revoked at once. */
  leaks: LeakService;
  /** Webhooks, their deliveries, and the events (admin API). */
  webhooks: WebhookService;
  /** Sends due deliveries; started by `keyward serve` (`start`), not by the CLI. */
  deliveries: DeliveryWorker;
  /** `key.expiring` / `key.expired`, and pruning old events; started by `keyward serve`. */
  eventSweeps: EventSweeps;
  /** Writes `quota.low` / `quota.exhausted` when a verification's spend crosses a level. */
  quotaEvents: QuotaEvents;
  /** Flushes buffered work and closes connections. */
  close(): Promise<void>;
}

export function createContainer(config: Config, overrides: { db?: Db; now?: () => number } = {}): Container {
  const db = overrides.db ?? openDatabase(config.databaseUrl, { timeoutMs: config.databaseTimeoutMs });
  const now = overrides.now ?? Date.now;
  const metrics = createMetrics();
  const monitor = createDependencyMonitor({ metrics });
  const redis = config.redisUrl
    ? openRedis(config.redisUrl, {
        commandTimeoutMs: config.redisTimeoutMs,
        connectionName: 'keyward-limits',
        onError: () => metrics.redisErrors.inc({ operation: 'connection' }),
      })
    : null;
  const limiter = (countDecisions: boolean, failMode: 'open' | 'closed' | 'local'): RateLimiter =>
    redis
      ? createRedisRateLimiter({ redis, prefix: `${config.redisPrefix}rl:`, failMode, metrics, countDecisions, now })
      : createMemoryRateLimiter({ metrics, countDecisions, now });
  const rateLimiter = limiter(true, config.rateLimitFailMode);
  // The guards count failed attempts, not requests: their limiter stays out of the rate-limit decisions metric.
  // Without Redis they count on this instance instead of following RATE_LIMIT_FAIL_MODE: failing open would
  // let guessing go unlimited, failing closed would block every address at its first typo.
  const guardLimiter = limiter(false, 'local');
  const bruteForce = createBruteForceGuard({ limiter: guardLimiter, failuresPerMinute: config.authFailuresPerMinute, metrics, now });
  const verifyGuard = createBruteForceGuard({ limiter: guardLimiter, failuresPerMinute: config.verifyFailuresPerMinute, metrics, now });
  // Writes made off the event loop on SQLite (a thread of its own): usage rows and last_used_at in the
  // background, and the quota spends verifications wait for.
  const writer = createStatementWriter(db);
  const usage = createUsageRecorder({
    db,
    writer,
    flushMs: config.usageFlushMs,
    batchSize: config.usageBatchSize,
    maxBuffered: config.usageBufferMax,
    retentionDays: config.usageRetentionDays,
    metrics,
    now,
  });
  const keyCache = createKeyCache({
    maxEntries: config.cacheMaxEntries,
    ttlMs: config.cacheTtlMs,
    negativeTtlMs: config.cacheNegativeTtlMs,
    staleTtlMs: config.cacheStaleTtlMs,
    onLiveChange: (live) => monitor.report('invalidation', live),
    now,
  });
  const invalidation = createInvalidation({ cache: keyCache, db, config, metrics });
  const changeFeed = createChangeFeed({ invalidation });
  const lastUsed = createLastUsedRecorder({
    write: (batch) => writer.run(lastUsedStatements(db.db, batch)),
    flushMs: config.lastUsedFlushMs,
  });
  // After the scope check: the rate limit (the key's own, else its owner's tier default), then the quota.
  const quotaEvents = createQuotaEvents({ db, lowFraction: config.webhookQuotaLowFraction });
  const gates = [
    createRateLimitGate({ limiter: rateLimiter, tiers: config, db: db.db }),
    quotaEvents.watch(createQuotaGate({ db, writer })),
  ];
  const verifier = createVerifier({ db: db.db, cache: keyCache, lastUsed, gates, load: loadKeyWithOwnerTier, metrics, now });
  const verification = createVerification({ verifier, usage, verifyGuard, cache: keyCache, metrics });
  const keys = createKeyService({ db, config, onKeyChanged: (key) => invalidation.keyChanged(key), now });
  // Keys removed with their user (cascade) or re-tiered go through the key service's change hook (caches).
  const users = createUserService({ db, config, onKeysChanged: (changed) => keys.announceChanged(changed), now });
  const selfService = createSelfService({ db, keys });
  const authenticator = createAuthenticator({ verifier, jwt: createJwtAuthenticator({ config, users }) });
  const importer = createImportService({ db, onKeyChanged: (key) => invalidation.keyChanged(key) });
  const health = createHealthService({ db, redis, invalidation, monitor, timeoutMs: config.databaseTimeoutMs });
  const usageAnalytics = createUsageAnalytics({ db, keys, now });
  const usageIngest = createUsageIngest({ usage, now });
  const audit = createAuditService({ db });
  const leaks = createLeakService({
    db,
    announceChanged: (changed) => keys.announceChanged(changed),
    githubKeys: createGithubKeys({ url: config.leaksGithubKeysUrl, file: config.leaksGithubKeysFile, now }),
    // Every report counts, real keys or not (counting only some would tell which were real). Not in the
    // brute-force metrics: a report refused here is no guess.
    reportGuard: createBruteForceGuard({ limiter: guardLimiter, failuresPerMinute: config.leaksReportsPerMinute, now }),
    now,
  });
  const secrets = createSecretBox(config.webhookEncryptionKey);
  const webhooks = createWebhookService({ db, secrets, allowPrivate: config.webhookAllowPrivate, now });
  const deliveries = createDeliveryWorker({ db, secrets, allowPrivate: config.webhookAllowPrivate, now });
  const eventSweeps = createEventSweeps({
    db,
    expiringBeforeMs: config.webhookKeyExpiringBeforeMs,
    retentionDays: config.eventsRetentionDays,
    now,
  });
  return {
    config,
    db,
    verifier,
    keyCache,
    invalidation,
    changeFeed,
    lastUsed,
    authenticator,
    keys,
    users,
    selfService,
    importer,
    health,
    metrics,
    redis,
    rateLimiter,
    bruteForce,
    verifyGuard,
    verification,
    usage,
    usageAnalytics,
    usageIngest,
    audit,
    leaks,
    webhooks,
    deliveries,
    eventSweeps,
    quotaEvents,
    async close() {
      // Connections closing now are no outage to report.
      health.close();
      // Rounds in flight finish (their attempts recorded), and events being written are written.
      await deliveries.stop().catch(() => {});
      await eventSweeps.stop().catch(() => {});
      await quotaEvents.close();
      // Buffered writes first (a SIGTERM must not lose them), then announcements, then connections.
      await lastUsed.close().catch(() => {});
      await usage.close().catch(() => {});
      await writer.close();
      await rateLimiter.close();
      await guardLimiter.close();
      if (redis) await closeRedis(redis);
      changeFeed.close();
      await invalidation.close();
      await db.close();
    },
  };
}
