import { ActionIcon, Tooltip } from '@mantine/core';
import { IconRefresh } from '@tabler/icons-react';

/** The small "Refresh" icon button beside a table's filters. */
export function RefreshButton({ label, loading, onClick }: { label: string; loading: boolean; onClick: () => void }) {
  return (
    <Tooltip label="Refresh">
      <ActionIcon variant="default" size={30} aria-label={label} onClick={onClick} loading={loading}>
        <IconRefresh size={16} aria-hidden />
      </ActionIcon>
    </Tooltip>
  );
}
