/** One page of a list, newest first; `nextCursor` is passed back as `cursor` for the next (null on the last). */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** A cursor for the page after the row `id` (a UUIDv7): opaque to clients. */
export function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

/** The row id in a cursor, or null when it is not one this server made. */
export function decodeCursor(cursor: string): string | null {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  return /^[0-9a-f-]{36}$/.test(id) ? id : null;
}
