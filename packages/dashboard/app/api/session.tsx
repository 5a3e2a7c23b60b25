import { type ApiKey, KeywardClient, KeywardError, scopeCovers, type User } from '@keyward/sdk';
import { createContext, type ReactNode, useCallback, useContext, useMemo, useState } from 'react';

/** What the signed-in credential may do: everything, manage keys (read or read/write), or a user's own keys. */
export type Role = 'admin' | 'manager' | 'user';

export interface Session {
  client: KeywardClient;
  role: Role;
  /** Whether it may change keys (admin, `keyward:keys:write`, or a user managing their own keys). */
  canWrite: boolean;
  /** Shown in the header. */
  label: string;
  /** The key signed in with (admin or manager). */
  key?: ApiKey;
  /** The user signed in with a JWT. */
  user?: User;
}

const STORAGE_KEY = 'keyward.credential';

/** Kept for this tab only: sessionStorage (never localStorage, never a URL). */
export const credentialStore = {
  read(): string | null {
    try {
      return window.sessionStorage.getItem(STORAGE_KEY);
    } catch {
      return null;
    }
  },
  write(credential: string): void {
    try {
      window.sessionStorage.setItem(STORAGE_KEY, credential);
    } catch {
      // Storage refused (private mode): the credential stays in memory only.
    }
  },
  clear(): void {
    try {
      window.sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
  },
};

export const looksLikeJwt = (credential: string): boolean => /^[\w-]+\.[\w-]+\.[\w-]*$/.test(credential);

const covers = (scopes: readonly string[], required: string) => scopes.some((granted) => scopeCovers(granted, required));

/** A sign-in refused: `message` is said on the form. */
export class SignInError extends Error {}

export function clientFor(credential: string, baseUrl = window.location.origin): KeywardClient {
  return new KeywardClient({ baseUrl, apiKey: credential, timeoutMs: 15_000 });
}

/** Checks a credential against the server and works out what it may do. */
export async function openSession(credential: string, client: KeywardClient = clientFor(credential)): Promise<Session> {
  try {
    if (looksLikeJwt(credential)) {
      const user = await client.currentUser();
      return { client, role: 'user', canWrite: true, label: user.email ?? user.external_id, user };
    }
    const key = await client.currentKey();
    const label = key.name;
    if (key.is_admin) return { client, role: 'admin', canWrite: true, label, key };
    const canWrite = covers(key.scopes, 'keyward:keys:write');
    if (canWrite || covers(key.scopes, 'keyward:keys:read')) return { client, role: 'manager', canWrite, label, key };
    throw new SignInError(
      'This key cannot manage keys. Sign in with an admin key, a key holding keyward:keys:read or keyward:keys:write, or a user token.',
    );
  } catch (error) {
    throw signInError(error);
  }
}

export function signInError(error: unknown): Error {
  if (error instanceof SignInError) return error;
  if (error instanceof KeywardError) {
    if (error.status === 401) return new SignInError('That key or token was not accepted: it is unknown, expired, deactivated or revoked.');
    if (error.status === 403) return new SignInError('That credential is valid but may not use the dashboard.');
    if (error.status === 0) return new SignInError('Keyward could not be reached. Check that the server is running.');
    if (error.status === 429) return new SignInError('Too many failed attempts. Wait a minute and try again.');
    return new SignInError(error.problem.detail ?? error.message);
  }
  return new SignInError('Sign-in failed. Try again.');
}

interface SessionContextValue {
  session: Session | null;
  signIn(credential: string): Promise<void>;
  signOut(): void;
}

const SessionContext = createContext<SessionContextValue | null>(null);

export function SessionProvider({
  initial = null,
  open = openSession,
  onSignOut,
  children,
}: {
  initial?: Session | null;
  open?: (credential: string) => Promise<Session>;
  onSignOut?: () => void;
  children: ReactNode;
}) {
  const [session, setSession] = useState<Session | null>(initial);
  const signIn = useCallback(
    async (credential: string) => {
      const next = await open(credential.trim());
      credentialStore.write(credential.trim());
      setSession(next);
    },
    [open],
  );
  const signOut = useCallback(() => {
    credentialStore.clear();
    setSession(null);
    onSignOut?.();
  }, [onSignOut]);
  const value = useMemo(() => ({ session, signIn, signOut }), [session, signIn, signOut]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSessionContext(): SessionContextValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSessionContext outside SessionProvider');
  return value;
}

/** The signed-in session (only under the signed-in layout). */
export function useSession(): Session {
  const { session } = useSessionContext();
  if (!session) throw new Error('useSession without a session');
  return session;
}
