import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { renderUi } from '../test/render';
import { EndpointBreakdown, endpointLines, TOP_ENDPOINTS } from './EndpointBreakdown';

const rowsOf = () =>
  within(screen.getByRole('table', { name: 'Top endpoints' }))
    .getAllByRole('row')
    .slice(1);

describe('endpoint breakdown', () => {
  it('orders endpoints by count, names the rows with no endpoint, and counts what the named groups leave', () => {
    // The server names the 50 largest groups; the rest count in `total` only.
    expect(endpointLines({ total: 130, groups: { '/b': 20, '': 10, '/a': 20, '/c': 70 } })).toEqual([
      { key: '/c', label: '/c', count: 70 },
      { key: '/a', label: '/a', count: 20 },
      { key: '/b', label: '/b', count: 20 },
      { key: '', label: 'No endpoint', count: 10, other: true },
      { key: '\u0000other', label: 'Other endpoints', count: 10, other: true },
    ]);
    expect(endpointLines({ total: 0 })).toEqual([]);
  });

  it(`shows the top ${TOP_ENDPOINTS} with their share of all requests, and the rest on demand`, async () => {
    const user = userEvent.setup();
    const groups = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`/v1/e${i}`, 100 - i * 10]));
    renderUi(<EndpointBreakdown totals={{ total: 550, groups }} error={null} range="the last hour" />);

    expect(screen.getByText('Requests by path in the last hour')).toBeInTheDocument();
    expect(rowsOf()).toHaveLength(TOP_ENDPOINTS);
    expect(rowsOf()[0]).toHaveTextContent('/v1/e010018.2%');
    expect(screen.getByText('550 requests')).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Show all 10' }));
    expect(rowsOf()).toHaveLength(10);
    expect(rowsOf()[9]).toHaveTextContent('/v1/e9101.8%');
    await user.click(screen.getByRole('button', { name: 'Show fewer' }));
    expect(rowsOf()).toHaveLength(TOP_ENDPOINTS);
  });

  it('says so when the range holds no request, while it loads, and when it fails', () => {
    const empty = renderUi(<EndpointBreakdown totals={{ total: 0, groups: {} }} error={null} range="the last 7 days" />);
    expect(screen.getByText('No requests in the last 7 days')).toBeInTheDocument();
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
    empty.unmount();

    const loading = renderUi(<EndpointBreakdown totals={undefined} error={null} range="the last 7 days" />);
    expect(screen.getByLabelText('Loading endpoints')).toBeInTheDocument();
    loading.unmount();

    renderUi(<EndpointBreakdown totals={undefined} error={new Error('Network down')} range="the last 7 days" />);
    expect(screen.getByText('Endpoints could not be loaded')).toBeInTheDocument();
    expect(screen.getByText('Network down')).toBeInTheDocument();
  });
});
