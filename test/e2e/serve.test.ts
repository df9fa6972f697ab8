/**
 * The real `mooring serve` in embedded mode, started as a user would, in an empty directory: it must
 * come up on its own Postgres, print the admin token once, answer on HTTP and HTTPS, stop cleanly on
 * Ctrl-C (SIGINT), and reuse everything on the second start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/storage/embedded';

const ROOT = path.resolve(__dirname, '../..');
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-serve-'));
  fs.chmodSync(dir, 0o755); // embedded Postgres runs as the postgres user when we are root
  env = {
    ...process.env,
    DATABASE_URL: '',
    REDIS_URL: '',
    MOORING_ADMIN_TOKEN: '',
    MOORING_DATA_DIR: path.join(dir, 'data'),
    MOORING_CERTS_DIR: path.join(dir, 'certs'),
    MOORING_HTTP_PORT: String(await freePort()),
    MOORING_HTTPS_PORT: String(await freePort()),
    MOORING_EMBEDDED_PG_PORT: '0',
    MOORING_LOG_LEVEL: 'warn',
  };
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function start(): { child: ChildProcess; output: () => string; ready: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 90_000);
    const check = () => {
      if (out.includes('Ctrl-C stops everything')) {
        clearTimeout(timer);
        resolve(out);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}:\n${out}`)));
  });
  return { child, output: () => out, ready };
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.kill('SIGINT');
  });
}

const http = (p: string, token?: string) => fetch(`http://127.0.0.1:${env.MOORING_HTTP_PORT}${p}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

/** Mooring's own connections to its embedded Postgres, by transport (asked over TCP, and not counting the asking one). */
async function mooringConnections(): Promise<{ socket: number; tcp: number }> {
  const state = JSON.parse(fs.readFileSync(path.join(dir, 'data', 'embedded-postgres.json'), 'utf8')) as { port: number; password: string };
  expect(fs.existsSync(path.join(dir, 'data', 'postgres', `.s.PGSQL.${state.port}`))).toBe(true);
  const client = new pg.Client({ host: '127.0.0.1', port: state.port, user: 'mooring', password: state.password, database: 'mooring' });
  await client.connect();
  try {
    const { rows } = await client.query<{ socket: number; tcp: number }>(
      `SELECT count(*) FILTER (WHERE client_addr IS NULL)::int AS socket, count(*) FILTER (WHERE client_addr IS NOT NULL)::int AS tcp
         FROM pg_stat_activity WHERE datname = 'mooring' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    );
    return rows[0]!;
  } finally {
    await client.end();
  }
}

function httpsGet(p: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get({ host: 'localhost', port: Number(env.MOORING_HTTPS_PORT), path: p, ca }, (res) => resolve(res.statusCode ?? 0)).on('error', reject);
  });
}

it('starts on a fresh directory, prints the admin token once, stops cleanly, and reuses it all', async () => {
  const first = start();
  const banner = await first.ready;
  const token = /MOORING_ADMIN_TOKEN=(mrg_[A-Za-z0-9_-]+)/.exec(banner)?.[1];
  expect(token).toBeDefined();
  expect(banner).toContain('/api/v1');
  expect(banner).toContain('background worker:   in this process, on its own thread');

  expect((await http('/healthz')).status).toBe(200);
  expect((await http('/readyz')).status).toBe(200);
  expect((await http('/api/v1/devices', token)).status).toBe(200);
  expect((await http('/api/v1/devices', 'mrg_wrong')).status).toBe(401);
  const ca = fs.readFileSync(path.join(dir, 'certs', 'ca.crt'), 'utf8');
  expect(await httpsGet('/healthz', ca)).toBe(200); // the generated server certificate chains to the CA and names localhost
  expect(fs.statSync(path.join(dir, 'certs', 'ca.key')).mode & 0o777).toBe(0o600);
  const connections = await mooringConnections();
  expect(connections.tcp).toBe(0);
  expect(connections.socket).toBeGreaterThan(0);

  expect(await stop(first.child)).toBe(0);
  expect(first.output()).toContain('Mooring stopped.');
  expect(fs.existsSync(path.join(dir, 'data', 'postgres', 'postmaster.pid'))).toBe(false); // Postgres shut down
  expect(fs.existsSync(path.join(dir, 'data', 'mooring.lock'))).toBe(false);

  const second = start();
  const banner2 = await second.ready;
  expect(banner2).not.toMatch(/MOORING_ADMIN_TOKEN=mrg_/);
  expect(banner2).toContain('exist already');
  expect((await http('/api/v1/devices', token)).status).toBe(200);
  expect(fs.readFileSync(path.join(dir, 'certs', 'ca.crt'), 'utf8')).toBe(ca);
  expect(await stop(second.child)).toBe(0);
}, 180_000);
