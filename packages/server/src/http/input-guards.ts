import type { FastifyInstance, FastifyReply, FastifyRequest, preValidationHookHandler } from 'fastify';
import { type ErrorCode, type FieldError, ProblemError } from '../errors.js';
import { UNSTORABLE_TEXT_MESSAGE, unstorableTextIn } from '../text.js';

/**
 * Text neither database can store (NUL, which PostgreSQL refuses, and unpaired surrogates: see `text.ts`) is
 * refused where it enters, for every route at once: a JSON body by the JSON parser, a path parameter or query
 * value by a hook the routes that have them get. The same input is then the same 400 (or 404) on SQLite and
 * PostgreSQL, and no repository ever sees it.
 */
export function installInputGuards(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  // Fastify's built-in text/plain parser goes too: every body Keyward takes is JSON (415 otherwise).
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // Always a string (`parseAs`); the parser's type also allows a Buffer.
    const raw = typeof body === 'string' ? body : body.toString('utf8');
    parseJson(request, raw, (error, value) => {
      if (error) return done(error, undefined);
      // JSON carries NUL or a lone surrogate only as a `\u` escape (raw control characters are not JSON, and the
      // body is decoded as UTF-8, which has no surrogates): bodies without one — every verification — are not
      // walked.
      if (raw.includes('\\u')) {
        const errors = unstorableTextIn(value, 'body');
        if (errors.length > 0) return done(invalid(errors), undefined);
      }
      done(null, value);
    });
  });
  // One hook per distinct 404 code, so a route registered twice (its HEAD twin) is guarded once.
  const guards = new Map<ErrorCode, preValidationHookHandler>();
  app.addHook('onRoute', (route) => {
    if (!route.url.includes(':') && !route.url.includes('*') && route.schema?.querystring === undefined) return;
    const notFound = notFoundCodeOf(route.url);
    let guard = guards.get(notFound);
    if (guard === undefined) {
      guard = urlGuard(notFound);
      guards.set(notFound, guard);
    }
    const existing = route.preValidation;
    const hooks = existing === undefined ? [] : Array.isArray(existing) ? existing : [existing];
    if (!hooks.includes(guard)) route.preValidation = [guard, ...hooks];
  });
}

function invalid(errors: FieldError[]): ProblemError {
  const [first] = errors;
  return new ProblemError('INVALID_REQUEST', first && `${first.field}: ${first.message}`, errors);
}

/** What a path id of each collection answers when it names nothing (as the routes answer an unknown id). */
const NOT_FOUND_BY_COLLECTION: Record<string, ErrorCode> = {
  'api-keys': 'KEY_NOT_FOUND',
  users: 'USER_NOT_FOUND',
};

/** The 404 of a route's first path parameter: from the collection segment before it (`/v1/users/:id`). */
function notFoundCodeOf(url: string): ErrorCode {
  const segments = url.split('/');
  const param = segments.findIndex((segment) => segment.startsWith(':'));
  return NOT_FOUND_BY_COLLECTION[segments[param - 1] ?? ''] ?? 'NOT_FOUND';
}

/**
 * A hook refusing unstorable text in a route's path parameters (`notFound`: no resource has such an id) and in
 * its query (400 naming the parameter).
 */
function urlGuard(notFound: ErrorCode): preValidationHookHandler {
  return (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void => {
    // A request line cannot carry NUL itself (Node refuses control characters in it), only `%00`; fast-querystring
    // leaves an undecodable value (a lone surrogate's bytes) as written, and the router refuses one in the path.
    if (!request.url.includes('%00')) {
      done();
    } else if (unstorableTextIn(request.params, 'params').length > 0) {
      done(new ProblemError(notFound, `no resource has an id that ${UNSTORABLE_TEXT_MESSAGE}`));
    } else {
      const errors = unstorableTextIn(request.query, 'query');
      done(errors.length > 0 ? invalid(errors) : undefined);
    }
  };
}
