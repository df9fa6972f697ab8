/**
 * Corporate identifiers: IMEIs and serial numbers that make a device corporate when it enrolls with one.
 *
 * The import takes the CSV file itself as the body (`Content-Type: text/csv`); a file with any error
 * imports nothing and every problem is reported at once (422 import_invalid, with `errors`).
 */
import { z } from '../zod';
import { parseCorporateIdentifierCsv, checkSerial, normalizeImei, CORPORATE_ID_DETAILS_MAX, type CorporateIdentifierType } from '../../core/corporate-identifier-csv';
import { Errors } from '../../core/errors';
import { mapPage } from '../../core/pagination';
import type { CorporateIdentifierRecord, PgCorporateIdentifierStore } from '../../storage/corporate-identifiers';
import { actorOf } from '../auth';
import type { AdminRoutes } from '../route';
import { IdParams, PageQuery, pageOf } from '../schemas';
import { flag, importInvalid, iso, isoOrNull, ProblemItem } from './governance-shared';

const IDENTIFIER_TYPES = ['imei', 'serial'] as const;

const CorporateIdentifierSchema = z
  .object({
    id: z.uuid(),
    type: z.enum(IDENTIFIER_TYPES),
    identifier: z.string(),
    details: z.string().nullable(),
    status: z.enum(['enrolled', 'not_contacted']).openapi({ description: 'enrolled once a device enrolled with it' }),
    device_id: z.uuid().nullable(),
    enrolled_at: iso.nullable(),
    created_at: iso,
  })
  .openapi('CorporateIdentifier');

const CorporateIdentifierRequest = z
  .strictObject({
    type: z.enum(IDENTIFIER_TYPES),
    identifier: z.string().max(200).openapi({ description: 'an IMEI (14 or 15 digits) or a serial number (letters, digits, - and _, no dots)' }),
    details: z.string().trim().max(CORPORATE_ID_DETAILS_MAX).nullable().optional(),
  })
  .openapi('CorporateIdentifierRequest');

const CorporateListQuery = PageQuery.extend({
  type: z.enum(IDENTIFIER_TYPES).optional(),
  q: z.string().min(1).max(200).optional().openapi({ description: 'matches the identifier or its details' }),
  status: z.enum(['enrolled', 'not_contacted']).optional(),
});

const CorporateImportQuery = z.object({
  type: z.enum(IDENTIFIER_TYPES).openapi({ description: 'what the left column holds; never guessed from the values' }),
  overwrite: z
    .union([z.string().max(200_000), z.array(z.string().max(200)).max(5000)])
    .optional()
    .openapi({ description: '`all`, or comma-separated identifiers to overwrite; the other duplicates are skipped. Without it, duplicates stop the import (409 import_needs_review)' }),
  dry_run: flag.optional(),
});

const CorporateImportReportSchema = z
  .object({
    type: z.enum(IDENTIFIER_TYPES),
    imported: z.number().int().openapi({ description: 'new identifiers' }),
    overwritten: z.number().int().openapi({ description: 'listed identifiers whose details were replaced' }),
    unchanged: z.number().int().openapi({ description: 'listed identifiers with the same details' }),
    skipped: z.number().int().openapi({ description: 'listed identifiers with other details, not chosen for overwrite' }),
    dry_run: z.boolean(),
    warnings: z.array(ProblemItem),
  })
  .openapi('CorporateIdentifierImportReport');

function corporateJson(c: CorporateIdentifierRecord): z.input<typeof CorporateIdentifierSchema> {
  return {
    id: c.id,
    type: c.type,
    identifier: c.identifier,
    details: c.details,
    status: c.status,
    device_id: c.device_id,
    enrolled_at: isoOrNull(c.enrolled_at),
    created_at: c.created_at.toISOString(),
  };
}

/** The identifier as an import would store it, or a 400 naming what is wrong. */
function checkIdentifier(type: CorporateIdentifierType, raw: string): string {
  if (type === 'imei') {
    const imei = normalizeImei(raw);
    if (imei) return imei;
    throw Errors.validation(`"${raw}" is not an IMEI: 14 or 15 digits`, { errors: [{ path: 'body.identifier', message: 'an IMEI is 14 or 15 digits' }] });
  }
  const serial = checkSerial(raw);
  if (serial.ok) return serial.value;
  throw Errors.validation(serial.detail, { errors: [{ path: 'body.identifier', message: serial.detail, code: serial.code }] });
}

function overwriteList(raw: string | string[] | undefined): 'all' | string[] | undefined {
  if (raw === undefined) return undefined;
  const parts = (Array.isArray(raw) ? raw : [raw]).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  return parts.length === 1 && parts[0]!.toLowerCase() === 'all' ? 'all' : parts;
}

// ---- routes -------------------------------------------------------------------------------------------

export function corporateIdentifierRoutes(routes: AdminRoutes, deps: { corporateIdentifiers: PgCorporateIdentifierStore }): void {
  const { corporateIdentifiers } = deps;

  routes.add({
    method: 'get',
    path: '/corporate-identifiers',
    summary: 'List corporate identifiers (IMEIs and serial numbers that mark a device corporate), newest first',
    scope: 'enrollment:read',
    query: CorporateListQuery,
    responses: { 200: { description: 'a page of corporate identifiers', schema: pageOf(CorporateIdentifierSchema, 'CorporateIdentifierPage') } },
    async handle({ query: { limit, cursor, ...filter } }) {
      return { status: 200, body: mapPage(await corporateIdentifiers.listCorporateIdentifiers(filter, { limit, cursor }), corporateJson) };
    },
  });

  routes.add({
    method: 'post',
    path: '/corporate-identifiers',
    summary: 'Add one corporate identifier',
    scope: 'enrollment:write',
    body: CorporateIdentifierRequest,
    responses: { 201: { description: 'the identifier', schema: CorporateIdentifierSchema }, 409: { description: 'corporate_identifier_exists' } },
    async handle({ body, req }) {
      const identifier = checkIdentifier(body.type, body.identifier);
      const details = body.details ? body.details : null;
      const created = await corporateIdentifiers.addCorporateIdentifier({ type: body.type, identifier, details }, { type: 'corporate_identifier.created', actor: actorOf(req) });
      return { status: 201, body: corporateJson(created) };
    },
  });

  routes.add({
    method: 'post',
    path: '/corporate-identifiers/import',
    summary:
      'Import corporate identifiers from a CSV file (Intune format: no header; identifier, then optional details; at most 5,000 rows). ' +
      'A file with errors imports nothing (422 import_invalid with `errors`). Identifiers already listed with other details stop the import ' +
      '(409 import_needs_review with `duplicates`) unless `overwrite` says which to overwrite (the rest are skipped)',
    scope: 'enrollment:write',
    csv: true,
    query: CorporateImportQuery,
    responses: {
      200: { description: 'what was (or, with dry_run, would be) imported', schema: CorporateImportReportSchema },
      409: { description: 'import_needs_review: `duplicates` lists { identifier, row, existing_details, new_details }' },
      415: { description: 'unsupported_media_type: send the file as text/csv' },
      422: { description: 'import_invalid: `errors` and `warnings` list { row, code, detail }' },
    },
    async handle({ query, csv, req }) {
      const parsed = parseCorporateIdentifierCsv(csv, query.type);
      if (parsed.errors.length) throw importInvalid(parsed.errors, parsed.warnings);
      const outcome = await corporateIdentifiers.importCorporateIdentifiers(
        query.type,
        parsed.entries,
        { overwrite: overwriteList(query.overwrite), dryRun: query.dry_run ?? false },
        { type: 'corporate_identifiers.imported', actor: actorOf(req) },
      );
      if ('needsReview' in outcome) {
        const n = outcome.needsReview.length;
        throw Errors.of(
          'import_needs_review',
          `${n} identifier${n === 1 ? ' is' : 's are'} already listed with other details; nothing was imported. Send the file again with overwrite=all, or overwrite= the identifiers to overwrite (the others are skipped)`,
          { duplicates: outcome.needsReview, warnings: parsed.warnings },
        );
      }
      return { status: 200, body: { ...outcome.report, warnings: parsed.warnings } };
    },
  });

  routes.add({
    method: 'delete',
    path: '/corporate-identifiers/{id}',
    summary: 'Delete a corporate identifier; a device that enrolled with it keeps its ownership',
    scope: 'enrollment:write',
    params: IdParams,
    responses: { 204: { description: 'deleted' }, 404: { description: 'corporate_identifier_not_found' } },
    async handle({ params, req }) {
      if (!(await corporateIdentifiers.deleteCorporateIdentifier(params.id, { type: 'corporate_identifier.deleted', actor: actorOf(req) }))) {
        throw Errors.of('corporate_identifier_not_found', `no corporate identifier with id ${params.id}`);
      }
      return { status: 204 };
    },
  });
}
