import type { LightMyRequestResponse } from 'fastify';
import type { Container } from '../../packages/server/src/container.js';
import type { Dialect } from '../../packages/server/src/store/database.js';
import { bearer, createTestApp, type TestApp } from '../helpers/app.js';
import type { FreshDatabase } from '../helpers/db.js';

/** A clock the test moves by hand, so expiry and freshness are tested without waiting. */
export interface Clock {
  now(): number;
  advance(ms: number): void;
}

export function manualClock(start = Date.now()): Clock {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

export interface ClockedApp extends TestApp {
  clock: Clock;
}

/** Like `createTestApp`, with a manual clock shared by the verifier, the cache and the key service. */
export async function createClockedApp(
  options: { dialect?: Dialect; env?: Record<string, string>; database?: FreshDatabase; databaseUrl?: string } = {},
): Promise<ClockedApp> {
  const clock = manualClock();
  return { ...(await createTestApp({ ...options, now: clock.now })), clock };
}

export function verify(t: TestApp, body: Record<string, unknown>, asKey: string = t.adminKey): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/v1/keys/verify', headers: bearer(asKey), payload: body });
}

export async function codeOf(t: TestApp, key: string, extra: Record<string, unknown> = {}): Promise<string> {
  const response = await verify(t, { key, ...extra });
  if (response.statusCode !== 200) throw new Error(`verify answered ${response.statusCode}: ${response.body}`);
  return (response.json() as { code: string }).code;
}

export async function post(t: TestApp, url: string, payload?: Record<string, unknown>, asKey: string = t.adminKey) {
  return t.app.inject({ method: 'POST', url, headers: bearer(asKey), ...(payload === undefined ? {} : { payload }) });
}

/** Waits until the container's invalidation channel is subscribed (its cache trusts entries only then). */
export async function waitLive(container: Container, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!container.invalidation.live()) {
    if (Date.now() > until) throw new Error(`invalidation (${container.invalidation.transport}) did not come up`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
