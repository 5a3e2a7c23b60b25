import { useQuery } from '@tanstack/react-query';
import { useSession } from '../../api/session';
import { EndpointBreakdown } from '../../components/EndpointBreakdown';
import { KEY_RANGES, type KeyRange, keyRangeStart } from './UsageChart';

/**
 * The key's requests by endpoint over the page's range (`GET /v1/api-keys/{id}/usage?group_by=endpoint`). Only
 * the totals are read, so one bucket a day is asked for: the fewest buckets for the same range.
 */
export function KeyEndpoints({ keyId, range }: { keyId: string; range: KeyRange }) {
  const { client } = useSession();
  const endpoints = useQuery({
    queryKey: ['key', keyId, 'usage', range, 'endpoints'],
    queryFn: () => client.getKeyUsage(keyId, { from: keyRangeStart(range), granularity: 'day', group_by: 'endpoint' }),
    placeholderData: (previous) => previous,
    refetchInterval: 60_000,
  });
  return <EndpointBreakdown totals={endpoints.data?.totals} error={endpoints.error} range={KEY_RANGES[range].description} />;
}
