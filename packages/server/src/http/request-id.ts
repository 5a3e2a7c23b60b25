import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';

/** The header a request's id arrives in (from a proxy or the client) and is echoed in on every response. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** An id worth keeping: short, and nothing a log line or a header could be abused with (no spaces, quotes, CR/LF). */
const ACCEPTED_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * A request's id (Fastify's `genReqId`): the incoming `X-Request-Id` when it is 1–128 characters of
 * `[A-Za-z0-9._:-]`, so a proxy's or client's id follows the request into Keyward's logs; otherwise a new UUID.
 * A repeated header arrives joined with `, ` and is replaced too.
 */
export function requestIdOf(raw: IncomingMessage): string {
  const given = raw.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && ACCEPTED_ID.test(given) ? given : randomUUID();
}

/**
 * Every response carries `X-Request-Id`. A callback hook on the root runs first for every routed request and for
 * 404s; answers given before any hook (an undecodable URL) and problem answers set it themselves (`sendProblem`).
 */
export function echoRequestId(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });
}
