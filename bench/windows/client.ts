/**
 * The load client, in its own worker thread so that making requests does not compete with the server
 * for the main event loop (it still competes for the CPUs). It plays one round at a time and answers
 * with the round's wall time and each job's outcome.
 *
 * - Enrollment rounds: each job is a chain of POSTs (Discover, GetPolicies, RequestSecurityToken)
 *   sent one after the other; `concurrency` chains at a time over one keep-alive agent per target port
 *   (no client certificate, as a device before enrollment).
 * - Session rounds: each job is one OMA-DM session of an enrolled device, run by the device's own
 *   session code (test/helpers/windows-device.ts) over a keep-alive connection of its own that
 *   presents its identity certificate. `roundTrips` 1 stops after the server's first reply (the one
 *   carrying the command); 2 also sends the device's Status/Results and reads the closing reply.
 *
 * The same client, requests, devices and concurrency serve the floor and Mooring.
 */
import https from 'node:https';
import path from 'node:path';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import type { HttpAnswer } from '../../test/helpers/windows-device';
import { BenchDevice, type DeviceState, type TransportOptions } from './device';

export interface LoadRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface ChainResult {
  statuses: number[];
  ms: number;
  /** Answer bodies, when the round asks for them. */
  bodies?: string[];
  error?: string;
}

export interface SessionOutcome {
  deviceId: string;
  ms: number;
  statuses: number[];
  headerStatuses: string[];
  commands: Array<{ cmdId: string; kind: string; targets: string[] }>;
  answered: string[];
  bodies?: string[];
  error?: string;
}

export interface RoundResult<T> {
  elapsedMs: number;
  results: T[];
}

type ToWorker =
  | { type: 'chains'; port: number; concurrency: number; jobs: LoadRequest[][]; keepBodies: boolean; timeoutMs: number }
  | { type: 'devices'; states: DeviceState[] }
  | { type: 'sessions'; port: number; concurrency: number; deviceIds: string[]; roundTrips: 1 | 2; keepBodies: boolean; timeoutMs: number }
  | { type: 'close' };
type FromWorker =
  | { type: 'chains'; round: RoundResult<ChainResult> }
  | { type: 'sessions'; round: RoundResult<SessionOutcome> }
  | { type: 'ok' }
  | { type: 'failed'; message: string };

interface ClientData {
  mooringWindowsBenchClient: true;
  caPem: string;
}

/** The main thread's handle on the client thread. */
export class LoadClient {
  readonly #worker: Worker;
  #pending?: { resolve(v: FromWorker): void; reject(e: unknown): void };

  constructor(caPem: string) {
    // tsx's hooks do not follow into worker threads: register them there, then load this file.
    const code = `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(path.join(__dirname, 'client.ts'))});`;
    this.#worker = new Worker(code, { eval: true, workerData: { mooringWindowsBenchClient: true, caPem } satisfies ClientData });
    this.#worker.on('message', (msg: FromWorker) => {
      const p = this.#pending;
      this.#pending = undefined;
      p?.resolve(msg);
    });
    this.#worker.on('error', (err) => {
      const p = this.#pending;
      this.#pending = undefined;
      p?.reject(err);
    });
  }

  async chains(port: number, concurrency: number, jobs: LoadRequest[][], keepBodies: boolean, timeoutMs = 30_000): Promise<RoundResult<ChainResult>> {
    const msg = await this.#send({ type: 'chains', port, concurrency, jobs, keepBodies, timeoutMs });
    if (msg.type !== 'chains') throw new Error(`load client: ${msg.type === 'failed' ? msg.message : `unexpected ${msg.type}`}`);
    return msg.round;
  }

  async devices(states: DeviceState[]): Promise<void> {
    const msg = await this.#send({ type: 'devices', states });
    if (msg.type !== 'ok') throw new Error(`load client: ${msg.type === 'failed' ? msg.message : `unexpected ${msg.type}`}`);
  }

  async sessions(port: number, concurrency: number, deviceIds: string[], roundTrips: 1 | 2, keepBodies: boolean, timeoutMs = 30_000): Promise<RoundResult<SessionOutcome>> {
    const msg = await this.#send({ type: 'sessions', port, concurrency, deviceIds, roundTrips, keepBodies, timeoutMs });
    if (msg.type !== 'sessions') throw new Error(`load client: ${msg.type === 'failed' ? msg.message : `unexpected ${msg.type}`}`);
    return msg.round;
  }

  async close(): Promise<void> {
    await this.#send({ type: 'close' }).catch(() => undefined);
    await this.#worker.terminate();
  }

  #send(msg: ToWorker): Promise<FromWorker> {
    if (this.#pending) return Promise.reject(new Error('load client: one round at a time'));
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#worker.postMessage(msg);
    });
  }
}

// ---- the worker side ----

const agents = new Map<string, https.Agent>();
const devices = new Map<string, BenchDevice>();

function agent(key: string, make: () => https.Agent): https.Agent {
  let a = agents.get(key);
  if (!a) {
    a = make();
    agents.set(key, a);
  }
  return a;
}

/** One HTTPS request to 127.0.0.1:port with `servername` as SNI, on the given keep-alive agent. */
function send(
  via: https.Agent,
  port: number,
  method: string,
  pathAndQuery: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
  timeoutMs: number,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        method,
        path: pathAndQuery,
        agent: via,
        headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: res.headers['content-type'],
            contentLength: res.headers['content-length'],
            transferEncoding: res.headers['transfer-encoding'],
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function pool<T>(count: number, concurrency: number, one: (i: number) => Promise<T>): Promise<RoundResult<T>> {
  const results: T[] = new Array(count);
  let next = 0;
  const t0 = performance.now();
  const loop = async () => {
    for (let i = next++; i < count; i = next++) results[i] = await one(i);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, loop));
  return { elapsedMs: performance.now() - t0, results };
}

function playChains(msg: Extract<ToWorker, { type: 'chains' }>, caPem: string): Promise<RoundResult<ChainResult>> {
  const via = agent(`chains:${msg.port}:${msg.concurrency}`, () => new https.Agent({ keepAlive: true, maxSockets: msg.concurrency, maxFreeSockets: msg.concurrency, ca: caPem }));
  return pool(msg.jobs.length, msg.concurrency, async (i) => {
    const t0 = performance.now();
    const out: ChainResult = { statuses: [], ms: 0, ...(msg.keepBodies ? { bodies: [] } : {}) };
    try {
      for (const r of msg.jobs[i]!) {
        const res = await send(via, msg.port, 'POST', r.path, r.headers, Buffer.from(r.body, 'utf8'), msg.timeoutMs);
        out.statuses.push(res.status);
        out.bodies?.push(res.body);
        if (res.status !== 200) break;
      }
    } catch (err) {
      out.error = (err as Error).message;
    }
    out.ms = performance.now() - t0;
    return out;
  });
}

function playSessions(msg: Extract<ToWorker, { type: 'sessions' }>, caPem: string): Promise<RoundResult<SessionOutcome>> {
  return pool(msg.deviceIds.length, msg.concurrency, async (i) => {
    const deviceId = msg.deviceIds[i]!;
    const device = devices.get(deviceId);
    const t0 = performance.now();
    const out: SessionOutcome = { deviceId, ms: 0, statuses: [], headerStatuses: [], commands: [], answered: [] };
    if (!device) return { ...out, error: `unknown device ${deviceId}` };
    const identity = await device.identity();
    const via = agent(`session:${msg.port}:${deviceId}`, () =>
      new https.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, ca: caPem, cert: identity.certPem, key: identity.keyPem }),
    );
    device.transport = (method: string, url: string, opts: TransportOptions) => {
      const u = new URL(url);
      const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
      return send(via, msg.port, method, `${u.pathname}${u.search}`, { host: u.host, ...opts.headers }, body, msg.timeoutMs);
    };
    try {
      const session = await device.session({ maxMessages: msg.roundTrips });
      out.statuses = session.exchanges.map((e) => e.status);
      out.headerStatuses = session.headerStatuses;
      out.commands = session.commands.map((c) => ({ cmdId: c.cmdId, kind: c.kind, targets: c.items.map((it) => it.target ?? '') }));
      out.answered = session.answered.map((a) => a.status);
      if (msg.keepBodies) out.bodies = session.exchanges.map((e) => e.body);
    } catch (err) {
      out.error = (err as Error).message;
    }
    out.ms = performance.now() - t0;
    return out;
  });
}

const data = workerData as Partial<ClientData> | null;
if (parentPort && data?.mooringWindowsBenchClient) {
  const port = parentPort;
  const caPem = data.caPem ?? '';
  const answer = (p: Promise<FromWorker>) =>
    p.then(
      (m) => port.postMessage(m),
      (err: unknown) => port.postMessage({ type: 'failed', message: err instanceof Error ? err.message : String(err) } satisfies FromWorker),
    );
  port.on('message', (msg: ToWorker) => {
    switch (msg.type) {
      case 'close':
        for (const a of agents.values()) a.destroy();
        agents.clear();
        port.postMessage({ type: 'ok' } satisfies FromWorker);
        return;
      case 'devices':
        for (const s of msg.states) devices.set(s.deviceId, BenchDevice.restore(s));
        port.postMessage({ type: 'ok' } satisfies FromWorker);
        return;
      case 'chains':
        return void answer(playChains(msg, caPem).then((round) => ({ type: 'chains', round }) as const));
      case 'sessions':
        return void answer(playSessions(msg, caPem).then((round) => ({ type: 'sessions', round }) as const));
    }
  });
}
