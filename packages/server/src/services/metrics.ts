import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Keyward's Prometheus metrics. Each container owns its registry (never prom-client's global default), so
 * two apps in one process (tests, benchmarks) count separately.
 */
export interface Metrics {
  registry: Registry;
  /** Verification outcomes, by verification code (`VALID`, `NOT_FOUND`, …). */
  verifications: Counter<'code'>;
  /** Seconds spent in one verification, from the request reaching the verifier to its answer. */
  verifyDuration: Histogram;
  /** Key cache look-ups: `hit` (fresh record or remembered miss) or `miss` (went to the database). */
  cacheLookups: Counter<'result'>;
  /** Rate-limit decisions: `allowed`, `denied`, or `fail_open` / `fail_closed` when the backend failed. */
  rateLimitDecisions: Counter<'backend' | 'result'>;
  usageRowsWritten: Counter;
  /** Usage rows lost: `overflow` (buffer full), `error` (not written and no room to keep), `closed` (after shutdown). */
  usageRowsDropped: Counter<'reason'>;
  usageBuffered: Gauge;
  /** Redis failures, by what was being done (`connection`, `rate_limit`, …). */
  redisErrors: Counter<'operation'>;
  /** Requests refused by the brute-force guard. */
  bruteForceBlocks: Counter;
  /** The Prometheus text exposition: this registry plus the process-wide default metrics. */
  render(): Promise<string>;
  contentType: string;
}

let processRegistry: Registry | null = null;

// Process metrics (CPU, memory, event loop, GC) describe the process, not one container, and
// collectDefaultMetrics starts an event-loop monitor and a GC observer that are never stopped: collected
// once per process, not once per container (tests build hundreds of containers).
function processMetrics(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    verifications: new Counter({
      name: 'keyward_verifications_total',
      help: 'Key verifications, by verification code',
      labelNames: ['code'],
      registers,
    }),
    verifyDuration: new Histogram({
      name: 'keyward_verify_duration_seconds',
      help: 'Time to verify one key',
      // Cached verifications take microseconds, uncached ones a database round trip.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    cacheLookups: new Counter({
      name: 'keyward_cache_lookups_total',
      help: 'Key cache look-ups, by result (hit, miss)',
      labelNames: ['result'],
      registers,
    }),
    rateLimitDecisions: new Counter({
      name: 'keyward_rate_limit_decisions_total',
      help: 'Rate-limit decisions, by backend and result (allowed, denied, fail_open, fail_closed)',
      labelNames: ['backend', 'result'],
      registers,
    }),
    usageRowsWritten: new Counter({ name: 'keyward_usage_rows_written_total', help: 'Usage rows written to the database', registers }),
    usageRowsDropped: new Counter({
      name: 'keyward_usage_rows_dropped_total',
      help: 'Usage rows dropped, by reason (overflow, error, closed)',
      labelNames: ['reason'],
      registers,
    }),
    usageBuffered: new Gauge({ name: 'keyward_usage_rows_buffered', help: 'Usage rows waiting to be written', registers }),
    redisErrors: new Counter({
      name: 'keyward_redis_errors_total',
      help: 'Redis errors, by operation',
      labelNames: ['operation'],
      registers,
    }),
    bruteForceBlocks: new Counter({
      name: 'keyward_brute_force_blocks_total',
      help: 'Requests refused because their client failed authentication too often',
      registers,
    }),
    contentType: registry.contentType,
    async render() {
      const own = await registry.metrics();
      // Each exposition ends with a newline, so the two concatenate into one valid document.
      return options.defaultMetrics === false ? own : own + (await processMetrics().metrics());
    },
  };
  return metrics;
}
