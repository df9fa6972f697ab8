/**
 * The load client, run in its own worker thread so that making requests does not compete with the
 * server for the main event loop. It plays one round at a time: a list of requests, sent by
 * `concurrency` loops over keep-alive connections (one node http Agent per target port, kept across
 * rounds), and answers with the round's wall time and each request's outcome.
 *
 * The same client, the same requests and the same concurrency serve the floor and Mooring.
 */
import http from 'node:http';
import path from 'node:path';
import { Worker, parentPort, workerData } from 'node:worker_threads';

export interface LoadRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface RequestResult {
  status: number;
  ms: number;
  /** Ids of `commands` in a JSON answer (when the round asks to parse answers). */
  commandIds?: string[];
  /** Actions of those commands, in the same order. */
  actions?: string[];
  error?: string;
}

export interface RoundResult {
  elapsedMs: number;
  results: RequestResult[];
}

type ToWorker =
  | { type: 'round'; port: number; concurrency: number; requests: LoadRequest[]; parse: boolean; timeoutMs: number }
  | { type: 'close' };
type FromWorker = { type: 'done'; round: RoundResult } | { type: 'failed'; message: string } | { type: 'closed' };

/** The main thread's handle on the client thread. */
export class LoadClient {
  readonly #worker: Worker;
  #pending?: { resolve(v: FromWorker): void; reject(e: unknown): void };

  constructor() {
    // tsx's hooks do not follow into worker threads: register them there, then load this file.
    const code = `require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(path.join(__dirname, 'client.ts'))});`;
    this.#worker = new Worker(code, { eval: true, workerData: { mooringBenchClient: true } });
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

  async round(port: number, concurrency: number, requests: LoadRequest[], parse: boolean, timeoutMs = 15_000): Promise<RoundResult> {
    const msg = await this.#send({ type: 'round', port, concurrency, requests, parse, timeoutMs });
    if (msg.type === 'failed') throw new Error(`load client: ${msg.message}`);
    if (msg.type !== 'done') throw new Error(`load client: unexpected ${msg.type}`);
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

const agents = new Map<number, http.Agent>();

function agentFor(port: number, concurrency: number): http.Agent {
  let agent = agents.get(port);
  if (!agent || agent.maxSockets !== concurrency) {
    agent?.destroy();
    agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency, keepAliveMsecs: 30_000 });
    agents.set(port, agent);
  }
  return agent;
}

function send(agent: http.Agent, port: number, r: LoadRequest, parse: boolean, timeoutMs: number): Promise<RequestResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const done = (status: number, extra: Partial<RequestResult> = {}) => resolve({ status, ms: performance.now() - t0, ...extra });
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: r.path,
        agent,
        headers: { ...r.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(r.body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => done(0, { error: err.message }));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (!parse) return done(status);
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { commands?: Array<{ id: string; action: string }> };
            const commands = Array.isArray(body.commands) ? body.commands : [];
            done(status, { commandIds: commands.map((c) => c.id), actions: commands.map((c) => c.action) });
          } catch (err) {
            done(status, { error: `unparsable answer: ${(err as Error).message}` });
          }
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => done(0, { error: err.message }));
    req.end(r.body);
  });
}

async function playRound(msg: Extract<ToWorker, { type: 'round' }>): Promise<RoundResult> {
  const agent = agentFor(msg.port, msg.concurrency);
  const results: RequestResult[] = new Array(msg.requests.length);
  let next = 0;
  const t0 = performance.now();
  const loop = async () => {
    for (let i = next++; i < msg.requests.length; i = next++) {
      results[i] = await send(agent, msg.port, msg.requests[i]!, msg.parse, msg.timeoutMs);
    }
  };
  await Promise.all(Array.from({ length: Math.min(msg.concurrency, msg.requests.length) }, loop));
  return { elapsedMs: performance.now() - t0, results };
}

if (parentPort && (workerData as { mooringBenchClient?: boolean } | null)?.mooringBenchClient) {
  const port = parentPort;
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'close') {
      for (const agent of agents.values()) agent.destroy();
      agents.clear();
      port.postMessage({ type: 'closed' } satisfies FromWorker);
      return;
    }
    playRound(msg).then(
      (round) => port.postMessage({ type: 'done', round } satisfies FromWorker),
      (err: unknown) => port.postMessage({ type: 'failed', message: err instanceof Error ? err.message : String(err) } satisfies FromWorker),
    );
  });
}
