import type { Metrics } from '../metrics.js';
import { type Db, ping } from '../store/database.js';
import { type Redis, redisIsDown } from '../store/redis.js';
import type { Invalidation } from '../verification/invalidation.js';

/** What Keyward depends on, each reported in `/readyz`, in `/metrics` and in the log when its state changes. */
export type Dependency = 'database' | 'redis' | 'invalidation';

/** A dependency's state: `disabled` when it is not configured (Redis without `REDIS_URL`). */
export type CheckState = 'ok' | 'down' | 'disabled';

/**
 * Whether Keyward can serve: `ok`; `degraded` when it serves without something (Redis: rate limits follow
 * `RATE_LIMIT_FAIL_MODE`; invalidation: every verification reads the database); `down` when the database cannot
 * be reached (only cached keys verify, from the stale window).
 */
export interface Readiness {
  status: 'ok' | 'degraded' | 'down';
  checks: Record<Dependency, CheckState>;
}

/** Where state changes are written: a pino or Fastify logger. */
export interface DependencyLog {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

/**
 * Each dependency's last known state, set by whatever notices a change first (connection events, the cache's
 * invalidation state, probes). A change is logged once (down, back up), never once per request or reconnect
 * attempt, and sets the `keyward_dependency_up` gauge.
 */
export interface DependencyMonitor {
  report(dependency: Dependency, up: boolean, reason?: string): void;
  /** Writes state changes to `log` from now on, and at once any dependency already down. */
  logTo(log: DependencyLog): void;
  /** Stops reporting (a closing connection is not an outage). */
  close(): void;
}

type Known = 'starting' | 'up' | 'down';

export function createDependencyMonitor({
  metrics,
  now = Date.now,
}: {
  metrics?: Pick<Metrics, 'dependencyUp'> | undefined;
  now?: () => number;
}): DependencyMonitor {
  const states = new Map<Dependency, { state: Known; since: number; reason?: string | undefined }>();
  let log: DependencyLog | null = null;
  let closed = false;

  const wentDown = (dependency: Dependency, reason: string | undefined) =>
    log?.warn({ dependency, state: 'down', ...(reason === undefined ? {} : { reason }) }, `${dependency} is down`);

  return {
    report(dependency, up, reason) {
      if (closed) return;
      metrics?.dependencyUp.set({ dependency }, up ? 1 : 0);
      const previous = states.get(dependency)?.state ?? 'starting';
      // The invalidation channel is not live until it has subscribed: that is start-up, not an outage (the
      // connection it rides on, Redis or the database, reports its own).
      const state: Known = up ? 'up' : dependency === 'invalidation' && previous === 'starting' ? 'starting' : 'down';
      if (state === previous) return;
      const at = now();
      const since = states.get(dependency)?.since ?? at;
      states.set(dependency, { state, since: at, reason });
      if (state === 'down') wentDown(dependency, reason);
      else if (previous === 'down') log?.info({ dependency, state: 'ok', downForMs: at - since }, `${dependency} is back up`);
    },
    logTo(next) {
      log = next;
      for (const [dependency, { state, reason }] of states) if (state === 'down') wentDown(dependency, reason);
    },
    close() {
      closed = true;
    },
  };
}

export interface HealthDeps {
  db: Db;
  redis?: Redis | null;
  invalidation?: Pick<Invalidation, 'live'>;
  monitor?: DependencyMonitor;
  /** How long a probe may take before its dependency counts as down. */
  timeoutMs?: number;
  /** How often {@link HealthService.watch} probes. */
  probeEveryMs?: number;
}

export type HealthService = ReturnType<typeof createHealthService>;

const reasonOf = (error: unknown): string =>
  error instanceof Error ? ((error as { code?: unknown }).code?.toString() ?? error.message) : String(error);

/** Resolves with `work`'s outcome, or rejects once `ms` have passed (a probe never waits longer). */
function within<T>(work: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

export function createHealthService({ db, redis = null, invalidation, monitor, timeoutMs = 2_000, probeEveryMs = 5_000 }: HealthDeps) {
  let probing: Promise<Readiness> | null = null;
  let timer: NodeJS.Timeout | null = null;

  if (redis) {
    // Connection events tell of a refused or dropped connection at once; a silent one is found by the probes.
    redis.on('ready', () => monitor?.report('redis', true));
    redis.on('error', (error: Error) => monitor?.report('redis', false, reasonOf(error)));
    redis.on('close', () => monitor?.report('redis', false, 'connection closed'));
  }

  async function probe(dependency: Dependency, work: () => Promise<unknown>): Promise<CheckState> {
    try {
      await within(work(), timeoutMs);
      monitor?.report(dependency, true);
      return 'ok';
    } catch (error) {
      monitor?.report(dependency, false, reasonOf(error));
      return 'down';
    }
  }

  async function redisState(): Promise<CheckState> {
    if (redis === null) return 'disabled';
    if (redisIsDown(redis)) {
      monitor?.report('redis', false, `connection ${redis.status}`);
      return 'down';
    }
    return probe('redis', () => redis.ping());
  }

  function invalidationState(): CheckState {
    const live = invalidation?.live() ?? true;
    monitor?.report('invalidation', live);
    return live ? 'ok' : 'down';
  }

  async function run(): Promise<Readiness> {
    const [database, redisCheck] = await Promise.all([probe('database', () => ping(db.db)), redisState()]);
    const checks = { database, redis: redisCheck, invalidation: invalidationState() };
    const status = database !== 'ok' ? 'down' : Object.values(checks).every((c) => c === 'ok' || c === 'disabled') ? 'ok' : 'degraded';
    return { status, checks };
  }

  function check(): Promise<Readiness> {
    probing ??= run().finally(() => {
      probing = null;
    });
    return probing;
  }

  return {
    /** `ok` when the database answers a trivial query within the timeout. */
    async database(): Promise<'ok' | 'down'> {
      return (await probe('database', () => ping(db.db))) === 'ok' ? 'ok' : 'down';
    },

    /** Probes every dependency (concurrent callers share one probe). */
    check,

    /**
     * Logs each dependency's state changes to `log`, and probes every `probeEveryMs` so that an outage is
     * noticed (and its end) without a request or a readiness check to find it.
     */
    watch(log: DependencyLog): void {
      monitor?.logTo(log);
      if (timer !== null) return;
      timer = setInterval(() => void check().catch(() => {}), probeEveryMs);
      timer.unref();
    },

    close(): void {
      if (timer !== null) clearInterval(timer);
      timer = null;
      monitor?.close();
    },
  };
}
