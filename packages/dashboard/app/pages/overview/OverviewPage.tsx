import { DonutChart } from '@mantine/charts';
import { Anchor, Card, Group, Loader, SegmentedControl, SimpleGrid, Stack, Table, Text, Title, Tooltip } from '@mantine/core';
import { IconChartDonut } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { Link } from 'react-router';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { EndpointBreakdown } from '../../components/EndpointBreakdown';
import { formatCompact, formatNumber } from '../../components/format';
import { mantineColor, OUTCOME_COLORS, outcomeLabel, outcomeSeries } from '../../components/outcomes';
import { PageHeader } from '../../components/PageHeader';
import { OutcomeTimeline, RANGES, type Range, rangeStart } from './OutcomeTimeline';

/** A key's outcomes as one stacked bar (an image with the counts as its name). */
function OutcomeBar({ outcomes, total, label }: { outcomes: Record<string, number>; total: number; label: string }) {
  const series = outcomeSeries(Object.keys(outcomes));
  return (
    <div
      className="kw-outcome-bar"
      role="img"
      aria-label={`Outcomes of ${label}: ${series.map((s) => `${outcomeLabel(s.name)} ${formatNumber(outcomes[s.name] ?? 0)}`).join(', ')}`}
    >
      {series.map((s) => (
        <Tooltip key={s.name} label={`${outcomeLabel(s.name)}: ${formatNumber(outcomes[s.name] ?? 0)}`}>
          <span
            style={{
              width: `${((outcomes[s.name] ?? 0) / Math.max(total, 1)) * 100}%`,
              background: mantineColor(OUTCOME_COLORS[s.name] ?? 'gray.4'),
            }}
          />
        </Tooltip>
      ))}
    </div>
  );
}

function Stat({ label, value, hint, color }: { label: string; value: string; hint?: string; color?: string }) {
  return (
    <Card withBorder radius="md" padding="lg">
      <Text size="xs" c="dimmed" fw={500} tt="uppercase" style={{ letterSpacing: 0.4 }}>
        {label}
      </Text>
      <Text fz={28} fw={650} mt={4} c={color} style={{ fontVariantNumeric: 'tabular-nums' }}>
        {value}
      </Text>
      {hint && (
        <Text size="xs" c="dimmed" mt={2}>
          {hint}
        </Text>
      )}
    </Card>
  );
}

/**
 * Requests by endpoint across every key over the page's range (the series, `group_by=endpoint`). Only the
 * totals are read, so one bucket a day is asked for: the fewest buckets for the same range.
 */
function TopEndpoints({ range }: { range: Range }) {
  const { client } = useSession();
  const endpoints = useQuery({
    queryKey: ['analytics', 'endpoints', range],
    queryFn: () => client.getVerificationSeries({ from: rangeStart(range), granularity: 'day', group_by: 'endpoint' }),
    placeholderData: (previous) => previous,
    refetchInterval: 60_000,
  });
  return <EndpointBreakdown totals={endpoints.data?.totals} error={endpoints.error} range={RANGES[range].description} />;
}

export function OverviewPage() {
  const { client } = useSession();
  const [range, setRange] = useState<Range>('24h');
  const analytics = useQuery({
    queryKey: ['analytics', range],
    // The same whole buckets as the chart, so the totals here are the sums of its bars.
    queryFn: () => client.getVerificationAnalytics({ from: rangeStart(range), limit: 10 }),
    placeholderData: (p) => p,
    refetchInterval: 60_000,
  });
  const data = analytics.data;
  const total = data?.totals.total ?? 0;
  const outcomes = data?.totals.outcomes ?? {};
  const valid = outcomes.VALID ?? 0;
  const limited = (outcomes.RATE_LIMITED ?? 0) + (outcomes.USAGE_EXCEEDED ?? 0);
  const pct = (n: number) => (total ? `${((n / total) * 100).toFixed(1)}%` : '—');
  const donut = outcomeSeries(Object.keys(outcomes)).map((s) => ({ name: s.label, value: outcomes[s.name] ?? 0, color: s.color }));

  return (
    <>
      <PageHeader
        title="Overview"
        description={`Verifications across every key in ${RANGES[range].description}.`}
        actions={
          <SegmentedControl
            aria-label="Range"
            value={range}
            onChange={(v) => setRange(v as Range)}
            data={(Object.keys(RANGES) as Range[]).map((value) => ({ value, label: RANGES[value].label }))}
          />
        }
      />
      {analytics.isError ? (
        <Card withBorder radius="md">
          <EmptyState icon={<IconChartDonut size={22} />} title="Analytics could not be loaded">
            {errorMessage(analytics.error)}
          </EmptyState>
        </Card>
      ) : !data ? (
        <Group justify="center" py={96}>
          <Loader size="sm" aria-label="Loading analytics" />
        </Group>
      ) : (
        <Stack gap="lg">
          <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }} spacing="lg">
            <Stat label="Verifications" value={formatCompact(total)} hint={formatNumber(total)} />
            <Stat label="Valid" value={pct(valid)} hint={`${formatNumber(valid)} accepted`} color="teal" />
            <Stat
              label="Refused"
              value={formatCompact(total - valid)}
              hint={`${pct(total - valid)} of all`}
              color={total - valid ? 'red' : undefined}
            />
            <Stat
              label="Limited"
              value={formatCompact(limited)}
              hint="Rate limit or quota reached"
              color={limited ? 'orange' : undefined}
            />
          </SimpleGrid>
          <OutcomeTimeline range={range} />
          <SimpleGrid cols={{ base: 1, md: 3 }} spacing="lg">
            <Card withBorder radius="md" padding="lg">
              <Title order={2} fz="md" fw={600} mb="md">
                By outcome
              </Title>
              {total === 0 ? (
                <Text size="sm" c="dimmed">
                  No verification in this range. Verify a key with POST /v1/keys/verify, or put the SDK middleware in front of your API.
                </Text>
              ) : (
                <Stack align="center" gap="md">
                  <div
                    role="img"
                    aria-label={`Verifications by outcome: ${donut.map((d) => `${d.name} ${formatNumber(d.value)}`).join(', ')}`}
                  >
                    <DonutChart
                      data={donut}
                      size={160}
                      thickness={22}
                      withTooltip
                      tooltipDataSource="segment"
                      chartLabel={formatCompact(total)}
                    />
                  </div>
                  <Stack gap={6} w="100%">
                    {donut.map((d) => (
                      <Group key={d.name} justify="space-between" gap="xs">
                        <Group gap={8}>
                          <span className="kw-swatch" style={{ background: mantineColor(d.color) }} aria-hidden />
                          <Text size="sm">{d.name}</Text>
                        </Group>
                        <Text size="sm" c="dimmed" style={{ fontVariantNumeric: 'tabular-nums' }}>
                          {formatNumber(d.value)}
                        </Text>
                      </Group>
                    ))}
                  </Stack>
                </Stack>
              )}
            </Card>
            <Card withBorder radius="md" padding={0} className="kw-span2">
              <Title order={2} fz="md" fw={600} p="lg" pb="sm">
                Top keys
              </Title>
              {data.top_keys.length === 0 ? (
                <Text size="sm" c="dimmed" px="lg" pb="lg">
                  The busiest keys show here once keys are verified.
                </Text>
              ) : (
                <Table.ScrollContainer minWidth={460} type="native">
                  <Table verticalSpacing="sm" horizontalSpacing="lg" className="kw-table">
                    <Table.Thead>
                      <Table.Tr>
                        <Table.Th>Key</Table.Th>
                        <Table.Th ta="right">Verifications</Table.Th>
                        <Table.Th w="40%">Outcomes</Table.Th>
                      </Table.Tr>
                    </Table.Thead>
                    <Table.Tbody>
                      {data.top_keys.map((k) => (
                        <Table.Tr key={k.key_id}>
                          <Table.Td>
                            {k.name ? (
                              <Anchor component={Link} to={`/keys/${k.key_id}`} size="sm" fw={550}>
                                {k.name}
                              </Anchor>
                            ) : (
                              <Text size="sm" c="dimmed">
                                Deleted key
                              </Text>
                            )}
                            <Text size="xs" ff="monospace" c="dimmed">
                              {k.key_prefix ? `${k.key_prefix}…` : k.key_id.slice(0, 8)}
                            </Text>
                          </Table.Td>
                          <Table.Td ta="right" style={{ fontVariantNumeric: 'tabular-nums' }}>
                            <Text size="sm">{formatNumber(k.total)}</Text>
                          </Table.Td>
                          <Table.Td>
                            <OutcomeBar outcomes={k.outcomes} total={k.total} label={k.name ?? 'deleted key'} />
                          </Table.Td>
                        </Table.Tr>
                      ))}
                    </Table.Tbody>
                  </Table>
                </Table.ScrollContainer>
              )}
            </Card>
          </SimpleGrid>
          <TopEndpoints range={range} />
        </Stack>
      )}
    </>
  );
}
