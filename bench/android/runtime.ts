/**
 * A Mooring runtime wired as `serve` wires it, with the real Android command plug-in (bench/lib's
 * runtime stands in the test platform, so it cannot be reused here), listening on a loopback port
 * over plain HTTP as a DPC would reach it behind a TLS-terminating proxy.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AndroidCommands } from '../../protocols/android/commands';
import type { Mooring } from '../../src/main';
import { closeServer, listenLoopback } from '../lib/listen';
import { createPlatformMooring, type PlatformRuntimeOptions } from '../lib/platform-runtime';

export interface AndroidRuntime {
  m: Mooring;
  adminToken: string;
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startAndroidRuntime(opts: PlatformRuntimeOptions): Promise<AndroidRuntime> {
  const { m, adminToken, removeState } = await createPlatformMooring('android', new AndroidCommands(), opts);
  let server: http.Server | undefined;
  try {
    server = await listenLoopback(http.createServer(m.app));
  } catch (err) {
    await m.stop();
    removeState();
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
      removeState();
    },
  };
}
