/**
 * A Mooring runtime wired as `serve` wires it, with the real Apple command plug-in, set up as
 * test/e2e/apple.test.ts sets it up: a loopback mock APNs (HTTP/2, client certificate required) with
 * its own test CA, MOORING_APNS_URL / MOORING_APNS_CA_FILE pointing at it, MOORING_PUBLIC_URL on a port
 * chosen first, an HTTPS listener on that port made as `listen` makes it (server certificate from
 * Mooring's CA, client certificate asked for but not required; idle keep-alive sockets kept 60 s so
 * they survive the untimed pauses between rounds), and a push certificate uploaded through
 * `pushCertificates.replace`. The worker is started only when asked (the push measurement), as `serve`
 * starts it: on a thread of its own unless MOORING_WORKER_THREAD=false.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { AppleCommands } from '../../protocols/apple/commands';
import { loadConfig } from '../../src/config';
import { PlatformRegistry } from '../../src/core/platforms';
import { newApiToken } from '../../src/core/secrets';
import { createMooring, type Mooring } from '../../src/main';
import { ensureTlsCertificate } from '../../src/pki/ca';
import { readPushCertificate } from '../../src/pki/push-certificate';
import { freePort } from '../../src/storage/embedded';
import type { RunningWorker } from '../../src/worker';
import { ApnsMock, createApnsTestPki, type ApnsTestPki, type TestPushCertificate } from '../../test/helpers/apns-mock';
import { closeServer, listenHttps, type TlsMaterial } from '../lib/listen';

export interface AppleRuntime {
  m: Mooring;
  adminToken: string;
  tls: TlsMaterial;
  /** https://localhost:<port>, as devices are told to reach it (they connect to 127.0.0.1). */
  url: string;
  port: number;
  apns: ApnsMock;
  apnsPki: ApnsTestPki;
  apnsCaPem: string;
  push: TestPushCertificate;
  queueNamespace: string;
  /** The background worker, as `serve` runs it (MOORING_WORKER_THREAD). */
  startWorker(): Promise<void>;
  close(): Promise<void>;
}

export async function startAppleRuntime(opts: { databaseUrl: string; redisUrl?: string; poolMax?: string; singleProcess?: boolean }): Promise<AppleRuntime> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-bench-apple-'));
  const cleanup: Array<() => Promise<void>> = [async () => fs.rmSync(stateDir, { recursive: true, force: true })];
  const undo = async () => {
    for (const step of cleanup) await step().catch(() => undefined);
  };
  try {
    const apnsPki = await createApnsTestPki();
    const apns = await ApnsMock.start({ pki: apnsPki });
    cleanup.unshift(() => apns.close());
    const apnsCaFile = path.join(stateDir, 'apns-ca.pem');
    fs.writeFileSync(apnsCaFile, apnsPki.caPem);

    const port = await freePort();
    const url = `https://localhost:${port}`;
    const adminToken = newApiToken();
    const queueNamespace = `bench_apple_${crypto.randomBytes(5).toString('hex')}`;
    const config = loadConfig({
      DATABASE_URL: opts.databaseUrl,
      REDIS_URL: opts.redisUrl,
      MOORING_PUBLIC_URL: url,
      MOORING_APNS_URL: apns.url,
      MOORING_APNS_CA_FILE: apnsCaFile,
      MOORING_CERTS_DIR: path.join(stateDir, 'certs'),
      MOORING_DATA_DIR: path.join(stateDir, 'data'),
      MOORING_ADMIN_TOKEN: adminToken,
      MOORING_DB_POOL_MAX: opts.poolMax,
      MOORING_LOG_LEVEL: 'silent',
      // One process holds every queue change here, as in the embedded default (`npm start`).
      MOORING_IDLE_CACHE: opts.singleProcess ? 'local' : 'auto',
      // As `serve` runs its worker: on a thread of its own unless this says false.
      MOORING_WORKER_THREAD: process.env.MOORING_WORKER_THREAD,
    });
    const platforms = new PlatformRegistry().register(new AppleCommands());
    const m = await createMooring(config, { logger: pino({ level: 'silent' }), platforms, queueNamespace });
    let worker: RunningWorker | undefined;
    cleanup.unshift(async () => {
      await worker?.stop();
      await m.stop();
    });

    const issued = await ensureTlsCertificate(m.ca, config.certsDir, ['localhost', '127.0.0.1']);
    const tls = { certPem: issued.certPem, keyPem: issued.keyPem, caPem: m.ca.certPem };
    const server = await listenHttps(tls, m.app, port);
    cleanup.unshift(() => closeServer(server));

    const push = await apnsPki.pushCertificate();
    await m.pushCertificates.replace(readPushCertificate({ certificate: push.certPem, private_key: push.keyPem }));

    return {
      m,
      adminToken,
      tls,
      url,
      port,
      apns,
      apnsPki,
      apnsCaPem: apnsPki.caPem,
      push,
      queueNamespace,
      async startWorker() {
        worker ??= config.workerThread ? await m.startWorkerThread() : m.startWorker();
      },
      close: undo,
    };
  } catch (err) {
    await undo();
    throw err;
  }
}

/** One admin API call over the HTTPS listener (bearer token, JSON). */
export function adminRequest(rt: Pick<AppleRuntime, 'port' | 'tls' | 'adminToken'>, method: string, p: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: rt.port,
        servername: 'localhost',
        method,
        path: p,
        ca: rt.tls.caPem,
        agent: false,
        headers: {
          authorization: `Bearer ${rt.adminToken}`,
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = text;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON: kept as text
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
