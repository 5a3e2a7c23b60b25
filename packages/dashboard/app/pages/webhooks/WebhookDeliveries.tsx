import { ActionIcon, Button, Card, Group, Loader, Select, Stack, Table, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconChevronDown, IconChevronRight, IconSend } from '@tabler/icons-react';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { Fragment, useEffect, useId, useState } from 'react';
import { errorMessage } from '../../api/errors';
import { type DeliveryStatus, useWebhookDeliveries, type WebhookDelivery, webhookQueryKeys } from '../../api/queries';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { formatMs } from '../../components/format';
import { mantineColor } from '../../components/outcomes';
import { RefreshButton } from '../../components/RefreshButton';
import { TimeText } from '../../components/TimeText';
import { Pager, useCursorPager } from '../keys/Pager';
import { DELIVERY_STATUS_LABEL, DELIVERY_STATUSES, DeliveryStatusBadge } from './webhookFormat';

const ANY = 'any';
const STATUS_FILTERS = [
  { value: ANY, label: 'Any status' },
  ...DELIVERY_STATUSES.map((status) => ({ value: status, label: DELIVERY_STATUS_LABEL[status] })),
];

const CLASS_COLOR: Record<number, string> = { 2: 'teal.6', 3: 'blue.6', 4: 'orange.6', 5: 'red.6' };

/** The status code a receiver answered, its class as a dot; the error when there was no answer. */
function Answer({ code, error }: { code: number | null; error: string | null }) {
  if (code === null) {
    return error ? (
      <Text size="xs" maw={220} truncate title={error} data-answer="error">
        {error}
      </Text>
    ) : (
      <Text size="sm" c="dimmed">
        —
      </Text>
    );
  }
  return (
    <Group gap={6} wrap="nowrap" data-status-class={`${Math.floor(code / 100)}xx`}>
      <span className="kw-status-dot" style={{ color: mantineColor(CLASS_COLOR[Math.floor(code / 100)] ?? 'gray.6') }} aria-hidden />
      <Text span ff="monospace" fz="xs" fw={600}>
        {code}
      </Text>
    </Group>
  );
}

/** Every attempt of a delivery, oldest first: when, the answer, how long, the error. */
function Attempts({ delivery, labelledBy }: { delivery: WebhookDelivery; labelledBy: string }) {
  if (delivery.attempt_log.length === 0) {
    return (
      <Text size="sm" c="dimmed">
        Not tried yet{delivery.next_attempt_at ? ': the first attempt is due ' : '.'}
        {delivery.next_attempt_at && <TimeText value={delivery.next_attempt_at} size="sm" />}
      </Text>
    );
  }
  return (
    <Table verticalSpacing={4} horizontalSpacing="sm" className="kw-attempts" aria-labelledby={labelledBy}>
      <Table.Thead>
        <Table.Tr>
          <Table.Th w={40}>#</Table.Th>
          <Table.Th>Time</Table.Th>
          <Table.Th>Status</Table.Th>
          <Table.Th ta="right">Duration</Table.Th>
          <Table.Th>Error</Table.Th>
        </Table.Tr>
      </Table.Thead>
      <Table.Tbody>
        {delivery.attempt_log.map((attempt, i) => (
          <Table.Tr key={attempt.attempted_at}>
            <Table.Td>
              <Text size="xs" c="dimmed" style={{ fontVariantNumeric: 'tabular-nums' }}>
                {i + 1}
              </Text>
            </Table.Td>
            <Table.Td style={{ whiteSpace: 'nowrap' }}>
              <TimeText value={attempt.attempted_at} mode="precise" size="xs" />
            </Table.Td>
            <Table.Td>
              <Answer code={attempt.status_code} error={null} />
            </Table.Td>
            <Table.Td ta="right" style={{ whiteSpace: 'nowrap', fontVariantNumeric: 'tabular-nums' }}>
              <Text size="xs">{formatMs(attempt.duration_ms)}</Text>
            </Table.Td>
            <Table.Td>
              <Text size="xs" c={attempt.error ? undefined : 'dimmed'} style={{ overflowWrap: 'anywhere' }}>
                {attempt.error ?? '—'}
              </Text>
            </Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  );
}

function DeliveryRow({
  delivery,
  expanded,
  onToggle,
  onRetry,
  retrying,
}: {
  delivery: WebhookDelivery;
  expanded: boolean;
  onToggle: () => void;
  onRetry: () => void;
  retrying: boolean;
}) {
  const attemptsId = useId();
  const label = `${delivery.event_type} delivery`;
  return (
    <Fragment>
      <Table.Tr data-delivery-id={delivery.id} data-expanded={expanded || undefined}>
        <Table.Td w={44}>
          <ActionIcon
            variant="subtle"
            color="gray"
            onClick={onToggle}
            aria-expanded={expanded}
            aria-controls={expanded ? attemptsId : undefined}
            aria-label={`${expanded ? 'Hide' : 'Show'} attempts of the ${label}`}
          >
            {expanded ? <IconChevronDown size={16} aria-hidden /> : <IconChevronRight size={16} aria-hidden />}
          </ActionIcon>
        </Table.Td>
        <Table.Td>
          <Stack gap={0}>
            <Text ff="monospace" fz="sm" fw={550}>
              {delivery.event_type}
            </Text>
            <TimeText value={delivery.created_at} size="xs" c="dimmed" />
          </Stack>
        </Table.Td>
        <Table.Td>
          <DeliveryStatusBadge status={delivery.status} />
        </Table.Td>
        <Table.Td ta="right" style={{ fontVariantNumeric: 'tabular-nums' }}>
          <Text size="sm">{delivery.attempts}</Text>
        </Table.Td>
        <Table.Td>
          <Answer code={delivery.last_status_code} error={delivery.last_error} />
        </Table.Td>
        <Table.Td style={{ whiteSpace: 'nowrap' }}>
          <TimeText value={delivery.next_attempt_at} size="sm" />
        </Table.Td>
        <Table.Td style={{ whiteSpace: 'nowrap' }}>
          <TimeText value={delivery.last_attempt_at} empty="Never" size="sm" />
        </Table.Td>
        <Table.Td ta="right">
          <Button
            size="compact-xs"
            variant="default"
            leftSection={<IconSend size={13} aria-hidden />}
            onClick={onRetry}
            loading={retrying}
            aria-label={`Retry ${label}`}
          >
            Retry
          </Button>
        </Table.Td>
      </Table.Tr>
      {expanded && (
        <Table.Tr className="kw-attempts-row">
          <Table.Td colSpan={8} id={attemptsId} px="lg" py="sm">
            <Stack gap={6}>
              <Group gap="xs" justify="space-between">
                <Text size="xs" fw={600} id={`${attemptsId}-title`}>
                  Attempts of the {label}
                </Text>
                <Text size="xs" c="dimmed" ff="monospace" title="The webhook-id header of every attempt">
                  webhook-id {delivery.event_id}
                </Text>
              </Group>
              <Attempts delivery={delivery} labelledBy={`${attemptsId}-title`} />
            </Stack>
          </Table.Td>
        </Table.Tr>
      )}
    </Fragment>
  );
}

/**
 * A webhook's deliveries, newest first: status, attempts, the last answer, when the next attempt is due. A row
 * opens on its attempts; Retry sends a delivery again now. Filter by status; page along `next_cursor`.
 */
export function WebhookDeliveries({ webhookId }: { webhookId: string }) {
  const { client } = useSession();
  const queryClient = useQueryClient();
  const titleId = useId();
  const [status, setStatus] = useState(ANY);
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(new Set());
  const pager = useCursorPager();
  const { reset } = pager;
  // biome-ignore lint/correctness/useExhaustiveDependencies: another status starts again from page 1
  useEffect(() => reset(), [status, reset]);
  const deliveries = useWebhookDeliveries(webhookId, {
    status: status === ANY ? undefined : (status as DeliveryStatus),
    cursor: pager.cursor,
  });
  const rows = deliveries.data?.data ?? [];

  const retry = useMutation({
    mutationFn: (delivery: WebhookDelivery) => client.retryWebhookDelivery(webhookId, delivery.id),
    onSuccess: (updated) => {
      // The row shows the delivery as due now at once; the list polls while a delivery is due, so its outcome follows.
      queryClient.setQueriesData<{ data: WebhookDelivery[]; next_cursor: string | null }>(
        { queryKey: webhookQueryKeys.deliveries(webhookId) },
        (page) => page && { ...page, data: page.data.map((d) => (d.id === updated.id ? updated : d)) },
      );
      void queryClient.invalidateQueries({ queryKey: webhookQueryKeys.deliveries(webhookId) });
      notifications.show({ color: 'teal', message: `${updated.event_type} will be sent again now` });
    },
    onError: (error) => notifications.show({ color: 'red', title: 'Not retried', message: errorMessage(error) }),
  });

  const toggle = (id: string) =>
    setExpanded((current) => {
      const next = new Set(current);
      if (!next.delete(id)) next.add(id);
      return next;
    });

  return (
    <Card withBorder radius="md" padding={0}>
      <Group justify="space-between" align="flex-start" p="lg" pb="md" gap="sm">
        <Stack gap={2}>
          <Title order={2} fz="md" fw={600} id={titleId}>
            Deliveries
          </Title>
          <Text size="sm" c="dimmed">
            Each event sent to this webhook, newest first, with every attempt
          </Text>
        </Stack>
        <Group gap="xs">
          <Select
            size="xs"
            w={160}
            aria-label="Status"
            data={STATUS_FILTERS}
            value={status}
            onChange={(value) => setStatus(value ?? ANY)}
            allowDeselect={false}
          />
          <RefreshButton label="Refresh deliveries" onClick={() => deliveries.refetch()} loading={deliveries.isRefetching} />
        </Group>
      </Group>
      {deliveries.isError ? (
        <EmptyState icon={<IconSend size={22} />} title="Deliveries could not be loaded">
          {errorMessage(deliveries.error)}
        </EmptyState>
      ) : deliveries.isPending ? (
        <Group justify="center" py={48}>
          <Loader size="sm" aria-label="Loading deliveries" />
        </Group>
      ) : rows.length === 0 ? (
        <EmptyState icon={<IconSend size={22} />} title={status === ANY ? 'No deliveries yet' : 'No delivery matches'}>
          {status === ANY
            ? 'When an event this webhook wants happens, its delivery shows here within a second or two.'
            : `No delivery is ${DELIVERY_STATUS_LABEL[status as DeliveryStatus].toLowerCase()}. Choose another status.`}
        </EmptyState>
      ) : (
        <>
          <Table.ScrollContainer minWidth={920} type="native" tabIndex={0} role="region" aria-labelledby={titleId}>
            <Table verticalSpacing="xs" horizontalSpacing="md" className="kw-table" aria-labelledby={titleId}>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th w={44}>
                    <span className="kw-visually-hidden">Attempts shown</span>
                  </Table.Th>
                  <Table.Th>Event</Table.Th>
                  <Table.Th>Status</Table.Th>
                  <Table.Th ta="right">Attempts</Table.Th>
                  <Table.Th>Last response</Table.Th>
                  <Table.Th>Next attempt</Table.Th>
                  <Table.Th>Last attempt</Table.Th>
                  <Table.Th>
                    <span className="kw-visually-hidden">Actions</span>
                  </Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {rows.map((delivery) => (
                  <DeliveryRow
                    key={delivery.id}
                    delivery={delivery}
                    expanded={expanded.has(delivery.id)}
                    onToggle={() => toggle(delivery.id)}
                    onRetry={() => retry.mutate(delivery)}
                    retrying={retry.isPending && retry.variables?.id === delivery.id}
                  />
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          <Pager
            page={pager.page}
            nextCursor={deliveries.data?.next_cursor}
            onNext={pager.next}
            onPrevious={pager.previous}
            count={rows.length}
            noun="deliveries"
            singular="delivery"
          />
        </>
      )}
    </Card>
  );
}
