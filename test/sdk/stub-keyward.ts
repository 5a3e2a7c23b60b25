import { hasScopes, type UsageEvent, type VerifyKeyResult } from '@keyward/sdk';

export interface SeenRequest {
  method: string;
  path: string;
  authorization: string | null;
  body: Record<string, unknown> | null;
}

/** The stub's `GET /v1/keys/changes`: a live stream per connection, which a test writes to or drops. */
function changeStreams() {
  // Each open stream with its request: held, as a real fetch holds it, or its signal could be collected
  // (undici links a request's signal to the caller's weakly) and an abort would never arrive.
  const open = new Map<ReadableStreamDefaultController<Uint8Array>, Request>();
  const encoder = new TextEncoder();
  let seq = 0;
  const write = (text: string) => {
    for (const controller of open.keys()) controller.enqueue(encoder.encode(text));
  };
  return {
    /** Connections made so far. */
    connections: 0,
    /** How many streams are open now. */
    open: () => open.size,
    /** Sends `key.changed` for a key hash to every open stream. */
    changed(keyHash: string) {
      seq++;
      write(`id: stub:${seq}\nevent: key.changed\ndata: ${JSON.stringify({ key_hash: keyHash })}\n\n`);
    },
    /** Sends an event without data (`reset`, `degraded`). */
    send(event: string) {
      write(`event: ${event}\ndata: {}\n\n`);
    },
    /** Ends every open stream, as a dropped connection does. */
    drop() {
      for (const controller of open.keys()) controller.close();
      open.clear();
    },
    respond(request: Request): Response {
      this.connections++;
      let own: ReadableStreamDefaultController<Uint8Array> | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          own = controller;
          open.set(controller, request);
          controller.enqueue(encoder.encode('retry: 1000\nevent: ready\ndata: {"stream_id":"stub","cache_ttl_ms":0}\n\n'));
        },
        cancel() {
          if (own) open.delete(own);
        },
      });
      request.signal.addEventListener('abort', () => {
        if (own && open.delete(own)) own.error(new DOMException('aborted', 'AbortError'));
      });
      return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
    },
  };
}

/**
 * A stand-in for Keyward's `POST /v1/keys/verify`, as a `fetch`: answers from a table of keys, records what
 * it was asked, and can be made to fail. Usage reports (`POST /v1/usage/events`) are kept apart, in `usage`
 * (and fail with `state.usageFailWith`); the key change stream (`GET /v1/keys/changes`) is served live by
 * `changes` (or refused with `state.changesFailWith`). For the middleware's unit tests; the integration tests
 * run a real server.
 */
export function stubKeyward(answers: Record<string, VerifyKeyResult> = {}) {
  const seen: SeenRequest[] = [];
  const usage: UsageEvent[][] = [];
  const changes = changeStreams();
  const state = {
    failWith: null as null | 'network' | number,
    usageFailWith: null as null | 'network' | number,
    changesFailWith: null as null | 'network' | number,
    /** A verification asking for more quota units than this is answered USAGE_EXCEEDED (no cost sent is 1). */
    refuseCostAbove: null as null | number,
    /** The `Retry-After` header sent with a `failWith` answer. */
    retryAfter: null as null | string,
  };
  /** What valid answers spent, as Keyward counts it: quota units (`cost`, default 1) and rate-limit units. */
  const spent = { quota: 0, rate: 0 };
  const fetch = async (request: Request): Promise<Response> => {
    if (new URL(request.url).pathname === '/v1/keys/changes') {
      if (state.changesFailWith === 'network') throw new TypeError('fetch failed');
      if (typeof state.changesFailWith === 'number') return new Response('unavailable', { status: state.changesFailWith });
      return changes.respond(request);
    }
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
  return { fetch, seen, usage, answers, state, spent, changes };
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
