/**
 * Pre-approved devices and their CSV imports, for the admin API: each pre-approval also stands in the
 * device list as a `pre_approved` placeholder until its device enrolls. The enrollment gate
 * (./enrollment-gate.ts) matches enrolling devices against them.
 *
 * Every write and its event share one transaction. An import writes with a few set-based statements
 * (`json_to_recordset`), never one statement per row, so a 5,000-row file takes well under a second.
 */
import crypto from 'node:crypto';
import { Errors } from '../core/errors';
import type { ImportProblem } from '../core/csv';
import type { Page, PageRequest } from '../core/pagination';
import type { PreapprovedParse, PreapprovedPlatform } from '../core/preapproved-csv';
import type { EventInput } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { UUID } from '../core/ids';
import { newestFirst } from './paging';

// ---- shapes -------------------------------------------------------------------------------------------

export interface PreapprovedImportOptions {
  existingUsers: 'replace' | 'skip';
  categoryId?: string;
  policyId?: string;
  dryRun: boolean;
}

export interface PreapprovedUserPlan {
  email: string;
  name: string;
  action: 'create' | 'replace' | 'skip';
}

export interface PreapprovedImportPlan {
  /** Problems only the database can find (a serial whose pre-approval already enrolled). */
  errors: ImportProblem[];
  devices: number;
  users: PreapprovedUserPlan[];
  users_created: number;
  users_replaced: number;
  users_skipped: number;
  /** Pending pre-approvals of the same serial numbers this import replaces. */
  preapprovals_replaced: number;
}

export interface PreapprovedImportResult extends PreapprovedImportPlan {
  import_id: string;
}

export interface PreapprovedRecord {
  id: string;
  platform: PreapprovedPlatform;
  device_platform: 'apple' | 'android';
  serial_number: string;
  device_name: string | null;
  ownership: 'personal' | 'corporate';
  user_id: string | null;
  user: string | null;
  category_id: string | null;
  policy_id: string | null;
  status: 'pending' | 'enrolled';
  device_id: string | null;
  placeholder_device_id: string | null;
  enrolled_at: Date | null;
  import_id: string | null;
  created_at: Date;
}

/** The family a pre-approved serial number is unique in (an Apple serial is one device, whatever OS it runs). */
export function deviceFamilyOf(platform: PreapprovedPlatform): 'apple' | 'android' {
  return platform === 'android' ? 'android' : 'apple';
}

export class PgPreapprovedStore {
  constructor(readonly db: Db) {}

  /** What an import of this (error-free) parse would do, without writing anything. */
  async planPreapprovedImport(parsed: PreapprovedParse, opts: PreapprovedImportOptions): Promise<PreapprovedImportPlan> {
    return planPreapproved(this.db, parsed, opts);
  }

  /**
   * Imports an error-free parse, all or nothing: users created (or, with `replace`, updated; with
   * `skip`, left alone), each row a `preapproved_devices` row plus a `pre_approved` placeholder in the
   * device list. A serial number pre-approved before is replaced if that pre-approval has not enrolled;
   * if it has, the row is an `already_enrolled` error and nothing is written (import_invalid).
   */
  async importPreapproved(parsed: PreapprovedParse, opts: PreapprovedImportOptions, event: EventInput): Promise<PreapprovedImportResult> {
    return this.db.transaction(async (trx) => {
      await trx.raw(`SELECT pg_advisory_xact_lock(hashtext('mooring.preapproved_devices.import'))`);
      const plan = await planPreapproved(trx, parsed, opts);
      if (plan.errors.length) {
        throw Errors.of('import_invalid', `${plan.errors.length} row${plan.errors.length === 1 ? '' : 's'} of the file can't be imported; nothing was imported`, {
          errors: plan.errors,
          warnings: parsed.warnings,
        });
      }
      const importId = crypto.randomUUID();
      const fields = new Set(Object.values(parsed.columns));

      // Users: insert the missing ones; with `replace`, update the details the file has columns for.
      const users = parsed.users.map((u) => ({ email: u.email, name: u.name, mobile: u.mobile, sam_account_name: u.sam_account_name }));
      // A column the file does not have leaves that detail alone (an empty cell does replace it).
      const sets = ['name = excluded.name'];
      if (fields.has('mobile')) sets.push('mobile = excluded.mobile');
      if (fields.has('sam_account_name')) sets.push('sam_account_name = excluded.sam_account_name');
      await trx.raw(
        `INSERT INTO users (email, name, mobile, sam_account_name)
         SELECT x.email, x.name, x.mobile, x.sam_account_name FROM json_to_recordset(?::json) AS x(email text, name text, mobile text, sam_account_name text)
         ON CONFLICT (email) DO ${opts.existingUsers === 'replace' ? `UPDATE SET ${sets.join(', ')}, updated_at = now()` : 'NOTHING'}`,
        [JSON.stringify(users)],
      );

      // Pending pre-approvals of the same serial numbers give way, with their placeholders.
      const devices = parsed.rows.map((r) => ({
        platform: r.platform,
        family: deviceFamilyOf(r.platform),
        serial: r.serial_number,
        device_name: r.device_name,
        ownership: r.ownership,
        email: r.email,
      }));
      const rowsJson = JSON.stringify(devices);
      await trx.raw(
        `WITH x AS (SELECT * FROM json_to_recordset(:rows::json) AS x(family text, serial text)),
              old AS (DELETE FROM preapproved_devices p USING x
                       WHERE p.device_platform = x.family AND p.serial_number = x.serial AND p.device_id IS NULL AND p.enrolled_at IS NULL
                   RETURNING p.placeholder_device_id)
         DELETE FROM devices d USING old WHERE d.id = old.placeholder_device_id AND d.status = 'pre_approved'`,
        { rows: rowsJson },
      );

      // The placeholders, then the pre-approvals pointing at them.
      await trx.raw(
        `WITH x AS (SELECT * FROM json_to_recordset(:rows::json)
                      AS x(platform text, family text, serial text, device_name text, ownership text, email text)),
              cat AS (SELECT id, name FROM device_categories WHERE id = :category::uuid),
              placeholder AS (
                INSERT INTO devices (platform, status, ownership, serial_number, name, user_ref, user_id, category_id, category, policy_id,
                                     counts_for_cap, ownership_source, inventory)
                SELECT x.family, 'pre_approved', x.ownership, x.serial, x.device_name, x.email, u.id, (SELECT id FROM cat), (SELECT name FROM cat),
                       :policy::uuid, false, 'preapproved', '{}'::jsonb
                  FROM x LEFT JOIN users u ON u.email = x.email
                RETURNING id, platform, serial_number)
         INSERT INTO preapproved_devices (platform, device_platform, serial_number, device_name, ownership, user_id, category_id, policy_id,
                                          placeholder_device_id, import_id)
         SELECT x.platform, x.family, x.serial, x.device_name, x.ownership, u.id, (SELECT id FROM cat), :policy::uuid, placeholder.id, :import::uuid
           FROM x
           JOIN placeholder ON placeholder.platform = x.family AND placeholder.serial_number = x.serial
           LEFT JOIN users u ON u.email = x.email`,
        { rows: rowsJson, category: opts.categoryId ?? null, policy: opts.policyId ?? null, import: importId },
      );

      await trx('events').insert(
        eventRow({
          ...event,
          data: {
            import_id: importId,
            devices: plan.devices,
            users_created: plan.users_created,
            users_replaced: plan.users_replaced,
            users_skipped: plan.users_skipped,
            preapprovals_replaced: plan.preapprovals_replaced,
            category_id: opts.categoryId ?? null,
            policy_id: opts.policyId ?? null,
          },
        }),
      );
      return { ...plan, import_id: importId };
    });
  }

  listPreapproved(filter: { status?: 'pending' | 'enrolled' }, page: PageRequest): Promise<Page<PreapprovedRecord>> {
    const inner = this.db('preapproved_devices as p')
      .leftJoin('users as u', 'u.id', 'p.user_id')
      .select(
        'p.id',
        'p.platform',
        'p.device_platform',
        'p.serial_number',
        'p.device_name',
        'p.ownership',
        'p.user_id',
        'u.email as user',
        'p.category_id',
        'p.policy_id',
        this.db.raw(`CASE WHEN ${ENROLLED} THEN 'enrolled' ELSE 'pending' END AS status`),
        'p.device_id',
        'p.placeholder_device_id',
        'p.enrolled_at',
        'p.import_id',
        'p.created_at',
      );
    if (filter.status === 'enrolled') inner.whereRaw(ENROLLED);
    if (filter.status === 'pending') inner.whereRaw(`NOT (${ENROLLED})`);
    return newestFirst<PreapprovedRecord>(this.db.select('*').from(inner.as('p')), page);
  }

  /** Deletes a pre-approval and its placeholder if it is still one (a device that enrolled stays). */
  async deletePreapproved(id: string, event: EventInput): Promise<boolean> {
    if (!UUID.test(id)) return false;
    return this.db.transaction(async (trx) => {
      const [gone] = await trx('preapproved_devices').where({ id }).del().returning(['placeholder_device_id', 'serial_number', 'device_platform']);
      if (!gone) return false;
      let placeholderDeleted = false;
      if (gone.placeholder_device_id) {
        placeholderDeleted = (await trx('devices').where({ id: gone.placeholder_device_id, status: 'pre_approved' }).del()) > 0;
      }
      await trx('events').insert(
        eventRow({
          ...event,
          data: { preapproved_device_id: id, serial_number: gone.serial_number, device_platform: gone.device_platform, placeholder_deleted: placeholderDeleted },
        }),
      );
      return true;
    });
  }
}

/** A pre-approval has enrolled once a device took its place. */
const ENROLLED = 'p.device_id IS NOT NULL OR p.enrolled_at IS NOT NULL';

/** Users to create, replace or skip, pre-approvals replaced, and rows only the database can refuse. */
async function planPreapproved(conn: Db, parsed: PreapprovedParse, opts: PreapprovedImportOptions): Promise<PreapprovedImportPlan> {
  const emails = parsed.users.map((u) => u.email);
  const existingUsers = new Set<string>(emails.length ? await conn('users').whereIn('email', emails).pluck('email') : []);
  const users: PreapprovedUserPlan[] = parsed.users.map((u) => ({
    email: u.email,
    name: u.name,
    action: !existingUsers.has(u.email) ? 'create' : opts.existingUsers === 'replace' ? 'replace' : 'skip',
  }));

  const keys = parsed.rows.map((r) => ({ family: deviceFamilyOf(r.platform), serial: r.serial_number, row: r.row }));
  const { rows: existing } = keys.length
    ? await conn.raw<{ rows: Array<{ row: number; serial: string; enrolled: boolean; device_id: string | null }> }>(
        `SELECT x.row, x.serial, (${ENROLLED}) AS enrolled, p.device_id
           FROM json_to_recordset(?::json) AS x(family text, serial text, row int)
           JOIN preapproved_devices p ON p.device_platform = x.family AND p.serial_number = x.serial`,
        [JSON.stringify(keys)],
      )
    : { rows: [] };
  const errors: ImportProblem[] = existing
    .filter((e) => e.enrolled)
    .sort((a, b) => a.row - b.row)
    .map((e) => ({
      row: e.row,
      code: 'already_enrolled',
      detail: `Serial number "${e.serial}" was pre-approved before and that device has enrolled${e.device_id ? ` (device ${e.device_id})` : ''}; remove the row, or delete the old pre-approval first.`,
    }));
  return {
    errors,
    devices: parsed.rows.length,
    users,
    users_created: users.filter((u) => u.action === 'create').length,
    users_replaced: users.filter((u) => u.action === 'replace').length,
    users_skipped: users.filter((u) => u.action === 'skip').length,
    preapprovals_replaced: existing.filter((e) => !e.enrolled).length,
  };
}
