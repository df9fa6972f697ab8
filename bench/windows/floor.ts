/**
 * The floor: a bare express app on the same HTTPS setup as Mooring (same certificate, same
 * requestCert/rejectUnauthorized, same keep-alive), with express.raw() and canned answers: for the
 * three enrollment services, the bodies Mooring answered during the warm-up; for the management
 * endpoint, Mooring's reply to a device's first message (carrying a command of the round's kind) or to
 * its Status message (carrying nothing). No middleware, no auth, no parsing, no database.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { closeServer, listenHttps, type TlsMaterial } from '../lib/listen';

const SOAP = 'application/soap+xml; charset=utf-8';
const SYNCML = 'application/vnd.syncml.dm+xml';

export interface CannedSyncMl {
  /** The reply to the device's first message: statuses and one command. */
  first: string;
  /** The reply to its Status message: statuses only. */
  second: string;
}

export interface FloorServer {
  port: number;
  setSoap(bodies: Record<'Discovery.svc' | 'Policy.svc' | 'Enrollment.svc', string>): void;
  setSyncMl(canned: CannedSyncMl): void;
  close(): Promise<void>;
}

export async function startFloor(tls: TlsMaterial): Promise<FloorServer> {
  let soap: Record<string, string> = {};
  let syncml: CannedSyncMl = { first: '', second: '' };
  const app = express();
  const raw = express.raw({ type: () => true, limit: 1024 * 1024 });
  app.post('/EnrollmentServer/:svc', raw, (req, res) => {
    res.status(200).type(SOAP).send(soap[String(req.params.svc)] ?? '');
  });
  app.post('/ManagementServer/MDM.svc', raw, (req, res) => {
    const first = Buffer.isBuffer(req.body) && req.body.includes('<Alert>');
    res.status(200).type(SYNCML).send(first ? syncml.first : syncml.second);
  });
  const server = await listenHttps(tls, app);
  return {
    port: (server.address() as AddressInfo).port,
    setSoap: (bodies) => {
      soap = { ...bodies };
    },
    setSyncMl: (canned) => {
      syncml = canned;
    },
    close: () => closeServer(server),
  };
}
