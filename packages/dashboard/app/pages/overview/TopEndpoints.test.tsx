import type { VerificationSeries } from '@keyward/sdk';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { renderSignedIn } from '../../test/render';
import { rangeStart } from './OutcomeTimeline';
import { OverviewPage } from './OverviewPage';

type SeriesQuery = { from: string; granularity: 'minute' | 'hour' | 'day'; group_by?: string };

function series(query: SeriesQuery, groups?: Record<string, number>): VerificationSeries {
  const total = groups ? Object.values(groups).reduce((a, b) => a + b, 0) : 0;
  return {
    key_id: null,
    granularity: query.granularity,
    ...(groups ? { group_by: 'endpoint' as const } : {}),
    from: query.from,
    to: new Date().toISOString(),
    buckets: [],
    totals: { total, outcomes: total ? { VALID: total } : {}, ...(groups ? { groups } : {}) },
  };
}

const analytics = {
  from: '2026-01-05T00:00:00.000Z',
  to: '2026-01-06T00:00:00.000Z',
  totals: { total: 100, outcomes: { VALID: 100 } },
  top_keys: [],
};

beforeEach(() => {
  // Recharts measures its container, which jsdom lays out at 0×0: it says so on every render.
  vi.spyOn(console, 'warn').mockImplementation(() => {});
});

describe('overview: top endpoints', () => {
  it('counts every key’s requests by endpoint over the page’s range', async () => {
    const user = userEvent.setup();
    const before = Date.now();
    // The range's start as the page computed it: a whole bucket, so the same unless one ended meanwhile.
    const startOf = (range: '24h' | '30d') => expect.toBeOneOf([rangeStart(range, before), rangeStart(range)]);
    const getVerificationSeries = vi.fn(async (query: SeriesQuery) =>
      query.group_by === 'endpoint' ? series(query, { '/v1/companies': 75, '/v1/invoices': 25 }) : series(query),
    );
    renderSignedIn(<OverviewPage />, { getVerificationAnalytics: vi.fn().mockResolvedValue(analytics), getVerificationSeries });

    const table = await screen.findByRole('table', { name: 'Top endpoints' });
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows.map((row) => row.textContent)).toEqual(['/v1/companies7575.0%', '/v1/invoices2525.0%']);
    expect(screen.getByText('Requests by path in the last 24 hours')).toBeInTheDocument();
    const grouped = () => getVerificationSeries.mock.calls.map(([q]) => q).filter((q) => q.group_by === 'endpoint');
    // The same start as the chart's; one bucket a day, as only the totals are read.
    expect(grouped()).toEqual([{ from: startOf('24h'), granularity: 'day', group_by: 'endpoint' }]);

    await user.click(screen.getByRole('radio', { name: '30 d' }));
    await screen.findByText('Requests by path in the last 30 days');
    await waitFor(() => expect(grouped()).toHaveLength(2));
    expect(grouped()[1]).toEqual({ from: startOf('30d'), granularity: 'day', group_by: 'endpoint' });
  });
});
