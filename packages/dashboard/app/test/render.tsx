import type { KeywardClient } from '@keyward/sdk';
import { MantineProvider } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter } from 'react-router';
import { type Role, type Session, SessionProvider } from '../api/session';
import { theme } from '../theme';

/** Renders under Mantine, without transitions (so dialogs open and close at once). */
export function renderUi(ui: ReactElement) {
  return render(
    <MantineProvider
      theme={{ ...theme, respectReducedMotion: false, components: { ...theme.components, Transition: { defaultProps: { duration: 0 } } } }}
      env="test"
    >
      {ui}
    </MantineProvider>,
  );
}

/**
 * Renders a page under Mantine, a router, a fresh query cache (no retries) and a signed-in session whose
 * client is `client`: pass only the methods the page calls, as mocks. `path` is where the router starts
 * (for a page that reads its route: wrap it in `<Routes>`).
 */
export function renderSignedIn(ui: ReactElement, client: Partial<Record<keyof KeywardClient, unknown>>, role: Role = 'admin', path = '/') {
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, refetchOnWindowFocus: false } } });
  const session: Session = { client: client as unknown as KeywardClient, role, canWrite: true, label: 'test' };
  return {
    queryClient,
    ...renderUi(
      <QueryClientProvider client={queryClient}>
        <SessionProvider initial={session}>
          <MemoryRouter initialEntries={[path]}>{ui}</MemoryRouter>
        </SessionProvider>
      </QueryClientProvider>,
    ),
  };
}
