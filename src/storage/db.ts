/**
 * Knex connection and migrations. knex and pg live only under src/storage; the rest of Mooring sees
 * repositories.
 */
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { migrations } from '../../migrations';

// bigint columns (seq, event ids) arrive as strings unless told otherwise; they fit a JS number.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export type Db = Knex;

// JIT compilation pays off for analytics, not for short OLTP statements (it cost ~0.3 s per bulk lookup).
const SESSION_OPTIONS = '-c jit=off';

export function createDb(connectionString: string, poolMax = 20): Db {
  return knexFactory({
    client: 'pg',
    connection: { connectionString, application_name: 'mooring', options: SESSION_OPTIONS },
    pool: { min: 0, max: poolMax },
    acquireConnectionTimeout: 15_000,
  });
}

const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => migrations.map(([name]) => name),
  getMigrationName: (name) => name,
  getMigration: async (name) => {
    const found = migrations.find(([n]) => n === name);
    if (!found) throw new Error(`unknown migration ${name}`);
    return found[1];
  },
};

/** Applies every pending migration; returns the names applied (empty when already current). */
export async function migrate(db: Db): Promise<string[]> {
  const [, applied] = (await db.migrate.latest({ migrationSource, tableName: 'mooring_migrations' })) as [number, string[]];
  return applied;
}

export async function pingDb(db: Db): Promise<void> {
  await db.raw('SELECT 1');
}

/**
 * The pool for handing commands out to polling devices: named (prepared) statements, and commits that
 * do not wait for the WAL flush. Losing a "sent" mark in a database crash only means the command is
 * handed out again (delivery is at-least-once anyway); reports and admin writes use the durable pool.
 */
export function createHandoutPool(connectionString: string, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: 'mooring-handout',
    options: `${SESSION_OPTIONS} -c synchronous_commit=off`,
  });
  pool.on('error', () => {}); // an idle client dropped by the server; the pool replaces it
  return pool;
}
