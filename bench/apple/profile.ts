/**
 * Where the server's time goes: V8's sampling profiler on this process's main thread (the server's
 * event loop), through node:inspector, running only during the timed part of extra rounds that are not
 * counted in the rates (sampling costs a little; the harness's own work between rounds stays out).
 * Self time is summed three ways, per operation:
 * - by the innermost Mooring frame (src/ or protocols/) on the sampled stack: which step of ours the
 *   time is spent under, library calls included ("outside Mooring code" is HTTP, TLS, GC, drivers
 *   running from the event loop);
 * - by where the code lives (a package under node_modules, a Node core area, a source file);
 * - by function.
 * Work on libuv's thread pool (WebCrypto jobs) is not on the main thread and does not appear;
 * "(program)" is native work V8 could not attribute to a JS frame. The largest round's raw profile is
 * written to the system's temp directory, for Chrome DevTools or speedscope. Line numbers are those
 * of tsx's compiled output, not of the TypeScript sources.
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

interface Row {
  key: string;
  ms_per_op: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  ops: number;
  /** SQL statements sent per operation (every pg client in the process: Mooring's pools, BullMQ's). */
  statements_per_op: number;
  statements: Row[];
  /** Main-thread time sampled, ms. */
  wall_ms: number;
  /** Main-thread time not idle, per operation, ms. */
  busy_ms_per_op: number;
  /** The same time in a few groups, each sample classified by its whole stack (see GROUPS). */
  groups: Row[];
  steps: Row[];
  areas: Row[];
  functions: Row[];
}

/**
 * Groups for the "where the time goes" summary, first match wins, looking at every frame of a sample's
 * stack (so a socket write under the pg driver counts as database work, one under express as HTTP).
 */
const GROUPS: Array<{ name: string; test: (frames: Array<{ fn: string; url: string }>) => boolean }> = [
  { name: 'Postgres / Redis clients and the job queue (pg, knex, bullmq, ioredis)', test: (f) => f.some((x) => /\/node_modules\/(pg|pg-pool|pg-protocol|pg-types|pg-cursor|knex|tarn|postgres-[a-z]+|bullmq|ioredis)\//.test(x.url)) },
  { name: 'ASN.1 / X.509 / CMS libraries (pkijs, asn1js, @peculiar, node-forge)', test: (f) => f.some((x) => /\/node_modules\/(pkijs|asn1js|@peculiar|node-forge|pvtsutils|pvutils)\//.test(x.url)) },
  { name: 'Mooring PKI code and native crypto under it (src/pki, protocols/apple/scep.ts)', test: (f) => f.some((x) => /\/(src\/pki|protocols\/apple\/scep)/.test(x.url)) },
  { name: 'plist decode / encode (@xmldom, plist, xmlbuilder)', test: (f) => f.some((x) => /\/node_modules\/(@xmldom|plist|xmlbuilder)\/|protocols\/apple\/plist/.test(x.url)) },
  { name: 'APNs client (@parse/node-apn, HTTP/2)', test: (f) => f.some((x) => /\/node_modules\/@parse\/node-apn\/|^node:internal\/http2|^node:http2/.test(x.url) && !f.some((y) => y.url.includes('apns-mock'))) },
  { name: 'the mock APNs (test double, same process)', test: (f) => f.some((x) => x.url.includes('apns-mock')) },
  {
    // The logging middleware calls next(): what runs below it through the router is routing, not logging.
    name: 'request logging and metrics (src/http/logging.ts, prom-client, pino)',
    test: (f) => {
      if (f.some((x) => /\/node_modules\/(prom-client|pino)\//.test(x.url))) return true;
      const at = f.findIndex((x) => /src\/http\/logging/.test(x.url));
      return at >= 0 && !f.slice(0, at).some((x) => /\/node_modules\/(router|express)\//.test(x.url));
    },
  },
  { name: 'V8 garbage collector', test: (f) => f[0]?.fn === '(garbage collector)' },
  { name: 'HTTPS server stack and the rest (node http/tls/net, express, router, body parsing, Mooring glue)', test: () => true },
];

const ROOT = path.resolve(__dirname, '..', '..');

export class MainThreadProfiler {
  readonly #session = new inspector.Session();
  readonly #steps = new Map<string, number>();
  readonly #areas = new Map<string, number>();
  readonly #functions = new Map<string, number>();
  readonly #groups = new Map<string, number>();
  readonly #statements = new StatementCounter();
  #idle = 0;
  #total = 0;
  #largest?: { us: number; profile: Profile };

  private constructor() {
    this.#session.connect();
  }

  static async open(intervalUs = 200): Promise<MainThreadProfiler> {
    const p = new MainThreadProfiler();
    await p.#post('Profiler.enable');
    await p.#post('Profiler.setSamplingInterval', { interval: intervalUs });
    return p;
  }

  begin(): Promise<unknown> {
    this.#statements.start();
    return this.#post('Profiler.start');
  }

  async end(): Promise<void> {
    const { profile } = (await this.#post('Profiler.stop')) as { profile: Profile };
    this.#statements.stop();
    const us = this.#add(profile);
    if (!this.#largest || us > this.#largest.us) this.#largest = { us, profile };
  }

  async close(name: string, ops: number): Promise<ProfileSummary> {
    await this.#post('Profiler.disable').catch(() => undefined);
    this.#session.disconnect();
    const file = path.join(os.tmpdir(), `mooring-bench-apple-${name}-${Date.now()}.cpuprofile`);
    if (this.#largest) fs.writeFileSync(file, JSON.stringify(this.#largest.profile));
    const busy = this.#total - this.#idle;
    const perOp = (us: number) => Math.round((us / 1000 / Math.max(1, ops)) * 1000) / 1000;
    const rows = (m: Map<string, number>, n: number): Row[] =>
      [...m.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, n)
        .map(([key, us]) => ({ key, ms_per_op: perOp(us), share: Math.round((us / Math.max(1, busy)) * 1000) / 1000 }));
    const statements = [...this.#statements.counts.entries()].sort((a, b) => b[1] - a[1]);
    const allStatements = statements.reduce((n, [, c]) => n + c, 0);
    return {
      file,
      ops,
      statements_per_op: Math.round((allStatements / Math.max(1, ops)) * 100) / 100,
      statements: statements.slice(0, 12).map(([key, c]) => ({ key, ms_per_op: Math.round((c / Math.max(1, ops)) * 100) / 100, share: Math.round((c / Math.max(1, allStatements)) * 1000) / 1000 })),
      wall_ms: Math.round(this.#total / 1000),
      busy_ms_per_op: perOp(busy),
      groups: rows(this.#groups, GROUPS.length),
      steps: rows(this.#steps, 16),
      areas: rows(this.#areas, 12),
      functions: rows(this.#functions, 12),
    };
  }

  /** Adds one profile's self times; returns its sampled time (µs). */
  #add(profile: Profile): number {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const self = new Map<number, number>();
    const samples = profile.samples ?? [];
    const deltas = profile.timeDeltas ?? [];
    // timeDeltas[i] is the time before sample i; the time until the next sample is sample i's own.
    for (let i = 0; i < samples.length; i++) self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + Math.max(0, deltas[i + 1] ?? 0));
    let sum = 0;
    const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
    for (const [id, us] of self) {
      const node = byId.get(id);
      if (!node) continue;
      sum += us;
      const { functionName, url, lineNumber } = node.callFrame;
      if (functionName === '(idle)') {
        this.#idle += us;
        continue;
      }
      add(this.#areas, areaOf(functionName, url), us);
      add(this.#functions, `\`${functionName || '(anonymous)'}\` ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ''}`.trim(), us);
      add(this.#steps, stepOf(id, byId, parent), us);
      add(this.#groups, groupOf(id, byId, parent), us);
    }
    this.#total += sum;
    return sum;
  }

  #post(method: string, params?: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result)));
    });
  }
}

function groupOf(id: number, byId: Map<number, ProfileNode>, parent: Map<number, number>): string {
  const frames: Array<{ fn: string; url: string }> = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const c = byId.get(cur)!.callFrame;
    frames.push({ fn: c.functionName, url: c.url });
  }
  return GROUPS.find((g) => g.test(frames))!.name;
}

/** The innermost frame of Mooring's own code on the stack, or what runs outside it. */
function stepOf(id: number, byId: Map<number, ProfileNode>, parent: Map<number, number>): string {
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const c = byId.get(cur)!.callFrame;
    const u = shortUrl(c.url);
    if (/^(src|protocols)\//.test(u)) return `\`${c.functionName || '(anonymous)'}\` (${u})`;
  }
  const leaf = byId.get(id)!.callFrame;
  return `outside Mooring code: ${areaOf(leaf.functionName, leaf.url)}`;
}

function shortUrl(url: string): string {
  let p = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
  const nm = p.lastIndexOf('/node_modules/');
  if (nm >= 0) return p.slice(nm + '/node_modules/'.length);
  if (p.startsWith(ROOT)) p = p.slice(ROOT.length + 1);
  return p;
}

/** A package, a Node core area, a Mooring file, or one of V8's pseudo-frames. */
function areaOf(functionName: string, url: string): string {
  if (!url) {
    if (functionName === '(garbage collector)') return 'V8 garbage collector';
    if (functionName === '(program)') return 'V8 (program): native code not attributed to JS';
    return `native \`${functionName || '(anonymous)'}\``;
  }
  if (url.startsWith('node:')) {
    const seg = url.slice(5).replace(/^internal\//, '').split('/')[0]!;
    return `node:${seg.replace(/^_/, '')}`;
  }
  const s = shortUrl(url);
  if (url.includes('/node_modules/')) {
    const parts = s.split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return s;
}

/**
 * Counts the statements every pg client of this process sends (knex, the hand-out pool and BullMQ's
 * Postgres backend all use the `pg` package), by a short label: the prepared statement's name, or the
 * SQL's first words. Only while started: the counting itself is not free.
 */
class StatementCounter {
  readonly counts = new Map<string, number>();
  #original?: typeof pg.Client.prototype.query;

  start(): void {
    if (this.#original) return;
    const original = pg.Client.prototype.query;
    this.#original = original;
    const counts = this.counts;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const q = args[0] as string | { text?: string; name?: string } | undefined;
      const label = statementLabel(q);
      counts.set(label, (counts.get(label) ?? 0) + 1);
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof original;
  }

  stop(): void {
    if (this.#original) pg.Client.prototype.query = this.#original;
    this.#original = undefined;
  }
}

/** Labels by SQL text: the whitespace folding runs once per distinct statement, not once per call. */
const labels = new Map<string, string>();

function statementLabel(q: string | { text?: string; name?: string } | undefined): string {
  const text = typeof q === 'string' ? q : (q?.text ?? '');
  const name = typeof q === 'object' && q?.name ? q.name : '';
  const cacheKey = name || text; // a prepared statement's name stands for its text
  let label = labels.get(cacheKey);
  if (label === undefined) {
    label = foldLabel(text, name);
    if (labels.size < 10_000) labels.set(cacheKey, label);
  }
  return label;
}

function foldLabel(text: string, name: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const short = flat.length > 70 ? `${flat.slice(0, 70)}...` : flat;
  return `${name ? `[${name}] ` : ''}${short}`;
}
