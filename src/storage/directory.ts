/**
 * Users (and device enrollment managers), device categories and terms of use, for the admin API. Every
 * change writes its event in the same transaction; conflicts (a taken email or category name, the
 * 151st enrollment manager) are refused here, where they can be checked atomically.
 */
import type { Knex } from 'knex';
import { MAX_DEMS } from '../core/enrollment-policy';
import { Errors } from '../core/errors';
import { decodeCursor, toPage, type Page, type PageRequest } from '../core/pagination';
import type { Device, EventInput, Json } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { UUID } from '../core/ids';


/** The advisory lock promotions to enrollment manager take, so two at once cannot pass the cap together. */
const DEM_LOCK_KEY = 0x4d4f4f52_444d; // "MOOR" "DM"

// ---- shapes -----------------------------------------------------------------------------------------

export interface DirectoryUser {
  id: string;
  email: string;
  name: string | null;
  upn: string | null;
  sam_account_name: string | null;
  mobile: string | null;
  groups: string[];
  is_dem: boolean;
  /** Devices of this user that are enrolled or enrolling. */
  device_count: number;
  /** Devices this user enrolled as a device enrollment manager. */
  dem_device_count: number;
  created_at: Date;
  updated_at: Date;
}

export interface UserInput {
  email: string;
  name?: string | null;
  upn?: string | null;
  sam_account_name?: string | null;
  mobile?: string | null;
  groups?: string[];
  is_dem?: boolean;
}

export type UserChange = Partial<UserInput>;

export interface UserFilter {
  /** Free text: matches email, name or UPN (case-insensitive). */
  q?: string;
  is_dem?: boolean;
}

export interface DeviceCategory {
  id: string;
  name: string;
  description: string | null;
  /** Devices in this category (any status). */
  device_count: number;
  created_at: Date;
  updated_at: Date;
}

export interface CategoryInput {
  name: string;
  description?: string | null;
}

export type CategoryChange = Partial<CategoryInput>;

export interface DeviceChange {
  /** A category id, or null to leave the device unassigned. */
  category_id?: string | null;
  ownership?: 'corporate' | 'personal';
}

export interface Terms {
  id: string;
  name: string;
  description: string | null;
  title: string;
  summary: string;
  text: string;
  version: number;
  assign_all_users: boolean;
  assign_groups: string[];
  created_at: Date;
  updated_at: Date;
}

export interface TermsInput {
  name: string;
  description?: string | null;
  title: string;
  summary: string;
  text: string;
  assign_all_users?: boolean;
  assign_groups?: string[];
}

export type TermsChange = Partial<TermsInput> & {
  /** Bump the version, so every assigned user has to accept again. Without it the version stays. */
  require_reacceptance?: boolean;
};

export interface AcceptanceRow {
  user_id: string;
  email: string;
  name: string | null;
  upn: string | null;
  /** The highest version the user accepted, or null when they never did. */
  accepted_version: number | null;
  accepted_at: Date | null;
  /** The user accepted the current version. */
  accepted_latest: boolean;
}

export interface AcceptanceReport {
  terms_id: string;
  version: number;
  items: AcceptanceRow[];
}

// ---- helpers ----------------------------------------------------------------------------------------

function isUniqueViolation(err: unknown, constraint: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === '23505' && e.constraint === constraint;
}

function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Only the columns given, for partial updates: `undefined` means "leave it". */
function defined<T extends object>(input: T, columns: ReadonlyArray<keyof T>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) if (input[c] !== undefined) out[c as string] = input[c];
  return out;
}

function uniqueGroups(groups: string[] | undefined): string[] | undefined {
  return groups === undefined ? undefined : [...new Set(groups)];
}

const USER_COLUMNS = ['name', 'upn', 'sam_account_name', 'mobile', 'is_dem'] as const;
const TERMS_COLUMNS = ['name', 'description', 'title', 'summary', 'text', 'assign_all_users'] as const;

export class PgDirectoryStore {
  constructor(readonly db: Db) {}

  // ---- users ----------------------------------------------------------------------------------------

  async createUser(input: UserInput, event: EventInput): Promise<DirectoryUser> {
    try {
      return await this.db.transaction(async (trx) => {
        if (input.is_dem) await this.#requireDemRoom(trx, null);
        const [row] = await trx('users')
          .insert({ ...defined(input, USER_COLUMNS), email: input.email.trim().toLowerCase(), groups: uniqueGroups(input.groups) ?? [] })
          .returning(['id', 'email', 'is_dem']);
        await trx('events').insert(eventRow({ ...event, data: { user_id: row.id, email: row.email, is_dem: row.is_dem } }));
        return (await this.#userQuery(trx).where('u.id', row.id).first()) as DirectoryUser;
      });
    } catch (err) {
      if (isUniqueViolation(err, 'users_email')) throw Errors.of('user_exists', `a user with email ${input.email.trim().toLowerCase()} already exists`);
      throw err;
    }
  }

  async getUser(id: string): Promise<DirectoryUser | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.#userQuery(this.db).where('u.id', id).first();
  }

  /** By email, keyset-paginated on it (emails are unique). */
  async listUsers(filter: UserFilter, page: PageRequest): Promise<Page<DirectoryUser>> {
    const q = this.#userQuery(this.db).orderBy('u.email').limit(page.limit + 1);
    if (filter.is_dem !== undefined) q.where('u.is_dem', filter.is_dem);
    if (filter.q) {
      const like = likePattern(filter.q);
      q.where((w) => w.whereILike('u.email', like).orWhereILike('u.name', like).orWhereILike('u.upn', like));
    }
    if (page.cursor) q.where('u.email', '>', String(decodeCursor(page.cursor, 1)[0]));
    return toPage((await q) as DirectoryUser[], page.limit, (u) => [u.email]);
  }

  /** Changes the fields given; making a user an enrollment manager is refused past MAX_DEMS. */
  async updateUser(id: string, input: UserChange, event: EventInput): Promise<DirectoryUser | undefined> {
    if (!UUID.test(id)) return undefined;
    const email = input.email?.trim().toLowerCase();
    try {
      return await this.db.transaction(async (trx) => {
        const before = await trx('users').where({ id }).forUpdate().first('id', 'email', 'is_dem');
        if (!before) return undefined;
        if (input.is_dem && !before.is_dem) await this.#requireDemRoom(trx, id);
        const groups = uniqueGroups(input.groups);
        await trx('users')
          .where({ id })
          .update({
            ...defined(input, USER_COLUMNS),
            ...(email !== undefined ? { email } : {}),
            ...(groups !== undefined ? { groups } : {}),
            updated_at: trx.fn.now(),
          });
        const data: Record<string, Json> = { user_id: id, email: email ?? before.email, changed: Object.keys(input).filter((k) => input[k as keyof UserChange] !== undefined) };
        if (input.is_dem !== undefined && input.is_dem !== before.is_dem) data.is_dem = input.is_dem;
        await trx('events').insert(eventRow({ ...event, data }));
        return (await this.#userQuery(trx).where('u.id', id).first()) as DirectoryUser;
      });
    } catch (err) {
      if (isUniqueViolation(err, 'users_email')) throw Errors.of('user_exists', `a user with email ${email} already exists`);
      throw err;
    }
  }

  /** Deletes a user: their devices stay (without a user) and their terms acceptances go with them. */
  async deleteUser(id: string, event: EventInput): Promise<boolean> {
    if (!UUID.test(id)) return false;
    return this.db.transaction(async (trx) => {
      const [row] = await trx('users').where({ id }).del().returning(['id', 'email']);
      if (!row) return false;
      await trx('events').insert(eventRow({ ...event, data: { user_id: id, email: row.email } }));
      return true;
    });
  }

  #userQuery(q: Knex | Knex.Transaction): Knex.QueryBuilder {
    return q('users as u').select(
      'u.*',
      q.raw(`(SELECT count(*)::int FROM devices d WHERE d.user_id = u.id AND d.status IN ('enrolled', 'pending')) AS device_count`),
      q.raw('(SELECT count(*)::int FROM devices d WHERE d.enrolled_by = u.id) AS dem_device_count'),
    );
  }

  /** Serialises promotions (the lock lasts until the transaction ends) and refuses one past the cap. */
  async #requireDemRoom(trx: Knex.Transaction, exceptId: string | null): Promise<void> {
    await trx.raw('SELECT pg_advisory_xact_lock(?)', [DEM_LOCK_KEY]);
    const q = trx('users').where('is_dem', true).count<{ n: string | number }[]>('* as n');
    if (exceptId) q.whereNot('id', exceptId);
    const [{ n }] = (await q) as [{ n: string | number }];
    if (Number(n) >= MAX_DEMS) {
      throw Errors.of('dem_limit_reached', `there are already ${MAX_DEMS} device enrollment managers, the most allowed; remove one first`);
    }
  }

  // ---- device categories ----------------------------------------------------------------------------

  async createCategory(input: CategoryInput, event: EventInput): Promise<DeviceCategory> {
    try {
      return await this.db.transaction(async (trx) => {
        const [row] = await trx('device_categories').insert({ name: input.name, description: input.description ?? null }).returning('*');
        await trx('events').insert(eventRow({ ...event, data: { category_id: row.id, name: row.name } }));
        return { ...row, device_count: 0 } as DeviceCategory;
      });
    } catch (err) {
      if (isUniqueViolation(err, 'device_categories_name')) throw Errors.of('category_exists', `a category named "${input.name}" already exists`);
      throw err;
    }
  }

  /** All categories, by name. */
  async listCategories(): Promise<DeviceCategory[]> {
    return this.#categoryQuery(this.db).orderByRaw('lower(c.name), c.id');
  }

  async getCategory(id: string): Promise<DeviceCategory | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.#categoryQuery(this.db).where('c.id', id).first();
  }

  /** Renames and/or re-describes a category; a rename shows on its devices at once. */
  async updateCategory(id: string, input: CategoryChange, event: EventInput): Promise<DeviceCategory | undefined> {
    if (!UUID.test(id)) return undefined;
    try {
      return await this.db.transaction(async (trx) => {
        const before = await trx('device_categories').where({ id }).forUpdate().first('name');
        if (!before) return undefined;
        await trx('device_categories')
          .where({ id })
          .update({ ...defined(input, ['name', 'description']), updated_at: trx.fn.now() });
        let renamed = 0;
        if (input.name !== undefined && input.name !== before.name) {
          renamed = await trx('devices').where({ category_id: id }).update({ category: input.name, updated_at: trx.fn.now() });
        }
        const data: Record<string, Json> = { category_id: id, name: input.name ?? before.name };
        if (input.name !== undefined && input.name !== before.name) Object.assign(data, { previous_name: before.name, devices_renamed: renamed });
        await trx('events').insert(eventRow({ ...event, data }));
        return (await this.#categoryQuery(trx).where('c.id', id).first()) as DeviceCategory;
      });
    } catch (err) {
      if (isUniqueViolation(err, 'device_categories_name')) throw Errors.of('category_exists', `a category named "${input.name}" already exists`);
      throw err;
    }
  }

  /** Deletes a category; its devices stay, unassigned (the foreign key clears category_id). */
  async deleteCategory(id: string, event: EventInput): Promise<boolean> {
    if (!UUID.test(id)) return false;
    return this.db.transaction(async (trx) => {
      const row = await trx('device_categories').where({ id }).forUpdate().first('name');
      if (!row) return false;
      const unassigned = await trx('devices').where({ category_id: id }).update({ category: null, updated_at: trx.fn.now() });
      await trx('device_categories').where({ id }).del();
      await trx('events').insert(eventRow({ ...event, data: { category_id: id, name: row.name, devices_unassigned: unassigned } }));
      return true;
    });
  }

  #categoryQuery(q: Knex | Knex.Transaction): Knex.QueryBuilder {
    return q('device_categories as c').select('c.*', q.raw('(SELECT count(*)::int FROM devices d WHERE d.category_id = c.id) AS device_count'));
  }

  // ---- an admin's change to a device ----------------------------------------------------------------

  /**
   * Sets a device's category (null: unassigned) and/or ownership (recorded as the admin's choice), with
   * one event for each that changed. Throws device_not_found or category_not_found.
   */
  async updateDevice(id: string, change: DeviceChange, actor: string | null): Promise<Device> {
    if (!UUID.test(id)) throw Errors.deviceNotFound(id);
    return this.db.transaction(async (trx) => {
      const before = await trx<Device>('devices').where({ id }).forUpdate().first('id', 'category_id', 'category', 'ownership', 'ownership_source');
      if (!before) throw Errors.deviceNotFound(id);
      const update: Record<string, unknown> = {};
      const events: EventInput[] = [];
      if (change.category_id !== undefined) {
        let category: { id: string; name: string } | null = null;
        if (change.category_id !== null) {
          // FOR SHARE: a rename or delete of the category waits until this device carries its name.
          category = UUID.test(change.category_id) ? ((await trx('device_categories').where({ id: change.category_id }).forShare().first('id', 'name')) ?? null) : null;
          if (!category) throw Errors.of('category_not_found', `no device category with id ${change.category_id}`);
        }
        Object.assign(update, { category_id: category?.id ?? null, category: category?.name ?? null });
        if ((before.category_id ?? null) !== (category?.id ?? null)) {
          events.push({
            type: 'device.category_changed',
            device_id: id,
            actor,
            data: { from: { id: before.category_id ?? null, name: before.category }, to: { id: category?.id ?? null, name: category?.name ?? null } },
          });
        }
      }
      if (change.ownership !== undefined) {
        Object.assign(update, { ownership: change.ownership, ownership_source: 'admin' });
        if (before.ownership !== change.ownership || before.ownership_source !== 'admin') {
          events.push({
            type: 'device.ownership_changed',
            device_id: id,
            actor,
            data: { from: before.ownership, to: change.ownership, previous_source: before.ownership_source ?? null, source: 'admin' },
          });
        }
      }
      const [row] = await trx('devices')
        .where({ id })
        .update({ ...update, updated_at: trx.fn.now() })
        .returning('*');
      if (events.length) await trx('events').insert(events.map(eventRow));
      return row as Device;
    });
  }

  // ---- terms ----------------------------------------------------------------------------------------

  /** Creates terms at version 1, with the snapshot of that version. */
  async createTerms(input: TermsInput, event: EventInput): Promise<Terms> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx('terms')
        .insert({ ...defined(input, TERMS_COLUMNS), assign_groups: uniqueGroups(input.assign_groups) ?? [], version: 1 })
        .returning('*');
      await trx('terms_versions').insert({ terms_id: row.id, version: 1, title: row.title, summary: row.summary, text: row.text });
      await trx('events').insert(eventRow({ ...event, data: { terms_id: row.id, name: row.name, version: 1 } }));
      return row as Terms;
    });
  }

  async getTerms(id: string): Promise<Terms | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db<Terms>('terms').where({ id }).first();
  }

  /** All terms, by name. */
  async listTerms(): Promise<Terms[]> {
    return this.db<Terms>('terms').orderByRaw('lower(name), id');
  }

  /**
   * Changes the fields given. With `require_reacceptance` the version goes up and a new snapshot is
   * kept, so everyone assigned has to accept again; without it (a typo fix) the version stays and its
   * snapshot is corrected in place, so `terms_versions` always holds the current text.
   */
  async updateTerms(id: string, input: TermsChange, event: EventInput): Promise<Terms | undefined> {
    if (!UUID.test(id)) return undefined;
    const bump = input.require_reacceptance === true;
    return this.db.transaction(async (trx) => {
      const groups = uniqueGroups(input.assign_groups);
      const [row] = (await trx('terms')
        .where({ id })
        .update({
          ...defined(input, TERMS_COLUMNS),
          ...(groups !== undefined ? { assign_groups: groups } : {}),
          ...(bump ? { version: trx.raw('version + 1') } : {}),
          updated_at: trx.fn.now(),
        })
        .returning('*')) as Terms[];
      if (!row) return undefined;
      if (bump || input.title !== undefined || input.summary !== undefined || input.text !== undefined) {
        const snapshot = { title: row.title, summary: row.summary, text: row.text };
        await trx('terms_versions').insert({ terms_id: id, version: row.version, ...snapshot }).onConflict(['terms_id', 'version']).merge(snapshot);
      }
      const changed = Object.keys(input).filter((k) => k !== 'require_reacceptance' && input[k as keyof TermsChange] !== undefined);
      await trx('events').insert(eventRow({ ...event, data: { terms_id: id, version: row.version, reacceptance_required: bump, changed } }));
      return row;
    });
  }

  /** Deletes terms with their versions and acceptances. */
  async deleteTerms(id: string, event: EventInput): Promise<boolean> {
    if (!UUID.test(id)) return false;
    return this.db.transaction(async (trx) => {
      const [row] = await trx('terms').where({ id }).del().returning(['id', 'name', 'version']);
      if (!row) return false;
      await trx('events').insert(eventRow({ ...event, data: { terms_id: id, name: row.name, version: row.version } }));
      return true;
    });
  }

  /**
   * Who the terms are assigned to (all users, or those in one of its groups), plus anyone who ever
   * accepted them, each with the highest version they accepted; by email. Undefined for unknown terms.
   */
  async acceptanceReport(id: string): Promise<AcceptanceReport | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db.transaction(
      async (trx) => {
        const terms = await trx('terms').where({ id }).first('id', 'version');
        if (!terms) return undefined;
        const { rows } = (await trx.raw(
          `WITH best AS (
             SELECT DISTINCT ON (user_id) user_id, version, accepted_at
               FROM terms_acceptances WHERE terms_id = :id
              ORDER BY user_id, version DESC, accepted_at DESC)
           SELECT u.id AS user_id, u.email, u.name, u.upn,
                  b.version AS accepted_version, b.accepted_at,
                  coalesce(b.version = t.version, false) AS accepted_latest
             FROM terms t
             CROSS JOIN users u
             LEFT JOIN best b ON b.user_id = u.id
            WHERE t.id = :id AND (t.assign_all_users OR u.groups && t.assign_groups OR b.user_id IS NOT NULL)
            ORDER BY u.email`,
          { id },
        )) as { rows: AcceptanceRow[] };
        return { terms_id: terms.id as string, version: terms.version as number, items: rows };
      },
      { isolationLevel: 'repeatable read', readOnly: true },
    );
  }
}
