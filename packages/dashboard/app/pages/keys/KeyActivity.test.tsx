import type { ApiKey, KeyActivity } from '@keyward/sdk';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { renderSignedIn } from '../../test/render';
import { activityLabel, useKeysActivity } from './KeyActivity';
import { KeysPage } from './KeysPage';
import { KeysTable } from './KeysTable';

const apiKey = (id: string, name: string): ApiKey => ({
  id,
  lineage_id: id,
  name,
  description: null,
  key_prefix: `kw_${id}`,
  hash_scheme: 'sha256',
  user_id: null,
  is_admin: false,
  scopes: ['orders:read'],
  metadata: {},
  is_active: true,
  status: 'active',
  created_at: '2026-01-01T00:00:00.000Z',
  created_by: 'admin',
  updated_at: '2026-01-01T00:00:00.000Z',
  last_used_at: null,
  expires_at: null,
  revoked_at: null,
  rolled_from: null,
  rate_limit: null,
  quota: null,
});

const hours = (counts: Record<number, number>) => Array.from({ length: 24 }, (_, i) => counts[i] ?? 0);
const activity = (key_id: string, buckets: number[]): KeyActivity => ({
  key_id,
  total: buckets.reduce((a, b) => a + b, 0),
  buckets,
});

const KEYS = [apiKey('k1', 'billing'), apiKey('k2', 'search'), apiKey('k3', 'reports')];

function clientFor(data: KeyActivity[]) {
  return {
    listKeys: vi.fn().mockResolvedValue({ data: KEYS, next_cursor: null }),
    listUsers: vi.fn().mockResolvedValue({ data: [], next_cursor: null }),
    getKeysActivity: vi.fn().mockResolvedValue({
      from: '2026-01-01T00:00:00.000Z',
      to: '2026-01-02T00:00:00.000Z',
      granularity: 'hour',
      data,
    }),
  };
}

/** The keys table as a page uses it, for the phone layout. */
function Phone() {
  const state = useKeysActivity(KEYS.map((k) => k.id));
  return <KeysTable keys={KEYS} canWrite={false} activity={state} onAction={() => {}} />;
}

const originalMatchMedia = window.matchMedia;
beforeEach(() => {
  // Recharts measures its container, which jsdom lays out at 0×0: it says so on every render.
  vi.spyOn(console, 'warn').mockImplementation(() => {});
});
afterEach(() => {
  window.matchMedia = originalMatchMedia;
});

describe('keys table usage sparklines', () => {
  it('asks for the whole page in one request and names each sparkline by its total', async () => {
    // k3 is left out of the answer (as the server leaves out a key it may not read).
    const client = clientFor([activity('k1', hours({ 20: 40, 22: 2 })), activity('k2', hours({ 3: 1 }))]);
    renderSignedIn(<KeysPage />, client);

    expect(await screen.findByRole('img', { name: '42 verifications in the last 24 hours' })).toBeInTheDocument();
    expect(screen.getByRole('img', { name: '1 verification in the last 24 hours' })).toBeInTheDocument();
    expect(screen.getByRole('columnheader', { name: 'Last 24 h' })).toBeInTheDocument();
    const reports = screen.getByRole('row', { name: /reports/ });
    expect(within(reports).getByText('Usage not available')).toBeInTheDocument();
    expect(within(reports).queryByRole('img', { name: /verifications? in the last 24 hours/ })).not.toBeInTheDocument();

    expect(client.getKeysActivity).toHaveBeenCalledTimes(1);
    expect(client.getKeysActivity).toHaveBeenCalledWith(['k1', 'k2', 'k3']);
  });

  it('sends the search to the server once typing pauses, and shows its page', async () => {
    const user = userEvent.setup();
    const client = clientFor([activity('k1', hours({ 0: 5 })), activity('k2', hours({})), activity('k3', hours({}))]);
    client.listKeys.mockImplementation(async (query: { q?: string }) => ({
      data: query.q ? KEYS.filter((k) => k.name.includes(query.q ?? '')) : KEYS,
      next_cursor: null,
    }));
    renderSignedIn(<KeysPage />, client);
    await screen.findByRole('img', { name: '5 verifications in the last 24 hours' });

    await user.type(screen.getByRole('searchbox', { name: 'Search keys' }), ' search ');
    // A loaded machine may take longer than waitFor's default second for the debounce and the page.
    await waitFor(() => expect(screen.queryByRole('row', { name: /billing/ })).not.toBeInTheDocument(), { timeout: 5_000 });
    expect(screen.getByRole('row', { name: /search/ })).toBeInTheDocument();
    // Debounced and trimmed: one request for the search, not one per keystroke.
    const searches = client.listKeys.mock.calls.filter(([query]) => (query as { q?: string }).q !== undefined);
    expect(searches).toEqual([[expect.objectContaining({ q: 'search' })]]);
    await waitFor(() => expect(client.getKeysActivity).toHaveBeenLastCalledWith(['k2']), { timeout: 5_000 });
  });

  it('shows a placeholder while loading and a dash when the request fails', async () => {
    let fail: (error: Error) => void = () => {};
    const client = {
      ...clientFor([]),
      getKeysActivity: vi.fn().mockReturnValue(
        new Promise((_, reject) => {
          fail = reject;
        }),
      ),
    };
    renderSignedIn(<KeysPage />, client);
    expect(await screen.findAllByText('Loading usage')).toHaveLength(3);
    fail(new Error('403'));
    await waitFor(() => expect(screen.getAllByText('Usage not available')).toHaveLength(3));
  });

  it('leaves the sparkline out of the phone layout', async () => {
    window.matchMedia = ((query: string) => ({ ...originalMatchMedia(query), matches: true })) as typeof window.matchMedia;
    const client = clientFor([activity('k1', hours({ 1: 7 }))]);
    renderSignedIn(<Phone />, client);
    expect(await screen.findByRole('list', { name: 'Keys' })).toBeInTheDocument();
    await waitFor(() => expect(client.getKeysActivity).toHaveBeenCalled());
    expect(screen.queryByRole('img', { name: /in the last 24 hours/ })).not.toBeInTheDocument();
    expect(screen.queryByRole('columnheader', { name: 'Last 24 h' })).not.toBeInTheDocument();
  });

  it('says one verification, and thousands with separators', () => {
    expect(activityLabel(1)).toBe('1 verification in the last 24 hours');
    expect(activityLabel(0)).toBe('0 verifications in the last 24 hours');
    expect(activityLabel(12_345)).toMatch(/^12.345 verifications in the last 24 hours$/);
  });
});
