/** The verification codes, in the order the server checks them (the first failure decides). */
export const OUTCOMES = [
  'VALID',
  'INVALID_FORMAT',
  'NOT_FOUND',
  'REVOKED',
  'DISABLED',
  'EXPIRED',
  'INSUFFICIENT_SCOPES',
  'RATE_LIMITED',
  'USAGE_EXCEEDED',
] as const;

/** Colours per verification code (the rest get gray). */
export const OUTCOME_COLORS: Record<string, string> = {
  VALID: 'teal.6',
  RATE_LIMITED: 'yellow.6',
  USAGE_EXCEEDED: 'orange.6',
  INSUFFICIENT_SCOPES: 'grape.5',
  EXPIRED: 'gray.5',
  DISABLED: 'gray.6',
  REVOKED: 'red.6',
  NOT_FOUND: 'red.4',
  INVALID_FORMAT: 'pink.5',
};

/** "RATE_LIMITED" → "Rate limited". */
export const outcomeLabel = (code: string): string => code.charAt(0) + code.slice(1).toLowerCase().replace(/_/g, ' ');

/** Chart series for these codes: VALID first, then by name, each with its label and colour. */
export const outcomeSeries = (codes: Iterable<string>) =>
  [...new Set(codes)]
    .sort((a, b) => (a === 'VALID' ? -1 : b === 'VALID' ? 1 : a.localeCompare(b)))
    .map((code) => ({ name: code, label: outcomeLabel(code), color: OUTCOME_COLORS[code] ?? 'gray.4' }));

/** A Mantine colour token ("teal.6") as the CSS variable it names. */
export const mantineColor = (token: string): string => {
  const [name, shade] = token.split('.');
  return `var(--mantine-color-${name}-${shade ?? 6})`;
};
