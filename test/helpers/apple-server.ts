/**
 * A Mooring test server set up for Apple devices: the real Apple plug-in, an HTTPS listener on the
 * port `MOORING_PUBLIC_URL` names (profiles carry absolute URLs, so the port is chosen first), and an
 * APNs push certificate uploaded through the admin API (no profile is served without one). With
 * `apns`, pushes go to that loopback mock, trusted through MOORING_APNS_CA_FILE.
 */
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AppleCommands } from '../../protocols/apple/commands';
import { PlatformRegistry } from '../../src/core/platforms';
import { ensureTlsCertificate } from '../../src/pki/ca';
import { createApnsTestPki, type ApnsMock, type ApnsTestPki } from './apns-mock';
import { startTestServer, type TestServer } from './server';

export interface AppleTestServer {
  s: TestServer;
  /** https://localhost:<port> */
  base: string;
  /** The APNs topic of the uploaded push certificate. */
  topic: string;
  pki: ApnsTestPki;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

export async function startAppleServer(opts: { apns?: ApnsMock; pki?: ApnsTestPki; env?: Record<string, string>; retryDelayMs?: number; queue?: 'postgres' | 'redis' } = {}): Promise<AppleTestServer> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apple-'));
  const pki = opts.pki ?? (await createApnsTestPki());
  const port = await freePort();
  const base = `https://localhost:${port}`;
  const env: Record<string, string> = { MOORING_PUBLIC_URL: base, ...opts.env };
  if (opts.apns) {
    fs.writeFileSync(path.join(tmp, 'apns-ca.pem'), pki.caPem);
    Object.assign(env, { MOORING_APNS_URL: opts.apns.url, MOORING_APNS_CA_FILE: path.join(tmp, 'apns-ca.pem') });
  }
  const s = await startTestServer({ platforms: new PlatformRegistry().register(new AppleCommands()), env, retryDelayMs: opts.retryDelayMs, queue: opts.queue });
  const tls = await ensureTlsCertificate(s.m.ca, tmp, ['localhost', '127.0.0.1']);
  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem, ca: s.m.ca.certPem, requestCert: true, rejectUnauthorized: false }, s.m.app);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const push = await pki.pushCertificate();
  await s.api.put('/api/v1/apple/push-certificate').send({ certificate: push.certPem, private_key: push.keyPem }).expect(200);
  return {
    s,
    base,
    topic: push.topic,
    pki,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await s.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}
