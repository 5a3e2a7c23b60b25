import { Center, Loader } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { lazy, useEffect, useMemo, useState } from 'react';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router';
import { isStatus } from './api/errors';
import { credentialStore, openSession, type Session, SessionProvider, useSessionContext } from './api/session';
import { Layout } from './components/Layout';
import { KeysPage } from './pages/keys/KeysPage';
import { SignInPage } from './pages/sign-in/SignInPage';

// The home page and sign-in come with the first load; the rest (and the chart library) when first opened.
const KeyDetailPage = lazy(() => import('./pages/key-detail/KeyDetailPage').then((m) => ({ default: m.KeyDetailPage })));
const OverviewPage = lazy(() => import('./pages/overview/OverviewPage').then((m) => ({ default: m.OverviewPage })));
const UsersPage = lazy(() => import('./pages/users/UsersPage').then((m) => ({ default: m.UsersPage })));
const UserDetailPage = lazy(() => import('./pages/users/UserDetailPage').then((m) => ({ default: m.UserDetailPage })));
const AuditPage = lazy(() => import('./pages/audit/AuditPage').then((m) => ({ default: m.AuditPage })));
const WebhooksPage = lazy(() => import('./pages/webhooks/WebhooksPage').then((m) => ({ default: m.WebhooksPage })));
const WebhookDetailPage = lazy(() => import('./pages/webhooks/WebhookDetailPage').then((m) => ({ default: m.WebhookDetailPage })));
const MyKeysPage = lazy(() => import('./pages/my-keys/MyKeysPage').then((m) => ({ default: m.MyKeysPage })));

function AppRoutes() {
  const { session, signIn } = useSessionContext();
  if (!session) return <SignInPage onSignIn={signIn} />;
  const admin = session.role === 'admin';
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={session.role === 'user' ? <MyKeysPage /> : <KeysPage />} />
        {session.role !== 'user' && <Route path="keys/:id" element={<KeyDetailPage />} />}
        {admin && <Route path="overview" element={<OverviewPage />} />}
        {admin && <Route path="users" element={<UsersPage />} />}
        {admin && <Route path="users/:id" element={<UserDetailPage />} />}
        {admin && <Route path="webhooks" element={<WebhooksPage />} />}
        {admin && <Route path="webhooks/:id" element={<WebhookDetailPage />} />}
        {admin && <Route path="audit" element={<AuditPage />} />}
        <Route path="*" element={<Navigate to="/" replace />} />
      </Route>
    </Routes>
  );
}

/** Restores the tab's session (sessionStorage) before the first page, then routes. */
export function App() {
  const [restored, setRestored] = useState<{ session: Session | null } | null>(null);
  const queryClient = useMemo(
    () =>
      new QueryClient({
        defaultOptions: {
          queries: {
            staleTime: 10_000,
            refetchOnWindowFocus: true,
            retry: (count, error) => !isStatus(error, 401) && !isStatus(error, 403) && !isStatus(error, 404) && count < 2,
          },
        },
      }),
    [],
  );

  useEffect(() => {
    const stored = credentialStore.read();
    if (!stored) {
      setRestored({ session: null });
      return;
    }
    openSession(stored)
      .then((session) => setRestored({ session }))
      .catch(() => {
        credentialStore.clear();
        setRestored({ session: null });
      });
  }, []);

  if (!restored) {
    return (
      <Center mih="100dvh">
        <Loader size="sm" aria-label="Loading" />
      </Center>
    );
  }
  return (
    <QueryClientProvider client={queryClient}>
      <SessionProvider initial={restored.session} onSignOut={() => queryClient.clear()}>
        <BrowserRouter>
          <AppRoutes />
        </BrowserRouter>
      </SessionProvider>
    </QueryClientProvider>
  );
}
