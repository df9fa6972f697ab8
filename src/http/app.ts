/**
 * The express application both listeners serve: operations endpoints, the admin API and the device
 * front ends (each platform mounts its own router). Security headers, request ids, logging and
 * latency metrics wrap everything; errors end in the one problem renderer. The hottest device requests
 * take a lane past express (lanes.ts).
 */
import type { RequestListener } from 'node:http';
import express, { type Router } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import { registry, renderMetrics } from '../metrics';
import { withLanes, type Lane } from './lanes';
import { requestLogging } from './logging';
import { notFoundHandler, problemHandler } from './problem';

export interface AppDeps {
  logger: Logger;
  admin: Router;
  /** Device-facing routers, mounted at the root (their paths are fixed by the protocols). */
  devices?: Router[];
  /** Device hot paths answered ahead of express (each also mounted on a device router). */
  lanes?: Lane[];
  ready(): Promise<{ ok: boolean; checks: Record<string, string> }>;
}

export function createApp(deps: AppDeps): RequestListener {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('etag', false);
  app.use(requestLogging(deps.logger));
  // Device routes first: their polls are the hot path, and the router tries routes in order.
  for (const router of deps.devices ?? []) app.use(router);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const { ok, checks } = await deps.ready();
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await renderMetrics());
  });

  // Browser-facing security headers only where a browser may look (the admin API, its documents);
  // device protocols gain nothing from them.
  app.use('/api/v1', helmet({ contentSecurityPolicy: false }), deps.admin);

  app.use(notFoundHandler);
  app.use(problemHandler);
  return withLanes(app, deps.lanes ?? [], deps.logger);
}
