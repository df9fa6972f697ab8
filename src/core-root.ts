/**
 * The half of the composition root that the server and the background worker's thread share: the
 * pools, the queues, the push providers and the command service (`openCore`), and the worker wired
 * over them (`startCoreWorker`). main.ts adds the HTTP side for the server; src/worker-thread-entry.ts
 * uses this file alone, so the worker's thread does not load express, the admin API or the device
 * front ends (about 40 MB less per thread).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import pino, { type Logger } from 'pino';
import { AndroidCommands } from '../protocols/android/commands';
import { AppleCommands } from '../protocols/apple/commands';
import { WindowsCommands } from '../protocols/windows/commands';
import { ConfigError, type Config } from './config';
import { CommandService } from './core/commands';
import { PlatformRegistry } from './core/platforms';
import { LocalQueueGeneration, type QueueGeneration } from './core/queue-generation';
import { WEBHOOK_QUEUE, type WebhookJob } from './events/webhooks';
import { withDirLock, writeAtomic } from './pki/dir-lock';
import { Sealer, parseSecretKey } from './pki/sealed';
import { ApnsProvider } from './push/apns';
import { PUSH_QUEUE, PushDispatcher, type PushJob } from './push/dispatcher';
import { FcmProvider, loadServiceAccountFile } from './push/fcm';
import { PushProviderRegistry } from './push/provider';
import { WnsProvider } from './push/wns';
import { createQueueBackend, type QueueBackend, type QueueHandle } from './queue/backend';
import { PgAppleStore } from './storage/apple';
import { PgCommandStore } from './storage/commands';
import { createDb, createHandoutPool, migrate, type Db } from './storage/db';
import { PgDeviceStore } from './storage/devices';
import { PgEventStore } from './storage/events';
import { PgPushCertificateStore } from './storage/push-certificates';
import { PgTokenStore } from './storage/tokens';
import { startWorker, type RunningWorker } from './worker';

/** Test settings for the background worker's loops. */
export interface WorkerOverrides {
  relayEveryMs?: number;
  expireEveryMs?: number;
}

export interface MooringOptions {
  logger?: Logger;
  /** Platform command support (Apple, Windows, Android front ends register here). */
  platforms?: PlatformRegistry;
  pushProviders?: PushProviderRegistry;
  /** Queue namespace (Redis prefix or Postgres schema); tests use one per run. */
  queueNamespace?: string;
  /** Base delay of the exponential backoff for push and webhook retries (ms); tests shorten it. */
  retryDelayMs?: number;
}

/**
 * What the server and the background worker both stand on: the pools, the queues, the push providers
 * and the command service. Built here for the server, and built again the same way on the worker's
 * thread (src/worker-thread-entry.ts), which shares nothing with the server but the database, the
 * queue backend and, in one process, the queue generation's memory.
 */
export interface Core {
  config: Config;
  logger: Logger;
  databaseUrl: string;
  db: Db;
  queues: QueueBackend;
  pushQueue: QueueHandle<PushJob>;
  webhookQueue: QueueHandle<WebhookJob>;
  devices: PgDeviceStore;
  events: PgEventStore;
  tokens: PgTokenStore;
  dispatcher: PushDispatcher;
  sealer: Sealer;
  pushCertificates: PgPushCertificateStore;
  providers: PushProviderRegistry;
  platforms: PlatformRegistry;
  generation: QueueGeneration | undefined;
  commands: CommandService;
  apple: PgAppleStore;
  /** The hand-out pool (synchronous_commit off; see storage/db.ts). */
  handout: pg.Pool;
  webhookSecret: string;
  close(): Promise<void>;
}

export interface CoreOptions extends MooringOptions {
  /** Apply pending migrations first (the server does; the worker's thread starts after it did). */
  migrate?: boolean;
  /** The queue generation to use instead of this process's own (the worker's thread gets the server's). */
  generation?: QueueGeneration;
}

export async function openCore(config: Config, databaseUrl: string, opts: CoreOptions = {}): Promise<Core> {
  const logger = opts.logger ?? pino({ level: config.logLevel, base: { service: 'mooring' } });
  const cleanup: Array<() => Promise<void>> = [];
  try {
    const db = createDb(databaseUrl, config.dbPoolMax);
    cleanup.unshift(() => db.destroy());
    const handout = createHandoutPool(databaseUrl, Math.max(2, Math.ceil(config.dbPoolMax / 2)));
    cleanup.unshift(() => handout.end());
    if (opts.migrate) {
      const applied = await migrate(db);
      if (applied.length) logger.info({ applied }, 'database migrated');
    }

    const queues = createQueueBackend({ redisUrl: config.redisUrl, databaseUrl, namespace: opts.queueNamespace });
    cleanup.unshift(() => queues.close());
    const pushQueue = queues.queue<PushJob>(PUSH_QUEUE);
    const webhookQueue = queues.queue<WebhookJob>(WEBHOOK_QUEUE);

    const devices = new PgDeviceStore(db);
    const events = new PgEventStore(db);
    const tokens = new PgTokenStore(db);
    const dispatcher = new PushDispatcher(pushQueue);
    const sealer = new Sealer(config.secretKey ? parseSecretKey(config.secretKey) : await withDirLock(config.certsDir, async () => loadOrCreateKey(path.join(config.certsDir, 'secret.key'))));
    const pushCertificates = new PgPushCertificateStore(db, sealer);
    const providers = opts.pushProviders ?? defaultPushProviders(config, logger, pushCertificates);
    cleanup.unshift(() => providers.close());
    const platforms = opts.platforms ?? new PlatformRegistry().register(new AppleCommands()).register(new AndroidCommands()).register(new WindowsCommands());
    const generation = opts.generation ?? queueGeneration(config, queues);
    const commands = new CommandService(new PgCommandStore(db, handout), platforms, dispatcher, {
      generation,
      defaultTtlSeconds: config.commandTtlSeconds,
      redeliverAfterSeconds: config.redeliverAfterSeconds,
      notNowRetrySeconds: config.notNowRetrySeconds,
      warn: (obj, msg) => logger.warn(obj, msg),
    });
    const apple = new PgAppleStore(db, tokens, sealer, handout);
    const webhookSecret = config.webhookSecret ?? (await withDirLock(config.certsDir, async () => loadOrCreateSecret(path.join(config.certsDir, 'webhook.secret'))));
    return {
      config,
      logger,
      databaseUrl,
      db,
      queues,
      pushQueue,
      webhookQueue,
      devices,
      events,
      tokens,
      dispatcher,
      sealer,
      pushCertificates,
      providers,
      platforms,
      generation,
      commands,
      apple,
      handout,
      webhookSecret,
      close: () => runAll(cleanup),
    };
  } catch (err) {
    await runAll(cleanup);
    throw err;
  }
}

/** The background worker on this thread, over `core`. */
export function startCoreWorker(core: Core, opts: Pick<MooringOptions, 'retryDelayMs'>, overrides: WorkerOverrides = {}): RunningWorker {
  return startWorker({
    logger: core.logger,
    queues: core.queues,
    pushQueue: core.pushQueue,
    webhookQueue: core.webhookQueue,
    dispatcher: core.dispatcher,
    providers: core.providers,
    devices: core.devices,
    events: core.events,
    commands: core.commands,
    challenges: core.apple,
    webhookUrls: core.config.webhookUrls,
    webhookSecret: core.webhookSecret,
    webhookRetryDelayMs: opts.retryDelayMs,
    pushRetryDelayMs: opts.retryDelayMs,
    ...overrides,
  });
}

/**
 * The queue generation idle polls are checked against: Redis shares it between processes; in embedded
 * mode (or when told there is one process) all queue changes happen here, so a counter in memory is
 * the truth; otherwise none, and every idle poll asks the database.
 */
function queueGeneration(config: Config, queues: QueueBackend): QueueGeneration | undefined {
  if (config.idleCache === 'off') return undefined;
  if (queues.counter) return queues.counter('queue-generation');
  return !config.databaseUrl || config.idleCache === 'local' ? new LocalQueueGeneration() : undefined;
}

/** Push providers for the platforms configured here: FCM when a service account is given. */
function defaultPushProviders(config: Config, logger: Logger, pushCertificates: PgPushCertificateStore): PushProviderRegistry {
  const providers = new PushProviderRegistry();
  // Always on: it reads the uploaded push certificate (none yet: each push fails with that reason).
  const apnsCa = config.apnsCaFile ? [fs.readFileSync(config.apnsCaFile, 'utf8')] : undefined;
  providers.register(new ApnsProvider({ certificates: pushCertificates, url: config.apnsUrl, ca: apnsCa }));
  if (config.fcmServiceAccountFile) {
    const serviceAccount = loadServiceAccountFile(config.fcmServiceAccountFile); // a clear error at start
    providers.register(new FcmProvider({ serviceAccount, fcmUrl: config.fcmUrl, tokenUrl: config.fcmTokenUrl }));
    logger.info({ project_id: serviceAccount.project_id }, 'FCM push enabled');
  }
  const { clientId, clientSecret, tokenUrl } = config.wns;
  if (Boolean(clientId) !== Boolean(clientSecret)) throw new ConfigError(['MOORING_WNS_CLIENT_ID and MOORING_WNS_CLIENT_SECRET go together: set both or neither']);
  if (clientId && clientSecret) {
    providers.register(new WnsProvider({ clientId, clientSecret, tokenUrl }));
    logger.info('WNS push enabled');
  }
  return providers;
}

function loadOrCreateKey(file: string): Buffer {
  if (fs.existsSync(file)) return parseSecretKey(fs.readFileSync(file, 'utf8'));
  const key = crypto.randomBytes(32);
  writeAtomic(file, key.toString('hex'), 0o600);
  return key;
}

function loadOrCreateSecret(file: string): string {
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const secret = crypto.randomBytes(32).toString('base64url');
  writeAtomic(file, secret, 0o600);
  return secret;
}

export async function runAll(steps: Array<() => Promise<void>>): Promise<void> {
  for (const step of steps) {
    await step().catch(() => undefined);
  }
}
