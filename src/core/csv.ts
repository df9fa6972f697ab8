/**
 * CSV for admin imports and report exports (RFC 4180). Imports come from Excel, Numbers and hand
 * edits, so reading is strict about encoding and quotes (a silent misread would import the wrong
 * devices) but lenient about line ends and blank lines. Writing guards against formula injection
 * because exports are opened in spreadsheets.
 */

export interface CsvFileError {
  code: 'wrong_encoding' | 'empty_file';
  detail: string;
}

export interface CsvRow {
  /** 1-based physical line the record starts on (a quoted value may span several lines). */
  line: number;
  fields: string[];
}

export interface CsvSyntaxError {
  code: 'malformed_csv';
  line: number;
  detail: string;
}

/** One problem found in an import file; `row` is the 1-based physical line, null for the whole file. */
export interface ImportProblem {
  row: number | null;
  code: string;
  detail: string;
}

export type CsvValue = string | number | boolean | null | undefined | Date;

// ---- decoding ---------------------------------------------------------------------------------------

const SAVE_AS_UTF8 = 'Save it as UTF-8 (in Excel: Save As > "CSV UTF-8 (Comma delimited)") and upload it again.';
const UTF8_BOM = [0xef, 0xbb, 0xbf];
/** Longest first: a UTF-32LE mark starts with the UTF-16LE one. */
const FOREIGN_BOMS: ReadonlyArray<[number[], string]> = [
  [[0x00, 0x00, 0xfe, 0xff], 'UTF-32'],
  [[0xff, 0xfe, 0x00, 0x00], 'UTF-32'],
  [[0xfe, 0xff], 'UTF-16'],
  [[0xff, 0xfe], 'UTF-16'],
];

/** UTF-8 text of an uploaded file, without its byte order mark; anything else is refused, never guessed. */
export function decodeCsvBytes(bytes: Buffer): { text: string } | { error: CsvFileError } {
  const foreign = FOREIGN_BOMS.find(([bom]) => startsWith(bytes, bom));
  if (foreign) return wrongEncoding(`The file is ${foreign[1]} text, not UTF-8. ${SAVE_AS_UTF8}`);
  // UTF-16 without a byte order mark is valid UTF-8 byte for byte, but full of NULs no CSV text has.
  if (bytes.includes(0)) return wrongEncoding(`The file contains NUL bytes, so it is not UTF-8 text (probably UTF-16). ${SAVE_AS_UTF8}`);
  const body = startsWith(bytes, UTF8_BOM) ? bytes.subarray(UTF8_BOM.length) : bytes;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
  } catch {
    return wrongEncoding(`Line ${firstBadLine(body)} has characters that are not UTF-8 (the file was probably saved as "CSV (Comma delimited)", a Windows code page). ${SAVE_AS_UTF8}`);
  }
  if (text.trim() === '') return { error: { code: 'empty_file', detail: 'The file is empty.' } };
  return { text };
}

function startsWith(bytes: Buffer, prefix: number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
}

function wrongEncoding(detail: string): { error: CsvFileError } {
  return { error: { code: 'wrong_encoding', detail } };
}

/** Where the first undecodable byte is, for the admin: the replacement decoder marks it with U+FFFD. */
function firstBadLine(bytes: Buffer): number {
  const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
  const at = text.indexOf('\uFFFD');
  return at < 0 ? 1 : lineBreaksIn(text.slice(0, at)) + 1;
}

function lineBreaksIn(text: string): number {
  return (text.match(/\r\n|\r|\n/g) ?? []).length;
}

// ---- parsing ----------------------------------------------------------------------------------------

/**
 * Records of an RFC 4180 file. Lines may end in CRLF, LF or a lone CR (old Mac exports); blank lines
 * outside quotes are skipped; fields are returned as written (not trimmed). Leniencies, each one that
 * cannot change what a correct file means: spaces before an opening quote and after a closing quote
 * are dropped, and a quote inside an unquoted value (`John "JJ" Smith`) is kept as a character.
 */
export function parseCsv(text: string): { rows: CsvRow[] } | { error: CsvSyntaxError } {
  const rows: CsvRow[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false; // the record has a quoted field, so it is not a blank line even if empty
  let line = 1;
  let recordLine = 1;
  let i = 0;

  const endRecord = () => {
    fields.push(field);
    if (quoted || fields.length > 1 || field.trim() !== '') rows.push({ line: recordLine, fields });
    fields = [];
    field = '';
    quoted = false;
  };

  while (i < text.length) {
    const c = text[i];
    if (c === '"' && (field === '' || /^[ \t]*$/.test(field))) {
      const openedOn = line;
      field = '';
      i++;
      for (;;) {
        const close = text.indexOf('"', i);
        if (close < 0) return malformed(openedOn, 'a quoted value that starts on this line never ends (a closing " is missing)');
        const chunk = text.slice(i, close);
        if (/[\r\n]/.test(chunk)) line += lineBreaksIn(chunk);
        field += chunk;
        if (text[close + 1] !== '"') {
          i = close + 1;
          break;
        }
        field += '"';
        i = close + 2;
      }
      while (text[i] === ' ' || text[i] === '\t') i++;
      if (i < text.length && text[i] !== ',' && text[i] !== '\r' && text[i] !== '\n') {
        return malformed(line, `text after a closing quote (${shown(text.slice(i, i + 80).split(/[\r\n,]/)[0])}); a " inside a quoted value must be doubled ("")`);
      }
      quoted = true;
    } else if (c === ',') {
      fields.push(field);
      field = '';
      i++;
    } else if (c === '\r' || c === '\n') {
      endRecord();
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      line++;
      recordLine = line;
    } else {
      // Copy the run up to the next character that means something, not one character at a time.
      SPECIAL.lastIndex = i + 1;
      const end = SPECIAL.exec(text)?.index ?? text.length;
      field += text.slice(i, end);
      i = end;
    }
  }
  if (quoted || fields.length > 0 || field !== '') endRecord();
  return { rows };
}

const SPECIAL = /[",\r\n]/g;

function malformed(line: number, detail: string): { error: CsvSyntaxError } {
  return { error: { code: 'malformed_csv', line, detail: `Line ${line}: ${detail}.` } };
}

// ---- imports ----------------------------------------------------------------------------------------

/**
 * The checks every import shares, in order: size (before decoding a byte), encoding, CSV syntax.
 * Records whose fields are all empty (the `,,,` rows Excel writes for cleared rows) are dropped like
 * blank lines.
 */
export function readImportFile(bytes: Buffer, maxBytes: number): { rows: CsvRow[] } | { error: ImportProblem } {
  if (bytes.length > maxBytes) {
    return fileProblem('file_too_large', `The file is ${count(bytes.length)} bytes; the limit is ${count(maxBytes)} bytes (${maxBytes / 1024 / 1024} MB). Split it into smaller files.`);
  }
  const decoded = decodeCsvBytes(bytes);
  if ('error' in decoded) return fileProblem(decoded.error.code, decoded.error.detail);
  const parsed = parseCsv(decoded.text);
  if ('error' in parsed) return { error: { row: parsed.error.line, code: parsed.error.code, detail: parsed.error.detail } };
  return { rows: parsed.rows.filter((r) => r.fields.some((f) => f.trim() !== '')) };
}

/** The refusal for a file with more than `max` records, or undefined. */
export function rowLimitProblem(rows: number, max: number): ImportProblem | undefined {
  if (rows <= max) return undefined;
  return { row: null, code: 'too_many_rows', detail: `The file has ${count(rows)} rows; the limit is ${count(max)} per file. Split it into smaller files.` };
}

function fileProblem(code: string, detail: string): { error: ImportProblem } {
  return { error: { row: null, code, detail } };
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * A value in double quotes for a problem's detail, as the admin typed it (no escaping), line breaks
 * shown as ↵, cut to 60 characters so one bad cell cannot flood a report.
 */
export function shown(value: string): string {
  const chars = [...value.replace(/\r\n|[\r\n]/g, '↵')];
  return `"${chars.length > 60 ? `${chars.slice(0, 59).join('')}…` : chars.join('')}"`;
}

// ---- writing ----------------------------------------------------------------------------------------

/**
 * A report as CSV: CRLF line ends (RFC 4180, and what Excel writes), Dates as ISO 8601, null and
 * undefined as empty. Strings that a spreadsheet would run as a formula get a leading `'` (OWASP CSV
 * injection); numbers are written as numbers, so pass `-5` as a number, not as the string "-5".
 */
export function toCsv(header: string[], rows: CsvValue[][]): string {
  return [header, ...rows].map(csvLine).join('');
}

function csvLine(values: CsvValue[]): string {
  const cells = values.map(csvCell);
  // A lone empty value would be a blank line, which readers skip: quote it so the row survives.
  if (cells.length === 1 && cells[0] === '') return '""\r\n';
  return `${cells.join(',')}\r\n`;
}

function csvCell(value: CsvValue): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? '' : value.toISOString();
  if (typeof value !== 'string') return String(value);
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]|^\s|\s$/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
