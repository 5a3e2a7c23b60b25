import type { ApiKey, AuditLogPage, KeyUsage, User, VerifyKeyResult } from '@keyward/sdk';
import { out, warn } from './common.js';

// Readable output: tables with a header and aligned columns, and a record as aligned `field  value` lines.
// Nothing here ever receives a key: the views are the API's, which hold only its display prefix.

/** Prints rows under a header, each column as wide as its widest cell. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  out(line(headers));
  for (const row of rows) out(line(row));
}

/** Prints one record as `field  value` lines. */
export function printRecord(fields: [string, string][]): void {
  const width = Math.max(...fields.map(([name]) => name.length));
  for (const [name, value] of fields) out(`${name.padEnd(width)}  ${value}`);
}

/** Tells on stderr how to get the next page, when there is one. */
export function printNextCursor(nextCursor: string | null | undefined, what: string): void {
  if (nextCursor) warn(`more ${what}: next page with --cursor ${nextCursor}`);
}

/** An instant to the second: `2026-07-01 10:00:00Z`. */
const when = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');
const clip = (text: string, max = 60) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

export function printKeys(keys: ApiKey[]): void {
  printTable(
    ['ID', 'PREFIX', 'STATUS', 'ADMIN', 'CREATED', 'NAME'],
    keys.map((k) => [k.id, k.key_prefix, k.status, k.is_admin ? 'admin' : '-', when(k.created_at), k.name]),
  );
}

export function printKey(k: ApiKey): void {
  printRecord([
    ['id', k.id],
    ['name', k.name],
    ['description', k.description ?? '-'],
    ['prefix', k.key_prefix],
    ['status', k.status],
    ['admin', k.is_admin ? 'yes' : 'no'],
    ['user', k.user_id ?? '-'],
    ['scopes', k.scopes.length > 0 ? k.scopes.join(' ') : '-'],
    ['metadata', Object.keys(k.metadata).length > 0 ? JSON.stringify(k.metadata) : '-'],
    ['rate limit', k.rate_limit ? `${k.rate_limit.limit} per ${k.rate_limit.window_seconds}s` : '-'],
    [
      'quota',
      k.quota
        ? `${k.quota.remaining} left${k.quota.refill ? `, refilled to ${k.quota.refill.amount} each ${k.quota.refill.interval}` : ''}`
        : '-',
    ],
    ['expires', when(k.expires_at)],
    ['last used', when(k.last_used_at)],
    ['rolled from', k.rolled_from ?? '-'],
    ['created', `${when(k.created_at)} by ${k.created_by}`],
    ['updated', when(k.updated_at)],
    ...(k.revoked_at ? ([['revoked', when(k.revoked_at)]] as [string, string][]) : []),
  ]);
}

export function printUsers(users: User[]): void {
  printTable(
    ['ID', 'EXTERNAL ID', 'TIER', 'CREATED', 'EMAIL'],
    users.map((u) => [u.id, u.external_id, u.tier, when(u.created_at), u.email ?? '-']),
  );
}

export function printUser(u: User): void {
  printRecord([
    ['id', u.id],
    ['external id', u.external_id],
    ['tier', u.tier],
    ['email', u.email ?? '-'],
    ['created', when(u.created_at)],
    ['updated', when(u.updated_at)],
  ]);
}

export function printUsage(usage: KeyUsage): void {
  const codes = Object.keys(usage.totals.outcomes).sort();
  printTable(
    ['START', 'TOTAL', ...codes],
    [
      ...usage.buckets.map((b) => [when(b.start), String(b.total), ...codes.map((c) => String(b.outcomes[c] ?? 0))]),
      ['all', String(usage.totals.total), ...codes.map((c) => String(usage.totals.outcomes[c] ?? 0))],
    ],
  );
}

export function printAudit(page: AuditLogPage): void {
  printTable(
    ['TIME', 'ACTOR', 'ACTION', 'TARGET', 'CHANGES'],
    page.data.map((e) => [
      when(e.created_at),
      `${e.actor_type}:${e.actor_id ?? '-'}`,
      e.action,
      `${e.target_type}:${e.target_id ?? '-'}`,
      clip(JSON.stringify(e.changes)),
    ]),
  );
}

export function printVerification(v: VerifyKeyResult): void {
  printRecord([
    ['valid', v.valid ? 'yes' : 'no'],
    ['code', v.code],
    ...(v.key_id === undefined
      ? []
      : ([
          ['key id', v.key_id],
          ['name', v.name ?? '-'],
          ['user', v.user_id ?? '-'],
          ['scopes', v.scopes && v.scopes.length > 0 ? v.scopes.join(' ') : '-'],
          ['expires', when(v.expires_at)],
        ] as [string, string][])),
    ...(v.remaining === undefined ? [] : ([['quota left', String(v.remaining)]] as [string, string][])),
  ]);
}
