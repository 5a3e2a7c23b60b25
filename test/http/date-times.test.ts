import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createKey, createTestApp, type TestApp } from '../helpers/app.js';

// RFC 3339 forms a format check may pass but `Date.parse` cannot read: a leap second and an hour-only offset.
const UNREADABLE = ['2030-12-31T23:59:60Z', '2030-05-10T10:00:00+02'];

describe('date-times the API takes', () => {
  let t: TestApp;
  let keyId: string;
  let verifierKey: string;

  beforeAll(async () => {
    t = await createTestApp();
    keyId = (await createKey(t, { name: 'dated' })).id;
    verifierKey = (await createKey(t, { name: 'verifier', scopes: ['keyward:verify'] })).key;
  });
  afterAll(async () => t?.close());

  const requests = (value: string) => {
    const q = encodeURIComponent(value);
    return [
      { method: 'GET' as const, url: `/v1/api-keys/${keyId}/usage?from=${q}` },
      { method: 'GET' as const, url: `/v1/api-keys/${keyId}/usage?to=${q}` },
      { method: 'GET' as const, url: `/v1/analytics/verifications?from=${q}` },
      { method: 'GET' as const, url: `/v1/audit-logs?from=${q}` },
      { method: 'GET' as const, url: `/v1/audit-logs?to=${q}` },
      { method: 'POST' as const, url: '/v1/api-keys', payload: { name: 'x', expires_at: value } },
      { method: 'PATCH' as const, url: `/v1/api-keys/${keyId}`, payload: { expires_at: value } },
    ];
  };

  it('answers 400 INVALID_REQUEST for a date-time that is not an instant JavaScript can read', async () => {
    for (const value of UNREADABLE) {
      for (const request of requests(value)) {
        const response = await t.app.inject({ ...request, headers: bearer(t.adminKey) });
        expect(response.statusCode, `${request.method} ${request.url} ${value}`).toBe(400);
        expect(response.json(), `${request.method} ${request.url}`).toMatchObject({ code: 'INVALID_REQUEST' });
      }
    }
  });

  it('refuses such an occurred_at in a usage report, and usage recording carries on', async () => {
    for (const value of UNREADABLE) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/usage/events',
        headers: bearer(verifierKey),
        payload: { events: [{ key_id: keyId, outcome: 'VALID', occurred_at: value }] },
      });
      expect(response.statusCode, value).toBe(400);
    }
    const taken = await t.app.inject({
      method: 'POST',
      url: '/v1/usage/events',
      headers: bearer(verifierKey),
      payload: { events: [{ key_id: keyId, outcome: 'VALID', occurred_at: '2030-05-10T10:00:00+02:00' }] },
    });
    expect(taken.statusCode).toBe(202);
    await t.container.usage.flush();
    expect(t.container.usage.buffered()).toBe(0);
  });

  it('refuses an empty key_id in a usage report (null is the unknown key)', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/usage/events',
      headers: bearer(verifierKey),
      payload: { events: [{ key_id: '', outcome: 'NOT_FOUND' }] },
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('still takes full RFC 3339 date-times, offsets included', async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/api-keys/${keyId}/usage?from=${encodeURIComponent('2030-05-10T10:00:00+02:00')}&to=${encodeURIComponent('2030-05-10T11:00:00.5Z')}`,
      headers: bearer(t.adminKey),
    });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ from: '2030-05-10T08:00:00.000Z' });
  });
});
