/** Enrollment tokens: create (the secret is shown once), list, show, revoke. */
import { Errors } from '../../core/errors';
import { hintOf, newEnrollmentToken } from '../../core/secrets';
import type { PgTokenStore } from '../../storage/tokens';
import { actorOf } from '../auth';
import { mapPage } from '../../core/pagination';
import type { AdminRoutes } from '../route';
import { CreatedEnrollmentTokenSchema, EnrollmentTokenRequestSchema, EnrollmentTokenSchema, IdParams, PageQuery, enrollmentTokenJson, pageOf } from '../schemas';
import { z } from 'zod';
import { PLATFORMS } from '../../core/types';

/** Tokens expire after 30 days unless the request says otherwise. */
export const DEFAULT_TOKEN_TTL_SECONDS = 30 * 24 * 3600;

export function enrollmentTokenRoutes(routes: AdminRoutes, { tokens, publicUrl }: { tokens: PgTokenStore; publicUrl: URL }): void {
  routes.add({
    method: 'post',
    path: '/enrollment-tokens',
    summary: 'Create an enrollment token',
    scope: 'enrollment:write',
    body: EnrollmentTokenRequestSchema,
    responses: { 201: { description: 'the token; `token` is shown only here', schema: CreatedEnrollmentTokenSchema } },
    async handle({ body, req }) {
      const secret = newEnrollmentToken();
      const ttl = body.expires_in ?? DEFAULT_TOKEN_TTL_SECONDS;
      const token = await tokens.createEnrollmentToken(
        {
          platform: body.platform,
          policy_id: body.policy_id ?? null,
          ownership: body.ownership ?? 'unknown',
          allow_personal_usage: body.allow_personal_usage ?? null,
          user_ref: body.user ?? null,
          one_time: body.one_time ?? false,
          max_uses: body.max_uses ?? null,
          expires_at: ttl === 'never' ? null : new Date(Date.now() + ttl * 1000),
          created_by: actorOf(req),
          secret,
          hint: hintOf(secret),
        },
        { type: 'enrollment_token.created', actor: actorOf(req) },
      );
      const enroll_url = body.platform === 'apple' ? new URL(`/enroll/apple?token=${encodeURIComponent(secret)}`, publicUrl).toString() : undefined;
      return {
        status: 201,
        body: { ...enrollmentTokenJson(token), token: secret, ...(enroll_url ? { enroll_url } : {}) },
        headers: { Location: `/api/v1/enrollment-tokens/${token.id}` },
      };
    },
  });

  routes.add({
    method: 'get',
    path: '/enrollment-tokens',
    summary: 'List enrollment tokens, newest first (secrets are never shown again)',
    scope: 'enrollment:read',
    query: PageQuery.extend({ platform: z.enum(PLATFORMS).optional() }),
    responses: { 200: { description: 'a page of tokens', schema: pageOf(EnrollmentTokenSchema, 'EnrollmentTokenPage') } },
    async handle({ query: { limit, cursor, platform } }) {
      const page = await tokens.listEnrollmentTokens({ platform }, { limit, cursor });
      return { status: 200, body: mapPage(page, enrollmentTokenJson) };
    },
  });

  routes.add({
    method: 'get',
    path: '/enrollment-tokens/{id}',
    summary: 'Show one enrollment token',
    scope: 'enrollment:read',
    params: IdParams,
    responses: { 200: { description: 'the token', schema: EnrollmentTokenSchema }, 404: { description: 'enrollment_token_not_found' } },
    async handle({ params }) {
      const token = await tokens.getEnrollmentToken(params.id);
      if (!token) throw Errors.enrollmentTokenNotFound(params.id);
      return { status: 200, body: enrollmentTokenJson(token) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/enrollment-tokens/{id}',
    summary: 'Revoke an enrollment token (devices already enrolled with it are not affected)',
    scope: 'enrollment:write',
    params: IdParams,
    responses: { 200: { description: 'the revoked token', schema: EnrollmentTokenSchema }, 404: { description: 'enrollment_token_not_found' } },
    async handle({ params, req }) {
      return { status: 200, body: enrollmentTokenJson(await tokens.revokeEnrollmentToken(params.id, actorOf(req))) };
    },
  });
}
