import { Badge, Group, Text, Tooltip } from '@mantine/core';

/** Scopes as small monospace chips; past `max`, a "+N" with the rest in a tooltip. */
export function ScopeList({ scopes, max = 3 }: { scopes: readonly string[]; max?: number }) {
  if (scopes.length === 0) {
    return (
      <Text span size="sm" c="dimmed">
        none
      </Text>
    );
  }
  const shown = scopes.slice(0, max);
  const rest = scopes.slice(max);
  return (
    <Group gap={4} wrap="wrap">
      {shown.map((scope) => (
        <Badge key={scope} variant="default" radius="sm" size="sm" tt="none" fw={500} ff="monospace">
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
