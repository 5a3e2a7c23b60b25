import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KeywardClient, KeywardError } from '@keyward/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { createKey, createTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/db.js';

// The SDK client's listUsageEvents and exportUsageEvents, against a listening Keyward.

const T0 = Date.UTC(2030, 4, 10, 0, 0, 0);

async function text(body: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(body).text();
}

describe.each(DIALECTS)('KeywardClient usage events on %s', (dialect) => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('lists a page with filters, follows next_cursor, and exports CSV and JSON Lines as a stream', async () => {
    t = await createTestApp({ dialect });
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const admin = new KeywardClient({ baseUrl: base, apiKey: t.adminKey });
    const key = await createKey(t, { name: 'k' });
    for (let i = 0; i < 5; i++) {
      t.container.usage.record({
        apiKeyId: key.id,
        outcome: i === 4 ? 'RATE_LIMITED' : 'VALID',
        endpoint: `/r/${i}`,
        statusCode: i === 4 ? 429 : 200,
        createdAt: T0 + i,
        tags: ['region:eu'],
      });
    }
    await t.container.usage.flush();

    const first = await admin.listUsageEvents({ key_id: key.id, limit: 3 });
    expect(first.data.map((r) => r.endpoint)).toEqual(['/r/4', '/r/3', '/r/2']);
    expect(first.data[0]).toMatchObject({ key_id: key.id, outcome: 'RATE_LIMITED', status_code: 429, tags: ['region:eu'] });
    const second = await admin.listUsageEvents({ key_id: key.id, limit: 3, cursor: first.next_cursor ?? '' });
    expect(second.data.map((r) => r.endpoint)).toEqual(['/r/1', '/r/0']);
    expect(second.next_cursor).toBeNull();
    expect((await admin.listUsageEvents({ status: '4xx' })).data).toHaveLength(1);

    const csv = await text(await admin.exportUsageEvents({ format: 'csv', key_id: key.id, outcome: 'VALID' }));
    expect(csv.split('\r\n').filter((line) => line !== '')).toHaveLength(5);
    const jsonl = await text(await admin.exportUsageEvents({ format: 'jsonl', tag: 'region:eu' }));
    expect(
      jsonl
        .trimEnd()
        .split('\n')
        .map((line) => (JSON.parse(line) as { endpoint: string }).endpoint),
    ).toEqual(['/r/4', '/r/3', '/r/2', '/r/1', '/r/0']);

    const plain = new KeywardClient({ baseUrl: base, apiKey: (await createKey(t, { name: 'plain', scopes: ['x:read'] })).key });
    const listed = await plain.listUsageEvents().catch((e: unknown) => e);
    expect(listed).toBeInstanceOf(KeywardError);
    expect(listed).toMatchObject({ status: 403, code: 'FORBIDDEN' });
    expect(await plain.exportUsageEvents({ format: 'csv' }).catch((e: unknown) => e)).toMatchObject({ status: 403, code: 'FORBIDDEN' });
  });
});

describe('KeywardClient.exportUsageEvents timing', () => {
  let stub: Server | undefined;
  afterEach(async () => {
    stub?.closeAllConnections();
    await new Promise<void>((resolve) => (stub ? stub.close(() => resolve()) : resolve()));
    stub = undefined;
  });

  async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
    stub = createServer(handler);
    await new Promise<void>((resolve) => stub?.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
  }

  it('lets a download run past timeoutMs once the answer has started', async () => {
    const base = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/csv' });
      res.write('id\r\n');
      // The rest arrives after the client's timeout: an export is bounded by its start, not its length.
      setTimeout(() => res.end('1\r\n'), 150);
    });
    const body = await new KeywardClient({ baseUrl: base, timeoutMs: 50 }).exportUsageEvents({ format: 'csv' });
    expect(await text(body)).toBe('id\r\n1\r\n');
  });

  it('gives up after timeoutMs when the answer does not start', async () => {
    const base = await listen(() => {}); // never answers
    const error = await new KeywardClient({ baseUrl: base, timeoutMs: 50 }).exportUsageEvents({ format: 'jsonl' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 0, code: 'NETWORK_ERROR', problem: { detail: 'the request timed out' } });
  });
});
