/** What every bench records about where it ran (machine, load, Postgres) and its shuffled round orders. */
import os from 'node:os';
import type { Db } from '../../src/storage/db';
import { round } from './stats';

export interface MachineInfo {
  cpus: number;
  cpu_model: string;
  memory_gib: number;
  os: string;
  node: string;
}

export function machine(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpu_model: cpus[0]?.model.trim() ?? 'unknown',
    memory_gib: round(os.totalmem() / 2 ** 30, 1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

/** os.loadavg() (1, 5, 15 min), rounded: others competing for the CPUs. */
export function loadAverage(): number[] {
  return os.loadavg().map((l) => round(l, 2));
}

export async function postgresInfo(db: Db): Promise<{ version: string; synchronous_commit: string }> {
  const { rows } = await db.raw<{ rows: Array<{ version: string; synchronous_commit: string }> }>(
    `SELECT version(), current_setting('synchronous_commit') AS synchronous_commit`,
  );
  return rows[0]!;
}

/** A shuffled copy (Fisher-Yates). */
export function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
