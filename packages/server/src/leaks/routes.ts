import { Type } from '@fastify/type-provider-typebox';
import { ProblemError } from '../errors.js';
import { callerOf } from '../http/auth.js';
import { toProblemError, unwrap } from '../http/problem.js';
import { bodyProblems } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { unstorableTextIn } from '../text.js';
import type { GithubMatch, LeakService } from './service.js';

// Two public routes (`leakRoutes`): no credential, since those reporting a leak hold no Keyward credential.
// GitHub's reports are trusted for their signature; anyone else's only ever revoke, and never learn which keys
// were real. One authenticated route (`leakScanRoutes`, in the app's /v1 scope): `keyward scan` through a server,
// which looks keys up in batches for a caller that may know about every key.

/** The OpenAPI tag of these routes (the app lists it with the others). */
export const LEAKS_TAG = {
  name: 'Leaks',
  description:
    'Leaked keys reported by GitHub secret scanning or by anyone holding one, or found by `keyward scan`: each real key is revoked at once.',
};
const tags = [LEAKS_TAG.name];

/** GitHub's reports may be large (many matches at once): up to this, whatever `BODY_LIMIT_BYTES` says. */
const GITHUB_BODY_LIMIT = 1024 * 1024;
/** Keys per `POST /v1/leaks/report`. */
export const MAX_REPORTED_KEYS = 100;

const GithubReportBody = Type.Array(
  Type.Object(
    {
      token: Type.String({ minLength: 1, description: 'The string that matched Keyward’s pattern' }),
      type: Type.String({ description: 'The name of the pattern that matched, as registered with GitHub' }),
      url: Type.Optional(Type.String({ description: 'Where on GitHub the match was found (may be empty)' })),
      source: Type.Optional(Type.String({ description: 'What the match was found in: `commit`, `gist`, `npm`, …' })),
    },
    // GitHub may add members: they are accepted, and ignored.
    { additionalProperties: true },
  ),
  {
    maxItems: 10_000,
    description: 'GitHub’s secret-scanning report: one object per match',
    examples: [
      [
        {
          token: 'kw_3xYkAb12Qm9rT4vW8zL2pN6sD1fH5jK7',
          type: 'keyward_api_key',
          url: 'https://github.com/octo/app/blob/1a2b3c/.env',
          source: 'commit',
        },
      ],
    ],
  },
);

const GithubFeedback = Type.Array(
  Type.Object({
    token_hash: Type.String({ description: 'SHA-256 of the token, lower-case hex: the token itself is never sent back' }),
    token_type: Type.String({ description: 'The `type` of the match' }),
    label: Type.Union([Type.Literal('true_positive'), Type.Literal('false_positive')], {
      description: '`true_positive`: a key of this Keyward, now revoked; `false_positive`: no key of this Keyward',
    }),
  }),
  {
    description: 'GitHub’s partner feedback: one entry per match, in the report’s order',
    examples: [
      [
        {
          token_hash: '5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8',
          token_type: 'keyward_api_key',
          label: 'true_positive',
        },
      ],
    ],
  },
);

const LeakReportBody = Type.Object(
  {
    keys: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), {
      minItems: 1,
      maxItems: MAX_REPORTED_KEYS,
      description: 'Keys that leaked. Each that is a key of this Keyward is revoked; the others are ignored.',
    }),
  },
  { additionalProperties: false, examples: [{ keys: ['kw_3xYkAb12Qm9rT4vW8zL2pN6sD1fH5jK7'] }] },
);

/** Findings per `POST /v1/leaks/scan`. */
export const MAX_SCANNED_KEYS = 500;
/** The longest location a finding may give (`file:line`); `keyward scan` keeps the end of a longer one. */
export const MAX_LOCATION_LENGTH = 1024;
/** A full batch of the longest keys and locations fits: this route alone takes up to 1 MiB. */
const SCAN_BODY_LIMIT = 1024 * 1024;

const ScanBody = Type.Object(
  {
    findings: Type.Array(
      Type.Object(
        {
          key: Type.String({ minLength: 1, maxLength: 256, description: 'A key found: never echoed back' }),
          location: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: MAX_LOCATION_LENGTH,
              description: 'Where it was found, e.g. `src/config.ts:12`: the audit entry of its revocation says so',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: MAX_SCANNED_KEYS, description: 'The keys found, each with where it was found' },
    ),
    revoke: Type.Optional(
      Type.Boolean({
        default: false,
        description: '`true`: revoke each live key (active, deactivated or expired), audited as `key.leaked` (source `scan`)',
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [{ findings: [{ key: 'kw_3xYkAb12Qm9rT4vW8zL2pN6sD1fH5jK7', location: 'src/config.ts:12' }], revoke: true }],
  },
);

const ScanResponse = Type.Object(
  {
    results: Type.Array(
      Type.Object({
        index: Type.Integer({ minimum: 0, description: 'The finding’s position in `findings`, from 0: the key itself is never sent back' }),
        key_id: Type.Union([Type.String(), Type.Null()], { description: 'The key’s id; `null` when it is no key of this Keyward' }),
        status: Type.Union(
          [
            Type.Literal('active'),
            Type.Literal('deactivated'),
            Type.Literal('expired'),
            Type.Literal('revoked'),
            Type.Literal('not_found'),
          ],
          { description: 'The key’s state when it was looked up, before this request revoked it' },
        ),
        revoked: Type.Boolean({ description: 'Whether this request revoked it' }),
      }),
      { description: 'One per finding, in the order sent' },
    ),
  },
  {
    description: 'What each key found is',
    examples: [
      {
        results: [
          { index: 0, key_id: '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90', status: 'active', revoked: true },
          { index: 1, key_id: null, status: 'not_found', revoked: false },
        ],
      },
    ],
  },
);

const Received = Type.Object(
  { received: Type.Integer({ minimum: 1, description: 'How many keys the report held; it never says which were real' }) },
  { description: 'The report was taken', examples: [{ received: 1 }] },
);

/** Sent with a refused signature, as every 401 carries one: what the request must be signed with. */
const SIGNATURE_CHALLENGE = { 'www-authenticate': 'Github-Public-Key-Signature realm="keyward"' };

export async function leakRoutes(app: App, deps: { leaks: LeakService }): Promise<void> {
  const { leaks } = deps;

  app.post(
    '/v1/leaks/report',
    {
      schema: {
        operationId: 'reportLeakedKeys',
        tags,
        summary: 'Report leaked keys',
        description:
          'No credential: whoever holds a key may have it revoked, as GitHub’s credential revocation API allows. Each of `keys` that is a key of this Keyward is revoked at once and audited as `key.leaked` (source `report`); the others are ignored. The answer is the same whether or not any key was real. Requests are limited per client address (`LEAKS_REPORTS_PER_MINUTE`): past it, 429 with `Retry-After`.',
        security: [],
        body: LeakReportBody,
        response: { 202: Received, ...bodyProblems(400) },
      },
    },
    async (request, reply) => {
      const { keys } = request.body;
      const received = unwrap(await leaks.takeReport(request.ip, keys));
      return reply.code(202).send(received);
    },
  );

  // GitHub signs the body's bytes: this route keeps them as they came (a Buffer, never parsed and serialized
  // again, which could change spacing or order), checks the signature, and only then parses the JSON.
  await app.register(async (github: App) => {
    github.removeContentTypeParser('application/json');
    github.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    github.post(
      '/v1/leaks/github',
      {
        bodyLimit: GITHUB_BODY_LIMIT,
        schema: {
          operationId: 'reportGithubSecretScanning',
          tags,
          summary: 'GitHub secret scanning: leaked keys',
          description:
            'GitHub’s secret-scanning partner endpoint. The body is signed: `Github-Public-Key-Identifier` names one of GitHub’s public keys (`LEAKS_GITHUB_KEYS_URL`, or `LEAKS_GITHUB_KEYS_FILE`), and `Github-Public-Key-Signature` is the base64 DER ECDSA P-256 SHA-256 signature of the body’s exact bytes. A missing or bad signature is 401 `INVALID_SIGNATURE` and revokes nothing; 503 when GitHub’s keys cannot be loaded (GitHub sends the report again). Each token that is a key of this Keyward is revoked at once and audited as `key.leaked` with its URL; the answer is GitHub’s feedback array.',
          security: [],
          headers: Type.Object({
            'github-public-key-identifier': Type.Optional(Type.String({ description: 'Which of GitHub’s keys signed the body' })),
            'github-public-key-signature': Type.Optional(Type.String({ description: 'Base64 of the DER ECDSA signature of the body' })),
          }),
          body: GithubReportBody,
          response: { 200: GithubFeedback, ...bodyProblems(400, 401) },
        },
        // After the body is read and before it is validated: the signature is checked on the raw bytes.
        preValidation: async (request) => {
          const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
          const { headers } = request;
          const signed = await leaks.checkGithubSignature(
            raw,
            headers['github-public-key-identifier'],
            headers['github-public-key-signature'],
          );
          if (!signed.ok) {
            const problem = toProblemError(signed);
            if (signed.code !== 'INVALID_SIGNATURE') throw problem;
            throw new ProblemError(problem.code, problem.detail, undefined, SIGNATURE_CHALLENGE);
          }
          let parsed: unknown;
          try {
            parsed = JSON.parse(raw.toString('utf8'));
          } catch {
            throw new ProblemError('INVALID_REQUEST', 'the body is not valid JSON');
          }
          const unstorable = unstorableTextIn(parsed, 'body');
          const [first] = unstorable;
          if (first) throw new ProblemError('INVALID_REQUEST', `${first.field}: ${first.message}`, unstorable);
          request.body = parsed as typeof request.body;
        },
      },
      async (request) => {
        const matches = request.body as GithubMatch[];
        return leaks.takeGithubReport(matches, request.ip);
      },
    );
  });
}

/** `POST /v1/leaks/scan`: authenticated, so registered in the app's /v1 scope (the other leak routes are public). */
export function leakScanRoutes(app: App, deps: { leaks: LeakService }): void {
  const { leaks } = deps;

  app.post(
    '/v1/leaks/scan',
    {
      bodyLimit: SCAN_BODY_LIMIT,
      schema: {
        operationId: 'scanLeakedKeys',
        tags,
        summary: 'Look up keys found by a scan, and revoke them',
        description: `What \`keyward scan\` asks through a server. Up to ${MAX_SCANNED_KEYS} keys found, each with where it was found, are looked up at once and answered by position: the key's id and state (\`active\`, \`deactivated\`, \`expired\`, \`revoked\`, \`not_found\`), never the key. With \`revoke: true\` each live one (active, deactivated or expired) is revoked and audited as \`key.leaked\` with source \`scan\` and its location, and the \`key.leaked\` webhook event is sent. An admin key, or a key holding \`keyward:keys:write\` that belongs to no user: others get 403. Unlike \`POST /v1/keys/verify\`, keys that are not found do not count against the caller's address. A location holding a key is refused with 400 \`SECRET_IN_FIELD\`.`,
        security: SECURED,
        body: ScanBody,
        response: { 200: ScanResponse, ...bodyProblems(400, 401, 403) },
      },
    },
    async (request) => {
      const { findings, revoke } = request.body;
      const results = unwrap(await leaks.scanKeys(callerOf(request), findings, revoke === true));
      return { results: results.map(({ index, keyId, status, revoked }) => ({ index, key_id: keyId, status, revoked })) };
    },
  );
}
