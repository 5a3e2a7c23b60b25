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

type Range = '1h' | '24h' | '7d' | '30d';
type Granularity = 'minute' | 'hour' | 'day';
const RANGE_MS: Record<Range, number> = { '1h': 3600e3, '24h': 86_400e3, '7d': 7 * 86_400e3, '30d': 30 * 86_400e3 };
const GRANULARITIES: Record<Range, Granularity[]> = { '1h': ['minute'], '24h': ['hour'], '7d': ['hour', 'day'], '30d': ['day'] };

/** Colours per verification code (the rest get gray). */
export const OUTCOME_COLORS: Record<string, string> = {
  VALID: 'teal.6',
  RATE_LIMITED: 'yellow.6',
  USAGE_EXCEEDED: 'orange.6',
  INSUFFICIENT_SCOPES: 'grape.5',
  EXPIRED: 'gray.5',
  DISABLED: 'gray.6',
  REVOKED: 'red.6',
  NOT_FOUND: 'red.4',
  INVALID_FORMAT: 'pink.5',
};
export const outcomeLabel = (code: string): string => code.charAt(0) + code.slice(1).toLowerCase().replace(/_/g, ' ');

export const outcomeSeries = (codes: Iterable<string>) =>
  [...new Set(codes)]
    .sort((a, b) => (a === 'VALID' ? -1 : b === 'VALID' ? 1 : a.localeCompare(b)))
    .map((code) => ({ name: code, label: outcomeLabel(code), color: OUTCOME_COLORS[code] ?? 'gray.4' }));

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

/** A key's verifications by outcome over time, with a range picker and hour/day granularity. */
export function UsageChart({ keyId }: { keyId: string }) {
  const { client } = useSession();
  const [range, setRange] = useState<Range>('24h');
  const [granularity, setGranularity] = useState<Granularity>('hour');
  const allowed = GRANULARITIES[range];
  const effective = allowed.includes(granularity) ? granularity : (allowed[0] as Granularity);

  const usage = useQuery({
    queryKey: ['key', keyId, 'usage', range, effective],
    queryFn: () => {
      const to = new Date();
      return client.getKeyUsage(keyId, { from: new Date(to.getTime() - RANGE_MS[range]).toISOString(), granularity: effective });
    },
    placeholderData: (previous) => previous,
    refetchInterval: 60_000,
  });
  const data = usage.data;
  const series = outcomeSeries(['VALID', ...Object.keys(data?.totals.outcomes ?? {})]);
  const failed = data ? data.totals.total - (data.totals.outcomes.VALID ?? 0) : 0;

  return (
    <Card withBorder radius="md" padding="lg">
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
            onChange={(value) => setRange(value as Range)}
            data={[
              { value: '1h', label: '1 h' },
              { value: '24h', label: '24 h' },
              { value: '7d', label: '7 d' },
              { value: '30d', label: '30 d' },
            ]}
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
