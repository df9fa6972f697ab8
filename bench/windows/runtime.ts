/**
 * A Mooring runtime wired as `serve` wires it, with the real Windows command plug-in, behind an HTTPS
 * listener made as `listen` makes it (a server certificate from Mooring's CA for localhost and
 * 127.0.0.1; a client certificate is asked for but not required). Unlike `listen`, idle keep-alive
 * connections are kept for 60 s, so they survive the (untimed) pauses between rounds. The floor uses
 * the same TLS material and server options.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { RequestListener } from 'node:http';
import pino from 'pino';
import { WindowsCommands } from '../../protocols/windows/commands';
import { loadConfig } from '../../src/config';
import { PlatformRegistry } from '../../src/core/platforms';
import { newApiToken } from '../../src/core/secrets';
import { createMooring, type Mooring } from '../../src/main';
import { ensureTlsCertificate } from '../../src/pki/ca';

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  caPem: string;
}

export interface WindowsRuntime {
  m: Mooring;
  adminToken: string;
  tls: TlsMaterial;
  /** https://localhost:<port>, as the device is told to reach it */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startWindowsRuntime(opts: { databaseUrl: string; poolMax?: string }): Promise<WindowsRuntime> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-bench-windows-'));
  const adminToken = newApiToken();
  const config = loadConfig({
    DATABASE_URL: opts.databaseUrl,
    MOORING_CERTS_DIR: path.join(stateDir, 'certs'),
    MOORING_DATA_DIR: path.join(stateDir, 'data'),
    MOORING_ADMIN_TOKEN: adminToken,
    MOORING_DB_POOL_MAX: opts.poolMax,
    MOORING_LOG_LEVEL: 'silent',
  });
  const platforms = new PlatformRegistry().register(new WindowsCommands());
  const queueNamespace = `bench_windows_${crypto.randomBytes(5).toString('hex')}`;
  const m = await createMooring(config, { logger: pino({ level: 'silent' }), platforms, queueNamespace }).catch((err: unknown) => {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw err;
  });
  let server: https.Server | undefined;
  let tls: TlsMaterial;
  try {
    const issued = await ensureTlsCertificate(m.ca, config.certsDir, ['localhost', '127.0.0.1']);
    tls = { certPem: issued.certPem, keyPem: issued.keyPem, caPem: m.ca.certPem };
    server = await listenHttps(tls, m.app);
  } catch (err) {
    await m.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  return {
    m,
    adminToken,
    tls,
    url: `https://localhost:${port}`,
    port,
    close: async () => {
      await closeServer(server);
      await m.stop();
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** HTTPS on 127.0.0.1, free port, with the options `listen` uses; keep-alive sockets live 60 s. */
export async function listenHttps(tls: TlsMaterial, app: RequestListener): Promise<https.Server> {
  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem, ca: [tls.caPem], requestCert: true, rejectUnauthorized: false }, app);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return server;
}

export function closeServer(server: https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
