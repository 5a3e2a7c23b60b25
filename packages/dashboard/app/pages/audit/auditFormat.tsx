import type { AuditLogPage } from '@keyward/sdk';
import { Anchor, Badge, Code, Group, Stack, Text } from '@mantine/core';

export type AuditEntry = AuditLogPage['data'][number];

export const ACTIONS: { value: string; label: string; color: string }[] = [
  { value: 'key.create', label: 'Key created', color: 'teal' },
  { value: 'key.update', label: 'Key updated', color: 'blue' },
  { value: 'key.roll', label: 'Key rolled', color: 'violet' },
  { value: 'key.deactivate', label: 'Key deactivated', color: 'gray' },
  { value: 'key.activate', label: 'Key activated', color: 'teal' },
  { value: 'key.revoke', label: 'Key revoked', color: 'red' },
  { value: 'key.delete', label: 'Key deleted', color: 'red' },
  { value: 'key.leaked', label: 'Key leaked', color: 'red' },
  { value: 'admin.bootstrap', label: 'Admin key bootstrapped', color: 'gray' },
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

/** Where a leak was reported from (`source` of a `key.leaked` entry). */
export const LEAK_SOURCES: Record<string, string> = {
  github: 'GitHub secret scanning',
  report: 'Leak report',
  scan: 'keyward scan',
};
export const leakSourceLabel = (source: unknown): string =>
  typeof source === 'string' ? (LEAK_SOURCES[source] ?? source) : 'An unknown source';

/** A web address worth a link: http or https only (a reporter's text is never made a `javascript:` link). */
export function webAddress(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : undefined;
  } catch {
    return undefined;
  }
}

/** A change's value: a web address as a link that opens apart, a leak's source by its name, the rest as text. */
function ChangeValue({ action, field, value }: { action: string | undefined; field: string; value: unknown }) {
  const href = field === 'url' ? webAddress(value) : undefined;
  if (href) {
    return (
      <Anchor href={href} target="_blank" rel="noopener noreferrer" fz="xs" style={{ overflowWrap: 'anywhere' }}>
        {href}
      </Anchor>
    );
  }
  const text =
    action === 'key.leaked' && field === 'source'
      ? leakSourceLabel(value)
      : isFromTo(value)
        ? `${show(value.from)} → ${show(value.to)}`
        : show(value);
  return <Code style={{ whiteSpace: 'normal', overflowWrap: 'anywhere' }}>{text}</Code>;
}

/** The fields an entry changed: "scopes: [a] → [a, b]"; for a leak, where it was seen. */
export function AuditChanges({ changes, action }: { changes: Record<string, unknown>; action?: string }) {
  const entries = Object.entries(changes);
  if (entries.length === 0) return null;
  return (
    <Stack gap={2}>
      {entries.map(([field, value]) => (
        <Group key={field} gap={6} wrap="nowrap" align="baseline" style={{ minWidth: 0 }}>
          <Text size="xs" c="dimmed" style={{ flexShrink: 0 }}>
            {field.replace(/_/g, ' ')}
          </Text>
          <ChangeValue action={action} field={field} value={value} />
        </Group>
      ))}
    </Stack>
  );
}
