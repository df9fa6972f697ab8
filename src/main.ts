/**
 * The composition root: config -> storage -> queues -> push -> services -> HTTP -> listeners. This file
 * and src/core-root.ts (the part the worker's thread shares: storage, queues, push, services) are the
 * only ones that wire concrete parts together; everything else receives what it needs.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { adminRouter } from './admin/router';
import { PgDirectoryStore } from './storage/directory';
import { PgEnrollmentGate } from './storage/enrollment-gate';
import { IdleCache } from './core/idle-cache';
import { LocalQueueGeneration } from './core/queue-generation';
import { termsRouter } from '../protocols/terms/routes';
import { PgRestrictionStore } from './storage/restrictions';
import { PgCorporateIdentifierStore } from './storage/corporate-identifiers';
import { PgPreapprovedStore } from './storage/preapproved';
import { PgReportStore } from './storage/reports';
import { ConfigError, type Config } from './config';
import { validateDpc } from '../protocols/android/provisioning';
import { CommandService } from './core/commands';
import { hashSecret, hintOf, newApiToken } from './core/secrets';
import { WEBHOOK_QUEUE } from './events/webhooks';
import { createApp } from './http/app';
import { registerQueueDepth } from './metrics';
import { ensureTlsCertificate, loadOrCreateCa, type CertificateAuthority } from './pki/ca';
import { withDirLock } from './pki/dir-lock';
import { PgPolicyStore } from './storage/policies';
import { PgAndroidStore } from './storage/android';
import { AndroidCommands } from '../protocols/android/commands';
import { androidRouter } from '../protocols/android/routes';
import { AppleCommands } from '../protocols/apple/commands';
import { appleFrontEnd } from '../protocols/apple/routes';
import { PgPushCertificateStore } from './storage/push-certificates';
import { WindowsCommands } from '../protocols/windows/commands';
import { windowsFrontEnd } from '../protocols/windows/routes';
import { PgWindowsStore } from './storage/windows';
import { PUSH_QUEUE, type PushDispatcher } from './push/dispatcher';
import { pushCertificateHealth, registerApnsCertificateGauge } from './push/apns';
import type { QueueBackend } from './queue/backend';
import { pingDb, type Db } from './storage/db';
import { PgDeviceStore, SEEN_RESOLUTION_SECONDS } from './storage/devices';
import { startEmbeddedPostgres } from './storage/embedded';
import { PgEventStore } from './storage/events';
import { PgTokenStore } from './storage/tokens';
import type { RunningWorker } from './worker';
import { startWorkerThread } from './worker-thread';
import { openCore, runAll, startCoreWorker, type MooringOptions, type WorkerOverrides } from './core-root';
import type { RequestListener } from 'node:http';

export type { MooringOptions, WorkerOverrides } from './core-root';

export const VERSION: string = (JSON.parse(fs.readFileSync(path.join(__dirname, findUp('package.json')), 'utf8')) as { version: string }).version;

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

/** package.json relative to this file, from src/ or from dist/src/. */
function findUp(name: string): string {
  for (const rel of ['..', '../..']) {
    if (fs.existsSync(path.join(__dirname, rel, name))) return path.join(rel, name);
  }
  return path.join('..', name);
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
