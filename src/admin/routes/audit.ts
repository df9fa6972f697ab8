/** The event log, and API token management (admin role only). */
import type { PgEventStore } from '../../storage/events';
import type { PgTokenStore } from '../../storage/tokens';
import { hintOf, newApiToken } from '../../core/secrets';
import { actorOf } from '../auth';
import { mapPage } from '../../core/pagination';
import type { AdminRoutes } from '../route';
import { ApiTokenRequestSchema, ApiTokenSchema, CreatedApiTokenSchema, EventListQuery, EventSchema, IdParams, PageQuery, apiTokenJson, eventJson, pageOf } from '../schemas';

export function auditRoutes(routes: AdminRoutes, { events, tokens }: { events: PgEventStore; tokens: PgTokenStore }): void {
  routes.add({
    method: 'get',
    path: '/events',
    summary: 'The audit trail, newest first',
    scope: 'events:read',
    query: EventListQuery,
    responses: { 200: { description: 'a page of events', schema: pageOf(EventSchema, 'EventPage') } },
    async handle({ query: { limit, cursor, ...filter } }) {
      const page = await events.list(filter, { limit, cursor });
      return { status: 200, body: mapPage(page, eventJson) };
    },
  });

  routes.add({
    method: 'get',
    path: '/api-tokens',
    summary: 'List API tokens',
    scope: 'tokens:manage',
    query: PageQuery,
    responses: { 200: { description: 'a page of API tokens', schema: pageOf(ApiTokenSchema, 'ApiTokenPage') } },
    async handle({ query }) {
      const page = await tokens.listApiTokens(query);
      return { status: 200, body: mapPage(page, apiTokenJson) };
    },
  });

  routes.add({
    method: 'post',
    path: '/api-tokens',
    summary: 'Create an API token with a role (admin, operator, enroller, viewer)',
    scope: 'tokens:manage',
    body: ApiTokenRequestSchema,
    responses: { 201: { description: 'the token; `token` is shown only here', schema: CreatedApiTokenSchema } },
    async handle({ body, req }) {
      const secret = newApiToken();
      const token = await tokens.createApiToken({ ...body, secret, hint: hintOf(secret) }, { type: 'api_token.created', actor: actorOf(req) });
      return { status: 201, body: { ...apiTokenJson(token), token: secret } };
    },
  });

  routes.add({
    method: 'delete',
    path: '/api-tokens/{id}',
    summary: 'Revoke an API token',
    scope: 'tokens:manage',
    params: IdParams,
    responses: { 200: { description: 'the revoked token', schema: ApiTokenSchema }, 404: { description: 'api_token_not_found' } },
    async handle({ params, req }) {
      return { status: 200, body: apiTokenJson(await tokens.revokeApiToken(params.id, actorOf(req))) };
    },
  });
}
