import { cleanup, screen, within } from '@testing-library/react';
import { Route, Routes } from 'react-router';
import { describe, expect, it } from 'vitest';
import type { Role } from '../api/session';
import { renderSignedIn } from '../test/render';
import { Layout } from './Layout';

function navLinks(role: Role): string[] {
  renderSignedIn(
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<p>Home</p>} />
      </Route>
    </Routes>,
    {},
    role,
  );
  return within(screen.getByRole('navigation', { name: 'Main' }))
    .getAllByRole('link')
    .map((link) => link.textContent ?? '');
}

describe('navigation', () => {
  it('shows Webhooks to an admin, between Users and the audit log', () => {
    expect(navLinks('admin')).toEqual(['Overview', 'API keys', 'Users', 'Webhooks', 'Audit log', 'API reference']);
    expect(screen.getByRole('link', { name: 'Webhooks' })).toHaveAttribute('href', '/webhooks');
  });

  it('hides it from a management key and from a user', () => {
    expect(navLinks('manager')).toEqual(['API keys', 'API reference']);
    cleanup();
    expect(navLinks('user')).toEqual(['Your keys', 'API reference']);
  });
});
