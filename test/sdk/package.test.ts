import { type ChildProcess, type ExecFileOptions, execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { generateKey, hashApiKey, isWellFormed, parseKey, verifyApiKeyHash } from '@keyward/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, call, cliEnv, freePort, REPO } from '../helpers/cli.js';

const run = promisify(execFile);

describe('@keyward/sdk as a package', () => {
  beforeAll(async () => {
    await buildCli(); // builds packages/sdk too
  });

  it('resolves its entry point and framework subpaths from the built files', async () => {
    const script = `
      const entries = await Promise.all(['@keyward/sdk', '@keyward/sdk/fastify', '@keyward/sdk/express', '@keyward/sdk/hono'].map((m) => import(m)));
      console.log(JSON.stringify(entries.map((e) => Object.keys(e).sort())));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO });
    const [main, fastify, express, hono] = JSON.parse(stdout) as string[][];
    expect(main).toEqual(
      expect.arrayContaining([
        'hashApiKey',
        'verifyApiKeyHash',
        'parseKey',
        'isWellFormed',
        'KeywardClient',
        'KeywardError',
        'createKeywardAuth',
      ]),
    );
    expect(fastify).toContain('keywardFastify');
    expect(express).toContain('keywardExpress');
    expect(hono).toContain('keywardHono');
  });
});

describe('owning records by key hash (the README pattern)', () => {
  it('lists "my sessions" by the hash of the presented key, never storing the key', () => {
    const sessions: Array<{ id: string; ownerKeyHash: string }> = [];
    const mine = generateKey('kw');
    const theirs = generateKey('kw');
    for (const [id, key] of [
      ['s1', mine],
      ['s2', theirs],
      ['s3', mine],
    ] as const) {
      if (isWellFormed(key)) sessions.push({ id, ownerKeyHash: hashApiKey(key) });
    }
    const myHash = hashApiKey(mine);
    expect(sessions.filter((s) => s.ownerKeyHash === myHash).map((s) => s.id)).toEqual(['s1', 's3']);
    expect(JSON.stringify(sessions)).not.toContain(parseKey(mine)?.secret);
    expect(sessions.every((s) => verifyApiKeyHash(mine, s.ownerKeyHash) === (s.ownerKeyHash === myHash))).toBe(true);
  });
});

// What a stranger gets: both packages packed (`npm pack`, so `prepack` builds them) from a clean copy of the
// repository (no dist, no build info), unpacked into fresh projects as npm would install them. The projects
// find third-party modules through links into this repository's node_modules (only the declared
// dependencies are linked), so nothing is downloaded; a separate check reads every import the tarballs make.
describe('the packed @keyward/sdk and keyward, installed in fresh projects', () => {
  let work: string;
  let sdkFiles: string[];
  let serverFiles: string[];
  let keyward: ChildProcess | undefined;
  let keywardUrl: string;
  let keys: { verify: string; allowed: string; allowedId: string; forbidden: string };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'keyward-pack-'));
    const clone = join(work, 'clone');
    const packs = join(work, 'packs');
    makeCleanCopy(clone);
    mkdirSync(packs);
    // One after the other: the server's build builds the SDK it references when that is not built yet.
    await runExplained('npm', ['pack', '--pack-destination', packs], { cwd: join(clone, 'packages/sdk'), env: npmEnv() });
    await runExplained('npm', ['pack', '--pack-destination', packs], { cwd: join(clone, 'packages/server'), env: npmEnv() });
    const sdkTarball = join(packs, 'keyward-sdk-0.1.0.tgz');
    const serverTarball = join(packs, 'keyward-0.1.0.tgz');
    sdkFiles = await tarballFiles(sdkTarball);
    serverFiles = await tarballFiles(serverTarball);

    for (const format of ['esm', 'cjs'] as const) {
      const project = join(work, format);
      await install(project, [sdkTarball], ['express', '@types/express', '@types/node', 'typescript']);
      writeConsumer(project, format);
    }
    const server = join(work, 'server');
    await install(server, [sdkTarball, serverTarball], []);

    // `keyward serve` from the installed tarball is the real server the Express apps call.
    const port = await freePort();
    const adminKey = generateKey('kw');
    keyward = spawn(process.execPath, [join(server, 'node_modules/.bin/keyward'), 'serve'], {
      cwd: server,
      env: cliEnv({
        DATABASE_URL: `sqlite:${join(server, 'keyward.db')}`,
        INITIAL_ADMIN_KEY: adminKey,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    keywardUrl = `http://127.0.0.1:${port}`;
    await waitUntilServing(keywardUrl, keyward);
    const create = async (name: string, scopes: string[]) => {
      const answer = await call(keywardUrl, 'POST', '/v1/api-keys', { key: adminKey, body: { name, scopes } });
      expect(answer.status, answer.text).toBe(201);
      return { key: String(answer.json.key), id: String(answer.json.id) };
    };
    const allowed = await create('allowed', ['companies:read']);
    keys = {
      verify: (await create('middleware', ['keyward:verify'])).key,
      allowed: allowed.key,
      allowedId: allowed.id,
      forbidden: (await create('forbidden', ['billing:read'])).key,
    };
  }, 300_000);

  afterAll(async () => {
    if (keyward && keyward.exitCode === null && keyward.signalCode === null) {
      const exited = new Promise((resolve) => keyward?.once('exit', resolve));
      keyward.kill('SIGTERM');
      await exited;
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('ships the ESM build, the CommonJS build with its own package.json, and the sources the maps point at', () => {
    for (const entry of ['index', 'fastify', 'express', 'hono']) {
      expect(sdkFiles).toEqual(
        expect.arrayContaining([`dist/${entry}.js`, `dist/${entry}.d.ts`, `dist/cjs/${entry}.js`, `dist/cjs/${entry}.d.ts`]),
      );
    }
    expect(sdkFiles).toEqual(expect.arrayContaining(['package.json', 'README.md', 'openapi.json', 'dist/cjs/package.json']));
    expect(serverFiles).toEqual(expect.arrayContaining(['package.json', 'dist/cli.js', 'dist/index.js', 'dist/index.d.ts']));
    for (const files of [sdkFiles, serverFiles]) {
      expect(files.filter((file) => /\.test\.|tsbuildinfo/.test(file))).toEqual([]);
      const installedAt = join(work, files === sdkFiles ? 'esm/node_modules/@keyward/sdk' : 'server/node_modules/keyward');
      expect(mapSourcesMissing(files, installedAt)).toEqual([]);
    }
  });

  it('declares every package its built code imports (the server imports @keyward/sdk)', () => {
    expect(undeclaredImports(join(work, 'esm/node_modules/@keyward/sdk'), sdkFiles)).toEqual([]);
    expect(undeclaredImports(join(work, 'server/node_modules/keyward'), serverFiles)).toEqual([]);
  });

  it('resolves import to the ESM build and require to the CommonJS build, with the same exports', async () => {
    const esm = await run(process.execPath, ['--input-type=module', '-e', ESM_PROBE], { cwd: join(work, 'esm') });
    const cjs = await run(process.execPath, ['-e', CJS_PROBE], { cwd: join(work, 'cjs') });
    const [fromImport, fromRequire] = [esm.stdout, cjs.stdout].map((out) => JSON.parse(out) as { files: string[]; names: string[][] });
    expect(fromImport?.files.map(relativeToSdk)).toEqual(['dist/index.js', 'dist/fastify.js', 'dist/express.js', 'dist/hono.js']);
    expect(fromRequire?.files.map(relativeToSdk)).toEqual([
      'dist/cjs/index.js',
      'dist/cjs/fastify.js',
      'dist/cjs/express.js',
      'dist/cjs/hono.js',
    ]);
    expect(fromImport?.names[2]).toContain('keywardExpress');
    expect(fromRequire?.names).toEqual(fromImport?.names);
  });

  it('needs no framework at run time in either build: the adapters import only types from Fastify, Express and Hono', () => {
    const built = sdkFiles.filter((file) => /^dist\/(cjs\/)?[a-z-]+\.js$/.test(file));
    expect(built.length).toBeGreaterThanOrEqual(10);
    for (const file of built) {
      const code = readFileSync(join(work, 'esm/node_modules/@keyward/sdk', file), 'utf8');
      expect(code, file).not.toMatch(/from ['"](fastify|express|hono)['"]|require\(['"](fastify|express|hono)['"]\)/);
    }
  });

  it.each(['esm', 'cjs'] as const)(
    'type-checks a %s TypeScript project and protects its Express route with the real server',
    async (format) => {
      const project = join(work, format);
      const tsc = join(project, 'node_modules/typescript/bin/tsc');
      const configs = format === 'cjs' ? ['tsconfig.json', 'tsconfig.node16.json'] : ['tsconfig.json'];
      await Promise.all(configs.map((config) => runExplained(process.execPath, [tsc, '-p', config], { cwd: project })));

      const { stdout } = await runExplained(process.execPath, ['out/app.js'], {
        cwd: project,
        env: cliEnv({
          KEYWARD_URL: keywardUrl,
          KEYWARD_VERIFY_KEY: keys.verify,
          ALLOWED_KEY: keys.allowed,
          FORBIDDEN_KEY: keys.forbidden,
        }),
      });
      const result = JSON.parse(stdout) as Record<string, { status: number; body: Record<string, unknown> }>;
      expect(result.anonymous).toMatchObject({ status: 401, body: { code: 'AUTH_REQUIRED' } });
      expect(result.allowed).toEqual({ status: 200, body: { caller: keys.allowedId } });
      expect(result.forbidden).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    },
    120_000,
  );

  it('runs the keyward bin from the installed tarball: --help, and serve (the server the routes above called)', async () => {
    const { stdout } = await run(process.execPath, [join(work, 'server/node_modules/.bin/keyward'), '--help'], {
      cwd: join(work, 'server'),
      env: cliEnv({}),
    });
    expect(stdout).toMatch(/Usage: keyward/);
    expect(stdout).toContain('serve');
    expect((await call(keywardUrl, 'GET', '/healthz')).status).toBe(200);
  }, 60_000);
});

/** Runs a command; a failure carries its output (tsc prints its diagnostics on stdout). */
async function runExplained(command: string, args: string[], options: ExecFileOptions): Promise<{ stdout: string }> {
  try {
    const { stdout } = await run(command, args, { ...options, encoding: 'utf8' });
    return { stdout: String(stdout) };
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed:\n${stdout}\n${stderr}`);
  }
}

// Where each entry point resolves from an ESM and a CommonJS project, and the names it exports there.
const SUBPATHS = JSON.stringify(['@keyward/sdk', '@keyward/sdk/fastify', '@keyward/sdk/express', '@keyward/sdk/hono']);
const ESM_PROBE = `const subpaths = ${SUBPATHS};
const names = await Promise.all(subpaths.map(async (s) => Object.keys(await import(s)).sort()));
console.log(JSON.stringify({ files: subpaths.map((s) => import.meta.resolve(s)), names }));`;
const CJS_PROBE = `const subpaths = ${SUBPATHS};
const names = subpaths.map((s) => Object.keys(require(s)).sort());
console.log(JSON.stringify({ files: subpaths.map((s) => require.resolve(s)), names }));`;

function relativeToSdk(resolved: string): string {
  const path = resolved.startsWith('file:') ? fileURLToPath(resolved) : resolved;
  return path.slice(path.indexOf('@keyward/sdk/') + '@keyward/sdk/'.length);
}

/** Only what a clone has: sources and configs, no dist, build info, tarball or node_modules. */
function makeCleanCopy(clone: string): void {
  const skip = /(^|\/)(dist|node_modules)$|\.tsbuildinfo$|\.tgz$/;
  mkdirSync(clone);
  copyFileSync(join(REPO, 'tsconfig.base.json'), join(clone, 'tsconfig.base.json'));
  for (const name of ['sdk', 'server']) {
    cpSync(join(REPO, 'packages', name), join(clone, 'packages', name), { recursive: true, filter: (source) => !skip.test(source) });
  }
  // The repository's modules, except the workspace links, which point at the copies instead.
  const modules = join(clone, 'node_modules');
  mkdirSync(join(modules, '@keyward'), { recursive: true });
  for (const entry of readdirSync(join(REPO, 'node_modules'))) {
    if (entry !== '@keyward' && entry !== 'keyward') symlinkSync(join(REPO, 'node_modules', entry), join(modules, entry));
  }
  symlinkSync(join(clone, 'packages/sdk'), join(modules, '@keyward/sdk'));
}

/** npm without the test run's npm_config_* (an outer `npm test` sets some) and without the registry. */
function npmEnv(): NodeJS.ProcessEnv {
  return cliEnv({ HOME: process.env.HOME ?? tmpdir(), npm_config_offline: 'true', npm_config_update_notifier: 'false' });
}

async function tarballFiles(tarball: string): Promise<string[]> {
  const { stdout } = await run('tar', ['-tzf', tarball]);
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('package/') && !line.endsWith('/'))
    .map((line) => line.slice('package/'.length))
    .sort();
}

/**
 * Installs as npm does: each tarball unpacked into node_modules/<its name>, its `bin` linked into
 * node_modules/.bin, and its `dependencies` (plus `extra`) linked from the repository's node_modules.
 */
async function install(project: string, tarballs: string[], extra: string[]): Promise<void> {
  const modules = join(project, 'node_modules');
  mkdirSync(join(modules, '.bin'), { recursive: true });
  const dependencies = new Set(extra);
  const installed = new Set<string>();
  for (const tarball of tarballs) {
    const staging = mkdtempSync(join(project, '.unpack-'));
    await run('tar', ['-xzf', tarball, '-C', staging, '--strip-components=1']);
    const manifest = JSON.parse(readFileSync(join(staging, 'package.json'), 'utf8')) as {
      name: string;
      bin?: Record<string, string>;
      dependencies?: Record<string, string>;
    };
    mkdirSync(dirname(join(modules, manifest.name)), { recursive: true });
    renameSync(staging, join(modules, manifest.name));
    installed.add(manifest.name);
    for (const [command, target] of Object.entries(manifest.bin ?? {})) {
      symlinkSync(join('..', manifest.name, target), join(modules, '.bin', command));
    }
    for (const name of Object.keys(manifest.dependencies ?? {})) dependencies.add(name);
  }
  for (const name of dependencies) {
    if (installed.has(name)) continue;
    mkdirSync(dirname(join(modules, name)), { recursive: true });
    symlinkSync(join(REPO, 'node_modules', name), join(modules, name));
  }
}

const IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|\brequire\(\s*|\.resolve\(\s*)['"]([^'"]+)['"]/g;

/** Packages the shipped JavaScript imports (or resolves) that its package.json does not list in `dependencies`. */
function undeclaredImports(installedAt: string, files: string[]): string[] {
  const manifest = JSON.parse(readFileSync(join(installedAt, 'package.json'), 'utf8')) as { name: string; dependencies?: object };
  const declared = new Set([manifest.name, ...Object.keys(manifest.dependencies ?? {})]);
  const undeclared = new Set<string>();
  for (const file of files.filter((name) => name.endsWith('.js'))) {
    for (const [, specifier = ''] of readFileSync(join(installedAt, file), 'utf8').matchAll(IMPORT)) {
      if (specifier.startsWith('.') || specifier.startsWith('node:') || isBuiltin(specifier)) continue;
      const name = specifier
        .split('/')
        .slice(0, specifier.startsWith('@') ? 2 : 1)
        .join('/');
      if (!declared.has(name)) undeclared.add(`${name} (${file})`);
    }
  }
  return [...undeclared];
}

/** Source map entries (resolved inside the installed package) that point at a file the package does not ship. */
function mapSourcesMissing(files: string[], installedAt: string): string[] {
  const shipped = new Set(files);
  const missing: string[] = [];
  for (const file of files.filter((name) => name.endsWith('.map'))) {
    const map = JSON.parse(readFileSync(join(installedAt, file), 'utf8')) as { sources: string[]; sourceRoot?: string };
    for (const source of map.sources) {
      const target = posix.normalize(posix.join(posix.dirname(file), map.sourceRoot ?? '', source));
      if (!shipped.has(target)) missing.push(`${file} → ${target}`);
    }
  }
  return missing;
}

// One source for both projects. It type-checks against the package's types: the wrong uses must be errors,
// so types that resolve to `any` fail (lib checks are skipped, as `tsc --init` does, for speed). Compiled, it
// protects a route and calls it as three callers.
const CONSUMER_APP = `import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { isWellFormed, KeywardClient, KeywardError } from '@keyward/sdk';
import { type KeywardExpressGuard, keywardExpress } from '@keyward/sdk/express';
import express from 'express';

export function wrongUses(client: KeywardClient): void {
  // @ts-expect-error baseUrl is a string
  keywardExpress({ baseUrl: 8080, apiKey: 'kw_x' });
  // @ts-expect-error no such path (typed through openapi-fetch, a dependency's own types)
  void client.raw.GET('/v1/no-such-path');
}

async function main(): Promise<void> {
  const keyward: KeywardExpressGuard = keywardExpress({
    baseUrl: String(process.env.KEYWARD_URL),
    apiKey: String(process.env.KEYWARD_VERIFY_KEY),
  });
  const app = express();
  app.use(keyward.authenticate());
  app.get('/v1/companies', keyward({ scopes: ['companies:read'] }), (req, res) => {
    const caller: string | null = req.keyward?.keyId ?? null;
    res.json({ caller });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = 'http://127.0.0.1:' + (server.address() as AddressInfo).port + '/v1/companies';
  const ask = async (key?: string) => {
    const response = await fetch(url, { headers: key === undefined ? {} : { authorization: 'Bearer ' + key } });
    return { status: response.status, body: (await response.json()) as unknown };
  };
  const result = {
    anonymous: await ask(),
    allowed: await ask(process.env.ALLOWED_KEY),
    forbidden: await ask(process.env.FORBIDDEN_KEY),
  };
  await keyward.close();
  server.close();
  if (!isWellFormed(String(process.env.ALLOWED_KEY)) || !(new KeywardError({ type: 'about:blank', title: 'x', status: 500, code: 'X' }) instanceof Error)) {
    throw new Error('the helpers do not work');
  }
  process.stdout.write(JSON.stringify(result) + '\\n');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
`;

function writeConsumer(project: string, format: 'esm' | 'cjs'): void {
  mkdirSync(join(project, 'src'));
  writeFileSync(join(project, 'src/app.ts'), CONSUMER_APP);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: `${format}-app`, private: true, type: format === 'esm' ? 'module' : 'commonjs' }),
  );
  const common = { target: 'ES2022', strict: true, rootDir: 'src', outDir: 'out', types: ['node'], skipLibCheck: true };
  const tsconfig = (options: Record<string, unknown>) => JSON.stringify({ compilerOptions: { ...common, ...options }, include: ['src'] });
  if (format === 'esm') {
    writeFileSync(join(project, 'tsconfig.json'), tsconfig({ module: 'NodeNext', moduleResolution: 'NodeNext' }));
  } else {
    // TypeScript's defaults for `module: commonjs` (node10 resolution: no `exports`), and node16 in a CommonJS package.
    writeFileSync(join(project, 'tsconfig.json'), tsconfig({ module: 'CommonJS', moduleResolution: 'Node10', esModuleInterop: true }));
    writeFileSync(join(project, 'tsconfig.node16.json'), tsconfig({ module: 'Node16', moduleResolution: 'Node16', noEmit: true }));
  }
}

async function waitUntilServing(url: string, child: ChildProcess): Promise<void> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const deadline = Date.now() + 45_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // Not listening yet.
    }
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`keyward serve did not start (exit ${child.exitCode}):\n${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
