/**
 * A Mooring runtime wired as `serve` wires it, with the real Android command plug-in (bench/lib's
 * runtime stands in the test platform, so it cannot be reused here), listening on a loopback port
 * over plain HTTP as a DPC would reach it behind a TLS-terminating proxy.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { AndroidCommands } from '../../protocols/android/commands';
import { loadConfig } from '../../src/config';
import { PlatformRegistry } from '../../src/core/platforms';
import { newApiToken } from '../../src/core/secrets';
import { createMooring, type Mooring } from '../../src/main';

export interface AndroidRuntime {
  m: Mooring;
  adminToken: string;
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startAndroidRuntime(opts: { databaseUrl: string; poolMax?: string }): Promise<AndroidRuntime> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-bench-android-'));
  const adminToken = newApiToken();
  const config = loadConfig({
    DATABASE_URL: opts.databaseUrl,
    MOORING_CERTS_DIR: path.join(stateDir, 'certs'),
    MOORING_DATA_DIR: path.join(stateDir, 'data'),
    MOORING_ADMIN_TOKEN: adminToken,
    MOORING_DB_POOL_MAX: opts.poolMax,
    MOORING_LOG_LEVEL: 'silent',
  });
  const platforms = new PlatformRegistry().register(new AndroidCommands());
  const queueNamespace = `bench_android_${crypto.randomBytes(5).toString('hex')}`;
  const m = await createMooring(config, { logger: pino({ level: 'silent' }), platforms, queueNamespace }).catch((err: unknown) => {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw err;
  });
  let server: http.Server | undefined;
  try {
    server = await listenLoopback(http.createServer(m.app));
  } catch (err) {
    await m.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  return {
    m,
    adminToken,
    url: `http://127.0.0.1:${port}`,
    port,
    close: async () => {
      await closeServer(server);
      await m.stop();
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** Listens on 127.0.0.1 on a free port; keep-alive sockets survive the pauses between rounds. */
export async function listenLoopback(server: http.Server): Promise<http.Server> {
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return server;
}

export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
