import type { AuditLogPage } from '@keyward/sdk';
import { Badge, Code, Group, Stack, Text } from '@mantine/core';

export type AuditEntry = AuditLogPage['data'][number];

export const ACTIONS: { value: string; label: string; color: string }[] = [
  { value: 'key.create', label: 'Key created', color: 'teal' },
  { value: 'key.update', label: 'Key updated', color: 'blue' },
  { value: 'key.roll', label: 'Key rolled', color: 'violet' },
  { value: 'key.deactivate', label: 'Key deactivated', color: 'gray' },
  { value: 'key.activate', label: 'Key activated', color: 'teal' },
  { value: 'key.revoke', label: 'Key revoked', color: 'red' },
  { value: 'key.delete', label: 'Key deleted', color: 'red' },
  { value: 'user.create', label: 'User created', color: 'teal' },
  { value: 'user.update', label: 'User updated', color: 'blue' },
  { value: 'user.delete', label: 'User deleted', color: 'red' },
];
const BY_ACTION = new Map(ACTIONS.map((a) => [a.value, a]));

export function ActionBadge({ action }: { action: string }) {
  const known = BY_ACTION.get(action);
  return (
    <Badge variant="light" color={known?.color ?? 'gray'} radius="sm" size="sm" tt="none" fw={600} style={{ flexShrink: 0 }}>
      {known?.label ?? action}
    </Badge>
  );
}

export function actorLabel(entry: Pick<AuditEntry, 'actor_type' | 'actor_id'>, names?: Map<string, string>): string {
  if (!entry.actor_id) return entry.actor_type;
  const name = names?.get(entry.actor_id);
  if (name) return name;
  if (entry.actor_type === 'system') return entry.actor_id;
  const short = entry.actor_id.length > 12 ? `${entry.actor_id.slice(0, 8)}…` : entry.actor_id;
  return `${entry.actor_type === 'api_key' ? 'key' : entry.actor_type} ${short}`;
}

const show = (value: unknown): string => {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
};

const isFromTo = (value: unknown): value is { from: unknown; to: unknown } =>
  typeof value === 'object' && value !== null && 'from' in value && 'to' in value && Object.keys(value).length === 2;

/** The fields an entry changed: "scopes: [a] → [a, b]". */
export function AuditChanges({ changes }: { changes: Record<string, unknown> }) {
  const entries = Object.entries(changes);
  if (entries.length === 0) return null;
  return (
    <Stack gap={2}>
      {entries.map(([field, value]) => (
        <Group key={field} gap={6} wrap="nowrap" align="baseline" style={{ minWidth: 0 }}>
          <Text size="xs" c="dimmed" style={{ flexShrink: 0 }}>
            {field.replace(/_/g, ' ')}
          </Text>
          <Code style={{ whiteSpace: 'normal', overflowWrap: 'anywhere' }}>
            {isFromTo(value) ? `${show(value.from)} → ${show(value.to)}` : show(value)}
          </Code>
        </Group>
      ))}
    </Stack>
  );
}
