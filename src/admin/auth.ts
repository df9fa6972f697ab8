/**
 * Admin API authentication: `Authorization: Bearer <api token>`, looked up by digest. Each route names
 * the scope it needs; this table is the one place that says which role holds which scope.
 */
import type { NextFunction, Request, Response } from 'express';
import { Errors } from '../core/errors';
import type { Role } from '../core/types';
import type { ApiToken } from '../storage/tokens';

export type Scope =
  | 'devices:read'
  | 'commands:read'
  | 'commands:write'
  | 'enrollment:read'
  | 'enrollment:write'
  | 'policies:read'
  | 'policies:write'
  | 'events:read'
  | 'tokens:manage'
  /** Enrollment rules: restrictions, terms, users and enrollment managers, enrollment settings. */
  | 'governance:write';

export const ROLE_SCOPES: Record<Role, readonly Scope[]> = {
  admin: ['devices:read', 'commands:read', 'commands:write', 'enrollment:read', 'enrollment:write', 'policies:read', 'policies:write', 'events:read', 'tokens:manage', 'governance:write'],
  operator: ['devices:read', 'commands:read', 'commands:write', 'policies:read', 'policies:write', 'events:read'],
  enroller: ['enrollment:read', 'enrollment:write', 'policies:read'],
  viewer: ['devices:read', 'commands:read', 'enrollment:read', 'policies:read', 'events:read'],
};

declare module 'express-serve-static-core' {
  interface Request {
    apiToken?: ApiToken;
  }
}

export function authenticate(tokens: { authenticate(secret: string): Promise<ApiToken | undefined> }) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    res.setHeader('WWW-Authenticate', 'Bearer realm="mooring"');
    if (!match) return next(Errors.unauthorized('send an API token as "Authorization: Bearer <token>"'));
    const token = await tokens.authenticate(match[1]!);
    if (!token) return next(Errors.unauthorized('this API token is not valid or was revoked'));
    res.removeHeader('WWW-Authenticate');
    req.apiToken = token;
    next();
  };
}

export function requireScope(scope: Scope) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    const role = req.apiToken?.role;
    if (role && ROLE_SCOPES[role].includes(scope)) return next();
    next(Errors.forbidden(`the ${role ?? 'anonymous'} role cannot do this (needs ${scope})`, { required_scope: scope }));
  };
}

/** How the actor of an admin action appears in events and `requested_by`. */
export function actorOf(req: Request): string | null {
  return req.apiToken ? `api_token:${req.apiToken.id}` : null;
}
