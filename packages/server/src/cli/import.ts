import { accessSync, constants, createReadStream } from 'node:fs';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import type { KeywardClient } from '@keyward/sdk';
import { type Command, InvalidArgumentError } from 'commander';
import { CsvError, parse } from 'csv-parse';
import type { ImportEntry, ImportRecord, ImportScheme } from '../keys/import.js';
import { unstorableTextIn } from '../text.js';
import {
  CliFailure,
  EXIT,
  operator,
  out,
  printJson,
  type RemoteOptions,
  remoteCommand,
  remoteOf,
  UsageError,
  withContainer,
} from './common.js';

// `keyward import`: JSON Lines or CSV, on the database directly or through a server in batches.

type Format = 'jsonl' | 'csv';

/** The columns a CSV file may have: the fields of a JSON Lines record. */
const CSV_COLUMNS = new Set([
  'key',
  'key_hash',
  'lookup_prefix',
  'key_prefix',
  'name',
  'description',
  'scopes',
  'metadata',
  'user_external_id',
  'is_admin',
  'expires_at',
]);

/** A CSV cell as the record's field: `scopes` space- or comma-separated, `metadata` JSON, `is_admin` true/false. */
function csvField(column: string, cell: string): { value: unknown } | { error: string } {
  switch (column) {
    case 'scopes':
      return { value: cell.split(/[\s,]+/).filter((scope) => scope !== '') };
    case 'metadata':
      try {
        return { value: JSON.parse(cell) };
      } catch {
        return { error: 'metadata must be a JSON object' };
      }
    case 'is_admin': {
      const flag = cell.toLowerCase();
      if (flag === 'true' || flag === '1' || flag === 'yes') return { value: true };
      if (flag === 'false' || flag === '0' || flag === 'no') return { value: false };
      return { error: 'is_admin must be true or false' };
    }
    default:
      return { value: cell };
  }
}

/**
 * Numbered records from a CSV file with a header row naming the columns (any of {@link CSV_COLUMNS}). An empty
 * cell is an absent field. The line of a record is the file's line where it ends.
 */
async function* csvEntries(file: string): AsyncGenerator<ImportEntry> {
  const parser = createReadStream(file).pipe(
    parse({ bom: true, info: true, relax_column_count: true, skip_empty_lines: true, trim: true }),
  );
  let header: string[] | undefined;
  for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
    if (header === undefined) {
      header = record.map((column) => column.toLowerCase());
      // Named by position only: a file without a header row has a key or a hash where the names should be.
      const unknown = header.flatMap((column, i) => (CSV_COLUMNS.has(column) ? [] : [i + 1]));
      if (unknown.length > 0) {
        throw new UsageError(
          `${file}: column ${unknown.join(', ')} of the first line is not a known column (is the header row missing?); the columns are ${[...CSV_COLUMNS].join(', ')}`,
        );
      }
      continue;
    }
    const line = info.lines;
    if (record.length !== header.length) {
      yield { line, error: `has ${record.length} fields; the header has ${header.length}` };
      continue;
    }
    const fields: Record<string, unknown> = {};
    let error: string | undefined;
    header.forEach((column, i) => {
      const cell = record[i] ?? '';
      if (cell === '' || error !== undefined) return;
      const field = csvField(column, cell);
      if ('error' in field) error = field.error;
      else fields[column] = field.value;
    });
    yield error === undefined ? { line, record: fields as ImportRecord } : { line, error };
  }
}

async function entriesOf(file: string, format: Format): Promise<AsyncIterable<ImportEntry>> {
  if (format === 'csv') return csvEntries(file);
  const { jsonLinesEntries } = await import('../keys/import.js');
  return jsonLinesEntries(createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY }));
}

async function countLines(file: string): Promise<number> {
  let n = 0;
  for await (const _ of createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY })) n += 1;
  return n;
}

const seconds = (s: number) =>
  s >= 3600
    ? `${Math.floor(s / 3600)}h${Math.round((s % 3600) / 60)}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s`
      : `${Math.round(s)}s`;

// A one-line progress bar for stderr with the rate and the time left, used only when it is a terminal (in a log,
// `\r` redraws are noise); small enough not to need a library.
function progressBar(total: number): { update(line: number): void; end(): void } {
  const started = Date.now();
  return {
    update(line) {
      const width = 30;
      const filled = total === 0 ? width : Math.min(width, Math.round((line / total) * width));
      const elapsed = (Date.now() - started) / 1000;
      const rate = elapsed > 0 ? line / elapsed : 0;
      const eta = rate > 0 ? seconds(Math.max(0, total - line) / rate) : '?';
      process.stderr.write(
        `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${line}/${total} lines  ${Math.round(rate)}/s  ETA ${eta} `,
      );
    },
    end() {
      process.stderr.write('\n');
    },
  };
}

interface Tally {
  imported: number;
  skipped: number;
  errors: { line: number; message: string }[];
}

/** A batch's JSON is kept well under the route's 4 MiB body limit. */
const MAX_BATCH_BYTES = 1024 * 1024;
/** Records per request: the route's MAX_IMPORT_BATCH (not imported from keys/import.ts, slow to load). */
const MAX_BATCH_RECORDS = 1000;

/** Sends the records to `POST /v1/api-keys/import` in batches (up to 1,000 records or 1 MiB each). */
async function importThrough(
  client: KeywardClient,
  entries: AsyncIterable<ImportEntry>,
  scheme: ImportScheme,
  onProgress: (line: number) => void,
): Promise<Tally> {
  const tally: Tally = { imported: 0, skipped: 0, errors: [] };
  let batch: { line: number; record: ImportRecord }[] = [];
  let bytes = 0;
  let lastLine = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const sent = batch;
    batch = [];
    bytes = 0;
    const answer = await client.importKeys({ scheme, records: sent.map((entry) => entry.record) });
    for (const result of answer.results) {
      const line = sent[result.index]?.line ?? 0;
      if (result.status === 'imported') tally.imported += 1;
      else if (result.status === 'skipped') tally.skipped += 1;
      else tally.errors.push({ line, message: result.message ?? 'rejected' });
    }
    onProgress(lastLine);
  };
  for await (const entry of entries) {
    lastLine = entry.line;
    if ('error' in entry) {
      tally.errors.push({ line: entry.line, message: entry.error });
      continue;
    }
    // Text no database stores would make the server refuse the whole batch: it is rejected here, as the
    // direct import rejects it.
    const badText = unstorableTextIn(entry.record, 'line')[0];
    if (badText) {
      tally.errors.push({ line: entry.line, message: `${badText.field} ${badText.message}` });
      continue;
    }
    const size = Buffer.byteLength(JSON.stringify(entry.record));
    if (size > MAX_BATCH_BYTES) {
      tally.errors.push({ line: entry.line, message: 'the record is larger than 1 MiB' });
      continue;
    }
    if (batch.length >= MAX_BATCH_RECORDS || bytes + size > MAX_BATCH_BYTES) await flush();
    batch.push(entry);
    bytes += size + 1;
  }
  await flush();
  return tally;
}

const IMPORT_HELP =
  'Import existing keys from a JSON Lines or CSV file, one key per line: {"key": …} (plaintext: hashed on import), ' +
  '{"key_hash": sha256-hex, "key_prefix"?: display prefix, default "imported"} or {"key_hash": bcrypt, ' +
  '"lookup_prefix": "amos_1a2b3c4d"}; optional name, description, scopes, metadata, expires_at, is_admin, ' +
  'user_external_id (the user must exist already: `keyward users create`). A CSV file has a header row naming these ' +
  'columns; scopes are separated by spaces or commas, metadata is JSON. Imported keys verify at once and are ' +
  'upgraded to SHA-256 on first use; re-running skips keys already present. Rejected lines are listed on stderr ' +
  'and make the exit code 1 (the other lines are still imported). With KEYWARD_URL the keys go through the server ' +
  'in batches; otherwise straight into DATABASE_URL (best on a stopped server). A progress bar shows on a terminal.';

export function importCommand(program: Command): void {
  remoteCommand(program.command('import'))
    .description(IMPORT_HELP)
    .argument('<file>', 'JSON Lines (.jsonl) or CSV (.csv) file')
    .requiredOption('--scheme <scheme>', 'plaintext | sha256 | bcrypt', (v) => {
      if (v !== 'plaintext' && v !== 'sha256' && v !== 'bcrypt') throw new InvalidArgumentError('expected plaintext, sha256 or bcrypt');
      return v;
    })
    .option('--format <format>', 'csv | jsonl (default: from the extension; jsonl otherwise)', (v) => {
      if (v !== 'csv' && v !== 'jsonl') throw new InvalidArgumentError('expected csv or jsonl');
      return v;
    })
    .action(async (file: string, opts: RemoteOptions & { scheme: ImportScheme; format?: Format }) => {
      const format: Format = opts.format ?? (extname(file).toLowerCase() === '.csv' ? 'csv' : 'jsonl');
      const client = remoteOf(opts);
      try {
        accessSync(file, constants.R_OK);
      } catch {
        throw new CliFailure(`cannot read ${file}`);
      }
      const bar = process.stderr.isTTY ? progressBar(await countLines(file)) : undefined;
      const onProgress = (line: number) => bar?.update(line);
      let tally: Tally;
      try {
        tally = client
          ? await importThrough(client, await entriesOf(file, format), opts.scheme, onProgress)
          : await withContainer(async (c) =>
              c.importer.importEntries(operator, await entriesOf(file, format), opts.scheme, { onProgress }),
            );
      } catch (error) {
        // csv-parse's message quotes the cell, which may be a key: only where and what kind of error.
        if (error instanceof CsvError) throw new CliFailure(`${file} is not valid CSV: ${csvErrorWhere(error)}`);
        throw error;
      } finally {
        bar?.end();
      }
      if (tally.errors.length > 0) process.exitCode = EXIT.failure;
      if (opts.json) {
        return printJson({ imported: tally.imported, skipped: tally.skipped, rejected: tally.errors.length, errors: tally.errors });
      }
      for (const e of tally.errors.slice(0, 20)) process.stderr.write(`line ${e.line}: ${e.message}\n`);
      if (tally.errors.length > 20) process.stderr.write(`… and ${tally.errors.length - 20} more\n`);
      out(`imported ${tally.imported}, skipped ${tally.skipped} already present, ${tally.errors.length} rejected`);
    });
}

/** Where a CSV error is and what kind it is, never the cell it quotes. */
function csvErrorWhere(error: CsvError): string {
  const { lines, column } = error as CsvError & { lines?: number; column?: number | string };
  const where = [lines === undefined ? null : `line ${lines}`, column === undefined ? null : `field ${column}`].filter(Boolean).join(', ');
  return `${where || 'somewhere'} (${error.code})`;
}
