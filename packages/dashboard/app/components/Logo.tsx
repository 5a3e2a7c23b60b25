import { Group, Text } from '@mantine/core';

export function LogoMark({ size = 28 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 32 32" aria-hidden focusable="false">
      <rect width="32" height="32" rx="8" fill="var(--mantine-color-keyward-6)" />
      <circle cx="12.5" cy="16" r="5" fill="none" stroke="#fff" strokeWidth="2.6" />
      <path d="M17.5 16h9m-3 0v4m-3.2-4v3" stroke="#fff" strokeWidth="2.6" strokeLinecap="round" />
    </svg>
  );
}

export function Logo() {
  return (
    <Group gap={10} wrap="nowrap">
      <LogoMark />
      <Text fw={700} fz={17} style={{ letterSpacing: -0.2 }}>
        Keyward
      </Text>
    </Group>
  );
}
