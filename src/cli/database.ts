/**
 * Database access for CLI commands that work on the database directly (`migrate`, `token create`):
 * `DATABASE_URL`, or the embedded cluster: the running server's if it is up, else started for the
 * command and stopped after.
 */
import type { Config } from '../config';
import { createDb, migrate, type Db } from '../storage/db';
import { answers, embeddedConnectionString, startEmbeddedPostgres } from '../storage/embedded';

export async function withDatabase<T>(config: Config, fn: (db: Db) => Promise<T>, opts: { migrate?: boolean } = {}): Promise<T> {
  let url = config.databaseUrl;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!url) {
    const running = embeddedConnectionString(config.dataDir);
    if (running && (await answers(running))) url = running;
    else {
      const pg = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort);
      url = pg.connectionString;
      stopEmbedded = () => pg.stop();
    }
  }
  const db = createDb(url, 2);
  try {
    if (opts.migrate ?? true) await migrate(db);
    return await fn(db);
  } finally {
    await db.destroy();
    await stopEmbedded?.();
  }
}
