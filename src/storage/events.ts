/** The events table: the audit trail the admin API lists, and the outbox webhooks are relayed from. */
import type { Page, PageRequest } from '../core/pagination';
import type { EventInput, MooringEvent } from '../core/types';
import type { Db } from './db';
import { byNumberDesc } from './paging';

export function eventRow(e: EventInput): Record<string, unknown> {
  return {
    type: e.type,
    device_id: e.device_id ?? null,
    command_id: e.command_id ?? null,
    actor: e.actor ?? null,
    data: JSON.stringify(e.data ?? {}),
  };
}

export interface EventFilter {
  device_id?: string;
  type?: string;
}

export class PgEventStore {
  constructor(private readonly db: Db) {}

  /** Newest first. */
  async list(filter: EventFilter, page: PageRequest): Promise<Page<MooringEvent>> {
    const q = this.db('events').select('id', 'type', 'device_id', 'command_id', 'actor', 'data', 'created_at');
    if (filter.device_id) q.where('device_id', filter.device_id);
    if (filter.type) q.where('type', filter.type);
    return byNumberDesc<MooringEvent>(q, 'id', page, (e) => e.id);
  }

  /**
   * Claims up to `limit` unrelayed events in id order and hands them to `publish` inside the claiming
   * transaction: they are marked published only if `publish` succeeds, and SKIP LOCKED lets several
   * workers relay side by side without sending one event twice.
   */
  async relay(limit: number, publish: (events: MooringEvent[]) => Promise<void>): Promise<number> {
    return this.db.transaction(async (trx) => {
      const rows = await trx<MooringEvent>('events')
        .select('id', 'type', 'device_id', 'command_id', 'actor', 'data', 'created_at')
        .whereNull('published_at')
        .orderBy('id')
        .limit(limit)
        .forUpdate()
        .skipLocked();
      if (rows.length === 0) return 0;
      await publish(rows);
      await trx('events').whereIn('id', rows.map((r) => r.id)).update({ published_at: trx.fn.now() });
      return rows.length;
    });
  }
}
