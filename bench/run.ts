/**
 * `npm run bench`: the command-queue benchmarks, each next to a floor measured in the same run.
 *
 *   DATABASE_URL   a Postgres server to use (a throwaway database is created and dropped on it);
 *                  unset: an embedded Postgres in a temp dir
 *   REDIS_URL      Redis for the queue backend; unset: BullMQ on Postgres
 *   BENCH_*        sizes for a quick try (see README.md); REPORT.md is only written at the issue's sizes
 */
import { databaseSettings, positiveInt } from './lib/settings';
import path from 'node:path';
import type { Db } from '../src/storage/db';
import { onDatabase, runMain } from './lib/entry';
import { loadAverage, machine } from './lib/host';
import { progress } from './lib/log';
import { upsertReport, writeJson, type BenchResults } from './lib/report';
import { startRuntime, type BenchRuntime } from './lib/runtime';
import { seedFleet } from './lib/seed';
import { printSummary } from './lib/summary';
import { round, timed } from './lib/stats';
import { benchBulkEnqueue } from './scenarios/bulk-enqueue';
import { benchNextCommand } from './scenarios/next-command';

const DEFAULTS = { devices: 100_000, repeats: 3, pollers: 50, commandsPerPoller: 2500, pollSeconds: 5, http: true };

interface BenchSettings {
  databaseUrl?: string;
  redisUrl?: string;
  poolMax?: string;
  devices: number;
  repeats: number;
  pollers: number;
  commandsPerPoller: number;
  pollSeconds: number;
  http: boolean;
}

function readSettings(env: NodeJS.ProcessEnv): BenchSettings {
  const int = (name: string, fallback: number) => positiveInt(env, name, fallback);
  return {
    ...databaseSettings(env),
    redisUrl: env.REDIS_URL || undefined,
    devices: int('BENCH_DEVICES', DEFAULTS.devices),
    repeats: int('BENCH_REPEATS', DEFAULTS.repeats),
    pollers: int('BENCH_POLLERS', DEFAULTS.pollers),
    commandsPerPoller: int('BENCH_COMMANDS_PER_POLLER', DEFAULTS.commandsPerPoller),
    pollSeconds: int('BENCH_POLL_SECONDS', DEFAULTS.pollSeconds),
    http: env.BENCH_HTTP !== '0',
  };
}

async function main(): Promise<number> {
  const settings = readSettings(process.env);
  let rt: BenchRuntime | undefined;
  return onDatabase(
    settings.databaseUrl,
    async (database) => {
      rt = await startRuntime({ databaseUrl: database.url, redisUrl: settings.redisUrl, poolMax: settings.poolMax });
      progress(`runtime up: queue backend ${rt.m.queues.kind} (namespace ${rt.queueNamespace}), pool max ${rt.m.config.dbPoolMax}`);
      const results = await runScenarios(rt, database.server, settings);
      report(results, settings);
      return results.next_command.checks.ok ? 0 : 1;
    },
    async () => rt?.close(),
  );
}

async function runScenarios(rt: BenchRuntime, server: 'external' | 'embedded', s: BenchSettings): Promise<BenchResults> {
  const loadAtStart = loadAverage();
  const setup = await timed(() => seedFleet(rt.m.db, s.devices));
  const fleet = setup.value;
  progress(`setup: ${fleet.deviceIds.length} enrolled devices with enrollments in ${setup.seconds.toFixed(1)} s`);
  const bulk = await benchBulkEnqueue(rt, fleet, { repeats: s.repeats, http: s.http });
  const next = await benchNextCommand(rt, fleet, { pollers: s.pollers, commandsPerPoller: s.commandsPerPoller, durationMs: s.pollSeconds * 1000 });
  return {
    date: new Date().toISOString(),
    machine: machine(),
    load_average: { start: loadAtStart, end: loadAverage() },
    database: { server, ...(await postgresInfo(rt.m.db)), pool_max: rt.m.config.dbPoolMax },
    queue_backend: rt.m.queues.kind,
    setup_seconds: round(setup.seconds, 1),
    bulk_enqueue: bulk,
    next_command: next,
  };
}

async function postgresInfo(db: Db): Promise<Pick<BenchResults['database'], 'version' | 'synchronous_commit' | 'shared_buffers'>> {
  const { rows } = await db.raw<{ rows: Array<{ version: string; synchronous_commit: string; shared_buffers: string }> }>(
    `SELECT version(), current_setting('synchronous_commit') AS synchronous_commit, current_setting('shared_buffers') AS shared_buffers`,
  );
  return rows[0]!;
}

function report(results: BenchResults, s: BenchSettings): void {
  const benchDir = __dirname;
  writeJson(path.join(benchDir, 'results', 'latest.json'), results);
  const atIssueSizes = s.devices === DEFAULTS.devices && s.pollers === DEFAULTS.pollers;
  if (atIssueSizes) upsertReport(path.join(benchDir, 'REPORT.md'), results);
  const b = results.bulk_enqueue;
  const n = results.next_command;
  printSummary([
    `bulk enqueue ${b.devices} devices: enqueueBulk ${b.service.median_seconds} s (floor ${b.floor.median_seconds} s, ${b.service_vs_floor}x)` +
      (b.http ? `, HTTP ${b.http.median_seconds} s (${b.http_vs_floor}x)` : '') +
      ` -> ${b.pass ? 'PASS' : 'FAIL'} (target < ${b.target_seconds} s)`,
    `next command x${n.pollers}: ${n.next_only.ops_per_second} ops/s vs SELECT 1 ${n.floor.ops_per_second} ops/s = ${(n.next_vs_floor * 100).toFixed(1)}%` +
      ` -> ${n.pass ? 'PASS' : 'FAIL'} (target >= ${n.target_ratio * 100}%); write floor ${n.write_floor.ops_per_second} ops/s;` +
      ` next+report ${n.next_report.ops_per_second} cycles/s`,
    `delivery checks: ${n.checks.ok ? 'ok' : n.checks.problems.join('; ')}`,
    `results: bench/results/latest.json${atIssueSizes ? ', bench/REPORT.md' : ' (REPORT.md left alone: not the issue\'s sizes)'}`,
  ]);
}

runMain('bench', main);
