/**
 * The enrollment reports: refused enrollments, incomplete enrollments, stale devices. Each pages as
 * JSON, or downloads every matching row (up to MAX_CSV_REPORT_ROWS) as CSV.
 */
import { z } from '../zod';
import { toCsv, type CsvValue } from '../../core/csv';
import { REFUSAL_REASONS } from '../../core/enrollment-policy';
import { MAX_PAGE_SIZE, mapPage, type Page } from '../../core/pagination';
import { PLATFORMS } from '../../core/types';
import type { FailureItem, IncompleteEnrollment, PgReportStore, StaleDevice } from '../../storage/reports';
import type { AdminRoutes, Reply } from '../route';
import { PageQuery, pageOf } from '../schemas';
import { iso, isoOrNull } from './governance-shared';
import type { Request } from 'express';

/** The most rows a CSV report download holds (JSON reports page instead). */
export const MAX_CSV_REPORT_ROWS = 100_000;

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
/** What both device reports show of a device. */
const ReportedDevice = z.object({
  id: z.uuid(),
  platform: z.string(),
  name: z.string().nullable(),
  serial_number: z.string().nullable(),
  user: z.string().nullable(),
});
const IncompleteSchema = ReportedDevice.extend({ created_at: iso, minutes_pending: z.number().int() }).openapi('IncompleteEnrollment');

const StaleQuery = PageQuery.extend({
  days: z.coerce.number().int().min(1).max(3650).default(30),
}).extend(ReportFormat.shape);
const STALE_COLUMNS = ['id', 'platform', 'name', 'serial_number', 'user', 'last_seen_at', 'days_since_seen'] as const;
const StaleSchema = ReportedDevice.extend({
  last_seen_at: iso.nullable(),
  days_since_seen: z.number().int().nullable().openapi({ description: 'null if the device never checked in after enrolling' }),
}).openapi('StaleDevice');

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

export function reportRoutes(routes: AdminRoutes, deps: { reports: PgReportStore }): void {
  const { reports } = deps;

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
        const rows = await allRows(async (c) => (await reports.enrollmentFailures(filter, { limit: MAX_PAGE_SIZE, cursor: c })).page);
        return csvReply('enrollment-failures', FAILURE_COLUMNS, rows.map(failureJson));
      }
      const { summary, page } = await reports.enrollmentFailures(filter, { limit, cursor });
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
        const rows = await allRows((c) => reports.incompleteEnrollments(older_than_minutes, { limit: MAX_PAGE_SIZE, cursor: c }));
        return csvReply('incomplete-enrollments', INCOMPLETE_COLUMNS, rows.map(incompleteJson));
      }
      return { status: 200, body: mapPage(await reports.incompleteEnrollments(older_than_minutes, { limit, cursor }), incompleteJson) };
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
        const rows = await allRows((c) => reports.staleDevices(days, { limit: MAX_PAGE_SIZE, cursor: c }));
        return csvReply('stale-devices', STALE_COLUMNS, rows.map(staleJson));
      }
      return { status: 200, body: mapPage(await reports.staleDevices(days, { limit, cursor }), staleJson) };
    },
  });
}
