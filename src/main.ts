/**
 * The composition root: config -> storage -> queues -> push -> services -> HTTP -> listeners. This is
 * the only file that wires concrete parts together; everything else receives what it needs.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type pg from 'pg';
import pino, { type Logger } from 'pino';
import { adminRouter } from './admin/router';
import { PgDirectoryStore } from './storage/directory';
import { PgEnrollmentGate } from './storage/enrollment-gate';
import { IdleCache } from './core/idle-cache';
import { LocalQueueGeneration, type QueueGeneration } from './core/queue-generation';
import { termsRouter } from '../protocols/terms/routes';
import { PgRestrictionStore } from './storage/restrictions';
import { PgCorporateIdentifierStore } from './storage/corporate-identifiers';
import { PgPreapprovedStore } from './storage/preapproved';
import { PgReportStore } from './storage/reports';
import { ConfigError, type Config } from './config';
import { validateDpc } from '../protocols/android/provisioning';
import { CommandService } from './core/commands';
import { PlatformRegistry } from './core/platforms';
import { hashSecret, hintOf, newApiToken } from './core/secrets';
import { WEBHOOK_QUEUE, type WebhookJob } from './events/webhooks';
import { createApp } from './http/app';
import { registerQueueDepth } from './metrics';
import { ensureTlsCertificate, loadOrCreateCa, type CertificateAuthority } from './pki/ca';
import { withDirLock, writeAtomic } from './pki/dir-lock';
import { Sealer, parseSecretKey } from './pki/sealed';
import { PgPolicyStore } from './storage/policies';
import { PgAndroidStore } from './storage/android';
import { AndroidCommands } from '../protocols/android/commands';
import { androidRouter } from '../protocols/android/routes';
import { AppleCommands } from '../protocols/apple/commands';
import { appleFrontEnd } from '../protocols/apple/routes';
import { PgAppleStore } from './storage/apple';
import { PgPushCertificateStore } from './storage/push-certificates';
import { WindowsCommands } from '../protocols/windows/commands';
import { windowsFrontEnd } from '../protocols/windows/routes';
import { PgWindowsStore } from './storage/windows';
import { PUSH_QUEUE, PushDispatcher, type PushJob } from './push/dispatcher';
import { ApnsProvider, pushCertificateHealth, registerApnsCertificateGauge } from './push/apns';
import { FcmProvider, loadServiceAccountFile } from './push/fcm';
import { WnsProvider } from './push/wns';
import { PushProviderRegistry } from './push/provider';
import { createQueueBackend, type QueueBackend, type QueueHandle } from './queue/backend';
import { PgCommandStore } from './storage/commands';
import { createDb, createHandoutPool, migrate, pingDb, type Db } from './storage/db';
import { PgDeviceStore, SEEN_RESOLUTION_SECONDS } from './storage/devices';
import { startEmbeddedPostgres } from './storage/embedded';
import { PgEventStore } from './storage/events';
import { PgTokenStore } from './storage/tokens';
import { startWorker, type RunningWorker } from './worker';
import { startWorkerThread } from './worker-thread';
import type { RequestListener } from 'node:http';

export const VERSION: string = (JSON.parse(fs.readFileSync(path.join(__dirname, findUp('package.json')), 'utf8')) as { version: string }).version;

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

export interface Mooring {
  config: Config;
  logger: Logger;
  db: Db;
  databaseUrl: string;
  embedded: boolean;
  queues: QueueBackend;
  commands: CommandService;
  dispatcher: PushDispatcher;
  devices: PgDeviceStore;
  events: PgEventStore;
  tokens: PgTokenStore;
  /** The APNs push certificate (Apple). */
  pushCertificates: PgPushCertificateStore;
  /** Mooring's certificate authority (device identities, the HTTPS certificate). */
  ca: CertificateAuthority;
  /** The request listener both listeners serve (express, behind the device lanes). */
  app: RequestListener;
  /** The admin token made on this start (first start only), to print once. */
  newAdminToken?: string;
  /** The background worker on this thread (tests, `mooring worker`, `MOORING_WORKER_THREAD=false`). */
  startWorker(overrides?: WorkerOverrides): RunningWorker;
  /**
   * The background worker on a thread of its own, restarted if it dies; resolves once it runs, and
   * rejects with the reason if its first start fails. The thread builds its push providers and
   * platform plug-ins from the settings: `MooringOptions.pushProviders` and `platforms` stay here.
   */
  startWorkerThread(overrides?: WorkerOverrides): Promise<RunningWorker>;
  stop(): Promise<void>;
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

export async function createMooring(config: Config, opts: MooringOptions = {}): Promise<Mooring> {
  const logger = opts.logger ?? pino({ level: config.logLevel, base: { service: 'mooring' } });
  const cleanup: Array<() => Promise<void>> = [];
  try {
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      const embedded = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort, (m) => logger.debug({ component: 'postgres' }, m));
      cleanup.unshift(() => embedded.stop());
      databaseUrl = embedded.connectionString;
      logger.info({ dir: config.dataDir, created: embedded.created }, 'embedded Postgres running');
    }
    const core = await openCore(config, databaseUrl, { ...opts, logger, migrate: true });
    cleanup.unshift(() => core.close());
    const { db, queues, devices, events, tokens, dispatcher, sealer, pushCertificates, platforms, commands, apple, handout } = core;
    registerQueueDepth({ [PUSH_QUEUE]: core.pushQueue, [WEBHOOK_QUEUE]: core.webhookQueue });
    registerApnsCertificateGauge(pushCertificates);
    const idle = core.generation ? new IdleCache(core.generation, { ttlMs: SEEN_RESOLUTION_SECONDS * 1000, maxEntries: 200_000 }) : undefined;
    const newAdminToken = await bootstrapAdminToken(tokens, db, config.adminToken);

    const ca = await withDirLock(config.certsDir, () => loadOrCreateCa(config.certsDir, (msg) => logger.info(msg), config.caFiles));
    const policies = new PgPolicyStore(db);
    const admin = adminRouter({
      directory: new PgDirectoryStore(db),
      restrictions: new PgRestrictionStore(db),
      corporateIdentifiers: new PgCorporateIdentifierStore(db),
      preapproved: new PgPreapprovedStore(db),
      reports: new PgReportStore(db),
      pushCertificates,
      db,
      androidDpc: androidDpcConfig(config),
      commands,
      devices,
      events,
      tokens,
      policies,
      pusher: dispatcher,
      sealer,
      publicUrl: config.publicUrl,
      bodyLimit: config.adminBodyLimit,
      version: VERSION,
    });
    const android = new PgAndroidStore(db, tokens, handout);
    const windows = new PgWindowsStore(db, tokens, handout);
    const gate = new PgEnrollmentGate(db, handout);
    const appleDevices = appleFrontEnd({
      apple,
      commands,
      platform: platforms.get('apple') ?? new AppleCommands(),
      ca,
      publicUrl: config.publicUrl,
      gate,
      idle,
      pushTopic: async () => (await pushCertificates.summary('apple'))?.topic,
      rootPayload: config.apple.rootPayload,
      userChannels: config.apple.userChannels,
      identityDays: config.identityDays,
      trustedProxyCertHeader: config.trustedProxyCertHeader,
      logger: logger.child({ component: 'apple' }),
    });
    const windowsDevices = windowsFrontEnd({
      windows,
      commands,
      platform: platforms.get('windows') ?? new WindowsCommands(),
      ca,
      publicUrl: config.publicUrl,
      authPolicy: config.windows.authPolicy,
      pollMinutes: config.windows.pollMinutes,
      identityDays: config.identityDays,
      trustedProxyCertHeader: config.trustedProxyCertHeader,
      wnsPackageFamilyName: config.wns.pfn,
      gate,
      sealer,
      idle,
      logger: logger.child({ component: 'windows' }),
    });
    const deviceRouters = [
      appleDevices.router,
      termsRouter({ gate, tokens }),
      androidRouter({ android, commands, platform: platforms.get('android') ?? new AndroidCommands(), gate, publicUrl: config.publicUrl }),
      windowsDevices.router,
    ];
    const app = createApp({ logger, admin, devices: deviceRouters, lanes: [...appleDevices.lanes, ...windowsDevices.lanes], ready: () => readiness(db, queues, pushCertificates) });

    return {
      config,
      logger,
      db,
      databaseUrl,
      embedded: !config.databaseUrl,
      queues,
      commands,
      dispatcher,
      devices,
      events,
      tokens,
      pushCertificates,
      ca,
      app,
      newAdminToken,
      startWorker: (overrides = {}) => startCoreWorker(core, opts, overrides),
      startWorkerThread: (overrides) =>
        startWorkerThread({
          loops: overrides,
          config,
          databaseUrl,
          logger,
          queueNamespace: opts.queueNamespace,
          retryDelayMs: opts.retryDelayMs,
          generation: core.generation instanceof LocalQueueGeneration ? core.generation.buffer : undefined,
        }),
      stop: () => runAll(cleanup),
    };
  } catch (err) {
    await runAll(cleanup);
    throw err;
  }
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

/**
 * Makes sure an admin can get in: `MOORING_ADMIN_TOKEN` is registered as an admin token; with none
 * configured, the first start creates one and returns it to be printed (only its digest is stored).
 */
async function bootstrapAdminToken(tokens: PgTokenStore, db: Db, configured: string | undefined): Promise<string | undefined> {
  if (configured) {
    await db('api_tokens')
      .insert({ name: 'MOORING_ADMIN_TOKEN', role: 'admin', token_hash: hashSecret(configured), hint: hintOf(configured) })
      .onConflict('token_hash')
      .ignore();
    return undefined;
  }
  if (await tokens.hasApiTokens()) return undefined;
  const secret = newApiToken();
  await tokens.createApiToken({ name: 'bootstrap admin', role: 'admin', secret, hint: hintOf(secret) }, { type: 'api_token.created', actor: 'system:first-start' });
  return secret;
}

/** Ready when the database and the queue answer; the APNs certificate state is reported, not required (Apple is optional). */
async function readiness(db: Db, queues: QueueBackend, pushCertificates: PgPushCertificateStore): Promise<{ ok: boolean; checks: Record<string, string> }> {
  const check = async (p: Promise<unknown>) =>
    Promise.race([p.then(() => 'ok'), new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), 2000).unref())]).catch(
      (err: Error) => `error: ${err.message}`,
    );
  const [database, queue, apns] = await Promise.all([
    check(pingDb(db)),
    check(queues.ping()),
    pushCertificateHealth(pushCertificates).then(
      (h) => h.check,
      (err: Error) => `error: ${err.message}`,
    ),
  ]);
  return { ok: database === 'ok' && queue === 'ok', checks: { database, queue: `${queue} (${queues.kind})`, apns_certificate: apns } };
}

export interface Listeners {
  http: http.Server;
  https: https.Server;
  close(): Promise<void>;
}

/**
 * Starts the HTTPS listener (asks for, but does not require, a client certificate signed by our CA)
 * and the plain HTTP one. `close` stops accepting, lets requests in flight finish (10 s at most),
 * then drops what remains.
 */
export async function listen(m: Mooring): Promise<Listeners> {
  const { config } = m;
  const tls = await withDirLock(config.certsDir, () =>
    ensureTlsCertificate(m.ca, config.certsDir, [config.publicUrl.hostname, 'localhost', '127.0.0.1']),
  );
  if (tls.issued) m.logger.info({ hosts: [config.publicUrl.hostname, 'localhost', '127.0.0.1'] }, 'issued a new TLS server certificate');
  const httpsServer = https.createServer({ cert: tls.certPem, key: tls.keyPem, ca: [tls.caPem], requestCert: true, rejectUnauthorized: false }, m.app);
  const httpServer = http.createServer(m.app);
  await Promise.all([
    new Promise<void>((resolve, reject) => httpsServer.once('error', reject).listen(config.httpsPort, config.bind, resolve)),
    new Promise<void>((resolve, reject) => httpServer.once('error', reject).listen(config.httpPort, config.bind, resolve)),
  ]);
  const close = async () => {
    const force = setTimeout(() => {
      httpServer.closeAllConnections();
      httpsServer.closeAllConnections();
    }, 10_000);
    await Promise.all([closeServer(httpServer), closeServer(httpsServer)]);
    clearTimeout(force);
  };
  return { http: httpServer, https: httpsServer, close };
}

function closeServer(server: http.Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
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

async function runAll(steps: Array<() => Promise<void>>): Promise<void> {
  for (const step of steps) {
    await step().catch(() => undefined);
  }
}

/** package.json relative to this file, from src/ or from dist/src/. */
function findUp(name: string): string {
  for (const rel of ['..', '../..']) {
    if (fs.existsSync(path.join(__dirname, rel, name))) return path.join(rel, name);
  }
  return path.join('..', name);
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

/**
 * The Android DPC settings, checked at start: a partial or wrong configuration stops the start with
 * the reason; none at all just leaves provisioning payloads unavailable (503 with what to set).
 */
function androidDpcConfig(config: Config): ReturnType<typeof validateDpc> {
  const result = validateDpc(config.androidDpc);
  const configured = Object.values(config.androidDpc).some((v) => v !== undefined);
  if (!result.ok && configured) throw new ConfigError(result.problems);
  return result;
}
