import type { CreatedKey, CreateMyKeyInput } from '@keyward/sdk';
import { Badge, Button, Card, Group, Loader, Text } from '@mantine/core';
import { IconKey, IconPlus } from '@tabler/icons-react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { PageHeader } from '../../components/PageHeader';
import { type RevealedKey, RevealKeyDialog } from '../../components/RevealKeyDialog';
import { CreateKeyDialog } from '../keys/CreateKeyDialog';
import { useKeysActivity } from '../keys/KeyActivity';
import { KeysTable } from '../keys/KeysTable';
import { Pager, useCursorPager } from '../keys/Pager';
import { useKeyActions } from '../keys/useKeyActions';

/** A user signed in with their token: their own keys, within their tier. */
export function MyKeysPage() {
  const { client, user } = useSession();
  const queryClient = useQueryClient();
  const pager = useCursorPager();
  const [creating, setCreating] = useState(false);
  const [revealed, setRevealed] = useState<RevealedKey | null>(null);
  const { run, dialogs } = useKeyActions();
  const keys = useQuery({
    queryKey: ['keys', 'mine', pager.cursor],
    queryFn: () => client.listMyKeys({ limit: 25, include_inactive: true, ...(pager.cursor ? { cursor: pager.cursor } : {}) }),
    placeholderData: (p) => p,
  });
  const rows = keys.data?.data ?? [];
  const activity = useKeysActivity(rows.map((key) => key.id));
  const onCreated = async (created: CreatedKey) => {
    setCreating(false);
    setRevealed({ id: created.id, key: created.key, name: created.name });
    await queryClient.invalidateQueries({ queryKey: ['keys'] });
  };

  return (
    <>
      <PageHeader
        title="Your API keys"
        badge={
          user && (
            <Badge variant="light" radius="sm">
              {user.tier} tier
            </Badge>
          )
        }
        description="Keys for calling the API as you. Each key is shown once, when you create it."
        actions={
          <Button leftSection={<IconPlus size={16} aria-hidden />} onClick={() => setCreating(true)}>
            Create key
          </Button>
        }
      />
      <Card withBorder padding={0} radius="md">
        {keys.isError ? (
          <EmptyState icon={<IconKey size={22} />} title="Your keys could not be loaded">
            {errorMessage(keys.error)}
          </EmptyState>
        ) : keys.isPending ? (
          <Group justify="center" py={64}>
            <Loader size="sm" aria-label="Loading keys" />
          </Group>
        ) : rows.length === 0 ? (
          <EmptyState
            icon={<IconKey size={22} />}
            title="You have no API keys yet"
            action={
              <Button variant="light" onClick={() => setCreating(true)}>
                Create your first key
              </Button>
            }
          >
            Create a key, copy it once, and send it as Authorization: Bearer with each request.
          </EmptyState>
        ) : (
          <>
            <KeysTable keys={rows} showOwner={false} canWrite linkRows={false} actions={['delete']} activity={activity} onAction={run} />
            <Pager
              page={pager.page}
              nextCursor={keys.data?.next_cursor}
              onNext={pager.next}
              onPrevious={pager.previous}
              count={rows.length}
            />
          </>
        )}
      </Card>
      <Text size="xs" c="dimmed" mt="sm">
        Your tier sets how many keys you may hold and which scopes they may carry.
      </Text>
      <CreateKeyDialog
        opened={creating}
        mode="user"
        onClose={() => setCreating(false)}
        onSubmit={(body) => client.createMyKey(body as CreateMyKeyInput)}
        onCreated={onCreated}
      />
      <RevealKeyDialog revealed={revealed} onClose={() => setRevealed(null)} />
      {dialogs}
    </>
  );
}
