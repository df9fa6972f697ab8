/**
 * The background worker thread's own side (see src/worker-thread.ts): builds the shared core from the
 * server's settings, without migrating (the server did) and without HTTP, runs the worker, and answers
 * the server's messages: `metrics` with its counters, `stop` by finishing its jobs and closing.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import type { Config } from './config';
import { LocalQueueGeneration } from './core/queue-generation';
import { openCore, startCoreWorker } from './core-root';
import { workerMetrics } from './metrics';
import type { FromThread, ToThread, WorkerThreadData } from './worker-thread';

async function run(port: NonNullable<typeof parentPort>, data: WorkerThreadData): Promise<void> {
  const config: Config = { ...data.config, publicUrl: new URL(data.config.publicUrl) };
  const logger = pino({ level: config.logLevel, base: { service: 'mooring', thread: 'worker' } });
  const core = await openCore(config, data.databaseUrl, {
    logger,
    queueNamespace: data.queueNamespace,
    retryDelayMs: data.retryDelayMs,
    generation: data.generation ? new LocalQueueGeneration(data.generation) : undefined,
  });
  const worker = startCoreWorker(core, { retryDelayMs: data.retryDelayMs }, data.loops);
  const send = (msg: FromThread) => port.postMessage(msg);
  port.on('message', (msg: ToThread) => {
    if (msg.type === 'metrics') {
      void workerMetrics().then((metrics) => send({ type: 'metrics', id: msg.id, metrics }));
    } else if (msg.type === 'stop') {
      void worker
        .stop()
        .then(() => core.close())
        .catch((err: unknown) => logger.error({ err }, 'error while stopping the background worker'))
        .finally(() => port.close()); // nothing left to run: the thread ends
    }
  });
  send({ type: 'ready' });
}

if (parentPort) {
  void run(parentPort, workerData as WorkerThreadData).catch((err: unknown) => {
    // Thrown again outside the promise: the server sees it as the thread's 'error' event, with its reason.
    setImmediate(() => {
      throw err;
    });
  });
}
