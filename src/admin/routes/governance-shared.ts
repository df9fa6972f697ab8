/**
 * What the enrollment-governance route modules share: date-time fields, the true/false query flag, and
 * the one ImportProblem schema and import_invalid error both CSV imports (corporate identifiers,
 * pre-approved devices) report a rejected file with.
 */
import { z } from '../zod';
import type { ImportProblem } from '../../core/csv';
import { Errors } from '../../core/errors';

export const iso = z.string().openapi({ format: 'date-time' });
export const isoOrNull = (d: Date | null) => d?.toISOString() ?? null;
export const flag = z.enum(['true', 'false']).transform((v) => v === 'true');

export const ProblemItem = z.object({ row: z.number().int().nullable(), code: z.string(), detail: z.string() }).openapi('ImportProblem');

/** A file with any error imports nothing; every problem is reported at once. */
export function importInvalid(errors: ImportProblem[], warnings: ImportProblem[]) {
  const n = errors.length;
  return Errors.of('import_invalid', `the file has ${n} problem${n === 1 ? '' : 's'}; nothing was imported. Fix ${n === 1 ? 'it' : 'them'} and upload the file again`, { errors, warnings });
}
