/** Users and enrollment managers, device categories, terms of use and their acceptance report. */
import { z } from '../zod';
import { toCsv } from '../../core/csv';
import { MAX_DEMS } from '../../core/enrollment-policy';
import { Errors } from '../../core/errors';
import { mapPage } from '../../core/pagination';
import type { AcceptanceReport, DeviceCategory, DirectoryUser, PgDirectoryStore, Terms } from '../../storage/directory';
import { actorOf } from '../auth';
import type { AdminRoutes } from '../route';
import { DeviceSchema, IdParams, PageQuery, deviceJson, pageOf } from '../schemas';

const iso = z.string().openapi({ format: 'date-time' });

/** Trimmed text of 1 to `max` characters, with messages an admin can act on. */
const text = (max: number) => z.string().trim().min(1, 'must not be empty').max(max, `must be at most ${max} characters`);
const groups = z
  .array(text(100))
  .max(50, 'at most 50 groups')
  .openapi({ description: 'directory group names', example: ['Sales', 'Field staff'] });
const email = z.email('must be an email address').max(320, 'must be at most 320 characters').openapi({ example: 'alice@example.com' });

// ---- users ----

const UserSchema = z
  .object({
    id: z.uuid(),
    email: z.string().openapi({ description: 'lowercased; the key enrollments name a user by' }),
    name: z.string().nullable(),
    upn: z.string().nullable().openapi({ description: 'user principal name' }),
    sam_account_name: z.string().nullable(),
    mobile: z.string().nullable(),
    groups: z.array(z.string()),
    is_dem: z.boolean().openapi({ description: 'a device enrollment manager: enrolls devices on behalf of others, up to 1,000' }),
    device_count: z.number().int().openapi({ description: 'devices of this user that are enrolled or enrolling' }),
    dem_device_count: z.number().int().nullable().openapi({ description: 'devices this user enrolled as an enrollment manager (null unless is_dem)' }),
    created_at: iso,
    updated_at: iso,
  })
  .openapi('User');

const userFields = {
  name: text(200).nullable(),
  upn: text(320).nullable(),
  sam_account_name: text(256).nullable(),
  mobile: text(50).nullable(),
  groups,
  is_dem: z.boolean().openapi({ description: `make the user a device enrollment manager (at most ${MAX_DEMS})` }),
};

const UserRequest = z
  .strictObject({
    email,
    name: userFields.name.optional(),
    upn: userFields.upn.optional(),
    sam_account_name: userFields.sam_account_name.optional(),
    mobile: userFields.mobile.optional(),
    groups: groups.default([]),
    is_dem: userFields.is_dem.default(false),
  })
  .openapi('UserRequest');

const UserChange = z
  .strictObject({
    email: email.optional(),
    name: userFields.name.optional(),
    upn: userFields.upn.optional(),
    sam_account_name: userFields.sam_account_name.optional(),
    mobile: userFields.mobile.optional(),
    groups: groups.optional(),
    is_dem: userFields.is_dem.optional(),
  })
  .refine((b) => Object.values(b).some((v) => v !== undefined), 'give at least one field to change')
  .openapi('UserChange');

const UserListQuery = PageQuery.extend({
  q: z.string().min(1).max(200).optional().openapi({ description: 'matches email, name or UPN (case-insensitive)' }),
  is_dem: z
    .enum(['true', 'false'], 'must be true or false')
    .optional()
    .transform((v) => (v === undefined ? undefined : v === 'true'))
    .openapi({ description: 'only enrollment managers (true) or only other users (false)' }),
});

function userJson(u: DirectoryUser): z.input<typeof UserSchema> {
  return {
    id: u.id,
    email: u.email,
    name: u.name,
    upn: u.upn,
    sam_account_name: u.sam_account_name,
    mobile: u.mobile,
    groups: u.groups,
    is_dem: u.is_dem,
    device_count: u.device_count,
    dem_device_count: u.is_dem ? u.dem_device_count : null,
    created_at: u.created_at.toISOString(),
    updated_at: u.updated_at.toISOString(),
  };
}

// ---- device categories ----

const CategorySchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    description: z.string().nullable(),
    device_count: z.number().int().openapi({ description: 'devices in this category' }),
    created_at: iso,
    updated_at: iso,
  })
  .openapi('DeviceCategory');

const categoryName = text(100).openapi({ description: 'unique, ignoring case', example: 'Sales' });
const categoryDescription = z.string().trim().max(500, 'must be at most 500 characters').nullable();

const CategoryRequest = z.strictObject({ name: categoryName, description: categoryDescription.optional() }).openapi('DeviceCategoryRequest');
const CategoryChange = z
  .strictObject({ name: categoryName.optional(), description: categoryDescription.optional() })
  .refine((b) => b.name !== undefined || b.description !== undefined, 'give name, description or both')
  .openapi('DeviceCategoryChange');

function categoryJson(c: DeviceCategory): z.input<typeof CategorySchema> {
  return { id: c.id, name: c.name, description: c.description, device_count: c.device_count, created_at: c.created_at.toISOString(), updated_at: c.updated_at.toISOString() };
}

const DeviceChange = z
  .strictObject({
    category_id: z.uuid('must be a device category id (UUID)').nullable().optional().openapi({ description: 'a device category id; null leaves the device unassigned' }),
    ownership: z.enum(['corporate', 'personal'], 'must be corporate or personal').optional().openapi({ description: "recorded with ownership_source 'admin'" }),
  })
  .refine((b) => b.category_id !== undefined || b.ownership !== undefined, 'give category_id, ownership or both')
  .openapi('DeviceChange');

// ---- terms ----

const TermsSchema = z
  .object({
    id: z.uuid(),
    name: z.string().openapi({ description: 'for admins; users never see it' }),
    description: z.string().nullable(),
    title: z.string().openapi({ description: 'shown to users, in bold' }),
    summary: z.string().openapi({ description: 'shown to users under the title' }),
    text: z.string().openapi({ description: 'the full terms users accept or decline' }),
    version: z.number().int().openapi({ description: 'goes up when a change requires users to accept again' }),
    assign_all_users: z.boolean(),
    assign_groups: z.array(z.string()),
    created_at: iso,
    updated_at: iso,
  })
  .openapi('Terms');

const termsFields = {
  name: text(200),
  description: z.string().trim().max(1000, 'must be at most 1000 characters').nullable(),
  title: text(200),
  summary: text(2000),
  text: text(100_000),
  assign_all_users: z.boolean(),
  assign_groups: groups,
};

const TermsRequest = z
  .strictObject({
    ...termsFields,
    description: termsFields.description.optional(),
    assign_all_users: termsFields.assign_all_users.default(true).openapi({ description: 'assign to every user (default); false: only users in assign_groups' }),
    assign_groups: termsFields.assign_groups.default([]),
  })
  .openapi('TermsRequest');

const TermsChange = z
  .strictObject({
    name: termsFields.name.optional(),
    description: termsFields.description.optional(),
    title: termsFields.title.optional(),
    summary: termsFields.summary.optional(),
    text: termsFields.text.optional(),
    assign_all_users: termsFields.assign_all_users.optional(),
    assign_groups: termsFields.assign_groups.optional(),
    require_reacceptance: z
      .boolean()
      .optional()
      .openapi({ description: 'true: increment the version, so every assigned user has to accept again. Leave it out for changes that keep the meaning (a typo fix)' }),
  })
  .refine((b) => Object.values(b).some((v) => v !== undefined), 'give at least one field to change, or require_reacceptance')
  .openapi('TermsChange');

function termsJson(t: Terms): z.input<typeof TermsSchema> {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    title: t.title,
    summary: t.summary,
    text: t.text,
    version: t.version,
    assign_all_users: t.assign_all_users,
    assign_groups: t.assign_groups,
    created_at: t.created_at.toISOString(),
    updated_at: t.updated_at.toISOString(),
  };
}

const AcceptanceSchema = z
  .object({
    user_id: z.uuid(),
    email: z.string(),
    name: z.string().nullable(),
    upn: z.string().nullable(),
    accepted_version: z.number().int().nullable().openapi({ description: 'the highest version the user accepted; null if never' }),
    accepted_at: iso.nullable().openapi({ description: 'when they accepted that version' }),
    accepted_latest: z.boolean().openapi({ description: 'the user accepted the current version' }),
  })
  .openapi('TermsAcceptance');

const AcceptanceReportSchema = z
  .object({ terms_id: z.uuid(), version: z.number().int().openapi({ description: 'the current version' }), items: z.array(AcceptanceSchema) })
  .openapi('TermsAcceptanceReport');

const AcceptanceQuery = z.object({
  format: z.enum(['json', 'csv'], 'must be json or csv').optional().openapi({ description: 'csv: a spreadsheet download (so does `Accept: text/csv`)' }),
});

const ACCEPTANCE_CSV_HEADER = ['User name', 'Email', 'UPN', 'Accepted version', 'Accepted time', 'Accepted latest'];

function acceptanceReportJson(r: AcceptanceReport): z.input<typeof AcceptanceReportSchema> {
  return {
    terms_id: r.terms_id,
    version: r.version,
    items: r.items.map((a) => ({ ...a, accepted_at: a.accepted_at?.toISOString() ?? null })),
  };
}

const itemsOf = <T extends z.ZodType>(item: T, name: string) => z.object({ items: z.array(item) }).openapi(name);

export function directoryRoutes(routes: AdminRoutes, deps: { directory: PgDirectoryStore }): void {
  const { directory } = deps;
  const userNotFound = (id: string) => Errors.of('user_not_found', `no user with id ${id}`);
  const categoryNotFound = (id: string) => Errors.of('category_not_found', `no device category with id ${id}`);
  const termsNotFound = (id: string) => Errors.of('terms_not_found', `no terms with id ${id}`);

  // ---- users ----

  routes.add({
    method: 'post',
    path: '/users',
    summary: 'Create a user (optionally a device enrollment manager)',
    scope: 'governance:write',
    body: UserRequest,
    responses: { 201: { description: 'the user', schema: UserSchema }, 409: { description: 'user_exists or dem_limit_reached' } },
    async handle({ body, req }) {
      const user = await directory.createUser(body, { type: 'user.created', actor: actorOf(req) });
      return { status: 201, body: userJson(user), headers: { Location: `/api/v1/users/${user.id}` } };
    },
  });

  routes.add({
    method: 'get',
    path: '/users',
    summary: 'List users by email',
    scope: 'enrollment:read',
    query: UserListQuery,
    responses: { 200: { description: 'a page of users', schema: pageOf(UserSchema, 'UserPage') } },
    async handle({ query: { limit, cursor, ...filter } }) {
      return { status: 200, body: mapPage(await directory.listUsers(filter, { limit, cursor }), userJson) };
    },
  });

  routes.add({
    method: 'get',
    path: '/users/{id}',
    summary: 'Show one user',
    scope: 'enrollment:read',
    params: IdParams,
    responses: { 200: { description: 'the user', schema: UserSchema }, 404: { description: 'user_not_found' } },
    async handle({ params }) {
      const user = await directory.getUser(params.id);
      if (!user) throw userNotFound(params.id);
      return { status: 200, body: userJson(user) };
    },
  });

  routes.add({
    method: 'patch',
    path: '/users/{id}',
    summary: 'Change a user; is_dem makes or unmakes a device enrollment manager',
    scope: 'governance:write',
    params: IdParams,
    body: UserChange,
    responses: {
      200: { description: 'the user', schema: UserSchema },
      404: { description: 'user_not_found' },
      409: { description: `user_exists (the email is taken) or dem_limit_reached (${MAX_DEMS} enrollment managers already)` },
    },
    async handle({ params, body, req }) {
      const user = await directory.updateUser(params.id, body, { type: 'user.updated', actor: actorOf(req) });
      if (!user) throw userNotFound(params.id);
      return { status: 200, body: userJson(user) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/users/{id}',
    summary: 'Delete a user; their devices stay, without a user',
    scope: 'governance:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'user_not_found' } },
    async handle({ params, req }) {
      if (!(await directory.deleteUser(params.id, { type: 'user.deleted', actor: actorOf(req) }))) throw userNotFound(params.id);
      return { status: 204 };
    },
  });

  // ---- device categories ----

  routes.add({
    method: 'post',
    path: '/device-categories',
    summary: 'Create a device category',
    scope: 'governance:write',
    body: CategoryRequest,
    responses: { 201: { description: 'the category', schema: CategorySchema }, 409: { description: 'category_exists' } },
    async handle({ body, req }) {
      const category = await directory.createCategory(body, { type: 'category.created', actor: actorOf(req) });
      return { status: 201, body: categoryJson(category), headers: { Location: `/api/v1/device-categories/${category.id}` } };
    },
  });

  routes.add({
    method: 'get',
    path: '/device-categories',
    summary: 'List all device categories by name',
    scope: 'enrollment:read',
    responses: { 200: { description: 'every category', schema: itemsOf(CategorySchema, 'DeviceCategoryList') } },
    async handle() {
      return { status: 200, body: { items: (await directory.listCategories()).map(categoryJson) } };
    },
  });

  routes.add({
    method: 'get',
    path: '/device-categories/{id}',
    summary: 'Show one device category',
    scope: 'enrollment:read',
    params: IdParams,
    responses: { 200: { description: 'the category', schema: CategorySchema }, 404: { description: 'category_not_found' } },
    async handle({ params }) {
      const category = await directory.getCategory(params.id);
      if (!category) throw categoryNotFound(params.id);
      return { status: 200, body: categoryJson(category) };
    },
  });

  routes.add({
    method: 'patch',
    path: '/device-categories/{id}',
    summary: 'Rename or re-describe a device category; its devices show the new name at once',
    scope: 'governance:write',
    params: IdParams,
    body: CategoryChange,
    responses: { 200: { description: 'the category', schema: CategorySchema }, 404: { description: 'category_not_found' }, 409: { description: 'category_exists' } },
    async handle({ params, body, req }) {
      const category = await directory.updateCategory(params.id, body, { type: 'category.updated', actor: actorOf(req) });
      if (!category) throw categoryNotFound(params.id);
      return { status: 200, body: categoryJson(category) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/device-categories/{id}',
    summary: 'Delete a device category; its devices stay, unassigned',
    scope: 'governance:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'category_not_found' } },
    async handle({ params, req }) {
      if (!(await directory.deleteCategory(params.id, { type: 'category.deleted', actor: actorOf(req) }))) throw categoryNotFound(params.id);
      return { status: 204 };
    },
  });

  // ---- an admin's change to a device ----

  routes.add({
    method: 'patch',
    path: '/devices/{id}',
    summary: "Change a device's category and/or ownership",
    scope: 'governance:write',
    params: IdParams,
    body: DeviceChange,
    responses: { 200: { description: 'the device', schema: DeviceSchema }, 404: { description: 'device_not_found or category_not_found' } },
    async handle({ params, body, req }) {
      return { status: 200, body: deviceJson(await directory.updateDevice(params.id, body, actorOf(req))) };
    },
  });

  // ---- terms ----

  routes.add({
    method: 'post',
    path: '/terms',
    summary: 'Create terms and conditions users accept before they enroll (version 1)',
    scope: 'governance:write',
    body: TermsRequest,
    responses: { 201: { description: 'the terms', schema: TermsSchema } },
    async handle({ body, req }) {
      const terms = await directory.createTerms(body, { type: 'terms.created', actor: actorOf(req) });
      return { status: 201, body: termsJson(terms), headers: { Location: `/api/v1/terms/${terms.id}` } };
    },
  });

  routes.add({
    method: 'get',
    path: '/terms',
    summary: 'List all terms by name',
    scope: 'enrollment:read',
    responses: { 200: { description: 'every set of terms', schema: itemsOf(TermsSchema, 'TermsList') } },
    async handle() {
      return { status: 200, body: { items: (await directory.listTerms()).map(termsJson) } };
    },
  });

  routes.add({
    method: 'get',
    path: '/terms/{id}',
    summary: 'Show one set of terms',
    scope: 'enrollment:read',
    params: IdParams,
    responses: { 200: { description: 'the terms', schema: TermsSchema }, 404: { description: 'terms_not_found' } },
    async handle({ params }) {
      const terms = await directory.getTerms(params.id);
      if (!terms) throw termsNotFound(params.id);
      return { status: 200, body: termsJson(terms) };
    },
  });

  routes.add({
    method: 'patch',
    path: '/terms/{id}',
    summary: 'Change terms; with require_reacceptance the version goes up and users accept again',
    scope: 'governance:write',
    params: IdParams,
    body: TermsChange,
    responses: { 200: { description: 'the terms', schema: TermsSchema }, 404: { description: 'terms_not_found' } },
    async handle({ params, body, req }) {
      const terms = await directory.updateTerms(params.id, body, { type: 'terms.updated', actor: actorOf(req) });
      if (!terms) throw termsNotFound(params.id);
      return { status: 200, body: termsJson(terms) };
    },
  });

  routes.add({
    method: 'delete',
    path: '/terms/{id}',
    summary: 'Delete terms with their versions and acceptances',
    scope: 'governance:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'terms_not_found' } },
    async handle({ params, req }) {
      if (!(await directory.deleteTerms(params.id, { type: 'terms.deleted', actor: actorOf(req) }))) throw termsNotFound(params.id);
      return { status: 204 };
    },
  });

  routes.add({
    method: 'get',
    path: '/terms/{id}/acceptances',
    summary: 'Acceptance report: every assigned user, and anyone who accepted, with the version they accepted',
    scope: 'enrollment:read',
    params: IdParams,
    query: AcceptanceQuery,
    responses: {
      200: {
        description: `the report, by email; with ?format=csv or Accept: text/csv a CSV download with the columns ${ACCEPTANCE_CSV_HEADER.join(', ')}`,
        schema: AcceptanceReportSchema,
      },
      404: { description: 'terms_not_found' },
    },
    async handle({ params, query, req }) {
      const report = await directory.acceptanceReport(params.id);
      if (!report) throw termsNotFound(params.id);
      const csv = query.format === 'csv' || (query.format === undefined && req.accepts(['application/json', 'text/csv']) === 'text/csv');
      if (!csv) return { status: 200, body: acceptanceReportJson(report) };
      const rows = report.items.map((a) => [a.name, a.email, a.upn, a.accepted_version, a.accepted_at, a.accepted_latest]);
      return {
        status: 200,
        raw: { contentType: 'text/csv; charset=utf-8', content: toCsv(ACCEPTANCE_CSV_HEADER, rows) },
        headers: { 'Content-Disposition': `attachment; filename="terms-${report.terms_id}-acceptances.csv"`, Vary: 'Accept' },
      };
    },
  });
}
