import type { CreatedKey, CreateKeyInput, UserWithKeyCount } from '@keyward/sdk';
import { Anchor, Autocomplete, Badge, Breadcrumbs, Button, Card, Group, Loader, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconKey, IconPlus, IconTrash, IconUserOff } from '@tabler/icons-react';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { errorMessage, isStatus } from '../../api/errors';
import { useSession } from '../../api/session';
import { ConfirmDialog } from '../../components/ConfirmDialog';
import { EmptyState } from '../../components/EmptyState';
import { PageHeader } from '../../components/PageHeader';
import { type RevealedKey, RevealKeyDialog } from '../../components/RevealKeyDialog';
import { TimeText } from '../../components/TimeText';
import { CreateKeyDialog } from '../keys/CreateKeyDialog';
import { KeysTable } from '../keys/KeysTable';
import { useKeyActions } from '../keys/useKeyActions';
import { KNOWN_TIERS, TIER_COLOR } from './tiers';

export function UserDetailPage() {
  const { id = '' } = useParams();
  const { client } = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [tier, setTier] = useState('');
  const [deleting, setDeleting] = useState(false);
  const [creating, setCreating] = useState(false);
  const [revealed, setRevealed] = useState<RevealedKey | null>(null);
  const { run, dialogs } = useKeyActions();

  const user = useQuery({ queryKey: ['users', id], queryFn: () => client.getUser(id), retry: (n, e) => !isStatus(e, 404) && n < 2 });
  const keys = useQuery({
    queryKey: ['keys', 'user', id],
    queryFn: () => client.listKeys({ user_id: id, include_inactive: true, limit: 100 }),
    enabled: user.isSuccess,
  });
  useEffect(() => {
    if (user.data) setTier(user.data.tier);
  }, [user.data]);

  const changeTier = useMutation({
    mutationFn: () => client.updateUser(id, { tier: tier.trim() }),
    onSuccess: async (updated) => {
      // The answer to a change carries no `key_count`: keep the one read with the user.
      queryClient.setQueryData<UserWithKeyCount>(['users', id], (previous) => previous && { ...previous, ...updated });
      await queryClient.invalidateQueries({ queryKey: ['users', 'list'] });
      await queryClient.invalidateQueries({ queryKey: ['audit'] });
      notifications.show({ color: 'teal', message: `Tier changed to ${updated.tier}` });
    },
    onError: (error) => notifications.show({ color: 'red', title: 'Tier not changed', message: errorMessage(error) }),
  });
  const remove = useMutation({
    mutationFn: () => client.deleteUser(id),
    onSuccess: async () => {
      await queryClient.invalidateQueries({ queryKey: ['users'] });
      await queryClient.invalidateQueries({ queryKey: ['keys'] });
      notifications.show({ color: 'gray', message: 'User deleted' });
      navigate('/users');
    },
  });

  if (user.isPending) {
    return (
      <Group justify="center" py={96}>
        <Loader size="sm" aria-label="Loading the user" />
      </Group>
    );
  }
  if (user.isError) {
    return (
      <EmptyState
        icon={<IconUserOff size={22} />}
        title={isStatus(user.error, 404) ? 'No such user' : 'The user could not be loaded'}
        action={
          <Button component={Link} to="/users" variant="light">
            Back to users
          </Button>
        }
      >
        {isStatus(user.error, 404) ? 'They may have been deleted.' : errorMessage(user.error)}
      </EmptyState>
    );
  }
  const u = user.data;
  const keyList = keys.data?.data ?? [];
  const deleted = u.key_count === 1 ? '1 key' : `${u.key_count} keys`;
  const onCreated = async (created: CreatedKey) => {
    setCreating(false);
    setRevealed({ id: created.id, key: created.key, name: created.name });
    // The user's key_count changes too.
    await queryClient.invalidateQueries({ queryKey: ['keys'] });
    await queryClient.invalidateQueries({ queryKey: ['users'] });
  };

  return (
    <>
      <Breadcrumbs mb="sm" aria-label="Breadcrumb">
        <Anchor component={Link} to="/users" size="sm">
          Users
        </Anchor>
        <Text size="sm" c="dimmed" truncate maw={280}>
          {u.external_id}
        </Text>
      </Breadcrumbs>
      <PageHeader
        title={u.external_id}
        badge={
          <Badge variant="light" color={TIER_COLOR[u.tier] ?? 'blue'} radius="sm">
            {u.tier}
          </Badge>
        }
        description={u.email ?? 'No email'}
        actions={
          <Button
            variant="light"
            color="red"
            leftSection={<IconTrash size={16} aria-hidden />}
            onClick={() => {
              setDeleting(true);
              // Keys may have come or gone on this page since the user was read: the dialog names the current count.
              void user.refetch();
            }}
          >
            Delete
          </Button>
        }
      />
      <Stack gap="lg">
        <Card withBorder radius="md" padding="lg">
          <SimpleGrid cols={{ base: 1, sm: 3 }} spacing="lg">
            <Stack gap={2}>
              <Text size="xs" c="dimmed" fw={500}>
                Keyward id
              </Text>
              <Text size="xs" ff="monospace" style={{ overflowWrap: 'anywhere' }}>
                {u.id}
              </Text>
            </Stack>
            <Stack gap={2}>
              <Text size="xs" c="dimmed" fw={500}>
                Created
              </Text>
              <TimeText value={u.created_at} mode="absolute" size="sm" />
            </Stack>
            <form
              onSubmit={(e) => {
                e.preventDefault();
                if (tier.trim() && tier.trim() !== u.tier) changeTier.mutate();
              }}
            >
              <Group gap="xs" align="flex-end" wrap="nowrap">
                <Autocomplete label="Tier" data={KNOWN_TIERS} value={tier} onChange={setTier} style={{ flex: 1 }} />
                <Button type="submit" variant="default" disabled={!tier.trim() || tier.trim() === u.tier} loading={changeTier.isPending}>
                  Change tier
                </Button>
              </Group>
            </form>
          </SimpleGrid>
        </Card>
        <Card withBorder radius="md" padding={0}>
          <Group justify="space-between" p="md">
            <Title order={2} fz="md" fw={600}>
              Keys{' '}
              <Text span c="dimmed" fw={400}>
                {u.key_count}
              </Text>
            </Title>
            <Button size="xs" variant="default" leftSection={<IconPlus size={14} aria-hidden />} onClick={() => setCreating(true)}>
              Create key
            </Button>
          </Group>
          {keys.isPending ? (
            <Group justify="center" py="xl">
              <Loader size="sm" aria-label="Loading keys" />
            </Group>
          ) : keyList.length === 0 ? (
            <EmptyState icon={<IconKey size={22} />} title="No keys">
              This user has no keys. They can create their own by signing in with their token, or you can create one for them.
            </EmptyState>
          ) : (
            <KeysTable keys={keyList} showOwner={false} canWrite onAction={run} />
          )}
        </Card>
      </Stack>
      <ConfirmDialog
        opened={deleting}
        title={`Delete user “${u.external_id}”?`}
        action="Delete"
        pending={remove.isPending}
        error={remove.error ? errorMessage(remove.error) : null}
        onClose={() => setDeleting(false)}
        onConfirm={() => remove.mutate()}
      >
        The user and <b>{deleted}</b> that belong to them are deleted. Requests with those keys are refused from now on. This cannot be
        undone.
      </ConfirmDialog>
      <CreateKeyDialog
        opened={creating}
        mode="admin"
        owners={[{ value: u.id, label: u.email ?? u.external_id }]}
        defaultOwner={u.id}
        onClose={() => setCreating(false)}
        onSubmit={(body) => client.createKey(body as CreateKeyInput)}
        onCreated={onCreated}
      />
      <RevealKeyDialog revealed={revealed} onClose={() => setRevealed(null)} />
      {dialogs}
    </>
  );
}
