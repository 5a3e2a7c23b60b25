import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, type Failure, type FieldError, ProblemError, problem, type Result, statusOf } from '../errors.js';
import { REQUEST_ID_LOG_LABEL } from '../logger.js';
import { isUnavailable } from '../store/unavailable.js';
import { echoRequestId, REQUEST_ID_HEADER, requestIdOf } from './request-id.js';

/** The value of a successful service result; a failure becomes a problem+json response. */
export function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw toProblemError(result);
}

export function toProblemError(failure: Failure): ProblemError {
  const headers = failure.retryAfterSeconds === undefined ? undefined : { 'retry-after': String(failure.retryAfterSeconds) };
  const members = failure.keyId === undefined ? undefined : { key_id: failure.keyId };
  return new ProblemError(failure.code, failure.detail, failure.errors, headers, members);
}

/**
 * Sends `code` as problem+json: the catalogue's members, `instance` (the path), `request_id` (also sent as
 * `X-Request-Id`) and any extension `members` a route documents (e.g. `key_id`).
 */
export function sendProblem(
  reply: FastifyReply,
  code: ErrorCode,
  detail?: string,
  errors?: FieldError[],
  headers?: Record<string, string>,
  members?: Record<string, unknown>,
): FastifyReply {
  const { request } = reply;
  const body = { ...problem(code, detail, errors), instance: request.url.split('?')[0], request_id: request.id, ...members };
  if (headers) reply.headers(headers);
  // Serialized here, not by the route's response schema: every problem has the same members wherever it is sent
  // from (a hook, a 404, a framework error), and this is never the hot path.
  return reply.code(body.status).header(REQUEST_ID_HEADER, request.id).type('application/problem+json').send(JSON.stringify(body));
}

/**
 * What Fastify's router refuses before any hook runs (`frameworkErrors`): a URL it cannot percent-decode (`/%zz`,
 * invalid UTF-8), a path parameter longer than `maxParamLength`; anything else it reports there is ours (500).
 */
export function onFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (error.code === 'FST_ERR_BAD_URL') {
    sendProblem(reply, 'INVALID_REQUEST', 'the request path is not valid (a bad percent-encoding or invalid UTF-8)');
  } else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    sendProblem(reply, 'URI_TOO_LONG', 'a path parameter is too long');
  } else {
    request.log.error({ err: error }, 'unhandled framework error');
    sendProblem(reply, 'INTERNAL_ERROR');
  }
}

/** Node's parser errors (`clientError`) answered with a status; the rest (a malformed request line, header…) are 400. */
const CLIENT_ERRORS: Record<string, ErrorCode> = {
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
};

/**
 * A request Node's HTTP parser refused before Fastify saw it (`clientErrorHandler`): headers over
 * `maxHeaderSize` (431), a malformed request (400). Answered as problem+json on the raw socket, which is then
 * closed, as Node's and Fastify's own handlers do. Logged at debug only: a hostile client sending thousands must
 * not flood the log.
 */
export function onClientError(this: FastifyInstance, error: ConnectionError, socket: Socket): void {
  // A reset connection has no one to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const id = randomUUID();
  this.log.debug({ err: { message: error.message, code: error.code }, [REQUEST_ID_LOG_LABEL]: id }, 'client error');
  if (socket.writable) {
    const code = (error.code && CLIENT_ERRORS[error.code]) || 'INVALID_REQUEST';
    const body = JSON.stringify({ ...problem(code), request_id: id });
    socket.write(
      `HTTP/1.1 ${statusOf(code)} ${STATUS_CODES[statusOf(code)]}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${REQUEST_ID_HEADER}: ${id}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

interface ValidationIssue {
  keyword?: string;
  schemaPath?: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

const names = (value: unknown): string[] =>
  typeof value === 'string' ? [value] : Array.isArray(value) ? value.filter((v) => typeof v === 'string') : [];

/** Validation issues (TypeBox or Ajv shape) as `{field, message}`, one per field, named like `body.expires_at`. */
function fieldErrors(context: string, issues: readonly ValidationIssue[]): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of issues) {
    // TypeBox reports an unknown property twice; keep the `additionalProperties` report, which names it.
    if (issue.keyword === 'boolean' && issue.schemaPath?.endsWith('/additionalProperties')) continue;
    const base = [context, ...(issue.instancePath ?? '').split('/').filter(Boolean)];
    const unknown = [...names(issue.params?.additionalProperties), ...names(issue.params?.additionalProperty)];
    const missing = [...names(issue.params?.requiredProperties), ...names(issue.params?.missingProperty)];
    for (const name of unknown) out.push({ field: [...base, name].join('.'), message: 'is not a known field' });
    for (const name of missing) out.push({ field: [...base, name].join('.'), message: 'is required' });
    if (unknown.length === 0 && missing.length === 0) out.push({ field: base.join('.'), message: issue.message ?? 'is not valid' });
  }
  return out;
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_REQUEST',
};

/**
 * The Fastify options every Keyward app is built with (the API and the gateway): request ids, and the answers
 * Fastify and Node give before any handler, as problem+json.
 */
export const PROBLEM_SERVER_OPTIONS = {
  genReqId: requestIdOf,
  frameworkErrors: onFrameworkError,
  clientErrorHandler: onClientError,
} as const;

/**
 * One error handler and one not-found handler: every error leaves as RFC 9457 problem+json, and every answer
 * carries `X-Request-Id`. Registered on the root, before any route.
 */
export function installProblemHandlers(app: FastifyInstance): void {
  echoRequestId(app);
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof ProblemError) {
      return sendProblem(reply, error.code, error.detail, error.errors, error.headers, error.members);
    }
    if (error.validation) {
      const errors = fieldErrors(error.validationContext ?? 'body', error.validation as ValidationIssue[]);
      const first = errors[0];
      return sendProblem(reply, 'INVALID_REQUEST', first ? `${first.field}: ${first.message}` : undefined, errors);
    }
    const mapped = (error.code && FASTIFY_CODES[error.code]) ?? (error instanceof SyntaxError ? 'INVALID_REQUEST' : undefined);
    if (mapped) return sendProblem(reply, mapped, mapped === 'INVALID_REQUEST' ? 'the body is not valid JSON' : undefined);
    if (isUnavailable(error)) {
      // The dependency monitor logs the outage once; a line per refused request would flood the log.
      request.log.debug({ err: { message: error.message, code: error.code } }, 'database unavailable');
      return sendProblem(reply, 'SERVICE_UNAVAILABLE', 'the database cannot be reached; try again shortly', undefined, {
        'retry-after': '5',
      });
    }
    if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return sendProblem(reply, error.statusCode === 405 ? 'METHOD_NOT_ALLOWED' : 'INVALID_REQUEST', error.message);
    }
    // 5xx bodies never carry internals; the log gets the error (never a request body or header).
    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(reply, 'INTERNAL_ERROR');
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 'NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`));
}
