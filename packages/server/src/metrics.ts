import { Counter, collectDefaultMetrics, Gauge, Histogram, type LabelValues, Registry } from 'prom-client';

/** A counter child for the verify hot path: `inc()` is a plain addition (see {@link Tally}). */
export interface HotCounter {
  inc(): void;
}

class TallyChild<L extends string> implements HotCounter {
  count = 0;
  constructor(readonly labels: LabelValues<L>) {}
  inc(): void {
    this.count++;
  }
}

/**
 * Counts kept as plain numbers and added to their prom-client counter whenever it is read (a scrape, `get()`):
 * prom-client hashes the labels on every `inc`, even through a bound child, which costs more than the rest
 * of a cached verification. What a scrape shows is the same.
 */
class Tally<L extends string> {
  readonly #children: TallyChild<L>[] = [];
  child(labels: LabelValues<L>): HotCounter {
    const child = new TallyChild(labels);
    this.#children.push(child);
    return child;
  }
  drain(counter: Counter<L>): void {
    for (const child of this.#children) {
      if (child.count === 0) continue;
      counter.inc(child.labels, child.count);
      child.count = 0;
    }
  }
}

/** One (method, route, status) series of the HTTP request metrics: a counter child and a histogram child. */
interface HttpSeries {
  count: HotCounter;
  duration: { observe(seconds: number): void };
}

/**
 * Records answered HTTP requests by method, route pattern and status. Each series' children are made once and
 * kept, so a request costs three map look-ups, an addition and one histogram observation.
 */
export interface HttpMetrics {
  /** `route` is the route's pattern (`/v1/api-keys/:id`), never the requested URL: ids must not become series. */
  record(method: string, route: string, status: number, seconds: number): void;
}

function httpMetrics(requests: Tally<'method' | 'route' | 'status'>, duration: Histogram<'method' | 'route' | 'status'>): HttpMetrics {
  const routes = new Map<string, Map<string, Map<number, HttpSeries>>>();
  return {
    record(method, route, status, seconds) {
      let methods = routes.get(route);
      if (methods === undefined) {
        methods = new Map();
        routes.set(route, methods);
      }
      let statuses = methods.get(method);
      if (statuses === undefined) {
        statuses = new Map();
        methods.set(method, statuses);
      }
      let series = statuses.get(status);
      if (series === undefined) {
        const labels = { method, route, status: String(status) };
        series = { count: requests.child(labels), duration: duration.labels(labels) };
        statuses.set(status, series);
      }
      series.count.inc();
      series.duration.observe(seconds);
    },
  };
}

/**
 * Keyward's Prometheus metrics. Each container owns its registry (never prom-client's global default), so
 * two apps in one process (tests, benchmarks) count separately.
 */
export interface Metrics {
  registry: Registry;
  /** Verification outcomes, by verification code (`VALID`, `NOT_FOUND`, …). */
  verifications: Counter<'code'>;
  /** Hot-path children of {@link verifications}, {@link cacheLookups} and {@link rateLimitDecisions}: same counts, cheaper `inc`. */
  hot: {
    verifications(code: string): HotCounter;
    cacheLookups(result: 'hit' | 'miss'): HotCounter;
    rateLimitDecisions(backend: string, result: string): HotCounter;
  };
  /** Seconds to answer one verification: `POST /v1/keys/verify` or the gateway, from the request's arrival to the answer. */
  verifyDuration: Histogram;
  /** Key cache look-ups: `hit` (fresh record or remembered miss) or `miss` (went to the database). */
  cacheLookups: Counter<'result'>;
  /** Rate-limit decisions: `allowed`, `denied`, or `fail_open` / `fail_closed` when the backend failed. */
  rateLimitDecisions: Counter<'backend' | 'result'>;
  usageRowsWritten: Counter;
  /** Usage rows lost: `overflow` (buffer full), `error` (not written and no room to keep), `closed` (after shutdown), `invalid` (no readable time). */
  usageRowsDropped: Counter<'reason'>;
  usageBuffered: Gauge;
  /** Redis failures, by what was being done (`connection`, `rate_limit`, …). */
  redisErrors: Counter<'operation'>;
  /** Requests refused by the brute-force guard. */
  bruteForceBlocks: Counter;
  /** 1 while a dependency (`database`, `redis`, `invalidation`) answers, 0 while it is down. */
  dependencyUp: Gauge<'dependency'>;
  /** Answered HTTP requests, by method, route pattern and status (`unmatched` for no route). */
  httpRequests: Counter<'method' | 'route' | 'status'>;
  /** Seconds from a request's arrival to its answer being sent, by method, route pattern and status. */
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  /** The cheap way to count a request in {@link httpRequests} and {@link httpDuration}. */
  http: HttpMetrics;
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
  const verificationTally = new Tally<'code'>();
  const cacheTally = new Tally<'result'>();
  const rateLimitTally = new Tally<'backend' | 'result'>();
  const httpTally = new Tally<'method' | 'route' | 'status'>();
  const httpDuration = new Histogram({
    name: 'keyward_http_request_duration_seconds',
    help: 'Time from an HTTP request arriving to its answer being sent, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const metrics: Metrics = {
    registry,
    verifications: new Counter({
      name: 'keyward_verifications_total',
      help: 'Key verifications, by verification code',
      labelNames: ['code'],
      registers,
      collect() {
        verificationTally.drain(this);
      },
    }),
    hot: {
      verifications: (code) => verificationTally.child({ code }),
      cacheLookups: (result) => cacheTally.child({ result }),
      rateLimitDecisions: (backend, result) => rateLimitTally.child({ backend, result }),
    },
    verifyDuration: new Histogram({
      name: 'keyward_verify_duration_seconds',
      help: 'Time to answer one key verification, from the request arriving to the answer being ready',
      // Cached verifications take microseconds, uncached ones a database round trip.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    cacheLookups: new Counter({
      name: 'keyward_cache_lookups_total',
      help: 'Key cache look-ups, by result (hit, miss)',
      labelNames: ['result'],
      registers,
      collect() {
        cacheTally.drain(this);
      },
    }),
    rateLimitDecisions: new Counter({
      name: 'keyward_rate_limit_decisions_total',
      help: 'Rate-limit decisions, by backend and result (allowed, denied, fail_open, fail_closed)',
      labelNames: ['backend', 'result'],
      registers,
      collect() {
        rateLimitTally.drain(this);
      },
    }),
    usageRowsWritten: new Counter({ name: 'keyward_usage_rows_written_total', help: 'Usage rows written to the database', registers }),
    usageRowsDropped: new Counter({
      name: 'keyward_usage_rows_dropped_total',
      help: 'Usage rows dropped, by reason (overflow, error, closed, invalid)',
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
    dependencyUp: new Gauge({
      name: 'keyward_dependency_up',
      help: 'Whether a dependency answers (1) or is down (0), by dependency (database, redis, invalidation)',
      labelNames: ['dependency'],
      registers,
    }),
    httpRequests: new Counter({
      name: 'keyward_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers,
      collect() {
        httpTally.drain(this);
      },
    }),
    httpDuration,
    http: httpMetrics(httpTally, httpDuration),
    contentType: registry.contentType,
    async render() {
      const own = await registry.metrics();
      // Each exposition ends with a newline, so the two concatenate into one valid document.
      return options.defaultMetrics === false ? own : own + (await processMetrics().metrics());
    },
  };
  return metrics;
}
