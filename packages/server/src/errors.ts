/**
 * The one catalogue of error codes. Every error Keyward answers carries one of these codes, and the
 * code alone decides the HTTP status. Tests assert codes, never message text.
 */
export const ERRORS = {
  INVALID_REQUEST: { status: 400, title: 'The request is not valid' },
  KEY_LIMIT_REACHED: { status: 400, title: 'The key limit for this tier is reached' },
  INVALID_COST: { status: 400, title: 'The cost must be a non-negative integer' },
  SECRET_IN_FIELD: { status: 400, title: 'A descriptive field holds an API key; keys must not be stored there' },
  WEBHOOK_URL_NOT_ALLOWED: { status: 400, title: 'The webhook URL points at an address deliveries may not go to' },
  AUTH_REQUIRED: { status: 401, title: 'An API key or token is required' },
  INVALID_CREDENTIALS: { status: 401, title: 'The API key or token is not valid' },
  INVALID_SIGNATURE: { status: 401, title: 'The request signature is missing or not valid' },
  KEY_EXPIRED: { status: 401, title: 'The API key has expired' },
  TOKEN_EXPIRED: { status: 401, title: 'The token has expired' },
  KEY_DISABLED: { status: 401, title: 'The API key is deactivated' },
  KEY_REVOKED: { status: 401, title: 'The API key is revoked' },
  FORBIDDEN: { status: 403, title: 'This credential is not allowed to do that' },
  NOT_FOUND: { status: 404, title: 'No such route' },
  KEY_NOT_FOUND: { status: 404, title: 'No such API key' },
  USER_NOT_FOUND: { status: 404, title: 'No such user' },
  WEBHOOK_NOT_FOUND: { status: 404, title: 'No such webhook' },
  DELIVERY_NOT_FOUND: { status: 404, title: 'No such delivery of this webhook' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  KEY_IS_REVOKED: { status: 409, title: 'The API key is revoked and cannot change state' },
  KEY_IS_EXPIRED: { status: 409, title: 'The API key has expired; extend expires_at before rolling it' },
  KEY_WAS_ROLLED: { status: 409, title: 'The API key was rolled; its replacement is the live key' },
  KEY_IS_CHANGING: { status: 409, title: 'Keys of this lineage are being rolled at the same time; try again' },
  USER_EXISTS: { status: 409, title: 'A user with this external id exists' },
  WEBHOOK_DISABLED: { status: 409, title: 'The webhook is disabled; enable it first' },
  IDEMPOTENCY_KEY_REUSED: { status: 409, title: 'This Idempotency-Key was used already; the resource it created is named in the body' },
  IDEMPOTENCY_KEY_IN_USE: { status: 409, title: 'A request with this Idempotency-Key is still being processed; try again' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  URI_TOO_LONG: { status: 414, title: 'The request URI is too long' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The request body must be application/json' },
  IDEMPOTENCY_KEY_MISMATCH: { status: 422, title: 'This Idempotency-Key was used with a different request' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
  USAGE_EXCEEDED: { status: 429, title: 'The API key has used up its quota' },
  INTERNAL_ERROR: { status: 500, title: 'Internal error' },
  BAD_GATEWAY: { status: 502, title: 'The upstream service could not be reached' },
  SERVICE_UNAVAILABLE: { status: 503, title: 'The service is temporarily unavailable' },
  GATEWAY_TIMEOUT: { status: 504, title: 'The upstream service did not answer in time' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;

export function statusOf(code: ErrorCode): number {
  return ERRORS[code].status;
}

/** One field-level validation problem, named by its JSON path (e.g. `body.expires_at`). */
export interface FieldError {
  field: string;
  message: string;
}

/** RFC 9457 problem details, with Keyward's stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail?: string;
  instance?: string;
  errors?: FieldError[];
  /** The key a failure names: the one an idempotency key created, or a rolled key's live replacement. */
  key_id?: string;
  /** This request's id, also sent as `X-Request-Id`. */
  request_id?: string;
}

export function problem(code: ErrorCode, detail?: string, errors?: FieldError[]): Problem {
  const { status, title } = ERRORS[code];
  return {
    type: `https://keyward.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
    ...(errors === undefined ? {} : { errors }),
  };
}

/**
 * A failure that a route turns into problem+json. Services return failures as values; this is thrown only
 * at the HTTP edge (by `fail`) or by plumbing such as authentication hooks.
 */
export class ProblemError extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly detail?: string,
    readonly errors?: FieldError[],
    readonly headers?: Record<string, string>,
    /** Extension members of the problem body (e.g. `key_id`). */
    readonly members?: Record<string, unknown>,
  ) {
    super(detail ?? ERRORS[code].title);
    this.name = 'ProblemError';
  }
}

/** An expected failure from a service: a value, not an exception. */
export interface Failure<C extends ErrorCode = ErrorCode> {
  ok: false;
  code: C;
  detail?: string;
  errors?: FieldError[];
  /** For `RATE_LIMITED`: when to try again (sent as `Retry-After`). */
  retryAfterSeconds?: number;
  /** The key the failure names (sent as `key_id`): the one an idempotency key created, or a rolled key's replacement. */
  keyId?: string;
}

export type Result<T, C extends ErrorCode = ErrorCode> = { ok: true; value: T } | Failure<C>;

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function err<C extends ErrorCode>(code: C, detail?: string, errors?: FieldError[]): Failure<C> {
  return { ok: false, code, ...(detail === undefined ? {} : { detail }), ...(errors === undefined ? {} : { errors }) };
}
