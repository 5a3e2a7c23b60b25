/**
 * A database connection, a wait for a pooled connection, or a query that took longer than
 * `DATABASE_TIMEOUT_MS`: the database is treated as unreachable (503, or a cached key from the stale window).
 */
export class DatabaseTimeoutError extends Error {
  readonly code = 'KEYWARD_DATABASE_TIMEOUT';
  constructor(what: string, timeoutMs: number) {
    super(`${what} did not complete within ${timeoutMs} ms`);
    this.name = 'DatabaseTimeoutError';
  }
}

// Errors that mean "the database cannot be reached right now", as opposed to a bug or a bad query.
const NETWORK_CODES = new Set([
  'KEYWARD_DATABASE_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  // query_canceled: Keyward cancels nothing itself, so this is statement_timeout (DATABASE_TIMEOUT_MS).
  '57014',
  '57P01',
  '57P03',
  '08006',
  '08001',
  '08003',
  '08004',
]);
const MESSAGES =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|SQLITE_BUSY|database is locked/i;

export function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
  if (error instanceof AggregateError) return error.errors.some(isUnavailable);
  return MESSAGES.test(error.message);
}
