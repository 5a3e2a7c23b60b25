import type { ApiKey } from '@keyward/sdk';
import { Badge } from '@mantine/core';
import { keyState, STATE_COLOR, STATE_LABEL } from './keyStatus';

export function StatusBadge({ apiKey }: { apiKey: Pick<ApiKey, 'status' | 'expires_at' | 'quota'> }) {
  const state = keyState(apiKey);
  return (
    <Badge
      color={STATE_COLOR[state]}
      variant="light"
      radius="sm"
      size="md"
      tt="none"
      fw={600}
      data-state={state}
      leftSection={<span className="kw-status-dot" aria-hidden />}
      style={{ flexShrink: 0, overflow: 'visible' }}
      styles={{ label: { overflow: 'visible' } }}
    >
      {STATE_LABEL[state]}
    </Badge>
  );
}
