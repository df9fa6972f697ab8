/**
 * The database a bench run owns: a throwaway `mooring_bench_<random>` on the server in DATABASE_URL,
 * or on an embedded Postgres in a temp dir when DATABASE_URL is unset. `close` drops or removes it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/storage/embedded';

export interface BenchDatabase {
  url: string;
  server: 'external' | 'embedded';
  close(): Promise<void>;
}

export async function provisionDatabase(externalUrl: string | undefined): Promise<BenchDatabase> {
  if (externalUrl) return throwawayDatabase(externalUrl, 'external', async () => {});
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-bench-pg-'));
  const removeDir = async () => fs.rmSync(dir, { recursive: true, force: true });
  // Postgres runs as the postgres user when we are root; it must be able to enter this directory.
  fs.chmodSync(dir, 0o755);
  const embedded = await startEmbeddedPostgres(dir, 0).catch(async (err: unknown) => {
    await removeDir();
    throw err;
  });
  const stopServer = async () => {
    await embedded.stop();
    await removeDir();
  };
  return throwawayDatabase(embedded.connectionString, 'embedded', stopServer).catch(async (err: unknown) => {
    await stopServer();
    throw err;
  });
}

async function throwawayDatabase(adminUrl: string, server: BenchDatabase['server'], after: () => Promise<void>): Promise<BenchDatabase> {
  const name = `mooring_bench_${crypto.randomBytes(5).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    server,
    close: async () => {
      try {
        await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await after();
      }
    },
  };
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
