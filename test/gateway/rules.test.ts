import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseUpstream } from '../../packages/server/src/gateway/app.js';
import { loadRulesFile, parseRules, RulesError, requestTarget, ruleFor } from '../../packages/server/src/gateway/rules.js';

const segments = (path: string) => requestTarget(path)?.segments ?? [];

/** Which rule (by its scopes' first entry, `public`, or `default`) decides METHOD PATH. */
function decide(rules: unknown, method: string, path: string): string {
  const compiled = parseRules(rules);
  const access = ruleFor(compiled, method, segments(path));
  if (access === compiled.default) return 'default';
  return access.public ? 'public' : (access.scopes[0] ?? 'key');
}

describe('gateway rules: matching', () => {
  const rules = {
    routes: [
      { method: 'GET', path: '/v1/companies/*', scopes: ['one'] },
      { method: ['post', 'PUT'], path: '/v1/companies/**', scopes: ['rest'] },
      { path: '/files/*.json', scopes: ['json'] },
      { path: '/a/**/z', scopes: ['az'] },
      { path: '/public/**', public: true },
      { path: '/', scopes: ['root'] },
    ],
  };

  it('`*` is exactly one segment, `**` any number (none included), first match wins', () => {
    expect(decide(rules, 'GET', '/v1/companies/42')).toBe('one');
    expect(decide(rules, 'GET', '/v1/companies')).toBe('default');
    expect(decide(rules, 'GET', '/v1/companies/42/notes')).toBe('default');
    expect(decide(rules, 'POST', '/v1/companies')).toBe('rest');
    expect(decide(rules, 'PUT', '/v1/companies/42/notes/7')).toBe('rest');
    expect(decide(rules, 'DELETE', '/v1/companies/42')).toBe('default');
    expect(decide(rules, 'GET', '/files/report.json')).toBe('json');
    expect(decide(rules, 'GET', '/files/report.csv')).toBe('default');
    expect(decide(rules, 'GET', '/a/z')).toBe('az');
    expect(decide(rules, 'GET', '/a/b/c/z')).toBe('az');
    expect(decide(rules, 'GET', '/a/b/z/c')).toBe('default');
    expect(decide(rules, 'GET', '/public')).toBe('public');
    expect(decide(rules, 'GET', '/')).toBe('root');
  });

  it('a GET rule covers HEAD; paths match case-insensitively, with empty segments and trailing slashes ignored', () => {
    expect(decide(rules, 'HEAD', '/v1/companies/42')).toBe('one');
    expect(decide(rules, 'GET', '/V1/Companies/42')).toBe('one');
    expect(decide(rules, 'GET', '//v1//companies/42/')).toBe('one');
    expect(decide(rules, 'GET', '/v1/companies/%34%32')).toBe('one');
  });

  it('many `**` stay fast (no exponential backtracking)', () => {
    const deep = `/${Array.from({ length: 2000 }, () => 'x').join('/')}/y`;
    expect(decide({ routes: [{ path: '/**/x/**/x/**/x/**/q', scopes: ['q'] }] }, 'GET', deep)).toBe('default');
  });

  it('without a default, routes that match nothing need a key and no scopes', () => {
    const compiled = parseRules({});
    expect(ruleFor(compiled, 'GET', segments('/anything'))).toEqual({ public: false, scopes: [], cost: 1 });
    expect(parseRules({ default: { public: true } }).default.public).toBe(true);
  });
});

describe('gateway rules: request paths', () => {
  it('resolves dot segments as an upstream would, and decodes segments for matching', () => {
    expect(requestTarget('/a/./b/../c?x=/..')).toEqual({ path: '/a/c', segments: ['a', 'c'] });
    expect(requestTarget('/a/%2e%2E/c')).toEqual({ path: '/c', segments: ['c'] });
    expect(requestTarget('/a\\..\\c')).toEqual({ path: '/c', segments: ['c'] });
    expect(requestTarget('/%61dmin/x')).toEqual({ path: '/%61dmin/x', segments: ['admin', 'x'] });
  });

  it('refuses encoded slashes and backslashes in any case, so a stricter rule cannot be escaped', () => {
    for (const url of ['/admin%2Fusers', '/admin%2fusers', '/admin%5Cusers', '/admin%5cusers', '/g%2Fp/x', '/a/b%2F']) {
      expect(requestTarget(url), url).toBeNull();
    }
    // Only the path is checked: an encoded slash in the query string is the upstream's business.
    expect(requestTarget('/admin?next=%2Fusers')).toEqual({ path: '/admin', segments: ['admin'] });
    // Other escapes still decode for matching.
    expect(requestTarget('/a%20b')).toEqual({ path: '/a%20b', segments: ['a b'] });
  });

  it('refuses traversal hidden behind encoded slashes, control characters, bad escapes and non-paths', () => {
    for (const url of ['/a/..%2Fb', '/a/%2e%2e%5Cb', '/a/.%2f', '/a%00', '/a/%zz', '*', 'http://x/y']) {
      expect(requestTarget(url), url).toBeNull();
    }
  });
});

describe('gateway rules: validation', () => {
  const error = (value: unknown) => {
    try {
      parseRules(value);
    } catch (e) {
      if (e instanceof RulesError) return e.message;
      throw e;
    }
    return null;
  };

  it('names the first bad field, one clear message', () => {
    expect(error({ routes: [{ path: '/a', scope: ['x'] }] })).toBe('routes[0].scope: is not a known field');
    expect(error({ routes: [{ path: 'a' }] })).toMatch(/^routes\[0\]\.path: must match pattern/);
    expect(error({ routes: [{ path: '/a', cost: -1 }] })).toMatch(/^routes\[0\]\.cost: /);
    expect(error({ routes: [{ path: '/a', scopes: ['has space'] }] })).toMatch(/^routes\[0\]\.scopes\[0\]: /);
    expect(error({ routes: [{ path: '/a', method: 'GE T' }] })).toMatch(/^routes\[0\]\.method: /);
    expect(error({ routes: {} })).toMatch(/^routes: /);
    expect(error({ default: { path: '/x' } })).toBe('default.path: is not a known field');
    expect(error({ extra: 1 })).toBe('extra: is not a known field');
    expect(error([])).toMatch(/^\(top level\): /);
    expect(error({ routes: [{ path: '/a/x**' }] })).toMatch(/^routes\[0\]\.path: `\*\*` must be a whole segment/);
    expect(error({ routes: [{ path: '/a', public: true, scopes: ['x'] }] })).toBe('routes[0]: a public route cannot require scopes');
    expect(error({ routes: [{ path: '/a' }], default: { public: false, scopes: [], cost: 0 } })).toBeNull();
  });

  const dir = mkdtempSync(join(tmpdir(), 'keyward-rules-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads a file, and names the file in errors (missing, not JSON, invalid)', () => {
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ routes: [{ path: '/x/**', public: true }] }));
    expect(loadRulesFile(good).routes).toHaveLength(1);
    const notJson = join(dir, 'bad.json');
    writeFileSync(notJson, '{"routes": [');
    expect(() => loadRulesFile(notJson)).toThrow(new RegExp(`^${notJson}: is not valid JSON`));
    const invalid = join(dir, 'invalid.json');
    writeFileSync(invalid, '{"routes": [{"path": "nope"}]}');
    expect(() => loadRulesFile(invalid)).toThrow(`${invalid}: routes[0].path: must match pattern`);
    expect(() => loadRulesFile(join(dir, 'missing.json'))).toThrow(/missing\.json: cannot be read \(ENOENT\)/);
  });
});

describe('gateway upstream URL', () => {
  it('accepts http(s) URLs, keeps a base path, and refuses anything else', () => {
    expect(parseUpstream('http://127.0.0.1:3000')).toBe('http://127.0.0.1:3000/');
    expect(parseUpstream('https://api.example.com/v2')).toBe('https://api.example.com/v2/');
    for (const bad of ['127.0.0.1:3000', 'ftp://x', 'http://u:p@x', 'http://x/?a=1', 'not a url']) {
      expect(() => parseUpstream(bad), bad).toThrow();
    }
  });

  it('never repeats a password in its error, whatever the shape of the URL', () => {
    for (const bad of ['ftp://u:s3cret@h', 'http//u:s3cret@h', 'gopher:/u:s3cret@h']) {
      expect(() => parseUpstream(bad)).toThrow(/URL/);
      expect(() => parseUpstream(bad)).not.toThrow(/s3cret/);
    }
  });
});
