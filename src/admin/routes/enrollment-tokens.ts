/** Enrollment tokens: create (the secret is shown once), list, show, revoke. */
import { Errors } from '../../core/errors';
import { hintOf, newEnrollmentToken } from '../../core/secrets';
import type { PgTokenStore } from '../../storage/tokens';
import { actorOf } from '../auth';
import { mapPage } from '../../core/pagination';
import type { AdminRoutes } from '../route';
import { CreatedEnrollmentTokenSchema, EnrollmentTokenRequestSchema, EnrollmentTokenSchema, IdParams, PageQuery, enrollmentTokenJson, pageOf } from '../schemas';
import { z } from '../zod';
import { settleTokenTerms } from '../../core/enrollment-tokens';
import { PLATFORMS } from '../../core/types';
import type { Sealer } from '../../pki/sealed';
import type { PgDirectoryStore } from '../../storage/directory';
import type { PgPolicyStore } from '../../storage/policies';

export interface EnrollmentTokenRoutesDeps {
  tokens: PgTokenStore;
  policies: Pick<PgPolicyStore, 'get'>;
  directory: Pick<PgDirectoryStore, 'getCategory'>;
  sealer: Sealer;
  publicUrl: URL;
}

export function enrollmentTokenRoutes(routes: AdminRoutes, { tokens, policies, directory, sealer, publicUrl }: EnrollmentTokenRoutesDeps): void {
  routes.add({
    method: 'post',
    path: '/enrollment-tokens',
    summary: 'Create an enrollment token',
    scope: 'enrollment:write',
    body: EnrollmentTokenRequestSchema,
    responses: { 201: { description: 'the token; `token` is shown only here', schema: CreatedEnrollmentTokenSchema } },
    async handle({ body, req }) {
      const terms = settleTokenTerms(body);
      if (body.policy_id && !(await policies.get(body.policy_id))) throw Errors.of('policy_not_found', `no policy with id ${body.policy_id}`);
      if (body.category_id && !(await directory.getCategory(body.category_id))) throw Errors.of('category_not_found', `no device category with id ${body.category_id}`);
      const secret = newEnrollmentToken();
      const token = await tokens.createEnrollmentToken(
        {
          platform: body.platform,
          policy_id: body.policy_id ?? null,
          ...terms,
          additional_data: body.additional_data ?? null,
          user_ref: body.user ?? null,
          category_id: body.category_id ?? null,
          category_choice: body.category_choice ?? false,
          one_time: body.one_time ?? false,
          max_uses: body.max_uses ?? null,
          created_by: actorOf(req),
          secret,
          hint: hintOf(secret),
          // Android tokens are shown again inside their provisioning QR code, so they are kept sealed.
          token_sealed: body.platform === 'android' ? sealer.seal(secret) : null,
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
