import createClient, { type Client } from 'openapi-fetch';
import { KeywardError } from './errors.js';
import type { paths } from './generated/openapi.js';

// Request and response types come from the generated OpenAPI types (scripts/gen-openapi.ts), never by hand.
type Method = 'get' | 'post' | 'patch' | 'delete';
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
type Json<R> = R extends { content: { 'application/json': infer B } } ? B : never;
/** The JSON body of the `status` response of an operation. */
export type ResponseBody<P extends keyof paths, M extends Method, S extends number = 200> =
  Operation<P, M> extends {
    responses: infer R;
  }
    ? S extends keyof R
      ? Json<R[S]>
      : never
    : never;
/** The JSON request body of an operation. */
export type RequestBody<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { requestBody?: infer B } ? Json<NonNullable<B>> : never;
/** The query parameters of an operation. */
export type QueryOf<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

/** An API key as Keyward returns it (every stored field but the hash). */
export type ApiKey = ResponseBody<'/v1/api-keys/{id}', 'get'>;
/** A newly created key: the record plus `key`, the plaintext, shown this once. */
export type CreatedKey = ResponseBody<'/v1/api-keys', 'post', 201>;
export type CreateKeyInput = RequestBody<'/v1/api-keys', 'post'>;
export type UpdateKeyInput = RequestBody<'/v1/api-keys/{id}', 'patch'>;
export type ListKeysQuery = QueryOf<'/v1/api-keys', 'get'>;
/** One page of keys; pass `next_cursor` as `cursor` for the next. */
export type KeyPage = ResponseBody<'/v1/api-keys', 'get'>;

export type RollKeyInput = RequestBody<'/v1/api-keys/{id}/roll', 'post'>;
export type VerifyKeyInput = RequestBody<'/v1/keys/verify', 'post'>;
/** The answer of `POST /v1/keys/verify`: `valid` and `code`, and the key's fields when the key was found. */
export type VerifyKeyResult = ResponseBody<'/v1/keys/verify', 'post'>;
export type VerifyCode = VerifyKeyResult['code'];
export type KeyUsageQuery = QueryOf<'/v1/api-keys/{id}/usage', 'get'>;
export type KeyUsage = ResponseBody<'/v1/api-keys/{id}/usage', 'get'>;
export type VerificationAnalyticsQuery = QueryOf<'/v1/analytics/verifications', 'get'>;
export type VerificationAnalytics = ResponseBody<'/v1/analytics/verifications', 'get'>;
export type VerificationSeriesQuery = QueryOf<'/v1/analytics/verifications/series', 'get'>;
/** Verifications by outcome per minute, hour or day: every bucket of the range, oldest first, and the totals. */
export type VerificationSeries = ResponseBody<'/v1/analytics/verifications/series', 'get'>;
/** The last 24 hours of several keys, each in 24 hourly counts. */
export type KeysActivity = ResponseBody<'/v1/analytics/keys/activity', 'get'>;
/** One key's last 24 hours: `total` and 24 hourly `buckets`, oldest first. */
export type KeyActivity = KeysActivity['data'][number];
/** One request a host application saw, as `reportUsage` sends it. */
export type UsageEvent = RequestBody<'/v1/usage/events', 'post'>['events'][number];
/** The filters of `GET /v1/usage/events`: key, user, time range, outcome, status, endpoint, tag, and the page. */
export type UsageEventsQuery = Omit<QueryOf<'/v1/usage/events', 'get'>, 'format'>;
/** One page of usage rows, newest first; pass `next_cursor` as `cursor` (with the same filters) for the next. */
export type UsageEventPage = ResponseBody<'/v1/usage/events', 'get'>;
/** One recorded request or verification, as `listUsageEvents` returns it. */
export type UsageRow = UsageEventPage['data'][number];
/** What `exportUsageEvents` exports: the filters (no page) and the format. */
export type UsageExportQuery = Omit<UsageEventsQuery, 'limit' | 'cursor'> & { format: 'csv' | 'jsonl' };
export type AuditLogQuery = QueryOf<'/v1/audit-logs', 'get'>;
export type AuditLogPage = ResponseBody<'/v1/audit-logs', 'get'>;
/** An end user of the host product. */
export type User = ResponseBody<'/v1/users/me', 'get'>;
/** A user as `getUser` and `listUsers` return them: with `key_count`, the keys they own in every state. */
export type UserWithKeyCount = ResponseBody<'/v1/users/{id}', 'get'>;
export type CreateUserInput = RequestBody<'/v1/users', 'post'>;
export type UpdateUserInput = RequestBody<'/v1/users/{id}', 'patch'>;
export type ListUsersQuery = QueryOf<'/v1/users', 'get'>;
export type UserPage = ResponseBody<'/v1/users', 'get'>;
// `POST /v1/api-keys/import` is newer than the generated types: these follow its schema until they are
// regenerated (then: RequestBody<'/v1/api-keys/import', 'post'> and ResponseBody<'/v1/api-keys/import', 'post'>).
/** A batch of existing keys to import (`POST /v1/api-keys/import`, admin only). */
export type ImportKeysInput = RequestBody<'/v1/api-keys/import', 'post'>;
/** What became of each record of an import batch. */
export type ImportKeysResult = ResponseBody<'/v1/api-keys/import', 'post'>;
export type CreateMyKeyInput = RequestBody<'/v1/users/me/api-keys', 'post'>;
/** Keys a scan found, each with where (`file:line`), and whether to revoke the live ones (`POST /v1/leaks/scan`). */
export type ScanLeakedKeysInput = RequestBody<'/v1/leaks/scan', 'post'>;
/** What each key found is, by its position in `findings`: its id, state, and whether it was revoked now. */
export type ScanLeakedKeysResult = ResponseBody<'/v1/leaks/scan', 'post'>;
export type ListMyKeysQuery = QueryOf<'/v1/users/me/api-keys', 'get'>;

export interface KeywardClientOptions {
  /** Where Keyward listens, e.g. `https://keys.example.com`. */
  baseUrl: string;
  /** An API key to authenticate with (sent as `Authorization: Bearer`). */
  apiKey?: string;
  /** Or a user JWT (self-service routes). */
  token?: string;
  /** A `fetch` to use instead of the global one (tests, proxies, instrumentation). */
  fetch?: (input: Request) => Promise<Response>;
  /** Abort a request that takes longer than this (default 10 000 ms; 0 for no limit). */
  timeoutMs?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
}

/**
 * A typed client for the Keyward HTTP API: one method per endpoint, request and response types generated
 * from the server's OpenAPI document. A non-2xx answer throws a {@link KeywardError} carrying the problem
 * body; `raw` is the underlying openapi-fetch client.
 *
 * @example
 * const keyward = new KeywardClient({ baseUrl: 'http://127.0.0.1:8080', apiKey: process.env.KEYWARD_ADMIN_KEY });
 * const { key, id } = await keyward.createKey({ name: 'billing service', scopes: ['invoices:read'] });
 * await keyward.revokeKey(id);
 */
export class KeywardClient {
  /**
   * The underlying openapi-fetch client, for anything the methods do not cover. Its middleware (`raw.use`)
   * sees every method's request but `verifyKey`'s and `reportUsage`'s, which are sent without it.
   */
  readonly raw: Client<paths>;
  /** What the hot calls (`verifyKey`, `reportUsage`) send directly, without openapi-fetch. */
  private readonly direct: DirectTarget;

  constructor(options: KeywardClientOptions) {
    const credential = options.apiKey ?? options.token;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const baseUrl = options.baseUrl.replace(/\/+$/, '');
    // The same headers openapi-fetch sends (content type, then the extra headers, then the credential), merged
    // once: names normalised, so an extra `Content-Type` replaces ours rather than joining it.
    const headers = new Headers({ 'content-type': 'application/json' });
    for (const [name, value] of Object.entries(options.headers ?? {})) headers.set(name, value);
    if (credential) headers.set('authorization', `Bearer ${credential}`);
    const merged: Record<string, string> = {};
    headers.forEach((value, name) => {
      merged[name] = value;
    });
    this.direct = { baseUrl, headers: merged, timeoutMs, fetch: options.fetch };
    this.raw = createClient<paths>({
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      ...(options.fetch ? { fetch: options.fetch } : {}),
      headers: { ...options.headers, ...(credential ? { authorization: `Bearer ${credential}` } : {}) },
    });
    if (timeoutMs > 0) {
      // A streamed body (an export) may take longer than the timeout to arrive: for it, the timeout bounds the
      // wait for the answer's headers; for every other request, the whole exchange.
      const waiting = new Map<string, ReturnType<typeof setTimeout>>();
      const answered = ({ id }: { id: string }) => {
        clearTimeout(waiting.get(id));
        waiting.delete(id);
        return undefined;
      };
      this.raw.use({
        onRequest: ({ request, options, id }) => {
          if (options.parseAs !== 'stream') {
            return new Request(request, { signal: AbortSignal.any([request.signal, AbortSignal.timeout(timeoutMs)]) });
          }
          const headers = new AbortController();
          waiting.set(
            id,
            setTimeout(() => headers.abort(new DOMException('The operation timed out.', 'TimeoutError')), timeoutMs),
          );
          return new Request(request, { signal: AbortSignal.any([request.signal, headers.signal]) });
        },
        onResponse: answered,
        onError: answered,
      });
    }
  }

  // ---- API keys -----------------------------------------------------------------------------------------

  /** `POST /v1/api-keys`: creates a key; the plaintext is in `key`, returned this once. */
  createKey(body: CreateKeyInput): Promise<CreatedKey> {
    return send(this.raw.POST('/v1/api-keys', { body }));
  }

  /** `GET /v1/api-keys`: one page of keys, newest first. */
  listKeys(query: ListKeysQuery = {}): Promise<KeyPage> {
    return send(this.raw.GET('/v1/api-keys', { params: { query } }));
  }

  /** `GET /v1/api-keys/{id}`. */
  getKey(id: string): Promise<ApiKey> {
    return send(this.raw.GET('/v1/api-keys/{id}', { params: { path: { id } } }));
  }

  /** `PATCH /v1/api-keys/{id}`: `null` clears an optional field. */
  updateKey(id: string, body: UpdateKeyInput): Promise<ApiKey> {
    return send(this.raw.PATCH('/v1/api-keys/{id}', { params: { path: { id } }, body }));
  }

  /** `POST /v1/api-keys/{id}/deactivate`: the key answers `DISABLED` until activated. */
  deactivateKey(id: string): Promise<ApiKey> {
    return send(this.raw.POST('/v1/api-keys/{id}/deactivate', { params: { path: { id } } }));
  }

  /** `POST /v1/api-keys/{id}/activate`. */
  activateKey(id: string): Promise<ApiKey> {
    return send(this.raw.POST('/v1/api-keys/{id}/activate', { params: { path: { id } } }));
  }

  /** `POST /v1/api-keys/{id}/revoke`: permanent. */
  revokeKey(id: string): Promise<ApiKey> {
    return send(this.raw.POST('/v1/api-keys/{id}/revoke', { params: { path: { id } } }));
  }

  /** `DELETE /v1/api-keys/{id}`. */
  async deleteKey(id: string): Promise<void> {
    await send(this.raw.DELETE('/v1/api-keys/{id}', { params: { path: { id } } }));
  }

  /**
   * `POST /v1/api-keys/import` (admin): imports up to 1,000 existing keys in one transaction. Each record is
   * answered on its own: imported, skipped (already present) or rejected with a message.
   *
   * @example
   * const { results } = await keyward.importKeys({ scheme: 'plaintext', records: [{ key: legacyKey, name: 'acme' }] });
   */
  importKeys(body: ImportKeysInput): Promise<ImportKeysResult> {
    return send(this.raw.POST('/v1/api-keys/import', { body }));
  }

  /** `GET /v1/api-keys/verify/current`: the record of the key this client authenticates with. */
  currentKey(): Promise<ApiKey> {
    return send(this.raw.GET('/v1/api-keys/verify/current'));
  }

  /** `POST /v1/api-keys/{id}/roll`: a new key (returned this once) replaces this one after `grace_period_seconds`. */
  rollKey(id: string, body: RollKeyInput = {}): Promise<ResponseBody<'/v1/api-keys/{id}/roll', 'post', 201>> {
    return send(this.raw.POST('/v1/api-keys/{id}/roll', { params: { path: { id } }, body }));
  }

  /** `GET /v1/api-keys/{id}/usage`: counts by outcome per minute, hour or day. */
  getKeyUsage(id: string, query: KeyUsageQuery = {}): Promise<KeyUsage> {
    return send(this.raw.GET('/v1/api-keys/{id}/usage', { params: { path: { id }, query } }));
  }

  // ---- Verification -------------------------------------------------------------------------------------

  /**
   * `POST /v1/keys/verify`: always 200 for a well-formed request; `valid` and `code` say whether `key` may be
   * used. Needs a client key that is admin or holds `keyward:verify`.
   *
   * @example
   * const result = await keyward.verifyKey({ key: presentedKey, scopes: ['companies:read'] });
   * if (!result.valid) console.log(result.code); // 'REVOKED', 'INSUFFICIENT_SCOPES', …
   */
  verifyKey(body: VerifyKeyInput): Promise<VerifyKeyResult> {
    // Sent directly: the middleware's per-request call (openapi-fetch's Request plus the timeout's copy of it
    // cost about twice a plain fetch). Answers and errors as every other method.
    return postDirect(this.direct, '/v1/keys/verify', body) as Promise<VerifyKeyResult>;
  }

  /**
   * `GET /v1/keys/changes`: the server-sent-events stream of key changes (hashes, never keys), as the bytes of
   * the answer. The middleware follows it for you (see `subscribeKeyChanges`); `lastEventId` resumes after an
   * event already seen. Needs an admin key or `keyward:verify`. The stream stays open: cancel it when done.
   *
   * @example
   * const body = await keyward.streamKeyChanges();
   * for await (const chunk of body) process.stdout.write(new TextDecoder().decode(chunk)); // retry:, event: ready, …
   */
  async streamKeyChanges(lastEventId?: string): Promise<ReadableStream<Uint8Array>> {
    const headers = lastEventId === undefined ? {} : { 'last-event-id': lastEventId };
    const body = await send(this.raw.GET('/v1/keys/changes', { headers, parseAs: 'stream' }));
    return body ?? new ReadableStream({ start: (controller) => controller.close() });
  }

  // ---- Leaked keys (no credential needed) ---------------------------------------------------------------

  /**
   * `POST /v1/leaks/report`: has each of `keys` that is a real key revoked at once. The answer is the same
   * whether or not any was real; no credential is needed (whoever holds a key may kill it).
   *
   * @example
   * await keyward.reportLeakedKeys([keyFoundInAPublicGist]); // { received: 1 }
   */
  reportLeakedKeys(keys: string[]): Promise<ResponseBody<'/v1/leaks/report', 'post', 202>> {
    return send(this.raw.POST('/v1/leaks/report', { body: { keys } }));
  }

  /**
   * `POST /v1/leaks/scan` (an admin key, or `keyward:keys:write` on a key of no user): looks up to 500 keys found
   * by a scan up at once — each answered by its position, never echoed — and with `revoke: true` revokes the live
   * ones, audited as `key.leaked` with source `scan` and their location. What `keyward scan` uses through a server.
   *
   * @example
   * const { results } = await keyward.scanLeakedKeys({ findings: [{ key: found, location: 'src/config.ts:12' }], revoke: true });
   * // [{ index: 0, key_id: '0197…', status: 'active', revoked: true }]
   */
  scanLeakedKeys(input: ScanLeakedKeysInput): Promise<ScanLeakedKeysResult> {
    return send(this.raw.POST('/v1/leaks/scan', { body: input }));
  }

  /**
   * `POST /v1/leaks/github`: relays a GitHub secret-scanning report. `body` is the exact text GitHub signed
   * (sent as is, never re-serialized); `keyIdentifier` and `signature` are its `Github-Public-Key-Identifier`
   * and `Github-Public-Key-Signature` headers. Answers GitHub's feedback array.
   *
   * @example
   * const feedback = await keyward.reportGithubSecretScanning(rawBody, { keyIdentifier, signature });
   */
  reportGithubSecretScanning(
    body: string,
    signed: { keyIdentifier: string; signature: string },
  ): Promise<ResponseBody<'/v1/leaks/github', 'post'>> {
    return send(
      this.raw.POST('/v1/leaks/github', {
        body: [] as RequestBody<'/v1/leaks/github', 'post'>,
        bodySerializer: () => body,
        headers: {
          'content-type': 'application/json',
          'github-public-key-identifier': signed.keyIdentifier,
          'github-public-key-signature': signed.signature,
        },
      }),
    );
  }

  /** `GET /v1/analytics/verifications`: totals by outcome and the busiest keys. */
  getVerificationAnalytics(query: VerificationAnalyticsQuery = {}): Promise<VerificationAnalytics> {
    return send(this.raw.GET('/v1/analytics/verifications', { params: { query } }));
  }

  /**
   * `GET /v1/analytics/verifications/series`: verifications by outcome per minute, hour or day (UTC buckets,
   * every bucket present; default the last 24 hours by hour). `key_id` narrows it to one key.
   *
   * @example
   * const day = await keyward.getVerificationSeries({ granularity: 'hour', from: new Date(Date.now() - 86_400_000).toISOString() });
   * for (const b of day.buckets) console.log(b.start, b.total, b.outcomes.VALID ?? 0);
   */
  getVerificationSeries(query: VerificationSeriesQuery = {}): Promise<VerificationSeries> {
    return send(this.raw.GET('/v1/analytics/verifications/series', { params: { query } }));
  }

  /**
   * `GET /v1/analytics/keys/activity`: each key's verifications per hour over the last 24 hours, for up to 100
   * keys in one request (a key list's sparklines). Keys the caller may not read, and unknown ids, are left out.
   *
   * @example
   * const { data } = await keyward.getKeysActivity(page.data.map((k) => k.id));
   * for (const k of data) console.log(k.key_id, k.total, k.buckets); // 24 counts, oldest first
   */
  getKeysActivity(keyIds: readonly string[]): Promise<KeysActivity> {
    return send(this.raw.GET('/v1/analytics/keys/activity', { params: { query: { key_ids: keyIds.join(',') } } }));
  }

  /**
   * `GET /v1/usage/events`: one page of recorded requests and verifications (endpoint, method, status, IP, user
   * agent, response time, outcome, tags), newest first. Filter by `key_id`, `user_id`, `from`/`to`, `outcome`
   * (codes separated by commas), `status` (`404` or `4xx`), `endpoint` (exact, or a prefix ending in `*`) and
   * `tag`. Readable as the usage counts are: an admin key, `keyward:keys:read`, or a user's token for their keys.
   *
   * @example
   * let cursor: string | undefined;
   * do {
   *   const page = await keyward.listUsageEvents({ key_id: keyId, status: '5xx', limit: 500, cursor });
   *   for (const row of page.data) console.log(row.created_at, row.method, row.endpoint, row.status_code);
   *   cursor = page.next_cursor ?? undefined;
   * } while (cursor);
   */
  listUsageEvents(query: UsageEventsQuery = {}): Promise<UsageEventPage> {
    // The operation answers CSV and JSON Lines too; `format: 'json'` asks for the JSON page.
    return send(this.raw.GET('/v1/usage/events', { params: { query: { ...query, format: 'json' } } })) as Promise<UsageEventPage>;
  }

  /**
   * `GET /v1/usage/events?format=csv|jsonl`: every row of a selection (the filters of {@link listUsageEvents},
   * without paging), newest first, as the body of the answer: a stream of bytes, so an export of millions of rows
   * is never held in memory. CSV is RFC 4180 with a header line (a text starting with `=`, `+`, `-` or `@` gets
   * a leading `'`); JSON Lines has one row per line, as `listUsageEvents` returns them. `timeoutMs` bounds the
   * wait for the answer to start, not the download.
   *
   * @example
   * import { createWriteStream } from 'node:fs';
   * import { Readable } from 'node:stream';
   * import { pipeline } from 'node:stream/promises';
   *
   * const body = await keyward.exportUsageEvents({ format: 'csv', from: '2025-06-01T00:00:00Z', outcome: 'RATE_LIMITED' });
   * await pipeline(Readable.fromWeb(body), createWriteStream('rate-limited.csv'));
   */
  async exportUsageEvents(query: UsageExportQuery): Promise<ReadableStream<Uint8Array>> {
    const body = await send(this.raw.GET('/v1/usage/events', { params: { query }, parseAs: 'stream' }));
    return body ?? new ReadableStream({ start: (controller) => controller.close() });
  }

  /** `GET /v1/audit-logs`: who changed what, newest first (admin). */
  listAuditLogs(query: AuditLogQuery = {}): Promise<AuditLogPage> {
    return send(this.raw.GET('/v1/audit-logs', { params: { query } }));
  }

  /**
   * `POST /v1/usage/events`: one usage row per request your application saw (up to 500 per call); 202 when
   * Keyward took them. The middleware does this for you, in batches. Needs an admin key or `keyward:verify`.
   */
  reportUsage(events: UsageEvent[]): Promise<ResponseBody<'/v1/usage/events', 'post', 202>> {
    // Sent directly, as `verifyKey`: the middleware's background reports.
    const body: RequestBody<'/v1/usage/events', 'post'> = { events };
    return postDirect(this.direct, '/v1/usage/events', body) as Promise<ResponseBody<'/v1/usage/events', 'post', 202>>;
  }

  // ---- Webhooks and events (admin) ----------------------------------------------------------------------

  /**
   * `POST /v1/webhooks`: registers a URL for some event types (all when `event_types` is absent). The signing
   * secret (`whsec_…`) is in `secret`, returned this once: verify deliveries with any Standard Webhooks library.
   *
   * @example
   * const { id, secret } = await keyward.createWebhook({ url: 'https://example.com/hooks/keyward', event_types: ['key.revoked'] });
   */
  createWebhook(body: RequestBody<'/v1/webhooks', 'post'>): Promise<ResponseBody<'/v1/webhooks', 'post', 201>> {
    return send(this.raw.POST('/v1/webhooks', { body }));
  }

  /** `GET /v1/webhooks`: one page of webhooks, newest first (never their secrets). */
  listWebhooks(query: QueryOf<'/v1/webhooks', 'get'> = {}): Promise<ResponseBody<'/v1/webhooks', 'get'>> {
    return send(this.raw.GET('/v1/webhooks', { params: { query } }));
  }

  /** `GET /v1/webhooks/{id}`. */
  getWebhook(id: string): Promise<ResponseBody<'/v1/webhooks/{id}', 'get'>> {
    return send(this.raw.GET('/v1/webhooks/{id}', { params: { path: { id } } }));
  }

  /** `PATCH /v1/webhooks/{id}`: URL, event types, description, enabled (enabling clears a disabled reason). */
  updateWebhook(id: string, body: RequestBody<'/v1/webhooks/{id}', 'patch'>): Promise<ResponseBody<'/v1/webhooks/{id}', 'patch'>> {
    return send(this.raw.PATCH('/v1/webhooks/{id}', { params: { path: { id } }, body }));
  }

  /** `DELETE /v1/webhooks/{id}`: the webhook and its deliveries. */
  async deleteWebhook(id: string): Promise<void> {
    await send(this.raw.DELETE('/v1/webhooks/{id}', { params: { path: { id } } }));
  }

  /** `POST /v1/webhooks/{id}/roll-secret`: a new signing secret, returned this once; the old one stops signing. */
  rollWebhookSecret(id: string): Promise<ResponseBody<'/v1/webhooks/{id}/roll-secret', 'post'>> {
    return send(this.raw.POST('/v1/webhooks/{id}/roll-secret', { params: { path: { id } } }));
  }

  /** `GET /v1/webhooks/{id}/deliveries`: one page of deliveries with their attempts, newest first. */
  listWebhookDeliveries(
    id: string,
    query: QueryOf<'/v1/webhooks/{id}/deliveries', 'get'> = {},
  ): Promise<ResponseBody<'/v1/webhooks/{id}/deliveries', 'get'>> {
    return send(this.raw.GET('/v1/webhooks/{id}/deliveries', { params: { path: { id }, query } }));
  }

  /** `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`: sends a delivery again, now. */
  retryWebhookDelivery(
    id: string,
    deliveryId: string,
  ): Promise<ResponseBody<'/v1/webhooks/{id}/deliveries/{delivery_id}/retry', 'post', 202>> {
    return send(this.raw.POST('/v1/webhooks/{id}/deliveries/{delivery_id}/retry', { params: { path: { id, delivery_id: deliveryId } } }));
  }

  /** `GET /v1/events`: one page of the events Keyward wrote (what webhooks deliver), newest first. */
  listEvents(query: QueryOf<'/v1/events', 'get'> = {}): Promise<ResponseBody<'/v1/events', 'get'>> {
    return send(this.raw.GET('/v1/events', { params: { query } }));
  }

  // ---- Users (admin) ------------------------------------------------------------------------------------

  /** `POST /v1/users`. */
  createUser(body: CreateUserInput): Promise<ResponseBody<'/v1/users', 'post', 201>> {
    return send(this.raw.POST('/v1/users', { body }));
  }

  /** `GET /v1/users`: one page of users, newest first, each with `key_count`. */
  listUsers(query: ListUsersQuery = {}): Promise<UserPage> {
    return send(this.raw.GET('/v1/users', { params: { query } }));
  }

  /** `GET /v1/users/{id}`: the user, with `key_count`. */
  getUser(id: string): Promise<UserWithKeyCount> {
    return send(this.raw.GET('/v1/users/{id}', { params: { path: { id } } }));
  }

  /** `PATCH /v1/users/{id}`: email or tier. */
  updateUser(id: string, body: UpdateUserInput): Promise<ResponseBody<'/v1/users/{id}', 'patch'>> {
    return send(this.raw.PATCH('/v1/users/{id}', { params: { path: { id } }, body }));
  }

  /** `DELETE /v1/users/{id}`: the user and all their keys. */
  async deleteUser(id: string): Promise<void> {
    await send(this.raw.DELETE('/v1/users/{id}', { params: { path: { id } } }));
  }

  // ---- Self-service (a user's JWT as `token`) -----------------------------------------------------------

  /** `GET /v1/users/me`: the signed-in user. */
  currentUser(): Promise<ResponseBody<'/v1/users/me', 'get'>> {
    return send(this.raw.GET('/v1/users/me'));
  }

  /** `POST /v1/users/me/api-keys`: a key for the signed-in user, within their tier's limits. */
  createMyKey(body: CreateMyKeyInput): Promise<ResponseBody<'/v1/users/me/api-keys', 'post', 201>> {
    return send(this.raw.POST('/v1/users/me/api-keys', { body }));
  }

  /** `GET /v1/users/me/api-keys`. */
  listMyKeys(query: ListMyKeysQuery = {}): Promise<ResponseBody<'/v1/users/me/api-keys', 'get'>> {
    return send(this.raw.GET('/v1/users/me/api-keys', { params: { query } }));
  }

  /** `DELETE /v1/users/me/api-keys/{id}`. */
  async deleteMyKey(id: string): Promise<void> {
    await send(this.raw.DELETE('/v1/users/me/api-keys/{id}', { params: { path: { id } } }));
  }

  // ---- Operations ---------------------------------------------------------------------------------------

  /** `GET /healthz`: liveness. */
  health(): Promise<ResponseBody<'/healthz', 'get'>> {
    return send(this.raw.GET('/healthz'));
  }

  /** `GET /readyz`: whether the database answers (a 503 throws). */
  ready(): Promise<ResponseBody<'/readyz', 'get'>> {
    return send(this.raw.GET('/readyz'));
  }

  /** `GET /metrics`: the Prometheus text exposition. */
  metrics(): Promise<string> {
    return send(this.raw.GET('/metrics', { parseAs: 'text' }));
  }
}

/** Where and how the direct calls go: the client's base URL, headers (credential included), timeout and fetch. */
interface DirectTarget {
  baseUrl: string;
  headers: Record<string, string>;
  timeoutMs: number;
  fetch: ((input: Request) => Promise<Response>) | undefined;
}

/**
 * `POST path` with a JSON body, answered as {@link send} answers an openapi-fetch call: the parsed body of a
 * 2xx (`undefined` when empty), a {@link KeywardError} from the problem body otherwise, `NETWORK_ERROR` when
 * no answer came (or its body did not arrive or parse). A custom `fetch` still gets one `Request`.
 */
async function postDirect(target: DirectTarget, path: string, body: unknown): Promise<unknown> {
  const init: RequestInit = { method: 'POST', headers: target.headers, body: JSON.stringify(body), redirect: 'follow' };
  if (target.timeoutMs > 0) init.signal = AbortSignal.timeout(target.timeoutMs);
  const url = target.baseUrl + path;
  let response: Response;
  let text: string;
  let data: unknown;
  try {
    response = await (target.fetch ? target.fetch(new Request(url, init)) : fetch(url, init));
    text = await response.text();
    if (response.ok) data = text === '' ? undefined : JSON.parse(text);
  } catch (cause) {
    throw KeywardError.network(cause);
  }
  if (response.ok) return data;
  let error: unknown = text;
  try {
    error = JSON.parse(text);
  } catch {
    // Not JSON: the text names the error.
  }
  throw KeywardError.fromResponse(response.status, error, response.headers);
}

type Outcome = { data?: unknown; error?: unknown; response: Response };

/** The body of a 2xx answer; anything else becomes a {@link KeywardError}. */
async function send<O extends Outcome>(pending: Promise<O>): Promise<Exclude<O['data'], undefined>> {
  let outcome: O;
  try {
    outcome = await pending;
  } catch (cause) {
    throw KeywardError.network(cause);
  }
  if (outcome.response.ok) return outcome.data as Exclude<O['data'], undefined>;
  throw KeywardError.fromResponse(outcome.response.status, outcome.error, outcome.response.headers);
}
