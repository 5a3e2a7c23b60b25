import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, type Failure, type FieldError, ProblemError, problem, type Result } from '../errors.js';
import { isUnavailable } from '../store/unavailable.js';

/** The value of a successful service result; a failure becomes a problem+json response. */
export function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw toProblemError(result);
}

export function toProblemError(failure: Failure): ProblemError {
  const headers = failure.retryAfterSeconds === undefined ? undefined : { 'retry-after': String(failure.retryAfterSeconds) };
  return new ProblemError(failure.code, failure.detail, failure.errors, headers);
}

export function sendProblem(
  reply: FastifyReply,
  code: ErrorCode,
  detail?: string,
  errors?: FieldError[],
  headers?: Record<string, string>,
): FastifyReply {
  const body = { ...problem(code, detail, errors), instance: reply.request.url.split('?')[0] };
  if (headers) reply.headers(headers);
  return reply.code(body.status).type('application/problem+json').send(body);
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

/** One error handler and one not-found handler: every error leaves as RFC 9457 problem+json. */
export function installProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof ProblemError) {
      return sendProblem(reply, error.code, error.detail, error.errors, error.headers);
    }
    if (error.validation) {
      const errors = fieldErrors(error.validationContext ?? 'body', error.validation as ValidationIssue[]);
      const first = errors[0];
      return sendProblem(reply, 'INVALID_REQUEST', first ? `${first.field}: ${first.message}` : undefined, errors);
    }
    const mapped = (error.code && FASTIFY_CODES[error.code]) ?? (error instanceof SyntaxError ? 'INVALID_REQUEST' : undefined);
    if (mapped) return sendProblem(reply, mapped, mapped === 'INVALID_REQUEST' ? 'the body is not valid JSON' : undefined);
    if (isUnavailable(error)) {
      request.log.warn({ err: { message: error.message, code: error.code } }, 'database unavailable');
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
