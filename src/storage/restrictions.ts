/**
 * Enrollment restrictions (ordered by priority per kind, the default of each kind last) and the
 * deployment-wide enrollment settings, for the admin API. The enrollment gate (./enrollment-gate.ts)
 * reads these tables when a device enrolls; nothing here runs at enrollment.
 *
 * Every write and its event share one transaction; re-ordering locks the kind, so priorities stay 1..n.
 */
import { MAX_RESTRICTIONS_PER_KIND, type DeviceLimitSettings, type PlatformRestrictionSettings, type RestrictionKind } from '../core/enrollment-policy';
import { Errors } from '../core/errors';
import type { EventInput } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { UUID } from '../core/ids';

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

const RESTRICTION_COLUMNS = ['id', 'kind', 'name', 'description', 'is_default', 'priority', 'assign_all_users', 'assign_groups', 'assign_users', 'settings', 'created_at', 'updated_at'];

const uniq = <T>(values: T[]): T[] => [...new Set(values)];

export class PgRestrictionStore {
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
