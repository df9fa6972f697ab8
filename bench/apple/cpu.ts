/**
 * Server CPU, read from the kernel around a timed part: the Mooring process (this one: the server runs
 * in-process, the load client in a child process), its Postgres and, with REDIS_URL, its Redis.
 *
 * - Mooring: `process.cpuUsage()`, every thread of this process (main thread, libuv pool where WebCrypto
 *   runs, GC helpers). The mock APNs and the floor's express app also live here; they are idle while
 *   the other is measured.
 * - Postgres, "ours": the backends connected to the bench database (Mooring's pools, BullMQ's pools when
 *   the queue is on Postgres) plus the server's shared helpers (checkpointer, background writer, WAL
 *   writer, autovacuum launcher), found in `pg_stat_activity` at each snapshot and read from
 *   /proc/<pid>/stat (utime + stime). A backend that exits between two snapshots loses its share
 *   (pools keep their connections during a phase, so this does not happen in practice).
 * - Postgres, "server": the postmaster and every child of it, with the CPU of reaped children that the
 *   kernel adds to the postmaster's cutime/cstime. Everything that server did, including other users'
 *   work: reported as a cross-check only.
 * - Redis: `INFO cpu` (used_cpu_user + used_cpu_sys of the redis-server process).
 * - The load client: /proc/<child pid>/stat, to show what it took from the same two cores.
 */
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import IORedis from 'ioredis';
import pg from 'pg';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

interface ProcStat {
  ppid: number;
  /** utime + stime, seconds. */
  self: number;
  /** cutime + cstime (reaped children), seconds. */
  children: number;
}

/** /proc/<pid>/stat; undefined when the process is gone. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may contain spaces: fields are counted after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
  const f = (n: number) => Number(rest[n - 3]);
  return { ppid: f(4), self: (f(14) + f(15)) / CLK_TCK, children: (f(16) + f(17)) / CLK_TCK };
}

/** The whole machine from /proc/stat's `cpu` line, seconds summed over all CPUs. */
function machineStat(): { busy: number; steal: number; total: number } {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
    const total = user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!;
    return { busy: (total - idle! - iowait! - steal!) / CLK_TCK, steal: steal! / CLK_TCK, total: total / CLK_TCK };
  } catch {
    return { busy: 0, steal: 0, total: 0 };
  }
}

export interface CpuSnapshot {
  /** Seconds of CPU, cumulative. */
  mooring: number;
  machine: { busy: number; steal: number; total: number };
  pgOurs: Map<number, number>;
  pgServer: number;
  redis: number;
  client: number;
}

export interface CpuDelta {
  mooring: number;
  pg_ours: number;
  pg_server: number;
  redis: number;
  client: number;
  /** mooring + pg_ours + redis: what the report calls server CPU. */
  server: number;
  /** The whole machine (all CPUs): busy, stolen by the hypervisor, and elapsed CPU time. */
  machine_busy: number;
  machine_steal: number;
  machine_total: number;
}

export const ZERO_DELTA: CpuDelta = { mooring: 0, pg_ours: 0, pg_server: 0, redis: 0, client: 0, server: 0, machine_busy: 0, machine_steal: 0, machine_total: 0 };

export function addDelta(a: CpuDelta, b: CpuDelta): CpuDelta {
  return {
    mooring: a.mooring + b.mooring,
    pg_ours: a.pg_ours + b.pg_ours,
    pg_server: a.pg_server + b.pg_server,
    redis: a.redis + b.redis,
    client: a.client + b.client,
    server: a.server + b.server,
    machine_busy: a.machine_busy + b.machine_busy,
    machine_steal: a.machine_steal + b.machine_steal,
    machine_total: a.machine_total + b.machine_total,
  };
}

export class CpuMeter {
  #postmaster?: number;

  private constructor(
    private readonly monitor: pg.Client,
    private readonly redis: IORedis | undefined,
    /** The load client's pid (set once it runs). */
    public clientPid: number | undefined,
  ) {}

  static async open(databaseUrl: string, redisUrl: string | undefined): Promise<CpuMeter> {
    const monitor = new pg.Client({ connectionString: databaseUrl });
    await monitor.connect();
    const redis = redisUrl ? new IORedis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: false }) : undefined;
    redis?.on('error', () => undefined);
    return new CpuMeter(monitor, redis, undefined);
  }

  /** What the report says about where Postgres and Redis run. */
  async describe(): Promise<{ postmaster_pid?: number; redis_pid?: number }> {
    await this.#findPostmaster();
    let redisPid: number | undefined;
    if (this.redis) {
      const info = await this.redis.info('server');
      const m = /process_id:(\d+)/.exec(info);
      redisPid = m ? Number(m[1]) : undefined;
    }
    return { postmaster_pid: this.#postmaster, redis_pid: redisPid };
  }

  /**
   * Everything but Mooring first, Mooring's own CPU last: the snapshot's own work (a query, /proc reads)
   * then falls outside a bracket that starts here.
   */
  async before(): Promise<CpuSnapshot> {
    const [pgOurs, pgServer, redis] = await Promise.all([this.#pgOurs(), this.#pgServer(), this.#redis()]);
    const client = this.clientPid ? (procStat(this.clientPid)?.self ?? 0) : 0;
    const machine = machineStat();
    return { pgOurs, pgServer, redis, client, machine, mooring: mooringSeconds() };
  }

  /** Mooring's own CPU first, then the rest: the bracket ends before the snapshot's own work. */
  async after(): Promise<CpuSnapshot> {
    const mooring = mooringSeconds();
    const machine = machineStat();
    const client = this.clientPid ? (procStat(this.clientPid)?.self ?? 0) : 0;
    const [pgOurs, pgServer, redis] = await Promise.all([this.#pgOurs(), this.#pgServer(), this.#redis()]);
    return { pgOurs, pgServer, redis, client, machine, mooring };
  }

  static delta(a: CpuSnapshot, b: CpuSnapshot): CpuDelta {
    let pgOurs = 0;
    for (const [pid, sec] of b.pgOurs) pgOurs += sec - (a.pgOurs.get(pid) ?? 0);
    const d = {
      mooring: b.mooring - a.mooring,
      pg_ours: Math.max(0, pgOurs),
      pg_server: Math.max(0, b.pgServer - a.pgServer),
      redis: Math.max(0, b.redis - a.redis),
      client: Math.max(0, b.client - a.client),
    };
    return {
      ...d,
      server: d.mooring + d.pg_ours + d.redis,
      machine_busy: b.machine.busy - a.machine.busy,
      machine_steal: b.machine.steal - a.machine.steal,
      machine_total: b.machine.total - a.machine.total,
    };
  }

  async close(): Promise<void> {
    await this.monitor.end().catch(() => undefined);
    this.redis?.disconnect();
  }

  async #pgOurs(): Promise<Map<number, number>> {
    const { rows } = await this.monitor.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE pid <> pg_backend_pid()
          AND (datname = current_database()
               OR backend_type IN ('checkpointer', 'background writer', 'walwriter', 'autovacuum launcher'))`,
    );
    const out = new Map<number, number>();
    for (const { pid } of rows) {
      const s = procStat(pid);
      if (s) out.set(pid, s.self);
    }
    return out;
  }

  async #findPostmaster(): Promise<number | undefined> {
    if (this.#postmaster === undefined) {
      const { rows } = await this.monitor.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const backend = rows[0] ? procStat(rows[0].pid) : undefined;
      this.#postmaster = backend?.ppid;
    }
    return this.#postmaster;
  }

  /** The postmaster's own and reaped children's CPU plus every live child's. */
  async #pgServer(): Promise<number> {
    const postmaster = await this.#findPostmaster();
    if (!postmaster) return 0;
    const pm = procStat(postmaster);
    if (!pm) return 0;
    let total = pm.self + pm.children;
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const s = procStat(Number(name));
      if (s && s.ppid === postmaster) total += s.self;
    }
    return total;
  }

  async #redis(): Promise<number> {
    if (!this.redis) return 0;
    const info = await this.redis.info('cpu');
    const num = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
    return num('used_cpu_user') + num('used_cpu_sys');
  }
}

function mooringSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
