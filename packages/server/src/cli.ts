#!/usr/bin/env node
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Command, Help, InvalidArgumentError } from 'commander';
import { mintDevToken } from './callers/jwt.js';
import type { Caller } from './callers/principal.js';
import { type Config, ConfigError, loadConfig, loadDotEnv, redactUrl } from './config.js';
import { createContainer } from './container.js';
import { INSTANT_RANGE, isBoundedInstant } from './domain.js';
import { parseUpstream } from './gateway/app.js';
import { type GatewayRules, loadRulesFile, RulesError } from './gateway/rules.js';
import { startGateway } from './gateway/start.js';
import { apiKeyView } from './http/schemas.js';
import type { ImportScheme } from './keys/import.js';
import { startServer } from './server.js';
import { migrateDown, migrateUpAt, migrationStatus } from './store/migrator.js';

const operator: Caller = { principal: { kind: 'system', name: 'cli' }, ip: null };

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function fail(message: string): never {
  process.stderr.write(`keyward: ${message}\n`);
  process.exit(1);
}

function config(): Config {
  loadDotEnv();
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) fail(`invalid configuration: ${error.message}`);
    throw error;
  }
}

/** Runs `work` against a migrated database, then closes it. */
async function withContainer<T>(work: (c: ReturnType<typeof createContainer>) => Promise<T>, migrate = true): Promise<T> {
  const container = createContainer(config());
  try {
    if (migrate) await migrateUpAt(container.db, container.config.databaseUrl);
    return await work(container);
  } finally {
    await container.close();
  }
}

function positiveInteger(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(Number.isSafeInteger(n) && n >= 1)) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function isoDate(value: string): string {
  if (!isBoundedInstant(Date.parse(value))) {
    throw new InvalidArgumentError(`expected an ISO 8601 date between ${INSTANT_RANGE}, e.g. 2027-01-01T00:00:00Z`);
  }
  return value;
}

const program = new Command()
  .name('keyward')
  .description('Keyward: self-hosted API key service. Configuration comes from the environment or ./.env (see README).')
  // Subcommands inherit this: every `--help` marks the options a command cannot run without.
  .configureHelp({
    optionDescription(option) {
      const text = Help.prototype.optionDescription.call(this, option);
      return option.mandatory ? `${text} (required)` : text;
    },
  })
  .showHelpAfterError();

program
  .command('serve')
  .description('Migrate the database, create the first admin key if none exists, and serve the HTTP API (PORT, HOST)')
  .action(async () => {
    const cfg = config();
    const server = await startServer(cfg);
    out(`Keyward listening on ${server.url}  (docs: ${server.url}/docs)`);
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      out(`${signal} received: flushing and shutting down`);
      await server.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });

const migrate = program.command('migrate').description('Apply, revert or list database migrations (DATABASE_URL)');
migrate
  .command('up')
  .description('Apply every pending migration')
  .action(async () => {
    const applied = await withContainer((c) => migrateUpAt(c.db, c.config.databaseUrl), false);
    out(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');
  });
migrate
  .command('down')
  .description('Revert the most recent migration')
  .action(async () => {
    const reverted = await withContainer((c) => migrateDown(c.db.db), false);
    out(reverted.length ? `reverted: ${reverted.join(', ')}` : 'nothing to revert');
  });
migrate
  .command('status')
  .description('List migrations and whether each is applied')
  .action(async () => {
    const list = await withContainer((c) => migrationStatus(c.db.db), false);
    for (const m of list) out(`${m.executedAt ? 'applied' : 'pending'}  ${m.name}${m.executedAt ? `  ${m.executedAt.toISOString()}` : ''}`);
  });

program
  .command('admin')
  .description('Manage admin keys')
  .command('create')
  .description('Create an admin key and print it once')
  .requiredOption('--name <name>', 'a name for the key')
  .option('--expires <iso>', 'expiry date (ISO 8601)', isoDate)
  .action(async (opts: { name: string; expires?: string }) => {
    const created = await withContainer((c) =>
      c.keys.create(operator, { name: opts.name, isAdmin: true, expiresAt: opts.expires ? Date.parse(opts.expires) : null }),
    );
    if (!created.ok) fail(`${created.code}${created.detail ? `: ${created.detail}` : ''}`);
    out(`Admin key "${created.value.record.name}" (id ${created.value.record.id}). Save it now: it will not be shown again.`);
    out(created.value.key);
  });

const keys = program.command('keys').description('List and revoke keys');
keys
  .command('list')
  .description(
    'List keys, newest first (never the key itself), one per line, tab-separated: id, prefix, status, ' +
      '"admin" or "-", name. A notice on stderr says when --limit cut the list short.',
  )
  .option('--include-inactive', 'include deactivated and revoked keys')
  .option('--user <user>', 'only this user’s keys: the Keyward user id or the external id')
  .option('--limit <n>', 'list at most this many keys', positiveInteger, 100)
  .action(async (opts: { includeInactive?: boolean; user?: string; limit: number }) => {
    const page = await withContainer(async (c) => {
      let userId: string | undefined;
      if (opts.user !== undefined) {
        const user = await c.users.find(operator, opts.user);
        if (!user.ok) return user;
        userId = user.value.id;
      }
      return c.keys.list(operator, {
        includeInactive: opts.includeInactive ?? false,
        limit: opts.limit,
        ...(userId === undefined ? {} : { userId }),
      });
    });
    if (!page.ok) fail(`${page.code}${page.detail ? `: ${page.detail}` : ''}`);
    for (const key of page.value.items) {
      const v = apiKeyView(key);
      out([v.id, v.key_prefix, v.status, v.is_admin ? 'admin' : '-', v.name].join('\t'));
    }
    if (page.value.nextCursor !== null) {
      process.stderr.write(`keyward: showing the first ${opts.limit} keys; there are more (raise --limit to see them)\n`);
    }
  });
keys
  .command('revoke')
  .description('Revoke a key permanently')
  .argument('<id>', 'key id')
  .action(async (id: string) => {
    const revoked = await withContainer((c) => c.keys.revoke(operator, id));
    if (!revoked.ok) fail(revoked.code);
    out(`revoked ${revoked.value.id} (${revoked.value.keyPrefix}…)`);
  });

program
  .command('import')
  .description(
    'Import existing keys from a JSON Lines file, one key per line: {"key": …} (plaintext: hashed on import), ' +
      '{"key_hash": sha256-hex, "key_prefix"?: display prefix, default "imported"} or {"key_hash": bcrypt, ' +
      '"lookup_prefix": "amos_1a2b3c4d"}; optional name, description, scopes, metadata, expires_at, is_admin, ' +
      'user_external_id (the user must exist already: `keyward users create`). Imported keys verify at once and are ' +
      'upgraded to SHA-256 on first use; re-running skips keys already present. Rejected lines are listed on stderr ' +
      'and make the exit code 1 (the other lines are still imported). A progress bar shows on a terminal.',
  )
  .argument('<file>', 'JSON Lines file')
  .requiredOption('--scheme <scheme>', 'plaintext | sha256 | bcrypt', (v) => {
    if (v !== 'plaintext' && v !== 'sha256' && v !== 'bcrypt') throw new InvalidArgumentError('expected plaintext, sha256 or bcrypt');
    return v;
  })
  .action(async (file: string, opts: { scheme: ImportScheme }) => {
    const bar = process.stderr.isTTY ? progressBar(await countLines(file)) : undefined;
    const outcome = await withContainer((c) =>
      c.importer.importRecords(
        operator,
        createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY }),
        opts.scheme,
        bar,
      ),
    );
    if (bar) process.stderr.write('\n');
    for (const e of outcome.errors.slice(0, 20)) process.stderr.write(`line ${e.line}: ${e.message}\n`);
    if (outcome.errors.length > 20) process.stderr.write(`… and ${outcome.errors.length - 20} more\n`);
    out(`imported ${outcome.imported}, skipped ${outcome.skipped} already present, ${outcome.errors.length} rejected`);
    if (outcome.errors.length > 0) process.exitCode = 1;
  });

async function countLines(file: string): Promise<number> {
  let n = 0;
  for await (const _ of createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY })) n += 1;
  return n;
}

// A one-line progress bar for stderr, used only when it is a terminal (in a log, `\r` redraws are noise); small
// enough not to need a library.
function progressBar(total: number): (done: number) => void {
  return (done) => {
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} lines`);
  };
}

const usersCommand = program
  .command('users')
  .description('Manage end users of the host product: they sign in with a JWT whose `sub` is their external id');
usersCommand
  .command('create')
  .description('Create a user and print its id (an unknown JWT sub is also created on first sign-in, with the default tier)')
  .requiredOption('--external-id <id>', "the user's id in your product: the `sub` claim of their JWT")
  .option('--email <email>', 'contact email')
  .option('--tier <tier>', 'a tier named in TIERS (default: DEFAULT_TIER, normally free)')
  .action(async (opts: { externalId: string; email?: string; tier?: string }) => {
    const created = await withContainer((c) =>
      c.users.create(operator, {
        externalId: opts.externalId,
        ...(opts.email === undefined ? {} : { email: opts.email }),
        ...(opts.tier === undefined ? {} : { tier: opts.tier }),
      }),
    );
    if (!created.ok) fail(`${created.code}${created.detail ? `: ${created.detail}` : ''}`);
    out(`created user ${created.value.id} (external id ${created.value.externalId}, tier ${created.value.tier})`);
  });
usersCommand
  .command('set-tier')
  .description("Change a user's tier; its key limit applies from their next key on (existing keys are kept)")
  .argument('<user>', 'the Keyward user id or the external id')
  .argument('<tier>', 'a tier named in TIERS (default tiers: free, pro, enterprise)')
  .action(async (ref: string, tier: string) => {
    const updated = await withContainer(async (c) => {
      const found = await c.users.find(operator, ref);
      return found.ok ? c.users.update(operator, found.value.id, { tier }) : found;
    });
    if (!updated.ok) fail(`${updated.code}${updated.detail ? `: ${updated.detail}` : ''}`);
    out(`user ${updated.value.id} (external id ${updated.value.externalId}) is now on the ${updated.value.tier} tier`);
  });

const DURATION_UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 };

function duration(value: string): number {
  const match = /^(\d+)\s*([smhd]?)$/.exec(value.trim());
  const seconds = match ? Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1) throw new InvalidArgumentError('expected a duration such as 90s, 15m, 1h or 7d');
  return seconds;
}

program
  .command('token')
  .description(
    'Print a development JWT for a user, signed HS256 with JWT_SECRET (and carrying JWT_ISSUER / JWT_AUDIENCE when set). ' +
      'Use it as `Authorization: Bearer <token>` on /v1/users/me routes. Creates nothing: an unknown user is provisioned on first use.',
  )
  .requiredOption('--user <external-id>', "the user's external id (the JWT `sub`), not the Keyward user id")
  .option('--ttl <duration>', 'lifetime of the token: 90s, 15m, 1h, 7d (default: 1h)', duration)
  .action(async (opts: { user: string; ttl?: number }) => {
    const cfg = config();
    if (cfg.jwtSecret === null) {
      fail('JWT_SECRET is not set; `keyward token` signs with it. Set JWT_SECRET (32+ characters) to the value the server uses.');
    }
    const token = await mintDevToken(
      { jwtSecret: cfg.jwtSecret, jwtIssuer: cfg.jwtIssuer, jwtAudience: cfg.jwtAudience },
      opts.user,
      opts.ttl ?? 3600,
    );
    out(token);
  });

// Checked in the action, not by a commander argument parser: commander's error would repeat the value as given,
// and an upstream URL may carry a password. It is refused here without being shown past its scheme.
function checkUpstream(value: string): void {
  try {
    parseUpstream(value);
  } catch (error) {
    fail(`option '--upstream <url>' is invalid: ${(error as Error).message.replaceAll(value, redactUrl(value))}`);
  }
}

function portOption(value: string): number {
  const port = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(port >= 0 && port <= 65535)) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return port;
}

program
  .command('gateway')
  .description(
    'Run a reverse proxy in front of any HTTP API: each request must present a key (Authorization: Bearer or X-API-Key), ' +
      'verified like POST /v1/keys/verify (state, route scopes, rate limit, quota); the key headers are removed and ' +
      'X-Keyward-Key-Id, X-Keyward-User-Id and X-Keyward-Scopes (comma-separated) are sent upstream instead (any the ' +
      'client sent are dropped). Refusals are problem+json: 401, 403, 429 (Retry-After), 502/504 when the upstream fails. ' +
      'Usage is recorded per request. Shares DATABASE_URL (and REDIS_URL) with `keyward serve`; migrates, never creates ' +
      'an admin key. REQUIRE_API_KEY=false lets requests without a key through (a bad key is still refused).',
  )
  .requiredOption('--upstream <url>', 'the API to forward to, e.g. http://127.0.0.1:3000 (a path is kept as a prefix)')
  .option(
    '--config <file>',
    'JSON route rules, first match wins: {"routes": [{"method": "GET", "path": "/v1/companies/*", "scopes": ' +
      '["companies:read"]}, {"path": "/public/**", "public": true}], "default": {"scopes": []}}. ' +
      '`*` is one path segment, `**` any number; a rule may also set "cost" (quota units, default 1). ' +
      'Without a file every request needs a valid key.',
  )
  .option('--port <n>', 'port to listen on (default: PORT, 8080); HOST sets the address', portOption)
  .addHelpText(
    'after',
    '\nExample:\n  keyward gateway --upstream http://127.0.0.1:3000 --config gateway.json --port 8081\n' +
      '  curl -H "Authorization: Bearer kw_…" http://127.0.0.1:8081/v1/companies/42',
  )
  .action(async (opts: { upstream: string; config?: string; port?: number }) => {
    checkUpstream(opts.upstream);
    const cfg = config();
    let rules: GatewayRules | undefined;
    if (opts.config !== undefined) {
      try {
        rules = loadRulesFile(opts.config);
      } catch (error) {
        if (error instanceof RulesError) fail(`invalid gateway rules: ${error.message}`);
        throw error;
      }
    }
    const gateway = await startGateway(cfg, {
      upstream: opts.upstream,
      ...(rules ? { rules } : {}),
      ...(opts.port === undefined ? {} : { port: opts.port }),
    });
    out(`Keyward gateway listening on ${gateway.url}, forwarding to ${opts.upstream}`);
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      out(`${signal} received: flushing and shutting down`);
      await gateway.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });

program.parseAsync().catch((error: unknown) => {
  fail(error instanceof Error ? error.message : String(error));
});
