import { hasScopes, type UsageEvent, type VerifyKeyResult } from '@keyward/sdk';

export interface SeenRequest {
  method: string;
  path: string;
  authorization: string | null;
  body: Record<string, unknown> | null;
}

/**
 * A stand-in for Keyward's `POST /v1/keys/verify`, as a `fetch`: answers from a table of keys, records what
 * it was asked, and can be made to fail. Usage reports (`POST /v1/usage/events`) are kept apart, in `usage`
 * (and fail with `state.usageFailWith`). For the middleware's unit tests; the examples run a real server.
 */
export function stubKeyward(answers: Record<string, VerifyKeyResult> = {}) {
  const seen: SeenRequest[] = [];
  const usage: UsageEvent[][] = [];
  const state = {
    failWith: null as null | 'network' | number,
    usageFailWith: null as null | 'network' | number,
    /** A verification asking for more quota units than this is answered USAGE_EXCEEDED (no cost sent is 1). */
    refuseCostAbove: null as null | number,
    /** The `Retry-After` header sent with a `failWith` answer. */
    retryAfter: null as null | string,
  };
  /** What valid answers spent, as Keyward counts it: quota units (`cost`, default 1) and rate-limit units. */
  const spent = { quota: 0, rate: 0 };
  const fetch = async (request: Request): Promise<Response> => {
    const text = await request.text();
    const body = text ? (JSON.parse(text) as Record<string, unknown>) : null;
    if (new URL(request.url).pathname === '/v1/usage/events') {
      if (state.usageFailWith === 'network') throw new TypeError('fetch failed');
      if (typeof state.usageFailWith === 'number') {
        const status = state.usageFailWith;
        return new Response(JSON.stringify({ type: 'about:blank', title: 'failure', status, code: `HTTP_${status}` }), {
          status,
          headers: { 'content-type': 'application/problem+json' },
        });
      }
      const events = (body?.events ?? []) as UsageEvent[];
      usage.push(events);
      return Response.json({ accepted: events.length }, { status: 202 });
    }
    seen.push({ method: request.method, path: new URL(request.url).pathname, authorization: request.headers.get('authorization'), body });
    if (state.failWith === 'network') throw new TypeError('fetch failed');
    if (typeof state.failWith === 'number') {
      const status = state.failWith;
      const problem = { type: 'about:blank', title: 'failure', status, code: status === 401 ? 'INVALID_CREDENTIALS' : 'INTERNAL_ERROR' };
      const headers: Record<string, string> = { 'content-type': 'application/problem+json' };
      if (state.retryAfter !== null) headers['retry-after'] = state.retryAfter;
      return new Response(JSON.stringify(problem), { status, headers });
    }
    const key = typeof body?.key === 'string' ? body.key : '';
    const answer = answers[key] ?? { valid: false, code: 'NOT_FOUND' };
    const cost = typeof body?.cost === 'number' ? body.cost : 1;
    // Keyward's order (SPEC §6): scopes before rate limit and quota; a refusal spends nothing.
    const scopes = Array.isArray(body?.scopes) ? (body.scopes as string[]) : [];
    if (answer.valid && !hasScopes(answer.scopes ?? [], scopes))
      return Response.json({ ...answer, valid: false, code: 'INSUFFICIENT_SCOPES' });
    if (answer.valid && state.refuseCostAbove !== null && cost > state.refuseCostAbove) {
      return Response.json({ ...answer, valid: false, code: 'USAGE_EXCEEDED' });
    }
    if (answer.valid) {
      spent.quota += cost;
      spent.rate += typeof body?.ratelimit_cost === 'number' ? body.ratelimit_cost : 1;
    }
    return Response.json(answer);
  };
  return { fetch, seen, usage, answers, state, spent };
}

/** A VALID verify answer for a key with these fields. */
export function validAnswer(fields: Partial<VerifyKeyResult> = {}): VerifyKeyResult {
  return {
    valid: true,
    code: 'VALID',
    key_id: 'key-1',
    name: 'a key',
    user_id: 'user-1',
    is_admin: false,
    scopes: [],
    metadata: {},
    expires_at: null,
    ...fields,
  };
}
