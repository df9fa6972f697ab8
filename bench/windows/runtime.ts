/**
 * A Mooring runtime wired as `serve` wires it, with the real Windows command plug-in, behind an HTTPS
 * listener made as `listen` makes it (a server certificate from Mooring's CA for localhost and
 * 127.0.0.1; a client certificate is asked for but not required). Unlike `listen`, idle keep-alive
 * connections are kept for 60 s, so they survive the (untimed) pauses between rounds. The floor uses
 * the same TLS material and server options.
 */
import type https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WindowsCommands } from '../../protocols/windows/commands';
import type { Mooring } from '../../src/main';
import { ensureTlsCertificate } from '../../src/pki/ca';
import { closeServer, listenHttps, type TlsMaterial } from '../lib/listen';
import { createPlatformMooring, type PlatformRuntimeOptions } from '../lib/platform-runtime';

export interface WindowsRuntime {
  m: Mooring;
  adminToken: string;
  tls: TlsMaterial;
  /** https://localhost:<port>, as the device is told to reach it */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startWindowsRuntime(opts: PlatformRuntimeOptions): Promise<WindowsRuntime> {
  const { m, adminToken, config, removeState } = await createPlatformMooring('windows', new WindowsCommands(), opts);
  let server: https.Server | undefined;
  let tls: TlsMaterial;
  try {
    const issued = await ensureTlsCertificate(m.ca, config.certsDir, ['localhost', '127.0.0.1']);
    tls = { certPem: issued.certPem, keyPem: issued.keyPem, caPem: m.ca.certPem };
    server = await listenHttps(tls, m.app);
  } catch (err) {
    await m.stop();
    removeState();
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
      removeState();
    },
  };
}
