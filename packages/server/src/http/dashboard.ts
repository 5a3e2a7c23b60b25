import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync, constants as zlib } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * The web dashboard (packages/dashboard, SPEC §12) at `/`: the files of its build, held in memory, with
 *
 * - a strict Content-Security-Policy on the page (`default-src 'self'`, no inline script, `<style>` elements only
 *   with the response's nonce, which Vite's `html.cspNonce` placeholder in index.html receives), `frame-ancestors
 *   'none'`, `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`;
 * - hashed files under `/assets/` cached for a year (`immutable`), everything else revalidated (`no-cache`, ETag);
 * - gzip or brotli when the client takes it (compressed once, on first request);
 * - the page itself for any other GET that asks for HTML (client-side routes such as `/keys/…`), but never for
 *   the API, the docs or the operational endpoints, which keep their own 404.
 *
 * Only files present at start-up are served (no path from a request reaches the file system).
 */
export interface DashboardOptions {
  /** The dashboard's build (default: packages/dashboard/dist next to this package). */
  root?: string;
}

/** The dashboard build next to this package: `…/packages/dashboard/dist` (from src/http or dist/http). */
export const DEFAULT_DASHBOARD_ROOT = fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

/** The page's client-side routes (packages/dashboard/app/App.tsx); any other path is the API's or a 404. */
const CLIENT_ROUTES = ['/keys/:id', '/overview', '/users', '/users/:id', '/webhooks', '/webhooks/:id', '/audit'];

/** Paths that are never the dashboard's, whatever they accept. */
const RESERVED = /^\/(v1|docs|redoc|openapi\.json|healthz|readyz|metrics|assets)(\/|$)/;

export const NONCE_PLACEHOLDER = '__KEYWARD_CSP_NONCE__';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.svg', '.txt', '.webmanifest']);

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
  compressible: boolean;
  gzip?: Buffer;
  br?: Buffer;
}

/** The policy for the page: everything from this origin, `<style>` elements only with this response's nonce. */
export function contentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

function load(root: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const path of walk(root)) {
    const ext = extname(path).toLowerCase();
    const body = readFileSync(path);
    const name = `/${relative(root, path).split(sep).join('/')}`;
    files.set(name, {
      body,
      type: TYPES[ext] ?? 'application/octet-stream',
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
      compressible: COMPRESSIBLE.has(ext) && body.length > 1024,
    });
  }
  return files;
}

function encodingFor(request: FastifyRequest): 'br' | 'gzip' | null {
  const accept = request.headers['accept-encoding'];
  const value = Array.isArray(accept) ? accept.join(',') : (accept ?? '');
  if (/\bbr\b/.test(value)) return 'br';
  if (/\bgzip\b/.test(value)) return 'gzip';
  return null;
}

function compressed(file: StaticFile, encoding: 'br' | 'gzip'): Buffer {
  if (encoding === 'br') {
    file.br ??= brotliCompressSync(file.body, {
      params: { [zlib.BROTLI_PARAM_QUALITY]: 9, [zlib.BROTLI_PARAM_SIZE_HINT]: file.body.length },
    });
    return file.br;
  }
  file.gzip ??= gzipSync(file.body, { level: 9 });
  return file.gzip;
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

function send(request: FastifyRequest, reply: FastifyReply, file: StaticFile, cacheControl: string, body: Buffer = file.body) {
  reply.headers(SECURITY_HEADERS).header('content-type', file.type).header('cache-control', cacheControl).header('vary', 'accept-encoding');
  if (body === file.body) {
    reply.header('etag', file.etag);
    if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  }
  const encoding = file.compressible ? encodingFor(request) : null;
  if (encoding) return reply.header('content-encoding', encoding).send(compressed(body === file.body ? file : { ...file, body }, encoding));
  return reply.send(body);
}

const HTML_FOR_MISSING_BUILD = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Keyward</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5">
<h1>Keyward is running</h1><p>The dashboard has not been built. Run <code>npm run build</code> (or <code>npm start</code>)
at the repository root, then reload. The API is under <a href="/docs">/v1 (docs)</a>.</p></body></html>`;

/**
 * Serves the dashboard at `/`. Returns false (and serves only a page saying how to build it) when there is no
 * build at `root`.
 */
export async function dashboardRoutes(app: FastifyInstance, options: DashboardOptions = {}): Promise<boolean> {
  const root = options.root ?? DEFAULT_DASHBOARD_ROOT;
  const built = existsSync(join(root, 'index.html'));
  const files = built ? load(root) : new Map<string, StaticFile>();
  const index = files.get('/index.html');
  const indexText = index?.body.toString('utf8');

  const page = (request: FastifyRequest, reply: FastifyReply) => {
    if (!index || indexText === undefined) {
      return reply
        .headers(SECURITY_HEADERS)
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
        .header('cache-control', 'no-cache')
        .type('text/html; charset=utf-8')
        .send(HTML_FOR_MISSING_BUILD);
    }
    const nonce = randomBytes(18).toString('base64');
    reply.header('content-security-policy', contentSecurityPolicy(nonce)).header('x-frame-options', 'DENY');
    // A fresh nonce each time: no ETag, never stored.
    return send(request, reply, { ...index, etag: '' }, 'no-cache, no-store', Buffer.from(indexText.replaceAll(NONCE_PLACEHOLDER, nonce)));
  };

  const wantsHtml = (request: FastifyRequest) => {
    const accept = request.headers.accept ?? '';
    return accept.includes('text/html') || accept.includes('application/xhtml+xml');
  };

  const hide = { schema: { hide: true } };

  app.get('/', hide, (request, reply) => page(request, reply));

  app.get('/assets/*', hide, (request, reply) => {
    const file = files.get(request.url.split('?')[0] ?? '');
    if (!file) return reply.callNotFound();
    return send(request, reply, file, 'public, max-age=31536000, immutable');
  });

  // Top-level files (favicon, the colour-scheme script): not hashed, so revalidated.
  for (const [name, file] of files) {
    if (name === '/index.html' || name.startsWith('/assets/') || RESERVED.test(name)) continue;
    app.get(name, hide, (request, reply) => send(request, reply, file, 'no-cache'));
  }

  // The dashboard's own routes (app/App.tsx), for a browser navigating there. Named, not a `/*` catch-all: a
  // catch-all would also take the API's refusals (an over-long id is a 414, not the page's 404).
  for (const route of CLIENT_ROUTES) {
    app.get(route, hide, (request, reply) => (wantsHtml(request) ? page(request, reply) : reply.callNotFound()));
  }

  return built;
}
