/**
 * bench/apple/REPORT.md: one generated section between markers, replaced on each run; text outside the
 * markers (notes written by hand) is kept.
 */
import { pct, writeSection } from '../lib/section';
import type { CpuDelta } from './cpu';
import type { ProfileSummary } from './profile';

export interface PhaseStats {
  name: string;
  rounds: number;
  ops: number;
  errors: number;
  /** Sum of the rounds' wall time (the untimed pauses between rounds are not counted). */
  seconds: number;
  ops_per_second: number;
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  /** Share of this process's main thread (the server's event loop) that was busy during the rounds. */
  main_loop_utilization: number;
  /** The whole machine during the rounds: share of all CPUs busy, and stolen by the hypervisor. */
  machine: { busy: number; steal: number };
  /** CPU seconds over the rounds. */
  cpu_seconds: CpuDelta;
  /** The same per operation, in ms. */
  cpu_ms_per_op: CpuDelta;
}

export interface PushRun {
  kind: 'floor' | 'mooring';
  devices: number;
  /** From the start (the admin request, or the first send) until the mock had accepted every push. */
  seconds: number;
  pushes_per_second: number;
  /** Mooring only: when the bulk request was answered (202), and when the first push arrived, ms. */
  accepted_ms?: number;
  first_push_ms?: number;
  /** CPU over the run, ms per push: this process (server + mock APNs + bare sender) and Postgres/Redis. */
  cpu_ms_per_push: CpuDelta;
}

/** One phase of micromdm's scepserver: the shared figures, and its own process's CPU. */
export interface MicromdmRun extends PhaseStats {
  /** scepserver's process (utime + stime over the rounds' timed parts), ms per certificate. */
  cpu_ms_per_cert: number;
}

/** What "beats micromdm" is judged against: scepserver measured in this run, or the issue's constant. */
export type MicromdmYardstick =
  | {
      source: 'measured';
      version: string;
      /** Before and after Mooring's phase. */
      runs: MicromdmRun[];
      /** The run with the lower CPU per certificate (the harder one to beat). */
      used: MicromdmRun;
      cpu_ms_per_cert: number;
      /** PKCSReqs sent to it, and certificates the device check accepted; warm-up included. */
      requests: number;
      certificates: number;
      /** Requests it refused for its own serial-file race (micromdm.ts, isSerialRace). */
      refused_by_race: number;
      /** Valid certificates in its depot at the end, and serial numbers issued more than once. */
      depot_certificates: number;
      repeated_serials: number;
      /** The CertReps' envelope ciphers. */
      cert_rep_encryption: string[];
    }
  | { source: 'constant'; cpu_ms_per_cert: number; install: string };

export interface AppleBenchResults {
  date: string;
  /** The code measured: commit, uncommitted changes to src/protocols/migrations, and whether that changed mid-run. */
  code: { commit: string; uncommitted: string[]; changed_during_run: boolean };
  machine: { cpus: number; cpu_model: string; memory_gib: number; os: string; node: string };
  load_average: { start: number[]; end: number[] };
  database: { server: 'external' | 'embedded'; version: string; synchronous_commit: string; pool_max: number };
  queue_backend: 'postgres' | 'redis';
  processes: { mooring_pid: number; client_pid: number; postmaster_pid?: number; redis_pid?: number };
  setup: { enrolled: number; enroll_seconds: number; seeded: number; seed_seconds: number };
  idle?: {
    devices: number;
    concurrency: number;
    body_bytes: number;
    signature_bytes: number;
    sign_ms_per_poll: number;
    floor_runs: PhaseStats[];
    floor: PhaseStats;
    mooring: PhaseStats;
    ratio: number;
    target_ratio: number;
    pass: boolean;
    nanomdm_cpu_ms: number;
    beats_nanomdm: boolean;
    profile?: ProfileSummary;
  };
  scep?: {
    concurrency: number;
    round_size: number;
    build_ms_per_message: number;
    floor_runs: PhaseStats[];
    floor: PhaseStats;
    mooring: PhaseStats;
    ratio: number;
    crypto_floor_ms: { decrypt: number; sign: number; per_certificate: number };
    micromdm: MicromdmYardstick;
    /** Mooring's server CPU per certificate below micromdm's (`micromdm.cpu_ms_per_cert`). */
    beats_micromdm: boolean;
    issued: number;
    profile?: ProfileSummary;
  };
  push?: {
    devices: number;
    max_in_flight: number;
    worker_concurrency: number;
    /** The worker ran on a thread of its own (MOORING_WORKER_THREAD, as `serve` runs it). */
    worker_thread: boolean;
    floor_runs: PushRun[];
    mooring_runs: PushRun[];
    floor: PushRun;
    mooring: PushRun;
    /** The verdict: the median of `paired_ratios`. */
    ratio: number;
    /** Each Mooring round's rate over the mean of the floor rounds just before and after it. */
    paired_ratios: number[];
    /** The median Mooring round over the best floor round (the stricter reading, reported beside). */
    strict_ratio: number;
    target_ratio: number;
    pass: boolean;
    failed_jobs: number;
    profile?: ProfileSummary;
  };
  checks: { ok: boolean; problems: string[]; problem_count: number; notes: string[] };
}

const HEADER = `# Apple MDM benchmark

Generated by \`npm run bench:apple\` (\`bench/apple/run.ts\`). Each run replaces the section for its setup
(database server x queue backend) and leaves the others; notes outside the markers are kept.
`;

export function writeReport(file: string, r: AppleBenchResults): void {
  const key = `${r.database.server}-postgres_${r.queue_backend}-queue`;
  const START = `<!-- bench-apple:${key}:start -->`;
  const END = `<!-- bench-apple:${key}:end -->`;
  writeSection(file, START, END, HEADER, render(r));
}

const ms = (x: number) => x.toFixed(3);

function phaseRow(label: string, p: PhaseStats, vs: string): string {
  const c = p.cpu_ms_per_op;
  return (
    `| ${label} | ${p.ops_per_second} | ${p.ops} | ${p.errors} | ${p.seconds} | ${p.latency_ms.p50} | ${p.latency_ms.p99} | ${pct(p.main_loop_utilization)} | ${pct(p.machine.busy)} | ` +
    `**${ms(c.server)}** | ${ms(c.mooring)} | ${ms(c.pg_ours)} | ${ms(c.redis)} | ${ms(c.client)} | ${vs} |`
  );
}

const PHASE_HEAD = [
  '| measurement | per s | ops | errors | s | p50 ms | p99 ms | server loop busy | machine busy | server CPU ms/op | Mooring | Postgres | Redis | client | vs floor |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
];

function floorVs(run: PhaseStats, used: PhaseStats): string {
  return run === used ? '1.00 (used)' : pct(run.ops_per_second / used.ops_per_second);
}

function profileLines(p: ProfileSummary | undefined, unit: string, one: string): string[] {
  if (!p) return [];
  const table = (head: string, rows: ProfileSummary['steps']) => [
    `| ${head} | ms per ${one} | share |`,
    '|---|---:|---:|',
    ...rows.map((x) => `| ${x.key.replace(/\|/g, '\\|')} | ${ms(x.ms_per_op)} | ${pct(x.share)} |`),
  ];
  return [
    `Where the server's main thread spends its time: a profile of ${p.ops} ${unit} (extra rounds with V8's sampling profiler on during their timed parts only, not counted above; ` +
      `${p.wall_ms} ms sampled; largest round's profile: \`${p.file}\`). ${ms(p.busy_ms_per_op)} ms of main-thread time per ${one} (the profiler itself slows it somewhat: compare shares, not absolutes), ` +
      'in groups (each sample classified by its whole stack), by the innermost Mooring frame, by code area, and by function (self time):',
    '',
    ...table('group', p.groups),
    '',
    ...table('innermost Mooring step (library calls below it included)', p.steps),
    '',
    ...table('code area', p.areas),
    '',
    ...table('function', p.functions),
    '',
    `SQL statements sent during those rounds (every pg client of the process: Mooring's pools and BullMQ's): **${p.statements_per_op} per ${one}**.`,
    '',
    `| statement | per ${one} | share |`,
    '|---|---:|---:|',
    ...p.statements.map((x) => `| \`${x.key.replace(/\|/g, '\\|').replace(/`/g, "'")}\` | ${x.ms_per_op} | ${pct(x.share)} |`),
  ];
}

function pushRow(label: string, p: PushRun, ...vs: string[]): string {
  const c = p.cpu_ms_per_push;
  const stage = p.kind === 'mooring' ? `${p.accepted_ms ?? '-'} / ${p.first_push_ms ?? '-'}` : '-';
  return `| ${label} | ${p.seconds.toFixed(3)} | ${p.pushes_per_second} | ${stage} | ${ms(c.mooring)} | ${ms(c.pg_ours)} | ${ms(c.redis)} | ${vs.join(' | ')} |`;
}

function render(r: AppleBenchResults): string {
  const server = r.database.server === 'external' ? 'external Postgres (DATABASE_URL)' : 'embedded Postgres';
  return [
    `## Run ${r.date}`,
    '',
    `- Code: commit ${r.code.commit}${r.code.uncommitted.length > 0 ? ` with uncommitted changes to ${r.code.uncommitted.join(', ')}` : ', no uncommitted changes to src/, protocols/ or migrations/'}` +
      (r.code.changed_during_run ? '. **The code changed during the run: the figures mix versions.**' : ''),
    `- Machine: ${r.machine.cpus} CPUs (${r.machine.cpu_model}), ${r.machine.memory_gib} GiB RAM, ${r.machine.os}, Node ${r.machine.node}`,
    `- Database: ${server}, ${r.database.version.split(' on ')[0]}; synchronous_commit=${r.database.synchronous_commit}; Mooring pool ${r.database.pool_max}; queue backend: ${r.queue_backend === 'redis' ? 'Redis (REDIS_URL)' : 'BullMQ on Postgres'}`,
    `- Load average (1/5/15 min) at start: ${r.load_average.start.join(' / ')}; at end: ${r.load_average.end.join(' / ')}`,
    `- Processes: Mooring, its HTTPS listener, the floors and the mock APNs in the bench process (pid ${r.processes.mooring_pid}); the load client in a child process (pid ${r.processes.client_pid}); ` +
      `Postgres postmaster pid ${r.processes.postmaster_pid ?? '?'}${r.processes.redis_pid ? `; redis-server pid ${r.processes.redis_pid}` : ''}. All on the same ${r.machine.cpus} cores.`,
    `- Setup, not timed: ${r.setup.enrolled} simulated iPhones enrolled over HTTPS (signed profile, SCEP, Authenticate, TokenUpdate; one shared RSA key pair, each its own certificate) in ${r.setup.enroll_seconds} s; ` +
      `${r.setup.seeded.toLocaleString('en-US')} enrolled Apple devices inserted in bulk SQL for the push measurement in ${r.setup.seed_seconds} s.`,
    '',
    'Server CPU = this process (`process.cpuUsage()`, all threads) + the Postgres backends of the bench database and the server\'s shared helpers (checkpointer, background writer, WAL writer; `/proc/<pid>/stat`) + Redis (`INFO cpu`) when REDIS_URL is set. ' +
      'The client column is the load client\'s process, which competes for the same cores. "Server loop busy" is the main thread\'s event-loop utilization.',
    '',
    ...(r.idle ? idleSection(r, r.idle) : []),
    ...(r.push ? pushSection(r.push) : []),
    ...(r.scep ? scepSection(r.scep) : []),
    `Correctness: ${
      r.checks.ok
        ? 'every Idle poll answered an empty 200 and every polled device was marked seen; every push reached the mock once, to its token, with its own PushMagic, the certificate\'s topic, push type mdm and priority 10, and nothing else did; ' +
          `every CertRep was accepted by its device and the ${r.scep?.issued ?? 0} certificates are recorded in \`issued_certificates\`.`
        : `**FAILED** (${r.checks.problem_count} problems): ${r.checks.problems.join('; ')}`
    }`,
    ...(r.checks.notes.length > 0 ? ['', ...r.checks.notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
}

function idleSection(r: AppleBenchResults, i: NonNullable<AppleBenchResults['idle']>): string[] {
  return [
    `### 1. Idle polls with \`Mdm-Signature\`: ${i.devices} enrolled devices, ${i.concurrency} at a time, nothing queued`,
    '',
    `A round is one \`PUT /mdm/connect\` \`{UDID, Status: Idle}\` per device (${i.body_bytes}-byte body, ${i.signature_bytes}-byte \`Mdm-Signature\` header), in a shuffled order, over keep-alive HTTPS without client certificates. ` +
      `Before each Mooring round the client signs every body afresh (untimed, ${ms(i.sign_ms_per_poll)} ms per poll in the client). Mooring verifies the signature on every poll; the certificate's binding, last seen and the queue come from the database when the device's remembered "nothing queued" does not hold (\`MOORING_IDLE_CACHE\`: ${r.database.server === 'embedded' ? 'one process, generation in memory, as `npm start` runs' : 'generation in Redis when REDIS_URL is set, else off'}; a device reaches the database at least every 30 s, when its last seen is due): an empty 200. ` +
      'The floor gets the same requests (the last signed set, replayed; it reads nothing) and answers an empty 200.',
    '',
    ...PHASE_HEAD,
    phaseRow('floor (before): express 5 + `express.raw()`, empty 200', i.floor_runs[0]!, floorVs(i.floor_runs[0]!, i.floor)),
    phaseRow('**Mooring Idle polls**', i.mooring, `**${pct(i.ratio)}**`),
    phaseRow('floor (after)', i.floor_runs[1]!, floorVs(i.floor_runs[1]!, i.floor)),
    '',
    `Target: Idle polls at ${pct(i.target_ratio)} of the floor or more: **${i.pass ? 'PASS' : 'MISS'}** (${pct(i.ratio)}).`,
    `Server CPU per poll: **${ms(i.mooring.cpu_ms_per_op.server)} ms** (Mooring ${ms(i.mooring.cpu_ms_per_op.mooring)} + Postgres ${ms(i.mooring.cpu_ms_per_op.pg_ours)}${r.queue_backend === 'redis' ? ` + Redis ${ms(i.mooring.cpu_ms_per_op.redis)}` : ''}); ` +
      `NanoMDM on Postgres: about ${i.nanomdm_cpu_ms} ms: **${i.beats_nanomdm ? 'beats it' : 'does not beat it'}**. The floor costs ${ms(i.floor.cpu_ms_per_op.server)} ms per request.`,
    '',
    ...profileLines(i.profile, 'polls', 'poll'),
    '',
  ];
}

function pushSection(pu: NonNullable<AppleBenchResults['push']>): string[] {
  return [
    `### 2. \`lock\` to ${pu.devices.toLocaleString('en-US')} enrolled devices: until every push reached the mock APNs`,
    '',
    `Mooring: from \`POST /api/v1/commands\` (${pu.devices.toLocaleString('en-US')} device_ids, type lock; admin token, same HTTPS listener) until the mock had answered 200 to one push per device; ` +
      `the worker runs in-process, ${pu.worker_thread ? 'on a thread of its own as `serve` runs it' : 'on the request thread (MOORING_WORKER_THREAD=false)'} (push concurrency ${pu.worker_concurrency}), one HTTP/2 connection to the mock, at most ${pu.max_in_flight} pushes in flight. ` +
      `Floor: a bare \`@parse/node-apn\` Provider with the same certificate and CA, the same notification, ${pu.max_in_flight} sends in flight over ${pu.devices.toLocaleString('en-US')} tokens, until the mock had answered them all. ` +
      'Floor and Mooring rounds alternate. Each Mooring round is compared with the mean of the floor rounds just before and after it (a pair shares its minute: on this host the floor alone drifts by more than the margin tested), and the median of those ratios is the verdict; the median Mooring round against the best floor round is shown beside it. ' +
      'The mock APNs runs in this process, so its CPU is in the "this process" column of both.',
    '',
    '| run | s | pushes/s | Mooring: 202 ms / first push ms | this process CPU ms/push | Postgres | Redis | vs neighbouring floors | vs best floor |',
    '|---|---:|---:|---|---:|---:|---:|---:|---:|',
    ...interleave(pu.floor_runs, pu.mooring_runs).map((p) =>
      pushRow(
        p.kind === 'floor' ? 'floor: bare node-apn loop' : '**Mooring**',
        p,
        p.kind === 'floor' ? '-' : pct(pu.paired_ratios[pu.mooring_runs.indexOf(p)]!),
        p === pu.floor ? '1.00 (best)' : pct(p.pushes_per_second / pu.floor.pushes_per_second),
      ),
    ),
    '',
    `Target: Mooring at ${pct(pu.target_ratio)} of the bare rate or more: **${pu.pass ? 'PASS' : 'MISS'}** (median of the paired ratios ${pct(pu.ratio)}; ` +
      `median Mooring round against the best floor round: ${pct(pu.strict_ratio)}, ${pu.mooring.seconds.toFixed(2)} s against ${pu.floor.seconds.toFixed(2)} s).` +
      (pu.failed_jobs > 0 ? ` ${pu.failed_jobs} push jobs failed.` : ''),
    '',
    ...profileLines(pu.profile, 'pushes', 'push'),
    '',
  ];
}

function scepSection(sc: NonNullable<AppleBenchResults['scep']>): string[] {
  const mdm = sc.micromdm;
  const verdict = `**${sc.beats_micromdm ? 'beats it' : 'does not beat it'}**`;
  const measured = mdm.source === 'measured' ? mdm : undefined;
  const mdmRow = (k: number, when: string) => {
    const run = measured?.runs[k];
    return run ? [micromdmRow(`micromdm scepserver (${when}${run === measured?.used ? ', used' : ''})`, run)] : [];
  };
  return [
    `### 3. SCEP: certificates issued per second, 2048-bit CA, ${sc.concurrency} requests at a time`,
    '',
    `A round is ${sc.round_size} PKCSReq messages, each with its own challenge (\`PgAppleStore.newChallenge\` on one multi-use enrollment token) and built by the simulator's ScepClient before the clock starts (${ms(sc.build_ms_per_message)} ms each in the client): ` +
      'only `POST /scep?operation=PKIOperation` is timed. Every CertRep is then checked as a device checks it (CA signature, transaction, nonce, a certificate for its key). ' +
      'The floor answers the same messages with a canned CertRep.',
    ...(measured ? ['', ...micromdmText(measured)] : []),
    '',
    ...PHASE_HEAD,
    phaseRow('floor (before): express 5 + `express.raw()`, canned CertRep', sc.floor_runs[0]!, floorVs(sc.floor_runs[0]!, sc.floor)),
    ...mdmRow(0, 'before'),
    phaseRow('**Mooring PKIOperation**', sc.mooring, pct(sc.ratio)),
    ...mdmRow(1, 'after'),
    phaseRow('floor (after)', sc.floor_runs[1]!, floorVs(sc.floor_runs[1]!, sc.floor)),
    '',
    `Certificates issued: **${sc.mooring.ops_per_second}/s**; server CPU per certificate **${ms(sc.mooring.cpu_ms_per_op.server)} ms** (Mooring ${ms(sc.mooring.cpu_ms_per_op.mooring)} + Postgres ${ms(sc.mooring.cpu_ms_per_op.pg_ours)}); ` +
      (mdm.source === 'measured'
        ? `micromdm's scepserver ${mdm.version}, measured in this run: **${ms(mdm.cpu_ms_per_cert)} ms** per certificate at ${mdm.used.ops_per_second}/s (the lower of its two runs): ${verdict}.`
        : `micromdm's scepserver is **not installed** on this host, so it was not measured: the yardstick is the issue's constant, about ${mdm.cpu_ms_per_cert} ms, from another host and day: ${verdict}. ` +
          `Install it with ${mdm.install} to measure it in the same run.`),
    `Crypto floor (native, one thread, the CA's RSA-2048 key): the three private-key operations every PKCSReq needs (open the envelope's content key, sign the certificate, sign the CertRep) take ${ms(sc.crypto_floor_ms.per_certificate)} ms ` +
      `(decrypt ${ms(sc.crypto_floor_ms.decrypt)}, sign ${ms(sc.crypto_floor_ms.sign)} each).`,
    '',
    ...profileLines(sc.profile, 'certificates', 'certificate'),
    '',
  ];
}

/** How micromdm's scepserver was run and checked. */
function micromdmText(mdm: Extract<MicromdmYardstick, { source: 'measured' }>): string[] {
  const ciphers = mdm.cert_rep_encryption.join(', ') || '(none seen)';
  return [
    `micromdm's scepserver ${mdm.version} (micromdm/scep, Debian package \`scep\`) is measured beside Mooring as the yardstick: its own 2048-bit CA and file depot in a temp dir, a fixed challenge, ` +
      'the same load client, concurrency and round size, its own warm-up, one phase just before and one just after Mooring\'s; the lower CPU per certificate of the two is used (the harder one to beat). ' +
      'Its CPU is its own process\'s (`/proc/<pid>/stat`, all threads) over the timed parts, divided by every request: the requests, the signing, its default logging (two lines per request, to a file) and its file depot (one PEM file per certificate and an `index.txt` it scans and rewrites for each, ' +
      `so it costs more as the depot grows: ${mdm.depot_certificates} valid certificates at the end), which is its database. ` +
      'The table\'s "server loop busy" and Mooring/Postgres/Redis columns do not apply to it. It serves plain HTTP (it has no TLS); Mooring pays for TLS on its keep-alive connections.',
    '',
    'Its PKCSReqs differ from Mooring\'s in what it needs only: its CA and challenge, a CN per request (its depot keys certificates by subject; Mooring\'s profile gives every device the same one), ' +
      'and the signed attributes in DER order, signed again (Go\'s pkcs7 verifies them as it re-encodes them, sorted; the simulator sends them in protocol order, which Mooring verifies as received). ' +
      `Its CertReps are checked as Mooring's are (CA signature, transaction, nonce, a certificate for its key issued by its CA), by the bench's own check: they are encrypted with ${ciphers} whatever the request offered, which the simulator's check does not open. ` +
      `${mdm.certificates} of ${mdm.requests} requests got a certificate the device accepted` +
      (mdm.refused_by_race > 0
        ? `; ${mdm.refused_by_race} were refused (CertRep FAILURE badRequest) by scepserver's own race on its depot's serial file (it signs without a lock), counted as errors in its rate ` +
          `(its CPU divided by certificates issued rather than requests: ${ms(perIssued(mdm.used))} ms in the run used)`
        : '') +
      (mdm.repeated_serials > 0 ? `; ${mdm.repeated_serials} serial numbers were issued twice (the same race)` : '') +
      '.',
  ];
}

/** A micromdm run's CPU per certificate it issued (its figure is per request, refused ones included). */
function perIssued(p: MicromdmRun): number {
  return (p.cpu_ms_per_cert * p.ops) / Math.max(1, p.ops - p.errors);
}

function micromdmRow(label: string, p: MicromdmRun): string {
  return (
    `| ${label} | ${p.ops_per_second} | ${p.ops} | ${p.errors} | ${p.seconds} | ${p.latency_ms.p50} | ${p.latency_ms.p99} | - | ${pct(p.machine.busy)} | ` +
    `**${ms(p.cpu_ms_per_cert)}** (scepserver) | - | - | - | ${ms(p.cpu_ms_per_op.client)} | - |`
  );
}

function interleave(floor: PushRun[], mooring: PushRun[]): PushRun[] {
  const out: PushRun[] = [];
  for (let k = 0; k < Math.max(floor.length, mooring.length); k++) {
    if (floor[k]) out.push(floor[k]!);
    if (mooring[k]) out.push(mooring[k]!);
  }
  return out;
}
