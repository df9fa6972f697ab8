/**
 * The one renderer for admin-surface errors: RFC 9457 problem+json with a stable `code`. Anything that
 * is not a MooringError (or a body-parser refusal) is an internal error: logged in full, answered
 * generically, never with a stack trace.
 */
import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { Errors, MooringError, isMooringError } from '../core/errors';

export const PROBLEM_TYPE_BASE = 'https://mooring.dev/problems/';

export function sendProblem(res: Response, err: MooringError): void {
  const title = err.code.replace(/_/g, ' ');
  res
    .status(err.status)
    .type('application/problem+json')
    .send(JSON.stringify({ type: PROBLEM_TYPE_BASE + err.code, title, status: err.status, detail: err.detail, code: err.code, ...err.extra }));
}

/** body-parser's own errors, translated to our vocabulary. */
function fromBodyParser(err: { type?: string; status?: number; limit?: number }): MooringError | undefined {
  switch (err.type) {
    case 'entity.too.large':
      return Errors.of('payload_too_large', `the request body is larger than the ${err.limit}-byte limit`);
    case 'entity.parse.failed':
      return Errors.of('malformed_json', 'the request body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return Errors.of('unsupported_media_type', 'the request body encoding is not supported');
    case 'request.aborted':
    case 'request.size.invalid':
      return Errors.of('validation_failed', 'the request body was incomplete');
    default:
      return undefined;
  }
}

export const problemHandler: ErrorRequestHandler = (err, req, res, _next) => {
  const known = isMooringError(err) ? err : fromBodyParser(err);
  if (known) {
    if (known.status >= 500) req.log?.error({ err }, known.detail);
    return sendProblem(res, known);
  }
  req.log?.error({ err }, 'unhandled error');
  if (res.headersSent) return res.end();
  sendProblem(res, Errors.of('internal_error', 'the server could not complete this request; see its log for details'));
};

export const notFoundHandler: RequestHandler = (req, res) => {
  sendProblem(res, Errors.notFound(`no route for ${req.method} ${req.path}`));
};

/** Requests with a body must say it is JSON; anything else is refused before parsing. */
export const requireJson: RequestHandler = (req, _res, next) => {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !req.is('application/json') && !req.is('text/csv')) {
    return next(Errors.of('unsupported_media_type', 'send the request body as application/json (CSV imports: text/csv)'));
  }
  next();
};
