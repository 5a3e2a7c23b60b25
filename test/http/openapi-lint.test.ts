import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_JSON_PATH } from '../../scripts/gen-openapi.js';
import { createTestApp } from '../helpers/app.js';

const require = createRequire(import.meta.url);
const root = resolve(dirname(OPENAPI_JSON_PATH), '../..');
// The leak-report routes take no credential: GitHub signs its reports, and anyone holding a key may report it.
const PUBLIC_V1 = new Set(['post /v1/leaks/github', 'post /v1/leaks/report']);
const REDOCLY = resolve(dirname(require.resolve('@redocly/cli/package.json')), 'bin/cli.js');

interface Operation {
  operationId?: string;
  tags?: string[];
  security?: unknown[];
  requestBody?: { content: Record<string, { example?: unknown; examples?: unknown }> };
  responses: Record<string, { content?: Record<string, { example?: unknown; examples?: unknown }>; headers?: Record<string, unknown> }>;
}
interface Document {
  tags: { name: string; description?: string }[];
  paths: Record<string, Record<string, Operation>>;
}

interface LintReport {
  totals: { errors: number; warnings: number };
  problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
}

/** `redocly lint` of a document with the repository's `redocly.yaml` (the recommended ruleset). */
async function lint(document: object): Promise<LintReport> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-openapi-'));
  try {
    const file = join(dir, 'openapi.json');
    await writeFile(file, JSON.stringify(document));
    const run = promisify(execFile);
    const args = [REDOCLY, 'lint', file, '--config', join(root, 'redocly.yaml'), '--format=json'];
    const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' };
    // `lint` exits 1 when it finds errors: the report on stdout says which.
    const { stdout } = await run(process.execPath, args, { cwd: root, env }).catch((error: { stdout?: string }) => ({
      stdout: error.stdout ?? '',
    }));
    return JSON.parse(stdout) as LintReport;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('the OpenAPI document, for generators', () => {
  let served: Document;
  const operations = () =>
    Object.entries(served.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => [`${method} ${path}`, op] as const),
    );

  beforeAll(async () => {
    const t = await createTestApp();
    try {
      served = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as Document;
    } finally {
      await t.close();
    }
  });

  it('is the committed one (packages/sdk/openapi.json: run `npm run gen:sdk` when this fails)', async () => {
    expect(JSON.parse(await readFile(OPENAPI_JSON_PATH, 'utf8'))).toEqual(served);
  });

  it('passes `redocly lint` with the recommended ruleset: no error, no warning', async () => {
    const report = await lint(served);
    const found = report.problems.map((p) => `${p.severity} ${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
    expect(found).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  }, 60_000);

  it('fails the lint when an operation loses its operationId (the check is not vacuous)', async () => {
    const broken = structuredClone(served);
    const create = broken.paths['/v1/api-keys']?.post;
    if (create) delete create.operationId;
    const report = await lint(broken);
    expect(report.problems.map((p) => p.ruleId)).toContain('operation-operationId');
  }, 60_000);

  it('gives every operation a unique camelCase operationId and a tag the document describes', () => {
    const ids = operations().map(([, op]) => op.operationId);
    for (const id of ids) expect(id).toMatch(/^[a-z][a-zA-Z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
    const described = new Map(served.tags.map((tag) => [tag.name, tag.description]));
    for (const [name, op] of operations()) {
      expect(op.tags, name).toHaveLength(1);
      expect(described.get(op.tags?.[0] ?? ''), name).toBeTruthy();
    }
  });

  it('documents errors as problem+json with their headers, an example per operation, and the public routes as public', () => {
    for (const [name, op] of operations()) {
      const statuses = Object.keys(op.responses);
      if (name.includes(' /v1/'))
        expect(
          statuses.some((s) => s.startsWith('4')),
          name,
        ).toBe(true);
      for (const [status, response] of Object.entries(op.responses)) {
        expect(response.headers, `${name} ${status}`).toHaveProperty('X-Request-Id');
        if (name.includes(' /v1/') && Number(status) >= 400) {
          expect(Object.keys(response.content ?? {}), `${name} ${status}`).toEqual(['application/problem+json']);
        }
        if (status === '401') expect(response.headers, name).toHaveProperty('WWW-Authenticate');
        if (name.includes(' /v1/') && (status === '429' || status === '503')) expect(response.headers, name).toHaveProperty('Retry-After');
      }
      const success = Object.entries(op.responses).find(([status]) => status.startsWith('2'));
      const media = Object.values(success?.[1].content ?? {})[0];
      if (media) expect(media.example ?? media.examples, `${name}: a 2xx example`).toBeDefined();
      for (const body of Object.values(op.requestBody?.content ?? {}))
        expect(body.example ?? body.examples, `${name}: a body example`).toBeDefined();
      if (name.includes(' /v1/') && !PUBLIC_V1.has(name)) expect(op.security, name).not.toEqual([]);
      else expect(op.security, name).toEqual([]);
    }
  });
});
