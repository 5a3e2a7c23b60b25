import type { UsageEventPage, UsageRow } from '@keyward/sdk';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { renderSignedIn } from '../../test/render';
import { REFUSED, REQUESTS_PAGE_SIZE, RecentRequests } from './RecentRequests';

const row = (id: string, fields: Partial<UsageRow> = {}): UsageRow => ({
  id,
  key_id: 'k1',
  endpoint: `/v1/companies/${id}`,
  method: 'GET',
  status_code: 200,
  ip_address: '203.0.113.7',
  user_agent: 'curl/8.7.1',
  response_time_ms: 12,
  outcome: 'VALID',
  tags: ['route:/v1/companies/:id'],
  created_at: '2026-03-10T14:05:09.120Z',
  ...fields,
});

const page = (data: UsageRow[], next_cursor: string | null = null): UsageEventPage => ({ data, next_cursor });

type Query = { key_id?: string; outcome?: string; status?: string; cursor?: string; limit?: number };

const body = (text: string) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });

/** A Blob's text (jsdom's Blob has no `text()`). */
const readBlob = (blob: Blob) =>
  new Promise<string>((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsText(blob);
  });

/** The table's body rows (the header row left out). */
const bodyRows = () =>
  within(screen.getByRole('table', { name: 'Recent requests' }))
    .getAllByRole('row')
    .slice(1);

const blobUrls = { create: URL.createObjectURL, revoke: URL.revokeObjectURL };
afterEach(() => {
  vi.restoreAllMocks();
  URL.createObjectURL = blobUrls.create;
  URL.revokeObjectURL = blobUrls.revoke;
});

describe('recent requests', () => {
  it('shows each request newest first: time, method, endpoint, status by class, outcome, response time, IP, tags', async () => {
    const listUsageEvents = vi
      .fn()
      .mockResolvedValue(
        page([
          row('3', { status_code: 503, outcome: 'VALID', response_time_ms: 1234, tags: ['route:/v1/companies', 'region:eu', 'tier:pro'] }),
          row('2', { method: 'POST', status_code: 429, outcome: 'RATE_LIMITED', endpoint: '/v1/invoices' }),
          row('1', { endpoint: null, method: null, status_code: null, response_time_ms: null, ip_address: null, tags: [] }),
        ]),
      );
    renderSignedIn(<RecentRequests keyId="k1" keyName="Billing service" />, { listUsageEvents });

    await screen.findByRole('table', { name: 'Recent requests' });
    const [first, second, third] = bodyRows();
    expect(bodyRows()).toHaveLength(3);
    expect(within(first as HTMLElement).getByText('/v1/companies/3')).toBeInTheDocument();
    expect(
      within(first as HTMLElement)
        .getByText('503')
        .closest('[data-status-class]'),
    ).toHaveAttribute('data-status-class', '5xx');
    expect(within(first as HTMLElement).getByText('1.23 s')).toBeInTheDocument();
    expect(within(first as HTMLElement).getByText('route:/v1/companies')).toBeInTheDocument();
    expect(within(first as HTMLElement).getByText('+1')).toBeInTheDocument();
    expect(within(first as HTMLElement).getByText('203.0.113.7')).toBeInTheDocument();
    expect(within(first as HTMLElement).getByRole('time')).toHaveAttribute('dateTime', '2026-03-10T14:05:09.120Z');

    expect(within(second as HTMLElement).getByText('POST')).toBeInTheDocument();
    expect(
      within(second as HTMLElement)
        .getByText('429')
        .closest('[data-status-class]'),
    ).toHaveAttribute('data-status-class', '4xx');
    expect(within(second as HTMLElement).getByText('Rate limited')).toBeInTheDocument();
    expect(within(second as HTMLElement).getByText('12 ms')).toBeInTheDocument();

    // A row reported without the request's details: no method, path or status.
    expect(within(third as HTMLElement).getByText('No endpoint')).toBeInTheDocument();
    expect(within(third as HTMLElement).getByText('Valid')).toBeInTheDocument();

    expect(listUsageEvents).toHaveBeenCalledExactlyOnceWith({ key_id: 'k1', limit: REQUESTS_PAGE_SIZE });
    expect(screen.getByText('3 requests')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();
  });

  it('appends the next page with Load more, along next_cursor', async () => {
    const user = userEvent.setup();
    const listUsageEvents = vi.fn(async (query: Query) =>
      query.cursor === 'c1' ? page([row('2'), row('1')]) : page([row('4'), row('3')], 'c1'),
    );
    renderSignedIn(<RecentRequests keyId="k1" keyName="Billing service" />, { listUsageEvents });

    await screen.findByRole('table', { name: 'Recent requests' });
    expect(bodyRows()).toHaveLength(2);
    expect(screen.getByText('2 requests shown')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Load more' }));

    await waitFor(() => expect(bodyRows()).toHaveLength(4));
    expect(bodyRows().map((r) => r.getAttribute('data-row-id'))).toEqual(['4', '3', '2', '1']);
    expect(listUsageEvents).toHaveBeenLastCalledWith({ key_id: 'k1', limit: REQUESTS_PAGE_SIZE, cursor: 'c1' });
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();
    expect(screen.getByText('4 requests')).toBeInTheDocument();
  });

  it('asks again from the first page when the outcome or the status class changes', async () => {
    const user = userEvent.setup();
    const listUsageEvents = vi.fn(async (query: Query) => {
      if (query.status === '5xx') return page([row('9', { status_code: 502, outcome: 'USAGE_EXCEEDED' })]);
      if (query.outcome) return page([row('8', { status_code: 429, outcome: 'RATE_LIMITED' })]);
      return page([row('7'), row('6')], 'c1');
    });
    renderSignedIn(<RecentRequests keyId="k1" keyName="Billing service" />, { listUsageEvents });
    await screen.findByRole('table', { name: 'Recent requests' });

    await user.click(screen.getByRole('combobox', { name: 'Outcome' }));
    await user.click(await screen.findByRole('option', { name: 'Refused (any reason)' }));
    await waitFor(() => expect(bodyRows().map((r) => r.getAttribute('data-row-id'))).toEqual(['8']));
    expect(listUsageEvents).toHaveBeenLastCalledWith({ key_id: 'k1', limit: REQUESTS_PAGE_SIZE, outcome: REFUSED });
    expect(REFUSED.split(',')).not.toContain('VALID');
    expect(REFUSED.split(',')).toContain('RATE_LIMITED');

    await user.click(screen.getByRole('combobox', { name: 'Status' }));
    await user.click(await screen.findByRole('option', { name: '5xx server error' }));
    await waitFor(() => expect(bodyRows().map((r) => r.getAttribute('data-row-id'))).toEqual(['9']));
    expect(listUsageEvents).toHaveBeenLastCalledWith({ key_id: 'k1', limit: REQUESTS_PAGE_SIZE, outcome: REFUSED, status: '5xx' });
  });

  it('offers to look further when the newest rows hold no match, and says so plainly when there is none', async () => {
    const user = userEvent.setup();
    // A filter no index serves may answer an empty page with a cursor: older rows may still match.
    const listUsageEvents = vi.fn(async (query: Query) => (query.cursor ? page([]) : page([], 'c1')));
    renderSignedIn(<RecentRequests keyId="k1" keyName="Billing service" />, { listUsageEvents });

    expect(await screen.findByText('No match among the newest requests')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Search older requests' }));
    expect(await screen.findByText('No requests yet')).toBeInTheDocument();
    expect(listUsageEvents).toHaveBeenLastCalledWith({ key_id: 'k1', limit: REQUESTS_PAGE_SIZE, cursor: 'c1' });
  });

  it('downloads the same selection as CSV through the client, saved from a Blob URL', async () => {
    const user = userEvent.setup();
    const csv = 'id,created_at,key_id,outcome\r\n8,2026-03-10T14:05:09.120Z,k1,RATE_LIMITED\r\n';
    const exportUsageEvents = vi.fn().mockResolvedValue(body(csv));
    const listUsageEvents = vi.fn().mockResolvedValue(page([row('8', { outcome: 'RATE_LIMITED' })]));
    const saved: Blob[] = [];
    // jsdom has no Blob URLs nor downloads: the URL is recorded, the click does not navigate.
    URL.createObjectURL = vi.fn((blob: Blob) => {
      saved.push(blob);
      return 'blob:http://localhost/export';
    });
    URL.revokeObjectURL = vi.fn();
    const click = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => {});
    renderSignedIn(<RecentRequests keyId="k1" keyName="Billing service" />, { listUsageEvents, exportUsageEvents });
    await screen.findByRole('table', { name: 'Recent requests' });

    await user.click(screen.getByRole('combobox', { name: 'Outcome' }));
    await user.click(await screen.findByRole('option', { name: 'Rate limited' }));
    await waitFor(() => expect(listUsageEvents).toHaveBeenLastCalledWith(expect.objectContaining({ outcome: 'RATE_LIMITED' })));
    await user.click(screen.getByRole('button', { name: 'Download CSV' }));

    await waitFor(() => expect(click).toHaveBeenCalledOnce());
    expect(exportUsageEvents).toHaveBeenCalledExactlyOnceWith({ key_id: 'k1', outcome: 'RATE_LIMITED', format: 'csv' });
    const link = click.mock.contexts[0] as HTMLAnchorElement;
    expect(link.download).toMatch(/^usage-billing-service-\d{4}-\d{2}-\d{2}\.csv$/);
    expect(link.href).toBe('blob:http://localhost/export');
    const [file] = saved;
    expect(saved).toHaveLength(1);
    expect(file?.type).toBe('text/csv;charset=utf-8');
    expect(file && (await readBlob(file))).toBe(csv);
  });

  it('says why when the export fails, and keeps the table', async () => {
    const user = userEvent.setup();
    const exportUsageEvents = vi.fn().mockRejectedValue(new Error('Network down'));
    const listUsageEvents = vi.fn().mockResolvedValue(page([row('1')]));
    renderSignedIn(<RecentRequests keyId="k1" keyName="Billing service" />, { listUsageEvents, exportUsageEvents });
    await screen.findByRole('table', { name: 'Recent requests' });
    await user.click(screen.getByRole('button', { name: 'Download CSV' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('The CSV could not be downloaded: Network down');
    expect(bodyRows()).toHaveLength(1);
  });
});
