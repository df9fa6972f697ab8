/**
 * Enrollment restrictions and the deployment-wide enrollment settings.
 *
 * Restrictions (as Intune's): two kinds, `platform` and `device_limit`, each with a default that
 * always exists and applies last, and up to 25 more ordered by priority (1 = highest). A user gets the
 * highest-priority restriction of each kind assigned to them, else the default. Changes apply to
 * enrollments from then on; enrolled devices are not re-checked.
 */
import { z } from '../zod';
import { DeviceLimitSettingsSchema, MAX_RESTRICTIONS_PER_KIND, PlatformRestrictionSettingsSchema, type RestrictionKind } from '../../core/enrollment-policy';
import { Errors } from '../../core/errors';
import type { PgRestrictionStore, RestrictionRecord, RestrictionSettings } from '../../storage/restrictions';
import { actorOf } from '../auth';
import type { AdminRoutes } from '../route';
import { IdParams } from '../schemas';
import { iso } from './governance-shared';

// ---- restrictions -------------------------------------------------------------------------------------

const KINDS = ['platform', 'device_limit'] as const;

const RestrictionSchema = z
  .object({
    id: z.uuid(),
    kind: z.enum(KINDS),
    name: z.string(),
    description: z.string().nullable(),
    is_default: z.boolean().openapi({ description: 'the default of its kind: always exists, applies last, to everyone no other restriction covers' }),
    priority: z.number().int().nullable().openapi({ description: '1 = highest; null for the default, which comes after all others' }),
    assign_all_users: z.boolean(),
    assign_groups: z.array(z.string()),
    assign_users: z.array(z.string()).openapi({ description: 'lowercased emails' }),
    settings: z.record(z.string(), z.unknown()).openapi({ description: 'platform: { platforms: { ios|macos|tvos|windows|android: rule } }; device_limit: { limit }' }),
    created_at: iso,
    updated_at: iso,
  })
  .openapi('EnrollmentRestriction');

const groups = z.array(z.string().trim().min(1).max(256)).max(1000).openapi({ description: 'directory group names; a user in any of them is assigned' });
const users = z
  .array(z.string().trim().toLowerCase().pipe(z.email()))
  .max(1000)
  .openapi({ description: 'emails (stored lowercased); each of these users is assigned' });
const RestrictionCommon = {
  name: z.string().trim().min(1).max(200),
  description: z.string().max(1000).nullable().optional(),
  priority: z
    .number()
    .int()
    .min(1)
    .optional()
    .openapi({ description: '1 = highest. A taken priority moves that restriction and those below it down by one; past the end (or left out) puts it just above the default' }),
  assign_all_users: z.boolean().optional(),
  assign_groups: groups.optional(),
  assign_users: users.optional(),
};
const ASSIGNMENT_NOTE =
  'A restriction applies only to the users it is assigned to (assign_all_users, assign_groups, assign_users); an unassigned restriction never applies. ' +
  'A user gets the highest-priority restriction of each kind assigned to them, else the default. Changes apply to new enrollments only.';

const RestrictionRequest = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('platform'), ...RestrictionCommon, settings: PlatformRestrictionSettingsSchema }),
    z.strictObject({ kind: z.literal('device_limit'), ...RestrictionCommon, settings: DeviceLimitSettingsSchema }),
  ])
  .openapi('EnrollmentRestrictionRequest', { description: ASSIGNMENT_NOTE });

const RestrictionChange = z
  .strictObject({
    ...RestrictionCommon,
    name: RestrictionCommon.name.optional(),
    settings: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: "the whole settings object of the restriction's kind (as in EnrollmentRestrictionRequest), replacing the current one" }),
  })
  .refine((b) => Object.values(b).some((v) => v !== undefined), 'give at least one field to change')
  .openapi('EnrollmentRestrictionChange', {
    description: `${ASSIGNMENT_NOTE} The default restriction's priority and assignment can't change (409 default_restriction_locked); its name, description and settings can.`,
  });

/** Settings checked against the schema of the restriction's kind; issues are named `body.settings.…`. */
function settingsFor(kind: RestrictionKind, value: unknown): RestrictionSettings {
  const result = kind === 'platform' ? PlatformRestrictionSettingsSchema.safeParse(value) : DeviceLimitSettingsSchema.safeParse(value);
  if (result.success) return result.data;
  const errors = result.error.issues.map((i) => ({ path: ['body', 'settings', ...i.path.map(String)].join('.'), message: i.message }));
  throw Errors.validation(`the ${kind} settings are not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, { errors });
}

function restrictionJson(r: RestrictionRecord): z.input<typeof RestrictionSchema> {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    description: r.description,
    is_default: r.is_default,
    priority: r.priority,
    assign_all_users: r.assign_all_users,
    assign_groups: r.assign_groups,
    assign_users: r.assign_users,
    settings: r.settings as Record<string, unknown>,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  };
}

const restrictionNotFound = (id: string) => Errors.of('restriction_not_found', `no enrollment restriction with id ${id}`);

// ---- settings -----------------------------------------------------------------------------------------

const SettingsSchema = z
  .object({
    preapproved_only: z.boolean().openapi({ description: 'only pre-approved devices (by serial number) may enroll' }),
    updated_at: iso,
  })
  .openapi('EnrollmentSettings');
const SettingsRequest = z.strictObject({ preapproved_only: z.boolean() }).openapi('EnrollmentSettingsRequest');

// ---- routes -------------------------------------------------------------------------------------------

export function restrictionRoutes(routes: AdminRoutes, deps: { restrictions: PgRestrictionStore }): void {
  const { restrictions } = deps;

  // ---- restrictions ----

  routes.add({
    method: 'get',
    path: '/enrollment-restrictions',
    summary: 'List enrollment restrictions: for each kind, by priority, then the default last',
    scope: 'enrollment:read',
    query: z.object({ kind: z.enum(KINDS).optional() }),
    responses: { 200: { description: 'the restrictions', schema: z.object({ items: z.array(RestrictionSchema) }).openapi('EnrollmentRestrictionList') } },
    async handle({ query }) {
      return { status: 200, body: { items: (await restrictions.listRestrictions(query.kind)).map(restrictionJson) } };
    },
  });

  routes.add({
    method: 'post',
    path: '/enrollment-restrictions',
    summary: `Create an enrollment restriction (at most ${MAX_RESTRICTIONS_PER_KIND} per kind besides the default). ${ASSIGNMENT_NOTE}`,
    scope: 'governance:write',
    body: RestrictionRequest,
    responses: {
      201: { description: 'the restriction', schema: RestrictionSchema },
      409: { description: 'restriction_limit_reached' },
    },
    async handle({ body, req }) {
      const created = await restrictions.createRestriction(body, { type: 'restriction.created', actor: actorOf(req) });
      return { status: 201, body: restrictionJson(created), headers: { Location: `/api/v1/enrollment-restrictions/${created.id}` } };
    },
  });

  routes.add({
    method: 'get',
    path: '/enrollment-restrictions/{id}',
    summary: 'Show one enrollment restriction',
    scope: 'enrollment:read',
    params: IdParams,
    responses: { 200: { description: 'the restriction', schema: RestrictionSchema }, 404: { description: 'restriction_not_found' } },
    async handle({ params }) {
      const found = await restrictions.getRestriction(params.id);
      if (!found) throw restrictionNotFound(params.id);
      return { status: 200, body: restrictionJson(found) };
    },
  });

  routes.add({
    method: 'patch',
    path: '/enrollment-restrictions/{id}',
    summary: 'Change an enrollment restriction; a new priority moves it and re-orders the others (1..n). Applies to new enrollments only',
    scope: 'governance:write',
    params: IdParams,
    body: RestrictionChange,
    responses: {
      200: { description: 'the restriction', schema: RestrictionSchema },
      404: { description: 'restriction_not_found' },
      409: { description: "default_restriction_locked: the default's priority and assignment can't change" },
    },
    async handle({ params, body, req }) {
      const current = await restrictions.getRestriction(params.id);
      if (!current) throw restrictionNotFound(params.id);
      const settings = body.settings === undefined ? undefined : settingsFor(current.kind, body.settings);
      const updated = await restrictions.updateRestriction(params.id, { ...body, settings }, { type: 'restriction.updated', actor: actorOf(req) });
      if (!updated) throw restrictionNotFound(params.id);
      return { status: 200, body: restrictionJson(updated) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/enrollment-restrictions/{id}',
    summary: 'Delete an enrollment restriction; those below it move up. The default of each kind cannot be deleted',
    scope: 'governance:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'restriction_not_found' }, 409: { description: 'default_restriction_locked' } },
    async handle({ params, req }) {
      const outcome = await restrictions.deleteRestriction(params.id, { type: 'restriction.deleted', actor: actorOf(req) });
      if (outcome === 'not_found') throw restrictionNotFound(params.id);
      if (outcome === 'default') throw Errors.of('default_restriction_locked', 'the default restriction of each kind always exists; change its settings instead');
      return { status: 204 };
    },
  });

  // ---- settings ----

  routes.add({
    method: 'get',
    path: '/enrollment-settings',
    summary: 'Deployment-wide enrollment settings',
    scope: 'enrollment:read',
    responses: { 200: { description: 'the settings', schema: SettingsSchema } },
    async handle() {
      const s = await restrictions.getSettings();
      return { status: 200, body: { preapproved_only: s.preapproved_only, updated_at: s.updated_at.toISOString() } };
    },
  });

  routes.add({
    method: 'put',
    path: '/enrollment-settings',
    summary: 'Change the enrollment settings (preapproved_only: only pre-approved devices may enroll, from the next enrollment on)',
    scope: 'governance:write',
    body: SettingsRequest,
    responses: { 200: { description: 'the settings', schema: SettingsSchema } },
    async handle({ body, req }) {
      const s = await restrictions.updateSettings(body, { type: 'enrollment_settings.updated', actor: actorOf(req) });
      return { status: 200, body: { preapproved_only: s.preapproved_only, updated_at: s.updated_at.toISOString() } };
    },
  });
}
