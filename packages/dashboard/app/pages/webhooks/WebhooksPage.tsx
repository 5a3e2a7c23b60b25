import { Anchor, Button, Card, Group, Loader, Stack, Table, Text } from '@mantine/core';
import { IconPlus, IconWebhook } from '@tabler/icons-react';
import { useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { errorMessage } from '../../api/errors';
import { useWebhooks, type Webhook, webhookQueryKeys } from '../../api/queries';
import { useSession } from '../../api/session';
import { EmptyState } from '../../components/EmptyState';
import { PageHeader } from '../../components/PageHeader';
import { type RevealedKey, RevealKeyDialog } from '../../components/RevealKeyDialog';
import { TimeText } from '../../components/TimeText';
import { Pager, useCursorPager } from '../keys/Pager';
import { CreateWebhookDialog } from './CreateWebhookDialog';
import { EventTypeChips, hostOf, WebhookStateBadge } from './webhookFormat';

function WebhookRow({ webhook }: { webhook: Webhook }) {
  const navigate = useNavigate();
  return (
    <Table.Tr
      data-webhook-id={webhook.id}
      style={{ cursor: 'pointer' }}
      onClick={(event) => {
        if (!(event.target as HTMLElement).closest('a,button')) navigate(`/webhooks/${webhook.id}`);
      }}
    >
      <Table.Td maw={420}>
        <Stack gap={2}>
          <Anchor
            component={Link}
            to={`/webhooks/${webhook.id}`}
            ff="monospace"
            fz="sm"
            fw={550}
            c="var(--mantine-color-text)"
            truncate
            display="block"
            title={webhook.url}
          >
            {webhook.url}
          </Anchor>
          {webhook.description && (
            <Text size="xs" c="dimmed" truncate>
              {webhook.description}
            </Text>
          )}
        </Stack>
      </Table.Td>
      <Table.Td maw={320}>
        <EventTypeChips eventTypes={webhook.event_types} />
      </Table.Td>
      <Table.Td>
        <WebhookStateBadge webhook={webhook} withReason />
      </Table.Td>
      <Table.Td style={{ whiteSpace: 'nowrap' }}>
        <TimeText value={webhook.created_at} size="sm" />
      </Table.Td>
    </Table.Tr>
  );
}

/** Webhooks (admin): where events go, each one's state, and Create webhook (its secret shown once). */
export function WebhooksPage() {
  const { client } = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const pager = useCursorPager();
  const titleId = useId();
  const [creating, setCreating] = useState(false);
  const [revealed, setRevealed] = useState<RevealedKey | null>(null);
  const webhooks = useWebhooks(pager.cursor);
  const rows = webhooks.data?.data ?? [];

  const create = (
    <Button leftSection={<IconPlus size={16} aria-hidden />} onClick={() => setCreating(true)}>
      Create webhook
    </Button>
  );

  return (
    <>
      <PageHeader
        title={<span id={titleId}>Webhooks</span>}
        description="Keyward POSTs events (keys created, revoked, leaked or expiring, quotas running low, users changed) to these URLs, signed per Standard Webhooks."
        actions={create}
      />
      <Card withBorder padding={0} radius="md">
        {webhooks.isError ? (
          <EmptyState icon={<IconWebhook size={22} />} title="Webhooks could not be loaded">
            {errorMessage(webhooks.error)}
          </EmptyState>
        ) : webhooks.isPending ? (
          <Group justify="center" py={64}>
            <Loader size="sm" aria-label="Loading webhooks" />
          </Group>
        ) : rows.length === 0 ? (
          <EmptyState
            icon={<IconWebhook size={22} />}
            title="No webhooks yet"
            action={
              <Button variant="light" onClick={() => setCreating(true)}>
                Create webhook
              </Button>
            }
          >
            Add a URL and Keyward tells it when a key is created, revoked, found leaked or about to expire, when a quota runs low, and when
            users change.
          </EmptyState>
        ) : (
          <>
            <Table.ScrollContainer minWidth={820} type="native" tabIndex={0} role="region" aria-labelledby={titleId}>
              <Table verticalSpacing="sm" horizontalSpacing="md" highlightOnHover className="kw-table" aria-labelledby={titleId}>
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>Endpoint</Table.Th>
                    <Table.Th>Events</Table.Th>
                    <Table.Th>Status</Table.Th>
                    <Table.Th>Created</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {rows.map((webhook) => (
                    <WebhookRow key={webhook.id} webhook={webhook} />
                  ))}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
            <Pager
              page={pager.page}
              nextCursor={webhooks.data?.next_cursor}
              onNext={pager.next}
              onPrevious={pager.previous}
              count={rows.length}
              noun="webhooks"
            />
          </>
        )}
      </Card>
      <CreateWebhookDialog
        opened={creating}
        onClose={() => setCreating(false)}
        onSubmit={(body) => client.createWebhook(body)}
        onCreated={(created) => {
          setCreating(false);
          setRevealed({ id: created.id, key: created.secret, name: hostOf(created.url), kind: 'webhook-secret' });
          void queryClient.invalidateQueries({ queryKey: webhookQueryKeys.all });
        }}
      />
      <RevealKeyDialog
        revealed={revealed}
        onClose={() => {
          const id = revealed?.id;
          setRevealed(null);
          if (id) navigate(`/webhooks/${id}`);
        }}
      />
    </>
  );
}
