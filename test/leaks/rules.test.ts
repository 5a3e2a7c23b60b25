import { readFileSync } from 'node:fs';
import { findKeys, generateKey } from '@keyward/sdk';
import { describe, expect, it } from 'vitest';

// The gitleaks and secretlint rules shipped in docs/rules/ (and shown in docs/secret-scanning.md): they match
// generated keys, and not look-alikes. Regexes see the shape only, never the checksum: the last test says so.

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const GITLEAKS = read('docs/rules/gitleaks.toml');
const SECRETLINT = read('docs/rules/secretlintrc.json');
const GUIDE = read('docs/secret-scanning.md');

/** gitleaks' regex (Go RE2 syntax; what it uses here reads the same in JavaScript), its keywords and entropy floor. */
const gitleaksRule = (() => {
  const regex = /^regex = '''(.+)'''$/m.exec(GITLEAKS)?.[1];
  const keywords = /^keywords = (\[.*\])$/m.exec(GITLEAKS)?.[1];
  const entropy = /^entropy = ([\d.]+)$/m.exec(GITLEAKS)?.[1];
  if (!regex || !keywords || !entropy) throw new Error('docs/rules/gitleaks.toml has no regex, keywords or entropy');
  return { regex: new RegExp(regex, 'g'), keywords: JSON.parse(keywords) as string[], entropy: Number(entropy) };
})();

/** secretlint's pattern, a RegExp-like string (`/…/flags`). */
const secretlintPattern = (() => {
  const config = JSON.parse(SECRETLINT) as { rules: { options: { patterns: { pattern: string }[] } }[] };
  const pattern = config.rules[0]?.options.patterns[0]?.pattern ?? '';
  const [, source, flags] = /^\/(.+)\/([a-z]*)$/.exec(pattern) ?? [];
  if (!source) throw new Error('docs/rules/secretlintrc.json has no pattern');
  return new RegExp(source, flags?.includes('g') ? flags : `${flags}g`);
})();

const RULES = { gitleaks: gitleaksRule.regex, secretlint: secretlintPattern };

/** Every match of a rule in `text` (gitleaks reports its secret group, secretlint the whole match). */
const matches = (rule: RegExp, text: string) => [...text.matchAll(rule)].map((m) => m[1] ?? m[0]);

/** Shannon entropy in bits per character, as gitleaks computes it on the secret. */
function entropy(text: string): number {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  return [...counts.values()].reduce((sum, n) => sum - (n / text.length) * Math.log2(n / text.length), 0);
}

const broken = (key: string) => `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
const KEYS = Array.from({ length: 200 }, () => generateKey());

describe('the secret-scanning rules in docs/rules/', () => {
  it('are the ones docs/secret-scanning.md shows', () => {
    const block = (lang: string) => new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(GUIDE)?.[1];
    expect(block('toml')).toBe(GITLEAKS);
    expect(block('json')).toBe(SECRETLINT);
  });

  it.each(Object.entries(RULES))('%s matches each of 200 generated keys, wherever it sits', (_name, rule) => {
    for (const key of KEYS) {
      for (const text of [
        key,
        `API_KEY=${key}`,
        `const k = "${key}";`,
        `Authorization: Bearer ${key}\n`,
        `key: '${key}',`,
        `?key=${key}&x=1`,
      ]) {
        expect(matches(rule, text), text).toEqual([key]);
      }
    }
    expect(matches(rule, KEYS.slice(0, 10).join('\n'))).toEqual(KEYS.slice(0, 10));
  });

  it.each(Object.entries(RULES))('%s matches no look-alike: another prefix shape, another length, other vendors’ tokens', (_name, rule) => {
    const key = generateKey();
    const body = key.slice(3);
    const lookAlikes = [
      `kw_${body.slice(1)}`, // 48 characters
      `${key}x`, // 50
      `KW_${body}`,
      `kw-${body}`,
      `kw__${body.slice(1)}`,
      `xkw_${body}`, // a longer prefix: not a `kw` key
      `my_kw_${body}`,
      `kw_${body.slice(0, 20)}-${body.slice(21)}`,
      'ghp_1234567890abcdefghijklmnopqrstuvwxyz12', // GitHub
      'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab',
      'sk_live_51H8cJ2KZvKYlo2C0aIiXfl3Xm1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6abcdefghij', // Stripe
      'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx', // Slack
      'AKIAIOSFODNN7EXAMPLE', // AWS
      'sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOp', // OpenAI
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', // a SHA-256
      '0197a4d2-6c1e-7b3a-9f4e-2d8c5b1a7e90',
    ];
    for (const text of lookAlikes) expect(matches(rule, ` ${text} `), text).toEqual([]);
  });

  it('gives gitleaks a keyword every key holds and an entropy floor real keys clear and look-alikes do not', () => {
    for (const key of KEYS) {
      expect(gitleaksRule.keywords.some((keyword) => key.includes(keyword))).toBe(true);
      expect(entropy(key)).toBeGreaterThan(gitleaksRule.entropy);
    }
    expect(entropy(`kw_${'a'.repeat(49)}`)).toBeLessThan(gitleaksRule.entropy);
    expect(entropy(`kw_${'ab'.repeat(24)}c`)).toBeLessThan(gitleaksRule.entropy);
  });

  it('matches keys of your own prefixes once they are listed, as the guide says', () => {
    const listed = /```text\n(.+)\n```/.exec(GUIDE.slice(GUIDE.indexOf('## Your own prefixes')))?.[1] ?? '';
    const rule = new RegExp(listed, 'g');
    for (const prefix of ['kw', 'sk_live', 'sk_test']) {
      const key = generateKey(prefix);
      expect(matches(rule, `TOKEN=${key}\n`), prefix).toEqual([key]);
    }
    expect(matches(rule, ` ${generateKey('pk_live')} `)).toEqual([]);
  });

  it('cannot check the checksum: a broken key matches the rules, and only keyward scan (findKeys) refuses it', () => {
    const key = generateKey();
    for (const rule of Object.values(RULES)) expect(matches(rule, broken(key))).toEqual([broken(key)]);
    expect(findKeys(broken(key))).toEqual([]);
    expect(findKeys(key)).toHaveLength(1);
  });
});
