/** The start and end every bench's main shares: throwaway database, teardown, watchdog, exit code. */
import { provisionDatabase, type BenchDatabase } from './database';
import { progress } from './log';

/** Provisions the database, runs `body` on it, then `stop` (the bench's own teardown) and drops it. */
export async function onDatabase<T>(databaseUrl: string | undefined, body: (database: BenchDatabase) => Promise<T>, stop: () => Promise<unknown>): Promise<T> {
  progress(databaseUrl ? 'database: a throwaway database on DATABASE_URL' : 'database: starting an embedded Postgres in a temp dir');
  const database = await provisionDatabase(databaseUrl);
  try {
    return await body(database);
  } finally {
    progress('stopping');
    await stop();
    await database.close();
    progress('done');
  }
}

/** Closes each of `things` in the order given, ignoring failures and what was never started. */
export async function closeQuietly(...things: Array<{ close(): Promise<unknown> } | undefined>): Promise<void> {
  for (const t of things) await t?.close().catch(() => undefined);
}

/** Runs `main` as the process's work: its number is the exit code, a throw is reported as `<name> failed`. */
export function runMain(name: string, main: () => Promise<number>, watchdogMs?: number): void {
  if (watchdogMs !== undefined) {
    const watchdog = setTimeout(() => {
      process.stderr.write(`${name}: still running after ${watchdogMs / 60_000} min; exiting\n`);
      process.exit(2);
    }, watchdogMs);
    watchdog.unref();
  }
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
