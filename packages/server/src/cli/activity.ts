import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import { EXIT, isoDate, list, needRemote, positiveInteger, printJson, type RemoteOptions, remoteCommand, UsageError } from './common.js';
import { printAudit, printNextCursor, printUsage, printVerification } from './table.js';

// What happened: a key's usage, the audit trail, and checking a key. All through a server.

const granularity = (value: string) => {
  if (value !== 'minute' && value !== 'hour' && value !== 'day') throw new InvalidArgumentError('expected minute, hour or day');
  return value;
};

export function activityCommands(program: Command): void {
  remoteCommand(program.command('usage'))
    .description('A key’s verifications by outcome, per minute, hour or day (needs a server)')
    .argument('<key-id>', 'key id')
    .option('--granularity <unit>', 'minute, hour or day (default hour: the last 24 hours)', granularity)
    .option('--from <iso>', 'start of the range (inclusive)', isoDate)
    .option('--to <iso>', 'end of the range (exclusive; default now)', isoDate)
    .action(async (id: string, opts: RemoteOptions & { granularity?: 'minute' | 'hour' | 'day'; from?: string; to?: string }) => {
      const usage = await needRemote(opts, 'usage').getKeyUsage(id, {
        ...(opts.granularity === undefined ? {} : { granularity: opts.granularity }),
        ...(opts.from === undefined ? {} : { from: opts.from }),
        ...(opts.to === undefined ? {} : { to: opts.to }),
      });
      if (opts.json) printJson(usage);
      else printUsage(usage);
    });

  remoteCommand(program.command('audit'))
    .description('The audit trail, newest first: who changed which key or user (needs a server)')
    .option('--actor <id>', 'only changes by this key id, user id or system actor (cli, bootstrap)')
    .option('--target <id>', 'only changes to this key or user')
    .option('--action <action>', 'only this action, e.g. key.revoke')
    .option('--from <iso>', 'only entries at or after this instant', isoDate)
    .option('--to <iso>', 'only entries before this instant', isoDate)
    .option('--limit <n>', 'entries per page (at most 100; default 50)', positiveInteger)
    .option('--cursor <cursor>', 'the next page, as the previous one said')
    .action(
      async (
        opts: RemoteOptions & {
          actor?: string;
          target?: string;
          action?: string;
          from?: string;
          to?: string;
          limit?: number;
          cursor?: string;
        },
      ) => {
        const page = await needRemote(opts, 'audit').listAuditLogs({
          ...(opts.actor === undefined ? {} : { actor_id: opts.actor }),
          ...(opts.target === undefined ? {} : { target_id: opts.target }),
          ...(opts.action === undefined ? {} : { action: opts.action }),
          ...(opts.from === undefined ? {} : { from: opts.from }),
          ...(opts.to === undefined ? {} : { to: opts.to }),
          ...(opts.limit === undefined ? {} : { limit: opts.limit }),
          ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }),
        });
        if (opts.json) return printJson(page);
        printAudit(page);
        printNextCursor(page.next_cursor, 'entries');
      },
    );

  remoteCommand(program.command('verify'))
    .description(
      'Check a key as your services would (state, scopes, rate limit, quota) without spending its quota or rate limit; ' +
        'exit code 0 when it is valid, 1 when not (needs a server)',
    )
    .argument('<key>', 'the key, or - to read it from stdin (keeps it out of your shell history)')
    .option('--scopes <scopes>', 'scopes the request needs, comma-separated', list)
    .action(async (given: string, opts: RemoteOptions & { scopes?: string[] }) => {
      const client = needRemote(opts, 'verify');
      const key = given === '-' ? readFileSync(0, 'utf8').trim() : given;
      if (key === '') throw new UsageError('no key on stdin');
      const result = await client.verifyKey({ key, cost: 0, ratelimit_cost: 0, ...(opts.scopes ? { scopes: opts.scopes } : {}) });
      if (opts.json) printJson(result);
      else printVerification(result);
      if (!result.valid) process.exitCode = EXIT.failure;
    });
}
