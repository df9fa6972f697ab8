/** Each test file gets its own database, created from DATABASE_URL and dropped afterwards. */
import crypto from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error('DATABASE_URL is not set (the jest global setup sets it)');
  const name = `mooring_test_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
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

/** `describe` for the queue backends available here: Postgres always, Redis when REDIS_URL is set. */
export const QUEUE_BACKENDS: Array<['postgres' | 'redis', string | undefined]> = [
  ['postgres', undefined],
  ['redis', process.env.REDIS_URL],
];
