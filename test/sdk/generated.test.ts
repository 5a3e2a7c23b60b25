import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as server from '../../packages/server/src/index.js';
import { OPENAPI_JSON_PATH, OPENAPI_TYPES_PATH, renderSdkFiles, serverDocument } from '../../scripts/gen-openapi.js';

// The SDK's types are generated from the server's OpenAPI document and committed. If a route changes and
// nobody regenerates, this fails: run `npm run gen:sdk`.
describe('SDK generated OpenAPI types', () => {
  it('match what the current server produces (run `npm run gen:sdk` when this fails)', async () => {
    const { json, types } = await renderSdkFiles(await serverDocument(server));
    const stale = [
      readFileSync(OPENAPI_JSON_PATH, 'utf8') === json ? null : 'packages/sdk/openapi.json',
      readFileSync(OPENAPI_TYPES_PATH, 'utf8') === types ? null : 'packages/sdk/src/generated/openapi.ts',
    ].filter((f) => f !== null);
    expect(stale, 'stale generated files: run `npm run gen:sdk`').toEqual([]);
  });
});
