import { Anchor, Badge, Button, Card, Group, Loader, Table, Text, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconPlus, IconSearch, IconUsers } from '@tabler/icons-react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { PageHeader } from '../../components/PageHeader';
import { TimeText } from '../../components/TimeText';
import { Pager, useCursorPager } from '../keys/Pager';
import { CreateUserDialog } from './CreateUserDialog';
import { TIER_COLOR } from './tiers';

export function UsersPage() {
  const { client } = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const pager = useCursorPager();
  const [search, setSearch] = useState('');
  const [creating, setCreating] = useState(false);
  const users = useQuery({
    queryKey: ['users', 'list', pager.cursor],
    queryFn: () => client.listUsers({ limit: 50, ...(pager.cursor ? { cursor: pager.cursor } : {}) }),
    placeholderData: (p) => p,
  });
  const q = search.trim().toLowerCase();
  const rows = (users.data?.data ?? []).filter(
    (u) => !q || [u.external_id, u.email ?? '', u.id, u.tier].some((f) => f.toLowerCase().includes(q)),
  );

  return (
    <>
      <PageHeader
        title="Users"
        description="The people who use your product. A user signs in with their token and manages their own keys, within their tier."
        actions={
          <Button leftSection={<IconPlus size={16} aria-hidden />} onClick={() => setCreating(true)}>
            Create user
          </Button>
        }
      />
      <Card withBorder padding={0} radius="md">
        <Group p="md">
          <TextInput
            aria-label="Search users"
            placeholder="Search by id, email or tier"
            leftSection={<IconSearch size={16} aria-hidden />}
            value={search}
            onChange={(e) => setSearch(e.currentTarget.value)}
            style={{ flex: '1 1 260px' }}
            type="search"
          />
          {users.isFetching && <Loader size="xs" aria-label="Loading" />}
        </Group>
        {users.isError ? (
          <EmptyState icon={<IconUsers size={22} />} title="Users could not be loaded">
            {errorMessage(users.error)}
          </EmptyState>
        ) : users.isPending ? (
          <Group justify="center" py={64}>
            <Loader size="sm" aria-label="Loading users" />
          </Group>
        ) : rows.length === 0 ? (
          <EmptyState
            icon={<IconUsers size={22} />}
            title={q ? 'No user matches' : 'No users yet'}
            action={
              !q && (
                <Button variant="light" onClick={() => setCreating(true)}>
                  Create user
                </Button>
              )
            }
          >
            {q
              ? 'Search looks at the users on this page.'
              : 'Users appear here when you create them or when they first sign in with a token.'}
          </EmptyState>
        ) : (
          <>
            <Table.ScrollContainer minWidth={640} type="native">
              <Table verticalSpacing="sm" horizontalSpacing="md" highlightOnHover className="kw-table">
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>User</Table.Th>
                    <Table.Th>Email</Table.Th>
                    <Table.Th>Tier</Table.Th>
                    <Table.Th style={{ textAlign: 'right' }}>Keys</Table.Th>
                    <Table.Th>Created</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {rows.map((user) => (
                    <Table.Tr
                      key={user.id}
                      style={{ cursor: 'pointer' }}
                      onClick={(e) => {
                        if (!(e.target as HTMLElement).closest('a')) navigate(`/users/${user.id}`);
                      }}
                    >
                      <Table.Td>
                        <Anchor component={Link} to={`/users/${user.id}`} fw={550} size="sm" c="var(--mantine-color-text)">
                          {user.external_id}
                        </Anchor>
                      </Table.Td>
                      <Table.Td>
                        <Text size="sm" c={user.email ? undefined : 'dimmed'}>
                          {user.email ?? '—'}
                        </Text>
                      </Table.Td>
                      <Table.Td>
                        <Badge variant="light" color={TIER_COLOR[user.tier] ?? 'blue'} radius="sm" size="sm">
                          {user.tier}
                        </Badge>
                      </Table.Td>
                      <Table.Td style={{ textAlign: 'right' }}>
                        <Text size="sm" c={user.key_count === 0 ? 'dimmed' : undefined} style={{ fontVariantNumeric: 'tabular-nums' }}>
                          {user.key_count}
                        </Text>
                      </Table.Td>
                      <Table.Td>
                        <TimeText value={user.created_at} size="sm" />
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
            <Pager
              page={pager.page}
              nextCursor={users.data?.next_cursor}
              onNext={pager.next}
              onPrevious={pager.previous}
              count={rows.length}
              noun="users"
            />
          </>
        )}
      </Card>
      <CreateUserDialog
        opened={creating}
        onClose={() => setCreating(false)}
        onSubmit={async (body) => {
          const user = await client.createUser(body);
          setCreating(false);
          await queryClient.invalidateQueries({ queryKey: ['users'] });
          notifications.show({ color: 'teal', message: `User “${user.external_id}” created` });
          navigate(`/users/${user.id}`);
        }}
      />
    </>
  );
}
