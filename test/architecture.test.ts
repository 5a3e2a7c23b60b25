import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// ARCHITECTURE.md in code: the server's wings, lowest first. A file may import its own wing or a lower one.
const SRC = fileURLToPath(new URL('../packages/server/src/', import.meta.url));
const TOP = ['app.ts', 'container.ts', 'server.ts', 'cli.ts', 'index.ts', 'cli', 'gateway'];
const WINGS = [
  'foundation', // config, domain, errors, logger, metrics, pagination, text, input bounds: files at the root
  'store',
  'callers',
  'http',
  'audit',
  'events',
  'users',
  'keys',
  'usage',
  'limits',
  'verification',
  'leaks',
  'observability',
  'top', // the composition root, the HTTP app, the CLI, the gateway
] as const;
type Wing = (typeof WINGS)[number];

function wingOf(file: string): Wing {
  const [first, second] = relative(SRC, file).split('/');
  if (first === undefined) throw new Error(`not in src: ${file}`);
  if (TOP.includes(first)) return 'top';
  if (second === undefined) return 'foundation';
  if (!(WINGS as readonly string[]).includes(first)) throw new Error(`${first}/ is no wing: add it to ARCHITECTURE.md and this list`);
  return first as Wing;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** Every relative import of a file (values, types, re-exports and dynamic imports), resolved to a `.ts` path. */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => resolve(dirname(file), name).replace(/\.js$/, '.ts'));
}

const files = sources(SRC);
const graph = new Map(files.map((file) => [file, importsOf(file)]));

describe('server architecture (ARCHITECTURE.md)', () => {
  it('every file belongs to a wing', () => {
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) expect(WINGS).toContain(wingOf(file));
  });

  it('imports go to the same wing or a lower one', () => {
    const upward: string[] = [];
    for (const [file, targets] of graph) {
      for (const target of targets) {
        if (WINGS.indexOf(wingOf(target)) > WINGS.indexOf(wingOf(file))) {
          upward.push(`${relative(SRC, file)} (${wingOf(file)}) → ${relative(SRC, target)} (${wingOf(target)})`);
        }
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no import cycle, type-only imports included', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const path: string[] = [];
    const visit = (file: string): void => {
      state.set(file, 'open');
      path.push(file);
      for (const target of graph.get(file) ?? []) {
        if (state.get(target) === 'open') {
          cycles.push([...path.slice(path.indexOf(target)), target].map((f) => relative(SRC, f)).join(' → '));
        } else if (!state.has(target)) visit(target);
      }
      path.pop();
      state.set(file, 'done');
    };
    for (const file of files) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });

  it('sees the edges between wings (the checks above are not vacuous)', () => {
    const keys = join(SRC, 'keys/service.ts');
    const audit = join(SRC, 'audit/audit.ts');
    expect(graph.get(keys)).toContain(audit);
    expect(WINGS.indexOf(wingOf(audit))).toBeLessThan(WINGS.indexOf(wingOf(keys)));
  });
});
