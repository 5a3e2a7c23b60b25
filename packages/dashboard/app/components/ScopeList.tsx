import { Badge, Group, Text, Tooltip } from '@mantine/core';

/** Scopes (or tags) as small monospace chips; past `max`, a "+N" with the rest in a tooltip. */
export function ScopeList({ scopes, max = 3, empty = 'none' }: { scopes: readonly string[]; max?: number; empty?: string }) {
  if (scopes.length === 0) {
    return (
      <Text span size="sm" c="dimmed">
        {empty}
      </Text>
    );
  }
  const shown = scopes.slice(0, max);
  const rest = scopes.slice(max);
  return (
    <Group gap={4} wrap="wrap">
      {shown.map((scope) => (
        <Badge key={scope} variant="default" radius="sm" size="sm" tt="none" fw={500} ff="monospace" title={scope}>
          {scope}
        </Badge>
      ))}
      {rest.length > 0 && (
        <Tooltip label={rest.join(', ')} multiline maw={320}>
          <Badge variant="transparent" color="gray" size="sm" tt="none">
            +{rest.length}
          </Badge>
        </Tooltip>
      )}
    </Group>
  );
}
