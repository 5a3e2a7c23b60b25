import { readFileSync } from 'node:fs';
import { type Static, Type } from '@fastify/type-provider-typebox';
import { Value } from 'typebox/value';
import { Scope } from '../http/schemas.js';

/**
 * The gateway's route rules (`keyward gateway --config FILE`), a JSON file:
 *
 *     {"routes": [{"method": "GET", "path": "/v1/companies/*", "scopes": ["companies:read"]},
 *                 {"path": "/public/**", "public": true}],
 *      "default": {"scopes": []}}
 *
 * The first route whose method and path match decides; otherwise `default` does. In a path, `*` is one
 * segment (or part of one: `/files/*.json`), `**` is any number of segments, including none.
 */

const Method = Type.String({ pattern: '^[A-Za-z]{1,20}$', description: 'An HTTP method; GET also matches HEAD' });

const Access = {
  scopes: Type.Optional(Type.Array(Scope, { maxItems: 100, description: 'Scopes the key must hold, all of them' })),
  public: Type.Optional(Type.Boolean({ description: 'No key needed or checked; any key sent is removed' })),
  cost: Type.Optional(Type.Integer({ minimum: 0, description: 'Quota units each request spends (default 1)' })),
};

export const RulesFile = Type.Object(
  {
    routes: Type.Optional(
      Type.Array(
        Type.Object(
          {
            method: Type.Optional(Type.Union([Method, Type.Array(Method, { minItems: 1 })])),
            path: Type.String({ pattern: '^/', maxLength: 2048 }),
            ...Access,
          },
          { additionalProperties: false },
        ),
        { maxItems: 10_000 },
      ),
    ),
    default: Type.Optional(Type.Object(Access, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type RulesFile = Static<typeof RulesFile>;

/** What a request needs to pass: nothing (`public`), or a key holding `scopes`, spending `cost`. */
export interface RouteAccess {
  public: boolean;
  scopes: readonly string[];
  cost: number;
  /** The matched route's path pattern, as the rules file writes it (the usage row's `route:` tag); none for the default. */
  route?: string;
}

type SegmentMatcher = ((segment: string) => boolean) | typeof GLOBSTAR;
const GLOBSTAR = Symbol('**');

interface CompiledRoute extends RouteAccess {
  /** `null`: every method. */
  methods: ReadonlySet<string> | null;
  pattern: readonly SegmentMatcher[];
}

export interface GatewayRules {
  routes: readonly CompiledRoute[];
  default: RouteAccess;
}

/** A rules file that cannot be used; the message names the file and the first bad field. */
export class RulesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RulesError';
  }
}

/** With no rules file: every request needs a key (or none, with REQUIRE_API_KEY=false), no scopes. */
export const DEFAULT_RULES: GatewayRules = { routes: [], default: { public: false, scopes: [], cost: 1 } };

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function compileSegment(segment: string, where: string): SegmentMatcher {
  if (segment === '**') return GLOBSTAR;
  if (segment.includes('**')) throw new RulesError(`${where}: \`**\` must be a whole segment (e.g. /files/**)`);
  // Paths are matched case-insensitively: an upstream that routes /Admin like /admin is not bypassed.
  if (!segment.includes('*')) {
    const literal = segment.toLowerCase();
    return (s) => s.toLowerCase() === literal;
  }
  const body = segment.split('*').map(escapeRegExp).join('.*');
  const regex = new RegExp(`^${body}$`, 'is');
  return (s) => regex.test(s);
}

/** Splits a pattern or a path into its non-empty segments: `/a//b/` is `a`, `b`. */
const segmentsOf = (path: string) => path.split('/').filter((s) => s !== '');

function compilePath(path: string, where: string): SegmentMatcher[] {
  return segmentsOf(path).map((segment) => compileSegment(segment, where));
}

/**
 * Whether the segments match the pattern. `**` is handled like `*` in classic wildcard matching: remember
 * the last one and, on a mismatch, let it swallow one more segment. Linear-ish, never exponential.
 */
function matches(pattern: readonly SegmentMatcher[], path: readonly string[]): boolean {
  let p = 0;
  let s = 0;
  let star = -1;
  let starS = 0;
  while (s < path.length) {
    const matcher = pattern[p];
    const segment = path[s] ?? '';
    if (matcher !== undefined && matcher !== GLOBSTAR && matcher(segment)) {
      p += 1;
      s += 1;
    } else if (matcher === GLOBSTAR) {
      star = p;
      p += 1;
      starS = s;
    } else if (star !== -1) {
      p = star + 1;
      starS += 1;
      s = starS;
    } else {
      return false;
    }
  }
  while (pattern[p] === GLOBSTAR) p += 1;
  return p === pattern.length;
}

function accessOf(entry: { scopes?: string[] | undefined; public?: boolean | undefined; cost?: number | undefined }, where: string) {
  const isPublic = entry.public ?? false;
  if (isPublic && (entry.scopes?.length ?? 0) > 0) throw new RulesError(`${where}: a public route cannot require scopes`);
  return { public: isPublic, scopes: entry.scopes ?? [], cost: entry.cost ?? 1 };
}

/** `/routes/0/path` as `routes[0].path`. */
const fieldName = (pointer: string) =>
  pointer
    .replace(/\/(\d+)(?=\/|$)/g, '[$1]')
    .replace(/^\//, '')
    .replaceAll('/', '.') || '(top level)';

/** The first schema problem as `routes[2].method: …`; TypeBox reports an unknown field first, by its name. */
function firstSchemaError(value: unknown): string | null {
  for (const issue of Value.Errors(RulesFile, value)) {
    const unknownField = issue.keyword === 'boolean' && issue.schemaPath.endsWith('/additionalProperties');
    return `${fieldName(issue.instancePath)}: ${unknownField ? 'is not a known field' : issue.message}`;
  }
  return null;
}

/** Validates and compiles a parsed rules document; throws a {@link RulesError} naming the first bad field. */
export function parseRules(value: unknown): GatewayRules {
  const problem = firstSchemaError(value);
  if (problem !== null) throw new RulesError(problem);
  const file = value as RulesFile;
  const routes = (file.routes ?? []).map((route, i): CompiledRoute => {
    const where = `routes[${i}]`;
    const methods = route.method === undefined ? null : new Set([route.method].flat().map((m) => m.toUpperCase()));
    // A GET rule covers HEAD, which answers the same headers: it must not fall through to a laxer rule.
    if (methods?.has('GET')) methods.add('HEAD');
    return { methods, pattern: compilePath(route.path, `${where}.path`), ...accessOf(route, where), route: route.path };
  });
  return { routes, default: file.default ? accessOf(file.default, 'default') : DEFAULT_RULES.default };
}

/** Reads, validates and compiles a rules file; throws a {@link RulesError} that names the file. */
export function loadRulesFile(path: string): GatewayRules {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new RulesError(`${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new RulesError(`${path}: is not valid JSON (${(error as Error).message})`);
  }
  try {
    return parseRules(parsed);
  } catch (error) {
    if (error instanceof RulesError) throw new RulesError(`${path}: ${error.message}`);
    throw error;
  }
}

/** The access rule for a request: the first route matching its method and path, else the default. */
export function ruleFor(rules: GatewayRules, method: string, segments: readonly string[]): RouteAccess {
  for (const route of rules.routes) {
    if ((route.methods === null || route.methods.has(method)) && matches(route.pattern, segments)) return route;
  }
  return rules.default;
}

/** `%2F` or `%5C`, in any case. */
const ENCODED_SEPARATOR = /%(?:2f|5c)/i;

/**
 * The path a request is forwarded to and the segments rules are matched against, or `null` for a path that
 * must be refused. The path is normalised as upstreams resolve it (WHATWG URL: `\` is `/`, `.`/`..` and
 * `%2e` segments are resolved); segments are percent-decoded for matching, so `/%61dmin` is `/admin`.
 * An encoded slash or backslash (`%2F`, `%5C`) is refused, as Apache's `AllowEncodedSlashes Off` does: the
 * rules would see one segment (`admin%2Fusers`) where an upstream that decodes it routes two (`/admin/users`).
 */
export function requestTarget(rawUrl: string): { path: string; segments: string[] } | null {
  const query = rawUrl.indexOf('?');
  const raw = query === -1 ? rawUrl : rawUrl.slice(0, query);
  if (!raw.startsWith('/') || ENCODED_SEPARATOR.test(raw)) return null;
  let path: string;
  try {
    path = new URL(`http://gateway.invalid${raw}`).pathname;
  } catch {
    return null;
  }
  const segments: string[] = [];
  for (const segment of segmentsOf(path)) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return null;
    }
    // Control characters (NUL included) have no business in a path.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: that is what it looks for
    if (/[\u0000-\u001f\u007f]/.test(decoded)) return null;
    segments.push(decoded);
  }
  return { path, segments };
}
