import { Readable } from 'node:stream';
import { type Static, Type } from '@fastify/type-provider-typebox';
import { VERIFY_CODES, type VerifyCode } from '../domain.js';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { bodyProblems, Id, iso, msOrNull, NextCursor, problems, ref } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import type { UsageAnalytics } from './analytics.js';
import {
  DEFAULT_EVENTS_LIMIT,
  EXPORT_LIMITS,
  MAX_EVENTS_LIMIT,
  type UsageEvent as ReadEvent,
  type UsageEventQuery as ReadQuery,
} from './events.js';
import { MAX_SCAN_ROWS } from './events.repository.js';
import { exportLines, type UsageRowView } from './export-format.js';
import type { UsageIngest } from './ingest.js';
import { Tag, Tags } from './tags.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** Most events in one report (the SDK sends at most this many per request). */
export const MAX_USAGE_EVENTS = 500;
// 500 events at the field limits below stay under this; the global body limit is for ordinary requests.
const REPORT_BODY_LIMIT = 2 * 1024 * 1024;

export const UsageEvent = Type.Object(
  {
    key_id: Nullable(
      Type.String({ minLength: 1, maxLength: 64, description: 'The key’s id, as the verify answer gave it; null for an unknown key' }),
    ),
    outcome: Type.Unsafe<VerifyCode>({
      type: 'string',
      enum: [...VERIFY_CODES],
      description: 'What the key came to for this request: a verification code (`VALID`, `NOT_FOUND`, `RATE_LIMITED`, …)',
    }),
    endpoint: Type.Optional(Nullable(Type.String({ maxLength: 2048, description: 'The request path, without the query string' }))),
    method: Type.Optional(Nullable(Type.String({ maxLength: 16 }))),
    status_code: Type.Optional(Nullable(Type.Integer({ minimum: 100, maximum: 599, description: 'The status the host answered' }))),
    ip_address: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    user_agent: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
    response_time_ms: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 86_400_000 }))),
    occurred_at: Type.Optional(Nullable(Type.String({ format: 'date-time', description: 'When the request was seen; default now' }))),
    tags: Type.Optional(Nullable(Tags)),
  },
  { $id: 'UsageEvent', additionalProperties: false, description: 'One request a host application saw, and what its key came to' },
);

export const UsageEventsBody = Type.Object(
  { events: Type.Array(UsageEvent, { minItems: 1, maxItems: MAX_USAGE_EVENTS }) },
  {
    additionalProperties: false,
    examples: [
      {
        events: [
          {
            key_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
            outcome: 'VALID',
            endpoint: '/invoices',
            method: 'GET',
            status_code: 200,
            ip_address: '203.0.113.7',
            user_agent: 'curl/8.7.1',
            response_time_ms: 12.5,
            occurred_at: '2025-06-02T13:59:58.120Z',
            tags: ['route:/invoices', 'region:eu'],
          },
        ],
      },
    ],
  },
);
export type UsageEventsBody = Static<typeof UsageEventsBody>;

export const UsageEventsQuery = Type.Object(
  {
    key_id: Type.Optional({ ...Id, description: 'Only this key’s rows (as `GET /v1/api-keys/{id}` reads it: 404 unknown, 403 not yours)' }),
    user_id: Type.Optional({ ...Id, description: 'Only the rows of this user’s keys' }),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Rows at or after this instant' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Rows before this instant' })),
    outcome: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: `A verification code, or several separated by commas (${VERIFY_CODES.join(', ')})`,
        examples: ['RATE_LIMITED,USAGE_EXCEEDED'],
      }),
    ),
    status: Type.Optional(
      Type.String({
        pattern: '^[1-5]([0-9]{2}|[xX]{2})$',
        description: 'A status the host answered, exactly (`404`), or a class (`4xx`)',
        examples: ['5xx'],
      }),
    ),
    endpoint: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'A request path, exactly, or every path starting with what comes before a final `*` (`/v1/companies*`)',
        examples: ['/v1/companies*'],
      }),
    ),
    tag: Type.Optional({ ...Tag, description: 'Only rows carrying this tag' }),
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_EVENTS_LIMIT,
        default: DEFAULT_EVENTS_LIMIT,
        description: 'Most rows a page holds (JSON only); a page may hold fewer while `next_cursor` is set',
      }),
    ),
    cursor: Type.Optional(
      Type.String({ maxLength: 200, description: '`next_cursor` from the previous page, with the same filters (JSON only)' }),
    ),
    format: Type.Optional(
      Type.Union([Type.Literal('json'), Type.Literal('csv'), Type.Literal('jsonl')], {
        default: 'json',
        description:
          '`json`: one page. `csv` or `jsonl`: the whole selection, newest first, streamed as a download (`limit` and `cursor` are ignored)',
      }),
    ),
  },
  { additionalProperties: false },
);

export const UsageRow = Type.Object(
  {
    id: Type.String({ description: 'The row’s id, unique in this Keyward' }),
    key_id: Nullable(Type.String({ description: 'The key’s id; null for an unknown or malformed key' })),
    endpoint: Nullable(Type.String({ description: 'The request path (`/v1/keys/verify` for a verification recorded by Keyward)' })),
    method: Nullable(Type.String()),
    status_code: Nullable(Type.Integer()),
    ip_address: Nullable(Type.String()),
    user_agent: Nullable(Type.String()),
    response_time_ms: Nullable(Type.Integer()),
    outcome: Type.String({ description: 'The verification code the key came to (`VALID`, `RATE_LIMITED`, …)' }),
    tags: Type.Array(Type.String(), { description: 'The tags the request carried; empty for none' }),
    created_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'UsageRow', description: 'One request or verification, as recorded' },
);

export const UsageEventPage = Type.Object(
  { data: Type.Array(ref(UsageRow)), next_cursor: NextCursor },
  { $id: 'UsageEventPage', description: 'A page of usage rows, newest first' },
);

const USAGE_ROW_EXAMPLE = {
  id: '48213',
  key_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
  endpoint: '/v1/companies',
  method: 'GET',
  status_code: 200,
  ip_address: '203.0.113.7',
  user_agent: 'curl/8.7.1',
  response_time_ms: 12,
  outcome: 'VALID',
  tags: ['route:/v1/companies', 'region:eu'],
  created_at: '2025-06-02T13:59:58.120Z',
};

const FILE_NAMES = { csv: 'usage-events.csv', jsonl: 'usage-events.jsonl' } as const;
const CONTENT_TYPES = { csv: 'text/csv; charset=utf-8', jsonl: 'application/x-ndjson; charset=utf-8' } as const;

export function usageRowView(e: ReadEvent): UsageRowView {
  return {
    id: e.id,
    key_id: e.keyId,
    endpoint: e.endpoint,
    method: e.method,
    status_code: e.statusCode,
    ip_address: e.ipAddress,
    user_agent: e.userAgent,
    response_time_ms: e.responseTimeMs,
    outcome: e.outcome,
    tags: e.tags,
    created_at: iso(e.createdAt),
  };
}

async function* views(chunks: AsyncIterable<ReadEvent[]>): AsyncGenerator<UsageRowView[]> {
  for await (const chunk of chunks) yield chunk.map(usageRowView);
}

export function usageEventRoutes(app: App, deps: { usageIngest: UsageIngest; usageAnalytics: UsageAnalytics }): void {
  app.get(
    '/v1/usage/events',
    {
      schema: {
        operationId: 'listUsageEvents',
        tags: ['Usage and analytics'],
        summary: 'Read usage rows back',
        description: `The recorded requests and verifications (endpoint, method, status, IP, user agent, response time, outcome, tags), newest first, filtered by key, user, time range, outcome, status, endpoint and tag. \`format=json\` answers a page (up to ${MAX_EVENTS_LIMIT} rows; follow \`next_cursor\`, with the same filters, until it is null). A filter no index serves (an endpoint; a tag on SQLite; an exact status; an outcome or status beside a key or user) is checked on at most ${MAX_SCAN_ROWS.toLocaleString('en-US')} rows a page, so a page may hold fewer rows than \`limit\`, even none, while \`next_cursor\` is set. \`format=csv\` or \`jsonl\` streams the whole selection as a download; a caller (a key, or a signed-in user) runs at most ${EXPORT_LIMITS.perCaller} downloads at once, and an instance ${EXPORT_LIMITS.perInstance}: past that, 429 \`RATE_LIMITED\` with \`Retry-After\`. In CSV, a text starting with \`=\`, \`+\`, \`-\`, \`@\`, tab or carriage return gets a leading \`'\`, so spreadsheets do not run it as a formula. Rights as for usage counts: an admin sees every row (unknown keys’ too); a key holding \`keyward:keys:read\` or \`keyward:keys:write\` its keys’ (its user’s only, when it belongs to a user); a signed-in user their own keys’. Rows are written in batches, so the last second or so may not be there yet.`,
        security: SECURED,
        querystring: UsageEventsQuery,
        response: {
          200: {
            description: 'A page of rows (JSON), or the whole selection (CSV, JSON Lines) as an attachment',
            content: {
              'application/json': {
                schema: ref(UsageEventPage),
                example: { data: [USAGE_ROW_EXAMPLE], next_cursor: 'MTc0ODg3Mjc5ODEyMC40ODIxMw' },
              },
              'text/csv': {
                schema: Type.String({ description: 'RFC 4180, a header line first, CRLF line ends; `tags` as a JSON array' }),
                example:
                  'id,created_at,key_id,outcome,method,endpoint,status_code,response_time_ms,ip_address,user_agent,tags\r\n48213,2025-06-02T13:59:58.120Z,0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90,VALID,GET,/v1/companies,200,12,203.0.113.7,curl/8.7.1,"[""route:/v1/companies""]"\r\n',
              },
              'application/x-ndjson': {
                schema: Type.String({ description: 'One JSON row per line, as in the JSON page' }),
                example: `${JSON.stringify(USAGE_ROW_EXAMPLE)}\n`,
              },
            },
          },
          ...problems(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const query: ReadQuery = {
        keyId: q.key_id,
        userId: q.user_id,
        from: msOrNull(q.from) ?? undefined,
        to: msOrNull(q.to) ?? undefined,
        outcome: q.outcome,
        status: q.status,
        endpoint: q.endpoint,
        tag: q.tag,
        limit: q.limit,
        cursor: q.cursor,
      };
      const format = q.format ?? 'json';
      if (format === 'json') {
        const page = unwrap(await deps.usageAnalytics.listEvents(callerOf(request), query));
        return { data: page.items.map(usageRowView), next_cursor: page.nextCursor };
      }
      const chunks = unwrap(await deps.usageAnalytics.exportEvents(callerOf(request), query));
      // Pulled as the socket drains: a chunk of rows is read only when the one before has been written.
      const body = Readable.from(exportLines(format, views(chunks)));
      // However the download ends, the export ends: even closed before its first chunk, when the generators above
      // never started (and so never pass a `return()` on), it gives its slot back.
      body.once('close', () => void chunks.return?.());
      return (
        reply
          .header('content-type', CONTENT_TYPES[format])
          .header('content-disposition', `attachment; filename="${FILE_NAMES[format]}"`)
          .header('cache-control', 'no-store')
          // A stream is sent as it is, not serialized: the typed payload is the JSON page's.
          .send(body as never)
      );
    },
  );

  app.post(
    '/v1/usage/events',
    {
      bodyLimit: REPORT_BODY_LIMIT,
      schema: {
        operationId: 'reportUsageEvents',
        tags: ['Usage and analytics'],
        summary: 'Report requests seen by a host application',
        description: `For the SDK middleware and the gateway: one usage row per request they saw (endpoint, method, status, IP, user agent, response time, outcome), in batches of up to ${MAX_USAGE_EVENTS}. Rows are written in batches off the request path; 202 means taken, not yet written (a full buffer drops rows and counts them in \`/metrics\`). The caller needs an admin key or \`keyward:verify\`.`,
        security: SECURED,
        body: UsageEventsBody,
        response: {
          202: Type.Object(
            { accepted: Type.Integer({ description: 'How many events were taken' }) },
            { description: 'Taken, to be written shortly', examples: [{ accepted: 1 }] },
          ),
          ...bodyProblems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const accepted = unwrap(
        deps.usageIngest.report(
          callerOf(request),
          request.body.events.map((e) => ({
            keyId: e.key_id,
            outcome: e.outcome,
            endpoint: e.endpoint,
            method: e.method,
            statusCode: e.status_code,
            ipAddress: e.ip_address,
            userAgent: e.user_agent,
            responseTimeMs: e.response_time_ms,
            occurredAt: msOrNull(e.occurred_at),
            tags: e.tags,
          })),
        ),
      );
      return reply.code(202).send(accepted);
    },
  );
}
