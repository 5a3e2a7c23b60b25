import type { ApiKey, AuditLogPage, KeyUsage } from '@keyward/sdk';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { Route, Routes } from 'react-router';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Role } from '../../api/session';
import { renderSignedIn } from '../../test/render';
import { KeyDetailPage } from './KeyDetailPage';

const HOUR = 3600e3;

const apiKey = (fields: Partial<ApiKey> = {}): ApiKey => ({
  id: 'k1',
  lineage_id: 'k1',
  name: 'Billing service',
  description: null,
  key_prefix: 'kw_live_ab',
  hash_scheme: 'sha256',
  user_id: null,
  is_admin: false,
  scopes: ['invoices:read'],
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
  ...fields,
});

const REVOKED = { status: 'revoked' as const, is_active: false, revoked_at: '2026-03-10T14:05:00.000Z' };

type AuditEntry = AuditLogPage['data'][number];
const entry = (action: string, changes: Record<string, unknown>): AuditEntry => ({
  id: `a-${action}`,
  actor_type: 'system',
  actor_id: 'github',
  action,
  target_type: 'api_key',
  target_id: 'k1',
  changes,
  ip: null,
  created_at: '2026-03-10T14:05:00.000Z',
});
const LEAKED = entry('key.leaked', {
  source: 'github',
  url: 'https://github.com/acme/app/blob/abc123/.env#L3',
  found_in: 'commit',
  is_active: { from: true, to: false },
  revoked_at: { from: null, to: '2026-03-10T14:05:00.000Z' },
});

function usage(groups?: Record<string, number>): KeyUsage {
  const total = groups ? Object.values(groups).reduce((a, b) => a + b, 0) : 0;
  return {
    key_id: 'k1',
    granularity: 'day',
    from: '2026-03-10T00:00:00.000Z',
    to: '2026-03-11T00:00:00.000Z',
    buckets: [],
    totals: { total, outcomes: total ? { VALID: total } : {}, ...(groups ? { groups } : {}) },
    ...(groups ? { group_by: 'endpoint' as const } : {}),
  };
}

type UsageQuery = { from: string; granularity: string; group_by?: string };

function clientFor(key: ApiKey, { leak = false, endpoints = {} as Record<string, number> } = {}) {
  return {
    getKey: vi.fn().mockResolvedValue(key),
    listUsers: vi.fn().mockResolvedValue({ data: [], next_cursor: null }),
    getKeyUsage: vi.fn(async (_id: string, query: UsageQuery) => (query.group_by === 'endpoint' ? usage(endpoints) : usage())),
    listUsageEvents: vi.fn().mockResolvedValue({ data: [], next_cursor: null }),
    listAuditLogs: vi.fn(async (query: { action?: string }) => {
      if (query.action === 'key.leaked') return { data: leak ? [LEAKED] : [], next_cursor: null };
      return { data: leak ? [LEAKED] : [entry('key.revoke', {})], next_cursor: null };
    }),
  };
}

function renderKeyPage(client: ReturnType<typeof clientFor>, role: Role = 'admin') {
  return renderSignedIn(
    <Routes>
      <Route path="/keys/:id" element={<KeyDetailPage />} />
    </Routes>,
    client,
    role,
    '/keys/k1',
  );
}

const header = () => screen.getByRole('heading', { level: 1, name: 'Billing service' }).parentElement as HTMLElement;
const endpointCalls = (client: ReturnType<typeof clientFor>) =>
  client.getKeyUsage.mock.calls.filter(([, query]) => query.group_by === 'endpoint').map(([, query]) => query);

beforeEach(() => {
  // Recharts measures its container, which jsdom lays out at 0×0: it says so on every render.
  vi.spyOn(console, 'warn').mockImplementation(() => {});
});

describe('key page: a leaked key', () => {
  it('shows leaked beside the revoked status, and where the leak was seen', async () => {
    const client = clientFor(apiKey(REVOKED), { leak: true });
    renderKeyPage(client);

    await screen.findByRole('heading', { level: 1, name: 'Billing service' });
    await waitFor(() => expect(within(header()).getByText('Leaked')).toBeInTheDocument());
    expect(within(header()).getByText('Revoked')).toBeInTheDocument();
    expect(client.listAuditLogs).toHaveBeenCalledWith({ target_id: 'k1', action: 'key.leaked', limit: 1 });

    const field = screen.getByText('Leaked', { selector: 'dt' }).parentElement as HTMLElement;
    expect(field).toHaveTextContent('GitHub secret scanning (commit)');
    expect(within(field).getByRole('link', { name: 'Where it was seen' })).toHaveAttribute(
      'href',
      'https://github.com/acme/app/blob/abc123/.env#L3',
    );
    // The audit trail names the action too.
    expect(await within(screen.getByTestId('audit-trail')).findByText('Key leaked')).toBeInTheDocument();
  });

  it('shows no leaked badge on a key revoked by hand', async () => {
    const client = clientFor(apiKey(REVOKED));
    renderKeyPage(client);
    await screen.findByRole('heading', { level: 1, name: 'Billing service' });
    await waitFor(() => expect(client.listAuditLogs).toHaveBeenCalledWith(expect.objectContaining({ action: 'key.leaked' })));
    await within(screen.getByTestId('audit-trail')).findByText('Key revoked');
    expect(within(header()).getByText('Revoked')).toBeInTheDocument();
    expect(screen.queryByText('Leaked')).not.toBeInTheDocument();
  });

  it('does not look for a leak on a live key', async () => {
    const live = clientFor(apiKey(), { leak: true });
    renderKeyPage(live);
    await screen.findByRole('heading', { level: 1, name: 'Billing service' });
    await waitFor(() => expect(live.listAuditLogs).toHaveBeenCalled());
    expect(live.listAuditLogs).not.toHaveBeenCalledWith(expect.objectContaining({ action: 'key.leaked' }));
    expect(screen.queryByText('Leaked')).not.toBeInTheDocument();
  });

  it('does not look for a leak without an admin key: the audit log is an admin’s', async () => {
    const client = clientFor(apiKey(REVOKED), { leak: true });
    renderKeyPage(client, 'manager');
    await screen.findByRole('heading', { level: 1, name: 'Billing service' });
    await screen.findByRole('heading', { name: 'Recent requests' });
    expect(client.listAuditLogs).not.toHaveBeenCalled();
    expect(screen.queryByText('Leaked')).not.toBeInTheDocument();
  });
});

describe('key page: top endpoints', () => {
  it('counts the key’s requests by endpoint over the chart’s range, and follows its range', async () => {
    const user = userEvent.setup();
    const client = clientFor(apiKey(), { endpoints: { '/v1/invoices': 30, '/v1/companies': 90, '': 5 } });
    renderKeyPage(client);

    const table = await screen.findByRole('table', { name: 'Top endpoints' });
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows.map((row) => row.getAttribute('data-endpoint'))).toEqual(['/v1/companies', '/v1/invoices', '']);
    expect(rows[0]).toHaveTextContent('/v1/companies9072.0%');
    expect(rows[1]).toHaveTextContent('/v1/invoices3024.0%');
    expect(rows[2]).toHaveTextContent('No endpoint54.0%');
    expect(screen.getByText('Requests by path in the last 24 hours')).toBeInTheDocument();

    const [first] = endpointCalls(client);
    expect(first).toMatchObject({ granularity: 'day', group_by: 'endpoint' });
    expect(Date.now() - Date.parse(first?.from ?? '')).toBeGreaterThanOrEqual(24 * HOUR);
    expect(Date.now() - Date.parse(first?.from ?? '')).toBeLessThan(25 * HOUR);

    // The chart's range picker is the page's: the endpoints follow it.
    await user.click(screen.getByRole('radio', { name: '7 d' }));
    await screen.findByText('Requests by path in the last 7 days');
    await waitFor(() => expect(endpointCalls(client)).toHaveLength(2));
    const last = endpointCalls(client)[1];
    expect(Date.now() - Date.parse(last?.from ?? '')).toBeGreaterThanOrEqual(7 * 24 * HOUR);
    expect(Date.now() - Date.parse(last?.from ?? '')).toBeLessThan(7 * 24 * HOUR + HOUR);
  });

  it('shows the key’s recent requests under the charts', async () => {
    const client = clientFor(apiKey());
    renderKeyPage(client);
    expect(await screen.findByRole('heading', { name: 'Recent requests' })).toBeInTheDocument();
    expect(client.listUsageEvents).toHaveBeenCalledWith({ key_id: 'k1', limit: 25 });
    expect(await screen.findByText('No requests yet')).toBeInTheDocument();
  });
});
