/**
 * Enrollment restrictions and settings, corporate identifiers, pre-approved devices, enrollment reports.
 *
 * Restrictions (as Intune's): two kinds, `platform` and `device_limit`, each with a default that
 * always exists and applies last, and up to 25 more ordered by priority (1 = highest). A user gets the
 * highest-priority restriction of each kind assigned to them, else the default. Changes apply to
 * enrollments from then on; enrolled devices are not re-checked.
 *
 * Imports take the CSV file itself as the body (`Content-Type: text/csv`); a file with any error
 * imports nothing and every problem is reported at once (422 import_invalid, with `errors`).
 */
import { z } from '../zod';
import { parseCorporateIdentifierCsv, checkSerial, normalizeImei, CORPORATE_ID_DETAILS_MAX, type CorporateIdentifierType } from '../../core/corporate-identifier-csv';
import { toCsv, type CsvValue, type ImportProblem } from '../../core/csv';
import { DeviceLimitSettingsSchema, MAX_RESTRICTIONS_PER_KIND, PlatformRestrictionSettingsSchema, REFUSAL_REASONS, type RestrictionKind } from '../../core/enrollment-policy';
import { Errors } from '../../core/errors';
import { MAX_PAGE_SIZE, mapPage, type Page } from '../../core/pagination';
import { parsePreapprovedCsv, PREAPPROVED_PLATFORMS } from '../../core/preapproved-csv';
import { PLATFORMS } from '../../core/types';
import type {
  CorporateIdentifierRecord,
  FailureItem,
  IncompleteEnrollment,
  PgGovernanceStore,
  PreapprovedRecord,
  RestrictionRecord,
  RestrictionSettings,
  StaleDevice,
} from '../../storage/governance';
import { actorOf } from '../auth';
import type { AdminRoutes, Reply } from '../route';
import { IdParams, PageQuery, pageOf } from '../schemas';
import type { Request } from 'express';

const iso = z.string().openapi({ format: 'date-time' });
const isoOrNull = (d: Date | null) => d?.toISOString() ?? null;
const flag = z.enum(['true', 'false']).transform((v) => v === 'true');
/** The most rows a CSV report download holds (JSON reports page instead). */
export const MAX_CSV_REPORT_ROWS = 100_000;

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

// ---- corporate identifiers ----------------------------------------------------------------------------

const IDENTIFIER_TYPES = ['imei', 'serial'] as const;

const CorporateIdentifierSchema = z
  .object({
    id: z.uuid(),
    type: z.enum(IDENTIFIER_TYPES),
    identifier: z.string(),
    details: z.string().nullable(),
    status: z.enum(['enrolled', 'not_contacted']).openapi({ description: 'enrolled once a device enrolled with it' }),
    device_id: z.uuid().nullable(),
    enrolled_at: iso.nullable(),
    created_at: iso,
  })
  .openapi('CorporateIdentifier');

const CorporateIdentifierRequest = z
  .strictObject({
    type: z.enum(IDENTIFIER_TYPES),
    identifier: z.string().max(200).openapi({ description: 'an IMEI (14 or 15 digits) or a serial number (letters, digits, - and _, no dots)' }),
    details: z.string().trim().max(CORPORATE_ID_DETAILS_MAX).nullable().optional(),
  })
  .openapi('CorporateIdentifierRequest');

const CorporateListQuery = PageQuery.extend({
  type: z.enum(IDENTIFIER_TYPES).optional(),
  q: z.string().min(1).max(200).optional().openapi({ description: 'matches the identifier or its details' }),
  status: z.enum(['enrolled', 'not_contacted']).optional(),
});

const CorporateImportQuery = z.object({
  type: z.enum(IDENTIFIER_TYPES).openapi({ description: 'what the left column holds; never guessed from the values' }),
  overwrite: z
    .union([z.string().max(200_000), z.array(z.string().max(200)).max(5000)])
    .optional()
    .openapi({ description: '`all`, or comma-separated identifiers to overwrite; the other duplicates are skipped. Without it, duplicates stop the import (409 import_needs_review)' }),
  dry_run: flag.optional(),
});

const ProblemItem = z.object({ row: z.number().int().nullable(), code: z.string(), detail: z.string() }).openapi('ImportProblem');

const CorporateImportReportSchema = z
  .object({
    type: z.enum(IDENTIFIER_TYPES),
    imported: z.number().int().openapi({ description: 'new identifiers' }),
    overwritten: z.number().int().openapi({ description: 'listed identifiers whose details were replaced' }),
    unchanged: z.number().int().openapi({ description: 'listed identifiers with the same details' }),
    skipped: z.number().int().openapi({ description: 'listed identifiers with other details, not chosen for overwrite' }),
    dry_run: z.boolean(),
    warnings: z.array(ProblemItem),
  })
  .openapi('CorporateIdentifierImportReport');

function corporateJson(c: CorporateIdentifierRecord): z.input<typeof CorporateIdentifierSchema> {
  return {
    id: c.id,
    type: c.type,
    identifier: c.identifier,
    details: c.details,
    status: c.status,
    device_id: c.device_id,
    enrolled_at: isoOrNull(c.enrolled_at),
    created_at: c.created_at.toISOString(),
  };
}

/** The identifier as an import would store it, or a 400 naming what is wrong. */
function checkIdentifier(type: CorporateIdentifierType, raw: string): string {
  if (type === 'imei') {
    const imei = normalizeImei(raw);
    if (imei) return imei;
    throw Errors.validation(`"${raw}" is not an IMEI: 14 or 15 digits`, { errors: [{ path: 'body.identifier', message: 'an IMEI is 14 or 15 digits' }] });
  }
  const serial = checkSerial(raw);
  if (serial.ok) return serial.value;
  throw Errors.validation(serial.detail, { errors: [{ path: 'body.identifier', message: serial.detail, code: serial.code }] });
}

function overwriteList(raw: string | string[] | undefined): 'all' | string[] | undefined {
  if (raw === undefined) return undefined;
  const parts = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  return parts.length === 1 && parts[0]!.toLowerCase() === 'all' ? 'all' : parts;
}

function importInvalid(errors: ImportProblem[], warnings: ImportProblem[]) {
  const n = errors.length;
  return Errors.of('import_invalid', `the file has ${n} problem${n === 1 ? '' : 's'}; nothing was imported. Fix ${n === 1 ? 'it' : 'them'} and upload the file again`, { errors, warnings });
}

// ---- pre-approved devices -----------------------------------------------------------------------------

const PreapprovedSchema = z
  .object({
    id: z.uuid(),
    platform: z.enum(PREAPPROVED_PLATFORMS),
    serial_number: z.string(),
    device_name: z.string().nullable(),
    ownership: z.enum(['personal', 'corporate']),
    user: z.string().nullable().openapi({ description: "the user's email" }),
    user_id: z.uuid().nullable(),
    category_id: z.uuid().nullable(),
    policy_id: z.uuid().nullable(),
    status: z.enum(['pending', 'enrolled']),
    device_id: z.uuid().nullable().openapi({ description: 'the device that enrolled as it' }),
    placeholder_device_id: z.uuid().nullable().openapi({ description: 'its `pre_approved` row in the device list, until the device enrolls' }),
    enrolled_at: iso.nullable(),
    import_id: z.uuid().nullable(),
    created_at: iso,
  })
  .openapi('PreapprovedDevice');

const PreapprovedImportQuery = z.object({
  dry_run: flag.optional().openapi({ description: 'check the file and say what would happen; 200 with `valid`' }),
  existing_users: z.enum(['replace', 'skip']).default('skip').openapi({ description: "a user who already exists: replace updates name, mobile and account name from the file (columns the file lacks are kept); skip leaves the user as is" }),
  category_id: z.uuid().optional(),
  policy_id: z.uuid().optional(),
});

const PreapprovedImportResult = z
  .object({
    import_id: z.uuid(),
    devices: z.number().int(),
    users_created: z.number().int(),
    users_replaced: z.number().int(),
    users_skipped: z.number().int(),
    preapprovals_replaced: z.number().int().openapi({ description: 'earlier pre-approvals of the same serial numbers (not yet enrolled) this import replaced' }),
    warnings: z.array(ProblemItem),
  })
  .openapi('PreapprovedImportResult');

const PreapprovedDryRun = z
  .object({
    valid: z.boolean(),
    errors: z.array(ProblemItem),
    warnings: z.array(ProblemItem),
    columns: z.record(z.string(), z.string()).openapi({ description: 'each recognised header, as written, to the field it was read as' }),
    preview: z
      .object({
        devices: z.array(z.object({ row: z.number().int(), platform: z.string(), serial_number: z.string(), device_name: z.string().nullable(), ownership: z.string(), user: z.string() })),
        users: z.array(z.object({ email: z.string(), name: z.string(), action: z.enum(['create', 'replace', 'skip']) })),
        users_created: z.number().int(),
        users_replaced: z.number().int(),
        users_skipped: z.number().int(),
        preapprovals_replaced: z.number().int(),
      })
      .nullable(),
  })
  .openapi('PreapprovedImportDryRun');

function preapprovedJson(p: PreapprovedRecord): z.input<typeof PreapprovedSchema> {
  return {
    id: p.id,
    platform: p.platform,
    serial_number: p.serial_number,
    device_name: p.device_name,
    ownership: p.ownership,
    user: p.user,
    user_id: p.user_id,
    category_id: p.category_id,
    policy_id: p.policy_id,
    status: p.status,
    device_id: p.device_id,
    placeholder_device_id: p.placeholder_device_id,
    enrolled_at: isoOrNull(p.enrolled_at),
    import_id: p.import_id,
    created_at: p.created_at.toISOString(),
  };
}

const byRow = (a: ImportProblem, b: ImportProblem) => (a.row ?? 0) - (b.row ?? 0);

// ---- reports ------------------------------------------------------------------------------------------

const ReportFormat = z.object({
  format: z.enum(['json', 'csv']).optional().openapi({ description: 'csv downloads the items as a CSV file (also chosen by `Accept: text/csv`); all matching rows, up to 100,000, ignoring limit and cursor' }),
});

const FailureQuery = PageQuery.extend({
  since: z.iso.datetime({ offset: true }).optional().openapi({ description: 'from this time (inclusive)' }),
  until: z.iso.datetime({ offset: true }).optional().openapi({ description: 'before this time (exclusive)' }),
  reason: z.enum(REFUSAL_REASONS).optional(),
  platform: z.enum(PLATFORMS).optional(),
  user: z.string().min(1).max(320).optional().openapi({ description: 'the email or UPN the enrollment named (case-insensitive)' }),
}).extend(ReportFormat.shape);

const FAILURE_COLUMNS = ['activity_id', 'created_at', 'platform', 'method', 'user', 'reason', 'detail', 'os', 'os_version', 'serial_number', 'manufacturer', 'model'] as const;
const FailureSchema = z
  .object({
    activity_id: z.uuid().openapi({ description: 'shown to the user with the refusal' }),
    created_at: iso,
    platform: z.string(),
    method: z.string(),
    user: z.string().nullable(),
    reason: z.string(),
    detail: z.string(),
    os: z.string().nullable(),
    os_version: z.string().nullable(),
    serial_number: z.string().nullable(),
    manufacturer: z.string().nullable(),
    model: z.string().nullable(),
  })
  .openapi('EnrollmentFailure');
const FailureReport = z
  .object({
    summary: z.array(z.object({ reason: z.string(), count: z.number().int() })).openapi({ description: 'refusals per reason over the whole filter (not just this page), most frequent first' }),
    items: z.array(FailureSchema),
    next_cursor: z.string().nullable(),
  })
  .openapi('EnrollmentFailureReport');

const IncompleteQuery = PageQuery.extend({
  older_than_minutes: z.coerce.number().int().min(1).max(525_600).default(30),
}).extend(ReportFormat.shape);
const INCOMPLETE_COLUMNS = ['id', 'platform', 'name', 'serial_number', 'user', 'created_at', 'minutes_pending'] as const;
const IncompleteSchema = z
  .object({
    id: z.uuid(),
    platform: z.string(),
    name: z.string().nullable(),
    serial_number: z.string().nullable(),
    user: z.string().nullable(),
    created_at: iso,
    minutes_pending: z.number().int(),
  })
  .openapi('IncompleteEnrollment');

const StaleQuery = PageQuery.extend({
  days: z.coerce.number().int().min(1).max(3650).default(30),
}).extend(ReportFormat.shape);
const STALE_COLUMNS = ['id', 'platform', 'name', 'serial_number', 'user', 'last_seen_at', 'days_since_seen'] as const;
const StaleSchema = z
  .object({
    id: z.uuid(),
    platform: z.string(),
    name: z.string().nullable(),
    serial_number: z.string().nullable(),
    user: z.string().nullable(),
    last_seen_at: iso.nullable(),
    days_since_seen: z.number().int().nullable().openapi({ description: 'null if the device never checked in after enrolling' }),
  })
  .openapi('StaleDevice');

const failureJson = (f: FailureItem): z.input<typeof FailureSchema> => ({
  activity_id: f.activity_id,
  created_at: f.created_at.toISOString(),
  platform: f.platform,
  method: f.method,
  user: f.user,
  reason: f.reason,
  detail: f.detail,
  os: f.os,
  os_version: f.os_version,
  serial_number: f.serial_number,
  manufacturer: f.manufacturer,
  model: f.model,
});
const incompleteJson = (d: IncompleteEnrollment): z.input<typeof IncompleteSchema> => ({
  id: d.id,
  platform: d.platform,
  name: d.name,
  serial_number: d.serial_number,
  user: d.user,
  created_at: d.created_at.toISOString(),
  minutes_pending: d.minutes_pending,
});
const staleJson = (d: StaleDevice): z.input<typeof StaleSchema> => ({
  id: d.id,
  platform: d.platform,
  name: d.name,
  serial_number: d.serial_number,
  user: d.user,
  last_seen_at: isoOrNull(d.last_seen_at),
  days_since_seen: d.days_since_seen,
});

function wantsCsv(format: 'json' | 'csv' | undefined, req: Request): boolean {
  if (format) return format === 'csv';
  return req.accepts(['application/json', 'text/csv']) === 'text/csv';
}

/** Every row of a report (pages of MAX_PAGE_SIZE), up to MAX_CSV_REPORT_ROWS. */
async function allRows<T>(fetch: (cursor: string | undefined) => Promise<Page<T>>): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await fetch(cursor);
    rows.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor && rows.length < MAX_CSV_REPORT_ROWS);
  return rows.slice(0, MAX_CSV_REPORT_ROWS);
}

function csvReply<T extends object>(name: string, columns: readonly (keyof T & string)[], items: T[]): Reply {
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '-');
  const rows = items.map((item) => columns.map((c) => item[c] as CsvValue));
  return {
    status: 200,
    headers: { 'Content-Disposition': `attachment; filename="${name}-${stamp}.csv"` },
    raw: { contentType: 'text/csv; charset=utf-8', content: toCsv([...columns], rows) },
  };
}

// ---- routes -------------------------------------------------------------------------------------------

export function governanceRoutes(routes: AdminRoutes, deps: { governance: PgGovernanceStore }): void {
  const { governance } = deps;

  // ---- restrictions ----

  routes.add({
    method: 'get',
    path: '/enrollment-restrictions',
    summary: 'List enrollment restrictions: for each kind, by priority, then the default last',
    scope: 'enrollment:read',
    query: z.object({ kind: z.enum(KINDS).optional() }),
    responses: { 200: { description: 'the restrictions', schema: z.object({ items: z.array(RestrictionSchema) }).openapi('EnrollmentRestrictionList') } },
    async handle({ query }) {
      return { status: 200, body: { items: (await governance.listRestrictions(query.kind)).map(restrictionJson) } };
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
      const created = await governance.createRestriction(body, { type: 'restriction.created', actor: actorOf(req) });
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
      const found = await governance.getRestriction(params.id);
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
      const current = await governance.getRestriction(params.id);
      if (!current) throw restrictionNotFound(params.id);
      const settings = body.settings === undefined ? undefined : settingsFor(current.kind, body.settings);
      const updated = await governance.updateRestriction(params.id, { ...body, settings }, { type: 'restriction.updated', actor: actorOf(req) });
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
      const outcome = await governance.deleteRestriction(params.id, { type: 'restriction.deleted', actor: actorOf(req) });
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
      const s = await governance.getSettings();
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
      const s = await governance.updateSettings(body, { type: 'enrollment_settings.updated', actor: actorOf(req) });
      return { status: 200, body: { preapproved_only: s.preapproved_only, updated_at: s.updated_at.toISOString() } };
    },
  });

  // ---- corporate identifiers ----

  routes.add({
    method: 'get',
    path: '/corporate-identifiers',
    summary: 'List corporate identifiers (IMEIs and serial numbers that mark a device corporate), newest first',
    scope: 'enrollment:read',
    query: CorporateListQuery,
    responses: { 200: { description: 'a page of corporate identifiers', schema: pageOf(CorporateIdentifierSchema, 'CorporateIdentifierPage') } },
    async handle({ query: { limit, cursor, ...filter } }) {
      return { status: 200, body: mapPage(await governance.listCorporateIdentifiers(filter, { limit, cursor }), corporateJson) };
    },
  });

  routes.add({
    method: 'post',
    path: '/corporate-identifiers',
    summary: 'Add one corporate identifier',
    scope: 'enrollment:write',
    body: CorporateIdentifierRequest,
    responses: { 201: { description: 'the identifier', schema: CorporateIdentifierSchema }, 409: { description: 'corporate_identifier_exists' } },
    async handle({ body, req }) {
      const identifier = checkIdentifier(body.type, body.identifier);
      const details = body.details ? body.details : null;
      const created = await governance.addCorporateIdentifier({ type: body.type, identifier, details }, { type: 'corporate_identifier.created', actor: actorOf(req) });
      return { status: 201, body: corporateJson(created) };
    },
  });

  routes.add({
    method: 'post',
    path: '/corporate-identifiers/import',
    summary:
      'Import corporate identifiers from a CSV file (Intune format: no header; identifier, then optional details; at most 5,000 rows). ' +
      'A file with errors imports nothing (422 import_invalid with `errors`). Identifiers already listed with other details stop the import ' +
      '(409 import_needs_review with `duplicates`) unless `overwrite` says which to overwrite (the rest are skipped)',
    scope: 'enrollment:write',
    csv: true,
    query: CorporateImportQuery,
    responses: {
      200: { description: 'what was (or, with dry_run, would be) imported', schema: CorporateImportReportSchema },
      409: { description: 'import_needs_review: `duplicates` lists { identifier, row, existing_details, new_details }' },
      415: { description: 'unsupported_media_type: send the file as text/csv' },
      422: { description: 'import_invalid: `errors` and `warnings` list { row, code, detail }' },
    },
    async handle({ query, csv, req }) {
      const parsed = parseCorporateIdentifierCsv(csv, query.type);
      if (parsed.errors.length) throw importInvalid(parsed.errors, parsed.warnings);
      const outcome = await governance.importCorporateIdentifiers(
        query.type,
        parsed.entries,
        { overwrite: overwriteList(query.overwrite), dryRun: query.dry_run ?? false },
        { type: 'corporate_identifiers.imported', actor: actorOf(req) },
      );
      if ('needsReview' in outcome) {
        const n = outcome.needsReview.length;
        throw Errors.of(
          'import_needs_review',
          `${n} identifier${n === 1 ? ' is' : 's are'} already listed with other details; nothing was imported. Send the file again with overwrite=all, or overwrite= the identifiers to overwrite (the others are skipped)`,
          { duplicates: outcome.needsReview, warnings: parsed.warnings },
        );
      }
      return { status: 200, body: { ...outcome.report, warnings: parsed.warnings } };
    },
  });

  routes.add({
    method: 'delete',
    path: '/corporate-identifiers/{id}',
    summary: 'Delete a corporate identifier; a device that enrolled with it keeps its ownership',
    scope: 'enrollment:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'corporate_identifier_not_found' } },
    async handle({ params, req }) {
      if (!(await governance.deleteCorporateIdentifier(params.id, { type: 'corporate_identifier.deleted', actor: actorOf(req) }))) {
        throw Errors.of('corporate_identifier_not_found', `no corporate identifier with id ${params.id}`);
      }
      return { status: 204 };
    },
  });

  // ---- pre-approved devices ----

  routes.add({
    method: 'get',
    path: '/preapproved-devices',
    summary: 'List pre-approved devices, newest first',
    scope: 'enrollment:read',
    query: PageQuery.extend({ status: z.enum(['pending', 'enrolled']).optional() }),
    responses: { 200: { description: 'a page of pre-approved devices', schema: pageOf(PreapprovedSchema, 'PreapprovedDevicePage') } },
    async handle({ query: { limit, cursor, status } }) {
      return { status: 200, body: mapPage(await governance.listPreapproved({ status }, { limit, cursor }), preapprovedJson) };
    },
  });

  routes.add({
    method: 'post',
    path: '/preapproved-devices/import',
    summary:
      'Import pre-approved devices and their users from a CSV file (Hexnode format: Name, SAMAccountName, Email, Mobile, Ownership, Serial number, Device name, Platform; at most 5,000 rows). ' +
      'All or nothing: a file with any error imports nothing (422 import_invalid with every error). Each device appears in the device list with status pre_approved until it enrolls. ' +
      'A serial number pre-approved before is replaced unless that device already enrolled (an already_enrolled error)',
    scope: 'enrollment:write',
    csv: true,
    query: PreapprovedImportQuery,
    responses: {
      200: { description: 'dry_run: whether the file is valid, its errors, and what it would do', schema: PreapprovedDryRun },
      201: { description: 'imported', schema: PreapprovedImportResult },
      404: { description: 'category_not_found or policy_not_found' },
      415: { description: 'unsupported_media_type: send the file as text/csv' },
      422: { description: 'import_invalid: `errors` and `warnings` list { row, code, detail }' },
    },
    async handle({ query, csv, req }) {
      if (query.category_id && !(await governance.categoryExists(query.category_id))) throw Errors.of('category_not_found', `no device category with id ${query.category_id}`);
      if (query.policy_id && !(await governance.policyExists(query.policy_id))) throw Errors.of('policy_not_found', `no policy with id ${query.policy_id}`);
      const parsed = parsePreapprovedCsv(csv);
      const opts = { existingUsers: query.existing_users, categoryId: query.category_id, policyId: query.policy_id, dryRun: query.dry_run ?? false };

      if (opts.dryRun) {
        const plan = parsed.errors.length ? undefined : await governance.planPreapprovedImport(parsed, opts);
        const errors = [...parsed.errors, ...(plan?.errors ?? [])].sort(byRow);
        const valid = errors.length === 0;
        return {
          status: 200,
          body: {
            valid,
            errors,
            warnings: parsed.warnings,
            columns: parsed.columns,
            preview:
              valid && plan
                ? {
                    devices: parsed.rows.map((r) => ({ row: r.row, platform: r.platform, serial_number: r.serial_number, device_name: r.device_name, ownership: r.ownership, user: r.email })),
                    users: plan.users,
                    users_created: plan.users_created,
                    users_replaced: plan.users_replaced,
                    users_skipped: plan.users_skipped,
                    preapprovals_replaced: plan.preapprovals_replaced,
                  }
                : null,
          },
        };
      }
      if (parsed.errors.length) throw importInvalid(parsed.errors, parsed.warnings);
      const result = await governance.importPreapproved(parsed, opts, { type: 'preapproved_devices.imported', actor: actorOf(req) });
      return {
        status: 201,
        body: {
          import_id: result.import_id,
          devices: result.devices,
          users_created: result.users_created,
          users_replaced: result.users_replaced,
          users_skipped: result.users_skipped,
          preapprovals_replaced: result.preapprovals_replaced,
          warnings: parsed.warnings,
        },
      };
    },
  });

  routes.add({
    method: 'delete',
    path: '/preapproved-devices/{id}',
    summary: 'Delete a pre-approved device, and its pre_approved placeholder in the device list (a device that enrolled stays)',
    scope: 'enrollment:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'preapproved_device_not_found' } },
    async handle({ params, req }) {
      if (!(await governance.deletePreapproved(params.id, { type: 'preapproved_device.deleted', actor: actorOf(req) }))) {
        throw Errors.of('preapproved_device_not_found', `no pre-approved device with id ${params.id}`);
      }
      return { status: 204 };
    },
  });

  // ---- reports ----

  routes.add({
    method: 'get',
    path: '/reports/enrollment-failures',
    summary: 'Refused enrollments, newest first, with a count per reason (JSON, or CSV of the items with format=csv or Accept: text/csv)',
    scope: 'enrollment:read',
    query: FailureQuery,
    responses: { 200: { description: 'the report', schema: FailureReport } },
    async handle({ query: { limit, cursor, format, since, until, ...rest }, req }) {
      const filter = { ...rest, since: since ? new Date(since) : undefined, until: until ? new Date(until) : undefined };
      if (wantsCsv(format, req)) {
        const rows = await allRows(async (c) => (await governance.enrollmentFailures(filter, { limit: MAX_PAGE_SIZE, cursor: c })).page);
        return csvReply('enrollment-failures', FAILURE_COLUMNS, rows.map(failureJson));
      }
      const { summary, page } = await governance.enrollmentFailures(filter, { limit, cursor });
      return { status: 200, body: { summary, ...mapPage(page, failureJson) } };
    },
  });

  routes.add({
    method: 'get',
    path: '/reports/incomplete-enrollments',
    summary: 'Devices still pending more than older_than_minutes (default 30) after enrollment started, newest first (JSON or CSV)',
    scope: 'enrollment:read',
    query: IncompleteQuery,
    responses: { 200: { description: 'a page of devices', schema: pageOf(IncompleteSchema, 'IncompleteEnrollmentPage') } },
    async handle({ query: { limit, cursor, format, older_than_minutes }, req }) {
      if (wantsCsv(format, req)) {
        const rows = await allRows((c) => governance.incompleteEnrollments(older_than_minutes, { limit: MAX_PAGE_SIZE, cursor: c }));
        return csvReply('incomplete-enrollments', INCOMPLETE_COLUMNS, rows.map(incompleteJson));
      }
      return { status: 200, body: mapPage(await governance.incompleteEnrollments(older_than_minutes, { limit, cursor }), incompleteJson) };
    },
  });

  routes.add({
    method: 'get',
    path: '/reports/stale-devices',
    summary: 'Enrolled devices that have not checked in for `days` days (default 30) or never, newest first (JSON or CSV)',
    scope: 'enrollment:read',
    query: StaleQuery,
    responses: { 200: { description: 'a page of devices', schema: pageOf(StaleSchema, 'StaleDevicePage') } },
    async handle({ query: { limit, cursor, format, days }, req }) {
      if (wantsCsv(format, req)) {
        const rows = await allRows((c) => governance.staleDevices(days, { limit: MAX_PAGE_SIZE, cursor: c }));
        return csvReply('stale-devices', STALE_COLUMNS, rows.map(staleJson));
      }
      return { status: 200, body: mapPage(await governance.staleDevices(days, { limit, cursor }), staleJson) };
    },
  });
}

