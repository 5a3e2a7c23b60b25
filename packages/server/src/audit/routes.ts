import { type Static, Type } from '@fastify/type-provider-typebox';
import type { AuditEntry } from '../domain.js';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { iso, msOrNull, NextCursor, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import type { AuditService } from './service.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const AuditLogQuery = Type.Object(
  {
    actor_id: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: 'Only entries by this actor (key id, user id, or e.g. `cli`)' }),
    ),
    target_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Only entries about this key or user' })),
    action: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z_]+\\.[a-z_]+$', description: 'Only this action, e.g. `key.revoke`' }),
    ),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Only entries at or after this instant' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Only entries before this instant' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: '`next_cursor` from the previous page' })),
  },
  { additionalProperties: false },
);

const AUDIT_ENTRY_EXAMPLE = {
  id: '0197a4d5-7e8f-7a0b-8c1d-2e3f4a5b6c7d',
  actor_type: 'api_key',
  actor_id: '0197a4d0-11aa-7c2e-8d3f-4b5a6c7d8e9f',
  action: 'key.revoke',
  target_type: 'api_key',
  target_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  changes: { is_active: { from: true, to: false }, revoked_at: { from: null, to: '2025-06-03T08:00:00.000Z' } },
  ip: '203.0.113.7',
  created_at: '2025-06-03T08:00:00.000Z',
};

export const AuditEntryResponse = Type.Object(
  {
    id: Type.String(),
    actor_type: Type.String({ description: '`api_key`, `user` or `system`' }),
    actor_id: Nullable(Type.String({ description: 'Who did it: a key id, a user id, or the system actor (`cli`, `bootstrap`)' })),
    action: Type.String({ description: 'e.g. `key.create`, `key.revoke`, `user.update`' }),
    target_type: Type.String(),
    target_id: Nullable(Type.String()),
    changes: Type.Record(Type.String(), Type.Unknown(), {
      description: 'What changed (field names and non-secret values; never a key or hash)',
    }),
    ip: Nullable(Type.String()),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'AuditEntry', description: 'One management change: who, what, when', examples: [AUDIT_ENTRY_EXAMPLE] },
);
type AuditEntryResponse = Static<typeof AuditEntryResponse>;

export const AuditLogResponse = Type.Object(
  { data: Type.Array(ref(AuditEntryResponse)), next_cursor: NextCursor },
  { $id: 'AuditLogPage', description: 'A page of audit log entries, newest first' },
);

/** The audit wing's named components of the OpenAPI document (registered by the app). */
export const AUDIT_SCHEMAS = [AuditEntryResponse, AuditLogResponse];

export function auditEntryView(entry: AuditEntry): AuditEntryResponse {
  return {
    id: entry.id,
    actor_type: entry.actorType,
    actor_id: entry.actorId,
    action: entry.action,
    target_type: entry.targetType,
    target_id: entry.targetId,
    changes: entry.changes,
    ip: entry.ip,
    created_at: iso(entry.createdAt),
  };
}

export function auditLogRoutes(app: App, deps: { audit: AuditService }): void {
  app.get(
    '/v1/audit-logs',
    {
      schema: {
        operationId: 'listAuditLogs',
        tags: ['Audit log'],
        summary: 'List audit log entries',
        description:
          'Admin only. Every management change (key create/update/deactivate/activate/revoke/roll/delete, user changes, bootstrap), newest first, naming the actor and what changed. Filter by `actor_id`, `target_id`, `action` and time range [`from`, `to`); page with `cursor`.',
        security: SECURED,
        querystring: AuditLogQuery,
        response: {
          200: ref(AuditLogResponse, { description: 'A page of entries', examples: [{ data: [AUDIT_ENTRY_EXAMPLE], next_cursor: null }] }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const page = unwrap(
        await deps.audit.list(callerOf(request), {
          actorId: q.actor_id,
          targetId: q.target_id,
          action: q.action,
          from: msOrNull(q.from) ?? undefined,
          to: msOrNull(q.to) ?? undefined,
          limit: q.limit,
          cursor: q.cursor,
        }),
      );
      return { data: page.items.map(auditEntryView), next_cursor: page.nextCursor };
    },
  );
}
