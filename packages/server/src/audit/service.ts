import { type Caller, isAdmin } from '../callers/principal.js';
import type { AuditEntry } from '../domain.js';
import { err, ok, type Result } from '../errors.js';
import { decodeCursor, encodeCursor, type Page } from '../pagination.js';
import type { Db } from '../store/database.js';
import { listAuditEntries } from './repository.js';

export interface AuditQuery {
  actorId?: string | undefined;
  targetId?: string | undefined;
  action?: string | undefined;
  /** Epoch ms, inclusive. */
  from?: number | undefined;
  /** Epoch ms, exclusive. */
  to?: number | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

export type AuditService = ReturnType<typeof createAuditService>;

export function createAuditService({ db: { db } }: { db: Db }) {
  return {
    /** The audit log, newest first, filtered and paginated by cursor. Admins only. */
    async list(caller: Caller, query: AuditQuery): Promise<Result<Page<AuditEntry>>> {
      if (!isAdmin(caller.principal)) return err('FORBIDDEN', 'the audit log is for admins');
      const before = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      if (before === null) {
        return err('INVALID_REQUEST', 'querystring.cursor: is not a cursor from a previous page', [
          { field: 'querystring.cursor', message: 'is not a cursor from a previous page' },
        ]);
      }
      const limit = query.limit ?? 50;
      const rows = await listAuditEntries(db, {
        actorId: query.actorId,
        targetId: query.targetId,
        action: query.action,
        from: query.from,
        to: query.to,
        limit,
        before,
      });
      const items = rows.slice(0, limit);
      const last = items.at(-1);
      return ok({ items, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null });
    },
  };
}
