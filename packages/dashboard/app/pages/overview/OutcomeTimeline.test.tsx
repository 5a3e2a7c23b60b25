import type { VerificationSeries } from '@keyward/sdk';
import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { renderSignedIn } from '../../test/render';
import { RANGES, rangeStart } from './OutcomeTimeline';
import { OverviewPage } from './OverviewPage';

const HOUR = 3600e3;

function series(granularity: VerificationSeries['granularity'], outcomes: Record<string, number>[]): VerificationSeries {
  const size = { minute: 60e3, hour: HOUR, day: 24 * HOUR }[granularity];
  const start = Date.UTC(2026, 0, 5, 0);
  const buckets = outcomes.map((o, i) => ({
    start: new Date(start + i * size).toISOString(),
    total: Object.values(o).reduce((a, b) => a + b, 0),
    outcomes: o,
  }));
  const totals = { total: 0, outcomes: {} as Record<string, number> };
  for (const b of buckets) {
    totals.total += b.total;
    for (const [code, n] of Object.entries(b.outcomes)) totals.outcomes[code] = (totals.outcomes[code] ?? 0) + n;
  }
  return {
    key_id: null,
    granularity,
    from: buckets[0]?.start ?? new Date(start).toISOString(),
    to: new Date(start + buckets.length * size).toISOString(),
    buckets,
    totals,
  };
}

const analytics = {
  from: '2026-01-05T00:00:00.000Z',
  to: '2026-01-06T00:00:00.000Z',
  totals: { total: 123, outcomes: { VALID: 120, RATE_LIMITED: 3 } },
  top_keys: [{ key_id: 'k1', name: 'billing', key_prefix: 'kw_live_ab', total: 123, outcomes: { VALID: 120, RATE_LIMITED: 3 } }],
};

/** The chart's requests to the series (the top endpoints ask it too, grouped by endpoint). */
const chartCalls = (mock: { mock: { calls: unknown[][] } }) =>
  mock.mock.calls.filter(([query]) => (query as { group_by?: string }).group_by === undefined) as [
    { from: string; granularity: 'minute' | 'hour' | 'day' },
  ][];

function clientWith(getVerificationSeries: ReturnType<typeof vi.fn>) {
  return { getVerificationAnalytics: vi.fn().mockResolvedValue(analytics), getVerificationSeries };
}

beforeEach(() => {
  // Recharts measures its container, which jsdom lays out at 0×0: it says so on every render.
  vi.spyOn(console, 'warn').mockImplementation(() => {});
});

describe('overview: verifications by outcome over time', () => {
  it('draws the last 24 hours by hour, named by its totals, above the top keys', async () => {
    const getSeries = vi.fn().mockResolvedValue(series('hour', [{ VALID: 100 }, {}, { VALID: 20, RATE_LIMITED: 3 }]));
    renderSignedIn(<OverviewPage />, clientWith(getSeries));

    expect(
      await screen.findByRole('img', { name: 'Verifications by outcome over the last 24 hours, per hour: Valid 120, Rate limited 3' }),
    ).toBeInTheDocument();
    expect(screen.getByRole('heading', { name: 'Verifications over time' })).toBeInTheDocument();
    expect(screen.getByRole('heading', { name: 'Top keys' })).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'billing' })).toHaveAttribute('href', '/keys/k1');

    expect(chartCalls(getSeries)).toHaveLength(1);
    const query = chartCalls(getSeries)[0]?.[0] as { from: string; granularity: string };
    expect(query.granularity).toBe('hour');
    // 24 whole hours: the current one and the 23 before it.
    const from = Date.parse(query.from);
    expect(from % HOUR).toBe(0);
    expect(Date.now() - from).toBeGreaterThan(23 * HOUR);
    expect(Date.now() - from).toBeLessThanOrEqual(24 * HOUR);
  });

  it('asks by minute for 1 h and by day for 7 d and 30 d', async () => {
    const user = userEvent.setup();
    const getSeries = vi.fn(async (query: { granularity: 'minute' | 'hour' | 'day' }) => series(query.granularity, [{ VALID: 1 }]));
    renderSignedIn(<OverviewPage />, clientWith(getSeries));
    await screen.findByRole('img', { name: /per hour/ });

    await user.click(screen.getByRole('radio', { name: '1 h' }));
    expect(await screen.findByRole('img', { name: /^Verifications by outcome over the last hour, per minute/ })).toBeInTheDocument();
    await user.click(screen.getByRole('radio', { name: '7 d' }));
    expect(await screen.findByRole('img', { name: /^Verifications by outcome over the last 7 days, per day/ })).toBeInTheDocument();
    await user.click(screen.getByRole('radio', { name: '30 d' }));
    expect(await screen.findByRole('img', { name: /^Verifications by outcome over the last 30 days, per day/ })).toBeInTheDocument();

    expect(chartCalls(getSeries).map(([q]) => q.granularity)).toEqual(['hour', 'minute', 'day', 'day']);
  });

  it('says what to do when the range holds no verification', async () => {
    const getSeries = vi.fn().mockResolvedValue(series('hour', [{}, {}]));
    renderSignedIn(<OverviewPage />, clientWith(getSeries));
    expect(await screen.findByText('No verifications in the last 24 hours')).toBeInTheDocument();
    expect(screen.queryByRole('img', { name: /over the last 24 hours/ })).not.toBeInTheDocument();
  });

  it('says why when the series cannot be loaded, and keeps the rest of the page', async () => {
    const getSeries = vi.fn().mockRejectedValue(new Error('Network down'));
    renderSignedIn(<OverviewPage />, clientWith(getSeries));
    expect(await screen.findByText('The chart could not be loaded')).toBeInTheDocument();
    await waitFor(() => expect(screen.getByRole('heading', { name: 'Top keys' })).toBeInTheDocument());
  });
});

describe('rangeStart', () => {
  const now = Date.UTC(2026, 2, 10, 14, 37, 12);
  it('starts each range on a whole bucket, the current one last', () => {
    expect(rangeStart('1h', now)).toBe('2026-03-10T13:38:00.000Z');
    expect(rangeStart('24h', now)).toBe('2026-03-09T15:00:00.000Z');
    expect(rangeStart('7d', now)).toBe('2026-03-04T00:00:00.000Z');
    expect(rangeStart('30d', now)).toBe('2026-02-09T00:00:00.000Z');
    expect(Object.values(RANGES).map((r) => [r.granularity, r.buckets])).toEqual([
      ['minute', 60],
      ['hour', 24],
      ['day', 7],
      ['day', 30],
    ]);
  });
});
