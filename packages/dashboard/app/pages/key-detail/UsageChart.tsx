import type { KeyUsage } from '@keyward/sdk';
import { BarChart } from '@mantine/charts';
import { Card, Group, Loader, SegmentedControl, Stack, Text, Title } from '@mantine/core';
import { IconChartBar } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { formatNumber } from '../../components/format';
import { outcomeSeries } from '../../components/outcomes';

/** The ranges of a key's page: its usage chart and its endpoints cover the same one. */
export type KeyRange = '1h' | '24h' | '7d' | '30d';
type Granularity = 'minute' | 'hour' | 'day';
export const KEY_RANGES: Record<KeyRange, { label: string; ms: number; description: string }> = {
  '1h': { label: '1 h', ms: 3600e3, description: 'the last hour' },
  '24h': { label: '24 h', ms: 86_400e3, description: 'the last 24 hours' },
  '7d': { label: '7 d', ms: 7 * 86_400e3, description: 'the last 7 days' },
  '30d': { label: '30 d', ms: 30 * 86_400e3, description: 'the last 30 days' },
};
const GRANULARITIES: Record<KeyRange, Granularity[]> = { '1h': ['minute'], '24h': ['hour'], '7d': ['hour', 'day'], '30d': ['day'] };

/** The start of a key page's range, counted back from now. */
export const keyRangeStart = (range: KeyRange, now = Date.now()): string => new Date(now - KEY_RANGES[range].ms).toISOString();

function bucketLabel(iso: string, granularity: Granularity): string {
  const d = new Date(iso);
  // Days are UTC days: named as such, not as the local date their first instant falls on.
  if (granularity === 'day') return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
  if (granularity === 'hour') return d.toLocaleString(undefined, { weekday: 'short', hour: '2-digit', minute: '2-digit' });
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** One row per bucket for a stacked chart (a key's usage or the verification series: the same buckets). */
export function chartData(usage: Pick<KeyUsage, 'buckets'>, granularity: Granularity) {
  return usage.buckets.map((bucket) => ({ bucket: bucketLabel(bucket.start, granularity), ...bucket.outcomes }));
}

/** A key's verifications by outcome over time, with the page's range picker and hour/day granularity. */
export function UsageChart({ keyId, range, onRangeChange }: { keyId: string; range: KeyRange; onRangeChange: (range: KeyRange) => void }) {
  const { client } = useSession();
  const [granularity, setGranularity] = useState<Granularity>('hour');
  const allowed = GRANULARITIES[range];
  const effective = allowed.includes(granularity) ? granularity : (allowed[0] as Granularity);

  const usage = useQuery({
    queryKey: ['key', keyId, 'usage', range, effective],
    queryFn: () => client.getKeyUsage(keyId, { from: keyRangeStart(range), granularity: effective }),
    placeholderData: (previous) => previous,
    refetchInterval: 60_000,
  });
  const data = usage.data;
  const series = outcomeSeries(['VALID', ...Object.keys(data?.totals.outcomes ?? {})]);
  const failed = data ? data.totals.total - (data.totals.outcomes.VALID ?? 0) : 0;

  return (
    <Card withBorder radius="md" padding="lg" h="100%">
      <Group justify="space-between" align="flex-start" mb="md" gap="sm">
        <Stack gap={2}>
          <Title order={2} fz="md" fw={600}>
            Usage
          </Title>
          <Text size="sm" c="dimmed">
            {data ? (
              <>
                {formatNumber(data.totals.total)} {data.totals.total === 1 ? 'verification' : 'verifications'} · {formatNumber(failed)}{' '}
                refused
              </>
            ) : (
              'Verifications by outcome'
            )}
          </Text>
        </Stack>
        <Group gap="xs">
          <SegmentedControl
            size="xs"
            aria-label="Range"
            value={range}
            onChange={(value) => onRangeChange(value as KeyRange)}
            data={(Object.keys(KEY_RANGES) as KeyRange[]).map((value) => ({ value, label: KEY_RANGES[value].label }))}
          />
          <SegmentedControl
            size="xs"
            aria-label="Granularity"
            value={effective}
            onChange={(value) => setGranularity(value as Granularity)}
            data={(['minute', 'hour', 'day'] as const).map((g) => ({
              value: g,
              label: g.charAt(0).toUpperCase() + g.slice(1),
              disabled: !allowed.includes(g),
            }))}
          />
        </Group>
      </Group>
      {usage.isError ? (
        <EmptyState icon={<IconChartBar size={22} />} title="Usage could not be loaded">
          {errorMessage(usage.error)}
        </EmptyState>
      ) : !data ? (
        <Group justify="center" h={240}>
          <Loader size="sm" aria-label="Loading usage" />
        </Group>
      ) : data.totals.total === 0 ? (
        <EmptyState icon={<IconChartBar size={22} />} title="No verifications in this range">
          Requests made with this key show here, by outcome, once they are verified.
        </EmptyState>
      ) : (
        <div
          role="img"
          aria-label={`Verifications by outcome over time: ${series.map((s) => `${s.label} ${formatNumber(data.totals.outcomes[s.name] ?? 0)}`).join(', ')}`}
        >
          <BarChart
            h={240}
            data={chartData(data, effective)}
            dataKey="bucket"
            type="stacked"
            series={series}
            withLegend
            legendProps={{ verticalAlign: 'bottom', height: 40 }}
            tickLine="none"
            gridAxis="y"
            barProps={{ radius: 2 }}
            valueFormatter={formatNumber}
            xAxisProps={{ minTickGap: 24 }}
            yAxisProps={{ allowDecimals: false }}
          />
        </div>
      )}
    </Card>
  );
}
