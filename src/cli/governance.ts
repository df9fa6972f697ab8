/**
 * CSV imports from the command line: corporate identifiers and pre-approved devices. The server does
 * all the checking; this uploads the file and prints the server's per-row report in a readable form.
 */
import fs from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { json } from './format';
import { ApiError, type ApiClient, type Query } from './http-client';

interface ImportOptions {
  dryRun?: boolean;
  json?: boolean;
}

interface Problem {
  row: number | null;
  code: string;
  detail: string;
}

/** Uploads `file` and prints the outcome; an invalid file prints each row's problem and fails. */
export async function runImport(api: ApiClient, path: string, file: string, query: Query, opts: ImportOptions, summarize: (answer: Record<string, unknown>) => string): Promise<void> {
  const bytes = await fs.readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  process.stderr.write(`uploading ${file} (${bytes.length} bytes)${opts.dryRun ? ', dry run' : ''}...\n`);
  try {
    const answer = await api.postCsv<Record<string, unknown>>(path, { ...query, dry_run: opts.dryRun ? 'true' : undefined }, bytes);
    process.stdout.write(opts.json ? json(answer) : summarize(answer) + problems('warning', answer.warnings));
    if (answer.valid === false) process.exitCode = 1;
  } catch (err) {
    if (!(err instanceof ApiError) || !['import_invalid', 'import_needs_review'].includes(err.code)) throw err;
    if (opts.json) process.stdout.write(json(err.problem));
    else {
      process.stderr.write(`${err.detail}\n${problems('error', err.problem.errors)}${duplicates(err.problem.duplicates)}${problems('warning', err.problem.warnings)}`);
      if (err.code === 'import_needs_review') process.stderr.write('Run again with --overwrite all, or --overwrite with the identifiers to replace (the other duplicates are skipped).\n');
    }
    process.exitCode = 1;
  }
}

function problems(kind: string, list: unknown): string {
  if (!Array.isArray(list) || list.length === 0) return '';
  return (list as Problem[]).map((p) => `${p.row === null || p.row === undefined ? 'file' : `row ${p.row}`}: ${kind} ${p.code}: ${p.detail}\n`).join('');
}

function duplicates(list: unknown): string {
  if (!Array.isArray(list) || list.length === 0) return '';
  return (list as Array<{ identifier: string; row?: number; existing_details?: string | null; new_details?: string | null }>)
    .map((d) => `row ${d.row ?? '?'}: ${d.identifier} is already listed with details ${JSON.stringify(d.existing_details ?? '')}; the file says ${JSON.stringify(d.new_details ?? '')}\n`)
    .join('');
}

export function registerImports(program: Command, connect: (opts: { url?: string; token?: string }) => ApiClient, withConnection: (cmd: Command) => Command, examples: (...lines: string[]) => string): void {
  const ids = program.command('corporate-identifiers').alias('corporate-ids').description('corporate device identifiers (IMEI or serial numbers) that make a device corporate (admin API)');
  withConnection(
    ids
      .command('import')
      .description('import a CSV of identifiers: no header, identifier then details; one type per file; at most 5,000 rows and 5 MB')
      .argument('<file>', 'the CSV file')
      .addOption(new Option('--type <type>', 'what the file holds').choices(['imei', 'serial']).makeOptionMandatory())
      .option('--overwrite <ids>', 'identifiers already listed with other details to replace: "all" or a comma-separated list')
      .option('--dry-run', 'check the file and report, change nothing')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring corporate-identifiers import serials.csv --type serial --dry-run', 'mooring corporate-identifiers import imeis.csv --type imei --overwrite all'))
    .action(async (file: string, opts: ImportOptions & { type: string; overwrite?: string; url?: string; token?: string }) => {
      await runImport(connect(opts), '/corporate-identifiers/import', file, { type: opts.type, overwrite: opts.overwrite }, opts, (a) =>
        `${opts.dryRun ? 'would import' : 'imported'} ${String(a.imported ?? 0)}, overwrote ${String(a.overwritten ?? 0)}, unchanged ${String(a.unchanged ?? 0)}, skipped ${String(a.skipped ?? 0)}\n`,
      );
    });

  const pre = program.command('preapproved-devices').alias('preapproved').description('pre-approved devices: users and their devices, listed before they enroll (admin API)');
  withConnection(
    pre
      .command('import')
      .description('import a pre-approved devices CSV (header: Name, Email, Ownership, Serial number, Platform; optional Mobile, Device name, SAMAccountName); all rows or none')
      .argument('<file>', 'the CSV file')
      .option('--dry-run', 'check every row and report, change nothing')
      .addOption(new Option('--existing-users <how>', 'users that already exist: replace their details or skip them').choices(['replace', 'skip']).default('skip'))
      .option('--category <id>', 'device category for every device in the file')
      .option('--policy <id>', 'policy for every device in the file')
      .option('--json', 'print the API answer as JSON'),
  )
    .addHelpText('after', examples('mooring preapproved-devices import devices.csv --dry-run', 'mooring preapproved-devices import devices.csv --existing-users replace'))
    .action(async (file: string, opts: ImportOptions & { existingUsers: string; category?: string; policy?: string; url?: string; token?: string }) => {
      await runImport(
        connect(opts),
        '/preapproved-devices/import',
        file,
        { existing_users: opts.existingUsers, category_id: opts.category, policy_id: opts.policy },
        opts,
        (a) =>
          opts.dryRun
            ? `${a.valid === false ? 'the file has errors' : 'the file is valid'}${typeof a.devices === 'number' ? `: ${a.devices} devices` : ''}\n${problems('error', a.errors)}`
            : `imported ${String(a.devices ?? 0)} devices; users created ${String(a.users_created ?? 0)}, replaced ${String(a.users_replaced ?? 0)}, skipped ${String(a.users_skipped ?? 0)}\n`,
      );
    });
}
