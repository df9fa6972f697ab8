/**
 * Corporate identifiers (IMEIs and serial numbers that mark a device corporate when it enrolls) and
 * their CSV imports, for the admin API. The enrollment gate (./enrollment-gate.ts) reads the table, and
 * marks the identifier a device enrolled with.
 *
 * Every write and its event share one transaction. An import writes with a few set-based statements
 * (`json_to_recordset`), never one statement per row, so a 5,000-row file takes well under a second.
 */
import type { CorporateIdentifierEntry, CorporateIdentifierType } from '../core/corporate-identifier-csv';
import { Errors } from '../core/errors';
import type { Page, PageRequest } from '../core/pagination';
import type { EventInput } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { UUID } from '../core/ids';
import { newestFirst } from './paging';

// ---- shapes -------------------------------------------------------------------------------------------

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

export class PgCorporateIdentifierStore {
  constructor(readonly db: Db) {}

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

/** `q` as an ILIKE substring pattern; its own %, _ and \\ match themselves. */
function likePattern(q: string): string {
  return `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}
