import type { ApiKey, UpdateKeyInput } from '@keyward/sdk';
import { Anchor, Breadcrumbs, Button, Card, Code, Group, Loader, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconBan, IconKeyOff, IconPencil, IconPlayerPause, IconPlayerPlay, IconRefresh, IconTrash } from '@tabler/icons-react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { type ReactNode, useState } from 'react';
import { Link, useParams } from 'react-router';
import { errorMessage, isStatus } from '../../api/errors';
import { userLabel, useUserIndex } from '../../api/queries';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { formatDuration, formatNumber } from '../../components/format';
import { isLive } from '../../components/keyStatus';
import { PageHeader } from '../../components/PageHeader';
import { ScopeList } from '../../components/ScopeList';
import { StatusBadge } from '../../components/StatusBadge';
import { TimeText } from '../../components/TimeText';
import type { AuditEntry } from '../audit/auditFormat';
import { useKeyActions } from '../keys/useKeyActions';
import { EditKeyForm } from './EditKeyForm';
import { KeyAuditTrail } from './KeyAuditTrail';
import { KeyEndpoints } from './KeyEndpoints';
import { LeakedBadge, LeakSummary, useKeyLeak } from './KeyLeak';
import { RecentRequests } from './RecentRequests';
import { type KeyRange, UsageChart } from './UsageChart';

function Field({ label, children, wide = false }: { label: string; children: ReactNode; wide?: boolean }) {
  return (
    <Stack gap={2} style={wide ? { gridColumn: '1 / -1' } : undefined} className="kw-field">
      <Text size="xs" c="dimmed" fw={500} component="dt">
        {label}
      </Text>
      <Text size="sm" component="dd" m={0} style={{ overflowWrap: 'anywhere' }}>
        {children}
      </Text>
    </Stack>
  );
}

const dash = (
  <Text span c="dimmed" size="sm">
    —
  </Text>
);

function KeyFields({ apiKey, ownerName, leak }: { apiKey: ApiKey; ownerName: string | undefined; leak: AuditEntry | undefined }) {
  const metadata = Object.keys(apiKey.metadata).length ? JSON.stringify(apiKey.metadata, null, 2) : null;
  return (
    <SimpleGrid cols={{ base: 1, xs: 2, md: 3 }} spacing="lg" verticalSpacing="md" component="dl" m={0}>
      <Field label="Id">
        <Text span ff="monospace" size="xs">
          {apiKey.id}
        </Text>
      </Field>
      <Field label="Key">
        <Text span ff="monospace" size="xs">
          {apiKey.key_prefix}…
        </Text>
      </Field>
      <Field label="Owner">
        {apiKey.user_id ? (
          <Anchor component={Link} to={`/users/${apiKey.user_id}`} size="sm">
            {ownerName ?? apiKey.user_id}
          </Anchor>
        ) : (
          'No owner (service key)'
        )}
      </Field>
      <Field label="Description">{apiKey.description ?? dash}</Field>
      <Field label="Type">{apiKey.is_admin ? 'Admin key' : 'Regular key'}</Field>
      <Field label="Scopes">
        <ScopeList scopes={apiKey.scopes} max={12} />
      </Field>
      <Field label="Created">
        <TimeText value={apiKey.created_at} mode="absolute" size="sm" />{' '}
        <Text span size="xs" c="dimmed">
          by {apiKey.created_by}
        </Text>
      </Field>
      <Field label="Last used">
        <TimeText value={apiKey.last_used_at} empty="Never" size="sm" />
      </Field>
      <Field label="Expires">
        <TimeText value={apiKey.expires_at} mode="absolute" empty="Never" size="sm" />
      </Field>
      <Field label="Rate limit">
        {apiKey.rate_limit ? `${formatNumber(apiKey.rate_limit.limit)} per ${formatDuration(apiKey.rate_limit.window_seconds)}` : 'None'}
      </Field>
      <Field label="Quota">
        {apiKey.quota
          ? `${formatNumber(apiKey.quota.remaining)} left${apiKey.quota.refill ? ` · refills ${formatNumber(apiKey.quota.refill.amount)} every ${apiKey.quota.refill.interval}` : ''}`
          : 'Unlimited'}
      </Field>
      <Field label="Updated">
        <TimeText value={apiKey.updated_at} size="sm" />
      </Field>
      {apiKey.revoked_at && (
        <Field label="Revoked">
          <TimeText value={apiKey.revoked_at} mode="absolute" size="sm" />
        </Field>
      )}
      {leak && (
        <Field label="Leaked">
          <LeakSummary entry={leak} />
        </Field>
      )}
      {apiKey.rolled_from && (
        <Field label="Rolled from">
          <Anchor component={Link} to={`/keys/${apiKey.rolled_from}`} ff="monospace" size="xs">
            {apiKey.rolled_from}
          </Anchor>
        </Field>
      )}
      <Field label="Hash">
        <Text span ff="monospace" size="xs">
          {apiKey.hash_scheme}
        </Text>
      </Field>
      <Field label="Metadata" wide>
        {metadata ? (
          <Code block fz="xs">
            {metadata}
          </Code>
        ) : (
          dash
        )}
      </Field>
    </SimpleGrid>
  );
}

export function KeyDetailPage() {
  const { id = '' } = useParams();
  const { client, canWrite, role } = useSession();
  const queryClient = useQueryClient();
  const { byId } = useUserIndex();
  const [editing, setEditing] = useState(false);
  const [range, setRange] = useState<KeyRange>('24h');
  const { run, dialogs } = useKeyActions({ afterDelete: '/', followRoll: true });
  const keyQuery = useQuery({ queryKey: ['key', id], queryFn: () => client.getKey(id), retry: (n, e) => !isStatus(e, 404) && n < 2 });
  const leak = useKeyLeak({ id, status: keyQuery.data?.status ?? 'active' });

  if (keyQuery.isPending) {
    return (
      <Group justify="center" py={96}>
        <Loader size="sm" aria-label="Loading the key" />
      </Group>
    );
  }
  if (keyQuery.isError) {
    return (
      <EmptyState
        icon={<IconKeyOff size={22} />}
        title={isStatus(keyQuery.error, 404) ? 'No such key' : 'The key could not be loaded'}
        action={
          <Button component={Link} to="/" variant="light">
            Back to API keys
          </Button>
        }
      >
        {isStatus(keyQuery.error, 404) ? 'It may have been deleted.' : errorMessage(keyQuery.error)}
      </EmptyState>
    );
  }
  const key = keyQuery.data;
  const owner = key.user_id ? byId.get(key.user_id) : undefined;
  const live = isLive(key);

  const save = async (body: UpdateKeyInput) => {
    const updated = await client.updateKey(key.id, body);
    queryClient.setQueryData(['key', key.id], updated);
    await queryClient.invalidateQueries({ queryKey: ['keys'] });
    await queryClient.invalidateQueries({ queryKey: ['audit'] });
    setEditing(false);
    notifications.show({ color: 'teal', message: 'Changes saved' });
  };

  return (
    <>
      <Breadcrumbs mb="sm" fz="sm" aria-label="Breadcrumb">
        <Anchor component={Link} to="/" size="sm">
          API keys
        </Anchor>
        <Text size="sm" c="dimmed" truncate maw={280}>
          {key.name}
        </Text>
      </Breadcrumbs>
      <PageHeader
        title={key.name}
        badge={
          <>
            <StatusBadge apiKey={key} />
            {leak && <LeakedBadge />}
          </>
        }
        description={
          <Text span ff="monospace" size="sm">
            {key.key_prefix}…
          </Text>
        }
        actions={
          canWrite && (
            <>
              {live && (
                <Button variant="default" leftSection={<IconRefresh size={16} aria-hidden />} onClick={() => run('roll', key)}>
                  Roll
                </Button>
              )}
              {key.status === 'active' && (
                <Button variant="default" leftSection={<IconPlayerPause size={16} aria-hidden />} onClick={() => run('deactivate', key)}>
                  Deactivate
                </Button>
              )}
              {key.status === 'inactive' && (
                <Button variant="default" leftSection={<IconPlayerPlay size={16} aria-hidden />} onClick={() => run('activate', key)}>
                  Activate
                </Button>
              )}
              {key.status !== 'revoked' && (
                <Button variant="light" color="red" leftSection={<IconBan size={16} aria-hidden />} onClick={() => run('revoke', key)}>
                  Revoke
                </Button>
              )}
              <Button variant="light" color="red" leftSection={<IconTrash size={16} aria-hidden />} onClick={() => run('delete', key)}>
                Delete
              </Button>
            </>
          )
        }
      />
      <Stack gap="lg">
        <Card withBorder radius="md" padding="lg">
          <Group justify="space-between" mb="md">
            <Title order={2} fz="md" fw={600}>
              {editing ? 'Edit key' : 'Details'}
            </Title>
            {canWrite && !editing && key.status !== 'revoked' && (
              <Button size="xs" variant="default" leftSection={<IconPencil size={14} aria-hidden />} onClick={() => setEditing(true)}>
                Edit
              </Button>
            )}
          </Group>
          {editing ? (
            <EditKeyForm apiKey={key} onSave={save} onCancel={() => setEditing(false)} />
          ) : (
            <KeyFields apiKey={key} ownerName={owner ? userLabel(owner) : undefined} leak={leak} />
          )}
        </Card>
        <SimpleGrid cols={{ base: 1, md: 3 }} spacing="lg">
          <div className="kw-span2">
            <UsageChart keyId={key.id} range={range} onRangeChange={setRange} />
          </div>
          <KeyEndpoints keyId={key.id} range={range} />
        </SimpleGrid>
        <RecentRequests keyId={key.id} keyName={key.name} />
        {role === 'admin' && <KeyAuditTrail keyId={key.id} />}
      </Stack>
      {dialogs}
    </>
  );
}
