/**
 * The floor: a bare express app with one POST route that parses JSON with express.json() and answers
 * a small JSON body. It is what any express JSON endpoint costs on this machine, with no middleware,
 * no auth and no database.
 */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createServer } from 'node:http';
import { closeServer, listenLoopback } from '../lib/listen';

export interface FloorServer {
  port: number;
  close(): Promise<void>;
}

export async function startFloor(path: string): Promise<FloorServer> {
  const app = express();
  app.post(path, express.json(), (req, res) => {
    res.json({ policy: null, commands: [], checkin_interval_seconds: 900, echo: typeof req.body === 'object' });
  });
  const server: http.Server = await listenLoopback(createServer(app));
  return { port: (server.address() as AddressInfo).port, close: () => closeServer(server) };
}
