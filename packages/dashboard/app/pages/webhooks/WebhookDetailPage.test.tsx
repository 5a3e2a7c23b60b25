import { KeywardError } from '@keyward/sdk';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { Route, Routes } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import type { WebhookDelivery } from '../../api/queries';
import { renderSignedIn } from '../../test/render';
import { delivery, webhook } from './fixtures';
import { WebhookDetailPage } from './WebhookDetailPage';

const SECRET = 'whsec_NewSecretNewSecretNewSecret00';

const page = (data: WebhookDelivery[], next_cursor: string | null = null) => ({ data, next_cursor });

const FAILED = delivery({
  id: 'd2',
  event_id: 'e2',
  event_type: 'key.leaked',
  status: 'dead',
  attempts: 2,
  next_attempt_at: null,
  last_attempt_at: '2026-03-10T14:10:00.000Z',
  last_status_code: 500,
  last_error: 'HTTP 500',
  attempt_log: [
    { attempted_at: '2026-03-10T14:05:00.000Z', duration_ms: 1234, status_code: null, error: 'connect ECONNREFUSED 203.0.113.9:443' },
    { attempted_at: '2026-03-10T14:10:00.000Z', duration_ms: 84, status_code: 500, error: 'HTTP 500' },
  ],
});

function clientFor(fields: Parameters<typeof webhook>[0] = {}, deliveries: WebhookDelivery[] = [delivery(), FAILED]) {
  return {
    getWebhook: vi.fn().mockResolvedValue(webhook(fields)),
    listWebhooks: vi.fn().mockResolvedValue({ data: [], next_cursor: null }),
    listWebhookDeliveries: vi.fn().mockResolvedValue(page(deliveries)),
    retryWebhookDelivery: vi.fn(),
    updateWebhook: vi.fn(),
    rollWebhookSecret: vi.fn(),
    deleteWebhook: vi.fn().mockResolvedValue(undefined),
  };
}

function renderDetail(client: ReturnType<typeof clientFor>) {
  return renderSignedIn(
    <Routes>
      <Route path="/webhooks/:id" element={<WebhookDetailPage />} />
      <Route path="/webhooks" element={<p>Every webhook</p>} />
    </Routes>,
    client,
    'admin',
    '/webhooks/w1',
  );
}

// The first render of a test file (Mantine, the page, its queries) takes a while in jsdom.
const deliveriesTable = () => screen.findByRole('table', { name: 'Deliveries' }, { timeout: 5_000 });

const deliveryRow = (id: string) => document.querySelector(`[data-delivery-id="${id}"]`) as HTMLElement;

describe('webhook page: deliveries', () => {
  it('shows each delivery: event type, status, attempts, last status code, next and last attempt', async () => {
    const client = clientFor({}, [
      delivery(),
      FAILED,
      delivery({
        id: 'd3',
        status: 'failed',
        attempts: 1,
        next_attempt_at: '2099-01-01T00:00:00.000Z',
        last_status_code: 503,
        event_type: 'key.created',
      }),
    ]);
    renderDetail(client);

    const table = await deliveriesTable();
    expect(within(table).getAllByRole('row')).toHaveLength(4);
    const ok = deliveryRow('d1');
    expect(within(ok).getByText('key.revoked')).toBeInTheDocument();
    expect(within(ok).getByText('Succeeded').closest('[data-delivery-status]')).toHaveAttribute('data-delivery-status', 'succeeded');
    expect(within(ok).getByText('200').closest('[data-status-class]')).toHaveAttribute('data-status-class', '2xx');
    const dead = deliveryRow('d2');
    expect(within(dead).getByText('Dead')).toBeInTheDocument();
    expect(within(dead).getByText('2')).toBeInTheDocument();
    expect(within(dead).getByText('500')).toBeInTheDocument();
    const due = deliveryRow('d3');
    expect(within(due).getByText('Failed')).toBeInTheDocument();
    expect(
      within(due)
        .getAllByRole('time')
        .map((t) => t.getAttribute('dateTime')),
    ).toContain('2099-01-01T00:00:00.000Z');
    expect(client.listWebhookDeliveries).toHaveBeenCalledWith('w1', { limit: 25 });
  });

  it('opens a delivery on its attempts: time, status, duration, error', async () => {
    const user = userEvent.setup();
    renderDetail(clientFor());
    await deliveriesTable();
    expect(screen.queryByRole('table', { name: 'Attempts of the key.leaked delivery' })).not.toBeInTheDocument();

    const toggle = screen.getByRole('button', { name: 'Show attempts of the key.leaked delivery' });
    expect(toggle).toHaveAttribute('aria-expanded', 'false');
    await user.click(toggle);
    const attempts = screen.getByRole('table', { name: 'Attempts of the key.leaked delivery' });
    const [first, second] = within(attempts).getAllByRole('row').slice(1) as [HTMLElement, HTMLElement];
    expect(within(attempts).getAllByRole('row')).toHaveLength(3);
    expect(within(first).getByText('connect ECONNREFUSED 203.0.113.9:443')).toBeInTheDocument();
    expect(within(first).getByText('1.23 s')).toBeInTheDocument();
    expect(within(first).getByRole('time')).toHaveAttribute('dateTime', '2026-03-10T14:05:00.000Z');
    expect(within(second).getByText('500')).toBeInTheDocument();
    expect(within(second).getByText('84 ms')).toBeInTheDocument();
    expect(within(second).getByText('HTTP 500')).toBeInTheDocument();
    expect(screen.getByText('webhook-id e2')).toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Hide attempts of the key.leaked delivery' }));
    expect(screen.queryByRole('table', { name: 'Attempts of the key.leaked delivery' })).not.toBeInTheDocument();
  });

  it('retries a delivery through the client, and the row shows it due again', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    const due = { ...FAILED, status: 'pending' as const, next_attempt_at: '2026-03-10T15:00:00.000Z' };
    client.retryWebhookDelivery.mockResolvedValue(due);
    renderDetail(client);
    await deliveriesTable();

    client.listWebhookDeliveries.mockResolvedValue(page([delivery(), due]));
    await user.click(screen.getByRole('button', { name: 'Retry key.leaked delivery' }));
    expect(client.retryWebhookDelivery).toHaveBeenCalledWith('w1', 'd2');
    await waitFor(() => expect(within(deliveryRow('d2')).getByText('Pending')).toBeInTheDocument());
    expect(within(deliveryRow('d2')).queryByText('Dead')).not.toBeInTheDocument();
    // The list is read again for the delivery's outcome.
    await waitFor(() => expect(client.listWebhookDeliveries.mock.calls.length).toBeGreaterThanOrEqual(2));
  });

  it('asks the server for the status chosen, from the first page', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    client.listWebhookDeliveries.mockImplementation(async (_id: string, query: { status?: string; cursor?: string }) => {
      if (query.status === 'dead') return page([FAILED]);
      return query.cursor ? page([delivery({ id: 'd0' })]) : page([delivery(), FAILED], 'c2');
    });
    renderDetail(client);
    await deliveriesTable();
    await user.click(screen.getByRole('button', { name: 'Next' }));
    await waitFor(() => expect(client.listWebhookDeliveries).toHaveBeenLastCalledWith('w1', { limit: 25, cursor: 'c2' }));

    await user.click(screen.getByRole('combobox', { name: 'Status' }));
    await user.click(await screen.findByRole('option', { name: 'Dead' }));
    await waitFor(() => expect(client.listWebhookDeliveries).toHaveBeenLastCalledWith('w1', { limit: 25, status: 'dead' }));
    await waitFor(() => expect(within(screen.getByRole('table', { name: 'Deliveries' })).getAllByRole('row')).toHaveLength(2));
    expect(deliveryRow('d2')).toBeInTheDocument();
  });

  it('says why a retry was refused', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    client.retryWebhookDelivery.mockRejectedValue(
      new KeywardError({ type: 'about:blank', title: 'The webhook is disabled; enable it first', status: 409, code: 'WEBHOOK_DISABLED' }),
    );
    const { notifications } = await import('@mantine/notifications');
    const show = vi.spyOn(notifications, 'show');
    renderDetail(client);
    await deliveriesTable();
    await user.click(screen.getByRole('button', { name: 'Retry key.leaked delivery' }));
    await waitFor(() =>
      expect(show).toHaveBeenCalledWith(expect.objectContaining({ color: 'red', message: 'The webhook is disabled; enable it first' })),
    );
  });
});

describe('webhook page: the webhook', () => {
  it('shows a disabled webhook’s reason, and enables it', async () => {
    const user = userEvent.setup();
    const reason = 'every attempt failed for 28 hours (8 in a row; last: HTTP 500)';
    const client = clientFor({ enabled: false, disabled_reason: reason });
    client.updateWebhook.mockResolvedValue(webhook());
    renderDetail(client);

    await screen.findByRole('heading', { level: 1, name: 'hooks.example.com' });
    expect(screen.getAllByText('Disabled').length).toBeGreaterThan(0);
    expect(screen.getByText(/This webhook is disabled/).closest('[role="alert"], .mantine-Alert-root')).toHaveTextContent(reason);
    await user.click(screen.getByRole('button', { name: 'Enable' }));
    expect(client.updateWebhook).toHaveBeenCalledWith('w1', { enabled: true });
    expect(await screen.findByRole('button', { name: 'Disable' })).toBeInTheDocument();
    expect(screen.queryByText(/This webhook is disabled/)).not.toBeInTheDocument();
  });

  it('disables it after a confirmation', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    client.updateWebhook.mockResolvedValue(webhook({ enabled: false, disabled_reason: 'disabled by an admin' }));
    renderDetail(client);
    await user.click(await screen.findByRole('button', { name: 'Disable' }));
    const confirm = screen.getByRole('dialog', { name: 'Disable the webhook to hooks.example.com?' });
    expect(confirm).toHaveTextContent('dead');
    await user.click(within(confirm).getByRole('button', { name: 'Disable' }));
    expect(client.updateWebhook).toHaveBeenCalledWith('w1', { enabled: false });
    expect(await screen.findByText(/disabled by an admin/, { selector: '.mantine-Alert-message' })).toBeInTheDocument();
  });

  it('edits the URL, description and event types, sending only what changed', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    client.updateWebhook.mockImplementation(async (_id: string, body: Record<string, unknown>) => webhook({ ...body }));
    renderDetail(client);
    await user.click(await screen.findByRole('button', { name: 'Edit' }));
    const form = screen.getByRole('form', { name: 'Edit webhook' });
    expect(within(form).getByRole('radio', { name: 'Chosen events' })).toBeChecked();
    const url = within(form).getByLabelText(/Endpoint URL/);
    await user.clear(url);
    await user.paste('https://hooks.example.com/v2');
    await user.clear(within(form).getByLabelText('Description'));
    await user.click(within(form).getByRole('radio', { name: 'All events' }));
    await user.click(within(form).getByRole('button', { name: 'Save changes' }));

    await waitFor(() =>
      expect(client.updateWebhook).toHaveBeenCalledWith('w1', {
        url: 'https://hooks.example.com/v2',
        description: null,
        event_types: ['*'],
      }),
    );
    expect(await screen.findByText('https://hooks.example.com/v2')).toBeInTheDocument();
    expect(screen.getByText('All events')).toBeInTheDocument();
  });

  it('rolls the secret after a confirmation and shows the new one once, never caching it', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    client.rollWebhookSecret.mockResolvedValue({ ...webhook(), secret: SECRET });
    const { queryClient } = renderDetail(client);
    await user.click(await screen.findByRole('button', { name: 'Roll secret' }));
    const confirm = screen.getByRole('dialog', { name: 'Roll the signing secret?' });
    await user.click(within(confirm).getByRole('button', { name: 'Roll secret' }));

    const reveal = await screen.findByRole('dialog', { name: 'Webhook secret rolled: hooks.example.com' });
    expect(client.rollWebhookSecret).toHaveBeenCalledWith('w1');
    expect(within(reveal).getByLabelText('Signing secret')).toHaveValue(SECRET);
    expect(
      JSON.stringify(
        queryClient
          .getQueryCache()
          .getAll()
          .map((q) => q.state.data),
      ),
    ).not.toContain(SECRET);
    expect(
      JSON.stringify(
        queryClient
          .getMutationCache()
          .getAll()
          .map((m) => m.state.data),
      ),
    ).not.toContain(SECRET);
    await user.click(within(reveal).getByRole('checkbox', { name: /I have copied this secret/ }));
    await user.click(within(reveal).getByRole('button', { name: 'Done' }));
    await waitFor(() => expect(screen.queryByDisplayValue(SECRET)).not.toBeInTheDocument());
  });

  it('deletes it after a confirmation, back to the list', async () => {
    const user = userEvent.setup();
    const client = clientFor();
    renderDetail(client);
    await user.click(await screen.findByRole('button', { name: 'Delete' }));
    const confirm = screen.getByRole('dialog', { name: 'Delete the webhook to hooks.example.com?' });
    await user.click(within(confirm).getByRole('button', { name: 'Delete' }));
    expect(client.deleteWebhook).toHaveBeenCalledWith('w1');
    expect(await screen.findByText('Every webhook')).toBeInTheDocument();
  });

  it('says so when there is no such webhook', async () => {
    const client = clientFor();
    client.getWebhook.mockRejectedValue(
      new KeywardError({ type: 'about:blank', title: 'No such webhook', status: 404, code: 'WEBHOOK_NOT_FOUND' }),
    );
    renderDetail(client);
    expect(await screen.findByText('No such webhook')).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Back to webhooks' })).toHaveAttribute('href', '/webhooks');
  });
});
