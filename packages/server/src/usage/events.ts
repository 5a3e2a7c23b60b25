import { type Caller, isAdmin, keyReach, type Principal } from '../callers/principal.js';
import { VERIFY_CODES } from '../domain.js';
import { err, type Failure, ok, type Result } from '../errors.js';
import type { KeyService } from '../keys/service.js';
import type { Executor } from '../store/schema.js';
import {
  type EventScope,
  listUsageEvents,
  streamUsageEvents,
  type UsageEventFilter,
  type UsageEventRow,
  type UsagePosition,
  userExists,
} from './events.repository.js';
import { tagsOf } from './tags.js';

/** One usage row, as read back. */
export interface UsageEvent {
  id: string;
  keyId: string | null;
  endpoint: string | null;
  method: string | null;
  statusCode: number | null;
  ipAddress: string | null;
  userAgent: string | null;
  responseTimeMs: number | null;
  outcome: string;
  tags: string[];
  createdAt: number;
}

/** `GET /v1/usage/events` as asked: every filter optional, as the query string gives it. */
export interface UsageEventQuery {
  keyId?: string | undefined;
  userId?: string | undefined;
  from?: number | undefined;
  to?: number | undefined;
  /** A verification code, or several separated by commas. */
  outcome?: string | undefined;
  /** `404` (exact) or `4xx` (class). */
  status?: string | undefined;
  /** An exact path, or a prefix ending in `*`. */
  endpoint?: string | undefined;
  tag?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

export interface UsageEventPage {
  items: UsageEvent[];
  nextCursor: string | null;
}

/** Rows a page holds by default, and at most. */
export const DEFAULT_EVENTS_LIMIT = 100;
export const MAX_EVENTS_LIMIT = 1000;
/** Rows read per query while exporting. */
export const EXPORT_CHUNK_ROWS = 1000;

/** How many exports may run at once: per caller (a key, or a signed-in user), and on the instance. */
export interface ExportLimits {
  perCaller: number;
  perInstance: number;
}

/**
 * An export holds the database for as long as its download takes; a few per caller, and a few more per instance,
 * keep the rest of the instance's work going.
 */
export const EXPORT_LIMITS: ExportLimits = { perCaller: 2, perInstance: 8 };
/** `Retry-After` of an export refused for too many running. */
export const EXPORT_RETRY_AFTER_SECONDS = 5;

export type UsageEvents = ReturnType<typeof createUsageEvents>;

function invalid(field: string, message: string): Failure<'INVALID_REQUEST'> {
  return err('INVALID_REQUEST', `${field}: ${message}`, [{ field, message }]);
}

/** A cursor names the last row of a page: its time and id, opaque to clients. */
export function encodeEventCursor(position: UsagePosition): string {
  return Buffer.from(`${position.createdAt}.${position.id}`, 'utf8').toString('base64url');
}

export function decodeEventCursor(cursor: string): UsagePosition | null {
  const match = /^(\d{1,16})\.(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (match === null) return null;
  const createdAt = Number(match[1]);
  const id = Number(match[2]);
  return Number.isSafeInteger(createdAt) && Number.isSafeInteger(id) ? { createdAt, id } : null;
}

const CODES: ReadonlySet<string> = new Set(VERIFY_CODES);

/** The filters of a query, checked; the scope is decided apart (it needs the caller). */
function filtersOf(query: UsageEventQuery): Result<Omit<UsageEventFilter, 'scope'>> {
  const filter: Omit<UsageEventFilter, 'scope'> = { from: query.from, to: query.to, tag: query.tag };
  if (query.from !== undefined && query.to !== undefined && query.from >= query.to)
    return invalid('querystring.from', 'must be before `to`');
  if (query.outcome !== undefined) {
    const outcomes = [...new Set(query.outcome.split(',').map((o) => o.trim()))];
    const unknown = outcomes.find((o) => !CODES.has(o));
    if (unknown !== undefined)
      return invalid('querystring.outcome', `must be verification codes separated by commas (${VERIFY_CODES.join(', ')})`);
    filter.outcomes = outcomes;
  }
  if (query.status !== undefined) {
    const match = /^([1-5])(\d\d|xx)$/i.exec(query.status);
    if (match === null) return invalid('querystring.status', 'must be a status such as `404` or a class such as `4xx`');
    filter.status = /\d\d/.test(match[2] ?? '') ? { code: Number(query.status) } : { class: Number(match[1]) };
  }
  if (query.endpoint !== undefined) {
    const { endpoint } = query;
    if (!endpoint.endsWith('*')) filter.endpoint = { exact: endpoint };
    else if (endpoint.length > 1) filter.endpoint = { prefix: endpoint.slice(0, -1) };
  }
  return ok(filter);
}

function eventOf(row: UsageEventRow): UsageEvent {
  return {
    id: String(row.id),
    keyId: row.api_key_id,
    endpoint: row.endpoint,
    method: row.method,
    statusCode: row.status_code,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    responseTimeMs: row.response_time_ms,
    outcome: row.outcome,
    tags: tagsOf(row.tags),
    createdAt: Number(row.created_at),
  };
}

/** Who an export counts against: the key, or the signed-in user, or the local operator. */
function exporterOf(principal: Principal): string {
  switch (principal.kind) {
    case 'key':
      return `key:${principal.key.id}`;
    case 'user':
      return `user:${principal.user.id}`;
    case 'system':
      return `system:${principal.name}`;
  }
}

/**
 * `chunks`, calling `release` once when they end, fail or are given up (`return()`, as a closed download's stream
 * does), whether or not a chunk was read: a generator given up before its first step never runs its `finally`.
 */
function releasing<T>(chunks: AsyncGenerator<T, void>, release: () => void): AsyncIterableIterator<T> {
  let held = true;
  const done = () => {
    if (!held) return;
    held = false;
    release();
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      try {
        const step = await chunks.next();
        if (step.done === true) done();
        return step;
      } catch (error) {
        done();
        throw error;
      }
    },
    async return() {
      try {
        return await chunks.return(undefined);
      } finally {
        done();
      }
    },
    async throw(error: unknown) {
      try {
        return await chunks.throw(error);
      } finally {
        done();
      }
    },
  };
}

/**
 * Reading usage rows back: a page at a time (`list`) or all of a selection (`export`). Whoever may read a key's
 * usage counts may read its rows: an admin every row (those of unknown keys too); a key with
 * `keyward:keys:read` or `:write` the rows of the keys it reaches (its user's only, when it belongs to one); a
 * signed-in user their own keys'. `key_id` is read as `GET /v1/api-keys/{id}` reads it (404 unknown, 403
 * another's); `user_id` names a user the caller reaches (403 another, 404 unknown).
 */
export function createUsageEvents({
  db,
  keys,
  scanBudgets,
  exportLimits = EXPORT_LIMITS,
}: {
  db: Executor;
  keys: Pick<KeyService, 'get'>;
  /** Rows a page may walk for a filter no index serves (tests make it small); default `SCAN_BUDGETS` (events.repository.ts). */
  scanBudgets?: readonly number[];
  /** Exports running at once; default {@link EXPORT_LIMITS}. */
  exportLimits?: ExportLimits;
}) {
  // Exports running now, on this instance and per caller.
  const running = new Map<string, number>();
  let runningTotal = 0;

  /** Takes a slot for an export by `exporter`; false when the caller, or the instance, runs as many as it may. */
  function startExport(exporter: string): boolean {
    const mine = running.get(exporter) ?? 0;
    if (mine >= exportLimits.perCaller || runningTotal >= exportLimits.perInstance) return false;
    running.set(exporter, mine + 1);
    runningTotal += 1;
    return true;
  }

  function endExport(exporter: string): void {
    const mine = running.get(exporter) ?? 0;
    if (mine <= 1) running.delete(exporter);
    else running.set(exporter, mine - 1);
    runningTotal -= 1;
  }

  /** The rows `caller` may read that `query` selects; `null` scope: none (a key of another user than `user_id`). */
  async function selection(caller: Caller, query: UsageEventQuery): Promise<Result<UsageEventFilter | null>> {
    const reach = keyReach(caller.principal, 'read');
    if (reach === null) return err('FORBIDDEN', 'this credential may not read usage');
    const filters = filtersOf(query);
    if (!filters.ok) return filters;
    let scope: EventScope;
    if (query.keyId !== undefined) {
      const readable = await keys.get(caller, query.keyId);
      if (!readable.ok) return readable;
      if (query.userId !== undefined && readable.value.userId !== query.userId) return ok(null);
      scope = { kind: 'key', keyId: query.keyId };
    } else if (query.userId !== undefined) {
      if (!reach.all && reach.userId !== query.userId) return err('FORBIDDEN', 'this credential may read only its own user’s usage');
      if (reach.all && !(await userExists(db, query.userId))) return err('USER_NOT_FOUND');
      scope = { kind: 'user', userId: query.userId };
    } else {
      scope = !reach.all ? { kind: 'user', userId: reach.userId } : isAdmin(caller.principal) ? { kind: 'all' } : { kind: 'keys' };
    }
    return ok({ scope, ...filters.value });
  }

  return {
    /** One page of rows, newest first; `nextCursor` continues it (with the same filters). */
    async list(caller: Caller, query: UsageEventQuery): Promise<Result<UsageEventPage>> {
      let after: UsagePosition | undefined;
      if (query.cursor !== undefined) {
        const decoded = decodeEventCursor(query.cursor);
        if (decoded === null) return invalid('querystring.cursor', 'is not a cursor from a previous page');
        after = decoded;
      }
      const selected = await selection(caller, query);
      if (!selected.ok) return selected;
      if (selected.value === null) return ok({ items: [], nextCursor: null });
      const limit = query.limit ?? DEFAULT_EVENTS_LIMIT;
      // One row more than the page says whether another page follows.
      const { rows, scannedTo } = await listUsageEvents(db, selected.value, { after, limit: limit + 1, budgets: scanBudgets });
      const items = rows.slice(0, limit).map(eventOf);
      const last = items[items.length - 1];
      // A walk that ran out of budget goes on from where it stopped, however few rows it found (none, even).
      const nextCursor =
        rows.length > limit && last !== undefined
          ? encodeEventCursor({ createdAt: last.createdAt, id: Number(last.id) })
          : scannedTo === null
            ? null
            : encodeEventCursor(scannedTo);
      return ok({ items, nextCursor });
    },

    /**
     * Every row `query` selects (its `limit` and `cursor` aside), newest first, in chunks read as the consumer
     * pulls them: nothing is held but the chunk in hand. The rights and filters are checked before the first
     * row is read, so a refusal is an answer, not a broken stream. A caller runs at most
     * `exportLimits.perCaller` exports at once, and the instance `perInstance`: past either, `RATE_LIMITED`
     * with a time to retry. An export runs until its chunks end, fail, or are given up (`return()`).
     */
    async export(caller: Caller, query: UsageEventQuery): Promise<Result<AsyncIterableIterator<UsageEvent[]>>> {
      const exporter = exporterOf(caller.principal);
      if (!startExport(exporter)) {
        return {
          ...err(
            'RATE_LIMITED',
            `at most ${exportLimits.perCaller} exports per caller, and ${exportLimits.perInstance} per instance, run at once`,
          ),
          retryAfterSeconds: EXPORT_RETRY_AFTER_SECONDS,
        };
      }
      let selected: Result<UsageEventFilter | null>;
      try {
        selected = await selection(caller, query);
      } catch (error) {
        endExport(exporter);
        throw error;
      }
      if (!selected.ok) {
        endExport(exporter);
        return selected;
      }
      const filter = selected.value;
      async function* chunks(): AsyncGenerator<UsageEvent[], void> {
        if (filter === null) return;
        for await (const rows of streamUsageEvents(db, filter, EXPORT_CHUNK_ROWS, scanBudgets)) yield rows.map(eventOf);
      }
      return ok(releasing(chunks(), () => endExport(exporter)));
    },
  };
}
