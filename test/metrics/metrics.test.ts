import { generateKey } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../packages/server/src/metrics.js';
import { createRedisRateLimiter } from '../../packages/server/src/store/rate-limiter.js';
import { closeRedis, openRedis } from '../../packages/server/src/store/redis.js';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';
import { closedPort, randomPrefix } from '../limits/redis-helpers.js';

/**
 * Parses Prometheus text format 0.0.4, failing on any line that is not a comment or a sample. Special values
 * are case-insensitive, as Prometheus reads them (prom-client writes `Nan`).
 */
function parse(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.e+-]+|nan|[+-]inf)$/i.exec(
      line,
    );
    expect(sample, `not a Prometheus line: ${line}`).not.toBeNull();
    if (sample) samples.set(sample[1] as string, Number(sample[2]));
  }
  return { samples, types };
}

describe('/metrics', () => {
  let t: TestApp;
  afterEach(async () => t?.close());

  const scrape = async () => {
    const response = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return parse(response.body);
  };

  it('answers without credentials, in Prometheus text format, with every Keyward metric and the process metrics', async () => {
    t = await createTestApp();
    const { types, samples } = await scrape();
    expect(Object.fromEntries([...types].filter(([name]) => name.startsWith('keyward_')))).toEqual({
      keyward_verifications_total: 'counter',
      keyward_verify_duration_seconds: 'histogram',
      keyward_cache_lookups_total: 'counter',
      keyward_rate_limit_decisions_total: 'counter',
      keyward_usage_rows_written_total: 'counter',
      keyward_usage_rows_dropped_total: 'counter',
      keyward_usage_rows_buffered: 'gauge',
      keyward_redis_errors_total: 'counter',
      keyward_brute_force_blocks_total: 'counter',
      keyward_dependency_up: 'gauge',
      keyward_http_requests_total: 'counter',
      keyward_http_request_duration_seconds: 'histogram',
    });
    expect(types.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(samples.get('keyward_verify_duration_seconds_count')).toBe(0);
  });

  it('moves when things happen: verifications, latency, usage rows, rate-limit decisions, brute-force blocks', async () => {
    t = await createTestApp({ env: { AUTH_FAILURES_PER_MINUTE: '1' } });
    const { metrics } = t.container;
    metrics.verifications.inc({ code: 'VALID' });
    metrics.verifications.inc({ code: 'NOT_FOUND' }, 2);
    metrics.verifyDuration.observe(0.0004);
    metrics.cacheLookups.inc({ result: 'hit' });
    for (let i = 0; i < 3; i++) t.container.usage.record({ apiKeyId: null, outcome: 'NOT_FOUND' });
    await t.container.usage.flush();
    await t.container.rateLimiter.consume('k', { limit: 1, windowSeconds: 60 });
    await t.container.rateLimiter.consume('k', { limit: 1, windowSeconds: 60 });
    // One failed authentication blocks the address at a limit of 1; the next request is refused.
    await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(generateKey()) });
    expect((await t.app.inject({ method: 'GET', url: '/v1/api-keys', headers: bearer(t.adminKey) })).statusCode).toBe(429);

    const { samples } = await scrape();
    expect(samples.get('keyward_verifications_total{code="VALID"}')).toBe(1);
    expect(samples.get('keyward_verifications_total{code="NOT_FOUND"}')).toBe(2);
    expect(samples.get('keyward_verify_duration_seconds_count')).toBe(1);
    expect(samples.get('keyward_verify_duration_seconds_bucket{le="0.0005"}')).toBe(1);
    expect(samples.get('keyward_verify_duration_seconds_bucket{le="0.00025"}')).toBe(0);
    expect(samples.get('keyward_cache_lookups_total{result="hit"}')).toBe(1);
    expect(samples.get('keyward_usage_rows_written_total')).toBe(3);
    expect(samples.get('keyward_usage_rows_buffered')).toBe(0);
    // The failed authentication counts in the guard's own limiter, not as a rate-limit decision.
    expect(samples.get('keyward_rate_limit_decisions_total{backend="memory",result="allowed"}')).toBe(1);
    expect(samples.get('keyward_rate_limit_decisions_total{backend="memory",result="denied"}')).toBe(1);
    expect(samples.get('keyward_brute_force_blocks_total')).toBe(1);
  });

  it('keeps each app’s counts in its own registry', async () => {
    t = await createTestApp();
    const other = await createTestApp();
    try {
      other.container.metrics.verifications.inc({ code: 'VALID' }, 5);
      const { samples } = await scrape();
      expect(samples.get('keyward_verifications_total{code="VALID"}')).toBeUndefined();
    } finally {
      await other.close();
    }
  });

  it('counts errors on the cache invalidation channel’s Redis connections', async () => {
    t = await createTestApp({ env: { REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, REDIS_TIMEOUT_MS: '100' } });
    let errors = 0;
    for (let i = 0; i < 100 && errors === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      errors = (await scrape()).samples.get('keyward_redis_errors_total{operation="invalidation"}') ?? 0;
    }
    expect(errors).toBeGreaterThanOrEqual(1);
    expect(t.container.invalidation.live()).toBe(false);
  });

  it('counts Redis errors and fail-open decisions', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const redis = openRedis(`redis://127.0.0.1:${await closedPort()}`, {
      commandTimeoutMs: 100,
      onError: () => metrics.redisErrors.inc({ operation: 'connection' }),
    });
    try {
      const limiter = createRedisRateLimiter({ redis, prefix: randomPrefix(), failMode: 'open', metrics });
      await limiter.consume('k', { limit: 1, windowSeconds: 60 });
      await limiter.consume('k', { limit: 1, windowSeconds: 60 });
      const { samples } = parse(await metrics.render());
      expect(samples.get('keyward_redis_errors_total{operation="rate_limit"}')).toBe(2);
      expect(samples.get('keyward_redis_errors_total{operation="connection"}')).toBeGreaterThanOrEqual(1);
      expect(samples.get('keyward_rate_limit_decisions_total{backend="redis",result="fail_open"}')).toBe(2);
      // The brute-force guards' limiter: its Redis errors count, its decisions do not.
      const guardLimiter = createRedisRateLimiter({ redis, prefix: randomPrefix(), failMode: 'open', metrics, countDecisions: false });
      await guardLimiter.consume('bf:ip', { limit: 1, windowSeconds: 60 });
      const after = parse(await metrics.render()).samples;
      expect(after.get('keyward_redis_errors_total{operation="rate_limit"}')).toBe(3);
      expect(after.get('keyward_rate_limit_decisions_total{backend="redis",result="fail_open"}')).toBe(2);
    } finally {
      await closeRedis(redis);
    }
  });
});
