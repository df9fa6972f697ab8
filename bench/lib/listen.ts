/** The loopback listeners Mooring and the floors share: keep-alive sockets live 60 s, so they survive the untimed pauses between rounds. */
import type http from 'node:http';
import type { RequestListener } from 'node:http';
import https from 'node:https';

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  caPem: string;
}

/** Listens on 127.0.0.1 on `port` (0: a free one); keep-alive sockets survive the pauses between rounds. */
export async function listenLoopback<S extends http.Server | https.Server>(server: S, port = 0): Promise<S> {
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return server;
}

/** HTTPS on 127.0.0.1 with the options `listen` uses (client certificate asked for, not required). */
export function listenHttps(tls: TlsMaterial, app: RequestListener, port = 0): Promise<https.Server> {
  return listenLoopback(https.createServer({ cert: tls.certPem, key: tls.keyPem, ca: [tls.caPem], requestCert: true, rejectUnauthorized: false }, app), port);
}

export function closeServer(server: http.Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
