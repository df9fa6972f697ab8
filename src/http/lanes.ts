/**
 * Device hot paths answered before express. An Apple Idle poll costs a quarter of a millisecond of CPU
 * in all, and express's per-request setup (new prototypes for req and res, the router walk, the
 * middleware chain) was a tenth of it. A lane is an exact method and path; anything else, including
 * the same path with a query string, goes to express, where the same handler is mounted too, so a
 * lane changes the cost of a request, never its answer. Lanes keep the request id, the request log and
 * the latency metric that express's middleware gives every other request.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { trackRequest } from './logging';

export type DeviceHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface Lane {
  method: string;
  /** The exact request target, without a query string. */
  path: string;
  /** Answers every request itself, errors included; a rejection is a bug, answered 500. */
  handle: DeviceHandler;
}

export function withLanes(app: RequestListener, lanes: readonly Lane[], logger: Logger): RequestListener {
  if (lanes.length === 0) return app;
  const byTarget = new Map(lanes.map((l) => [`${l.method} ${l.path}`, l]));
  return (req, res) => {
    const lane = byTarget.get(`${req.method} ${req.url}`);
    if (!lane) return app(req, res);
    trackRequest(logger, req, res, () => lane.path);
    lane.handle(req, res).catch((err: unknown) => {
      logger.error({ err, method: req.method, url: lane.path }, 'unhandled error');
      if (res.headersSent) return void res.destroy();
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Internal Server Error');
    });
  };
}
