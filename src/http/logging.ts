/** Request ids, structured request logs and per-route latency metrics for every listener. */
import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import { httpDuration } from '../metrics';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

declare module 'express-serve-static-core' {
  interface Request {
    id?: string;
    /** A logger carrying this request's id (made on first use). */
    log?: Logger;
  }
}

/**
 * Reuses a caller's `X-Request-Id` when it is sane, otherwise makes one, and echoes it. Each request is
 * logged once when it ends (errors and 5xx at error, 4xx at info, the rest at debug), and its latency
 * is observed labelled by `routeOf()`, the route pattern (not the raw URL, to bound cardinality). One
 * listener does both. URLs are logged without their query, and no header is logged, so tokens and
 * signatures stay out of the log. Returns the request id.
 */
export function trackRequest(logger: Logger, req: IncomingMessage, res: ServerResponse, routeOf: () => string): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && SAFE_ID.test(given) ? given : crypto.randomUUID();
  res.setHeader('X-Request-Id', id);
  const started = process.hrtime.bigint();
  res.once('finish', () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    httpDuration.observe({ method: req.method, route: routeOf(), status: String(res.statusCode) }, seconds);
    const level = res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'debug';
    if (!logger.isLevelEnabled(level)) return;
    const url = ((req as { originalUrl?: string }).originalUrl ?? req.url ?? '').split('?')[0];
    logger[level]({ req_id: id, method: req.method, url, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 }, 'request');
  });
  return id;
}

/** `trackRequest` for express, labelled by the matched route; the per-request child logger is only built when something logs. */
export function requestLogging(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const id = trackRequest(logger, req, res, () => (req.route?.path ? `${req.baseUrl}${req.route.path}` : req.baseUrl || 'unmatched'));
    req.id = id;
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', { configurable: true, get: () => (child ??= logger.child({ req_id: id })) });
    next();
  };
}
