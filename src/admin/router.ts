/** The admin REST API under /api/v1: JSON in, JSON or problem+json out, bearer-token auth. */
import express, { Router } from 'express';
import type { CommandService, PushScheduler } from '../core/commands';
import type { Sealer } from '../pki/sealed';
import type { PgPolicyStore } from '../storage/policies';
import type { PgPushCertificateStore } from '../storage/push-certificates';
import { policyRoutes } from './routes/policies';
import { windowsRoutes } from './routes/windows';
import { appleRoutes } from './routes/apple';
import { provisioningRoutes, type ProvisioningDeps } from './routes/provisioning';
import type { Db } from '../storage/db';
import { notFoundHandler, requireJson } from '../http/problem';
import type { PgDeviceStore } from '../storage/devices';
import type { PgEventStore } from '../storage/events';
import type { PgTokenStore } from '../storage/tokens';
import { AdminRoutes } from './route';
import { auditRoutes } from './routes/audit';
import { commandRoutes } from './routes/commands';
import { enrollmentTokenRoutes } from './routes/enrollment-tokens';
import { directoryRoutes } from './routes/directory';
import { restrictionRoutes } from './routes/restrictions';
import { corporateIdentifierRoutes } from './routes/corporate-identifiers';
import { preapprovedRoutes } from './routes/preapproved';
import { reportRoutes } from './routes/reports';
import type { PgDirectoryStore } from '../storage/directory';
import type { PgRestrictionStore } from '../storage/restrictions';
import type { PgCorporateIdentifierStore } from '../storage/corporate-identifiers';
import type { PgPreapprovedStore } from '../storage/preapproved';
import type { PgReportStore } from '../storage/reports';

/** CSV imports are at most 5 MB (seed 002 L1046); a little over that reaches the importer, which says why. */
const CSV_BODY_LIMIT = 5 * 1024 * 1024 + 64 * 1024;

export interface AdminDeps {
  db: Db;
  androidDpc: ProvisioningDeps['dpc'];
  commands: CommandService;
  policies: PgPolicyStore;
  directory: PgDirectoryStore;
  restrictions: PgRestrictionStore;
  corporateIdentifiers: PgCorporateIdentifierStore;
  preapproved: PgPreapprovedStore;
  reports: PgReportStore;
  pushCertificates: PgPushCertificateStore;
  pusher: PushScheduler;
  sealer: Sealer;
  devices: PgDeviceStore;
  events: PgEventStore;
  tokens: PgTokenStore;
  publicUrl: URL;
  bodyLimit: string;
  version: string;
}

export function adminRouter(deps: AdminDeps): Router {
  const router = Router();
  router.use(requireJson, express.json({ limit: deps.bodyLimit, strict: true }), express.raw({ type: 'text/csv', limit: CSV_BODY_LIMIT }));
  const routes = new AdminRoutes(router, deps.tokens);
  commandRoutes(routes, deps);
  enrollmentTokenRoutes(routes, deps);
  provisioningRoutes(routes, { ...deps, dpc: deps.androidDpc });
  policyRoutes(routes, deps);
  auditRoutes(routes, deps);
  windowsRoutes(routes, deps);
  appleRoutes(routes, deps);
  directoryRoutes(routes, deps);
  restrictionRoutes(routes, deps);
  corporateIdentifierRoutes(routes, deps);
  preapprovedRoutes(routes, deps);
  reportRoutes(routes, deps);
  const openapi = routes.document({ version: deps.version, serverUrl: deps.publicUrl.origin });
  // Registered after the routes are described, so the document covers all of them; readable without a token.
  router.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  router.use(notFoundHandler);
  return router;
}
