import type { ApiKey, User } from '@keyward/sdk';
import { ActionIcon, Anchor, Group, Menu, Stack, Table, Text, Tooltip } from '@mantine/core';
import { useMediaQuery } from '@mantine/hooks';
import { IconBan, IconDots, IconPlayerPause, IconPlayerPlay, IconRefresh, IconShieldLock, IconTrash } from '@tabler/icons-react';
import { Link, useNavigate } from 'react-router';
import { userLabel } from '../../api/queries';
import { isLive } from '../../components/keyStatus';
import { ScopeList } from '../../components/ScopeList';
import { StatusBadge } from '../../components/StatusBadge';
import { TimeText } from '../../components/TimeText';
import { ActivitySparkline, type KeysActivityState } from './KeyActivity';
import type { KeyAction } from './useKeyActions';

function RowMenu({
  apiKey,
  actions,
  onAction,
}: {
  apiKey: ApiKey;
  actions: KeyAction[];
  onAction: (action: KeyAction, key: ApiKey) => void;
}) {
  const live = isLive(apiKey);
  return (
    <Menu position="bottom-end" withinPortal shadow="md" width={180}>
      <Menu.Target>
        <ActionIcon variant="subtle" color="gray" aria-label={`Actions for ${apiKey.name}`}>
          <IconDots size={18} aria-hidden />
        </ActionIcon>
      </Menu.Target>
      <Menu.Dropdown>
        {actions.includes('roll') && live && (
          <Menu.Item leftSection={<IconRefresh size={16} />} onClick={() => onAction('roll', apiKey)}>
            Roll
          </Menu.Item>
        )}
        {actions.includes('deactivate') && apiKey.status === 'active' && (
          <Menu.Item leftSection={<IconPlayerPause size={16} />} onClick={() => onAction('deactivate', apiKey)}>
            Deactivate
          </Menu.Item>
        )}
        {actions.includes('activate') && apiKey.status === 'inactive' && (
          <Menu.Item leftSection={<IconPlayerPlay size={16} />} onClick={() => onAction('activate', apiKey)}>
            Activate
          </Menu.Item>
        )}
        {actions.includes('revoke') && apiKey.status !== 'revoked' && (
          <Menu.Item color="red" leftSection={<IconBan size={16} />} onClick={() => onAction('revoke', apiKey)}>
            Revoke
          </Menu.Item>
        )}
        {actions.includes('delete') && (
          <Menu.Item color="red" leftSection={<IconTrash size={16} />} onClick={() => onAction('delete', apiKey)}>
            Delete
          </Menu.Item>
        )}
      </Menu.Dropdown>
    </Menu>
  );
}

/** The keys table: one row per key, its name linking to the key's page, lifecycle actions in a row menu. */
export function KeysTable({
  keys,
  owners,
  showOwner = true,
  canWrite,
  linkRows = true,
  actions = ['roll', 'deactivate', 'activate', 'revoke', 'delete'],
  activity,
  onAction,
}: {
  keys: ApiKey[];
  owners?: Map<string, User>;
  showOwner?: boolean;
  canWrite: boolean;
  linkRows?: boolean;
  actions?: KeyAction[];
  /** The keys' last 24 hours (useKeysActivity): a usage sparkline column when given (not in the phone layout). */
  activity?: KeysActivityState;
  onAction: (action: KeyAction, key: ApiKey) => void;
}) {
  const navigate = useNavigate();
  const narrow = useMediaQuery('(max-width: 40em)');
  if (narrow) {
    // A phone: one card per key (name, status, prefix, last used), the row menu beside it.
    return (
      <Stack gap={0} component="ul" className="kw-key-list" aria-label="Keys">
        {keys.map((key) => (
          <Group key={key.id} component="li" justify="space-between" wrap="nowrap" px="md" py="sm" gap="sm" data-key-id={key.id}>
            <Stack gap={4} style={{ minWidth: 0 }}>
              <Group gap={8} wrap="nowrap">
                {linkRows ? (
                  <Anchor component={Link} to={`/keys/${key.id}`} fw={550} size="sm" c="var(--mantine-color-text)" truncate>
                    {key.name}
                  </Anchor>
                ) : (
                  <Text fw={550} size="sm" truncate>
                    {key.name}
                  </Text>
                )}
                <StatusBadge apiKey={key} />
              </Group>
              <Text size="xs" c="dimmed" ff="monospace">
                {key.key_prefix}…
              </Text>
              <Text size="xs" c="dimmed">
                Last used <TimeText value={key.last_used_at} empty="never" size="xs" />
              </Text>
            </Stack>
            {canWrite && <RowMenu apiKey={key} actions={actions} onAction={onAction} />}
          </Group>
        ))}
      </Stack>
    );
  }
  return (
    <Table.ScrollContainer minWidth={activity ? 960 : 880} type="native">
      <Table verticalSpacing="sm" horizontalSpacing="md" highlightOnHover={linkRows} className="kw-table">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Name</Table.Th>
            <Table.Th>Key</Table.Th>
            <Table.Th>Status</Table.Th>
            {showOwner && <Table.Th>Owner</Table.Th>}
            <Table.Th>Scopes</Table.Th>
            {activity && <Table.Th>Last 24 h</Table.Th>}
            <Table.Th>Last used</Table.Th>
            <Table.Th>Expires</Table.Th>
            <Table.Th w={48}>
              <span className="kw-visually-hidden">Actions</span>
            </Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {keys.map((key) => {
            const owner = key.user_id ? owners?.get(key.user_id) : undefined;
            return (
              <Table.Tr
                key={key.id}
                data-key-id={key.id}
                style={linkRows ? { cursor: 'pointer' } : undefined}
                onClick={(event) => {
                  if (!linkRows) return;
                  const target = event.target as HTMLElement;
                  if (target.closest('a,button,[role="menu"],[role="menuitem"]')) return;
                  navigate(`/keys/${key.id}`);
                }}
              >
                <Table.Td maw={260}>
                  <Stack gap={0}>
                    <Group gap={6} wrap="nowrap">
                      {linkRows ? (
                        <Anchor component={Link} to={`/keys/${key.id}`} fw={550} size="sm" c="var(--mantine-color-text)" truncate>
                          {key.name}
                        </Anchor>
                      ) : (
                        <Text fw={550} size="sm" truncate>
                          {key.name}
                        </Text>
                      )}
                      {key.is_admin && (
                        <Tooltip label="Admin key">
                          <IconShieldLock size={15} color="var(--mantine-color-red-6)" aria-label="Admin key" />
                        </Tooltip>
                      )}
                    </Group>
                    {key.description && (
                      <Text size="xs" c="dimmed" truncate>
                        {key.description}
                      </Text>
                    )}
                  </Stack>
                </Table.Td>
                <Table.Td style={{ whiteSpace: 'nowrap' }}>
                  <Text ff="monospace" size="xs" c="dimmed" style={{ whiteSpace: 'nowrap' }}>
                    {key.key_prefix}…
                  </Text>
                </Table.Td>
                <Table.Td style={{ whiteSpace: 'nowrap' }}>
                  <StatusBadge apiKey={key} />
                </Table.Td>
                {showOwner && (
                  <Table.Td maw={180}>
                    {key.user_id ? (
                      owner ? (
                        <Anchor component={Link} to={`/users/${key.user_id}`} size="sm" truncate display="block">
                          {userLabel(owner)}
                        </Anchor>
                      ) : (
                        <Text size="sm" ff="monospace" c="dimmed" truncate title={key.user_id}>
                          {key.user_id.slice(0, 8)}…
                        </Text>
                      )
                    ) : (
                      <Text size="sm" c="dimmed">
                        —
                      </Text>
                    )}
                  </Table.Td>
                )}
                <Table.Td maw={240}>
                  <ScopeList scopes={key.scopes} max={2} />
                </Table.Td>
                {activity && (
                  <Table.Td style={{ whiteSpace: 'nowrap' }}>
                    <ActivitySparkline activity={activity.byId.get(key.id)} loading={activity.loading} />
                  </Table.Td>
                )}
                <Table.Td style={{ whiteSpace: 'nowrap' }}>
                  <TimeText value={key.last_used_at} empty="Never" size="sm" />
                </Table.Td>
                <Table.Td style={{ whiteSpace: 'nowrap' }}>
                  <TimeText value={key.expires_at} empty="Never" size="sm" />
                </Table.Td>
                <Table.Td>{canWrite && <RowMenu apiKey={key} actions={actions} onAction={onAction} />}</Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
    </Table.ScrollContainer>
  );
}
