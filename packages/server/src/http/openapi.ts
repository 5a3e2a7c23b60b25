import { OPTIONAL_BODIES } from './schemas.js';

// What the OpenAPI document says beyond the route schemas: the tags, the response headers every answer carries,
// and the media type of the errors. Nothing here changes what the server sends.

/** Every tag an operation uses, in the order the docs show them. */
export const OPENAPI_TAGS = [
  { name: 'API keys', description: 'Create, list, change, roll and delete API keys (admin keys, or keys holding `keyward:keys:*`).' },
  {
    name: 'Verification',
    description: 'For your services: is a presented key valid for a request, within its scopes, rate limit and quota?',
  },
  { name: 'Self-service', description: 'A signed-in user (JWT), or a key of theirs, manages their own keys.' },
  { name: 'Users', description: 'The end users of the host product and their tiers (admin only).' },
  { name: 'Usage and analytics', description: 'Usage rows reported by hosts, a key’s usage over time, verification analytics.' },
  { name: 'Audit log', description: 'Every management change, who made it and what changed (admin only).' },
  { name: 'Operations', description: 'Liveness, readiness and Prometheus metrics: unauthenticated, for orchestrators and monitoring.' },
];

/** Response headers, as `#/components/headers/<name>`. */
export const OPENAPI_HEADERS = {
  'X-Request-Id': {
    description:
      'This request’s id: the `X-Request-Id` the request came with when it is 1–128 characters of `[A-Za-z0-9._:-]`, a new UUID otherwise. Quote it when reporting a problem.',
    schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
    example: '0197a4d3-0b2c-7d4e-8f5a-6b7c8d9e0f1a',
  },
  'WWW-Authenticate': {
    description: 'The authentication scheme to use, and why the credential was refused (RFC 6750)',
    schema: { type: 'string' },
    example: 'Bearer realm="keyward", error="invalid_token"',
  },
  'Retry-After': {
    description: 'Seconds to wait before trying again',
    schema: { type: 'integer', minimum: 0 },
    example: 5,
  },
} as const;

type Header = keyof typeof OPENAPI_HEADERS;

// Data, not subschemas: an `$id` in an example is not a schema's.
const DATA_KEYWORDS = new Set(['examples', 'example', 'default', 'enum', 'const']);

const PROBLEM_ID = 'Problem';

/** What an error status means, on every route that lists it. */
const PROBLEM_DESCRIPTIONS: Record<string, string> = {
  400: 'The request is not valid (`errors` names each field), or a rule refused it (`code` says which)',
  401: 'No credential, or one that is not valid',
  403: 'The credential may not do this',
  404: 'No such resource',
  409: 'The resource’s state does not allow it (`code` says why; `key_id` may name a key)',
  413: 'The body is too large',
  415: 'The body is not `application/json`',
  422: 'The `Idempotency-Key` was used before with a different request',
  429: 'Too many requests from this client (failed attempts, a rate limit, or too many running): wait `Retry-After` seconds',
  503: 'A dependency (the database, a JWT key set) cannot be reached: retry after `Retry-After` seconds',
};

interface MediaType {
  schema?: unknown;
}
interface Response {
  headers?: Record<string, unknown>;
  content?: Record<string, MediaType>;
}
interface Operation {
  requestBody?: { required?: boolean };
  responses?: Record<string, Response>;
}

/** A route's response that names a component (`ref()` in schemas.ts), in the media-type form @fastify/swagger keeps. */
function responseMedia(status: string, response: unknown): unknown {
  if (typeof response !== 'object' || response === null || !('$ref' in response)) return response;
  const { $ref, description, examples } = response as { $ref: string; description?: string; examples?: unknown[] };
  // Errors are sent as problem+json; the example sits beside the schema (@fastify/swagger drops a `$ref`'s siblings).
  const problem = $ref === PROBLEM_ID;
  const said = description ?? (problem ? PROBLEM_DESCRIPTIONS[status] : undefined);
  const example = examples?.[0] === undefined ? {} : { example: examples[0] };
  const type = problem ? 'application/problem+json' : 'application/json';
  return { ...(said === undefined ? {} : { description: said }), content: { [type]: { schema: { $ref }, ...example } } };
}

/**
 * The route schema as the OpenAPI document shows it (@fastify/swagger's `transform`; the route keeps its own):
 * - each nested request schema with an `$id` (a named component, such as `RateLimit` inside a create body) is a
 *   `$ref` to it. The route keeps the inline schema, which its validator needs (TypeBox resolves no `$ref`).
 * - each response naming a component is given in the media-type form, so that its example and, for errors,
 *   `application/problem+json` reach the document.
 */
export function documentedSchema<T>(schema: T): T {
  const visit = (node: unknown, root: boolean): unknown => {
    if (Array.isArray(node)) return node.map((item) => visit(item, false));
    if (typeof node !== 'object' || node === null) return node;
    const { $id } = node as { $id?: unknown };
    if (!root && typeof $id === 'string') return { $ref: $id };
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, DATA_KEYWORDS.has(key) ? value : visit(value, false)]));
  };
  if (typeof schema !== 'object' || schema === null) return schema;
  const parts = { ...schema } as Record<string, unknown>;
  for (const part of ['body', 'querystring', 'params', 'headers']) if (part in parts) parts[part] = visit(parts[part], true);
  if (typeof parts.response === 'object' && parts.response !== null) {
    parts.response = Object.fromEntries(
      Object.entries(parts.response).map(([status, response]) => [status, responseMedia(status, response)]),
    );
  }
  return parts as T;
}

const PROBLEM_REF = '#/components/schemas/Problem';

/** The headers an answer with `status` carries (`problem`: when it is a problem+json answer). */
function headersOf(status: string, problem: boolean): Header[] {
  if (problem && status === '401') return ['X-Request-Id', 'WWW-Authenticate'];
  if (problem && (status === '429' || status === '503')) return ['X-Request-Id', 'Retry-After'];
  return ['X-Request-Id'];
}

/** Finishes the document @fastify/swagger built from the route schemas: optional request bodies, response headers. */
export function finishOpenapiDocument<T extends { paths?: object }>(document: T): T {
  const paths = (document.paths ?? {}) as Record<string, Record<string, Operation>>;
  for (const [method, path] of OPTIONAL_BODIES) {
    const body = paths[path]?.[method]?.requestBody;
    if (body) body.required = false;
  }
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations)) {
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const problem = (response.content?.['application/problem+json']?.schema as { $ref?: unknown } | undefined)?.$ref === PROBLEM_REF;
        response.headers = {
          ...response.headers,
          ...Object.fromEntries(headersOf(status, problem).map((name) => [name, { $ref: `#/components/headers/${name}` }])),
        };
      }
    }
  }
  return document;
}
