/**
 * `npm run bench:android`: Android check-ins per second, each check-in handing out exactly one queued
 * command, over real HTTP, next to a bare express floor measured in the same run with the same client.
 *
 *   DATABASE_URL                 a Postgres server (a throwaway database is created and dropped on it);
 *                                unset: an embedded Postgres in a temp dir
 *   BENCH_ANDROID_DEVICES        devices enrolled through POST /android/v1/enroll (default 500)
 *   BENCH_ANDROID_CONCURRENCY    concurrent client loops, keep-alive connections (default 32)
 *   BENCH_ANDROID_SECONDS        measured time of each phase (default 10)
 *   BENCH_ANDROID_MAX_ROUNDS     upper bound on rounds per phase (default 200)
 *   MOORING_DB_POOL_MAX          the runtime's pool, as in production (default 20)
 *
 * A round is one check-in per device, in a shuffled order: before it, one `lock` per device is queued
 * with `enqueueBulk` (not timed), so each check-in must get exactly that device's command. Only the
 * rounds are timed. The floor is played in rounds of the same size with the same requests, so the
 * ends of rounds (where fewer than C requests are in flight) weigh on both alike. The floor runs
 * before and after the check-ins; the higher rate is used, so drift cannot flatter the ratio. An
 * informational phase sends the same check-ins without a credential: Mooring's middleware and its 401
 * answer, no SQL, which splits the gap into HTTP-stack cost and database work.
 */
import { databaseSettings, positiveInt } from '../lib/settings';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { recordSteps, type StepTime } from '../lib/breakdown';
import { closeQuietly, onDatabase, runMain } from '../lib/entry';
import { better } from '../lib/floors';
import { loadAverage, machine, postgresInfo, shuffle } from '../lib/host';
import { progress } from '../lib/log';
import { ProblemLog } from '../lib/problems';
import { playRounds, ProcessMeter } from '../lib/rounds';
import { checksLine, printSummary } from '../lib/summary';
import { latencyMs, round } from '../lib/stats';
import { LoadClient, type LoadRequest, type RequestResult, type RoundResult } from './client';
import { startFloor, type FloorServer } from './floor';
import { writeReport, type AndroidBenchResults, type PhaseStats } from './report';
import { startAndroidRuntime, type AndroidRuntime } from './runtime';

export const TARGET_RATIO = 0.3;
const CHECKIN_PATH = '/android/v1/checkin';
/** The whole run's upper bound: past it the process says so and exits, whatever is still running. */
const WATCHDOG_MS = 15 * 60_000;

interface Settings {
  databaseUrl?: string;
  poolMax?: string;
  devices: number;
  concurrency: number;
  seconds: number;
  maxRounds: number;
}

interface Dpc {
  deviceId: string;
  enrollmentId: string;
  credential: string;
  fcmToken: string;
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  const int = (name: string, fallback: number) => positiveInt(env, name, fallback);
  return {
    ...databaseSettings(env),
    devices: int('BENCH_ANDROID_DEVICES', 500),
    concurrency: int('BENCH_ANDROID_CONCURRENCY', 32),
    seconds: int('BENCH_ANDROID_SECONDS', 10),
    maxRounds: int('BENCH_ANDROID_MAX_ROUNDS', 200),
  };
}

async function main(): Promise<number> {
  const s = readSettings(process.env);
  let rt: AndroidRuntime | undefined;
  let floor: FloorServer | undefined;
  let client: LoadClient | undefined;
  return onDatabase(
    s.databaseUrl,
    async (database) => {
      rt = await startAndroidRuntime({ databaseUrl: database.url, poolMax: s.poolMax, singleProcess: database.server === 'embedded' });
      floor = await startFloor(CHECKIN_PATH);
      client = new LoadClient();
      progress(`Mooring on ${rt.url} (pool max ${rt.m.config.dbPoolMax}, queue ${rt.m.queues.kind}); floor on port ${floor.port}`);
      const results = await runBench(rt, floor, client, database.server, s);
      writeReport(path.join(__dirname, 'REPORT.md'), results);
      printResults(results);
      return results.checks.ok ? 0 : 1;
    },
    () => closeQuietly(client, floor, rt),
  );
}

async function runBench(rt: AndroidRuntime, floor: FloorServer, client: LoadClient, server: 'external' | 'embedded', s: Settings): Promise<AndroidBenchResults> {
  const loadStart = loadAverage();
  const { m } = rt;

  // ---- setup (not timed): an enrollment token and N DPCs enrolled through the real API ----
  const t0 = performance.now();
  const token = await createToken(rt, s.devices);
  const dpcs = await enrollAll(rt, token, s.devices);
  await m.db.raw('ANALYZE devices, enrollments, device_credentials');
  const enrollSeconds = (performance.now() - t0) / 1000;
  progress(`setup: ${dpcs.length} devices enrolled over HTTP in ${enrollSeconds.toFixed(1)} s`);

  const ledger = new Ledger();
  const checkinRequests = (order: Dpc[]): LoadRequest[] =>
    order.map((d) => ({
      path: CHECKIN_PATH,
      headers: { authorization: `Bearer ${d.credential}` },
      body: JSON.stringify({ fcm_token: d.fcmToken, status: { battery: 0.8 } }),
    }));

  /** One floor round: the same check-in requests, to the bare express app. */
  const floorRound: Round = async (measure) => {
    const order = shuffle(dpcs);
    const r = await measure(() => client.round(floor.port, s.concurrency, checkinRequests(order), false));
    for (const res of r.results) if (res.status !== 200) ledger.problem(`floor answered ${res.status}${res.error ? ` (${res.error})` : ''}`);
    return r;
  };
  /** Informational: Mooring's HTTP stack alone: the same check-ins with no credential end in a 401 before any SQL. */
  const stackRound: Round = async (measure) => {
    const order = shuffle(dpcs);
    const requests = checkinRequests(order).map((r) => ({ ...r, headers: {} }));
    const r = await measure(() => client.round(rt.port, s.concurrency, requests, false));
    for (const res of r.results) if (res.status !== 401) ledger.problem(`credential-less check-in answered ${res.status}${res.error ? ` (${res.error})` : ''}`);
    // phase() counts 200s as successes; these 401s are the expected answer.
    return { ...r, results: r.results.map((res) => (res.status === 401 ? { ...res, status: 200 } : res)) };
  };
  /** One check-in round: a lock queued for every device, then one check-in per device. */
  const checkinRound: Round = async (measure) => {
    const expected = await queueLocks(rt, dpcs);
    const order = shuffle(dpcs);
    const r = await measure(() => client.round(rt.port, s.concurrency, checkinRequests(order), true));
    r.results.forEach((res, i) => ledger.checkin(order[i]!, res, expected));
    return r;
  };

  // ---- warm-up (JIT, pools, keep-alive sockets): a few seconds of each, not counted in the rates ----
  const warm = { ...s, seconds: Math.min(3, s.seconds) };
  await phase('warm-up: floor', warm, floorRound);
  await phase('warm-up: check-ins', warm, checkinRound);

  const floorBefore = await phase('floor (before)', s, floorRound);
  const checkins = await phase('check-ins', s, checkinRound);
  const floorAfter = await phase('floor (after)', s, floorRound);
  const stack = await phase('Mooring HTTP stack, no SQL (401)', s, stackRound);
  const floorUsed = better(floorBefore, floorAfter, (p) => p.requests_per_second);

  // ---- one profiled round (not counted in the rates): SQL statements per check-in ----
  const profile = await profiledRound(rt, checkinRound, dpcs.length);
  progress(`profile: ${profile.statements_per_checkin} statements per check-in`);

  const dbChecks = await databaseChecks(rt, ledger);
  const ratio = checkins.requests_per_second / floorUsed.requests_per_second;
  return {
    date: new Date().toISOString(),
    machine: machine(),
    load_average: { start: loadStart, end: loadAverage() },
    database: { server, ...(await postgresInfo(m.db)), pool_max: m.config.dbPoolMax },
    settings: { devices: dpcs.length, concurrency: s.concurrency, seconds: s.seconds, max_rounds: s.maxRounds },
    enroll_seconds: round(enrollSeconds, 1),
    floor_runs: [floorBefore, floorAfter],
    floor: floorUsed,
    checkins,
    stack,
    ratio: round(ratio, 4),
    target_ratio: TARGET_RATIO,
    pass: ratio >= TARGET_RATIO,
    profile,
    checks: {
      ok: ledger.problems === 0 && dbChecks.length === 0,
      checkins: ledger.checkins,
      commands_seen: ledger.seen.size,
      problems: [...ledger.samples, ...dbChecks],
      problem_count: ledger.problems + dbChecks.length,
    },
  };
}

// ---- setup ----

async function adminPost(rt: AndroidRuntime, p: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(rt.url + p, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${rt.adminToken}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${p} answered ${res.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function createToken(rt: AndroidRuntime, uses: number): Promise<string> {
  const body = await adminPost(rt, '/api/v1/enrollment-tokens', { platform: 'android', allow_personal_usage: 'disallowed', max_uses: uses });
  return body.token as string;
}

/** Enrolls `count` fully managed DPCs over HTTP, 16 at a time. */
async function enrollAll(rt: AndroidRuntime, token: string, count: number): Promise<Dpc[]> {
  const out: Array<Omit<Dpc, 'enrollmentId'>> = new Array(count);
  let next = 0;
  const loop = async () => {
    for (let i = next++; i < count; i = next++) {
      const fcmToken = `fcm-bench-${i}`;
      const res = await fetch(`${rt.url}/android/v1/enroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          token,
          mode: 'fully_managed',
          fcm_token: fcmToken,
          device: { serial_number: `BENCHA${String(i).padStart(6, '0')}`, model: 'Pixel 8', manufacturer: 'Google', api_level: 34, os_version: '14' },
        }),
      });
      const text = await res.text();
      if (res.status !== 201) throw new Error(`enroll answered ${res.status}: ${text}`);
      const body = JSON.parse(text) as { device_id: string; credential: string };
      out[i] = { deviceId: body.device_id, credential: body.credential, fcmToken };
    }
  };
  await Promise.all(Array.from({ length: 16 }, loop));
  const { rows } = await rt.m.db.raw<{ rows: Array<{ device_id: string; id: string }> }>(
    `SELECT device_id, id FROM enrollments WHERE channel_type = 'device' AND status = 'enrolled'`,
  );
  const enrollmentOf = new Map(rows.map((r) => [r.device_id, r.id]));
  return out.map((d) => {
    const enrollmentId = enrollmentOf.get(d.deviceId);
    if (!enrollmentId) throw new Error(`device ${d.deviceId} has no live enrollment`);
    return { ...d, enrollmentId };
  });
}

/** One `lock` per device through the bulk path; returns device id -> the command id queued for it. */
async function queueLocks(rt: AndroidRuntime, dpcs: Dpc[]): Promise<Map<string, string>> {
  const bulk = await rt.m.commands.enqueueBulk(
    dpcs.map((d) => d.deviceId),
    { type: 'lock' },
    'bench',
  );
  if (bulk.rejected.length > 0) throw new Error(`enqueueBulk rejected ${bulk.rejected.length} devices: ${JSON.stringify(bulk.rejected[0])}`);
  const { rows } = await rt.m.db.raw<{ rows: Array<{ id: string; device_id: string }> }>('SELECT id, device_id FROM commands WHERE batch_id = ?', [bulk.batch_id]);
  if (rows.length !== dpcs.length) throw new Error(`batch ${bulk.batch_id} holds ${rows.length} commands, expected ${dpcs.length}`);
  batches.push(bulk.batch_id);
  return new Map(rows.map((r) => [r.device_id, r.id]));
}

const batches: string[] = [];

// ---- measurement ----

/** Wraps the timed part of a round (the requests), leaving its setup (queueing the locks) outside. */
type Measure = <T>(timedPart: () => Promise<T>) => Promise<T>;
/** One round: its setup, then its requests inside `measure`. */
type Round = (measure: Measure) => Promise<RoundResult>;

/** Rounds until `seconds` of round time are measured (or maxRounds); only the rounds' requests are timed. */
async function phase(name: string, s: Settings, playRound: Round): Promise<PhaseStats> {
  const meter = new ProcessMeter();
  const measure: Measure = (timedPart) => meter.measure(timedPart);
  const { measuredMs, rounds, latencies, errors } = await playRounds(s, () => playRound(measure), (res) => res.status === 200);
  const seconds = measuredMs / 1000;
  const stats: PhaseStats = {
    name,
    rounds,
    requests: latencies.length + errors,
    errors,
    seconds: round(seconds),
    requests_per_second: round(latencies.length / seconds, 1),
    latency_ms: latencyMs(latencies),
    main_loop_utilization: round(meter.loopShare, 3),
    process_cpu_seconds: round(meter.cpuMicros / 1e6, 2),
    cpu_ms_per_request: round(meter.cpuMicros / 1000 / Math.max(1, latencies.length + errors), 3),
  };
  progress(
    `${name}: ${stats.requests_per_second} req/s over ${stats.seconds} s (${rounds} rounds, ${stats.requests} requests, ${errors} errors), ` +
      `p50 ${stats.latency_ms.p50} ms, p99 ${stats.latency_ms.p99} ms, server loop busy ${(stats.main_loop_utilization * 100).toFixed(0)}%`,
  );
  return stats;
}

async function profiledRound(
  rt: AndroidRuntime,
  checkinRound: Round,
  devices: number,
): Promise<AndroidBenchResults['profile']> {
  const { m } = rt;
  // Hand-outs run on their own pg pool, outside knex: count and time them by wrapping the service call.
  const next = m.commands.next.bind(m.commands);
  const handout: StepTime = { step: 'SQL: take next command (hand-out pool)', calls: 0, ms: 0 };
  m.commands.next = async (enrollmentId, opts) => {
    const t = performance.now();
    try {
      return await next(enrollmentId, opts);
    } finally {
      handout.calls += 1;
      handout.ms += performance.now() - t;
    }
  };
  // The round's lock queueing is setup, not check-in work: record only its requests.
  let rec: ReturnType<typeof recordSteps> | undefined;
  let wallMs = 0;
  try {
    await checkinRound(async (timedPart) => {
      rec = recordSteps(m.db, m.dispatcher);
      const t0 = performance.now();
      try {
        return await timedPart();
      } finally {
        wallMs = performance.now() - t0;
      }
    });
  } finally {
    m.commands.next = next;
  }
  const steps = rec?.stop() ?? [];
  steps.push(handout);
  steps.sort((a, b) => b.ms - a.ms);
  const statements = steps.reduce((n, st) => n + st.calls, 0);
  return {
    devices,
    wall_ms: round(wallMs, 1),
    statements_per_checkin: round(statements / devices, 2),
    steps: steps.map((st) => ({ step: st.step, calls_per_checkin: round(st.calls / devices, 2), ms_per_call: round(st.ms / Math.max(1, st.calls), 3) })),
  };
}

// ---- correctness ----

class Ledger extends ProblemLog {
  readonly seen = new Set<string>();
  checkins = 0;

  checkin(d: Dpc, res: RequestResult, expected: Map<string, string>): void {
    this.checkins += 1;
    if (res.status !== 200) return this.problem(`check-in of ${d.deviceId} answered ${res.status}${res.error ? ` (${res.error})` : ''}`);
    const ids = res.commandIds ?? [];
    const want = expected.get(d.deviceId);
    if (ids.length !== 1) return this.problem(`check-in of ${d.deviceId} got ${ids.length} commands, expected 1 (${want})`);
    const [id] = ids as [string];
    if (id !== want) this.problem(`check-in of ${d.deviceId} got command ${id}, expected ${want}`);
    if (res.actions?.[0] !== 'lockNow') this.problem(`command ${id} came as action ${res.actions?.[0]}, expected lockNow`);
    if (this.seen.has(id)) this.problem(`command ${id} handed out twice`);
    this.seen.add(id);
  }
}

/** What the table says: every queued command sent exactly once, nothing left queued. */
async function databaseChecks(rt: AndroidRuntime, ledger: Ledger): Promise<string[]> {
  const { rows } = await rt.m.db.raw<{ rows: Array<{ total: number; sent: number; other: number; attempts_not_1: number }> }>(
    `SELECT count(*)::int AS total,
            count(*) FILTER (WHERE status = 'sent')::int AS sent,
            count(*) FILTER (WHERE status <> 'sent')::int AS other,
            count(*) FILTER (WHERE attempts <> 1)::int AS attempts_not_1
       FROM commands WHERE batch_id = ANY(?::uuid[])`,
    [batches],
  );
  const r = rows[0]!;
  const problems: string[] = [];
  if (r.sent !== ledger.seen.size) problems.push(`${r.sent} commands are sent in the table, but check-ins received ${ledger.seen.size} distinct ones`);
  if (r.other > 0) problems.push(`${r.other} queued commands were never handed out (or changed status)`);
  if (r.attempts_not_1 > 0) problems.push(`${r.attempts_not_1} commands have attempts other than 1`);
  if (r.total !== ledger.checkins) problems.push(`${r.total} commands queued for ${ledger.checkins} check-ins`);
  return problems;
}

// ---- summary ----

function printResults(r: AndroidBenchResults): void {
  printSummary([
    `android check-ins (1 command each), ${r.settings.devices} devices, ${r.settings.concurrency} concurrent keep-alive clients:`,
    `  check-ins  ${r.checkins.requests_per_second} /s  (p50 ${r.checkins.latency_ms.p50} ms, p99 ${r.checkins.latency_ms.p99} ms)`,
    `  floor      ${r.floor.requests_per_second} req/s (bare express + express.json(); runs ${r.floor_runs.map((f) => f.requests_per_second).join(' / ')}, higher used)`,
    `  ratio      ${(r.ratio * 100).toFixed(1)}% -> ${r.pass ? 'PASS' : 'FAIL'} (target >= ${r.target_ratio * 100}%)`,
    `  profile    ${r.profile.statements_per_checkin} SQL statements per check-in`,
    checksLine(r.checks, `ok: ${r.checks.checkins} check-ins, each got exactly its own command, none handed out twice`),
    '  report     bench/android/REPORT.md',
  ]);
}

runMain('bench:android', main, WATCHDOG_MS);
