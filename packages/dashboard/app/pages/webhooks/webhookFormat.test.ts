import { KeywardError } from '@keyward/sdk';
import { describe, expect, it } from 'vitest';
import { isAboutToBeTried } from '../../api/queries';
import { delivery } from './fixtures';
import { EVENT_TYPES, hostOf, webhookFieldErrors } from './webhookFormat';

const problem = (code: string, fields: Partial<ConstructorParameters<typeof KeywardError>[0]> = {}) =>
  new KeywardError({ type: 'about:blank', title: 'Bad request', status: 400, code, ...fields });

describe('webhook helpers', () => {
  it('offers the 15 event types', () => {
    expect(EVENT_TYPES).toHaveLength(15);
    expect(EVENT_TYPES).toContain('quota.low');
    expect(EVENT_TYPES).not.toContain('*');
  });

  it('names a webhook by its host', () => {
    expect(hostOf('https://hooks.example.com/keyward')).toBe('hooks.example.com');
    expect(hostOf('http://127.0.0.1:9000/x')).toBe('127.0.0.1:9000');
    expect(hostOf('not a url')).toBe('not a url');
  });

  it('puts the server’s refusals on their fields', () => {
    expect(webhookFieldErrors(problem('INVALID_REQUEST', { errors: [{ field: 'body.url', message: 'must match format "uri"' }] }))).toEqual(
      {
        url: 'must match format "uri"',
      },
    );
    expect(
      webhookFieldErrors(problem('INVALID_REQUEST', { errors: [{ field: 'body.event_types.0', message: 'is no event type' }] })),
    ).toEqual({
      event_types: 'is no event type',
    });
    // A refusal of the URL that names no field still lands on the URL.
    expect(webhookFieldErrors(problem('WEBHOOK_URL_NOT_ALLOWED', { detail: 'body.url: 10.0.0.1 is not a public address' }))).toEqual({
      url: '10.0.0.1 is not a public address',
    });
    expect(webhookFieldErrors(problem('SOMETHING_ELSE'))).toEqual({});
    expect(webhookFieldErrors(new Error('network'))).toEqual({});
  });

  it('polls deliveries only while one is about to be tried', () => {
    const now = Date.parse('2026-03-10T14:00:00.000Z');
    expect(isAboutToBeTried(delivery({ status: 'pending', next_attempt_at: null }), now)).toBe(true);
    expect(isAboutToBeTried(delivery({ status: 'failed', next_attempt_at: '2026-03-10T14:00:05.000Z' }), now)).toBe(true);
    expect(isAboutToBeTried(delivery({ status: 'failed', next_attempt_at: '2026-03-10T19:00:00.000Z' }), now)).toBe(false);
    expect(isAboutToBeTried(delivery({ status: 'succeeded' }), now)).toBe(false);
    expect(isAboutToBeTried(delivery({ status: 'dead' }), now)).toBe(false);
  });
});
