import { KeywardError } from '@keyward/sdk';
import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { renderUi } from '../../test/render';
import { CreateKeyDialog } from './CreateKeyDialog';
import { createKeyBody, emptyCreateKeyValues, validateCreateKey } from './createKeyForm';

const created = { id: 'k1', key: 'kw_secret', name: 'billing' } as never;

describe('CreateKeyDialog', () => {
  it('sends name, description and scopes, then hands the created key over', async () => {
    const user = userEvent.setup();
    const onSubmit = vi.fn().mockResolvedValue(created);
    const onCreated = vi.fn();
    renderUi(<CreateKeyDialog opened mode="admin" onClose={() => {}} onSubmit={onSubmit} onCreated={onCreated} />);
    await user.type(screen.getByLabelText('Name'), 'billing');
    await user.type(screen.getByLabelText('Description'), 'invoices');
    await user.type(screen.getByRole('combobox', { name: 'Scopes' }), 'invoices:read{Enter}invoices:write{Enter}');
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    await waitFor(() => expect(onCreated).toHaveBeenCalledWith(created));
    expect(onSubmit).toHaveBeenCalledWith({ name: 'billing', description: 'invoices', scopes: ['invoices:read', 'invoices:write'] });
  });

  it('refuses metadata that is not a JSON object, and sends nothing', async () => {
    const user = userEvent.setup();
    const onSubmit = vi.fn();
    renderUi(<CreateKeyDialog opened mode="admin" onClose={() => {}} onSubmit={onSubmit} onCreated={() => {}} />);
    await user.click(screen.getByRole('button', { name: /Limits, metadata and more/ }));
    const metadata = screen.getByLabelText('Metadata');
    await user.click(metadata);
    await user.paste('[1, 2]');
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    expect(await screen.findByText(/Metadata must be a JSON object/)).toBeInTheDocument();
    expect(onSubmit).not.toHaveBeenCalled();
  });

  it('says on the form why the server refused', async () => {
    const user = userEvent.setup();
    const refusal = new KeywardError({
      type: 'about:blank',
      title: 'Bad request',
      status: 400,
      code: 'KEY_LIMIT_REACHED',
      detail: 'The free tier allows at most 3 keys',
    });
    renderUi(<CreateKeyDialog opened mode="user" onClose={() => {}} onSubmit={vi.fn().mockRejectedValue(refusal)} onCreated={() => {}} />);
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('The free tier allows at most 3 keys');
  });

  it('shows limits, owner, prefix and admin to an admin only', async () => {
    const user = userEvent.setup();
    renderUi(<CreateKeyDialog opened mode="user" onClose={() => {}} onSubmit={vi.fn()} onCreated={() => {}} />);
    await user.click(screen.getByRole('button', { name: 'Metadata' }));
    expect(screen.queryByLabelText('Rate limit')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Admin key')).not.toBeInTheDocument();
    expect(screen.getByRole('combobox', { name: 'Expires' })).toBeInTheDocument();
  });
});

describe('the create-key form', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('turns an expiry preset, limits and a quota with refill into the request body', () => {
    const body = createKeyBody(
      {
        ...emptyCreateKeyValues('u1'),
        expires: '30d',
        rateLimit: 100,
        rateWindow: '60',
        quota: 1000,
        refillInterval: 'month',
        refillAmount: 1000,
        prefix: 'sk_live',
        metadata: '{"team":"billing"}',
      },
      now,
    );
    expect(body).toEqual({
      expires_at: '2026-01-31T00:00:00.000Z',
      rate_limit: { limit: 100, window_seconds: 60 },
      quota: { remaining: 1000, refill: { amount: 1000, interval: 'month' } },
      user_id: 'u1',
      prefix: 'sk_live',
      metadata: { team: 'billing' },
    });
  });
  it('refuses a past custom date, a bad prefix and a refill without a quota', () => {
    const errors = validateCreateKey(
      { ...emptyCreateKeyValues(), expires: 'custom', expiresAt: '2020-01-01T00:00', prefix: 'Bad-Prefix', refillInterval: 'day' },
      now,
    );
    expect(Object.keys(errors).sort()).toEqual(['expiresAt', 'prefix', 'quota', 'refillAmount']);
  });
});
