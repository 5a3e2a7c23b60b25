import type { ApiKey, CreatedKey, CreateKeyInput, KeyPage, KeywardClient, UpdateKeyInput, User } from '@keyward/sdk';
import { KeywardError } from '@keyward/sdk';
import type { Command } from 'commander';
import type { ApiKey as KeyRecord } from '../domain.js';
import {
  duration,
  isoDate,
  jsonObject,
  list,
  needRemote,
  operator,
  out,
  positiveInteger,
  printJson,
  type RemoteOptions,
  rateLimit,
  remoteCommand,
  remoteOf,
  UsageError,
  unwrapResult,
  withContainer,
} from './common.js';
import { printKey, printKeys, printNextCursor } from './table.js';

/** The API's view of a key (direct mode); the schemas are loaded only then, as they are slow to load. */
async function apiKeyView(key: KeyRecord): Promise<ApiKey> {
  return (await import('../http/schemas.js')).apiKeyView(key);
}

/** A user named by Keyward id or external id, through the server (as the direct mode's `users.find`). */
export async function findUser(client: KeywardClient, ref: string): Promise<User> {
  if (ref.length <= 64) {
    try {
      return await client.getUser(ref);
    } catch (error) {
      if (!(error instanceof KeywardError && error.code === 'USER_NOT_FOUND')) throw error;
    }
  }
  const page = await client.listUsers({ external_id: ref, limit: 1 });
  const [user] = page.data;
  if (user === undefined) throw new KeywardError({ type: 'about:blank', title: 'Not found', status: 404, code: 'USER_NOT_FOUND' });
  return user;
}

/** Prints a key just created or rolled: the only time the CLI ever prints a key. */
function printIssued(issued: CreatedKey, verb: string, json: boolean | undefined): void {
  if (json) {
    printJson(issued);
  } else {
    out(`${verb} key "${issued.name}" (id ${issued.id}). Save it now: it will not be shown again.`);
    out(issued.key);
  }
}

function printOne(key: ApiKey, json: boolean | undefined, line: string): void {
  if (json) printJson(key);
  else out(line);
}

export function keyCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('Manage API keys (through a server with KEYWARD_URL; `list` and `revoke` also on the database directly)');

  remoteCommand(keys.command('create'))
    .description('Create a key and print it once (needs a server)')
    .option('--name <name>', 'a name for the key (default: "Key" and its display prefix)')
    .option('--description <text>', 'what the key is for')
    .option('--scopes <scopes>', 'scopes it grants, comma-separated, e.g. inventory:read,orders:*', list)
    .option('--user <user>', 'the user who owns it: Keyward user id or external id')
    .option('--admin', 'an admin key')
    .option('--expires <iso>', 'expiry date (ISO 8601)', isoDate)
    .option('--prefix <prefix>', 'key prefix, e.g. sk_live (default kw)')
    .option('--metadata <json>', 'a JSON object stored with the key, never a secret', jsonObject)
    .option('--rate-limit <limit/window>', 'at most LIMIT verifications per WINDOW, e.g. 100/60s', rateLimit)
    .action(
      async (
        opts: RemoteOptions & {
          name?: string;
          description?: string;
          scopes?: string[];
          user?: string;
          admin?: boolean;
          expires?: string;
          prefix?: string;
          metadata?: Record<string, unknown>;
          rateLimit?: { limit: number; window_seconds: number };
        },
      ) => {
        const client = needRemote(opts, 'keys create');
        const body: CreateKeyInput = {
          ...(opts.name === undefined ? {} : { name: opts.name }),
          ...(opts.description === undefined ? {} : { description: opts.description }),
          ...(opts.scopes === undefined ? {} : { scopes: opts.scopes }),
          ...(opts.admin ? { is_admin: true } : {}),
          ...(opts.expires === undefined ? {} : { expires_at: opts.expires }),
          ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
          ...(opts.metadata === undefined ? {} : { metadata: opts.metadata }),
          ...(opts.rateLimit === undefined ? {} : { rate_limit: opts.rateLimit }),
          ...(opts.user === undefined ? {} : { user_id: (await findUser(client, opts.user)).id }),
        };
        printIssued(await client.createKey(body), 'Created', opts.json);
      },
    );

  remoteCommand(keys.command('list'))
    .description('List keys, newest first (never the key itself: its display prefix)')
    .option('--include-inactive', 'include deactivated, revoked and expired keys')
    .option('--user <user>', 'only this user’s keys: the Keyward user id or the external id')
    .option('--limit <n>', 'keys per page (default 100; at most 100 through a server)', positiveInteger, 100)
    .option('--cursor <cursor>', 'the next page, as the previous one said')
    .action(async (opts: RemoteOptions & { includeInactive?: boolean; user?: string; limit: number; cursor?: string }) => {
      const client = remoteOf(opts);
      let page: KeyPage;
      if (client) {
        page = await client.listKeys({
          include_inactive: opts.includeInactive ?? false,
          limit: opts.limit,
          ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
          ...(opts.user === undefined ? {} : { user_id: (await findUser(client, opts.user)).id }),
        });
      } else {
        const { apiKeyView: view } = await import('../http/schemas.js');
        const found = await withContainer(async (c) => {
          let userId: string | undefined;
          if (opts.user !== undefined) userId = unwrapResult(await c.users.find(operator, opts.user)).id;
          return unwrapResult(
            await c.keys.list(operator, {
              includeInactive: opts.includeInactive ?? false,
              limit: opts.limit,
              ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
              ...(userId === undefined ? {} : { userId }),
            }),
          );
        });
        page = { data: found.items.map((k) => view(k)), next_cursor: found.nextCursor };
      }
      if (opts.json) return printJson(page);
      printKeys(page.data);
      printNextCursor(page.next_cursor, 'keys');
    });

  remoteCommand(keys.command('get'))
    .description('Show a key (needs a server)')
    .argument('<id>', 'key id')
    .action(async (id: string, opts: RemoteOptions) => {
      const key = await needRemote(opts, 'keys get').getKey(id);
      if (opts.json) printJson(key);
      else printKey(key);
    });

  remoteCommand(keys.command('update'))
    .description('Change a key’s name, description, scopes, metadata, expiry or rate limit (needs a server)')
    .argument('<id>', 'key id')
    .option('--name <name>', 'a new name')
    .option('--description <text>', 'a new description ("" clears it)')
    .option('--scopes <scopes>', 'the scopes it grants from now on, comma-separated ("" for none)', list)
    .option('--metadata <json>', 'a JSON object replacing its metadata', jsonObject)
    .option('--expires <iso|never>', 'a new expiry date, or never', (v) => (v === 'never' ? v : isoDate(v)))
    .option('--rate-limit <limit/window|none>', 'e.g. 100/60s, or none', (v) => (v === 'none' ? v : rateLimit(v)))
    .action(
      async (
        id: string,
        opts: RemoteOptions & {
          name?: string;
          description?: string;
          scopes?: string[];
          metadata?: Record<string, unknown>;
          expires?: string;
          rateLimit?: 'none' | { limit: number; window_seconds: number };
        },
      ) => {
        const body: UpdateKeyInput = {
          ...(opts.name === undefined ? {} : { name: opts.name }),
          ...(opts.description === undefined ? {} : { description: opts.description === '' ? null : opts.description }),
          ...(opts.scopes === undefined ? {} : { scopes: opts.scopes }),
          ...(opts.metadata === undefined ? {} : { metadata: opts.metadata }),
          ...(opts.expires === undefined ? {} : { expires_at: opts.expires === 'never' ? null : opts.expires }),
          ...(opts.rateLimit === undefined ? {} : { rate_limit: opts.rateLimit === 'none' ? null : opts.rateLimit }),
        };
        if (Object.keys(body).length === 0) {
          throw new UsageError('nothing to change: give --name, --description, --scopes, --metadata, --expires or --rate-limit');
        }
        const key = await needRemote(opts, 'keys update').updateKey(id, body);
        if (opts.json) printJson(key);
        else printKey(key);
      },
    );

  remoteCommand(keys.command('roll'))
    .description('Replace a key with a new one, printed once; the old one works for --grace, then expires (needs a server)')
    .argument('<id>', 'key id')
    .option('--grace <duration>', 'how long the old key keeps working: 0, 90s, 15m, 1h, 7d (default 0)', (v) => duration(v, { zero: true }))
    .action(async (id: string, opts: RemoteOptions & { grace?: number }) => {
      const client = needRemote(opts, 'keys roll');
      const rolled = await client.rollKey(id, opts.grace === undefined ? {} : { grace_period_seconds: opts.grace });
      printIssued(rolled, 'Rolled: new', opts.json);
    });

  for (const [action, done, blurb] of [
    ['deactivate', 'deactivated', 'Stop a key verifying (DISABLED) until activated again (needs a server)'],
    ['activate', 'activated', 'Re-enable a deactivated key (needs a server)'],
  ] as const) {
    remoteCommand(keys.command(action))
      .description(blurb)
      .argument('<id>', 'key id')
      .action(async (id: string, opts: RemoteOptions) => {
        const client = needRemote(opts, `keys ${action}`);
        const key = action === 'activate' ? await client.activateKey(id) : await client.deactivateKey(id);
        printOne(key, opts.json, `${done} ${key.id} (${key.key_prefix}…)`);
      });
  }

  remoteCommand(keys.command('revoke'))
    .description('Revoke a key permanently')
    .argument('<id>', 'key id')
    .action(async (id: string, opts: RemoteOptions) => {
      const client = remoteOf(opts);
      const key = client
        ? await client.revokeKey(id)
        : await withContainer(async (c) => apiKeyView(unwrapResult(await c.keys.revoke(operator, id))));
      printOne(key, opts.json, `revoked ${key.id} (${key.key_prefix}…)`);
    });

  remoteCommand(keys.command('delete'))
    .description('Delete a key and its record (needs a server); revoking keeps the record')
    .argument('<id>', 'key id')
    .action(async (id: string, opts: RemoteOptions) => {
      await needRemote(opts, 'keys delete').deleteKey(id);
      if (opts.json) printJson({ id, deleted: true });
      else out(`deleted ${id}`);
    });
}
