/** Request ids, structured request logs and per-route latency metrics for every listener. */
import crypto from 'node:crypto';
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
 * is observed labelled by the matched route pattern (not the raw URL, to bound cardinality). One
 * listener does both, and the per-request child logger is only built when something logs: device
 * polls are the hot path. URLs are logged without their query, and no header is logged, so tokens and
 * signatures stay out of the log.
 */
export function requestLogging(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && SAFE_ID.test(given) ? given : crypto.randomUUID();
    req.id = id;
    res.setHeader('X-Request-Id', id);
    let child: Logger | undefined;
    Object.defineProperty(req, 'log', { configurable: true, get: () => (child ??= logger.child({ req_id: id })) });
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = req.route?.path ? `${req.baseUrl}${req.route.path}` : req.baseUrl || 'unmatched';
      httpDuration.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
      const level = res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'debug';
      if (!logger.isLevelEnabled(level)) return;
      logger[level]({ req_id: id, method: req.method, url: req.originalUrl.split('?')[0], status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 }, 'request');
    });
    next();
  };
}
