import type { User } from '@keyward/sdk';
import { useQuery } from '@tanstack/react-query';
import { useSession } from './session';

/** Every user (first 100), by id: owner names in key tables and owner pickers. Admin only. */
export function useUserIndex(): { users: User[]; byId: Map<string, User> } {
  const { client, role } = useSession();
  const query = useQuery({
    queryKey: ['users', 'index'],
    queryFn: () => client.listUsers({ limit: 100 }),
    enabled: role === 'admin',
    staleTime: 30_000,
  });
  const users = query.data?.data ?? [];
  return { users, byId: new Map(users.map((u) => [u.id, u])) };
}

export const userLabel = (user: Pick<User, 'external_id' | 'email'>): string => user.email ?? user.external_id;
