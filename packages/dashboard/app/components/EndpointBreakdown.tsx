import { Button, Card, Group, Loader, Stack, Table, Text, Title } from '@mantine/core';
import { IconRoute } from '@tabler/icons-react';
import { useId, useState } from 'react';
import { errorMessage } from '../api/errors';
import { EmptyState } from './EmptyState';
import { formatNumber, formatShare } from './format';

/** Endpoints shown before "Show all". */
export const TOP_ENDPOINTS = 8;

/** What the series or a key's usage answers with `group_by=endpoint`: its totals over the range. */
export interface EndpointTotals {
  total: number;
  groups?: Record<string, number>;
}

interface Line {
  key: string;
  label: string;
  count: number;
  /** Not a path: rows with none, or the groups past the 50 the server names. */
  other?: boolean;
}

/**
 * The endpoints by count, largest first: the `""` group (rows reported without a path) by a name,
 * and what the named groups leave of the total (the server names the 50 largest) as "Other endpoints".
 */
export function endpointLines(totals: EndpointTotals): Line[] {
  const groups = Object.entries(totals.groups ?? {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const lines: Line[] = groups.map(([path, count]) =>
    path === '' ? { key: '', label: 'No endpoint', count, other: true } : { key: path, label: path, count },
  );
  const rest = totals.total - groups.reduce((sum, [, count]) => sum + count, 0);
  if (rest > 0) lines.push({ key: '\u0000other', label: 'Other endpoints', count: rest, other: true });
  return lines;
}

/**
 * Requests by endpoint over a range: a bar list of the top endpoints (a bar behind each path, as long as its
 * count against the largest), with each one's count and share of all requests. `range` completes "in …".
 */
export function EndpointBreakdown({
  totals,
  error,
  range,
}: {
  /** Undefined while loading. */
  totals: EndpointTotals | undefined;
  error: unknown;
  range: string;
}) {
  const titleId = useId();
  const [all, setAll] = useState(false);
  const lines = totals ? endpointLines(totals) : [];
  const shown = all ? lines : lines.slice(0, TOP_ENDPOINTS);
  const largest = Math.max(1, ...lines.map((line) => line.count));

  return (
    <Card withBorder radius="md" padding={0} h="100%">
      <Stack gap={2} p="lg" pb="sm">
        <Title order={2} fz="md" fw={600} id={titleId}>
          Top endpoints
        </Title>
        <Text size="sm" c="dimmed">
          Requests by path in {range}
        </Text>
      </Stack>
      {error ? (
        <EmptyState icon={<IconRoute size={22} />} title="Endpoints could not be loaded">
          {errorMessage(error)}
        </EmptyState>
      ) : !totals ? (
        <Group justify="center" py={48}>
          <Loader size="sm" aria-label="Loading endpoints" />
        </Group>
      ) : totals.total === 0 ? (
        <EmptyState icon={<IconRoute size={22} />} title={`No requests in ${range}`}>
          Paths show here once your service reports its requests through the SDK middleware or the gateway.
        </EmptyState>
      ) : (
        <>
          <Table layout="fixed" verticalSpacing={4} horizontalSpacing="md" className="kw-table" aria-labelledby={titleId}>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Endpoint</Table.Th>
                <Table.Th ta="right" w={116}>
                  Requests
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {shown.map((line) => (
                <Table.Tr key={line.key} data-endpoint={line.key}>
                  <Table.Td>
                    {/* A bar behind the path, as long as its count against the largest. */}
                    <div className="kw-bar-cell" data-other={line.other || undefined}>
                      <span className="kw-bar" style={{ width: `${(line.count / largest) * 100}%` }} aria-hidden />
                      {line.other ? (
                        <Text size="sm" c="dimmed" truncate>
                          {line.label}
                        </Text>
                      ) : (
                        <Text ff="monospace" fz="xs" truncate title={line.label}>
                          {line.label}
                        </Text>
                      )}
                    </div>
                  </Table.Td>
                  <Table.Td style={{ fontVariantNumeric: 'tabular-nums' }}>
                    <Group gap={8} justify="flex-end" wrap="nowrap">
                      <Text size="sm">{formatNumber(line.count)}</Text>
                      <Text size="xs" c="dimmed" w={40} ta="right">
                        {formatShare(line.count, totals.total)}
                      </Text>
                    </Group>
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
          <Group justify="space-between" px="lg" py="sm" className="kw-table-footer">
            <Text size="xs" c="dimmed">
              {formatNumber(totals.total)} {totals.total === 1 ? 'request' : 'requests'}
            </Text>
            {lines.length > TOP_ENDPOINTS && (
              <Button size="compact-xs" variant="subtle" onClick={() => setAll((v) => !v)}>
                {all ? 'Show fewer' : `Show all ${lines.length}`}
              </Button>
            )}
          </Group>
        </>
      )}
    </Card>
  );
}
