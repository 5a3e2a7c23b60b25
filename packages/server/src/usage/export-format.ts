// Usage rows as CSV (RFC 4180) and JSON Lines, for `GET /v1/usage/events?format=csv|jsonl`. Written by hand: no
// CSV writer is among the server's dependencies, and these few lines are the whole of what an export needs.

/** A usage row as the API shows it (JSON page, JSON Lines, and, column by column, CSV). */
export interface UsageRowView {
  id: string;
  key_id: string | null;
  endpoint: string | null;
  method: string | null;
  status_code: number | null;
  ip_address: string | null;
  user_agent: string | null;
  response_time_ms: number | null;
  outcome: string;
  tags: string[];
  created_at: string;
}

/** The CSV columns, in order: the JSON fields, with `tags` as a JSON array. */
export const CSV_COLUMNS = [
  'id',
  'created_at',
  'key_id',
  'outcome',
  'method',
  'endpoint',
  'status_code',
  'response_time_ms',
  'ip_address',
  'user_agent',
  'tags',
] as const satisfies readonly (keyof UsageRowView)[];

/**
 * Characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection): `=`, `+`, `-`, `@`, and tab
 * and carriage return, which some spreadsheets skip before looking.
 */
const FORMULA_START = /^[=+\-@\t\r]/;
/** RFC 4180: a field holding a comma, a double quote or a line break is quoted. */
const NEEDS_QUOTES = /[",\r\n]/;

/**
 * One CSV field. A text starting like a formula gets a leading `'`, so a spreadsheet shows it as text (a user
 * agent such as `=HYPERLINK(…)` is data, not a formula); numbers are written as they are. Quoted when RFC 4180
 * asks, with `"` doubled; null is an empty field.
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  const text = FORMULA_START.test(value) ? `'${value}` : value;
  return NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The header line, CRLF-terminated. */
export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`;
}

/** One row as a CSV line, CRLF-terminated. */
export function csvLine(row: UsageRowView): string {
  let line = '';
  for (let i = 0; i < CSV_COLUMNS.length; i++) {
    const column = CSV_COLUMNS[i] as (typeof CSV_COLUMNS)[number];
    const value = column === 'tags' ? (row.tags.length === 0 ? null : JSON.stringify(row.tags)) : row[column];
    line += i === 0 ? csvField(value) : `,${csvField(value)}`;
  }
  return `${line}\r\n`;
}

/** One row as a JSON Lines line: the JSON page's row, then `\n`. */
export function jsonLine(row: UsageRowView): string {
  return `${JSON.stringify(row)}\n`;
}

/** The lines of an export, a chunk of rows per string (the header first, for CSV). */
export async function* exportLines(format: 'csv' | 'jsonl', chunks: AsyncIterable<UsageRowView[]>): AsyncGenerator<string> {
  if (format === 'csv') yield csvHeader();
  const line = format === 'csv' ? csvLine : jsonLine;
  for await (const rows of chunks) {
    let text = '';
    for (const row of rows) text += line(row);
    yield text;
  }
}
