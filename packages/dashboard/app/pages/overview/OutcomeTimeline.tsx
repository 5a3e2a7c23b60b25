import { BarChart } from '@mantine/charts';
import { Card, Group, Loader, Stack, Text, Title } from '@mantine/core';
import { IconChartBar } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { formatNumber } from '../../components/format';
import { outcomeSeries } from '../../components/outcomes';
import { chartData } from '../key-detail/UsageChart';

export type Range = '1h' | '24h' | '7d' | '30d';
type Granularity = 'minute' | 'hour' | 'day';

const BUCKET_MS: Record<Granularity, number> = { minute: 60e3, hour: 3600e3, day: 86_400e3 };

/** Each range in whole buckets (UTC), the last one the current: 1 h by minute, 24 h by hour, 7 and 30 d by day. */
export const RANGES: Record<Range, { label: string; granularity: Granularity; buckets: number; description: string }> = {
  '1h': { label: '1 h', granularity: 'minute', buckets: 60, description: 'the last hour' },
  '24h': { label: '24 h', granularity: 'hour', buckets: 24, description: 'the last 24 hours' },
  '7d': { label: '7 d', granularity: 'day', buckets: 7, description: 'the last 7 days' },
  '30d': { label: '30 d', granularity: 'day', buckets: 30, description: 'the last 30 days' },
};

/** The start of a range: the first of its buckets, so every bar covers a whole minute, hour or day. */
export function rangeStart(range: Range, now = Date.now()): string {
  const { granularity, buckets } = RANGES[range];
  const size = BUCKET_MS[granularity];
  return new Date(Math.floor(now / size) * size - (buckets - 1) * size).toISOString();
}

const PER: Record<Granularity, string> = { minute: 'per minute', hour: 'per hour', day: 'per day (UTC)' };

/** Verifications by outcome over time, stacked per bucket (`GET /v1/analytics/verifications/series`). */
export function OutcomeTimeline({ range }: { range: Range }) {
  const { client } = useSession();
  const { granularity, description } = RANGES[range];
  const series = useQuery({
    queryKey: ['analytics', 'series', range],
    queryFn: () => client.getVerificationSeries({ from: rangeStart(range), granularity }),
    placeholderData: (previous) => previous,
    refetchInterval: 60_000,
  });
  // While another range loads, the previous one stays on screen (its own granularity labels its bars).
  const data = series.data;
  const shown = data?.granularity ?? granularity;
  const outcomes = outcomeSeries(['VALID', ...Object.keys(data?.totals.outcomes ?? {})]);

  return (
    <Card withBorder radius="md" padding="lg">
      <Group justify="space-between" align="flex-start" mb="md" gap="sm">
        <Stack gap={2}>
          <Title order={2} fz="md" fw={600}>
            Verifications over time
          </Title>
          <Text size="sm" c="dimmed">
            By outcome, {PER[shown]}
          </Text>
        </Stack>
        {series.isFetching && data && <Loader size="xs" aria-label="Updating the chart" />}
      </Group>
      {series.isError ? (
        <EmptyState icon={<IconChartBar size={22} />} title="The chart could not be loaded">
          {errorMessage(series.error)}
        </EmptyState>
      ) : !data ? (
        <Group justify="center" h={260}>
          <Loader size="sm" aria-label="Loading the chart" />
        </Group>
      ) : data.totals.total === 0 ? (
        <EmptyState icon={<IconChartBar size={22} />} title={`No verifications in ${description}`}>
          Verify a key with POST /v1/keys/verify, or put the SDK middleware in front of your API: each verification shows here by outcome.
        </EmptyState>
      ) : (
        <div
          role="img"
          className="kw-timeline"
          aria-label={`Verifications by outcome over ${description}, ${PER[shown]}: ${outcomes
            .map((s) => `${s.label} ${formatNumber(data.totals.outcomes[s.name] ?? 0)}`)
            .join(', ')}`}
        >
          <BarChart
            h={220}
            data={chartData(data, shown)}
            dataKey="bucket"
            type="stacked"
            series={outcomes}
            withLegend
            legendProps={{ verticalAlign: 'bottom', height: 40 }}
            tickLine="none"
            gridAxis="x"
            barProps={{ radius: 2 }}
            maxBarWidth={28}
            valueFormatter={formatNumber}
            xAxisProps={{ minTickGap: 24 }}
            yAxisProps={{ allowDecimals: false, width: 44 }}
          />
        </div>
      )}
    </Card>
  );
}
