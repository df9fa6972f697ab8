/**
 * The background work `mooring worker` runs (and `serve` in embedded mode): push delivery, webhook
 * delivery, the outbox relay and the command-expiry sweep (with expired SCEP challenges). Every part is safe to run in several
 * processes at once: BullMQ hands each job to one worker, and the sweeps claim rows with SKIP LOCKED.
 */
import type { Logger } from 'pino';
import type { CommandService } from './core/commands';
import { WEBHOOK_QUEUE, webhookProcessor, webhookPublisher, type WebhookJob } from './events/webhooks';
import { DEFAULT_PUSH_RETRY_DELAY_MS, PUSH_QUEUE, pushBackoff, pushProcessor, type PushDispatcher, type PushJob } from './push/dispatcher';
import type { PushProviderRegistry } from './push/provider';
import type { QueueBackend, QueueHandle, WorkerHandle } from './queue/backend';
import type { PgDeviceStore } from './storage/devices';
import type { PgEventStore } from './storage/events';

export interface WorkerDeps {
  logger: Logger;
  queues: QueueBackend;
  pushQueue: QueueHandle<PushJob>;
  webhookQueue: QueueHandle<WebhookJob>;
  dispatcher: PushDispatcher;
  providers: PushProviderRegistry;
  devices: PgDeviceStore;
  events: PgEventStore;
  commands: CommandService;
  /** Apple SCEP challenges, pruned once expired. */
  challenges?: { pruneChallenges(): Promise<number> };
  webhookUrls: string[];
  webhookSecret: string;
  /** How often the outbox relay and expiry sweep run (ms). */
  relayEveryMs?: number;
  expireEveryMs?: number;
  concurrency?: number;
  /** Base delay of the exponential backoff for webhook retries (ms). */
  webhookRetryDelayMs?: number;
  /** Base delay of the push backoff (ms); must match the dispatcher's. */
  pushRetryDelayMs?: number;
}

export interface RunningWorker {
  stop(): Promise<void>;
}

export function startWorker(deps: WorkerDeps): RunningWorker {
  const log = deps.logger.child({ component: 'worker' });
  const workers: WorkerHandle[] = [
    deps.queues.worker<PushJob>(
      PUSH_QUEUE,
      pushProcessor({ providers: deps.providers, enrollments: deps.devices, dispatcher: deps.dispatcher, log, retryDelayMs: deps.pushRetryDelayMs }) as never,
      { concurrency: deps.concurrency ?? 20, settings: { backoffStrategy: pushBackoff(deps.pushRetryDelayMs ?? DEFAULT_PUSH_RETRY_DELAY_MS) } },
    ),
    deps.queues.worker<WebhookJob>(WEBHOOK_QUEUE, webhookProcessor(deps.webhookSecret) as never, { concurrency: 10 }),
  ];
  for (const w of workers) {
    w.on('failed', (job, err) => log.warn({ job: job?.id, queue: job?.queueName, attempts: job?.attemptsMade, err: err.message }, 'job failed'));
  }
  const publish = webhookPublisher(deps.webhookQueue, deps.webhookUrls, deps.webhookRetryDelayMs);
  const loops = [
    every(deps.relayEveryMs ?? 1000, log, 'outbox relay', async () => {
      while ((await deps.events.relay(500, publish)) === 500);
    }),
    every(deps.expireEveryMs ?? 60_000, log, 'command expiry and redelivery', async () => {
      const expired = await deps.commands.expireDue();
      const requeued = await deps.commands.requeueUnreported();
      if (expired || requeued) log.info({ expired, requeued }, 'swept the command queue');
      await deps.challenges?.pruneChallenges();
    }),
  ];
  log.info({ webhooks: deps.webhookUrls.length, backend: deps.queues.kind }, 'worker started');
  return {
    async stop() {
      await Promise.all(loops.map((l) => l.stop()));
      await Promise.all(workers.map((w) => w.close())); // waits for jobs in progress
      log.info('worker stopped');
    },
  };
}

/** Runs `task` every `ms`, never overlapping itself; `stop` waits for a run in progress. */
function every(ms: number, log: Logger, name: string, task: () => Promise<void>): { stop(): Promise<void> } {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const tick = () => {
    running = task()
      .catch((err: unknown) => log.warn({ err }, `${name} failed; will retry`))
      .finally(() => {
        running = undefined;
        if (!stopped) timer = setTimeout(tick, ms);
      });
  };
  timer = setTimeout(tick, Math.min(ms, 250));
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
