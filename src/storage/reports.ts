/**
 * The enrollment reports, for the admin API: refused enrollments (with a count per reason), devices
 * stuck in `pending`, and enrolled devices that stopped checking in. Read-only.
 */
import { decodeCursor, toPage, type Page, type PageRequest } from '../core/pagination';
import type { Platform } from '../core/types';
import type { Db } from './db';
import { newestFirst } from './paging';

// ---- shapes -------------------------------------------------------------------------------------------

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

/** The device columns both device reports show. */
const REPORTED_DEVICE = ['id', 'platform', 'name', 'serial_number', 'user_ref as user'];

export class PgReportStore {
  constructor(readonly db: Db) {}

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
      .select(...REPORTED_DEVICE, 'created_at', this.db.raw('floor(extract(epoch FROM now() - created_at) / 60)::int AS minutes_pending'))
      .where('status', 'pending')
      .whereRaw(`created_at < now() - make_interval(mins => ?)`, [olderThanMinutes]);
    return newestFirst<IncompleteEnrollment>(this.db.select('*').from(inner.as('d')), page);
  }

  /** Enrolled devices that have not checked in for `days` days (or never), newest first. */
  staleDevices(days: number, page: PageRequest): Promise<Page<StaleDevice>> {
    const inner = this.db('devices')
      .select(...REPORTED_DEVICE, 'last_seen_at', this.db.raw('floor(extract(epoch FROM now() - last_seen_at) / 86400)::int AS days_since_seen'), 'created_at')
      .where('status', 'enrolled')
      .where((w) => w.whereNull('last_seen_at').orWhereRaw(`last_seen_at < now() - make_interval(days => ?)`, [days]));
    return newestFirst<StaleDevice>(this.db.select('*').from(inner.as('d')), page);
  }
}
