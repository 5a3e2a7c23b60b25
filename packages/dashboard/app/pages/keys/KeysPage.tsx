import type { ApiKey, CreatedKey, CreateKeyInput } from '@keyward/sdk';
import { Button, Card, Group, Loader, Select, Text, TextInput } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { IconKey, IconPlus, IconSearch } from '@tabler/icons-react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useMemo, useState } from 'react';
import { errorMessage, isStatus } from '../../api/errors';
import { userLabel, useUserIndex } from '../../api/queries';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { keyState } from '../../components/keyStatus';
import { PageHeader } from '../../components/PageHeader';
import { type RevealedKey, RevealKeyDialog } from '../../components/RevealKeyDialog';
import { CreateKeyDialog } from './CreateKeyDialog';
import { useKeysActivity } from './KeyActivity';
import { KeysTable } from './KeysTable';
import { Pager, useCursorPager } from './Pager';
import { useKeyActions } from './useKeyActions';

const PAGE_SIZE = 25;
type StatusFilter = 'all' | 'active' | 'deactivated' | 'revoked' | 'expired';
const STATUS_OPTIONS = [
  { value: 'active', label: 'Active' },
  { value: 'all', label: 'All statuses' },
  { value: 'deactivated', label: 'Deactivated' },
  { value: 'revoked', label: 'Revoked' },
  { value: 'expired', label: 'Expired' },
];
/** How long typing must pause before the search goes to the server. */
export const SEARCH_DEBOUNCE_MS = 250;

function matchesStatus(key: ApiKey, filter: StatusFilter): boolean {
  if (filter === 'all') return true;
  const state = keyState(key);
  if (filter === 'active') return state !== 'deactivated' && state !== 'revoked' && state !== 'expired';
  return state === filter;
}

/** The home page: every key, searchable and filterable, with Create key and the lifecycle actions. */
export function KeysPage() {
  const { client, role, canWrite } = useSession();
  const queryClient = useQueryClient();
  const { users, byId } = useUserIndex();
  const [search, setSearch] = useState('');
  const [debounced] = useDebouncedValue(search, SEARCH_DEBOUNCE_MS);
  // The server searches name, display prefix and id (`q`), across every page.
  const q = debounced.trim().slice(0, 200);
  const [status, setStatus] = useState<StatusFilter>('active');
  const [owner, setOwner] = useState<string | null>(null);
  const pager = useCursorPager();
  const [creating, setCreating] = useState(false);
  const [revealed, setRevealed] = useState<RevealedKey | null>(null);
  const { run, dialogs } = useKeyActions();

  const includeInactive = status !== 'active';
  const keysQuery = useQuery({
    queryKey: ['keys', 'list', { q, includeInactive, owner, cursor: pager.cursor }],
    queryFn: () =>
      client.listKeys({
        limit: PAGE_SIZE,
        include_inactive: includeInactive,
        ...(q ? { q } : {}),
        ...(owner ? { user_id: owner } : {}),
        ...(pager.cursor ? { cursor: pager.cursor } : {}),
      }),
    placeholderData: (previous) => previous,
  });

  const rows = useMemo(() => (keysQuery.data?.data ?? []).filter((key) => matchesStatus(key, status)), [keysQuery.data, status]);

  // The sparklines of the whole loaded page in one request (the status filter only hides rows of it).
  const pageIds = useMemo(() => (keysQuery.data?.data ?? []).map((key) => key.id), [keysQuery.data]);
  const activity = useKeysActivity(pageIds);

  const ownerOptions = users.map((u) => ({ value: u.id, label: userLabel(u) }));
  const filtered = q !== '' || status !== 'active' || owner !== null;

  const onCreated = async (created: CreatedKey) => {
    setCreating(false);
    setRevealed({ id: created.id, key: created.key, name: created.name, verb: 'created' });
    await queryClient.invalidateQueries({ queryKey: ['keys'] });
    await queryClient.invalidateQueries({ queryKey: ['audit'] });
  };

  return (
    <>
      <PageHeader
        title="API keys"
        description="Keys your services and customers use to call your API. A new key is shown once, when it is created or rolled."
        actions={
          canWrite && (
            <Button leftSection={<IconPlus size={16} aria-hidden />} onClick={() => setCreating(true)}>
              Create key
            </Button>
          )
        }
      />
      <Card withBorder padding={0} radius="md">
        <Group gap="sm" p="md" wrap="wrap" className="kw-toolbar">
          <TextInput
            aria-label="Search keys"
            placeholder="Search by name, prefix or id"
            leftSection={<IconSearch size={16} aria-hidden />}
            value={search}
            onChange={(event) => {
              setSearch(event.currentTarget.value);
              // A new search starts from its first page: another search's cursor means nothing to it.
              pager.reset();
            }}
            style={{ flex: '1 1 260px' }}
            type="search"
          />
          <Select
            aria-label="Status"
            data={STATUS_OPTIONS}
            value={status}
            onChange={(value) => {
              setStatus((value ?? 'active') as StatusFilter);
              pager.reset();
            }}
            allowDeselect={false}
            style={{ flex: '1 1 150px', maxWidth: 200 }}
          />
          {role === 'admin' && (
            <Select
              aria-label="Owner"
              placeholder="Any owner"
              data={ownerOptions}
              value={owner}
              onChange={(value) => {
                setOwner(value);
                pager.reset();
              }}
              searchable
              clearable
              style={{ flex: '1 1 150px', maxWidth: 220 }}
              nothingFoundMessage="No user matches"
            />
          )}
          {keysQuery.isFetching && <Loader size="xs" aria-label="Loading" />}
        </Group>
        {keysQuery.isError ? (
          <EmptyState icon={<IconKey size={22} />} title="The keys could not be loaded">
            {isStatus(keysQuery.error, 403) ? 'This credential may not list keys.' : errorMessage(keysQuery.error)}
          </EmptyState>
        ) : keysQuery.isPending ? (
          <Group justify="center" py={64}>
            <Loader size="sm" aria-label="Loading keys" />
          </Group>
        ) : rows.length === 0 ? (
          filtered ? (
            <EmptyState icon={<IconSearch size={22} />} title="No key matches">
              {keysQuery.data?.next_cursor
                ? 'None on this page has this status. Try the next page, or clear the filters.'
                : 'Try another name, prefix or id, or clear the filters.'}
            </EmptyState>
          ) : (
            <EmptyState
              icon={<IconKey size={22} />}
              title="No API keys yet"
              action={
                canWrite && (
                  <Button variant="light" leftSection={<IconPlus size={16} aria-hidden />} onClick={() => setCreating(true)}>
                    Create your first key
                  </Button>
                )
              }
            >
              Create a key for each service or customer that calls your API. Give it only the scopes it needs.
            </EmptyState>
          )
        ) : (
          <>
            <KeysTable keys={rows} owners={byId} canWrite={canWrite} activity={activity} onAction={run} />
            <Pager
              page={pager.page}
              nextCursor={keysQuery.data?.next_cursor}
              onNext={pager.next}
              onPrevious={pager.previous}
              count={rows.length}
            />
          </>
        )}
      </Card>
      {canWrite && (
        <CreateKeyDialog
          opened={creating}
          mode={role === 'admin' ? 'admin' : 'manager'}
          owners={ownerOptions}
          onClose={() => setCreating(false)}
          onSubmit={(body) => client.createKey(body as CreateKeyInput)}
          onCreated={onCreated}
        />
      )}
      <RevealKeyDialog revealed={revealed} onClose={() => setRevealed(null)} />
      {dialogs}
      {role === 'manager' && (
        <Text size="xs" c="dimmed" mt="sm">
          Signed in with a management key: users, analytics and the audit log need an admin key.
        </Text>
      )}
    </>
  );
}
