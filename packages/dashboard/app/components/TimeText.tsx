import { Text, type TextProps, Tooltip } from '@mantine/core';
import { localDateTime, relativeTime, utc } from './format';

/** A time in the browser's zone (relative or absolute), the exact UTC instant on hover. */
export function TimeText({
  value,
  mode = 'relative',
  empty = '—',
  ...props
}: { value: string | null | undefined; mode?: 'relative' | 'absolute'; empty?: string } & TextProps) {
  if (!value) {
    return (
      <Text span c="dimmed" {...props}>
        {empty}
      </Text>
    );
  }
  return (
    <Tooltip label={`${localDateTime(value)} · ${utc(value)}`} openDelay={250} withArrow>
      <Text component="time" dateTime={value} span {...props}>
        {mode === 'relative' ? relativeTime(value) : localDateTime(value)}
      </Text>
    </Tooltip>
  );
}
