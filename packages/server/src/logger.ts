import { LogController } from 'fastify';
import type { LoggerOptions } from 'pino';
import type { LogLevel } from './config.js';

/**
 * Paths pino censors before anything is written. Keys never reach a log line by design (request bodies
 * and headers are not logged); this is the second fence in case a future log call includes one.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'key',
  'token',
  'secret',
  '*.key',
  '*.token',
  '*.secret',
  'body',
  '*.body',
  // A database error's detail names the values of the row it refused (`Key (key_hash)=(…) already exists`).
  'err.detail',
  'err.parameters',
  'err.where',
];

interface LoggedRequest {
  method?: string;
  url?: string;
  ip?: string;
  id?: unknown;
}

/**
 * Request lines carry the path only: a client that puts a key in a query string (`?api_key=kw_…`) must not
 * have it written to the log, so the query string is never logged.
 */
export function requestSerializer(request: LoggedRequest): Record<string, unknown> {
  return { id: request.id, method: request.method, path: request.url?.split('?')[0], ip: request.ip };
}

export function loggerOptions(level: LogLevel): LoggerOptions {
  return { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, serializers: { req: requestSerializer } };
}

/** The log field holding a request's id: the problem body's member's name, so one search finds both. */
export const REQUEST_ID_LOG_LABEL = 'request_id';

/**
 * How the apps log requests: each request's lines carry its id as `request_id` (the `X-Request-Id` it came with,
 * or a new one). Per-request lines (incoming, completed) only at debug or trace: they would cost the verify path
 * a measurable share of its speed.
 */
export function logController(level: LogLevel): LogController {
  return new LogController({ disableRequestLogging: level !== 'debug' && level !== 'trace', requestIdLogLabel: REQUEST_ID_LOG_LABEL });
}
