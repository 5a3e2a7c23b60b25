import { KeywardError } from '@keyward/sdk';
import { screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { openSession, SignInError } from '../../api/session';
import { renderUi } from '../../test/render';
import { SignInPage } from './SignInPage';

const unauthorized = () => new KeywardError({ type: 'about:blank', title: 'Unauthorized', status: 401, code: 'UNAUTHORIZED' });

describe('SignInPage', () => {
  it('signs in with what was typed', async () => {
    const user = userEvent.setup();
    const onSignIn = vi.fn().mockResolvedValue(undefined);
    renderUi(<SignInPage onSignIn={onSignIn} />);
    await user.type(screen.getByLabelText('API key or token'), 'kw_admin');
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(onSignIn).toHaveBeenCalledWith('kw_admin');
  });

  it('says on the form that a wrong credential was not accepted', async () => {
    const user = userEvent.setup();
    renderUi(<SignInPage onSignIn={vi.fn().mockRejectedValue(unauthorized())} />);
    await user.type(screen.getByLabelText('API key or token'), 'kw_wrong{Enter}');
    expect(await screen.findByRole('alert')).toHaveTextContent('not accepted');
  });

  it('asks for a credential when the field is empty', async () => {
    const user = userEvent.setup();
    const onSignIn = vi.fn();
    renderUi(<SignInPage onSignIn={onSignIn} />);
    await user.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Enter an API key or a user token');
    expect(onSignIn).not.toHaveBeenCalled();
  });
});

describe('openSession', () => {
  const clientWith = (methods: Record<string, unknown>) => methods as never;

  it('makes an admin key an admin session', async () => {
    const client = clientWith({ currentKey: async () => ({ name: 'root', is_admin: true, scopes: [] }) });
    expect(await openSession('kw_x', client)).toMatchObject({ role: 'admin', canWrite: true, label: 'root' });
  });

  it('makes a keyward:keys:read key a read-only manager', async () => {
    const client = clientWith({ currentKey: async () => ({ name: 'ci', is_admin: false, scopes: ['keyward:keys:read'] }) });
    expect(await openSession('kw_x', client)).toMatchObject({ role: 'manager', canWrite: false });
  });

  it('refuses a key without a management scope, saying why', async () => {
    const client = clientWith({ currentKey: async () => ({ name: 'app', is_admin: false, scopes: ['orders:read'] }) });
    await expect(openSession('kw_x', client)).rejects.toThrow(SignInError);
    await expect(openSession('kw_x', client)).rejects.toThrow(/cannot manage keys/);
  });

  it('takes a JWT as a user', async () => {
    const client = clientWith({ currentUser: async () => ({ external_id: 'ada', email: null, tier: 'free' }) });
    expect(await openSession('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.sig', client)).toMatchObject({ role: 'user', label: 'ada' });
  });
});
