const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const toTheSecond = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});
const number = new Intl.NumberFormat();
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['week', 7 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
];

/** "3 minutes ago", "in 2 days", "just now". */
export function relativeTime(iso: string, now = Date.now()): string {
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return seconds <= 0 ? 'just now' : 'in a few seconds';
  for (const [unit, size] of UNITS) {
    if (abs >= size * 0.9 || unit === 'minute') return relative.format(Math.round(seconds / size), unit);
  }
  return relative.format(seconds, 'second');
}

/** The instant in the browser's zone, e.g. "Mar 3, 2026, 14:05". */
export const localDateTime = (iso: string): string => dateTime.format(new Date(iso));
export const localDate = (iso: string): string => dateOnly.format(new Date(iso));
/** The instant to the second, for a request log: "Mar 3, 14:05:09". */
export const localTimeToTheSecond = (iso: string): string => toTheSecond.format(new Date(iso));
/** The exact instant in UTC, for a tooltip. */
export const utc = (iso: string): string =>
  `${new Date(iso)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '')} UTC`;
export const formatNumber = (n: number): string => number.format(n);
export const formatCompact = (n: number): string => compact.format(n);
/** A share of a whole, one decimal: "42.1%" ("<0.1%" for a sliver). */
export function formatShare(part: number, whole: number): string {
  if (whole <= 0) return '—';
  const pct = (part / whole) * 100;
  return pct > 0 && pct < 0.1 ? '<0.1%' : `${pct.toFixed(1)}%`;
}
/** A response time: "12 ms", "1.24 s". */
export const formatMs = (ms: number): string => (ms < 1000 ? `${formatNumber(Math.round(ms))} ms` : `${(ms / 1000).toFixed(2)} s`);

/** "15 min", "1 h", "2 days". */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return 'none';
  if (seconds % 86_400 === 0) return `${seconds / 86_400} ${seconds === 86_400 ? 'day' : 'days'}`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
