import { v7 as uuidv7 } from 'uuid';
import { actorOf, type Caller } from '../callers/principal.js';
import type { AuditEntry } from '../domain.js';
import type { Executor } from '../store/schema.js';
import { insertAuditEntry } from './repository.js';

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
  | 'key.leaked';

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

/**
 * How an audited field appears in `changes`: under the API's name for it and in the API's form (`show` turns
 * the stored value into it; without one the value is shown as stored).
 */
export type AuditedFields<T> = { readonly [K in keyof T]?: readonly [name: string, show?: (value: T[K]) => unknown] };

function shown<T>(fields: AuditedFields<T>, field: keyof T, value: unknown): { name: string; value: unknown } {
  const [name, show] = fields[field] as readonly [string, ((value: unknown) => unknown)?];
  return { name, value: show ? show(value) : value };
}

/** `{name: {from, to}}` for each listed field whose shown value differs (compared as JSON). */
export function diff<T extends object>(before: T, after: Partial<T>, fields: AuditedFields<T>): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const field of Object.keys(fields) as (keyof T & string)[]) {
    if (!(field in after)) continue;
    const from = shown(fields, field, before[field]);
    const to = shown(fields, field, after[field]);
    if (JSON.stringify(from.value) !== JSON.stringify(to.value)) changes[from.name] = { from: from.value, to: to.value };
  }
  return changes;
}

/** `{name: value}` for each listed field of `record`, as shown. */
export function facts<T extends object>(record: T, fields: AuditedFields<T>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of Object.keys(fields) as (keyof T & string)[]) {
    const { name, value } = shown(fields, field, record[field]);
    out[name] = value;
  }
  return out;
}
