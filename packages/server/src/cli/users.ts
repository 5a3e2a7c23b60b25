import type { User } from '@keyward/sdk';
import type { Command } from 'commander';
import type { User as UserRecord } from '../domain.js';
import {
  needRemote,
  operator,
  out,
  positiveInteger,
  printJson,
  type RemoteOptions,
  remoteCommand,
  remoteOf,
  unwrapResult,
  withContainer,
} from './common.js';
import { findUser } from './keys.js';
import { printNextCursor, printUser, printUsers } from './table.js';

/** The API's view of a user (direct mode), loaded only then: the route schemas are slow to load. */
async function userView(user: UserRecord): Promise<User> {
  return (await import('../users/routes.js')).userView(user);
}

export function userCommands(program: Command): void {
  const users = program
    .command('users')
    .description(
      'Manage end users of the host product: they sign in with a JWT whose `sub` is their external id ' +
        '(through a server with KEYWARD_URL; `create` and `set-tier` also on the database directly)',
    );

  remoteCommand(users.command('create'))
    .description('Create a user and print its id (an unknown JWT sub is also created on first sign-in, with the default tier)')
    .requiredOption('--external-id <id>', "the user's id in your product: the `sub` claim of their JWT")
    .option('--email <email>', 'contact email')
    .option('--tier <tier>', 'a tier named in TIERS (default: DEFAULT_TIER, normally free)')
    .action(async (opts: RemoteOptions & { externalId: string; email?: string; tier?: string }) => {
      const input = {
        ...(opts.email === undefined ? {} : { email: opts.email }),
        ...(opts.tier === undefined ? {} : { tier: opts.tier }),
      };
      const client = remoteOf(opts);
      const user: User = client
        ? await client.createUser({ external_id: opts.externalId, ...input })
        : await withContainer(async (c) =>
            userView(unwrapResult(await c.users.create(operator, { externalId: opts.externalId, ...input }))),
          );
      if (opts.json) printJson(user);
      else out(`created user ${user.id} (external id ${user.external_id}, tier ${user.tier})`);
    });

  remoteCommand(users.command('list'))
    .description('List users, newest first (needs a server)')
    .option('--limit <n>', 'users per page (at most 100; default 20)', positiveInteger)
    .option('--cursor <cursor>', 'the next page, as the previous one said')
    .action(async (opts: RemoteOptions & { limit?: number; cursor?: string }) => {
      const page = await needRemote(opts, 'users list').listUsers({
        ...(opts.limit === undefined ? {} : { limit: opts.limit }),
        ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
      });
      if (opts.json) return printJson(page);
      printUsers(page.data);
      printNextCursor(page.next_cursor, 'users');
    });

  remoteCommand(users.command('get'))
    .description('Show a user (needs a server)')
    .argument('<user>', 'the Keyward user id or the external id')
    .action(async (ref: string, opts: RemoteOptions) => {
      const user = await findUser(needRemote(opts, 'users get'), ref);
      if (opts.json) printJson(user);
      else printUser(user);
    });

  remoteCommand(users.command('set-tier'))
    .description("Change a user's tier; its key limit applies from their next key on (existing keys are kept)")
    .argument('<user>', 'the Keyward user id or the external id')
    .argument('<tier>', 'a tier named in TIERS (default tiers: free, pro, enterprise)')
    .action(async (ref: string, tier: string, opts: RemoteOptions) => {
      const client = remoteOf(opts);
      const user: User = client
        ? await client.updateUser((await findUser(client, ref)).id, { tier })
        : await withContainer(async (c) => {
            const found = unwrapResult(await c.users.find(operator, ref));
            return userView(unwrapResult(await c.users.update(operator, found.id, { tier })));
          });
      if (opts.json) printJson(user);
      else out(`user ${user.id} (external id ${user.external_id}) is now on the ${user.tier} tier`);
    });

  remoteCommand(users.command('delete'))
    .description('Delete a user and all their keys (needs a server)')
    .argument('<user>', 'the Keyward user id or the external id')
    .action(async (ref: string, opts: RemoteOptions) => {
      const client = needRemote(opts, 'users delete');
      const user = await findUser(client, ref);
      await client.deleteUser(user.id);
      if (opts.json) printJson({ id: user.id, external_id: user.external_id, deleted: true });
      else out(`deleted user ${user.id} (external id ${user.external_id}) and their keys`);
    });
}
