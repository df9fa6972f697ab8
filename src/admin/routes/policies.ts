/** Policies: create, list, show, change (the version goes up and enrolled devices are woken), delete. */
import { z } from '../zod';
import type { PushScheduler } from '../../core/commands';
import { Errors } from '../../core/errors';
import { mapPage } from '../../core/pagination';
import { PolicySettingsSchema, type Policy } from '../../core/policies';
import type { PgPolicyStore } from '../../storage/policies';
import { actorOf } from '../auth';
import type { AdminRoutes } from '../route';
import { IdParams, PageQuery, pageOf } from '../schemas';

const PolicySchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    version: z.number().int(),
    settings: PolicySettingsSchema,
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi('Policy');

const PolicyRequest = z.strictObject({ name: z.string().min(1).max(200), settings: PolicySettingsSchema.default({}) }).openapi('PolicyRequest');
const PolicyChange = z
  .strictObject({ name: z.string().min(1).max(200).optional(), settings: PolicySettingsSchema.optional() })
  .refine((b) => b.name !== undefined || b.settings !== undefined, 'give name, settings or both')
  .openapi('PolicyChange');

function policyJson(p: Policy): z.input<typeof PolicySchema> {
  return { id: p.id, name: p.name, version: p.version, settings: p.settings, created_at: p.created_at.toISOString(), updated_at: p.updated_at.toISOString() };
}

const PAGE = 1000;

export function policyRoutes(routes: AdminRoutes, { policies, pusher }: { policies: PgPolicyStore; pusher: PushScheduler }): void {
  routes.add({
    method: 'post',
    path: '/policies',
    summary: 'Create a policy',
    scope: 'policies:write',
    body: PolicyRequest,
    responses: { 201: { description: 'the policy', schema: PolicySchema } },
    async handle({ body, req }) {
      const policy = await policies.create(body, { type: 'policy.created', actor: actorOf(req) });
      return { status: 201, body: policyJson(policy), headers: { Location: `/api/v1/policies/${policy.id}` } };
    },
  });

  routes.add({
    method: 'get',
    path: '/policies',
    summary: 'List policies, newest first',
    scope: 'policies:read',
    query: PageQuery,
    responses: { 200: { description: 'a page of policies', schema: pageOf(PolicySchema, 'PolicyPage') } },
    async handle({ query }) {
      return { status: 200, body: mapPage(await policies.list(query), policyJson) };
    },
  });

  routes.add({
    method: 'get',
    path: '/policies/{id}',
    summary: 'Show one policy',
    scope: 'policies:read',
    params: IdParams,
    responses: { 200: { description: 'the policy', schema: PolicySchema }, 404: { description: 'policy_not_found' } },
    async handle({ params }) {
      const policy = await policies.get(params.id);
      if (!policy) throw Errors.of('policy_not_found', `no policy with id ${params.id}`);
      return { status: 200, body: policyJson(policy) };
    },
  });

  routes.add({
    method: 'put',
    path: '/policies/{id}',
    summary: 'Change a policy; devices on it get the new version at their next check-in, and are woken now',
    scope: 'policies:write',
    params: IdParams,
    body: PolicyChange,
    responses: { 200: { description: 'the policy with its new version', schema: PolicySchema }, 404: { description: 'policy_not_found' } },
    async handle({ params, body, req }) {
      const policy = await policies.update(params.id, body, { type: 'policy.updated', actor: actorOf(req) });
      if (!policy) throw Errors.of('policy_not_found', `no policy with id ${params.id}`);
      for (let after: string | null = null; ; ) {
        const ids = await policies.enrollmentsOn(policy.id, after, PAGE);
        if (ids.length) await pusher.push(ids).catch((err: unknown) => req.log?.warn({ err }, 'could not wake devices after a policy change'));
        if (ids.length < PAGE) break;
        after = ids[ids.length - 1]!;
      }
      return { status: 200, body: policyJson(policy) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/policies/{id}',
    summary: 'Delete a policy that no device or live enrollment token uses',
    scope: 'policies:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'policy_not_found' }, 409: { description: 'policy_in_use' } },
    async handle({ params, req }) {
      const outcome = await policies.delete(params.id, { type: 'policy.deleted', actor: actorOf(req) });
      if (outcome === 'not_found') throw Errors.of('policy_not_found', `no policy with id ${params.id}`);
      if (outcome === 'in_use') throw Errors.of('policy_in_use', 'devices or live enrollment tokens use this policy; move them first');
      return { status: 204 };
    },
  });
}
