/**
 * The BullMQ backend for every Mooring queue: Redis when `REDIS_URL` is set, otherwise BullMQ's own
 * PostgreSQL backend on Mooring's database (so the embedded default needs no Redis). Everything
 * above this file uses `Queue`/`Worker` from here and never knows which one runs.
 */
import { Queue, Worker, createPostgresBackend, withBackend, type Job, type JobsOptions, type Processor, type WorkerOptions } from 'bullmq';
import IORedis from 'ioredis';
import type { QueueGeneration } from '../core/queue-generation';

export type BackendKind = 'redis' | 'postgres';

export interface QueueHandle<T> {
  add(name: string, data: T, opts?: JobsOptions): Promise<Job<T> | undefined>;
  addBulk(jobs: Array<{ name: string; data: T; opts?: JobsOptions }>): Promise<unknown>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export interface WorkerHandle {
  on(event: 'failed', listener: (job: Job | undefined, err: Error) => void): unknown;
  close(force?: boolean): Promise<void>;
  waitUntilReady(): Promise<unknown>;
}

export interface QueueBackend {
  kind: BackendKind;
  queue<T>(name: string): QueueHandle<T>;
  worker<T>(name: string, processor: Processor<T>, opts?: Partial<WorkerOptions>): WorkerHandle;
  /** Round trip to the backing store (readiness). */
  ping(): Promise<void>;
  /** A counter shared by every process on this backend (Redis only; undefined on Postgres). */
  counter?(name: string): QueueGeneration;
  close(): Promise<void>;
}

export interface QueueBackendOptions {
  redisUrl?: string;
  databaseUrl: string;
  /** Namespace: the Redis key prefix, or the Postgres schema. Tests use one per run. */
  namespace?: string;
}

export function createQueueBackend(opts: QueueBackendOptions): QueueBackend {
  return opts.redisUrl ? redisBackend(opts.redisUrl, opts.namespace ?? 'mooring') : postgresBackend(opts.databaseUrl, opts.namespace ?? 'bullmq');
}

function redisBackend(url: string, prefix: string): QueueBackend {
  // BullMQ needs maxRetriesPerRequest null on connections used by workers (blocking commands).
  const connection = new IORedis(url, { maxRetriesPerRequest: null, lazyConnect: false });
  connection.on('error', () => {}); // reconnects by itself; readiness reports the outage
  const opened: Array<{ close(): Promise<void> }> = [];
  return {
    kind: 'redis',
    queue<T>(name: string) {
      const q = new Queue<T>(name, { connection, prefix });
      opened.push(q);
      return q as unknown as QueueHandle<T>;
    },
    worker<T>(name: string, processor: Processor<T>, wopts: Partial<WorkerOptions> = {}) {
      const w = new Worker<T>(name, processor, { ...wopts, connection, prefix });
      opened.push(w);
      return w as unknown as WorkerHandle;
    },
    async ping() {
      await connection.ping();
    },
    counter(name: string): QueueGeneration {
      // Its own connection: the queue's may be held by blocking commands, which would stall a read.
      const client = new IORedis(url, { lazyConnect: false });
      client.on('error', () => {});
      opened.push({ close: async () => void client.disconnect() });
      const key = `${prefix}:${name}`;
      return {
        read: async () => Number((await client.get(key)) ?? 0),
        bump: async () => void (await client.incr(key)),
      };
    },
    async close() {
      await Promise.allSettled(opened.map((o) => o.close()));
      connection.disconnect();
    },
  };
}

function postgresBackend(connectionString: string, schema: string): QueueBackend {
  const pg = withBackend(createPostgresBackend);
  // `migrate`: BullMQ creates or upgrades its own schema on first connect (under an advisory lock).
  // Each Queue and Worker opens its own pool; a few connections each are plenty for job bookkeeping.
  const connection = { connectionString, schema, max: 4, migrate: true };
  const opened: Array<{ close(): Promise<void> }> = [];
  let probe: InstanceType<typeof pg.Queue> | undefined;
  return {
    kind: 'postgres',
    queue<T>(name: string) {
      const q = new pg.Queue<T>(name, { connection });
      opened.push(q);
      return q as unknown as QueueHandle<T>;
    },
    worker<T>(name: string, processor: Processor<T>, wopts: Partial<WorkerOptions> = {}) {
      const w = new pg.Worker<T>(name, processor as never, { ...(wopts as object), connection } as never);
      opened.push(w);
      return w as unknown as WorkerHandle;
    },
    async ping() {
      probe ??= new pg.Queue('mooring-readiness', { connection });
      await probe.getJobCounts('waiting');
    },
    async close() {
      await Promise.allSettled([...opened, ...(probe ? [probe] : [])].map((o) => o.close()));
    },
  };
}
