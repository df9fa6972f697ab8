/**
 * `npm run bench:windows`: Windows enrollments per second (discover + policy + enroll) and OMA-DM
 * sessions per second with one queued command each, over real HTTPS, next to a bare express floor
 * measured in the same run with the same client.
 *
 *   DATABASE_URL                      a Postgres server (a throwaway database is created and dropped on it);
 *                                     unset: an embedded Postgres in a temp dir
 *   BENCH_WINDOWS_ENROLLMENTS         devices prepared for the measured enrollment phase (default 1500)
 *   BENCH_WINDOWS_ENROLL_CONCURRENCY  devices enrolling at once (default 16)
 *   BENCH_WINDOWS_ENROLL_ROUND        enrollments per round (default 250)
 *   BENCH_WINDOWS_KEYS                RSA-2048 keys in the devices' key pool (default 8)
 *   BENCH_WINDOWS_SESSION_DEVICES     enrolled devices that run OMA-DM sessions (default 500)
 *   BENCH_WINDOWS_CONCURRENCY         concurrent sessions (default 32)
 *   BENCH_WINDOWS_SECONDS             measured time of each phase (default 8)
 *   BENCH_WINDOWS_MAX_ROUNDS          upper bound on rounds per phase (default 100)
 *   BENCH_WINDOWS_PROFILE             1: after the measured phases, profile extra rounds of enrollments and
 *                                     of 2-round-trip sessions (V8 sampling profiler on their timed parts
 *                                     only) and print where the main thread spends its time
 *   MOORING_DB_POOL_MAX               the runtime's pool, as in production (default 20)
 *
 * Only the requests are timed: preparing devices (keys, CSRs, messages), queueing commands and
 * checking answers happen between rounds. The floor runs before and after each Mooring phase; the
 * higher rate is used, so drift cannot flatter the ratio.
 */
import { databaseSettings, positiveInt } from '../lib/settings';
import crypto from 'node:crypto';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { closeQuietly, onDatabase, runMain } from '../lib/entry';
import { better as betterOf } from '../lib/floors';
import { loadAverage, machine, postgresInfo, shuffle } from '../lib/host';
import { progress } from '../lib/log';
import { ProblemLog } from '../lib/problems';
import { playRounds, ProcessMeter, type PhaseLimits } from '../lib/rounds';
import { MainThreadProfiler } from '../apple/profile';
import { pct } from '../lib/section';
import { checksLine, printSummary } from '../lib/summary';
import { latencyMs, round } from '../lib/stats';
import { LoadClient, type ChainResult, type LoadRequest, type SessionOutcome } from './client';
import { BenchDevice } from './device';
import { startFloor, type CannedSyncMl, type FloorServer } from './floor';
import { writeReport, type PhaseStats, type WindowsBenchResults } from './report';
import { startWindowsRuntime, type WindowsRuntime } from './runtime';

export const TARGET_ENROLLMENTS_PER_SECOND = 200;
export const TARGET_RATIO = 0.3;
const WARM_ENROLLMENTS = 100;
const SOAP = 'application/soap+xml; charset=utf-8';
const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
/** The whole run's upper bound: past it the process says so and exits, whatever is still running. */
const WATCHDOG_MS = 15 * 60_000;

type CommandKind = 'restart' | 'device_info';

interface Settings {
  profile: boolean;
  databaseUrl?: string;
  poolMax?: string;
  enrollments: number;
  enrollConcurrency: number;
  enrollRound: number;
  keys: number;
  sessionDevices: number;
  concurrency: number;
  seconds: number;
  maxRounds: number;
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  const int = (name: string, fallback: number) => positiveInt(env, name, fallback);
  return {
    ...databaseSettings(env),
    enrollments: int('BENCH_WINDOWS_ENROLLMENTS', 1500),
    enrollConcurrency: int('BENCH_WINDOWS_ENROLL_CONCURRENCY', 16),
    enrollRound: int('BENCH_WINDOWS_ENROLL_ROUND', 250),
    keys: int('BENCH_WINDOWS_KEYS', 8),
    sessionDevices: int('BENCH_WINDOWS_SESSION_DEVICES', 500),
    concurrency: int('BENCH_WINDOWS_CONCURRENCY', 32),
    seconds: int('BENCH_WINDOWS_SECONDS', 8),
    maxRounds: int('BENCH_WINDOWS_MAX_ROUNDS', 100),
    profile: process.env.BENCH_WINDOWS_PROFILE === '1',
  };
}

async function main(): Promise<number> {
  const s = readSettings(process.env);
  let rt: WindowsRuntime | undefined;
  let floor: FloorServer | undefined;
  let client: LoadClient | undefined;
  return onDatabase(
    s.databaseUrl,
    async (database) => {
      rt = await startWindowsRuntime({ databaseUrl: database.url, poolMax: s.poolMax, singleProcess: database.server === 'embedded' });
      floor = await startFloor(rt.tls);
      client = new LoadClient(rt.tls.caPem);
      progress(`Mooring on ${rt.url} (pool max ${rt.m.config.dbPoolMax}, queue ${rt.m.queues.kind}); floor on port ${floor.port}`);
      const results = await runBench(rt, floor, client, database.server, s);
      writeReport(path.join(__dirname, 'REPORT.md'), results);
      printResults(results);
      return results.checks.ok ? 0 : 1;
    },
    () => closeQuietly(client, floor, rt),
  );
}

interface Prepared {
  device: BenchDevice;
  requests: LoadRequest[];
}

async function runBench(rt: WindowsRuntime, floor: FloorServer, client: LoadClient, server: 'external' | 'embedded', s: Settings): Promise<WindowsBenchResults> {
  const loadStart = loadAverage();
  const { m } = rt;
  const ledger = new Ledger();

  // ---- setup (not timed): the token, the key pool, the devices and their three messages ----
  const t0 = performance.now();
  const token = await createToken(rt);
  const keyPool = Array.from({ length: s.keys }, () => crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']) as Promise<crypto.webcrypto.CryptoKeyPair>);
  await Promise.all(keyPool);
  const total = WARM_ENROLLMENTS + s.enrollments;
  const prepared: Prepared[] = [];
  for (let i = 0; i < total; i += 64) {
    const batch = Array.from({ length: Math.min(64, total - i) }, (_, j) => prepare(new BenchDevice({ baseUrl: rt.url, caPem: rt.tls.caPem }, keyPool[(i + j) % keyPool.length]), token));
    prepared.push(...(await Promise.all(batch)));
  }
  const prepareSeconds = (performance.now() - t0) / 1000;
  progress(`setup: ${prepared.length} devices prepared (${s.keys} RSA keys, ${prepared.length} CSRs and message sets) in ${prepareSeconds.toFixed(1)} s`);

  // ---- enrollments ----
  const enrolled: BenchDevice[] = [];
  let cursor = 0;
  const enrollRound = (size: number, keepAll: (bodies: string[]) => void = () => undefined): Round => async (measure) => {
    const batch = prepared.slice(cursor, cursor + size);
    if (batch.length === 0) return undefined;
    cursor += batch.length;
    const r = await measure(() => client.chains(rt.port, s.enrollConcurrency, batch.map((p) => p.requests), true));
    const oks = await Promise.all(r.results.map((res, i) => verifyEnrollment(batch[i]!.device, res, token, ledger)));
    oks.forEach((ok, i) => ok && enrolled.push(batch[i]!.device));
    if (r.results[0]?.bodies?.length === 3) keepAll(r.results[0].bodies);
    return { elapsedMs: r.elapsedMs, results: r.results.map((res, i) => ({ ok: oks[i]!, ms: res.ms })) };
  };
  let floorCursor = 0;
  const floorEnrollRound: Round = async (measure) => {
    const batch = Array.from({ length: s.enrollRound }, () => prepared[floorCursor++ % prepared.length]!.requests);
    const r = await measure(() => client.chains(floor.port, s.enrollConcurrency, batch, false));
    return { elapsedMs: r.elapsedMs, results: r.results.map((res) => chainOk(res, ledger, 'floor enrollment')) };
  };

  // Warm-up (JIT, pools, connections); its first answers become the floor's canned bodies.
  await phase('warm-up: enrollments', { seconds: Infinity, maxRounds: 1 }, enrollRound(WARM_ENROLLMENTS, (b) => floor.setSoap({ 'Discovery.svc': b[0]!, 'Policy.svc': b[1]!, 'Enrollment.svc': b[2]! })));
  await phase('warm-up: floor enrollments', { seconds: Infinity, maxRounds: 1 }, floorEnrollRound);
  const enrollFloorBefore = await phase('floor enrollments (before)', s, floorEnrollRound);
  const enrollMooring = await phase('Mooring enrollments', s, enrollRound(s.enrollRound));
  const enrollFloorAfter = await phase('floor enrollments (after)', s, floorEnrollRound);
  const enrollFloor = better(enrollFloorBefore, enrollFloorAfter);
  if (s.profile) await profiled('Mooring enrollments', enrollRound(s.enrollRound));
  await enrollmentChecks(rt, enrolled.length, ledger);

  // ---- OMA-DM sessions ----
  const fleet = enrolled.slice(0, s.sessionDevices);
  await client.devices(await Promise.all(fleet.map((d) => d.state())));
  const mooringIdOf = await mooringIds(rt, fleet);
  await m.db.raw('ANALYZE devices, enrollments, commands');
  progress(`sessions: ${fleet.length} enrolled devices handed to the load client`);

  const canned = new Map<CommandKind, CannedSyncMl>();
  let kindCounter = 0;
  const nextKind = (): CommandKind => (kindCounter++ % 2 === 0 ? 'restart' : 'device_info');
  const sessionRound = (roundTrips: 1 | 2, capture = false): Round => async (measure) => {
    const kind = nextKind();
    const expected = await queueCommands(rt, fleet, mooringIdOf, kind, roundTrips);
    const order = shuffle(fleet.map((d) => d.deviceId));
    const r = await measure(() => client.sessions(rt.port, s.concurrency, order, roundTrips, capture));
    const first = r.results[0];
    if (capture && first?.bodies?.length === 2) canned.set(kind, { first: first.bodies[0]!, second: first.bodies[1]! });
    return { elapsedMs: r.elapsedMs, results: r.results.map((res) => ({ ok: ledger.session(res, expected, kind, roundTrips), ms: res.ms })) };
  };
  const floorSessionRound = (roundTrips: 1 | 2): Round => async (measure) => {
    const kind = nextKind();
    const c = canned.get(kind);
    if (!c) throw new Error(`no canned SyncML for ${kind}`);
    floor.setSyncMl(c);
    const order = shuffle(fleet.map((d) => d.deviceId));
    const r = await measure(() => client.sessions(floor.port, s.concurrency, order, roundTrips, false));
    return { elapsedMs: r.elapsedMs, results: r.results.map((res) => floorSessionOk(res, roundTrips, ledger)) };
  };

  // Warm-up: two 2-round-trip rounds (one of each kind) open every device's connection and give the
  // floor its canned replies; then one floor round of each shape.
  await phase('warm-up: sessions (2 round trips)', { seconds: Infinity, maxRounds: 2 }, sessionRound(2, true));
  await phase('warm-up: floor sessions', { seconds: Infinity, maxRounds: 2 }, floorSessionRound(1));
  // Statistics as autovacuum keeps them on a running server. The ANALYZE above saw an empty commands
  // table; plans cached from that (a hash join over the whole table for each batch of reports) would
  // measure a brand-new install's first minute, not a fleet's steady state. ANALYZE also drops them.
  await m.db.raw('ANALYZE commands, events');
  const f1Before = await phase('floor sessions, 1 round trip (before)', s, floorSessionRound(1));
  const f2Before = await phase('floor sessions, 2 round trips (before)', s, floorSessionRound(2));
  const s1 = await phase('Mooring sessions, 1 round trip', s, sessionRound(1));
  const s2 = await phase('Mooring sessions, 2 round trips', s, sessionRound(2));
  const f1After = await phase('floor sessions, 1 round trip (after)', s, floorSessionRound(1));
  const f2After = await phase('floor sessions, 2 round trips (after)', s, floorSessionRound(2));
  if (s.profile) await profiled('Mooring sessions, 2 round trips', sessionRound(2));
  await sessionChecks(rt, ledger);

  const f1 = better(f1Before, f1After);
  const f2 = better(f2Before, f2After);
  const enrollRatio = enrollMooring.ops_per_second / enrollFloor.ops_per_second;
  const r1 = s1.ops_per_second / f1.ops_per_second;
  const r2 = s2.ops_per_second / f2.ops_per_second;
  return {
    date: new Date().toISOString(),
    machine: machine(),
    load_average: { start: loadStart, end: loadAverage() },
    database: { server, ...(await postgresInfo(m.db)), pool_max: m.config.dbPoolMax },
    settings: {
      enroll_concurrency: s.enrollConcurrency,
      enroll_round: s.enrollRound,
      enrollments_prepared: prepared.length,
      key_pool: s.keys,
      session_devices: fleet.length,
      concurrency: s.concurrency,
      seconds: s.seconds,
      max_rounds: s.maxRounds,
    },
    prepare_seconds: round(prepareSeconds, 1),
    enroll: {
      floor_runs: [enrollFloorBefore, enrollFloorAfter],
      floor: enrollFloor,
      mooring: enrollMooring,
      ratio: round(enrollRatio, 4),
      target_per_second: TARGET_ENROLLMENTS_PER_SECOND,
      pass: enrollMooring.ops_per_second >= TARGET_ENROLLMENTS_PER_SECOND,
    },
    sessions: [
      { round_trips: 1, floor_runs: [f1Before, f1After], floor: f1, mooring: s1, ratio: round(r1, 4), pass: r1 >= TARGET_RATIO },
      { round_trips: 2, floor_runs: [f2Before, f2After], floor: f2, mooring: s2, ratio: round(r2, 4), pass: r2 >= TARGET_RATIO },
    ],
    target_ratio: TARGET_RATIO,
    checks: {
      ok: ledger.problems === 0,
      enrolled: enrolled.length,
      sessions: ledger.sessions,
      commands_seen: ledger.seen.size,
      problems: ledger.samples,
      problem_count: ledger.problems,
    },
  };
}

/** Extra rounds with V8's sampling profiler on during their timed parts; the summary is printed, not reported. */
async function profiled(name: string, playRound: Round): Promise<void> {
  const profiler = await MainThreadProfiler.open();
  const stats = await phase(`profiled: ${name}`, { seconds: 3, maxRounds: 10 }, (measure) =>
    playRound(async (part) => {
      await profiler.begin();
      try {
        return await measure(part);
      } finally {
        await profiler.end();
      }
    }),
  );
  const p = await profiler.close(name.replace(/\W+/g, '-'), stats.ops);
  progress(`profile (${name}): ${p.busy_ms_per_op} ms main-thread time per op; ${p.file}`);
  for (const [title, rows] of [['groups', p.groups], ['steps', p.steps], ['areas', p.areas], ['functions', p.functions], ['statements', p.statements]] as const) {
    progress(`  ${title}: ${rows.slice(0, 10).map((x) => `${x.key.replace(/`/g, '').slice(0, 70)} ${x.ms_per_op}`).join(' | ')}`);
  }
}

// ---- setup ----

async function createToken(rt: WindowsRuntime): Promise<string> {
  const body = await adminPost(rt, '/api/v1/enrollment-tokens', { platform: 'windows', max_uses: 100_000 });
  return body.token as string;
}

/** The admin API over the same HTTPS listener (no client certificate, the bearer token). */
async function adminPost(rt: WindowsRuntime, p: string, body: unknown): Promise<Record<string, unknown>> {
  const device = new BenchDevice({ baseUrl: rt.url, caPem: rt.tls.caPem });
  const res = await device.request('POST', `${rt.url}${p}`, {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${rt.adminToken}` },
    body: JSON.stringify(body),
  });
  if (res.status < 200 || res.status >= 300) throw new Error(`POST ${p} answered ${res.status}: ${res.body}`);
  return JSON.parse(res.body) as Record<string, unknown>;
}

/** The device builds its three messages (a real CSR included); they are captured, not sent. */
async function prepare(device: BenchDevice, token: string): Promise<Prepared> {
  const requests: LoadRequest[] = [];
  device.transport = async (method, url, opts) => {
    if (method === 'POST') {
      const u = new URL(url);
      const body = opts.body === undefined ? '' : Buffer.isBuffer(opts.body) ? opts.body.toString('utf8') : opts.body;
      requests.push({ path: `${u.pathname}${u.search}`, headers: { host: u.host, ...opts.headers }, body });
    }
    return { status: 0, body: '' };
  };
  await device.discover('9.0');
  await device.getPolicies({ password: token });
  await device.enroll({ password: token });
  device.transport = undefined;
  if (requests.length !== 3) throw new Error(`captured ${requests.length} enrollment messages, expected 3`);
  return { device, requests };
}

/** The device reads Mooring's enrollment answer as it would have on the wire: checks and installs the provisioning document. */
async function verifyEnrollment(device: BenchDevice, res: ChainResult, token: string, ledger: Ledger): Promise<boolean> {
  if (!chainOk(res, ledger, 'enrollment').ok) return false;
  const body = res.bodies?.[2] ?? '';
  device.transport = async () => ({ status: 200, contentType: SOAP, body });
  try {
    const answer = await device.enroll({ password: token });
    if (!answer.provisioning) {
      ledger.problem(`enrollment of ${device.deviceId} gave no provisioning document${answer.fault ? ` (fault ${answer.fault.subcode})` : ''}`);
      return false;
    }
    return true;
  } catch (err) {
    ledger.problem(`device ${device.deviceId} refused its enrollment: ${(err as Error).message.slice(0, 200)}`);
    return false;
  } finally {
    device.transport = undefined;
  }
}

function chainOk(res: ChainResult, ledger: Ledger, what: string): { ok: boolean; ms: number } {
  const ok = !res.error && res.statuses.length === 3 && res.statuses.every((st) => st === 200);
  if (!ok) ledger.problem(`${what} answered ${res.statuses.join(',') || 'nothing'}${res.error ? ` (${res.error})` : ''}`);
  return { ok, ms: res.ms };
}

async function mooringIds(rt: WindowsRuntime, fleet: BenchDevice[]): Promise<Map<string, string>> {
  const { rows } = await rt.m.db.raw<{ rows: Array<{ device_id: string; channel_key: string }> }>(
    `SELECT device_id, channel_key FROM enrollments WHERE platform = 'windows' AND status = 'enrolled'`,
  );
  const byKey = new Map(rows.map((r) => [r.channel_key, r.device_id]));
  const out = new Map<string, string>();
  for (const d of fleet) {
    const id = byKey.get(d.deviceId);
    if (!id) throw new Error(`device ${d.deviceId} has no live enrollment`);
    out.set(d.deviceId, id);
  }
  return out;
}

const batches: Array<{ id: string; roundTrips: 1 | 2 }> = [];

/** One command per device through the bulk path; returns DeviceID -> the command id queued for it. */
async function queueCommands(rt: WindowsRuntime, fleet: BenchDevice[], mooringIdOf: Map<string, string>, kind: CommandKind, roundTrips: 1 | 2): Promise<Map<string, string>> {
  const bulk = await rt.m.commands.enqueueBulk(
    fleet.map((d) => mooringIdOf.get(d.deviceId)!),
    { type: kind },
    'bench',
  );
  if (bulk.rejected.length > 0) throw new Error(`enqueueBulk rejected ${bulk.rejected.length} devices: ${JSON.stringify(bulk.rejected[0])}`);
  const { rows } = await rt.m.db.raw<{ rows: Array<{ id: string; device_id: string }> }>('SELECT id, device_id FROM commands WHERE batch_id = ?', [bulk.batch_id]);
  if (rows.length !== fleet.length) throw new Error(`batch ${bulk.batch_id} holds ${rows.length} commands, expected ${fleet.length}`);
  batches.push({ id: bulk.batch_id, roundTrips });
  const byMooringId = new Map(rows.map((r) => [r.device_id, r.id]));
  return new Map(fleet.map((d) => [d.deviceId, byMooringId.get(mooringIdOf.get(d.deviceId)!)!]));
}

// ---- measurement ----

interface JobResult {
  ok: boolean;
  ms: number;
}
/** Wraps the timed part of a round (the requests), leaving its setup outside. */
type Measure = <T>(timedPart: () => Promise<T>) => Promise<T>;
/** One round, or undefined when there is nothing left to play. */
type Round = (measure: Measure) => Promise<{ elapsedMs: number; results: JobResult[] } | undefined>;

/** Rounds until `seconds` of round time are measured (or maxRounds, or the round says it is done). */
async function phase(name: string, s: PhaseLimits, playRound: Round): Promise<PhaseStats> {
  const meter = new ProcessMeter();
  const measure: Measure = (timedPart) => meter.measure(timedPart);
  const { measuredMs, rounds, latencies, errors } = await playRounds(s, () => playRound(measure), (res) => res.ok);
  const seconds = measuredMs / 1000;
  const stats: PhaseStats = {
    name,
    rounds,
    ops: latencies.length + errors,
    errors,
    seconds: round(seconds),
    ops_per_second: round(latencies.length / (seconds || 1), 1),
    latency_ms: latencyMs(latencies),
    main_loop_utilization: round(meter.loopShare, 3),
    cpu_ms_per_op: round(meter.cpuMicros / 1000 / Math.max(1, latencies.length + errors), 3),
  };
  progress(
    `${name}: ${stats.ops_per_second}/s over ${stats.seconds} s (${rounds} rounds, ${stats.ops} jobs, ${errors} errors), ` +
      `p50 ${stats.latency_ms.p50} ms, p99 ${stats.latency_ms.p99} ms, server loop busy ${(stats.main_loop_utilization * 100).toFixed(0)}%, ` +
      `${stats.cpu_ms_per_op} ms Node CPU per job`,
  );
  return stats;
}

function better(a: PhaseStats, b: PhaseStats): PhaseStats {
  return betterOf(a, b, (p) => p.ops_per_second);
}

// ---- correctness ----

class Ledger extends ProblemLog {
  readonly seen = new Set<string>();
  sessions = 0;

  /** A Mooring session: every exchange 200 with header status 200, exactly the device's own command, once. */
  session(res: SessionOutcome, expected: Map<string, string>, kind: CommandKind, roundTrips: 1 | 2): boolean {
    this.sessions += 1;
    const before = this.problems;
    const who = `session of ${res.deviceId}`;
    if (res.error) this.problem(`${who} failed: ${res.error}`);
    else if (res.statuses.length !== roundTrips || res.statuses.some((st) => st !== 200)) this.problem(`${who} answered ${res.statuses.join(',')}, expected ${roundTrips} x 200`);
    else if (res.headerStatuses.some((h) => h !== '200')) this.problem(`${who} had header statuses ${res.headerStatuses.join(',')}`);
    const want = expected.get(res.deviceId);
    if (res.commands.length !== 1) {
      this.problem(`${who} got ${res.commands.length} commands, expected 1 (${want})`);
    } else {
      const [cmd] = res.commands as [SessionOutcome['commands'][number]];
      if (cmd.cmdId !== want) this.problem(`${who} got command ${cmd.cmdId}, expected ${want}`);
      const kindOk = kind === 'restart' ? cmd.kind === 'Exec' && cmd.targets.every((t) => t.endsWith('/Reboot/RebootNow')) : cmd.kind === 'Get' && cmd.targets.length > 0;
      if (!kindOk) this.problem(`${who}: ${kind} came as ${cmd.kind} ${cmd.targets.join(' ')}`);
      if (this.seen.has(cmd.cmdId)) this.problem(`command ${cmd.cmdId} handed out twice`);
      this.seen.add(cmd.cmdId);
      if (res.answered[0] !== '200') this.problem(`${who}: the device answered ${res.answered[0]}`);
    }
    return this.problems === before;
  }
}

function floorSessionOk(res: SessionOutcome, roundTrips: 1 | 2, ledger: Ledger): JobResult {
  const ok = !res.error && res.statuses.length === roundTrips && res.statuses.every((st) => st === 200) && res.commands.length === 1;
  if (!ok) ledger.problem(`floor session answered ${res.statuses.join(',') || 'nothing'} with ${res.commands.length} commands${res.error ? ` (${res.error})` : ''}`);
  return { ok, ms: res.ms };
}

/** The database holds exactly the enrollments the devices accepted, and the token counts them. */
async function enrollmentChecks(rt: WindowsRuntime, enrolled: number, ledger: Ledger): Promise<void> {
  const { rows } = await rt.m.db.raw<{ rows: Array<{ enrollments: number; devices: number; uses: number }> }>(
    `SELECT (SELECT count(*)::int FROM enrollments WHERE platform = 'windows' AND status = 'enrolled' AND cert_sha256 IS NOT NULL) AS enrollments,
            (SELECT count(*)::int FROM devices WHERE platform = 'windows' AND status = 'enrolled') AS devices,
            (SELECT coalesce(sum(uses), 0)::int FROM enrollment_tokens WHERE platform = 'windows') AS uses`,
  );
  const r = rows[0]!;
  if (r.enrollments !== enrolled) ledger.problem(`${r.enrollments} Windows enrollments in the table, ${enrolled} accepted by devices`);
  if (r.devices !== enrolled) ledger.problem(`${r.devices} enrolled Windows devices in the table, ${enrolled} accepted by devices`);
  if (r.uses !== enrolled) ledger.problem(`the token counts ${r.uses} uses for ${enrolled} enrollments`);
}

/** What the table says: 2-round-trip commands acknowledged, 1-round-trip ones sent once, none left queued. */
async function sessionChecks(rt: WindowsRuntime, ledger: Ledger): Promise<void> {
  for (const roundTrips of [1, 2] as const) {
    const ids = batches.filter((b) => b.roundTrips === roundTrips).map((b) => b.id);
    if (ids.length === 0) continue;
    const want = roundTrips === 2 ? 'acknowledged' : 'sent';
    const { rows } = await rt.m.db.raw<{ rows: Array<{ total: number; good: number; attempts_not_1: number }> }>(
      `SELECT count(*)::int AS total,
              count(*) FILTER (WHERE status = ?)::int AS good,
              count(*) FILTER (WHERE attempts <> 1)::int AS attempts_not_1
         FROM commands WHERE batch_id = ANY(?::uuid[])`,
      [want, ids],
    );
    const r = rows[0]!;
    if (r.good !== r.total) ledger.problem(`${r.total - r.good} of ${r.total} ${roundTrips}-round-trip commands are not ${want}`);
    if (r.attempts_not_1 > 0) ledger.problem(`${r.attempts_not_1} commands have attempts other than 1`);
  }
}

// ---- summary ----

function printResults(r: WindowsBenchResults): void {
  const e = r.enroll;
  printSummary([
    `windows enrollments (discover + policy + enroll, ${r.settings.enroll_concurrency} at a time, HTTPS keep-alive):`,
    `  Mooring    ${e.mooring.ops_per_second} enrollments/s (p50 ${e.mooring.latency_ms.p50} ms, p99 ${e.mooring.latency_ms.p99} ms per enrollment)`,
    `  floor      ${e.floor.ops_per_second} /s (bare express + canned SOAP; runs ${e.floor_runs.map((f) => f.ops_per_second).join(' / ')}, higher used); Mooring at ${pct(e.ratio)}`,
    `  target     ${e.target_per_second}/s -> ${e.pass ? 'PASS' : 'FAIL'}`,
    `windows OMA-DM sessions, one command each, ${r.settings.session_devices} devices, ${r.settings.concurrency} at a time, client certificates:`,
    ...r.sessions.map(
      (x) =>
        `  ${x.round_trips} RT       ${x.mooring.ops_per_second} sessions/s vs floor ${x.floor.ops_per_second} (runs ${x.floor_runs.map((f) => f.ops_per_second).join(' / ')}) = ${pct(x.ratio)} -> ${x.pass ? 'PASS' : 'FAIL'} (target >= ${pct(r.target_ratio)})`,
    ),
    checksLine(r.checks, `ok: ${r.checks.enrolled} enrollments verified by the device; ${r.checks.sessions} sessions each got exactly its own command, none twice`),
    '  report     bench/windows/REPORT.md',
  ]);
}

runMain('bench:windows', main, WATCHDOG_MS);
