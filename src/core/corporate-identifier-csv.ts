/**
 * The corporate identifier import, in Intune's format: two columns and no header row, the identifier
 * on the left and optional details on the right, one identifier type per file (chosen at upload, never
 * guessed from the values: a 15-digit serial number is still a serial number). A device that enrolls
 * with a listed IMEI or serial number is marked corporate.
 *
 * Every row is checked and every problem reported, so an admin fixes a file in one pass; a file with
 * any error imports nothing.
 */
import { type CsvRow, type ImportProblem, readImportFile, rowLimitProblem, shown } from './csv';

export type { ImportProblem } from './csv';

export const CORPORATE_ID_MAX_ROWS = 5000;
export const CORPORATE_ID_MAX_BYTES = 5 * 1024 * 1024;
export const CORPORATE_ID_DETAILS_MAX = 128;
const SERIAL_MAX = 64;

export type CorporateIdentifierType = 'imei' | 'serial';

export interface CorporateIdentifierEntry {
  row: number;
  identifier: string;
  details: string | null;
}

export interface CorporateIdentifierParse {
  entries: CorporateIdentifierEntry[];
  errors: ImportProblem[];
  warnings: ImportProblem[];
}

export function parseCorporateIdentifierCsv(bytes: Buffer, type: CorporateIdentifierType): CorporateIdentifierParse {
  const out: CorporateIdentifierParse = { entries: [], errors: [], warnings: [] };
  const file = readImportFile(bytes, CORPORATE_ID_MAX_BYTES);
  if ('error' in file) return { ...out, errors: [file.error] };
  const tooMany = rowLimitProblem(file.rows.length, CORPORATE_ID_MAX_ROWS);
  if (tooMany) return { ...out, errors: [tooMany] };

  const firsts = new Map<string, CorporateIdentifierEntry>();
  file.rows.forEach((record, i) => {
    if (i === 0 && isHeader(record)) {
      out.errors.push(headerProblem(record));
      return;
    }
    const { entry, problems } = readRecord(record, type);
    out.errors.push(...problems);
    if (!entry) return;
    const first = firsts.get(entry.identifier);
    if (!first) {
      firsts.set(entry.identifier, entry);
      out.entries.push(entry);
    } else if (first.details !== entry.details) {
      // Intune: "for each identifier, only the first duplicate will be compared".
      out.warnings.push({
        row: entry.row,
        code: 'duplicate_in_file',
        detail: `${shown(entry.identifier)} is also on line ${first.row} with other details; line ${first.row} is the one imported and this line is ignored.`,
      });
    }
  });
  return out;
}

/** The digits of an IMEI (14 digits, or 15 with the check digit) without surrounding whitespace; undefined for anything else. */
export function normalizeImei(raw: string): string | undefined {
  const value = raw.trim();
  return /^\d{14,15}$/.test(value) ? value : undefined;
}

/** A serial number as Intune takes it: 1 to 64 letters, digits, `-` and `_`; a dot gets its own refusal because Intune fails whole uploads on it. */
export function checkSerial(raw: string): { ok: true; value: string } | { ok: false; code: 'serial_has_dot' | 'invalid_serial'; detail: string } {
  const value = raw.trim();
  if (value.includes('.')) {
    return { ok: false, code: 'serial_has_dot', detail: `Serial number ${shown(value)} contains a dot; Intune refuses serial numbers with dots, so it cannot be a corporate identifier.` };
  }
  const why = serialFault(value);
  return why ? { ok: false, code: 'invalid_serial', detail: `Serial number ${shown(value)} ${why}.` } : { ok: true, value };
}

function serialFault(value: string): string | undefined {
  if (value === '') return 'is empty';
  if ([...value].length > SERIAL_MAX) return `is ${[...value].length} characters long; the limit is ${SERIAL_MAX}`;
  const bad = value.match(/[^A-Za-z0-9_-]/u)?.[0];
  if (bad === undefined) return undefined;
  const what = /\s/.test(bad) ? 'a space' : `"${bad}"`;
  return `contains ${what}; serial numbers are letters, digits, - and _ only${semicolonHint(value)}`;
}

function readRecord({ line, fields }: CsvRow, type: CorporateIdentifierType): { entry?: CorporateIdentifierEntry; problems: ImportProblem[] } {
  const problems: ImportProblem[] = [];
  const problem = (code: string, detail: string) => problems.push({ row: line, code, detail });

  const used = lastNonEmpty(fields) + 1;
  if (used > 2) {
    problem('too_many_columns', `Line has ${used} values; the file takes two columns, the identifier then its details. Put details that contain a comma in double quotes.`);
  }
  const raw = (fields[0] ?? '').trim();
  let identifier: string | undefined;
  if (raw === '') {
    problem('missing_identifier', 'The identifier (left column) is empty.');
  } else if (type === 'imei') {
    identifier = normalizeImei(raw);
    if (!identifier) problem('not_an_imei', imeiFault(raw));
  } else {
    const serial = checkSerial(raw);
    if (serial.ok) identifier = serial.value;
    else problem(serial.code, serial.detail);
  }
  const details = (fields[1] ?? '').trim();
  const length = [...details].length;
  if (length > CORPORATE_ID_DETAILS_MAX) {
    problem('details_too_long', `Details are ${length} characters long; the limit is ${CORPORATE_ID_DETAILS_MAX}: ${shown(details)}.`);
  }
  if (problems.length > 0 || identifier === undefined) return { problems };
  return { entry: { row: line, identifier, details: details === '' ? null : details }, problems };
}

/** Why a value in an IMEI file is not an IMEI, with the fix for the usual spreadsheet accidents. */
function imeiFault(raw: string): string {
  const start = `${shown(raw)} is not an IMEI: an IMEI is 14 or 15 digits and nothing else`;
  if (/^\d(\.\d+)?E\+?\d+$/i.test(raw)) return `${start}. A spreadsheet turned it into a number in scientific notation; format the column as Text, re-enter the IMEIs and save again.`;
  const digits = raw.replace(/\D/g, '').length;
  if (/^[\d\s-]+$/.test(raw) && (digits === 14 || digits === 15)) return `${start}; remove the spaces and dashes.`;
  if (/^\d+$/.test(raw)) return `${start}; this has ${digits} digits.`;
  return `${start}. This file was uploaded as an IMEI file; upload serial numbers as a serial number file${semicolonHint(raw)}.`;
}

function semicolonHint(value: string): string {
  return value.includes(';') ? ' (if the file is separated by semicolons, save it as "CSV UTF-8 (Comma delimited)")' : '';
}

function lastNonEmpty(fields: string[]): number {
  for (let i = fields.length - 1; i >= 0; i--) if (fields[i].trim() !== '') return i;
  return -1;
}

// Column titles admins put on top of a file that takes none: "IMEI", "Serial Number", "Device serial no.", ...
const HEADER_WORD = /^(device|corporate|hardware)?(imei|meid|serial|identifier|id|sn)(s|number|numbers|no|1|2)?$/;

/**
 * A title row. Checked even when the word would pass as a serial number ("Serial", "IMEI"): no real
 * device has those serial numbers, and importing one would hide the mistake.
 */
function isHeader({ fields }: CsvRow): boolean {
  return HEADER_WORD.test((fields[0] ?? '').toLowerCase().replace(/[\s_.#:-]/g, ''));
}

function headerProblem({ line, fields }: CsvRow): ImportProblem {
  return {
    row: line,
    code: 'header_not_allowed',
    detail: `The first row looks like column titles (${shown((fields[0] ?? '').trim())}); this file has no header row: delete it and start with the first identifier.`,
  };
}
