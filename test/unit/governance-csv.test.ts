import fs from 'node:fs';
import path from 'node:path';
import { decodeCsvBytes, parseCsv, toCsv, type CsvRow } from '../../src/core/csv';
import {
  CORPORATE_ID_MAX_BYTES,
  checkSerial,
  normalizeImei,
  parseCorporateIdentifierCsv,
  type ImportProblem,
} from '../../src/core/corporate-identifier-csv';
import { PREAPPROVED_MAX_BYTES, parsePreapprovedCsv } from '../../src/core/preapproved-csv';

const FIXTURES = path.join(__dirname, '../../fixtures/governance');
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name));
const file = (lines: string[], eol = '\n') => Buffer.from(lines.join(eol) + eol);
const codes = (problems: ImportProblem[]) => problems.map((p) => [p.row, p.code]);
const rowsOf = (text: string): CsvRow[] => {
  const parsed = parseCsv(text);
  if ('error' in parsed) throw new Error(parsed.error.detail);
  return parsed.rows;
};

const PREAPPROVED_HEADER = 'Name,SAMAccountName,Email,Mobile,Ownership,Serial number,Device name,Platform,Password';
/** A pre-approved file with the standard header; each row given as the fields that differ from a valid one. */
function preapproved(...rows: Array<Partial<Record<'name' | 'sam' | 'email' | 'mobile' | 'ownership' | 'serial' | 'device' | 'platform' | 'password', string>>>): Buffer {
  const lines = rows.map((r, i) =>
    [r.name ?? `User ${i}`, r.sam ?? '', r.email ?? `user${i}@example.com`, r.mobile ?? '', r.ownership ?? 'corporate', r.serial ?? `SER${i}`, r.device ?? '', r.platform ?? 'ios', r.password ?? '']
      .map((v) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v))
      .join(','),
  );
  return file([PREAPPROVED_HEADER, ...lines]);
}

describe('decodeCsvBytes', () => {
  it('strips a UTF-8 byte order mark and keeps the rest as written', () => {
    expect(decodeCsvBytes(Buffer.from('\uFEFFName,Émilie\r\n'))).toEqual({ text: 'Name,Émilie\r\n' });
    expect(decodeCsvBytes(Buffer.from('a,b\n'))).toEqual({ text: 'a,b\n' });
  });

  it('refuses UTF-16 and UTF-32, with or without a byte order mark, and says to save as UTF-8', () => {
    const utf16 = decodeCsvBytes(fixture('corporate-imei.utf16.csv'));
    expect(utf16).toEqual({ error: { code: 'wrong_encoding', detail: expect.stringContaining('UTF-16') } });
    expect('error' in utf16 && utf16.error.detail).toContain('CSV UTF-8 (Comma delimited)');
    const be = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('a,b', 'utf16le').swap16()]);
    expect(decodeCsvBytes(be)).toEqual({ error: { code: 'wrong_encoding', detail: expect.stringContaining('UTF-16') } });
    expect(decodeCsvBytes(Buffer.from([0x00, 0x00, 0xfe, 0xff, 0, 0, 0, 0x61]))).toEqual({ error: { code: 'wrong_encoding', detail: expect.stringContaining('UTF-32') } });
    expect(decodeCsvBytes(Buffer.from([0xff, 0xfe, 0x00, 0x00, 0x61, 0, 0, 0]))).toEqual({ error: { code: 'wrong_encoding', detail: expect.stringContaining('UTF-32') } });
    expect(decodeCsvBytes(Buffer.from('a,b\r\n', 'utf16le'))).toEqual({ error: { code: 'wrong_encoding', detail: expect.stringContaining('NUL') } });
  });

  it('refuses bytes that are not UTF-8 and names the line they are on', () => {
    // "Réception" saved by Excel as "CSV (Comma delimited)": Windows-1252, é is the single byte E9.
    const cp1252 = Buffer.concat([Buffer.from('C02XG2JHJGH5,Finance\r\nF9FZK1ABCDEF,Sales\r\nDMPXK2ZBJF8J,R'), Buffer.from([0xe9]), Buffer.from('ception\r\n')]);
    const result = decodeCsvBytes(cp1252);
    expect(result).toEqual({ error: { code: 'wrong_encoding', detail: expect.stringMatching(/^Line 3 has characters that are not UTF-8.*Save it as UTF-8/) } });
  });

  it('calls a file of nothing but whitespace and line ends empty', () => {
    expect(decodeCsvBytes(Buffer.alloc(0))).toEqual({ error: { code: 'empty_file', detail: 'The file is empty.' } });
    expect(decodeCsvBytes(Buffer.from('\uFEFF \r\n\t\n\n'))).toEqual({ error: { code: 'empty_file', detail: 'The file is empty.' } });
  });
});

describe('parseCsv', () => {
  it('reads quoted commas, doubled quotes and line breaks inside quotes, with each record on the line it starts', () => {
    const text = 'id,details\n1,"Leeds, UK"\n2,"6"" tablet"\n3,"first line\nsecond line\r\nthird"\n4,after\n';
    expect(rowsOf(text)).toEqual([
      { line: 1, fields: ['id', 'details'] },
      { line: 2, fields: ['1', 'Leeds, UK'] },
      { line: 3, fields: ['2', '6" tablet'] },
      { line: 4, fields: ['3', 'first line\nsecond line\r\nthird'] },
      { line: 7, fields: ['4', 'after'] },
    ]);
  });

  it('reads CRLF, LF and lone CR line ends alike', () => {
    const lines = ['a,"b, c"', '', 'd,e', '  ', 'f,'];
    const lf = rowsOf(lines.join('\n'));
    expect(lf).toEqual([
      { line: 1, fields: ['a', 'b, c'] },
      { line: 3, fields: ['d', 'e'] },
      { line: 5, fields: ['f', ''] },
    ]);
    expect(rowsOf(lines.join('\r\n') + '\r\n')).toEqual(lf);
    expect(rowsOf(lines.join('\r'))).toEqual(lf);
  });

  it('skips blank lines but keeps a quoted empty value and does not trim fields', () => {
    expect(rowsOf('\n\n  \t\n""\n a , b \n')).toEqual([
      { line: 4, fields: [''] },
      { line: 5, fields: [' a ', ' b '] },
    ]);
  });

  it('drops spaces around a quoted value and keeps a quote inside an unquoted one', () => {
    expect(rowsOf('x, "a,b" ,y\nJohn "JJ" Smith,z')).toEqual([
      { line: 1, fields: ['x', 'a,b', 'y'] },
      { line: 2, fields: ['John "JJ" Smith', 'z'] },
    ]);
  });

  it('refuses an unterminated quote, pointing at the line it opens on', () => {
    expect(parseCsv('a,b\nc,"never closed\nmore\n')).toEqual({
      error: { code: 'malformed_csv', line: 2, detail: expect.stringMatching(/^Line 2: a quoted value .* never ends/) },
    });
  });

  it('refuses text after a closing quote, pointing at its line', () => {
    expect(parseCsv('ok,1\n"ab"c,2\n')).toEqual({ error: { code: 'malformed_csv', line: 2, detail: expect.stringContaining('text after a closing quote ("c")') } });
    expect(parseCsv('"multi\nline"x\n')).toEqual({ error: { code: 'malformed_csv', line: 2, detail: expect.stringContaining('"x"') } });
  });
});

describe('toCsv', () => {
  it('writes CRLF lines, quotes only where needed, dates as ISO and nothing for null', () => {
    const out = toCsv(
      ['serial', 'details', 'count', 'ok', 'at', 'none'],
      [
        ['C02XG2JHJGH5', 'Leeds, UK', 3, true, new Date('2026-11-21T09:30:00Z'), null],
        ['F9FZK1ABCDEF', 'say "hi"', -1.5, false, undefined, ' padded'],
        ['X', 'two\nlines', 0, null, null, 'trailing '],
      ],
    );
    expect(out).toBe(
      'serial,details,count,ok,at,none\r\n' +
        'C02XG2JHJGH5,"Leeds, UK",3,true,2026-11-21T09:30:00.000Z,\r\n' +
        'F9FZK1ABCDEF,"say ""hi""",-1.5,false,," padded"\r\n' +
        'X,"two\nlines",0,,,"trailing "\r\n',
    );
  });

  it('neutralises strings a spreadsheet would run as formulas, but not numbers', () => {
    const out = toCsv(['v'], [['=SUM(A1)'], ['+44 20 7946 0958'], ['-1'], ['@cmd'], ['\tx'], ['\rx'], [-1], ['a=b']]);
    expect(out).toBe(`v\r\n'=SUM(A1)\r\n'+44 20 7946 0958\r\n'-1\r\n'@cmd\r\n'\tx\r\n"'\rx"\r\n-1\r\na=b\r\n`);
  });

  it('round-trips through parseCsv, formulas coming back defused', () => {
    const header = ['name', 'notes', 'n'];
    const rows = [
      ['Chen, Wei', 'said "ok"\r\nthen left', 42],
      ['  spaced  ', '', 7],
      ['=SUM(A1)', '=HYPERLINK("http://x")', -3],
    ];
    expect(rowsOf(toCsv(header, rows))).toEqual([
      { line: 1, fields: ['name', 'notes', 'n'] },
      { line: 2, fields: ['Chen, Wei', 'said "ok"\r\nthen left', '42'] },
      { line: 4, fields: ['  spaced  ', '', '7'] },
      { line: 5, fields: ["'=SUM(A1)", `'=HYPERLINK("http://x")`, '-3'] },
    ]);
    // A single empty value is quoted, so the row is not read back as a blank line.
    expect(toCsv(['only'], [[''], [null]])).toBe('only\r\n""\r\n""\r\n');
    expect(rowsOf(toCsv(['only'], [['']]))).toEqual([{ line: 1, fields: ['only'] }, { line: 2, fields: [''] }]);
  });
});

describe('corporate identifiers: values', () => {
  it('takes 14 and 15 digit IMEIs, trimmed, and nothing else', () => {
    expect(normalizeImei(' 353280111234572 ')).toBe('353280111234572');
    expect(normalizeImei('35420911832337')).toBe('35420911832337');
    for (const bad of ['3542091183233', '3532801112345720', '35-328011-123457-2', '35 328011 123457 2', '3.53280E+14', 'C02XG2JHJGH5', '３５３２８０１１１２３４５７２', '']) {
      expect(normalizeImei(bad)).toBeUndefined();
    }
  });

  it('takes serials of letters, digits, - and _ up to 64, refusing dots with their own code', () => {
    expect(checkSerial(' C02XG2JHJGH5\t')).toEqual({ ok: true, value: 'C02XG2JHJGH5' });
    expect(checkSerial('PF-3KZ_9QX')).toEqual({ ok: true, value: 'PF-3KZ_9QX' });
    expect(checkSerial('x'.repeat(64))).toEqual({ ok: true, value: 'x'.repeat(64) });
    expect(checkSerial('F9FZK1.ABCDE')).toEqual({ ok: false, code: 'serial_has_dot', detail: expect.stringContaining('"F9FZK1.ABCDE" contains a dot') });
    expect(checkSerial('x'.repeat(65))).toEqual({ ok: false, code: 'invalid_serial', detail: expect.stringContaining('is 65 characters long; the limit is 64') });
    expect(checkSerial('SN 4452')).toEqual({ ok: false, code: 'invalid_serial', detail: 'Serial number "SN 4452" contains a space; serial numbers are letters, digits, - and _ only.' });
    expect(checkSerial('ab/12')).toEqual({ ok: false, code: 'invalid_serial', detail: expect.stringContaining('contains "/"') });
    expect(checkSerial('  ')).toEqual({ ok: false, code: 'invalid_serial', detail: 'Serial number "" is empty.' });
  });
});

describe('corporate identifiers: files', () => {
  it('reads the IMEI fixture: 14 and 15 digits, quoted commas and quotes in details, empty details as null', () => {
    const result = parseCorporateIdentifierCsv(fixture('corporate-imei.valid.csv'), 'imei');
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.entries.map((e) => [e.row, e.identifier, e.details])).toEqual([
      [1, '353280111234572', 'Warehouse scanner 12, Leeds'],
      [2, '358759106559965', 'Warehouse scanner 13, Leeds'],
      [3, '35420911832337', 'Zebra TC52 - goods in'],
      [4, '353328112767163', null],
      [5, '867831043140177', 'Delivery van 7, Bristol depot'],
      [6, '35698510700636', 'Field engineer - North'],
      [7, '354010123364979', 'iPhone 14 (Sales pool)'],
      [8, '013263007197568', 'Rugged tablet, "Cold store" 2'],
      [9, '35491510747777', null],
      [10, '352608116460761', 'Reception kiosk'],
      [11, '86091203275857', 'Courier handset 3, Manchester'],
      [12, '351689075115969', 'Spare - IT cupboard'],
    ]);
  });

  it('reads the serial fixture', () => {
    const result = parseCorporateIdentifierCsv(fixture('corporate-serial.valid.csv'), 'serial');
    expect(result.errors).toEqual([]);
    expect(result.entries).toHaveLength(10);
    expect(result.entries.slice(0, 4)).toEqual([
      { row: 1, identifier: 'C02XG2JHJGH5', details: 'MacBook Pro 16 - Finance' },
      { row: 2, identifier: 'F9FZK1ABCDEF', details: 'iPad Air - Reception' },
      { row: 3, identifier: 'DMPXK2ZBJF8J', details: 'iPad Pro 12.9, Design team' },
      { row: 4, identifier: 'G6TZ8QWEHG7F', details: null },
    ]);
    expect(result.entries[9]).toEqual({ row: 10, identifier: 'ZY22H3K9LM', details: 'Pixel 8 - Support' });
  });

  it('reports every problem of the serial errors fixture on its line, and the first of a duplicate wins', () => {
    const result = parseCorporateIdentifierCsv(fixture('corporate-serial.errors.csv'), 'serial');
    expect(codes(result.errors)).toEqual([
      [1, 'header_not_allowed'],
      [3, 'serial_has_dot'],
      [4, 'details_too_long'],
      [7, 'too_many_columns'],
      [10, 'missing_identifier'],
      [11, 'invalid_serial'],
    ]);
    expect(result.errors[0].detail).toContain('"Serial Number"');
    expect(result.errors[0].detail).toContain('no header row');
    expect(result.errors[1].detail).toContain('"F9FZK1.ABCDE"');
    expect(result.errors[2].detail).toMatch(/^Details are 143 characters long; the limit is 128: "Loaned to the Northern region audit team for the quarterly …"\.$/);
    expect(result.errors[3].detail).toContain('Line has 3 values');
    expect(result.errors[5].detail).toContain('"SN 4452/77" contains a space');
    expect(result.warnings).toEqual([
      { row: 8, code: 'duplicate_in_file', detail: '"C02XG2JHJGH5" is also on line 2 with other details; line 2 is the one imported and this line is ignored.' },
    ]);
    expect(result.entries).toEqual([
      { row: 2, identifier: 'C02XG2JHJGH5', details: 'MacBook Pro 16 - Finance' },
      { row: 6, identifier: 'G6TZ8QWEHG7F', details: 'Loan pool, 2nd floor' },
    ]);
  });

  it('refuses the UTF-16 fixture as a whole-file error', () => {
    expect(parseCorporateIdentifierCsv(fixture('corporate-imei.utf16.csv'), 'imei')).toEqual({
      entries: [],
      errors: [{ row: null, code: 'wrong_encoding', detail: expect.stringContaining('Save it as UTF-8') }],
      warnings: [],
    });
  });

  it('refuses anything but an IMEI in an IMEI file, with the fix for spreadsheet accidents', () => {
    const result = parseCorporateIdentifierCsv(file(['353280111234572,ok', 'C02XG2JHJGH5,a Mac', '35 328011 123457 2,', '3.53280E+14,', '3542091183233,', '35328011123457;Leeds']), 'imei');
    expect(codes(result.errors)).toEqual([
      [2, 'not_an_imei'],
      [3, 'not_an_imei'],
      [4, 'not_an_imei'],
      [5, 'not_an_imei'],
      [6, 'not_an_imei'],
    ]);
    expect(result.errors[0].detail).toBe('"C02XG2JHJGH5" is not an IMEI: an IMEI is 14 or 15 digits and nothing else. This file was uploaded as an IMEI file; upload serial numbers as a serial number file.');
    expect(result.errors[1].detail).toContain('remove the spaces and dashes');
    expect(result.errors[2].detail).toContain('scientific notation');
    expect(result.errors[3].detail).toContain('this has 13 digits');
    expect(result.errors[4].detail).toContain('separated by semicolons');
    expect(result.entries).toEqual([{ row: 1, identifier: '353280111234572', details: 'ok' }]);
  });

  it('takes digits as serials in a serial file, even when every row is 14 or 15 digits', () => {
    const result = parseCorporateIdentifierCsv(file(['353280111234572,', '35420911832337,scanner']), 'serial');
    expect(result).toEqual({
      entries: [
        { row: 1, identifier: '353280111234572', details: null },
        { row: 2, identifier: '35420911832337', details: 'scanner' },
      ],
      errors: [],
      warnings: [],
    });
  });

  it('refuses a header row, even one whose word would pass as a serial, but only on the first row', () => {
    expect(codes(parseCorporateIdentifierCsv(file(['IMEI,Details', '353280111234572,']), 'imei').errors)).toEqual([[1, 'header_not_allowed']]);
    expect(codes(parseCorporateIdentifierCsv(file(['Device serial no.,Notes,Owner', 'C02XG2JHJGH5,']), 'serial').errors)).toEqual([[1, 'header_not_allowed']]);
    expect(codes(parseCorporateIdentifierCsv(file(['\n', 'serial,details', 'C02XG2JHJGH5,']), 'serial').errors)).toEqual([[3, 'header_not_allowed']]);
    const later = parseCorporateIdentifierCsv(file(['353280111234572,', 'imei,']), 'imei');
    expect(codes(later.errors)).toEqual([[2, 'not_an_imei']]);
  });

  it('collects all of a row\'s problems at once', () => {
    const result = parseCorporateIdentifierCsv(file([`F9.Z,${'d'.repeat(129)},extra`]), 'serial');
    expect(codes(result.errors)).toEqual([
      [1, 'too_many_columns'],
      [1, 'serial_has_dot'],
      [1, 'details_too_long'],
    ]);
    expect(result.entries).toEqual([]);
  });

  it('allows details of exactly 128 characters (counted as characters, not bytes), and trailing empty columns', () => {
    const details = 'é'.repeat(128);
    const result = parseCorporateIdentifierCsv(file([`C02XG2JHJGH5,${details},,`, 'F9FZK1ABCDEF, Loan pool ,  ']), 'serial');
    expect(result.errors).toEqual([]);
    expect(result.entries).toEqual([
      { row: 1, identifier: 'C02XG2JHJGH5', details },
      { row: 2, identifier: 'F9FZK1ABCDEF', details: 'Loan pool' },
    ]);
  });

  it('keeps one of an identifier repeated with the same details, silently', () => {
    const result = parseCorporateIdentifierCsv(file(['C02XG2JHJGH5,Finance', ' C02XG2JHJGH5 , Finance', 'C02XG2JHJGH5,', 'C02XG2JHJGH5,']), 'serial');
    expect(result.entries).toEqual([{ row: 1, identifier: 'C02XG2JHJGH5', details: 'Finance' }]);
    expect(codes(result.warnings)).toEqual([
      [3, 'duplicate_in_file'],
      [4, 'duplicate_in_file'],
    ]);
    expect(result.errors).toEqual([]);
  });

  it('reports a CSV syntax error and an empty file as such', () => {
    expect(parseCorporateIdentifierCsv(file(['C02XG2JHJGH5,ok', 'F9FZK1ABCDEF,"Leeds, UK']), 'serial').errors).toEqual([
      { row: 2, code: 'malformed_csv', detail: expect.stringContaining('never ends') },
    ]);
    expect(parseCorporateIdentifierCsv(Buffer.from('\r\n\r\n'), 'serial').errors).toEqual([{ row: null, code: 'empty_file', detail: 'The file is empty.' }]);
  });

  it('accepts 5,000 rows (blank lines not counted) and refuses 5,001', () => {
    const imeis = Array.from({ length: 5001 }, (_, i) => `${350000000000000 + i},Scanner ${i}`);
    const five = parseCorporateIdentifierCsv(file(['', ...imeis.slice(0, 2500), '', '  ', ...imeis.slice(2500, 5000), ''], '\r\n'), 'imei');
    expect(five.errors).toEqual([]);
    expect(five.entries).toHaveLength(5000);
    expect(five.entries[4999]).toEqual({ row: 5003, identifier: '350000000004999', details: 'Scanner 4999' });
    expect(parseCorporateIdentifierCsv(file(imeis), 'imei')).toEqual({
      entries: [],
      errors: [{ row: null, code: 'too_many_rows', detail: 'The file has 5,001 rows; the limit is 5,000 per file. Split it into smaller files.' }],
      warnings: [],
    });
  });

  it('refuses a file over 5 MB before decoding it', () => {
    // Bytes that are not UTF-8: had it been decoded, the error would be wrong_encoding.
    expect(parseCorporateIdentifierCsv(Buffer.alloc(CORPORATE_ID_MAX_BYTES + 1, 0xff), 'imei').errors).toEqual([
      { row: null, code: 'file_too_large', detail: 'The file is 5,242,881 bytes; the limit is 5,242,880 bytes (5 MB). Split it into smaller files.' },
    ]);
    expect(codes(parseCorporateIdentifierCsv(Buffer.alloc(CORPORATE_ID_MAX_BYTES, 0xff), 'imei').errors)).toEqual([[null, 'wrong_encoding']]);
  });

  it('gives the same result for CRLF and LF files', () => {
    const lf = fixture('corporate-serial.errors.csv');
    const crlf = Buffer.from(lf.toString('utf8').replace(/\n/g, '\r\n'));
    expect(parseCorporateIdentifierCsv(crlf, 'serial')).toEqual(parseCorporateIdentifierCsv(lf, 'serial'));
  });
});

describe('pre-approved devices', () => {
  it('reads the valid fixture: BOM stripped, values normalised, serial case kept, password dropped', () => {
    const result = parsePreapprovedCsv(fixture('preapproved.valid.csv'));
    expect(result.errors).toEqual([]);
    expect(result.columns).toEqual({
      Name: 'name',
      SAMAccountName: 'sam_account_name',
      Email: 'email',
      Mobile: 'mobile',
      Ownership: 'ownership',
      'Serial number': 'serial_number',
      'Device name': 'device_name',
      Platform: 'platform',
      Password: 'password',
    });
    expect(result.rows.map((r) => [r.row, r.email, r.ownership, r.serial_number, r.platform, r.mobile])).toEqual([
      [2, 'alice.moreau@example.com', 'corporate', 'C02XG2JHJGH5', 'macos', '+447700900123'],
      [3, 'bilal.khan@example.com', 'personal', 'R58N1234ABC', 'android', '02079460018'],
      [4, 'wei.chen@example.com', 'corporate', 'G6TZ8QWEHG7F', 'tvos', null],
      [5, 'dana.okafor@example.com', 'corporate', 'ZY22H3K9LM', 'android', '07700900789'],
      [6, 'eve.lindqvist@example.com', 'personal', 'F9FZK1ABCDEF', 'ios', '+46701234567'],
      [7, 'alice.moreau@example.com', 'corporate', 'DMPXK2ZBJF8J', 'ios', '+447700900456'],
    ]);
    expect(result.rows[2]).toEqual({
      row: 4,
      name: 'Chen, Wei',
      email: 'wei.chen@example.com',
      mobile: null,
      sam_account_name: 'wchen',
      ownership: 'corporate',
      serial_number: 'G6TZ8QWEHG7F',
      device_name: null,
      platform: 'tvos',
    });
    expect(result.rows.some((r) => 'password' in r)).toBe(false);
    expect(JSON.stringify(result)).not.toContain('Welcome2024!');
    expect(result.warnings).toEqual([{ row: null, code: 'password_ignored', detail: expect.stringContaining('enrollment token') }]);
  });

  it('takes a user\'s details from the last row with their email', () => {
    const { users } = parsePreapprovedCsv(fixture('preapproved.valid.csv'));
    expect(users).toHaveLength(5);
    expect(users[0]).toEqual({ email: 'alice.moreau@example.com', name: 'Alice Moreau-Grant', mobile: '+447700900456', sam_account_name: 'amgrant', row: 7 });
    expect(users.find((u) => u.email === 'dana.okafor@example.com')).toEqual({ email: 'dana.okafor@example.com', name: 'Dana Okafor', mobile: '07700900789', sam_account_name: null, row: 5 });
    const generated = parsePreapprovedCsv(preapproved({ email: 'a@x.io', name: 'First', mobile: '+1 555 0100' }, { email: 'b@x.io' }, { email: 'A@X.IO', name: 'Third', sam: 'third' }));
    expect(generated.users).toEqual([
      { email: 'a@x.io', name: 'Third', mobile: null, sam_account_name: 'third', row: 4 },
      { email: 'b@x.io', name: 'User 1', mobile: null, sam_account_name: null, row: 3 },
    ]);
    expect(generated.rows).toHaveLength(3);
  });

  it('maps the alias headers of the aliases fixture', () => {
    const result = parsePreapprovedCsv(fixture('preapproved.aliases.csv'));
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.columns).toEqual({ 'Display Name': 'name', 'E-mail': 'email', 'Serial Number': 'serial_number', OS: 'platform', Ownership: 'ownership' });
    expect(result.rows).toEqual([
      { row: 2, name: 'Farah Haddad', email: 'farah.haddad@example.org', mobile: null, sam_account_name: null, ownership: 'corporate', serial_number: 'FVFDN4KXQ05P', device_name: null, platform: 'macos' },
      { row: 3, name: 'Gustavo Lima', email: 'gustavo.lima@example.org', mobile: null, sam_account_name: null, ownership: 'personal', serial_number: 'RF8T20ABCDX', device_name: null, platform: 'android' },
      { row: 4, name: 'Hana Sato', email: 'hana.sato@example.org', mobile: null, sam_account_name: null, ownership: 'corporate', serial_number: 'H4YT2LMNP0QR', device_name: null, platform: 'ios' },
    ]);
  });

  it('matches headers without case, spacing, underscores or hyphens, and knows the aliases', () => {
    const header = ' user_name ,sAMAccountName,EMAIL ADDRESS,Phone-Number,OWNERSHIP,SERIALNUMBER,device_name,os';
    const result = parsePreapprovedCsv(file([header, 'Ann Lee,alee,Ann@Example.com,555-0100-99,Personal,ab-12.c,Ann phone,Android']));
    expect(result.errors).toEqual([]);
    expect(result.columns).toEqual({
      ' user_name ': 'name',
      sAMAccountName: 'sam_account_name',
      'EMAIL ADDRESS': 'email',
      'Phone-Number': 'mobile',
      OWNERSHIP: 'ownership',
      SERIALNUMBER: 'serial_number',
      device_name: 'device_name',
      os: 'platform',
    });
    expect(result.rows).toEqual([
      { row: 2, name: 'Ann Lee', email: 'ann@example.com', mobile: '555010099', sam_account_name: 'alee', ownership: 'personal', serial_number: 'ab-12.c', device_name: 'Ann phone', platform: 'android' },
    ]);
    const base: Record<string, [string, string]> = {
      name: ['Name', 'Ann'],
      email: ['Email', 'ann@b.co'],
      ownership: ['Ownership', 'personal'],
      serial_number: ['Serial number', 'S1'],
      platform: ['Platform', 'ios'],
    };
    const samples: Record<string, string> = { name: 'Ann', email: 'ann@b.co', serial_number: 'S1', sam_account_name: 'ann', mobile: '123456', device_name: 'Ann phone' };
    for (const [title, field] of [
      ['Serial Number', 'serial_number'],
      ['serial_number', 'serial_number'],
      ['Serial', 'serial_number'],
      ['SAM Account Name', 'sam_account_name'],
      ['Mobile Number', 'mobile'],
      ['Phone', 'mobile'],
      ['Display Name', 'name'],
      ['User Name', 'name'],
      ['E-mail', 'email'],
      ['Device Name', 'device_name'],
    ]) {
      const columns = Object.entries(base).filter(([f]) => f !== field).map(([, c]) => c);
      columns.push([title, samples[field]]);
      const parsed = parsePreapprovedCsv(file([columns.map(([t]) => t).join(','), columns.map(([, v]) => v).join(',')]));
      expect(parsed.errors).toEqual([]);
      expect(parsed.columns[title]).toBe(field);
      expect((parsed.rows[0] as unknown as Record<string, unknown>)[field]).toBe(samples[field]);
    }
  });

  it('reports every problem of the errors fixture on its line', () => {
    const result = parsePreapprovedCsv(fixture('preapproved.errors.csv'));
    expect(codes(result.errors)).toEqual([
      [3, 'invalid_email'],
      [4, 'invalid_ownership'],
      [5, 'invalid_platform'],
      [7, 'missing_value'],
      [8, 'duplicate_serial'],
      [9, 'invalid_mobile'],
      [11, 'invalid_sam_account_name'],
      [11, 'invalid_serial'],
      [11, 'invalid_platform'],
      [13, 'missing_value'],
      [14, 'too_many_columns'],
    ]);
    const detail = (line: number, code: string) => result.errors.find((e) => e.row === line && e.code === code)?.detail;
    expect(detail(3, 'invalid_email')).toBe('Email "frank.example.com" is not an email address.');
    expect(detail(4, 'invalid_ownership')).toBe('Ownership "Company" is not an ownership: use personal or corporate.');
    expect(detail(5, 'invalid_platform')).toBe('Platform "Windows": pre-approval supports Android and Apple devices only (android, ios, macos, tvos); enroll Windows devices another way.');
    expect(detail(7, 'missing_value')).toBe('Serial number is empty; it is required.');
    expect(detail(8, 'duplicate_serial')).toBe('Serial number "C02XG2JHJGH5" is already on line 2; a device can be pre-approved once.');
    expect(detail(9, 'invalid_mobile')).toBe('Mobile "call me" is not a phone number: 6 to 20 digits, optionally starting with +.');
    expect(detail(11, 'invalid_sam_account_name')).toContain('SAMAccountName "CORP\\mali" contains "\\"');
    expect(detail(11, 'invalid_serial')).toBe('Serial number "SN 4452/77" contains a space; serial numbers are letters, digits, ., - and _ only.');
    expect(detail(11, 'invalid_platform')).toBe('Platform "blackberry" is not a platform: use one of android, ios, macos, tvos.');
    expect(detail(13, 'missing_value')).toBe('Name is empty; it is required.');
    expect(detail(14, 'too_many_columns')).toContain('Line has 11 values but the header has 10');
    expect(result.warnings).toEqual([
      { row: 1, code: 'unknown_column', detail: 'Column 10 "Department" is not a column of this import and is ignored.' },
      { row: null, code: 'password_ignored', detail: expect.any(String) },
    ]);
    expect(result.rows.map((r) => [r.row, r.name, r.serial_number])).toEqual([
      [2, 'Smith, Jane', 'C02XG2JHJGH5'],
      [12, 'Nadia Smith', 'G6TZ8QWEHG7F'],
    ]);
  });

  it('gives the same result for the CRLF errors fixture and its LF copy', () => {
    const crlf = fixture('preapproved.errors.csv');
    expect(crlf.includes('\r\n')).toBe(true);
    const lf = Buffer.from(crlf.toString('utf8').replace(/\r\n/g, '\n'));
    expect(parsePreapprovedCsv(lf)).toEqual(parsePreapprovedCsv(crlf));
  });

  it('names each missing mandatory column once, on the header line, without repeating it per row', () => {
    const result = parsePreapprovedCsv(file(['Name,Mobile,Ownership,Serial', 'Ann,notaphone,corporate,S1', 'Bob,,personal,S2']));
    expect(result.errors).toEqual([
      { row: 1, code: 'missing_column', detail: expect.stringMatching(/^The header has no Email column/) },
      { row: 1, code: 'missing_column', detail: expect.stringMatching(/^The header has no Platform column/) },
      { row: 2, code: 'invalid_mobile', detail: expect.stringContaining('"notaphone"') },
    ]);
    expect(result.rows).toEqual([]);
    const semicolons = parsePreapprovedCsv(file(['Name;Email;Ownership;Serial number;Platform', 'Ann;a@b.co;personal;S1;ios']));
    expect(semicolons.errors[0].detail).toContain('separated by semicolons');
    expect(codes(semicolons.warnings)).toEqual([[1, 'unknown_column']]);
  });

  it('refuses a column given twice and warns about unknown ones', () => {
    const result = parsePreapprovedCsv(file(['Name,Email,E-mail,Ownership,Serial number,Platform,Cost centre,', 'Ann,a@b.co,a@b.co,personal,S1,ios,CC1,']));
    expect(result.errors).toEqual([{ row: 1, code: 'duplicate_column', detail: 'Columns "Email" and "E-mail" are both Email; keep one.' }]);
    // The empty title of a column with no values (Excel's trailing comma) is not worth a warning.
    expect(result.warnings).toEqual([{ row: 1, code: 'unknown_column', detail: 'Column 7 "Cost centre" is not a column of this import and is ignored.' }]);
    const untitled = parsePreapprovedCsv(file(['Name,Email,Ownership,Serial number,Platform,', 'Ann,a@b.co,personal,S1,ios,note']));
    expect(untitled.warnings).toEqual([{ row: 1, code: 'unknown_column', detail: 'Column 6 has no title and is ignored.' }]);
  });

  it('checks emails and stores them lowercased', () => {
    const ok = parsePreapprovedCsv(preapproved({ email: ' Jane.Doe+mdm@Sub.Example.CO.UK ' }));
    expect(ok.rows[0].email).toBe('jane.doe+mdm@sub.example.co.uk');
    const bad = ['jane', 'a@@b.com', 'a@b@c.com', '@example.com', 'jane@localhost', 'jane@example..com', 'jane@.example.com', 'jane doe@example.com', `${'a'.repeat(243)}@example.com`];
    const result = parsePreapprovedCsv(preapproved(...bad.map((email) => ({ email }))));
    expect(codes(result.errors)).toEqual(bad.map((_, i) => [i + 2, 'invalid_email']));
    expect(parsePreapprovedCsv(preapproved({ email: `${'a'.repeat(242)}@example.com` })).errors).toEqual([]);
    expect(codes(parsePreapprovedCsv(preapproved({ email: ' ' })).errors)).toEqual([[2, 'missing_value']]);
  });

  it('checks mobiles: + and 6 to 20 digits after spaces, dashes, dots and brackets go', () => {
    const good: Array<[string, string]> = [
      ['+44 (0)20 7946-0958', '+4402079460958'],
      ['555.0100', '5550100'],
      ['123456', '123456'],
      [`+${'9'.repeat(20)}`, `+${'9'.repeat(20)}`],
    ];
    const ok = parsePreapprovedCsv(preapproved(...good.map(([mobile]) => ({ mobile }))));
    expect(ok.errors).toEqual([]);
    expect(ok.rows.map((r) => r.mobile)).toEqual(good.map(([, stored]) => stored));
    const bad = ['12345', '9'.repeat(21), '+44 20 7946 0958 ext 12', '44+207946', 'call me'];
    expect(codes(parsePreapprovedCsv(preapproved(...bad.map((mobile) => ({ mobile })))).errors)).toEqual(bad.map((_, i) => [i + 2, 'invalid_mobile']));
  });

  it('accepts ownership and platform in any case but no other words', () => {
    const ok = parsePreapprovedCsv(preapproved({ ownership: 'CORPORATE', platform: 'IOS' }, { ownership: ' Personal ', platform: 'MacOS' }, { platform: 'tvOS' }, { platform: 'ANDROID' }));
    expect(ok.rows.map((r) => [r.ownership, r.platform])).toEqual([
      ['corporate', 'ios'],
      ['personal', 'macos'],
      ['corporate', 'tvos'],
      ['corporate', 'android'],
    ]);
    const bad = parsePreapprovedCsv(preapproved({ ownership: 'company' }, { ownership: 'BYOD' }, { platform: 'windows 11' }, { platform: 'iPadOS' }, { platform: 'linux' }, { ownership: '' }));
    expect(codes(bad.errors)).toEqual([
      [2, 'invalid_ownership'],
      [3, 'invalid_ownership'],
      [4, 'invalid_platform'],
      [5, 'invalid_platform'],
      [6, 'invalid_platform'],
      [7, 'missing_value'],
    ]);
    expect(bad.errors[2].detail).toContain('Android and Apple devices only');
    expect(bad.errors[3].detail).toBe('Platform "iPadOS" is not a platform: use ios.');
    expect(bad.errors[4].detail).toBe('Platform "linux" is not a platform: use one of android, ios, macos, tvos.');
    expect(bad.errors[5].detail).toBe('Ownership is empty; it is required.');
  });

  it('keeps serial numbers as written apart from surrounding whitespace, and checks their characters and length', () => {
    const ok = parsePreapprovedCsv(preapproved({ serial: '  c02xG2jhJGH5 ' }, { serial: 'A.B-C_9' }, { serial: 'x'.repeat(64) }));
    expect(ok.rows.map((r) => r.serial_number)).toEqual(['c02xG2jhJGH5', 'A.B-C_9', 'x'.repeat(64)]);
    const bad = parsePreapprovedCsv(preapproved({ serial: 'x'.repeat(65) }, { serial: 'ab#12' }, { serial: 'C02X G2' }));
    expect(bad.errors).toEqual([
      { row: 2, code: 'invalid_serial', detail: expect.stringContaining('is 65 characters long; the limit is 64') },
      { row: 3, code: 'invalid_serial', detail: 'Serial number "ab#12" contains "#"; serial numbers are letters, digits, ., - and _ only.' },
      { row: 4, code: 'invalid_serial', detail: 'Serial number "C02X G2" contains a space; serial numbers are letters, digits, ., - and _ only.' },
    ]);
  });

  it('refuses a device twice: the same serial on two Apple platforms is one device, but an Android serial is another', () => {
    const result = parsePreapprovedCsv(
      preapproved({ serial: 'ABC123', platform: 'ios' }, { serial: 'ABC123', platform: 'macos' }, { serial: 'ABC123', platform: 'android' }, { serial: 'abc123', platform: 'ios' }, { serial: ' ABC123 ', platform: 'iOS', name: '' }),
    );
    expect(codes(result.errors)).toEqual([
      [3, 'duplicate_serial'],
      [6, 'missing_value'],
      [6, 'duplicate_serial'],
    ]);
    expect(result.errors[0].detail).toBe('Serial number "ABC123" is already on line 2; a device can be pre-approved once.');
    expect(result.rows.map((r) => [r.row, r.serial_number, r.platform])).toEqual([
      [2, 'ABC123', 'ios'],
      [4, 'ABC123', 'android'],
      [5, 'abc123', 'ios'],
    ]);
  });

  it('checks name, device name and SAMAccountName lengths and account name characters', () => {
    const result = parsePreapprovedCsv(
      preapproved({ name: 'n'.repeat(201) }, { device: 'd'.repeat(201) }, { sam: 's'.repeat(105) }, { sam: 'jane@corp' }, { name: 'n'.repeat(200), device: 'd'.repeat(200), sam: 's'.repeat(104) }),
    );
    expect(result.errors).toEqual([
      { row: 2, code: 'invalid_name', detail: `Name "${'n'.repeat(59)}…" is 201 characters long; the limit is 200.` },
      { row: 3, code: 'invalid_device_name', detail: expect.stringContaining('is 201 characters long; the limit is 200') },
      { row: 4, code: 'invalid_sam_account_name', detail: expect.stringContaining('is 105 characters long; the limit is 104') },
      { row: 5, code: 'invalid_sam_account_name', detail: expect.stringContaining('"jane@corp" contains "@"') },
    ]);
    expect(result.rows.map((r) => r.row)).toEqual([6]);
  });

  it('treats rows Excel leaves as bare commas as blank, and short rows as empty values', () => {
    const result = parsePreapprovedCsv(file([PREAPPROVED_HEADER, ',,,,,,,,', 'Ann,,a@b.co,,personal,S1,,ios', ',,,,,,,,']));
    expect(result.errors).toEqual([]);
    expect(result.rows).toEqual([{ row: 3, name: 'Ann', email: 'a@b.co', mobile: null, sam_account_name: null, ownership: 'personal', serial_number: 'S1', device_name: null, platform: 'ios' }]);
    expect(result.warnings).toEqual([]);
  });

  it('refuses a header with no devices, a malformed file and a non-UTF-8 file', () => {
    expect(parsePreapprovedCsv(file([PREAPPROVED_HEADER, '', ''])).errors).toEqual([{ row: null, code: 'empty_file', detail: 'The file has a header row but no devices.' }]);
    expect(parsePreapprovedCsv(file([PREAPPROVED_HEADER, 'Ann,,a@b.co,,personal,"S1"x,,ios,'])).errors).toEqual([{ row: 2, code: 'malformed_csv', detail: expect.stringContaining('"x"') }]);
    expect(codes(parsePreapprovedCsv(Buffer.from(PREAPPROVED_HEADER, 'utf16le')).errors)).toEqual([[null, 'wrong_encoding']]);
  });

  it('accepts 5,000 devices and refuses 5,001', () => {
    const rows = Array.from({ length: 5001 }, (_, i) => `User ${i},,user${i}@example.com,,corporate,SN${String(i).padStart(6, '0')},,android,`);
    const five = parsePreapprovedCsv(file([PREAPPROVED_HEADER, ...rows.slice(0, 5000)]));
    expect(five.errors).toEqual([]);
    expect(five.rows).toHaveLength(5000);
    expect(five.rows[4999]).toMatchObject({ row: 5001, serial_number: 'SN004999', email: 'user4999@example.com' });
    expect(five.users).toHaveLength(5000);
    expect(parsePreapprovedCsv(file([PREAPPROVED_HEADER, ...rows])).errors).toEqual([
      { row: null, code: 'too_many_rows', detail: 'The file has 5,001 rows; the limit is 5,000 per file. Split it into smaller files.' },
    ]);
  });

  it('refuses a file over 5 MB before decoding it', () => {
    const result = parsePreapprovedCsv(Buffer.alloc(PREAPPROVED_MAX_BYTES + 1, 0xff));
    expect(result).toEqual({ rows: [], users: [], errors: [{ row: null, code: 'file_too_large', detail: expect.stringContaining('5,242,881 bytes') }], warnings: [], columns: {} });
  });
});
