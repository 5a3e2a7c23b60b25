import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NONCE_PLACEHOLDER } from '../../packages/server/src/http/dashboard.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// The dashboard's files as keyward serve sends them: a small stand-in build, so this runs without Vite.
let build: string;
beforeAll(() => {
  build = mkdtempSync(join(tmpdir(), 'keyward-dashboard-build-'));
  mkdirSync(join(build, 'assets'));
  writeFileSync(
    join(build, 'index.html'),
    `<!doctype html><html><head><meta property="csp-nonce" nonce="${NONCE_PLACEHOLDER}"><script type="module" src="/assets/index-abc123.js"></script></head><body><div id="root"></div></body></html>`,
  );
  writeFileSync(join(build, 'assets/index-abc123.js'), `console.log(${JSON.stringify('x'.repeat(2000))});`);
});
afterAll(() => rmSync(build, { recursive: true, force: true }));

describe('the dashboard at /', () => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('sends the page with a strict, per-response CSP, and no caching', async () => {
    t = await createTestApp({ env: { DASHBOARD_DIR: build } });
    const first = await t.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
    const second = await t.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
    expect(first.statusCode).toBe(200);
    expect(first.headers['content-type']).toMatch(/^text\/html/);
    const csp = String(first.headers['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(first.headers['x-content-type-options']).toBe('nosniff');
    expect(first.headers['cache-control']).toMatch(/no-cache|no-store/);
    // The nonce is new on each response and is the one in the page.
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    expect(first.body).toContain(`nonce="${nonce}"`);
    expect(first.body).not.toContain(NONCE_PLACEHOLDER);
    expect(second.headers['content-security-policy']).not.toBe(csp);
  });

  it('caches hashed assets for a year and compresses them', async () => {
    t = await createTestApp({ env: { DASHBOARD_DIR: build } });
    const asset = await t.app.inject({ method: 'GET', url: '/assets/index-abc123.js', headers: { 'accept-encoding': 'gzip' } });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['cache-control']).toContain('immutable');
    expect(asset.headers['cache-control']).toContain('max-age=31536000');
    expect(asset.headers['content-encoding']).toBe('gzip');
    const missing = await t.app.inject({ method: 'GET', url: '/assets/nope.js' });
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['content-type']).toMatch(/application\/problem\+json/);
  });

  it('sends the page for its client-side routes, never for the API, docs, operational or unknown paths', async () => {
    t = await createTestApp({ env: { DASHBOARD_DIR: build } });
    const route = await t.app.inject({
      method: 'GET',
      url: '/keys/01a2511e-e74a-7010-a8f2-9ddadc80221b',
      headers: { accept: 'text/html' },
    });
    expect(route.statusCode).toBe(200);
    expect(route.body).toContain('<div id="root">');
    for (const url of ['/overview', '/users', '/users/u1', '/webhooks', '/webhooks/w1', '/audit']) {
      const page = await t.app.inject({ method: 'GET', url, headers: { accept: 'text/html' } });
      expect(page.statusCode, url).toBe(200);
    }
    // An over-long id is still the API's 414 (no catch-all route takes it).
    const long = await t.app.inject({ method: 'GET', url: `/v1/api-keys/${'a'.repeat(500)}`, headers: { accept: 'text/html' } });
    expect(long.statusCode).toBe(414);
    for (const url of ['/v1/nope', '/readyz/x', '/metrics/x', '/elsewhere']) {
      const response = await t.app.inject({ method: 'GET', url, headers: { accept: 'text/html' } });
      expect(response.statusCode, url).toBe(404);
      expect(response.headers['content-type'], url).toMatch(/application\/problem\+json/);
    }
  });

  it('is off with DASHBOARD=false: / is a problem+json 404 again', async () => {
    t = await createTestApp({ env: { DASHBOARD_DIR: build, DASHBOARD: 'false' } });
    const response = await t.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('says how to build it when there is no build', async () => {
    t = await createTestApp({ env: { DASHBOARD_DIR: join(build, 'missing') } });
    const response = await t.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain('npm run build');
  });
});
