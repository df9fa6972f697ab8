/**
 * Hot write statements as named prepared statements on knex's own (durable) pool.
 *
 * knex formats a raw statement on every call: it scans the whole SQL for `:name` bindings and rewrites
 * them, which for our larger CTE statements costs more Node time than the round trip. A statement
 * here is written once with the same readable `:name` parameters, turned into `$1..$n` when the module
 * loads, and sent by name, so Postgres also parses and plans it once per connection.
 */
import type { Knex } from 'knex';
import type pg from 'pg';
import type { Db } from './db';

export interface NamedStatement {
  /** The prepared statement's name (unique per statement text). */
  name: string;
  /** The SQL with `$1..$n` in place of the `:name` parameters. */
  text: string;
  /** Parameter names in `$n` order. */
  params: string[];
  /** The SQL as written, for knex (inside a transaction, which owns its connection). */
  sql: string;
}

// `:name` but not the `::type` of a cast (the lookbehind) and not `:00` inside a time literal.
const PARAM = /(?<!:):([a-z_][a-z0-9_]*)/g;

export function namedStatement(name: string, sql: string): NamedStatement {
  const params: string[] = [];
  const text = sql.replace(PARAM, (_whole, param: string) => {
    let at = params.indexOf(param);
    if (at < 0) at = params.push(param) - 1;
    return `$${at + 1}`;
  });
  return { name, text, params, sql };
}

interface KnexClient {
  acquireConnection(): Promise<pg.ClientBase>;
  releaseConnection(connection: pg.ClientBase): Promise<unknown>;
}

/**
 * Runs the statement with `values` by parameter name (undefined is NULL). In a transaction it goes
 * through the transaction's connection (knex formats it: correctness over speed there).
 */
export async function runNamed<R extends object>(db: Db | Knex.Transaction, st: NamedStatement, values: Record<string, unknown>): Promise<R[]> {
  const missing = st.params.filter((p) => !(p in values));
  if (missing.length) throw new Error(`${st.name}: no value for ${missing.join(', ')}`);
  if (db.isTransaction) {
    const bound = Object.fromEntries(st.params.map((p) => [p, values[p] ?? null]));
    const { rows } = await db.raw<{ rows: R[] }>(st.sql, bound);
    return rows;
  }
  const client = db.client as unknown as KnexClient;
  const connection = await client.acquireConnection();
  try {
    const { rows } = await connection.query<R>({ name: st.name, text: st.text, values: st.params.map((p) => values[p] ?? null) });
    return rows;
  } finally {
    await client.releaseConnection(connection);
  }
}
