/** Devices and their enrollments (management channels). */
import type { SeqRange } from '../core/commands';
import type { Page, PageRequest } from '../core/pagination';
import { PUSH_CHANNEL_COLUMNS, type Device, type DeviceStatus, type Enrollment, type Platform, type PushChannel } from '../core/types';
import type { Db } from './db';
import { newestFirst } from './paging';
import { UUID } from '../core/ids';

/**
 * "Last seen" is kept to this many seconds, on every platform: a session's further requests (a report
 * per command, a second SyncML message) then write no row, and neither does a device that polls in a loop.
 */
export const SEEN_RESOLUTION_SECONDS = 30;

/** SQL: the "last seen" in `column` is due to be written again (never written, or older than its resolution). */
export function seenIsDue(column: string): string {
  return `(${column} IS NULL OR ${column} < now() - interval '${SEEN_RESOLUTION_SECONDS} seconds')`;
}

export interface DeviceFilter {
  platform?: Platform;
  status?: DeviceStatus;
  /** Free text: matches name, serial number, UDID, IMEI, hardware id, model or user (case-insensitive). */
  q?: string;
}

export class PgDeviceStore {
  constructor(private readonly db: Db) {}

  async get(id: string): Promise<Device | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db<Device>('devices').where({ id }).first();
  }

  /** Newest first, keyset-paginated on (created_at, id). */
  async list(filter: DeviceFilter, page: PageRequest): Promise<Page<Device>> {
    const q = this.db('devices');
    if (filter.platform) q.where('platform', filter.platform);
    if (filter.status) q.where('status', filter.status);
    if (filter.q) {
      const like = `%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      q.where((w) => {
        for (const col of ['name', 'serial_number', 'udid', 'imei', 'hardware_id', 'model', 'user_ref']) w.orWhereILike(col, like);
      });
    }
    return newestFirst<Device>(q, page);
  }

  /** Creates a device with one enrollment; used by the enrollment front ends (and tests). */
  async create(device: Partial<Device> & Pick<Device, 'platform'>, enrollment: Partial<Enrollment> & Pick<Enrollment, 'channel_key'>): Promise<{ device: Device; enrollment: Enrollment }> {
    return this.db.transaction(async (trx) => {
      const [d] = await trx<Device>('devices')
        .insert({ ...device, inventory: JSON.stringify(device.inventory ?? {}) as never })
        .returning('*');
      const [e] = await trx<Enrollment>('enrollments')
        .insert({ platform: device.platform, status: device.status === 'enrolled' ? 'enrolled' : 'pending', ...enrollment, device_id: d!.id })
        .returning('*');
      return { device: d as Device, enrollment: e as Enrollment };
    });
  }

  async getEnrollment(id: string): Promise<Enrollment | undefined> {
    if (!UUID.test(id)) return undefined;
    return this.db<Enrollment>('enrollments').where({ id }).first();
  }

  /** Marks a push token dead (APNs Unregistered, FCM UNREGISTERED) with an event, once. */
  async markPushTokenDead(enrollmentId: string, reason: string): Promise<boolean> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx<Enrollment>('enrollments')
        .where({ id: enrollmentId })
        .whereNull('push_token_dead_at')
        .update({ push_token_dead_at: trx.fn.now() as never, updated_at: trx.fn.now() as never })
        .returning(['id', 'device_id']);
      if (!row) return false;
      await trx('events').insert({ type: 'push.token_dead', device_id: row.device_id, data: JSON.stringify({ enrollment_id: enrollmentId, reason }) });
      return true;
    });
  }

  /**
   * A page of the push channels of a bulk batch (only those of commands in `range` when given), by
   * enrollment id after `afterId`: one statement, and only the columns a push reads.
   */
  async channelsOfBatch(batchId: string, afterId: string | null, limit: number, range?: SeqRange): Promise<PushChannel[]> {
    const ofBatch = this.db('commands').select('enrollment_id').where({ batch_id: batchId });
    if (range) ofBatch.whereBetween('seq', [range.first, range.last]);
    const q = this.db('enrollments').select([...PUSH_CHANNEL_COLUMNS]).whereIn('id', ofBatch).orderBy('id').limit(limit);
    if (afterId) q.where('id', '>', afterId);
    return (await q) as PushChannel[];
  }
}
