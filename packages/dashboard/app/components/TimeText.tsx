import { Text, type TextProps, Tooltip } from '@mantine/core';
import { localDateTime, localTimeToTheSecond, relativeTime, utc } from './format';

const SHOWN = { relative: relativeTime, absolute: localDateTime, precise: localTimeToTheSecond } as const;

/** A time in the browser's zone (relative, absolute, or precise: to the second), the exact UTC instant on hover. */
export function TimeText({
  value,
  mode = 'relative',
  empty = '—',
  ...props
}: { value: string | null | undefined; mode?: keyof typeof SHOWN; empty?: string } & TextProps) {
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
        {SHOWN[mode](value)}
      </Text>
    </Tooltip>
  );
}
