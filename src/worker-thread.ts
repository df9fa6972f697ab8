/**
 * The background worker on a thread of its own: what `serve` runs when it runs the worker in its
 * process (embedded mode, `--worker`) unless `MOORING_WORKER_THREAD=false`.
 *
 * Why: a push fan-out is thousands of HTTP/2 streams, and on the request thread every one of them
 * waits behind device and admin requests and holds them up in turn (a `lock` to 10,000 devices writes
 * its commands and sends its pushes on the same event loop). On its own thread the fan-out runs on
 * another CPU core. It is the `mooring worker` process, only closer: the thread builds its own pools,
 * queues and push providers from the same settings (src/worker-thread-entry.ts) and shares with the
 * server only the database, the queue backend and, in embedded mode, the queue generation's memory.
 *
 * The thread is supervised: if it dies it is started again, after 1 s and then up to 30 s between
 * attempts, and its counters (pushes, webhook deliveries) are added to every /metrics scrape.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Config } from './config';
import { addMetricsSource, type MetricsSnapshot } from './metrics';
import type { WorkerOverrides } from './core-root';
import type { RunningWorker } from './worker';

export interface WorkerThreadOptions {
  config: Config;
  /** The database the server resolved (in embedded mode, its own Postgres). */
  databaseUrl: string;
  logger: Logger;
  queueNamespace?: string;
  retryDelayMs?: number;
  /** The server's LocalQueueGeneration buffer, in embedded mode: the thread's requeues move it. */
  generation?: SharedArrayBuffer;
  /** How often the worker's loops run (tests shorten them). */
  loops?: WorkerOverrides;
  /** Delay before restarting a thread that died (ms), doubled on each failure up to 30 s; default 1,000. */
  restartDelayMs?: number;
  /** The thread's entry script; tests swap in one that misbehaves. Default: worker-thread-entry. */
  entry?: string;
}

/** What the thread is given: the settings as plain data (a URL does not cross threads). */
export interface WorkerThreadData {
  config: Omit<Config, 'publicUrl'> & { publicUrl: string };
  databaseUrl: string;
  queueNamespace?: string;
  retryDelayMs?: number;
  generation?: SharedArrayBuffer;
  loops?: WorkerOverrides;
}

export type ToThread = { type: 'stop' } | { type: 'metrics'; id: number };
export type FromThread = { type: 'ready' } | { type: 'metrics'; id: number; metrics: MetricsSnapshot };

const MAX_RESTART_DELAY_MS = 30_000;
/** A thread that ran this long before dying was healthy: the restart delay starts over. */
const HEALTHY_AFTER_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const METRICS_TIMEOUT_MS = 2_000;

export async function startWorkerThread(opts: WorkerThreadOptions): Promise<RunningWorker> {
  const log = opts.logger.child({ component: 'worker-thread' });
  const data: WorkerThreadData = {
    config: { ...opts.config, publicUrl: opts.config.publicUrl.href },
    databaseUrl: opts.databaseUrl,
    queueNamespace: opts.queueNamespace,
    retryDelayMs: opts.retryDelayMs,
    generation: opts.generation,
    loops: opts.loops,
  };
  const entry = opts.entry ?? path.join(__dirname, `worker-thread-entry${path.extname(__filename)}`);
  const baseDelay = opts.restartDelayMs ?? 1000;

  // The first start must work: a thread that cannot start (bad settings, no database) stops `serve`.
  let current = new WorkerThread(entry, data, log);
  await current.ready;
  log.info({ thread_id: current.threadId }, 'background worker running on its own thread');

  let stopping = false;
  let delay = baseDelay;
  let timer: NodeJS.Timeout | undefined;
  const watch = (thread: WorkerThread) => {
    void thread.exited.then((code) => {
      if (stopping) return;
      if (thread.upForMs() >= HEALTHY_AFTER_MS) delay = baseDelay;
      log.error({ thread_id: thread.threadId, code, restart_in_ms: delay }, 'background worker thread stopped unexpectedly; starting it again');
      timer = setTimeout(() => {
        if (stopping) return;
        current = new WorkerThread(entry, data, log);
        current.ready.then(
          () => log.info({ thread_id: current.threadId }, 'background worker thread running again'),
          () => undefined, // logged by the thread's error handler; its exit schedules the next attempt
        );
        watch(current);
      }, delay);
      delay = Math.min(delay * 2, MAX_RESTART_DELAY_MS);
    });
  };
  watch(current);
  const removeSource = addMetricsSource(() => current.metrics());

  return {
    async stop() {
      stopping = true;
      clearTimeout(timer);
      removeSource();
      await current.stop();
      log.info('background worker thread stopped');
    },
  };
}

/** One worker thread: its start, its metrics requests and its stop. */
class WorkerThread {
  readonly ready: Promise<void>;
  readonly exited: Promise<number>;
  /** Kept from the start: a Worker's own threadId is -1 once it has exited. */
  readonly threadId: number;
  readonly #worker: Worker;
  readonly #startedAt = Date.now();
  readonly #pending = new Map<number, { resolve(m: MetricsSnapshot): void; reject(err: Error): void }>();
  #nextId = 1;
  #alive = true;

  constructor(entry: string, data: WorkerThreadData, log: Logger) {
    this.#worker = spawn(entry, data);
    this.threadId = this.#worker.threadId;
    this.exited = new Promise((resolve) =>
      this.#worker.once('exit', (code) => {
        this.#alive = false;
        resolve(code);
      }),
    );
    this.ready = new Promise<void>((resolve, reject) => {
      this.#worker.on('message', (msg: FromThread) => {
        if (msg.type === 'ready') resolve();
        else if (msg.type === 'metrics') this.#settle(msg.id, (p) => p.resolve(msg.metrics));
      });
      this.#worker.on('error', (err) => {
        log.error({ err, thread_id: this.threadId }, 'background worker thread failed');
        reject(err);
      });
      void this.exited.then((code) => {
        reject(new Error(`the background worker thread exited (code ${code}) before it was running`));
        for (const id of [...this.#pending.keys()]) this.#settle(id, (p) => p.reject(new Error('the background worker thread exited')));
      });
    });
    this.ready.catch(() => undefined); // the caller awaits it; a restart attempt only logs
  }

  upForMs(): number {
    return Date.now() - this.#startedAt;
  }

  metrics(): Promise<MetricsSnapshot> {
    if (!this.#alive) return Promise.reject(new Error('the background worker thread is not running'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#settle(id, (p) => p.reject(new Error('the background worker thread did not answer'))), METRICS_TIMEOUT_MS);
      this.#pending.set(id, {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (err) => (clearTimeout(timer), reject(err)),
      });
      this.#post({ type: 'metrics', id });
    });
  }

  /** Asks the thread to finish its jobs in progress and close; ends it after 30 s regardless. */
  async stop(): Promise<void> {
    this.#post({ type: 'stop' });
    const force = setTimeout(() => void this.#worker.terminate(), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(force);
  }

  #post(msg: ToThread): void {
    this.#worker.postMessage(msg); // a message to a thread that already ended is dropped
  }

  #settle(id: number, fn: (p: { resolve(m: MetricsSnapshot): void; reject(err: Error): void }) => void): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    fn(p);
  }
}

function spawn(entry: string, data: WorkerThreadData): Worker {
  // From the TypeScript sources (tests, benches, `npm run dev`) the thread loads its modules through
  // tsx, as the main thread does; the built server (dist/) runs the compiled entry directly.
  if (entry.endsWith('.ts')) return new Worker(`require('tsx/cjs'); require(${JSON.stringify(entry)});`, { eval: true, workerData: data });
  return new Worker(entry, { workerData: data });
}
