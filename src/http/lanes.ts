/**
 * Device hot paths answered before express. An Apple Idle poll costs a quarter of a millisecond of CPU
 * in all, and express's per-request setup (new prototypes for req and res, the router walk, the
 * middleware chain) was a third of it. A lane is an exact method and path, whatever the query string
 * (Windows adds `?mode=Maintenance&Platform=WoA` to every management request); anything else goes to
 * express, where the same handler is mounted too (it also matches `/path/` and other cases), so a
 * lane changes the cost of a request, never its answer. Lanes keep the request id, the request log and
 * the latency metric that express's middleware gives every other request.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Router } from 'express';
import type { Logger } from 'pino';
import { trackRequest } from './logging';

export type DeviceHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface Lane {
  method: string;
  /** The exact request path; the query string is the handler's to read. */
  path: string;
  /** Answers every request itself, errors included; a rejection is a bug, answered 500. */
  handle: DeviceHandler;
}

/** A platform's device endpoints: its express router, and the lanes for its hottest requests (also on the router). */
export interface DeviceFrontEnd {
  router: Router;
  lanes: Lane[];
}

/**
 * Mounts `handle` for each method of `path` twice: as a lane, and on the router for the requests that
 * miss the lane (`/path/`, other letter case), so both ways give the same answer.
 */
export function mountDevice(front: DeviceFrontEnd, methods: ReadonlyArray<'GET' | 'PUT' | 'POST'>, path: string, handle: DeviceHandler): void {
  for (const method of methods) {
    front.router[method === 'GET' ? 'get' : method === 'PUT' ? 'put' : 'post'](path, (req, res) => handle(req, res));
    front.lanes.push({ method, path, handle });
  }
}

/** A whole answer with its length, as device clients expect (never chunked). */
export function answer(res: ServerResponse, status: number, contentType: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) }).end(body);
}

export function withLanes(app: RequestListener, lanes: readonly Lane[], logger: Logger): RequestListener {
  if (lanes.length === 0) return app;
  const byTarget = new Map(lanes.map((l) => [`${l.method} ${l.path}`, l]));
  return (req, res) => {
    const url = req.url ?? '';
    const query = url.indexOf('?');
    const lane = byTarget.get(`${req.method} ${query < 0 ? url : url.slice(0, query)}`);
    if (!lane) return app(req, res);
    trackRequest(logger, req, res, () => lane.path);
    lane.handle(req, res).catch((err: unknown) => {
      logger.error({ err, method: req.method, url: lane.path }, 'unhandled error');
      if (res.headersSent) return void res.destroy();
      answer(res, 500, 'text/plain; charset=utf-8', 'Internal Server Error');
    });
  };
}
