import { Type } from '@fastify/type-provider-typebox';
import { callerOf } from '../http/auth.js';
import { unwrap } from '../http/problem.js';
import { bodyProblems } from '../http/schemas.js';
import { type App, SECURED } from '../http/types.js';
import { type ImportRecord, type ImportService, MAX_IMPORT_BATCH } from './import.js';

const tags = ['API keys'];

/** A batch of up to 1,000 records is larger than most bodies: this route alone takes up to 4 MiB. */
export const IMPORT_BODY_LIMIT = 4 * 1024 * 1024;

// Each field is checked per record by the import service, not by this schema: a record of the wrong shape is
// rejected in `results` while the rest of the batch is imported, as a line of a file is by `keyward import`.
const field = (description: string) => Type.Optional(Type.Unknown({ description }));

const ImportRecordBody = Type.Object(
  {
    key: field('`plaintext`: the key itself, hashed on arrival and kept nowhere'),
    key_hash: field('`sha256`: the SHA-256 of the key, lower-case hex; `bcrypt`: a bcrypt hash ($2a/$2b/$2y)'),
    lookup_prefix: field('`bcrypt`: the part of the key before its first `.`, by which it is found'),
    key_prefix: field('`sha256`: the display prefix (default `imported`)'),
    name: field('A string of 1–200 characters (default `Imported key`)'),
    description: field('A string of at most 2,000 characters'),
    scopes: field('A list of scopes'),
    metadata: field('A JSON object within the metadata limits; no `rate_limit` or `quota`'),
    user_external_id: field('The external id of a user who exists already'),
    is_admin: field('`true` for an admin key'),
    expires_at: field('An ISO 8601 date'),
  },
  { description: 'One key to import; other properties are ignored' },
);

const ImportBody = Type.Object(
  {
    scheme: Type.Union([Type.Literal('plaintext'), Type.Literal('sha256'), Type.Literal('bcrypt')], {
      description: 'What each record holds: the key, its SHA-256 or its bcrypt hash',
    }),
    records: Type.Array(ImportRecordBody, { minItems: 1, maxItems: MAX_IMPORT_BATCH }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        scheme: 'sha256',
        records: [
          {
            key_hash: 'd2b2c5e1a9f0c3b4e5d6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8',
            key_prefix: 'sk_live_4f3a',
            name: 'Legacy billing key',
            scopes: ['invoices:read'],
            user_external_id: 'acme-42',
          },
        ],
      },
    ],
  },
);

const ImportResultResponse = Type.Object({
  index: Type.Integer({ description: 'The record’s position in `records`, from 0' }),
  status: Type.Union([Type.Literal('imported'), Type.Literal('skipped'), Type.Literal('rejected')], {
    description: '`skipped`: a key with the same hash is present already',
  }),
  id: Type.Optional(Type.String({ description: 'The key imported, or the one already present' })),
  message: Type.Optional(Type.String({ description: 'Why the record was rejected (never the key or its hash)' })),
});

const ImportResponse = Type.Object(
  {
    imported: Type.Integer(),
    skipped: Type.Integer(),
    rejected: Type.Integer(),
    results: Type.Array(ImportResultResponse, { description: 'One per record, in the order sent' }),
  },
  {
    description: 'What became of each record',
    examples: [
      {
        imported: 1,
        skipped: 0,
        rejected: 1,
        results: [
          { index: 0, status: 'imported', id: '01a2511e-e74a-7010-a8f2-9ddadc80221b' },
          { index: 1, status: 'rejected', message: 'key_hash must be 64 lower-case hex characters' },
        ],
      },
    ],
  },
);

/** `POST /v1/api-keys/import`: the HTTP side of `keyward import`, one batch per request. */
export function importRoutes(app: App, deps: { importer: ImportService }): void {
  const { importer } = deps;

  app.post(
    '/v1/api-keys/import',
    {
      bodyLimit: IMPORT_BODY_LIMIT,
      schema: {
        tags,
        operationId: 'importApiKeys',
        summary: 'Import API keys',
        description: `Admin only. Brings existing keys into Keyward (see \`keyward import\`): up to ${MAX_IMPORT_BATCH.toLocaleString('en-US')} records and 4 MiB per request, imported in one transaction. Each record is checked on its own and answered in \`results\`: imported, skipped (a key with the same hash is present, so a batch can be re-sent) or rejected with a message. Each imported key is audited as \`key.create\` with \`source: import\`, and verifies at once.`,
        security: SECURED,
        body: ImportBody,
        response: { 200: ImportResponse, ...bodyProblems(400, 401, 403) },
      },
    },
    async (request) => {
      const { scheme, records } = request.body;
      const results = unwrap(await importer.importBatch(callerOf(request), scheme, records as ImportRecord[]));
      let imported = 0;
      let skipped = 0;
      for (const result of results) {
        if (result.status === 'imported') imported += 1;
        else if (result.status === 'skipped') skipped += 1;
      }
      return {
        imported,
        skipped,
        rejected: results.length - imported - skipped,
        results: results.map(({ line, ...rest }) => ({ index: line - 1, ...rest })),
      };
    },
  );
}
