/**
 * Pre-approved devices: imported from a CSV file with their users, each listed as a `pre_approved`
 * device until it enrolls.
 *
 * The import takes the CSV file itself as the body (`Content-Type: text/csv`); a file with any error
 * imports nothing and every problem is reported at once (422 import_invalid, with `errors`).
 */
import { z } from '../zod';
import type { ImportProblem } from '../../core/csv';
import { Errors } from '../../core/errors';
import { mapPage } from '../../core/pagination';
import { parsePreapprovedCsv, PREAPPROVED_PLATFORMS } from '../../core/preapproved-csv';
import type { PgPreapprovedStore, PreapprovedRecord } from '../../storage/preapproved';
import { actorOf } from '../auth';
import type { PgDirectoryStore } from '../../storage/directory';
import type { PgPolicyStore } from '../../storage/policies';
import type { AdminRoutes } from '../route';
import { IdParams, PageQuery, pageOf } from '../schemas';
import { flag, importInvalid, iso, isoOrNull, ProblemItem } from './governance-shared';

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

// ---- routes -------------------------------------------------------------------------------------------

export function preapprovedRoutes(
  routes: AdminRoutes,
  deps: { preapproved: PgPreapprovedStore; directory: Pick<PgDirectoryStore, 'getCategory'>; policies: Pick<PgPolicyStore, 'get'> },
): void {
  const { preapproved, directory, policies } = deps;

  routes.add({
    method: 'get',
    path: '/preapproved-devices',
    summary: 'List pre-approved devices, newest first',
    scope: 'enrollment:read',
    query: PageQuery.extend({ status: z.enum(['pending', 'enrolled']).optional() }),
    responses: { 200: { description: 'a page of pre-approved devices', schema: pageOf(PreapprovedSchema, 'PreapprovedDevicePage') } },
    async handle({ query: { limit, cursor, status } }) {
      return { status: 200, body: mapPage(await preapproved.listPreapproved({ status }, { limit, cursor }), preapprovedJson) };
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
      if (query.category_id && !(await directory.getCategory(query.category_id))) throw Errors.of('category_not_found', `no device category with id ${query.category_id}`);
      if (query.policy_id && !(await policies.get(query.policy_id))) throw Errors.of('policy_not_found', `no policy with id ${query.policy_id}`);
      const parsed = parsePreapprovedCsv(csv);
      const opts = { existingUsers: query.existing_users, categoryId: query.category_id, policyId: query.policy_id, dryRun: query.dry_run ?? false };

      if (opts.dryRun) {
        const plan = parsed.errors.length ? undefined : await preapproved.planPreapprovedImport(parsed, opts);
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
      const result = await preapproved.importPreapproved(parsed, opts, { type: 'preapproved_devices.imported', actor: actorOf(req) });
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
      if (!(await preapproved.deletePreapproved(params.id, { type: 'preapproved_device.deleted', actor: actorOf(req) }))) {
        throw Errors.of('preapproved_device_not_found', `no pre-approved device with id ${params.id}`);
      }
      return { status: 204 };
    },
  });
}
