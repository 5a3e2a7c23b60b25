import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { KeywardClient } from '@keyward/sdk';
import { SignJWT } from 'jose';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_DIST, REPO, type RunningKeyward, startServe } from './server.js';

// The server under test: the real `keyward serve` (the built CLI, packages/server/dist/cli.js).
const start: () => Promise<RunningKeyward> = startServe;

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SKIP_REASON = `Chromium not found at ${CHROMIUM}: browser tests skipped (apt-get install -y chromium)`;
const SHOTS = join(REPO, 'docs/images');
const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

function newestMtime(dir: string): number {
  return readdirSync(dir).reduce((newest, name) => {
    const path = join(dir, name);
    const stat = statSync(path);
    return Math.max(newest, stat.isDirectory() ? newestMtime(path) : stat.mtimeMs);
  }, 0);
}

/** Builds the dashboard when dist is missing or older than its sources. */
function ensureBuilt(): void {
  const index = join(DASHBOARD_DIST, 'index.html');
  const dashboard = join(REPO, 'packages/dashboard');
  const sources = Math.max(
    newestMtime(join(dashboard, 'app')),
    newestMtime(join(dashboard, 'public')),
    ...['index.html', 'vite.config.ts', 'package.json'].map((name) => statSync(join(dashboard, name)).mtimeMs),
  );
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  execFileSync(process.execPath, [join(REPO, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], {
    cwd: join(REPO, 'packages/dashboard'),
    // Vitest sets NODE_ENV=test, which would make Vite bundle React's development build.
    env: { ...process.env, NODE_ENV: 'production' },
    stdio: 'inherit',
  });
}

interface Watch {
  foreignRequests: string[];
  cspErrors: string[];
  pageErrors: string[];
}

function watch(page: Page, origin: string): Watch {
  const w: Watch = { foreignRequests: [], cspErrors: [], pageErrors: [] };
  page.on('request', (request) => {
    const url = request.url();
    if (url.startsWith('data:') || url.startsWith('blob:')) return;
    if (new URL(url).origin !== origin) w.foreignRequests.push(url);
  });
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Content-Security-Policy/i.test(message.text()))
      w.cspErrors.push(message.text());
  });
  page.on('pageerror', (error) => w.pageErrors.push(String(error)));
  return w;
}

/** axe-core on the page as it is: serious or critical violations fail the test. */
async function expectAccessible(page: Page, label: string): Promise<void> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    // biome-ignore lint/suspicious/noExplicitAny: axe is a global injected just above
    const axe = (window as any).axe;
    // With a dialog open, the page behind it is inert and dimmed: the dialog is what is checked.
    const dialog = document.querySelector('[role="dialog"]');
    const result = await axe.run(dialog ?? document, { resultTypes: ['violations'] });
    type Violation = { id: string; impact: string; help: string; nodes: { target: string[]; failureSummary?: string }[] };
    return (result.violations as Violation[]).map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.slice(0, 3).map((n) => `${n.target.join(' ')}: ${n.failureSummary ?? ''}`),
    }));
  });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad, `${label}: ${JSON.stringify(bad, null, 2)}`).toEqual([]);
}

async function settle(page: Page): Promise<void> {
  await page.waitForLoadState('networkidle');
  await page.evaluate(() => document.fonts.ready);
  await page.waitForTimeout(250);
}

/** Screenshots in both schemes (docs/images), and axe-core in each. */
async function shoot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await settle(page);
    await page.screenshot({ path: join(SHOTS, `dashboard-${name}-${scheme}.png`) });
    await expectAccessible(page, `${name} (${scheme})`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

const dialog = (page: Page) => page.getByRole('dialog');

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver on 127.0.0.1 that answers 204 and keeps what it was sent. */
async function startReceiver(): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      body += chunk;
    });
    request.on('end', () => {
      received.push({ headers: request.headers, body });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/keyward`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(!HAVE_CHROMIUM)('dashboard in headless Chromium', () => {
  let keyward: RunningKeyward;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let seen: Watch;
  let api: KeywardClient;

  beforeAll(async () => {
    ensureBuilt();
    keyward = await start();
    api = new KeywardClient({ baseUrl: keyward.url, apiKey: keyward.adminKey });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      colorScheme: 'light',
      reducedMotion: 'reduce',
      locale: 'en-GB',
      timezoneId: 'Europe/Paris',
    });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: keyward.url });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    seen = watch(page, keyward.url);
  });

  afterAll(async () => {
    await browser?.close();
    await keyward?.stop();
  });

  it('serves the page with a strict policy, and the API keeps its own 404', async () => {
    const response = await fetch(`${keyward.url}/keys/anything`, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('cache-control')).toContain('no-cache');
    const html = await response.text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${keyward.url}${asset}`);
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect((await fetch(`${keyward.url}/v1/nope`, { headers: { accept: 'text/html' } })).status).toBe(404);
    expect((await fetch(`${keyward.url}/assets/nope.js`)).status).toBe(404);
    expect((await fetch(`${keyward.url}/keys/x`, { headers: { accept: 'application/json' } })).status).toBe(404);
  });

  it('refuses a wrong credential on the form, then signs in with the admin key', async () => {
    await page.goto(keyward.url);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    // Time to interactive on this machine: navigation start to the sign-in form rendered and usable.
    const interactiveMs = await page.evaluate(() => Math.round(performance.now()));
    console.log(`dashboard: sign-in form interactive ${interactiveMs} ms after navigation start`);
    expect(interactiveMs).toBeLessThan(5_000);
    await expectAccessible(page, 'sign-in');
    await shoot(page, 'sign-in');
    await page.getByLabel('API key or token').fill('kw_thisisnotarealkey0000000000000000000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('not accepted');
    await page.getByLabel('API key or token').fill(keyward.adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'API keys' }).waitFor();
    // Kept for the tab only.
    expect(await page.evaluate(() => window.localStorage.length)).toBe(0);
    expect(await page.evaluate(() => window.sessionStorage.getItem('keyward.credential'))).toBe(keyward.adminKey);
    expect(page.url()).not.toContain(keyward.adminKey);
  });

  let created = '';
  let createdId = '';

  it('creates a key, copies it from the reveal-once dialog, and the key verifies', async () => {
    await page.getByRole('button', { name: 'Create key' }).click();
    const form = dialog(page);
    await form.getByLabel('Name').fill('Billing service');
    await form.getByLabel('Description').fill('Invoices and payment webhooks');
    const scopes = form.getByLabel('Scopes');
    await scopes.fill('invoices:read');
    await scopes.press('Enter');
    await scopes.fill('invoices:write');
    await scopes.press('Enter');
    await expectAccessible(page, 'create key dialog');
    await form.getByRole('button', { name: 'Create key' }).click();

    const reveal = page.getByRole('dialog', { name: /Key created/ });
    await reveal.waitFor();
    await expect.poll(() => reveal.textContent()).toContain('will not be shown again');
    const done = reveal.getByRole('button', { name: 'Done' });
    expect(await done.isDisabled()).toBe(true);
    await expectAccessible(page, 'reveal-once dialog');
    await page.screenshot({ path: join(SHOTS, 'dashboard-reveal-once-light.png') });
    await reveal.getByRole('button', { name: 'Copy' }).click();
    created = await page.evaluate(() => navigator.clipboard.readText());
    expect(created).toBe(await reveal.getByLabel('API key').inputValue());
    expect(created).toMatch(/^kw_/);

    const verdict = await api.verifyKey({ key: created, scopes: ['invoices:read'] });
    expect(verdict.valid).toBe(true);
    createdId = verdict.key_id ?? '';
    expect(verdict.name).toBe('Billing service');

    expect(await done.isDisabled()).toBe(false);
    await done.click();
    await reveal.waitFor({ state: 'hidden' });
  });

  it('finds the key by search, name, prefix and id', async () => {
    for (let i = 0; i < 3; i++) await api.createKey({ name: `Worker ${i}`, scopes: ['jobs:run'] });
    await page.reload();
    await page.getByRole('heading', { name: 'API keys' }).waitFor();
    await page.getByRole('link', { name: 'Worker 2' }).waitFor();
    await shoot(page, 'keys');
    await expectAccessible(page, 'keys page');
    const search = page.getByRole('searchbox', { name: 'Search keys' });
    await search.fill('billing');
    await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
    expect(await page.locator('tbody tr').first().textContent()).toContain('Billing service');
    await search.fill(createdId);
    await expect.poll(() => page.locator('tbody tr').count()).toBe(1);
    await search.fill('no such key anywhere');
    await page.getByText('No key matches').waitFor();
    await search.fill('billing');
    await page.getByRole('link', { name: 'Billing service' }).click();
    await page.getByRole('heading', { name: 'Billing service' }).waitFor();
  });

  let rolled = '';

  it('rolls the key with a grace period: the new key is shown once and both keys work', async () => {
    await page.getByRole('button', { name: 'Roll' }).click();
    const roll = dialog(page);
    await roll.getByText('15 min').click();
    await expectAccessible(page, 'roll dialog');
    await roll.getByRole('button', { name: 'Roll' }).click();
    const reveal = page.getByRole('dialog', { name: /Key rolled/ });
    await reveal.waitFor();
    rolled = await reveal.getByLabel('API key').inputValue();
    expect(rolled).not.toBe(created);
    expect((await api.verifyKey({ key: rolled })).valid).toBe(true);
    const old = await api.verifyKey({ key: created });
    expect(old.code).toBe('VALID');
    await reveal.getByRole('checkbox').check();
    await reveal.getByRole('button', { name: 'Done' }).click();
    await page.waitForURL(/\/keys\/(?!.*createdId)/);
    await page.getByRole('heading', { name: 'Billing service' }).waitFor();
  });

  it('shows the key’s recent requests and top endpoints, filters them, and downloads them as CSV', async () => {
    const keyId = page.url().split('/').pop() ?? '';
    const seenAt = Date.now();
    const requests = [
      { endpoint: '/v1/invoices', method: 'GET', status_code: 200, response_time_ms: 12 },
      { endpoint: '/v1/invoices', method: 'GET', status_code: 200, response_time_ms: 9 },
      { endpoint: '/v1/invoices/inv_42', method: 'PATCH', status_code: 503, response_time_ms: 230 },
      { endpoint: '/v1/payments', method: 'POST', status_code: 201, response_time_ms: 48 },
    ];
    await api.reportUsage(
      requests.map((request, i) => ({
        ...request,
        key_id: keyId,
        outcome: 'VALID' as const,
        ip_address: '203.0.113.7',
        user_agent: 'e2e',
        occurred_at: new Date(seenAt - (requests.length - i) * 1000).toISOString(),
        tags: [`route:${request.endpoint}`],
      })),
    );
    // The four requests and the direct verification made when the key was rolled; rows are written in batches.
    await expect.poll(async () => (await api.listUsageEvents({ key_id: keyId })).data.length, { timeout: 10_000 }).toBe(5);
    await page.reload();
    const recent = page.getByRole('table', { name: 'Recent requests' });
    await expect.poll(() => recent.locator('tbody tr').count(), { timeout: 10_000 }).toBe(5);
    await page.getByRole('table', { name: 'Top endpoints' }).getByText('/v1/invoices', { exact: true }).waitFor();

    await page.getByRole('combobox', { name: 'Status' }).click();
    await page.getByRole('option', { name: '5xx server error' }).click();
    await expect.poll(() => recent.locator('tbody tr').count(), { timeout: 10_000 }).toBe(1);
    expect(await recent.locator('tbody tr').first().textContent()).toContain('/v1/invoices/inv_42');

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    expect(download.suggestedFilename()).toMatch(/^usage-billing-service-\d{4}-\d{2}-\d{2}\.csv$/);
    const csv = readFileSync(await download.path(), 'utf8')
      .trimEnd()
      .split('\r\n');
    expect(csv[0]).toBe('id,created_at,key_id,outcome,method,endpoint,status_code,response_time_ms,ip_address,user_agent,tags');
    expect(csv).toHaveLength(2);
    expect(csv[1]).toContain(`,${keyId},VALID,PATCH,/v1/invoices/inv_42,503,230,`);

    await page.getByRole('combobox', { name: 'Status' }).click();
    await page.getByRole('option', { name: 'Any status' }).click();
    await expect.poll(() => recent.locator('tbody tr').count(), { timeout: 10_000 }).toBe(5);
    await page
      .getByRole('heading', { name: 'Usage', exact: true })
      // The usage chart at the top, below the fixed header.
      .evaluate((heading) => {
        const card = heading.closest('.mantine-Card-root') ?? heading;
        window.scrollTo(0, card.getBoundingClientRect().top + window.scrollY - 72);
      });
    await shoot(page, 'key-usage');
    await page.evaluate(() => window.scrollTo(0, 0));
  });

  it('revokes the key after a confirmation naming it, and its status changes', async () => {
    const newId = page.url().split('/').pop() ?? '';
    expect(newId).not.toBe(createdId);
    await page.getByRole('button', { name: 'Revoke' }).click();
    const confirm = page.getByRole('dialog', { name: 'Revoke “Billing service”?' });
    await confirm.waitFor();
    await expectAccessible(page, 'revoke confirmation');
    await confirm.getByRole('button', { name: 'Revoke' }).click();
    await confirm.waitFor({ state: 'hidden' });
    await expect.poll(() => page.locator('[data-state]').first().textContent()).toBe('Revoked');
    expect((await api.verifyKey({ key: rolled })).code).toBe('REVOKED');
    // The audit trail of the key says so.
    await page.getByTestId('audit-trail').getByText('Key revoked').waitFor();
    await expectAccessible(page, 'key detail');
    await shoot(page, 'key-detail');
  });

  it('marks a key revoked for a leak as leaked', async () => {
    // The first key, still in its roll's grace period, is reported leaked: revoked at once, audited as key.leaked.
    await api.reportLeakedKeys([created]);
    await expect.poll(async () => (await api.getKey(createdId)).status).toBe('revoked');
    await page.goto(`${keyward.url}/keys/${createdId}`);
    await page.getByRole('heading', { name: 'Billing service' }).waitFor();
    await page.locator('[data-leaked]').waitFor();
    expect(await page.locator('[data-state]').first().textContent()).toBe('Revoked');
    await page.getByTestId('audit-trail').getByText('Key leaked').waitFor();
    await expectAccessible(page, 'leaked key');
  });

  it('reads the overview, users and audit log pages', async () => {
    await api.createUser({ external_id: 'ada', email: 'ada@example.com', tier: 'pro' });
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByText('Top keys').waitFor();
    await expectAccessible(page, 'overview');
    await shoot(page, 'overview');

    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('link', { name: 'ada' }).waitFor();
    await expectAccessible(page, 'users');
    await shoot(page, 'users');
    await page.getByRole('link', { name: 'ada' }).click();
    await page.getByRole('heading', { name: 'ada' }).waitFor();
    await expectAccessible(page, 'user detail');
    await shoot(page, 'user-detail');

    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    await page.locator('tbody').getByText('Key revoked').first().waitFor();
    await page.getByRole('textbox', { name: 'Target' }).fill(createdId);
    await expect.poll(() => page.locator('tbody tr').count()).toBeGreaterThan(0);
    await expectAccessible(page, 'audit log');
    await shoot(page, 'audit-log');
  });

  it('creates a webhook, shows its secret once, and lists a signed delivery that succeeded', async () => {
    const receiver = await startReceiver();
    try {
      // One webhook already there, disabled: the list shows its state and why.
      const other = await api.createWebhook({ url: 'https://alerts.example.com/keyward', description: 'Everything, to the data team' });
      await api.updateWebhook(other.id, { enabled: false });
      await page.getByRole('link', { name: 'Webhooks' }).click();
      await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
      await page.getByRole('table', { name: 'Webhooks' }).getByText('All events').waitFor();
      await page.getByRole('button', { name: 'Create webhook' }).click();
      const form = dialog(page);
      await form.getByLabel('Endpoint URL').fill(receiver.url);
      await form.getByLabel('Description').fill('Revocations, to the on-call channel');
      await form.getByRole('radio', { name: 'Chosen events' }).check();
      await form.getByRole('combobox', { name: 'Event types' }).click();
      await page.getByRole('option', { name: /^key\.revoked/ }).click();
      await page.getByRole('option', { name: /^key\.leaked/ }).click();
      // Closes the list of options (Escape would close the dialog too).
      await form.getByRole('heading', { name: 'Create webhook' }).click();
      await expectAccessible(page, 'create webhook dialog');
      await form.getByRole('button', { name: 'Create webhook' }).click();

      const reveal = page.getByRole('dialog', { name: /Webhook created/ });
      await reveal.waitFor();
      await expect.poll(() => reveal.textContent()).toContain('will not be shown again');
      await expectAccessible(page, 'webhook secret dialog');
      await reveal.getByRole('button', { name: 'Copy' }).click();
      const secret = await page.evaluate(() => navigator.clipboard.readText());
      expect(secret).toMatch(/^whsec_/);
      expect(secret).toBe(await reveal.getByLabel('Signing secret').inputValue());
      await reveal.getByRole('button', { name: 'Done' }).click();
      await page.waitForURL(/\/webhooks\/[0-9a-f-]+$/);
      const webhookId = page.url().split('/').pop() ?? '';
      await page.getByRole('heading', { level: 1, name: new URL(receiver.url).host }).waitFor();
      await page.getByText('No deliveries yet').waitFor();
      // Shown once: the page holds it no more.
      expect(await page.content()).not.toContain(secret);

      // An event: a key revoked. It reaches the receiver signed with the secret just shown.
      const target = await api.createKey({ name: 'Webhook target' });
      await api.revokeKey(target.id);
      await expect.poll(() => receiver.received.length, { timeout: 20_000 }).toBe(1);
      const [delivered] = receiver.received as [Received];
      const event = new StandardWebhook(secret).verify(delivered.body, delivered.headers as Record<string, string>) as {
        type: string;
        data: { key: { id: string } };
      };
      expect(event.type).toBe('key.revoked');
      expect(event.data.key.id).toBe(target.id);
      await expect
        .poll(async () => (await api.listWebhookDeliveries(webhookId)).data.map((d) => d.status), { timeout: 20_000 })
        .toEqual(['succeeded']);

      await page.getByRole('button', { name: 'Refresh deliveries' }).click();
      const table = page.getByRole('table', { name: 'Deliveries' });
      await table.locator('[data-delivery-status="succeeded"]').waitFor();
      expect(await table.locator('tbody tr').first().textContent()).toContain('key.revoked');
      await page.getByRole('button', { name: 'Show attempts of the key.revoked delivery' }).click();
      const attempts = page.getByRole('table', { name: 'Attempts of the key.revoked delivery' });
      await expect.poll(() => attempts.locator('tbody tr').count()).toBe(1);
      expect(await attempts.locator('tbody tr').first().textContent()).toContain('204');
      await expectAccessible(page, 'webhook detail');
      await shoot(page, 'webhooks-detail');

      await page.getByRole('main').getByRole('link', { name: 'Webhooks', exact: true }).click();
      await expect.poll(() => page.getByRole('table', { name: 'Webhooks' }).locator('tbody tr').count()).toBe(2);
      await expectAccessible(page, 'webhooks');
      await shoot(page, 'webhooks');

      // A browser opening (or reloading) a webhook's page is sent the dashboard.
      for (const path of ['/webhooks', `/webhooks/${webhookId}`]) {
        const response = await fetch(`${keyward.url}${path}`, { headers: { accept: 'text/html' } });
        expect(response.status, path).toBe(200);
        expect(response.headers.get('content-type'), path).toContain('text/html');
      }
    } finally {
      await receiver.close();
    }
  });

  it('is readable on a 390 px wide phone', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('button', { name: 'Open navigation' }).click();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'API keys' }).click();
    await page.getByRole('heading', { name: 'API keys' }).waitFor();
    await expectAccessible(page, 'keys (phone)');
    await shoot(page, 'keys-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('signs a user in with a JWT: their own keys, up to their tier limit', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Keyward' }).waitFor();
    expect(await page.evaluate(() => window.sessionStorage.getItem('keyward.credential'))).toBeNull();
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('grace')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(keyward.jwtSecret));
    await page.getByLabel('API key or token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Your API keys' }).waitFor();
    // The free tier allows 3 keys; the fourth is refused on the form.
    for (let i = 1; i <= 4; i++) {
      await page.getByRole('button', { name: 'Create key' }).first().click();
      const form = dialog(page);
      await form.getByLabel('Name').fill(`grace laptop ${i}`);
      await form.getByRole('button', { name: 'Create key' }).click();
      if (i === 4) {
        await expect.poll(() => form.getByRole('alert').textContent()).toMatch(/limit|at most|3/i);
        await expectAccessible(page, 'tier limit');
        await form.getByRole('button', { name: 'Cancel' }).click();
        break;
      }
      const reveal = page.getByRole('dialog', { name: /Key created/ });
      await reveal.getByRole('button', { name: 'Copy' }).click();
      await reveal.getByRole('button', { name: 'Done' }).click();
      await reveal.waitFor({ state: 'hidden' });
    }
    await expect.poll(() => page.locator('tbody tr').count()).toBe(3);
    await expectAccessible(page, 'my keys');
    await shoot(page, 'my-keys');
  });

  it('made no request to another host, and broke no CSP rule', () => {
    expect(seen.foreignRequests).toEqual([]);
    expect(seen.cspErrors).toEqual([]);
    expect(seen.pageErrors).toEqual([]);
  });
});

describe.skipIf(HAVE_CHROMIUM)('dashboard in headless Chromium', () => {
  it.skip(SKIP_REASON, () => {});
});
