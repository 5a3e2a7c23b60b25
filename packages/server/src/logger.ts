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
];

export function loggerOptions(level: LogLevel): LoggerOptions {
  return { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
}
