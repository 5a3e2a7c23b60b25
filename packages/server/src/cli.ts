#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Help, InvalidArgumentError } from 'commander';
import { activityCommands } from './cli/activity.js';
import {
  CliFailure,
  config,
  duration,
  EXIT,
  isoDate,
  operator,
  out,
  printJson,
  report,
  UsageError,
  unwrapResult,
  withContainer,
} from './cli/common.js';
import { importCommand } from './cli/import.js';
import { keyCommands } from './cli/keys.js';
import { scanCommand } from './cli/scan.js';
import { userCommands } from './cli/users.js';
import { redactUrl } from './config.js';
import type { GatewayRules } from './gateway/rules.js';

// The entry point; what only some commands need (the server, the database, the gateway) is loaded by them, so
// that a command talking to a server starts quickly. `serve`, `migrate`, `admin create`, `gateway` and `token` work on this machine's
// configuration; the key, user, usage and audit commands talk to a running server when KEYWARD_URL is set
// (cli/*.ts). Exit codes: 0 done, 1 failed, 2 used wrongly.

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

function fail(message: string): never {
  throw new CliFailure(message);
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
  .version(version, '-V, --version', 'print the version')
  .showHelpAfterError()
  // Commander's own exits (help, version, a usage error) become errors handled below: subcommands inherit it.
  .exitOverride();

program
  .command('serve')
  .description('Migrate the database, create the first admin key if none exists, and serve the HTTP API (PORT, HOST)')
  .action(async () => {
    const cfg = config();
    const { startServer } = await import('./server.js');
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
    const { migrateUpAt } = await import('./store/migrator.js');
    const applied = await withContainer((c) => migrateUpAt(c.db, c.config.databaseUrl), false);
    out(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');
  });
migrate
  .command('down')
  .description('Revert the most recent migration')
  .action(async () => {
    const { migrateDown } = await import('./store/migrator.js');
    const reverted = await withContainer((c) => migrateDown(c.db.db), false);
    out(reverted.length ? `reverted: ${reverted.join(', ')}` : 'nothing to revert');
  });
migrate
  .command('status')
  .description('List migrations and whether each is applied')
  .action(async () => {
    const { migrationStatus } = await import('./store/migrator.js');
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
  .option('--json', 'print JSON on stdout (nothing else goes there)')
  .action(async (opts: { name: string; expires?: string; json?: boolean }) => {
    const created = unwrapResult(
      await withContainer((c) =>
        c.keys.create(operator, { name: opts.name, isAdmin: true, expiresAt: opts.expires ? Date.parse(opts.expires) : null }),
      ),
    );
    if (opts.json) {
      const { apiKeyView } = await import('./http/schemas.js');
      return printJson({ key: created.key, ...apiKeyView(created.record) });
    }
    out(`Admin key "${created.record.name}" (id ${created.record.id}). Save it now: it will not be shown again.`);
    out(created.key);
  });

keyCommands(program);
userCommands(program);
activityCommands(program);
importCommand(program);
scanCommand(program);

program
  .command('token')
  .description(
    'Print a development JWT for a user, signed HS256 with JWT_SECRET (and carrying JWT_ISSUER / JWT_AUDIENCE when set). ' +
      'Use it as `Authorization: Bearer <token>` on /v1/users/me routes. Creates nothing: an unknown user is provisioned on first use.',
  )
  .requiredOption('--user <external-id>', "the user's external id (the JWT `sub`), not the Keyward user id")
  .option('--ttl <duration>', 'lifetime of the token: 90s, 15m, 1h, 7d (default: 1h)', (v) => duration(v))
  .action(async (opts: { user: string; ttl?: number }) => {
    const cfg = config();
    if (cfg.jwtSecret === null) {
      fail('JWT_SECRET is not set; `keyward token` signs with it. Set JWT_SECRET (32+ characters) to the value the server uses.');
    }
    const { mintDevToken } = await import('./callers/jwt.js');
    const token = await mintDevToken(
      { jwtSecret: cfg.jwtSecret, jwtIssuer: cfg.jwtIssuer, jwtAudience: cfg.jwtAudience },
      opts.user,
      opts.ttl ?? 3600,
    );
    out(token);
  });

// Checked in the action, not by a commander argument parser: commander's error would repeat the value as given,
// and an upstream URL may carry a password. It is refused here without being shown past its scheme.
async function checkUpstream(value: string): Promise<void> {
  const { parseUpstream } = await import('./gateway/app.js');
  try {
    parseUpstream(value);
  } catch (error) {
    throw new UsageError(`option '--upstream <url>' is invalid: ${(error as Error).message.replaceAll(value, redactUrl(value))}`);
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
    await checkUpstream(opts.upstream);
    const cfg = config();
    const [{ loadRulesFile, RulesError }, { startGateway }] = await Promise.all([
      import('./gateway/rules.js'),
      import('./gateway/start.js'),
    ]);
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
  if (error instanceof CommanderError) {
    // Help and --version exit 0; anything else commander refuses is a usage error, already printed.
    process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    return;
  }
  report(error);
});
