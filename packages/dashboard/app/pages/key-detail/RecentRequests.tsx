import type { UsageEventsQuery, UsageRow } from '@keyward/sdk';
import { Alert, Badge, Button, Card, Group, Loader, Select, Stack, Table, Text, Title } from '@mantine/core';
import { IconDownload, IconListSearch } from '@tabler/icons-react';
import { keepPreviousData, useInfiniteQuery } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { errorMessage, isStatus } from '../../api/errors';
import { useSession } from '../../api/session';
import { fileSlug, saveFile } from '../../components/download';
import { EmptyState } from '../../components/EmptyState';
import { formatMs, formatNumber } from '../../components/format';
import { mantineColor, OUTCOME_COLORS, OUTCOMES, outcomeLabel } from '../../components/outcomes';
import { RefreshButton } from '../../components/RefreshButton';
import { ScopeList } from '../../components/ScopeList';
import { TimeText } from '../../components/TimeText';

/** Rows a page asks for; "Load more" asks for as many again. */
export const REQUESTS_PAGE_SIZE = 25;

const ANY = 'any';
/** Every code but VALID: the API takes several codes separated by commas. */
export const REFUSED = OUTCOMES.filter((code) => code !== 'VALID').join(',');

const OUTCOME_FILTERS = [
  { value: ANY, label: 'Any outcome' },
  { value: 'VALID', label: 'Valid' },
  { value: REFUSED, label: 'Refused (any reason)' },
  ...OUTCOMES.filter((code) => code !== 'VALID').map((code) => ({ value: code, label: outcomeLabel(code) })),
];

const STATUS_FILTERS = [
  { value: ANY, label: 'Any status' },
  { value: '2xx', label: '2xx success' },
  { value: '3xx', label: '3xx redirect' },
  { value: '4xx', label: '4xx client error' },
  { value: '5xx', label: '5xx server error' },
];

const STATUS_CLASS_COLOR: Record<number, string> = { 1: 'gray.6', 2: 'teal.6', 3: 'blue.6', 4: 'orange.6', 5: 'red.6' };

/** The status the host answered, its class as a coloured dot (the number says it too). */
function StatusCode({ status }: { status: number | null }) {
  if (status === null) {
    return (
      <Text size="sm" c="dimmed">
        —
      </Text>
    );
  }
  return (
    <Group gap={6} wrap="nowrap" data-status-class={`${Math.floor(status / 100)}xx`}>
      <span
        className="kw-status-dot"
        style={{ color: mantineColor(STATUS_CLASS_COLOR[Math.floor(status / 100)] ?? 'gray.6') }}
        aria-hidden
      />
      <Text span ff="monospace" fz="xs" fw={600}>
        {status}
      </Text>
    </Group>
  );
}

export function OutcomeBadge({ outcome }: { outcome: string }) {
  const color = (OUTCOME_COLORS[outcome] ?? 'gray').split('.')[0];
  return (
    <Badge variant="light" color={color} radius="sm" size="sm" tt="none" fw={600} style={{ flexShrink: 0 }}>
      {outcomeLabel(outcome)}
    </Badge>
  );
}

function RequestRow({ row }: { row: UsageRow }) {
  return (
    <Table.Tr data-row-id={row.id}>
      <Table.Td style={{ whiteSpace: 'nowrap' }}>
        <TimeText value={row.created_at} mode="precise" size="sm" style={{ fontVariantNumeric: 'tabular-nums' }} />
      </Table.Td>
      <Table.Td>
        <Text ff="monospace" fz="xs" fw={600} c={row.method ? undefined : 'dimmed'}>
          {row.method ?? '—'}
        </Text>
      </Table.Td>
      <Table.Td maw={320}>
        {row.endpoint ? (
          <Text ff="monospace" fz="xs" truncate title={row.endpoint}>
            {row.endpoint}
          </Text>
        ) : (
          <Text size="sm" c="dimmed">
            No endpoint
          </Text>
        )}
      </Table.Td>
      <Table.Td>
        <StatusCode status={row.status_code} />
      </Table.Td>
      <Table.Td>
        <OutcomeBadge outcome={row.outcome} />
      </Table.Td>
      <Table.Td ta="right" style={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
        <Text size="sm" c={row.response_time_ms === null ? 'dimmed' : undefined}>
          {row.response_time_ms === null ? '—' : formatMs(row.response_time_ms)}
        </Text>
      </Table.Td>
      <Table.Td>
        <Text ff="monospace" fz="xs" c="dimmed" style={{ whiteSpace: 'nowrap' }}>
          {row.ip_address ?? '—'}
        </Text>
      </Table.Td>
      <Table.Td maw={260}>
        <ScopeList scopes={row.tags} max={2} empty="—" />
      </Table.Td>
    </Table.Tr>
  );
}

/**
 * The key's recent requests (`GET /v1/usage/events?key_id=…`), newest first: filters for the outcome and the
 * status class, "Load more" along `next_cursor`, and the same selection as a CSV download.
 */
export function RecentRequests({ keyId, keyName }: { keyId: string; keyName: string }) {
  const { client } = useSession();
  const titleId = useId();
  const [outcome, setOutcome] = useState(ANY);
  const [status, setStatus] = useState(ANY);
  const [downloading, setDownloading] = useState(false);
  const [downloadError, setDownloadError] = useState<string | null>(null);

  const filters: Omit<UsageEventsQuery, 'limit' | 'cursor'> = {
    key_id: keyId,
    ...(outcome !== ANY ? { outcome } : {}),
    ...(status !== ANY ? { status } : {}),
  };
  const filtered = outcome !== ANY || status !== ANY;
  const requests = useInfiniteQuery({
    queryKey: ['key', keyId, 'requests', filters],
    queryFn: ({ pageParam }) =>
      client.listUsageEvents({ ...filters, limit: REQUESTS_PAGE_SIZE, ...(pageParam ? { cursor: pageParam } : {}) }),
    initialPageParam: '',
    getNextPageParam: (page) => page.next_cursor ?? undefined,
    // A new filter keeps the rows on screen until its first page comes.
    placeholderData: keepPreviousData,
  });
  const rows = requests.data?.pages.flatMap((page) => page.data) ?? [];
  const more = requests.hasNextPage && !requests.isPlaceholderData;

  const download = async () => {
    setDownloading(true);
    setDownloadError(null);
    try {
      const body = await client.exportUsageEvents({ ...filters, format: 'csv' });
      const csv = await new Response(body).text();
      saveFile(csv, `usage-${fileSlug(keyName)}-${new Date().toISOString().slice(0, 10)}.csv`, 'text/csv;charset=utf-8');
    } catch (error) {
      setDownloadError(errorMessage(error));
    } finally {
      setDownloading(false);
    }
  };

  const loadMore = (
    <Button variant="default" size="xs" onClick={() => requests.fetchNextPage()} loading={requests.isFetchingNextPage} disabled={!more}>
      {rows.length === 0 ? 'Search older requests' : 'Load more'}
    </Button>
  );

  return (
    <Card withBorder radius="md" padding={0}>
      <Group justify="space-between" align="flex-start" p="lg" pb="md" gap="sm">
        <Stack gap={2}>
          <Title order={2} fz="md" fw={600} id={titleId}>
            Recent requests
          </Title>
          <Text size="sm" c="dimmed">
            Each request made with this key, newest first
          </Text>
        </Stack>
        <Group gap="xs" wrap="wrap">
          <Select
            size="xs"
            w={190}
            aria-label="Outcome"
            data={OUTCOME_FILTERS}
            value={outcome}
            onChange={(value) => setOutcome(value ?? ANY)}
            allowDeselect={false}
          />
          <Select
            size="xs"
            w={160}
            aria-label="Status"
            data={STATUS_FILTERS}
            value={status}
            onChange={(value) => setStatus(value ?? ANY)}
            allowDeselect={false}
          />
          <RefreshButton
            label="Refresh"
            onClick={() => requests.refetch()}
            loading={requests.isRefetching && !requests.isFetchingNextPage}
          />
          <Button size="xs" variant="default" leftSection={<IconDownload size={14} aria-hidden />} onClick={download} loading={downloading}>
            Download CSV
          </Button>
        </Group>
      </Group>
      {downloadError && (
        <Alert color="red" variant="light" mx="lg" mb="md" role="alert" withCloseButton onClose={() => setDownloadError(null)}>
          The CSV could not be downloaded: {downloadError}
        </Alert>
      )}
      {requests.isError ? (
        <EmptyState icon={<IconListSearch size={22} />} title="Requests could not be loaded">
          {isStatus(requests.error, 403) ? 'This credential may not read this key’s requests.' : errorMessage(requests.error)}
        </EmptyState>
      ) : requests.isPending ? (
        <Group justify="center" py={48}>
          <Loader size="sm" aria-label="Loading requests" />
        </Group>
      ) : rows.length === 0 ? (
        <EmptyState
          icon={<IconListSearch size={22} />}
          title={more ? 'No match among the newest requests' : filtered ? 'No request matches' : 'No requests yet'}
          action={more ? loadMore : undefined}
        >
          {more
            ? 'Keyward looked through the newest rows and found none that matches. Older ones may.'
            : filtered
              ? 'Choose another outcome or status.'
              : 'Requests made with this key show here once your service reports them (the SDK middleware or the gateway does), as do direct verifications.'}
        </EmptyState>
      ) : (
        <>
          {/* Scrolls sideways on a narrow screen: focusable, so a keyboard scrolls it too. */}
          <Table.ScrollContainer minWidth={960} type="native" tabIndex={0} role="region" aria-labelledby={titleId}>
            <Table verticalSpacing="xs" horizontalSpacing="md" className="kw-table" aria-labelledby={titleId}>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Time</Table.Th>
                  <Table.Th>Method</Table.Th>
                  <Table.Th>Endpoint</Table.Th>
                  <Table.Th>Status</Table.Th>
                  <Table.Th>Outcome</Table.Th>
                  <Table.Th ta="right">Response time</Table.Th>
                  <Table.Th>IP</Table.Th>
                  <Table.Th>Tags</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {rows.map((row) => (
                  <RequestRow key={row.id} row={row} />
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          <Group justify="space-between" px="md" py="sm" className="kw-table-footer">
            <Group gap="xs">
              <Text size="xs" c="dimmed">
                {formatNumber(rows.length)} {rows.length === 1 ? 'request' : 'requests'}
                {more ? ' shown' : ''}
              </Text>
              {requests.isPlaceholderData && <Loader size="xs" aria-label="Loading requests" />}
            </Group>
            {more && loadMore}
          </Group>
        </>
      )}
    </Card>
  );
}
