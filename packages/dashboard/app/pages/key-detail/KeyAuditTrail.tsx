import { Anchor, Card, Group, Loader, Stack, Text, Timeline, Title } from '@mantine/core';
import { IconHistory } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { errorMessage, isStatus } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { TimeText } from '../../components/TimeText';
import { ActionBadge, AuditChanges, actorLabel } from '../audit/auditFormat';

/** The key's audit trail: every change to it, newest first. */
export function KeyAuditTrail({ keyId }: { keyId: string }) {
  const { client, role } = useSession();
  const trail = useQuery({
    queryKey: ['audit', 'key', keyId],
    queryFn: () => client.listAuditLogs({ target_id: keyId, limit: 25 }),
    enabled: role === 'admin',
  });
  return (
    <Card withBorder radius="md" padding="lg">
      <Group justify="space-between" mb="md">
        <Title order={2} fz="md" fw={600}>
          Audit trail
        </Title>
        {role === 'admin' && (
          <Anchor component={Link} to={`/audit?target=${keyId}`} size="sm">
            Open in audit log
          </Anchor>
        )}
      </Group>
      {role !== 'admin' ? (
        <Text size="sm" c="dimmed">
          The audit trail needs an admin key.
        </Text>
      ) : trail.isError ? (
        <EmptyState icon={<IconHistory size={22} />} title="The audit trail could not be loaded">
          {isStatus(trail.error, 403) ? 'This credential may not read the audit log.' : errorMessage(trail.error)}
        </EmptyState>
      ) : trail.isPending ? (
        <Loader size="sm" aria-label="Loading the audit trail" />
      ) : trail.data.data.length === 0 ? (
        <Text size="sm" c="dimmed">
          No change recorded.
        </Text>
      ) : (
        <Timeline bulletSize={12} lineWidth={2} active={-1} data-testid="audit-trail">
          {trail.data.data.map((entry) => (
            <Timeline.Item key={entry.id} bullet={null}>
              <Stack gap={4}>
                <Group gap="xs" wrap="wrap">
                  <ActionBadge action={entry.action} />
                  <Text size="xs" c="dimmed">
                    by {actorLabel(entry)} · <TimeText value={entry.created_at} size="xs" />
                    {entry.ip ? ` · ${entry.ip}` : ''}
                  </Text>
                </Group>
                <AuditChanges changes={entry.changes} action={entry.action} />
              </Stack>
            </Timeline.Item>
          ))}
        </Timeline>
      )}
    </Card>
  );
}
