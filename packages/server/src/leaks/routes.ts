import { Type } from '@fastify/type-provider-typebox';
import { ProblemError } from '../errors.js';
import { toProblemError, unwrap } from '../http/problem.js';
import { bodyProblems } from '../http/schemas.js';
import type { App } from '../http/types.js';
import { unstorableTextIn } from '../text.js';
import type { GithubMatch, LeakService } from './service.js';

// Two public routes: no credential, since those reporting a leak hold no Keyward credential. GitHub's reports are
// trusted for their signature; anyone else's only ever revoke, and never learn which keys were real.

/** The OpenAPI tag of these routes (the app lists it with the others). */
export const LEAKS_TAG = {
  name: 'Leaks',
  description: 'Leaked keys reported by GitHub secret scanning or by anyone holding one: each real key is revoked at once.',
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
