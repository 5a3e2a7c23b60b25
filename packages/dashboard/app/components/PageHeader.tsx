import { Group, Stack, Text, Title } from '@mantine/core';
import type { ReactNode } from 'react';

export function PageHeader({
  title,
  description,
  actions,
  badge,
}: {
  title: ReactNode;
  description?: ReactNode;
  actions?: ReactNode;
  badge?: ReactNode;
}) {
  return (
    <Group justify="space-between" align="flex-start" mb="lg" gap="md">
      <Stack gap={4} style={{ minWidth: 0, flex: '1 1 280px' }}>
        <Group gap="sm" wrap="nowrap" style={{ minWidth: 0 }}>
          <Title order={1} fz={24} fw={650} lh={1.25} style={{ overflowWrap: 'anywhere' }}>
            {title}
          </Title>
          {badge && (
            <Group gap={6} wrap="nowrap" className="kw-header-badges">
              {badge}
            </Group>
          )}
        </Group>
        {description && (
          <Text c="dimmed" size="sm" component="div">
            {description}
          </Text>
        )}
      </Stack>
      {actions && <Group gap="xs">{actions}</Group>}
    </Group>
  );
}
