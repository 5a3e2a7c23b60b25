import type { AuditLogQuery } from '@keyward/sdk';
import { Anchor, Button, Card, Group, Loader, Select, SimpleGrid, Table, Text, TextInput } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { IconFilterOff, IconHistory } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { PageHeader } from '../../components/PageHeader';
import { TimeText } from '../../components/TimeText';
import { Pager, useCursorPager } from '../keys/Pager';
import { ACTIONS, ActionBadge, AuditChanges, actorLabel } from './auditFormat';

/** A `date` input's value as the start of that day in the browser's zone. */
const dayStart = (value: string, plusDays = 0): string | undefined => {
  if (!value) return undefined;
  const [y, m, d] = value.split('-').map(Number);
  if (!y || !m || !d) return undefined;
  return new Date(y, m - 1, d + plusDays).toISOString();
};

export function AuditPage() {
  const { client } = useSession();
  const [params] = useSearchParams();
  const [actor, setActor] = useState(params.get('actor') ?? '');
  const [target, setTarget] = useState(params.get('target') ?? '');
  const [action, setAction] = useState<string | null>(null);
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [filters] = useDebouncedValue({ actor: actor.trim(), target: target.trim(), action, from, to }, 250);
  const pager = useCursorPager();
  const { reset } = pager;
  // biome-ignore lint/correctness/useExhaustiveDependencies: a change of any filter starts again from page 1
  useEffect(() => reset(), [filters.actor, filters.target, filters.action, filters.from, filters.to, reset]);

  const query: AuditLogQuery = {
    limit: 50,
    ...(filters.actor ? { actor_id: filters.actor } : {}),
    ...(filters.target ? { target_id: filters.target } : {}),
    ...(filters.action ? { action: filters.action } : {}),
    ...(dayStart(filters.from) ? { from: dayStart(filters.from) } : {}),
    ...(dayStart(filters.to, 1) ? { to: dayStart(filters.to, 1) } : {}),
    ...(pager.cursor ? { cursor: pager.cursor } : {}),
  };
  const audit = useQuery({ queryKey: ['audit', 'log', query], queryFn: () => client.listAuditLogs(query), placeholderData: (p) => p });
  const entries = audit.data?.data ?? [];
  const filtered = Boolean(actor || target || action || from || to);

  return (
    <>
      <PageHeader title="Audit log" description="Every change to keys and users: who did it, when, from where, and what changed." />
      <Card withBorder padding={0} radius="md">
        <SimpleGrid cols={{ base: 1, xs: 2, md: 5 }} spacing="sm" p="md">
          <TextInput label="Actor" placeholder="Key or user id, or cli" value={actor} onChange={(e) => setActor(e.currentTarget.value)} />
          <Select label="Action" placeholder="Any action" data={ACTIONS} value={action} onChange={setAction} clearable />
          <TextInput label="Target" placeholder="Key or user id" value={target} onChange={(e) => setTarget(e.currentTarget.value)} />
          <TextInput label="From" type="date" value={from} onChange={(e) => setFrom(e.currentTarget.value)} />
          <TextInput label="To" type="date" value={to} onChange={(e) => setTo(e.currentTarget.value)} />
        </SimpleGrid>
        {filtered && (
          <Group px="md" pb="sm" mt={-4}>
            <Button
              size="compact-xs"
              variant="subtle"
              color="gray"
              leftSection={<IconFilterOff size={14} aria-hidden />}
              onClick={() => {
                setActor('');
                setTarget('');
                setAction(null);
                setFrom('');
                setTo('');
              }}
            >
              Clear filters
            </Button>
            {audit.isFetching && <Loader size="xs" aria-label="Loading" />}
          </Group>
        )}
        {audit.isError ? (
          <EmptyState icon={<IconHistory size={22} />} title="The audit log could not be loaded">
            {errorMessage(audit.error)}
          </EmptyState>
        ) : audit.isPending ? (
          <Group justify="center" py={64}>
            <Loader size="sm" aria-label="Loading the audit log" />
          </Group>
        ) : entries.length === 0 ? (
          <EmptyState icon={<IconHistory size={22} />} title={filtered ? 'No entry matches' : 'Nothing recorded yet'}>
            {filtered ? 'Widen the date range or clear a filter.' : 'Changes to keys and users appear here as they happen.'}
          </EmptyState>
        ) : (
          <>
            <Table.ScrollContainer minWidth={860} type="native">
              <Table verticalSpacing="sm" horizontalSpacing="md" className="kw-table">
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>When</Table.Th>
                    <Table.Th>Action</Table.Th>
                    <Table.Th>Actor</Table.Th>
                    <Table.Th>Target</Table.Th>
                    <Table.Th>Changes</Table.Th>
                    <Table.Th>IP</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {entries.map((entry) => (
                    <Table.Tr key={entry.id}>
                      <Table.Td style={{ whiteSpace: 'nowrap', verticalAlign: 'top' }}>
                        <TimeText value={entry.created_at} mode="absolute" size="sm" />
                      </Table.Td>
                      <Table.Td style={{ verticalAlign: 'top' }}>
                        <ActionBadge action={entry.action} />
                      </Table.Td>
                      <Table.Td style={{ verticalAlign: 'top' }}>
                        <Text size="sm" ff={entry.actor_type === 'system' ? undefined : 'monospace'} fz="xs">
                          {actorLabel(entry)}
                        </Text>
                      </Table.Td>
                      <Table.Td style={{ verticalAlign: 'top' }}>
                        {entry.target_id ? (
                          <Anchor
                            component={Link}
                            to={entry.target_type === 'user' ? `/users/${entry.target_id}` : `/keys/${entry.target_id}`}
                            ff="monospace"
                            fz="xs"
                          >
                            {entry.target_type === 'user' ? 'user' : 'key'} {entry.target_id.slice(0, 8)}…
                          </Anchor>
                        ) : (
                          <Text size="sm" c="dimmed">
                            {entry.target_type}
                          </Text>
                        )}
                      </Table.Td>
                      <Table.Td maw={380} style={{ verticalAlign: 'top' }}>
                        <AuditChanges changes={entry.changes} action={entry.action} />
                      </Table.Td>
                      <Table.Td style={{ verticalAlign: 'top' }}>
                        <Text size="xs" ff="monospace" c="dimmed">
                          {entry.ip ?? '—'}
                        </Text>
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
            <Pager
              page={pager.page}
              nextCursor={audit.data?.next_cursor}
              onNext={pager.next}
              onPrevious={pager.previous}
              count={entries.length}
              noun="entries"
              singular="entry"
            />
          </>
        )}
      </Card>
    </>
  );
}
