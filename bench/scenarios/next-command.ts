/**
 * Next-command selection under concurrent pollers: each poller is one enrollment with a deep queue,
 * all polling at once on the runtime's pool, for a fixed time.
 *   floor        SELECT 1 through m.db.raw, same concurrency, same pool, same duration (run before
 *                and after the others; the higher rate is used, so drift cannot flatter the ratio)
 *   write floor  a one-row UPDATE and its commit per poller (a scratch table): what any poll that
 *                writes pays; informational, the target is against SELECT 1
 *   next_only    m.commands.next(enrollment): the hand-out statement alone
 *   next_report  next, then report(acknowledged): a whole device round, on a second set of pollers
 *                so it does not start behind the rows next_only left in `sent`
 */
import type { Db } from '../../src/storage/db';
import type { BenchRuntime } from '../lib/runtime';
import { progress } from '../lib/log';
import { runLoops, type LoopStats } from '../lib/loops';
import type { Fleet } from '../lib/seed';
import { percentile, round, timed } from '../lib/stats';

export const NEXT_TARGET_RATIO = 0.5;

export interface NextCommandOptions {
  pollers: number;
  commandsPerPoller: number;
  durationMs: number;
}

export interface NextCommandResult {
  pollers: number;
  commands_per_poller: number;
  duration_seconds: number;
  pool_max: number;
  seed_seconds: number;
  floor: LoopStats;
  floor_runs: LoopStats[];
  write_floor: LoopStats;
  next_only: LoopStats;
  next_report: LoopStats & { next_p50_ms: number; report_p50_ms: number };
  next_vs_floor: number;
  next_vs_write_floor: number;
  /** Cycles per second over SELECT 1 per second; a cycle is two statements, so 0.5 is parity per statement. */
  next_report_vs_floor: number;
  target_ratio: number;
  /** The target is judged on next_only. */
  pass: boolean;
  checks: { ok: boolean; problems: string[] };
}

export async function benchNextCommand(rt: BenchRuntime, fleet: Fleet, opts: NextCommandOptions): Promise<NextCommandResult> {
  const { m } = rt;
  const n = opts.pollers;
  const setA = { devices: fleet.deviceIds.slice(0, n), enrollments: fleet.enrollmentIds.slice(0, n) };
  const setB = { devices: fleet.deviceIds.slice(n, 2 * n), enrollments: fleet.enrollmentIds.slice(n, 2 * n) };
  if (setB.enrollments.length < n) throw new Error(`the next-command scenario needs ${2 * n} devices`);

  const seed = await timed(() => seedQueues(rt, [...setA.devices, ...setB.devices], opts.commandsPerPoller));
  progress(`next command: queued ${opts.commandsPerPoller} commands for each of ${2 * n} enrollments in ${seed.seconds.toFixed(1)} s`);
  await m.db.raw('ANALYZE commands');

  const select1 = async () => {
    await m.db.raw('SELECT 1');
    return true;
  };
  await runLoops(n, 500, select1); // opens the pool's connections before anything is timed

  const floorBefore = await runLoops(n, opts.durationMs, select1);
  progress(`next command: floor SELECT 1 x${n}: ${floorBefore.ops_per_second} ops/s`);
  const writeFloor = await runWriteFloor(m.db, n, opts.durationMs);
  progress(`next command: write floor (one-row UPDATE + commit) x${n}: ${writeFloor.ops_per_second} ops/s`);
  const nextOnly = await runLoops(n, opts.durationMs, async (i) => (await m.commands.next(setA.enrollments[i]!)) !== undefined);
  progress(`next command: next() x${n}: ${nextOnly.ops_per_second} ops/s`);
  const nextReport = await runNextReport(rt, setB.enrollments, opts.durationMs);
  progress(`next command: next()+report() x${n}: ${nextReport.ops_per_second} cycles/s`);
  const floorAfter = await runLoops(n, opts.durationMs, select1);
  progress(`next command: floor SELECT 1 x${n} (again): ${floorAfter.ops_per_second} ops/s`);

  const floor = floorBefore.ops_per_second >= floorAfter.ops_per_second ? floorBefore : floorAfter;
  const nextVsFloor = round(nextOnly.ops_per_second / floor.ops_per_second, 3);
  return {
    pollers: n,
    commands_per_poller: opts.commandsPerPoller,
    duration_seconds: opts.durationMs / 1000,
    pool_max: m.config.dbPoolMax,
    seed_seconds: round(seed.seconds, 1),
    floor,
    floor_runs: [floorBefore, floorAfter],
    write_floor: writeFloor,
    next_only: nextOnly,
    next_report: nextReport,
    next_vs_floor: nextVsFloor,
    next_vs_write_floor: round(nextOnly.ops_per_second / writeFloor.ops_per_second, 3),
    next_report_vs_floor: round(nextReport.ops_per_second / floor.ops_per_second, 3),
    target_ratio: NEXT_TARGET_RATIO,
    pass: nextVsFloor >= NEXT_TARGET_RATIO && nextOnly.exhausted_loops === 0,
    checks: await checkDelivery(m.db, setA.enrollments, nextOnly.ops, setB.enrollments, nextReport.ops),
  };
}

/** Queues through the bulk path, one command per device per call (a batch holds a device once). */
async function seedQueues(rt: BenchRuntime, deviceIds: string[], perDevice: number): Promise<void> {
  for (let k = 0; k < perDevice; k++) {
    const result = await rt.m.commands.enqueueBulk(deviceIds, { type: 'lock' }, 'bench');
    if (result.accepted.length !== deviceIds.length) throw new Error(`seeding accepted ${result.accepted.length} of ${deviceIds.length}`);
  }
}

/** One row per poller, so pollers never wait on each other's row locks: only the commit cost remains. */
async function runWriteFloor(db: Db, pollers: number, durationMs: number): Promise<LoopStats> {
  await db.raw('CREATE TABLE bench_write_floor (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)');
  await db.raw('INSERT INTO bench_write_floor (id) SELECT generate_series(0, ?::int - 1)', [pollers]);
  try {
    return await runLoops(pollers, durationMs, async (i) => {
      await db.raw('UPDATE bench_write_floor SET n = n + 1 WHERE id = ? RETURNING n', [i]);
      return true;
    });
  } finally {
    await db.raw('DROP TABLE bench_write_floor');
  }
}

async function runNextReport(rt: BenchRuntime, enrollments: string[], durationMs: number) {
  const nextMs: number[] = [];
  const reportMs: number[] = [];
  const stats = await runLoops(enrollments.length, durationMs, async (i) => {
    const enrollmentId = enrollments[i]!;
    const t0 = performance.now();
    const command = await rt.m.commands.next(enrollmentId);
    const t1 = performance.now();
    if (!command) return false;
    const { changed } = await rt.m.commands.report(enrollmentId, command.id, { status: 'acknowledged' });
    if (!changed) throw new Error(`report on ${command.id} changed nothing`);
    nextMs.push(t1 - t0);
    reportMs.push(performance.now() - t1);
    return true;
  });
  return { ...stats, next_p50_ms: round(percentile(nextMs, 50)), report_p50_ms: round(percentile(reportMs, 50)) };
}

/** Every hand-out must be exactly one command delivered once; a fast wrong answer is no result. */
async function checkDelivery(db: Db, setA: string[], nextOps: number, setB: string[], cycles: number): Promise<{ ok: boolean; problems: string[] }> {
  const count = async (ids: string[]) => {
    const { rows } = await db.raw<{ rows: Array<{ sent: number; acknowledged: number; max_attempts: number }> }>(
      `SELECT count(*) FILTER (WHERE status = 'sent')::int AS sent,
              count(*) FILTER (WHERE status = 'acknowledged')::int AS acknowledged,
              coalesce(max(attempts), 0)::int AS max_attempts
         FROM commands WHERE enrollment_id = ANY(?::uuid[])`,
      [ids] as never,
    );
    return rows[0]!;
  };
  const a = await count(setA);
  const b = await count(setB);
  const problems: string[] = [];
  if (a.sent !== nextOps) problems.push(`next_only: ${nextOps} hand-outs but ${a.sent} commands in sent`);
  if (b.acknowledged !== cycles || b.sent !== 0) problems.push(`next_report: ${cycles} cycles but ${b.acknowledged} acknowledged, ${b.sent} left in sent`);
  if (Math.max(a.max_attempts, b.max_attempts) > 1) problems.push('a command was handed out more than once');
  return { ok: problems.length === 0, problems };
}
