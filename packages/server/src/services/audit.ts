import { v7 as uuidv7 } from 'uuid';
import type { AuditEntry } from '../domain.js';
import { insertAuditEntry } from '../store/audit-log.repository.js';
import type { Executor } from '../store/schema.js';
import { actorOf, type Caller } from './principal.js';

export type AuditAction =
  | 'key.create'
  | 'key.update'
  | 'key.deactivate'
  | 'key.activate'
  | 'key.revoke'
  | 'key.roll'
  | 'key.delete'
  | 'user.create'
  | 'user.update'
  | 'user.delete'
  | 'admin.bootstrap'
  | 'leak.revoke';

/**
 * Writes one audit row in the caller's transaction. `changes` must never hold a secret: callers pass
 * field names and non-secret values only (never a key, a hash or a token).
 */
export async function audit(
  trx: Executor,
  caller: Caller,
  action: AuditAction,
  target: { type: 'api_key' | 'user'; id: string },
  changes: Record<string, unknown> = {},
  now = Date.now(),
): Promise<void> {
  const actor = actorOf(caller.principal);
  const entry: AuditEntry = {
    id: uuidv7(),
    actorType: actor.type,
    actorId: actor.id,
    action,
    targetType: target.type,
    targetId: target.id,
    changes,
    ip: caller.ip,
    createdAt: now,
  };
  await insertAuditEntry(trx, entry);
}

/** `{field: {from, to}}` for each field whose value differs (compared as JSON). */
export function diff<T extends object>(before: T, after: Partial<T>, fields: readonly (keyof T & string)[]): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const field of fields) {
    if (!(field in after)) continue;
    const from = before[field];
    const to = after[field];
    if (JSON.stringify(from) !== JSON.stringify(to)) changes[field] = { from, to };
  }
  return changes;
}
