/** One field-level validation problem, named by its JSON path (e.g. `body.expires_at`). */
export interface FieldError {
  field: string;
  message: string;
}

/** RFC 9457 problem details with Keyward's stable `code`: the body of every Keyward error response. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  instance?: string;
  errors?: FieldError[];
}

/**
 * An error answer from Keyward (or a failure to reach it), with the HTTP `status`, the stable `code` and the
 * problem body. Branch on `code`, never on the message. A network failure or timeout has `status` 0 and code
 * `NETWORK_ERROR`; an error body that is not problem+json gets code `HTTP_<status>`.
 *
 * @example
 * try {
 *   await client.revokeKey(id);
 * } catch (error) {
 *   if (error instanceof KeywardError && error.code === 'KEY_NOT_FOUND') return;
 *   throw error;
 * }
 */
export class KeywardError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem: Problem;
  /** Seconds to wait before trying again, from the answer's `Retry-After` (429, 503); absent when it sent none. */
  readonly retryAfter: number | undefined;

  constructor(problem: Problem, options?: { cause?: unknown; retryAfter?: number | undefined }) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title, options);
    this.name = 'KeywardError';
    this.status = problem.status;
    this.code = problem.code;
    this.problem = problem;
    this.retryAfter = options?.retryAfter;
  }

  /**
   * The error for a non-2xx response: its problem body when it has one, a generic problem otherwise, and its
   * `Retry-After` when `headers` carry one.
   */
  static fromResponse(status: number, body: unknown, headers?: Headers): KeywardError {
    const retryAfter = retryAfterSeconds(headers?.get('retry-after') ?? null);
    const options = retryAfter === undefined ? undefined : { retryAfter };
    if (isProblem(body)) return new KeywardError({ ...body, status }, options);
    return new KeywardError(
      {
        type: 'about:blank',
        title: `HTTP ${status}`,
        status,
        code: `HTTP_${status}`,
        ...(typeof body === 'string' && body !== '' ? { detail: body.slice(0, 200) } : {}),
      },
      options,
    );
  }

  /** The error for a request that got no response (connection refused, DNS, timeout, abort). */
  static network(cause: unknown): KeywardError {
    const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
    return new KeywardError(
      {
        type: 'about:blank',
        title: 'Keyward could not be reached',
        status: 0,
        code: 'NETWORK_ERROR',
        detail: timedOut ? 'the request timed out' : cause instanceof Error ? cause.message : String(cause),
      },
      { cause },
    );
  }
}

/** `Retry-After` in whole seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); `undefined` when absent or unreadable. */
function retryAfterSeconds(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

function isProblem(body: unknown): body is Problem {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.code === 'string' && typeof b.title === 'string' && typeof b.type === 'string';
}
