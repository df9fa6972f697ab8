/**
 * The floors, each measured in the same run as the figure it is compared with:
 *
 * - HTTP: a bare express 5 app on the same HTTPS setup as Mooring (same certificate, same
 *   requestCert / rejectUnauthorized, same keep-alive), with `express.raw()` and nothing else:
 *   `PUT /mdm/connect` answers an empty 200 (what Mooring answers an Idle with nothing queued), and
 *   `POST /scep` answers a canned CertRep captured from Mooring in the warm-up. No auth, no parsing,
 *   no database. The load client sends it the very same prepared requests it sends Mooring.
 * - APNs: a bare `@parse/node-apn` send loop to the same mock: one Provider (one HTTP/2 connection)
 *   with the same push certificate and CA, the same notification Mooring builds
 *   (`{"mdm": PushMagic}`, push type mdm, topic, priority 10, 7-day expiry), at most 1,000 in flight.
 *   The Provider is put together from node-apn's parts as src/push/apns.ts does, because its public
 *   constructor insists on the app-push environment extensions, which an MDM push certificate (and
 *   the mock's test certificate) does not carry; nothing on the send path differs.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Notification } from '@parse/node-apn';
import express from 'express';
import { APNS_EXPIRATION_SECONDS } from '../../src/push/apns';
import type { ApnsMock } from '../../test/helpers/apns-mock';
import { closeServer, listenHttps, type TlsMaterial } from '../lib/listen';

export interface FloorServer {
  port: number;
  setCertRep(der: Buffer): void;
  close(): Promise<void>;
}

export async function startFloor(tls: TlsMaterial): Promise<FloorServer> {
  let certRep: Buffer = Buffer.alloc(0);
  const app = express();
  const raw = express.raw({ type: () => true, limit: 1024 * 1024 });
  app.put('/mdm/connect', raw, (_req, res) => {
    res.status(200).end();
  });
  app.post('/scep', raw, (_req, res) => {
    res.status(200).set('Content-Type', 'application/x-pki-message').send(certRep);
  });
  const server = await listenHttps(tls, app);
  return {
    port: (server.address() as AddressInfo).port,
    setCertRep: (der) => {
      certRep = der;
    },
    close: () => closeServer(server),
  };
}

// ---- the bare node-apn loop ----

interface ApnFailure {
  device?: string;
  status?: number;
  response?: { reason?: string };
  error?: Error;
}
interface ApnProvider {
  send(note: Notification, token: string): Promise<{ sent: unknown[]; failed: ApnFailure[] }>;
  shutdown(callback?: () => void): void;
}

const quiet = Object.assign((_msg: unknown) => undefined, { enabled: false });

const ApnProviderClass = (() => {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const credentials = require('@parse/node-apn/lib/credentials')({ logger: quiet });
  const config = require('@parse/node-apn/lib/config')({
    logger: quiet,
    prepareCertificate: (c: { cert: string; key: string }) => ({ cert: c.cert, key: c.key }),
    prepareToken: credentials.token,
    prepareCA: credentials.ca,
  });
  const Client = require('@parse/node-apn/lib/client')({ logger: quiet, config, http2 });
  return require('@parse/node-apn/lib/provider')({ logger: quiet, Client }) as new (options: Record<string, unknown>) => ApnProvider;
  /* eslint-enable @typescript-eslint/no-require-imports */
})();

export interface PushTarget {
  token: string;
  magic: string;
}

export class BareApns {
  readonly #provider: ApnProvider;

  constructor(opts: { certPem: string; keyPem: string; caPem: string; url: string }) {
    const u = new URL(opts.url);
    this.#provider = new ApnProviderClass({
      cert: opts.certPem,
      key: opts.keyPem,
      ca: [opts.caPem],
      address: u.hostname,
      port: Number(u.port || 443),
      connectionRetryLimit: 0,
      requestTimeout: 10_000,
    });
  }

  /** Sends one push per target, at most `maxInFlight` at once; resolves when every answer is in. */
  async sendAll(targets: PushTarget[], topic: string, maxInFlight = 1000): Promise<{ failed: number; firstFailure?: string }> {
    let next = 0;
    let failed = 0;
    let firstFailure: string | undefined;
    const loop = async () => {
      for (let i = next++; i < targets.length; i = next++) {
        const t = targets[i]!;
        const note = new Notification();
        note.mdm = t.magic;
        note.pushType = 'mdm';
        note.topic = topic;
        note.priority = 10;
        note.expiry = Math.floor(Date.now() / 1000) + APNS_EXPIRATION_SECONDS;
        try {
          const r = await this.#provider.send(note, t.token);
          if (r.failed.length > 0) {
            failed += 1;
            const f = r.failed[0]!;
            firstFailure ??= `${f.status ?? ''} ${f.response?.reason ?? f.error?.message ?? ''}`.trim();
          }
        } catch (err) {
          failed += 1;
          firstFailure ??= (err as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(maxInFlight, targets.length) }, loop));
    return { failed, ...(firstFailure ? { firstFailure } : {}) };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#provider.shutdown(resolve));
  }
}

/**
 * Resolves when the mock has accepted (200) `count` pushes, polling every millisecond or two, with when
 * the first push arrived and when the last was accepted; rejects after `timeoutMs`. The first check is
 * cheap (how many arrived); the 200s are counted only then.
 */
export async function waitDelivered(apns: ApnsMock, count: number, timeoutMs: number): Promise<{ first: number; last: number }> {
  const t0 = performance.now();
  let first = Number.NaN;
  for (;;) {
    if (Number.isNaN(first) && apns.received.length > 0) first = performance.now();
    if (apns.received.length >= count) {
      let ok = 0;
      for (const p of apns.received) if (p.status === 200) ok += 1;
      if (ok >= count) return { first, last: performance.now() };
    }
    if (performance.now() - t0 > timeoutMs) {
      throw new Error(`only ${apns.delivered.length} of ${count} pushes reached the mock APNs within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}
