import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { renderUi } from '../test/render';
import { RevealKeyDialog } from './RevealKeyDialog';

describe('RevealKeyDialog', () => {
  const revealed = { key: 'kw_abcdefghijklmnopqrstuvwxyz0123456789', name: 'billing' };

  it('shows the key once, in a monospace field, and says it will not be shown again', () => {
    renderUi(<RevealKeyDialog revealed={revealed} onClose={() => {}} />);
    expect(screen.getByRole('dialog', { name: 'Key created: billing' })).toBeInTheDocument();
    expect(screen.getByLabelText('API key')).toHaveValue(revealed.key);
    expect(screen.getByText(/will not be shown again/)).toBeInTheDocument();
  });

  it('copies the key with Copy', async () => {
    const user = userEvent.setup();
    renderUi(<RevealKeyDialog revealed={revealed} onClose={() => {}} />);
    await user.click(screen.getByRole('button', { name: 'Copy' }));
    expect(await navigator.clipboard.readText()).toBe(revealed.key);
    expect(screen.getByRole('button', { name: 'Copy' })).toHaveTextContent('Copied');
  });

  it('closes only after the user confirms they stored the key', async () => {
    const user = userEvent.setup();
    const onClose = vi.fn();
    renderUi(<RevealKeyDialog revealed={revealed} onClose={onClose} />);
    const done = screen.getByRole('button', { name: 'Done' });
    expect(done).toBeDisabled();
    await user.keyboard('{Escape}');
    expect(onClose).not.toHaveBeenCalled();
    await user.click(screen.getByRole('checkbox', { name: /I have copied this key/ }));
    await user.click(done);
    expect(onClose).toHaveBeenCalledOnce();
  });

  it('shows a webhook’s signing secret in the words of a secret', () => {
    renderUi(<RevealKeyDialog revealed={{ key: 'whsec_abc', name: 'hooks.example.com', kind: 'webhook-secret' }} onClose={() => {}} />);
    const dialog = screen.getByRole('dialog', { name: 'Webhook created: hooks.example.com' });
    expect(dialog).toHaveTextContent('Copy this secret now');
    expect(screen.getByLabelText('Signing secret')).toHaveValue('whsec_abc');
    expect(screen.getByRole('checkbox', { name: 'I have copied this secret and stored it somewhere safe' })).not.toBeChecked();
  });
});
