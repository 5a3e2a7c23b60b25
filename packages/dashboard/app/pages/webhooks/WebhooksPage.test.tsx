import { KeywardError } from '@keyward/sdk';
import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { Route, Routes } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import type { CreatedWebhook } from '../../api/queries';
import { renderSignedIn } from '../../test/render';
import { webhook } from './fixtures';
import { WebhooksPage } from './WebhooksPage';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function renderPage(client: Record<string, unknown>) {
  return renderSignedIn(
    <Routes>
      <Route path="/webhooks" element={<WebhooksPage />} />
      <Route path="/webhooks/:id" element={<p>The webhook’s page</p>} />
    </Routes>,
    client,
    'admin',
    '/webhooks',
  );
}

const bodyRows = () =>
  within(screen.getByRole('table', { name: 'Webhooks' }))
    .getAllByRole('row')
    .slice(1);

describe('webhooks page', () => {
  it('lists each webhook: URL, event types as chips or all events, enabled or disabled with the reason, created', async () => {
    const listWebhooks = vi.fn().mockResolvedValue({
      data: [
        webhook(),
        webhook({
          id: 'w2',
          url: 'https://ops.example.com/all',
          description: null,
          event_types: ['*'],
          enabled: false,
          disabled_reason: 'every attempt failed for 28 hours (8 in a row; last: HTTP 500)',
        }),
      ],
      next_cursor: null,
    });
    renderPage({ listWebhooks });

    await screen.findByRole('table', { name: 'Webhooks' });
    const [first, second] = bodyRows() as [HTMLElement, HTMLElement];
    expect(bodyRows()).toHaveLength(2);
    expect(within(first).getByRole('link', { name: 'https://hooks.example.com/keyward' })).toHaveAttribute('href', '/webhooks/w1');
    expect(within(first).getByText('Security alerts')).toBeInTheDocument();
    expect(within(first).getByText('key.leaked')).toBeInTheDocument();
    expect(within(first).getByText('key.revoked')).toBeInTheDocument();
    expect(within(first).getByText('Enabled')).toBeInTheDocument();
    expect(within(second).getByText('All events')).toBeInTheDocument();
    expect(within(second).getByText('Disabled')).toBeInTheDocument();
    expect(within(second).getByText(/every attempt failed for 28 hours/)).toBeInTheDocument();
    expect(within(first).getByRole('time')).toHaveAttribute('dateTime', '2026-03-01T09:30:00.000Z');
    expect(listWebhooks).toHaveBeenCalledWith({ limit: 50 });
  });

  it('says when there is none yet, and offers to create one', async () => {
    renderPage({ listWebhooks: vi.fn().mockResolvedValue({ data: [], next_cursor: null }) });
    expect(await screen.findByText('No webhooks yet')).toBeInTheDocument();
    expect(screen.getAllByRole('button', { name: 'Create webhook' })).toHaveLength(2);
  });

  it('creates a webhook for chosen events, then shows its secret once and opens its page', async () => {
    const user = userEvent.setup();
    const created: CreatedWebhook = {
      ...webhook({ id: 'w9', event_types: ['key.revoked', 'key.leaked'], description: 'Alerts' }),
      secret: SECRET,
    };
    const createWebhook = vi.fn().mockResolvedValue(created);
    const listWebhooks = vi.fn().mockResolvedValue({ data: [], next_cursor: null });
    const { queryClient } = renderPage({ listWebhooks, createWebhook });

    await screen.findByText('No webhooks yet');
    await user.click(screen.getAllByRole('button', { name: 'Create webhook' })[0] as HTMLElement);
    const form = screen.getByRole('dialog', { name: 'Create webhook' });
    await user.type(within(form).getByLabelText(/Endpoint URL/), 'https://hooks.example.com/keyward');
    await user.type(within(form).getByLabelText('Description'), 'Alerts');
    await user.click(within(form).getByRole('radio', { name: 'Chosen events' }));
    await user.click(within(form).getByRole('combobox', { name: 'Event types' }));
    await user.click(await screen.findByRole('option', { name: /^key\.revoked/ }));
    await user.click(await screen.findByRole('option', { name: /^key\.leaked/ }));
    await user.click(within(form).getByRole('button', { name: 'Create webhook' }));

    // Sent in the catalogue's order, whatever the order picked.
    await waitFor(() =>
      expect(createWebhook).toHaveBeenCalledWith({
        url: 'https://hooks.example.com/keyward',
        description: 'Alerts',
        event_types: ['key.revoked', 'key.leaked'],
        enabled: true,
      }),
    );
    const reveal = await screen.findByRole('dialog', { name: 'Webhook created: hooks.example.com' });
    expect(within(reveal).getByLabelText('Signing secret')).toHaveValue(SECRET);
    expect(within(reveal).getByText(/will not be shown again/)).toBeInTheDocument();
    // The secret is in the dialog only, never in the query cache.
    expect(
      JSON.stringify(
        queryClient
          .getQueryCache()
          .getAll()
          .map((q) => q.state.data),
      ),
    ).not.toContain(SECRET);

    const done = within(reveal).getByRole('button', { name: 'Done' });
    expect(done).toBeDisabled();
    await user.click(within(reveal).getByRole('checkbox', { name: /I have copied this secret/ }));
    await user.click(done);
    expect(await screen.findByText('The webhook’s page')).toBeInTheDocument();
    expect(screen.queryByDisplayValue(SECRET)).not.toBeInTheDocument();
  });

  it('shows the server’s refusal of a private URL on the URL field', async () => {
    const user = userEvent.setup();
    const message = '127.0.0.1 is not a public address; set WEBHOOK_ALLOW_PRIVATE=true to allow private and loopback addresses';
    const refusal = new KeywardError({
      type: 'about:blank',
      title: 'The webhook URL points at an address deliveries may not go to',
      status: 400,
      code: 'WEBHOOK_URL_NOT_ALLOWED',
      detail: `body.url: ${message}`,
      errors: [{ field: 'body.url', message }],
    });
    const createWebhook = vi.fn().mockRejectedValue(refusal);
    renderPage({ listWebhooks: vi.fn().mockResolvedValue({ data: [], next_cursor: null }), createWebhook });

    await screen.findByText('No webhooks yet');
    await user.click(screen.getAllByRole('button', { name: 'Create webhook' })[0] as HTMLElement);
    const form = screen.getByRole('dialog', { name: 'Create webhook' });
    const url = within(form).getByLabelText(/Endpoint URL/);
    await user.type(url, 'http://127.0.0.1:9000/hooks');
    await user.click(within(form).getByRole('button', { name: 'Create webhook' }));

    await waitFor(() => expect(url).toHaveAttribute('aria-invalid', 'true'));
    expect(url).toHaveAccessibleDescription(expect.stringContaining('127.0.0.1 is not a public address'));
    expect(within(form).queryByRole('alert')).not.toBeInTheDocument();
    expect(screen.queryByRole('dialog', { name: /Webhook created/ })).not.toBeInTheDocument();
    // Editing the URL clears the refusal.
    await user.type(url, 'x');
    expect(url).not.toHaveAttribute('aria-invalid', 'true');
  });

  it('checks the form before sending: a URL, and at least one chosen event', async () => {
    const user = userEvent.setup();
    const createWebhook = vi.fn();
    renderPage({ listWebhooks: vi.fn().mockResolvedValue({ data: [], next_cursor: null }), createWebhook });
    await screen.findByText('No webhooks yet');
    await user.click(screen.getAllByRole('button', { name: 'Create webhook' })[0] as HTMLElement);
    const form = screen.getByRole('dialog', { name: 'Create webhook' });
    await user.type(within(form).getByLabelText(/Endpoint URL/), 'hooks.example.com');
    await user.click(within(form).getByRole('radio', { name: 'Chosen events' }));
    await user.click(within(form).getByRole('button', { name: 'Create webhook' }));
    expect(within(form).getByLabelText(/Endpoint URL/)).toHaveAccessibleDescription(expect.stringContaining('An http:// or https:// URL'));
    expect(within(form).getByText('Choose at least one event, or send all events')).toBeInTheDocument();
    expect(createWebhook).not.toHaveBeenCalled();
  });
});
