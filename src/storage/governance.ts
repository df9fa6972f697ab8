/**
 * Enrollment governance for the admin API: enrollment restrictions (ordered by priority per kind, the
 * default of each kind last), the deployment-wide enrollment settings, corporate identifiers,
 * pre-approved devices and their imports, and the enrollment reports. The enrollment gate
 * (./enrollment-gate.ts) reads these tables when a device enrolls; nothing here runs at enrollment.
 *
 * Every write and its event share one transaction. Imports write with a few set-based statements
 * (`json_to_recordset`), never one statement per row, so a 5,000-row file takes well under a second.
 */
import crypto from 'node:crypto';
import type { CorporateIdentifierEntry, CorporateIdentifierType } from '../core/corporate-identifier-csv';
import { MAX_RESTRICTIONS_PER_KIND, type DeviceLimitSettings, type PlatformRestrictionSettings, type RestrictionKind } from '../core/enrollment-policy';
import { Errors } from '../core/errors';
import type { ImportProblem } from '../core/csv';
import { decodeCursor, toPage, type Page, type PageRequest } from '../core/pagination';
import type { PreapprovedParse, PreapprovedPlatform } from '../core/preapproved-csv';
import type { EventInput, Platform } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { newestFirst } from './paging';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---- shapes -------------------------------------------------------------------------------------------

export type RestrictionSettings = PlatformRestrictionSettings | DeviceLimitSettings;

export interface RestrictionRecord {
  id: string;
  kind: RestrictionKind;
  name: string;
  description: string | null;
  is_default: boolean;
  /** 1 = highest; null for the default, which always applies last. */
  priority: number | null;
  assign_all_users: boolean;
  assign_groups: string[];
  /** Lowercased emails. */
  assign_users: string[];
  settings: RestrictionSettings;
  created_at: Date;
  updated_at: Date;
}

export interface RestrictionInput {
  kind: RestrictionKind;
  name: string;
  description?: string | null;
  /** Where to put it; a taken priority moves that restriction and the ones below it down by one. Default: just above the default. */
  priority?: number;
  assign_all_users?: boolean;
  assign_groups?: string[];
  assign_users?: string[];
  settings: RestrictionSettings;
}

export type RestrictionChange = Partial<Omit<RestrictionInput, 'kind'>>;

export interface EnrollmentSettings {
  preapproved_only: boolean;
  updated_at: Date;
}

export interface CorporateIdentifierRecord {
  id: string;
  type: CorporateIdentifierType;
  identifier: string;
  details: string | null;
  status: 'enrolled' | 'not_contacted';
  device_id: string | null;
  enrolled_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface CorporateIdentifierFilter {
  type?: CorporateIdentifierType;
  /** Case-insensitive substring of the identifier or its details. */
  q?: string;
  status?: 'enrolled' | 'not_contacted';
}

export interface CorporateDuplicate {
  identifier: string;
  row: number;
  existing_details: string | null;
  new_details: string | null;
}

export interface CorporateImportOptions {
  /** Which duplicates (listed identifiers with other details) to overwrite: all, the listed ones (the rest are skipped), or undefined to ask first. */
  overwrite?: 'all' | string[];
  dryRun: boolean;
}

export interface CorporateImportReport {
  type: CorporateIdentifierType;
  imported: number;
  overwritten: number;
  unchanged: number;
  skipped: number;
  dry_run: boolean;
}

export type CorporateImportOutcome = { needsReview: CorporateDuplicate[] } | { report: CorporateImportReport };

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

export interface FailureFilter {
  since?: Date;
  until?: Date;
  reason?: string;
  platform?: Platform;
  /** The email or UPN the enrollment named, case-insensitive. */
  user?: string;
}

export interface FailureItem {
  id: number;
  activity_id: string;
  created_at: Date;
  platform: string;
  method: string;
  user: string | null;
  reason: string;
  detail: string;
  os: string | null;
  os_version: string | null;
  serial_number: string | null;
  manufacturer: string | null;
  model: string | null;
}

export interface IncompleteEnrollment {
  id: string;
  platform: string;
  name: string | null;
  serial_number: string | null;
  user: string | null;
  created_at: Date;
  minutes_pending: number;
}

export interface StaleDevice {
  id: string;
  platform: string;
  name: string | null;
  serial_number: string | null;
  user: string | null;
  last_seen_at: Date | null;
  /** Whole days since the device last checked in; null if it never did. */
  days_since_seen: number | null;
  created_at: Date;
}

const RESTRICTION_COLUMNS = ['id', 'kind', 'name', 'description', 'is_default', 'priority', 'assign_all_users', 'assign_groups', 'assign_users', 'settings', 'created_at', 'updated_at'];

const uniq = <T>(values: T[]): T[] => [...new Set(values)];

/** The family a pre-approved serial number is unique in (an Apple serial is one device, whatever OS it runs). */
export function deviceFamilyOf(platform: PreapprovedPlatform): 'apple' | 'android' {
  return platform === 'android' ? 'android' : 'apple';
}

export class PgGovernanceStore {
  constructor(readonly db: Db) {}

  // ---- restrictions -----------------------------------------------------------------------------------

  /** Non-default restrictions by priority, then the default, per kind (platform first). */
  async listRestrictions(kind?: RestrictionKind): Promise<RestrictionRecord[]> {
    const q = this.db('enrollment_restrictions')
      .select(RESTRICTION_COLUMNS)
      .orderBy([{ column: 'kind', order: 'desc' }, { column: 'is_default' }, { column: 'priority' }]);
    if (kind) q.where({ kind });
    return (await q) as RestrictionRecord[];
  }

  async getRestriction(id: string, conn: Db = this.db): Promise<RestrictionRecord | undefined> {
    if (!UUID.test(id)) return undefined;
    return (await conn('enrollment_restrictions').select(RESTRICTION_COLUMNS).where({ id }).first()) as RestrictionRecord | undefined;
  }

  /**
   * Adds a restriction at `priority` (others from there move down by one) or just above the default.
   * Throws restriction_limit_reached when the kind already has MAX_RESTRICTIONS_PER_KIND besides the default.
   */
  async createRestriction(input: RestrictionInput, event: EventInput): Promise<RestrictionRecord> {
    return this.db.transaction(async (trx) => {
      const order = await lockedOrder(trx, input.kind);
      if (order.length >= MAX_RESTRICTIONS_PER_KIND) {
        throw Errors.of('restriction_limit_reached', `there are already ${order.length} ${input.kind} restrictions besides the default, the most allowed (${MAX_RESTRICTIONS_PER_KIND}); delete or reuse one`, {
          limit: MAX_RESTRICTIONS_PER_KIND,
        });
      }
      // Inserted without a priority (NULLs never collide in the unique index), then placed.
      const [row] = await trx('enrollment_restrictions')
        .insert({
          kind: input.kind,
          name: input.name,
          description: input.description ?? null,
          is_default: false,
          priority: null,
          assign_all_users: input.assign_all_users ?? false,
          assign_groups: uniq(input.assign_groups ?? []),
          assign_users: uniq((input.assign_users ?? []).map((u) => u.toLowerCase())),
          settings: JSON.stringify(input.settings),
        })
        .returning('id');
      const id = (row as { id: string }).id;
      order.splice(clampPosition(input.priority, order.length), 0, id);
      await renumber(trx, input.kind, order);
      const created = (await this.getRestriction(id, trx))!;
      await trx('events').insert(eventRow({ ...event, data: { restriction_id: id, kind: created.kind, name: created.name, priority: created.priority } }));
      return created;
    });
  }

  /**
   * Changes what is given. A new priority moves the restriction there and closes the gap it leaves
   * (priorities stay 1..n). The default's priority and assignment are fixed: changing them throws
   * default_restriction_locked (sending the values it already has is not a change).
   */
  async updateRestriction(id: string, change: RestrictionChange, event: EventInput): Promise<RestrictionRecord | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db.transaction(async (trx) => {
      const kind = (await trx('enrollment_restrictions').where({ id }).first('kind'))?.kind as RestrictionKind | undefined;
      if (!kind) return undefined;
      const order = await lockedOrder(trx, kind);
      const current = await this.getRestriction(id, trx);
      if (!current) return undefined;
      const assignUsers = change.assign_users && uniq(change.assign_users.map((u) => u.toLowerCase()));
      const assignGroups = change.assign_groups && uniq(change.assign_groups);
      if (current.is_default) {
        const locked = [
          change.priority !== undefined && 'priority',
          change.assign_all_users !== undefined && change.assign_all_users !== current.assign_all_users && 'assign_all_users',
          assignGroups !== undefined && !sameSet(assignGroups, current.assign_groups) && 'assign_groups',
          assignUsers !== undefined && !sameSet(assignUsers, current.assign_users) && 'assign_users',
        ].filter((f): f is string => Boolean(f));
        if (locked.length) {
          throw Errors.of(
            'default_restriction_locked',
            `the default ${kind} restriction always applies last, to everyone not covered by another restriction: its ${locked.join(' and ')} can't change (its name, description and settings can)`,
            { fields: locked },
          );
        }
      }
      const fields: Record<string, unknown> = {};
      if (change.name !== undefined) fields.name = change.name;
      if (change.description !== undefined) fields.description = change.description;
      if (change.settings !== undefined) fields.settings = JSON.stringify(change.settings);
      if (!current.is_default) {
        if (change.assign_all_users !== undefined) fields.assign_all_users = change.assign_all_users;
        if (assignGroups !== undefined) fields.assign_groups = assignGroups;
        if (assignUsers !== undefined) fields.assign_users = assignUsers;
      }
      await trx('enrollment_restrictions').where({ id }).update({ ...fields, updated_at: trx.fn.now() });
      if (!current.is_default && change.priority !== undefined) {
        const rest = order.filter((o) => o !== id);
        rest.splice(clampPosition(change.priority, rest.length), 0, id);
        await renumber(trx, kind, rest);
      }
      const updated = (await this.getRestriction(id, trx))!;
      await trx('events').insert(
        eventRow({
          ...event,
          data: { restriction_id: id, kind, name: updated.name, priority: updated.priority, changed: Object.keys(change).filter((k) => change[k as keyof RestrictionChange] !== undefined) },
        }),
      );
      return updated;
    });
  }

  /** Deletes a restriction and closes the gap in the priorities; the default can't be deleted. */
  async deleteRestriction(id: string, event: EventInput): Promise<'deleted' | 'not_found' | 'default'> {
    if (!UUID.test(id)) return 'not_found';
    return this.db.transaction(async (trx) => {
      const found = (await trx('enrollment_restrictions').where({ id }).first('kind', 'is_default')) as { kind: RestrictionKind; is_default: boolean } | undefined;
      if (!found) return 'not_found';
      if (found.is_default) return 'default';
      const order = await lockedOrder(trx, found.kind);
      const [gone] = await trx('enrollment_restrictions').where({ id }).del().returning(['name', 'priority']);
      if (!gone) return 'not_found';
      await renumber(trx, found.kind, order.filter((o) => o !== id));
      await trx('events').insert(eventRow({ ...event, data: { restriction_id: id, kind: found.kind, name: gone.name, priority: gone.priority } }));
      return 'deleted';
    });
  }

  // ---- settings ---------------------------------------------------------------------------------------

  async getSettings(): Promise<EnrollmentSettings> {
    const row = await this.db('enrollment_settings').where({ id: 1 }).first('preapproved_only', 'updated_at');
    return row as EnrollmentSettings;
  }

  async updateSettings(input: { preapproved_only: boolean }, event: EventInput): Promise<EnrollmentSettings> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx('enrollment_settings')
        .insert({ id: 1, preapproved_only: input.preapproved_only, updated_at: trx.fn.now() })
        .onConflict('id')
        .merge()
        .returning(['preapproved_only', 'updated_at']);
      await trx('events').insert(eventRow({ ...event, data: { preapproved_only: input.preapproved_only } }));
      return row as EnrollmentSettings;
    });
  }

  // ---- corporate identifiers --------------------------------------------------------------------------

  listCorporateIdentifiers(filter: CorporateIdentifierFilter, page: PageRequest): Promise<Page<CorporateIdentifierRecord>> {
    const inner = corporateIdentifiers(this.db);
    if (filter.type) inner.where({ type: filter.type });
    if (filter.status === 'enrolled') inner.whereNotNull('device_id');
    if (filter.status === 'not_contacted') inner.whereNull('device_id');
    if (filter.q) {
      const like = likePattern(filter.q);
      inner.where((w) => w.whereILike('value', like).orWhereILike('details', like));
    }
    return newestFirst<CorporateIdentifierRecord>(this.db.select('*').from(inner.as('c')), page);
  }

  /** Adds one identifier (already normalized); throws corporate_identifier_exists if it is listed. */
  async addCorporateIdentifier(input: { type: CorporateIdentifierType; identifier: string; details: string | null }, event: EventInput): Promise<CorporateIdentifierRecord> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx('corporate_identifiers')
        .insert({ type: input.type, value: input.identifier, details: input.details })
        .onConflict(['type', 'value'])
        .ignore()
        .returning('id');
      if (!row) {
        throw Errors.of('corporate_identifier_exists', `${input.type === 'imei' ? 'IMEI' : 'serial number'} ${input.identifier} is already a corporate identifier`);
      }
      const id = (row as { id: string }).id;
      await trx('events').insert(eventRow({ ...event, data: { corporate_identifier_id: id, type: input.type, identifier: input.identifier } }));
      return (await this.getCorporateIdentifier(id, trx))!;
    });
  }

  async getCorporateIdentifier(id: string, conn: Db = this.db): Promise<CorporateIdentifierRecord | undefined> {
    if (!UUID.test(id)) return undefined;
    return (await corporateIdentifiers(conn).where({ id }).first()) as CorporateIdentifierRecord | undefined;
  }

  /**
   * Removes an identifier. A device that already enrolled with it keeps its ownership: the identifier
   * decided ownership once, at enrollment.
   */
  async deleteCorporateIdentifier(id: string, event: EventInput): Promise<boolean> {
    if (!UUID.test(id)) return false;
    return this.db.transaction(async (trx) => {
      const [gone] = await trx('corporate_identifiers').where({ id }).del().returning(['type', 'value']);
      if (!gone) return false;
      await trx('events').insert(eventRow({ ...event, data: { corporate_identifier_id: id, type: gone.type, identifier: gone.value } }));
      return true;
    });
  }

  /**
   * Imports parsed entries (each identifier once: the codec keeps the first of a repeated one). New
   * identifiers are added; listed ones with the same details are unchanged; listed ones with other
   * details are duplicates: without `overwrite` nothing is written and they are returned for review;
   * with it, the chosen ones are overwritten and the others skipped. One transaction; a dry run
   * reports the same numbers and rolls nothing forward.
   */
  async importCorporateIdentifiers(type: CorporateIdentifierType, entries: CorporateIdentifierEntry[], opts: CorporateImportOptions, event: EventInput): Promise<CorporateImportOutcome> {
    return this.db.transaction(async (trx) => {
      // One import at a time, so the comparison below still holds when the rows are written.
      await trx.raw(`SELECT pg_advisory_xact_lock(hashtext('mooring.corporate_identifiers.import'))`);
      const existing = new Map<string, string | null>();
      const { rows } = await trx.raw<{ rows: Array<{ value: string; details: string | null }> }>(
        'SELECT value, details FROM corporate_identifiers WHERE type = ? AND value = ANY(?::text[])',
        [type, entries.map((e) => e.identifier)],
      );
      for (const r of rows) existing.set(r.value, r.details);

      const fresh: CorporateIdentifierEntry[] = [];
      const duplicates: CorporateDuplicate[] = [];
      let unchanged = 0;
      for (const e of entries) {
        if (!existing.has(e.identifier)) fresh.push(e);
        else if ((existing.get(e.identifier) ?? null) === e.details) unchanged++;
        else duplicates.push({ identifier: e.identifier, row: e.row, existing_details: existing.get(e.identifier) ?? null, new_details: e.details });
      }
      if (duplicates.length && opts.overwrite === undefined) return { needsReview: duplicates };
      const chosen = opts.overwrite === 'all' ? undefined : new Set(opts.overwrite ?? []);
      const overwrite = duplicates.filter((d) => !chosen || chosen.has(d.identifier));
      const report: CorporateImportReport = {
        type,
        imported: fresh.length,
        overwritten: overwrite.length,
        unchanged,
        skipped: duplicates.length - overwrite.length,
        dry_run: opts.dryRun,
      };
      if (opts.dryRun) return { report };

      if (fresh.length) {
        const inserted = await trx.raw<{ rowCount: number }>(
          `INSERT INTO corporate_identifiers (type, value, details)
           SELECT ?, x.value, x.details FROM json_to_recordset(?::json) AS x(value text, details text)
           ON CONFLICT (type, value) DO NOTHING`,
          [type, JSON.stringify(fresh.map((e) => ({ value: e.identifier, details: e.details })))],
        );
        report.imported = inserted.rowCount;
      }
      if (overwrite.length) {
        await trx.raw(
          `UPDATE corporate_identifiers c SET details = x.details, updated_at = now()
             FROM json_to_recordset(?::json) AS x(value text, details text)
            WHERE c.type = ? AND c.value = x.value`,
          [JSON.stringify(overwrite.map((d) => ({ value: d.identifier, details: d.new_details }))), type],
        );
      }
      const { dry_run: _dry, ...counts } = report;
      await trx('events').insert(eventRow({ ...event, data: { ...counts, overwritten_identifiers: overwrite.slice(0, 100).map((d) => d.identifier) } }));
      return { report };
    });
  }

  // ---- pre-approved devices ---------------------------------------------------------------------------

  async categoryExists(id: string): Promise<boolean> {
    return UUID.test(id) && Boolean(await this.db('device_categories').where({ id }).first('id'));
  }

  async policyExists(id: string): Promise<boolean> {
    return UUID.test(id) && Boolean(await this.db('policies').where({ id }).first('id'));
  }

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

  // ---- reports ----------------------------------------------------------------------------------------

  /** Refused enrollments, newest first, and how many there are of each reason under the same filter. */
  async enrollmentFailures(filter: FailureFilter, page: PageRequest): Promise<{ summary: Array<{ reason: string; count: number }>; page: Page<FailureItem> }> {
    const where = (q: ReturnType<Db>) => {
      if (filter.since) q.where('created_at', '>=', filter.since);
      if (filter.until) q.where('created_at', '<', filter.until);
      if (filter.reason) q.where('reason', filter.reason);
      if (filter.platform) q.where('platform', filter.platform);
      if (filter.user) q.whereRaw('lower(user_ref) = lower(?)', [filter.user]);
      return q;
    };
    const summary = (await where(this.db('enrollment_attempts'))
      .select('reason', this.db.raw('count(*)::int AS count'))
      .groupBy('reason')
      .orderBy([{ column: 'count', order: 'desc' }, { column: 'reason' }])) as Array<{ reason: string; count: number }>;
    const items = where(this.db('enrollment_attempts')).select(
      'id',
      'activity_id',
      'created_at',
      'platform',
      'method',
      'user_ref as user',
      'reason',
      'detail',
      this.db.raw(`facts->>'os' AS os`),
      this.db.raw(`facts->>'os_version' AS os_version`),
      this.db.raw(`facts->>'serial_number' AS serial_number`),
      this.db.raw(`facts->>'manufacturer' AS manufacturer`),
      this.db.raw(`facts->>'model' AS model`),
    );
    items.orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(page.limit + 1);
    if (page.cursor) {
      const [at, id] = decodeCursor(page.cursor, 2);
      items.whereRaw('(created_at, id) < (?::timestamptz, ?::bigint)', [at, id]);
    }
    return { summary, page: toPage((await items) as FailureItem[], page.limit, (r) => [r.created_at.toISOString(), r.id]) };
  }

  /** Devices still `pending` more than `olderThanMinutes` after they were created, newest first. */
  incompleteEnrollments(olderThanMinutes: number, page: PageRequest): Promise<Page<IncompleteEnrollment>> {
    const inner = this.db('devices')
      .select(
        'id',
        'platform',
        'name',
        'serial_number',
        'user_ref as user',
        'created_at',
        this.db.raw('floor(extract(epoch FROM now() - created_at) / 60)::int AS minutes_pending'),
      )
      .where('status', 'pending')
      .whereRaw(`created_at < now() - make_interval(mins => ?)`, [olderThanMinutes]);
    return newestFirst<IncompleteEnrollment>(this.db.select('*').from(inner.as('d')), page);
  }

  /** Enrolled devices that have not checked in for `days` days (or never), newest first. */
  staleDevices(days: number, page: PageRequest): Promise<Page<StaleDevice>> {
    const inner = this.db('devices')
      .select(
        'id',
        'platform',
        'name',
        'serial_number',
        'user_ref as user',
        'last_seen_at',
        this.db.raw('floor(extract(epoch FROM now() - last_seen_at) / 86400)::int AS days_since_seen'),
        'created_at',
      )
      .where('status', 'enrolled')
      .where((w) => w.whereNull('last_seen_at').orWhereRaw(`last_seen_at < now() - make_interval(days => ?)`, [days]));
    return newestFirst<StaleDevice>(this.db.select('*').from(inner.as('d')), page);
  }
}

/** Corporate identifiers in their API shape: `enrolled` once a device enrolled with one. */
function corporateIdentifiers(conn: Db) {
  return conn('corporate_identifiers').select(
    'id',
    'type',
    'value as identifier',
    'details',
    conn.raw(`CASE WHEN device_id IS NOT NULL THEN 'enrolled' ELSE 'not_contacted' END AS status`),
    'device_id',
    'enrolled_at',
    'created_at',
    'updated_at',
  );
}

/** A pre-approval has enrolled once a device took its place. */
const ENROLLED = 'p.device_id IS NOT NULL OR p.enrolled_at IS NOT NULL';

function likePattern(q: string): string {
  return `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function sameSet(a: string[], b: string[]): boolean {
  const sb = new Set(b);
  return a.length === sb.size && a.every((x) => sb.has(x));
}

/** 0-based slot for a 1-based priority among `count` others: missing or past the end means last. */
function clampPosition(priority: number | undefined, count: number): number {
  if (priority === undefined) return count;
  return Math.min(Math.max(priority, 1), count + 1) - 1;
}

/**
 * Locks the kind's restrictions against concurrent re-ordering (through its default row, which
 * always exists) and returns the non-default ids by priority.
 */
async function lockedOrder(trx: Db, kind: RestrictionKind): Promise<string[]> {
  await trx('enrollment_restrictions').where({ kind, is_default: true }).forUpdate().first('id');
  return trx('enrollment_restrictions').where({ kind, is_default: false }).orderBy([{ column: 'priority' }, { column: 'created_at' }]).pluck('id');
}

/**
 * Gives the restrictions of `order` the priorities 1..n in that order. Two steps because the unique
 * index on (kind, priority) is not deferrable and is checked row by row: first every priority moves
 * out of the way (negated), then each gets its final value, which nothing holds any more.
 */
async function renumber(trx: Db, kind: RestrictionKind, order: string[]): Promise<void> {
  await trx.raw('UPDATE enrollment_restrictions SET priority = -priority WHERE kind = ? AND NOT is_default AND priority > 0', [kind]);
  if (!order.length) return;
  await trx.raw(
    `UPDATE enrollment_restrictions r SET priority = o.ord
       FROM unnest(?::uuid[]) WITH ORDINALITY AS o(id, ord)
      WHERE r.id = o.id`,
    [order],
  );
}

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
