/** Policies, and which enrollments they reach when they change. */
import type { Page, PageRequest } from '../core/pagination';
import type { Policy, PolicySettings } from '../core/policies';
import type { EventInput } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { newestFirst } from './paging';
import { UUID } from '../core/ids';


export class PgPolicyStore {
  constructor(private readonly db: Db) {}

  async create(input: { name: string; settings: PolicySettings }, event: EventInput): Promise<Policy> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx('policies').insert({ name: input.name, settings: JSON.stringify(input.settings) }).returning('*');
      await trx('events').insert(eventRow({ ...event, data: { policy_id: row.id } }));
      return row as Policy;
    });
  }

  async get(id: string): Promise<Policy | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db<Policy>('policies').where({ id }).first();
  }

  list(page: PageRequest): Promise<Page<Policy>> {
    return newestFirst<Policy>(this.db('policies'), page);
  }

  /** Replaces name and/or settings and bumps the version, in one statement with its event. */
  async update(id: string, input: { name?: string; settings?: PolicySettings }, event: EventInput): Promise<Policy | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db.transaction(async (trx) => {
      const [row] = await trx('policies')
        .where({ id })
        .update({
          ...(input.name !== undefined ? { name: input.name } : {}),
          ...(input.settings !== undefined ? { settings: JSON.stringify(input.settings) } : {}),
          version: trx.raw('version + 1'),
          updated_at: trx.fn.now(),
        })
        .returning('*');
      if (!row) return undefined;
      await trx('events').insert(eventRow({ ...event, data: { policy_id: id, version: row.version } }));
      return row as Policy;
    });
  }

  /** Deletes a policy no device or live token uses; answers which is in the way otherwise. */
  async delete(id: string, event: EventInput): Promise<'deleted' | 'not_found' | 'in_use'> {
    if (!UUID.test(id)) return 'not_found';
    return this.db.transaction(async (trx) => {
      const used =
        (await trx('devices').where({ policy_id: id }).whereNot('status', 'unenrolled').first('id')) ??
        (await trx('enrollment_tokens').where({ policy_id: id }).whereNull('revoked_at').first('id'));
      if (used) return 'in_use';
      const n = await trx('policies').where({ id }).del();
      if (!n) return 'not_found';
      await trx('events').insert(eventRow({ ...event, data: { policy_id: id } }));
      return 'deleted';
    });
  }

  /** Live enrollments of devices on a policy, in pages, for the push after a change. */
  async enrollmentsOn(policyId: string, afterId: string | null, limit: number): Promise<string[]> {
    const q = this.db('enrollments as e')
      .join('devices as d', 'd.id', 'e.device_id')
      .where('d.policy_id', policyId)
      .where('e.status', 'enrolled')
      .orderBy('e.id')
      .limit(limit)
      .pluck('e.id');
    if (afterId) q.where('e.id', '>', afterId);
    return q;
  }
}
