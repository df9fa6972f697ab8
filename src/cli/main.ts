/**
 * The `mooring` command. Server commands (serve, worker, migrate, token) act on this machine's
 * configuration; client commands (devices, commands, enrollment-token) call the admin API.
 */
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig } from '../config';
import { hintOf, newApiToken } from '../core/secrets';
import { ROLES, type Role } from '../core/types';
import { VERSION } from '../main';
import { migrate } from '../storage/db';
import { PgTokenStore } from '../storage/tokens';
import { registerClientCommands } from './client';
import { withDatabase } from './database';
import { runWorker, serve } from './serve';

export function buildProgram(): Command {
  const program = new Command('mooring')
    .description('Mooring: a self-hosted MDM protocol server for Apple, Windows and Android devices')
    .version(VERSION)
    .showHelpAfterError();

  program
    .command('serve')
    .description('run the server (HTTPS and HTTP listeners); in embedded mode also the worker')
    .option('--worker', 'also run the background worker in this process (default in embedded mode)')
    .option('--no-worker', 'do not run the background worker here')
    .action(async (opts: { worker?: boolean }) => serve(opts));

  program
    .command('worker')
    .description('run the background worker: push delivery, webhooks, outbox relay, command expiry')
    .action(async () => runWorker());

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const applied = await withDatabase(loadConfig(), async (db) => migrate(db), { migrate: false });
      process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
    });

  program
    .command('token')
    .description('manage admin API tokens directly in the database')
    .command('create')
    .description('create an API token and print it (shown once)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`, parseRole)
    .option('--name <name>', 'a label for the token', 'cli')
    .action(async (opts: { role: Role; name: string }) => {
      const secret = newApiToken();
      const token = await withDatabase(loadConfig(), (db) =>
        new PgTokenStore(db).createApiToken({ name: opts.name, role: opts.role, secret, hint: hintOf(secret) }, { type: 'api_token.created', actor: 'cli' }),
      );
      process.stdout.write(`created ${token.role} token "${token.name}" (id ${token.id}); it is shown only now:\n${secret}\n`);
    });

  registerClientCommands(program);
  return program;
}

function parseRole(value: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${ROLES.join(', ')}`);
  return value as Role;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError) process.stderr.write(`mooring: ${err.message}\n`);
    else process.stderr.write(`mooring: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main(process.argv);
