/** A titled table of text cells, printed as an aligned Markdown table (readable in a terminal, pasteable). */
export interface Table {
  title: string;
  headers: string[];
  rows: string[][];
  notes?: string[];
}

export function renderTable({ title, headers, rows, notes = [] }: Table): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [
    `### ${title}`,
    '',
    line(headers),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
    ...(notes.length ? ['', ...notes.map((n) => `- ${n}`)] : []),
    '',
  ].join('\n');
}
