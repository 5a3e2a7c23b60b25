import type { ApiKey } from '@keyward/sdk';
import { Anchor, Badge, Text } from '@mantine/core';
import { IconAlertTriangle } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { useSession } from '../../api/session';
import { TimeText } from '../../components/TimeText';
import { type AuditEntry, leakSourceLabel, webAddress } from '../audit/auditFormat';

/**
 * The `key.leaked` entry of a revoked key's audit trail, if a leak revoked it (or was reported after): GitHub's
 * secret scanning, a leak report or `keyward scan`. Only an admin reads the audit log, so only an admin learns it.
 */
export function useKeyLeak(key: Pick<ApiKey, 'id' | 'status'>): AuditEntry | undefined {
  const { client, role } = useSession();
  const leak = useQuery({
    // Under ['audit', 'key', id]: whatever refreshes the key's trail refreshes this too.
    queryKey: ['audit', 'key', key.id, 'leaked'],
    queryFn: () => client.listAuditLogs({ target_id: key.id, action: 'key.leaked', limit: 1 }),
    enabled: role === 'admin' && key.status === 'revoked',
    staleTime: 60_000,
  });
  return key.status === 'revoked' ? leak.data?.data[0] : undefined;
}

/** Beside a revoked key's status: it was leaked. */
export function LeakedBadge() {
  return (
    <Badge
      color="red"
      variant="light"
      radius="sm"
      size="md"
      tt="none"
      fw={600}
      data-leaked
      leftSection={<IconAlertTriangle size={13} aria-hidden />}
      style={{ flexShrink: 0 }}
    >
      Leaked
    </Badge>
  );
}

/** Where and when the leak was seen: "GitHub secret scanning (commit) · Jun 2, 2025, 14:05 · Where it was seen". */
export function LeakSummary({ entry }: { entry: AuditEntry }) {
  const { source, found_in: foundIn, location, url } = entry.changes as Record<string, unknown>;
  const href = webAddress(url);
  const where = typeof foundIn === 'string' ? ` (${foundIn.replace(/_/g, ' ')})` : typeof location === 'string' ? ` (${location})` : '';
  return (
    <>
      {leakSourceLabel(source)}
      {where} · <TimeText value={entry.created_at} mode="absolute" size="sm" />
      {href && (
        <>
          {' · '}
          <Anchor href={href} target="_blank" rel="noopener noreferrer" size="sm">
            Where it was seen
          </Anchor>
        </>
      )}
      <Text span size="xs" c="dimmed" display="block">
        Revoked at once. Issue a new key to whoever used it.
      </Text>
    </>
  );
}
