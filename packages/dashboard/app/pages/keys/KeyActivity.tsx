import type { KeyActivity } from '@keyward/sdk';
import { Sparkline } from '@mantine/charts';
import { Group, Skeleton, Text, Tooltip } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useMemo } from 'react';
import { useSession } from '../../api/session';
import { formatCompact, formatNumber } from '../../components/format';

/** The most keys `GET /v1/analytics/keys/activity` answers for at once. */
export const MAX_ACTIVITY_KEYS = 100;

/** The last 24 hours of the keys on a page: by key id, with whether it is still loading or failed. */
export interface KeysActivityState {
  byId: ReadonlyMap<string, KeyActivity>;
  loading: boolean;
  failed: boolean;
}

/**
 * One request for the sparklines of a whole page of keys, keyed by the page's ids: a new page (or a changed
 * one) asks again, the same page is answered from the cache and refreshed every minute.
 */
export function useKeysActivity(ids: readonly string[]): KeysActivityState {
  const { client } = useSession();
  const pageIds = useMemo(() => [...new Set(ids)].slice(0, MAX_ACTIVITY_KEYS), [ids]);
  const query = useQuery({
    queryKey: ['keys', 'activity', pageIds],
    queryFn: () => client.getKeysActivity(pageIds),
    enabled: pageIds.length > 0,
    staleTime: 30_000,
    refetchInterval: 60_000,
  });
  const byId = useMemo(() => new Map((query.data?.data ?? []).map((entry) => [entry.key_id, entry])), [query.data]);
  return { byId, loading: pageIds.length > 0 && query.isPending, failed: query.isError };
}

export const activityLabel = (total: number): string =>
  `${formatNumber(total)} ${total === 1 ? 'verification' : 'verifications'} in the last 24 hours`;

/** A key's last 24 hours as a sparkline (one point per hour) and its total; an image named by the total. */
export function ActivitySparkline({ activity, loading = false }: { activity: KeyActivity | undefined; loading?: boolean }) {
  if (!activity) {
    if (loading)
      return (
        <>
          <Skeleton h={24} w={90} radius="sm" />
          <span className="kw-visually-hidden">Loading usage</span>
        </>
      );
    return (
      <Text size="sm" c="dimmed">
        <span aria-hidden>—</span>
        <span className="kw-visually-hidden">Usage not available</span>
      </Text>
    );
  }
  const label = activityLabel(activity.total);
  const idle = activity.total === 0;
  return (
    <Tooltip label={label} openDelay={200}>
      <Group gap={8} wrap="nowrap" role="img" aria-label={label} className="kw-sparkline" data-total={activity.total}>
        <Sparkline
          w={64}
          h={24}
          data={activity.buckets}
          color={idle ? 'gray.5' : 'teal.6'}
          curveType="monotone"
          fillOpacity={idle ? 0 : 0.35}
          strokeWidth={1.5}
        />
        <Text size="xs" c={idle ? 'dimmed' : undefined} fw={500} style={{ fontVariantNumeric: 'tabular-nums' }} aria-hidden>
          {formatCompact(activity.total)}
        </Text>
      </Group>
    </Tooltip>
  );
}
