import type { CreateKeyInput } from '@keyward/sdk';

export type ExpiryPreset = 'never' | '7d' | '30d' | '90d' | '1y' | 'custom';

export const EXPIRY_PRESETS: { value: ExpiryPreset; label: string }[] = [
  { value: 'never', label: 'Never' },
  { value: '7d', label: 'In 7 days' },
  { value: '30d', label: 'In 30 days' },
  { value: '90d', label: 'In 90 days' },
  { value: '1y', label: 'In 1 year' },
  { value: 'custom', label: 'On a date…' },
];

const DAY = 24 * 3600 * 1000;
const PRESET_MS: Record<Exclude<ExpiryPreset, 'never' | 'custom'>, number> = {
  '7d': 7 * DAY,
  '30d': 30 * DAY,
  '90d': 90 * DAY,
  '1y': 365 * DAY,
};

export const WINDOWS = [
  { value: '1', label: 'per second' },
  { value: '60', label: 'per minute' },
  { value: '3600', label: 'per hour' },
  { value: '86400', label: 'per day' },
];

export interface CreateKeyValues {
  name: string;
  description: string;
  scopes: string[];
  expires: ExpiryPreset;
  /** `datetime-local` value (the browser's zone) when `expires` is custom. */
  expiresAt: string;
  metadata: string;
  rateLimit: number | string;
  rateWindow: string;
  quota: number | string;
  refillAmount: number | string;
  refillInterval: '' | 'day' | 'month';
  userId: string | null;
  prefix: string;
  isAdmin: boolean;
}

export const emptyCreateKeyValues = (userId: string | null = null): CreateKeyValues => ({
  name: '',
  description: '',
  scopes: [],
  expires: 'never',
  expiresAt: '',
  metadata: '',
  rateLimit: '',
  rateWindow: '60',
  quota: '',
  refillAmount: '',
  refillInterval: '',
  userId,
  prefix: '',
  isAdmin: false,
});

export type CreateKeyErrors = Partial<Record<keyof CreateKeyValues, string>>;

const PREFIX = /^[a-z][a-z0-9]*(_[a-z][a-z0-9]*)*$/;
const SCOPE = /^[^\s]+$/;

const isSet = (value: number | string): value is number => typeof value === 'number' && Number.isFinite(value);

/** Parses the metadata field: empty, or a JSON object. */
export function parseMetadata(text: string): { value?: Record<string, unknown>; error?: string } {
  if (text.trim() === '') return {};
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return { error: 'Metadata must be a JSON object, like {"team": "billing"}' };
    return { value: value as Record<string, unknown> };
  } catch (error) {
    return { error: `Not valid JSON: ${(error as Error).message}` };
  }
}

/** The expiry instant a preset or date stands for, or null for never. */
export function expiryOf(values: Pick<CreateKeyValues, 'expires' | 'expiresAt'>, now = Date.now()): string | null | 'invalid' {
  if (values.expires === 'never') return null;
  if (values.expires === 'custom') {
    const at = new Date(values.expiresAt);
    if (values.expiresAt === '' || Number.isNaN(at.getTime()) || at.getTime() <= now) return 'invalid';
    return at.toISOString();
  }
  return new Date(now + PRESET_MS[values.expires]).toISOString();
}

/** Checks the form; an empty result means it can be sent. */
export function validateCreateKey(values: CreateKeyValues, now = Date.now()): CreateKeyErrors {
  const errors: CreateKeyErrors = {};
  if (values.name.length > 200) errors.name = 'At most 200 characters';
  if (values.description.length > 2000) errors.description = 'At most 2000 characters';
  const badScope = values.scopes.find((scope) => !SCOPE.test(scope) || scope.length > 200);
  if (badScope !== undefined) errors.scopes = `"${badScope}" is not a scope (no spaces, at most 200 characters)`;
  if (expiryOf(values, now) === 'invalid') errors.expiresAt = 'Pick a date and time in the future';
  const metadata = parseMetadata(values.metadata);
  if (metadata.error) errors.metadata = metadata.error;
  if (values.prefix !== '' && (!PREFIX.test(values.prefix) || values.prefix.length > 20)) {
    errors.prefix = 'Lower-case letters and digits in words joined by _, starting with a letter (e.g. sk_live), at most 20';
  }
  if (values.rateLimit !== '' && !(isSet(values.rateLimit) && values.rateLimit >= 1)) errors.rateLimit = 'At least 1 request';
  if (values.quota !== '' && !(isSet(values.quota) && values.quota >= 0)) errors.quota = 'Zero or more';
  if (values.refillInterval !== '' && !(isSet(values.refillAmount) && values.refillAmount >= 1))
    errors.refillAmount = 'How many to add back each time';
  if (values.refillInterval !== '' && !isSet(values.quota)) errors.quota = 'Set a quota to refill';
  return errors;
}

/**
 * `POST /v1/api-keys`'s body with `name` optional, as the server takes it (SPEC §5: a default from the display
 * prefix). The SDK's generated types still mark it required; regenerating them (`npm run gen:sdk`) makes this
 * the same as `CreateKeyInput`.
 */
export type CreateKeyBody = Omit<CreateKeyInput, 'name'> & { name?: string };

/** The request body for `POST /v1/api-keys` (empty fields left out, so the server's defaults apply). */
export function createKeyBody(values: CreateKeyValues, now = Date.now()): CreateKeyBody {
  const body: CreateKeyBody = {};
  if (values.name.trim() !== '') body.name = values.name.trim();
  if (values.description.trim() !== '') body.description = values.description.trim();
  if (values.scopes.length > 0) body.scopes = values.scopes;
  const expiry = expiryOf(values, now);
  if (expiry !== null && expiry !== 'invalid') body.expires_at = expiry;
  const metadata = parseMetadata(values.metadata).value;
  if (metadata) body.metadata = metadata;
  if (isSet(values.rateLimit)) body.rate_limit = { limit: values.rateLimit, window_seconds: Number(values.rateWindow) };
  if (isSet(values.quota)) {
    body.quota = {
      remaining: values.quota,
      ...(values.refillInterval !== '' && isSet(values.refillAmount)
        ? { refill: { amount: values.refillAmount, interval: values.refillInterval } }
        : {}),
    };
  }
  if (values.userId) body.user_id = values.userId;
  if (values.prefix !== '') body.prefix = values.prefix;
  if (values.isAdmin) body.is_admin = true;
  return body;
}
