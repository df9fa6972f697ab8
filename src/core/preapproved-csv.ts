/**
 * The pre-approved devices import, in Hexnode's format: a header row, then one device per row with
 * the user it belongs to (Name, SAMAccountName, Email, Mobile, Ownership, Serial number, Device name,
 * Platform, Password). Headers are matched loosely (case, spacing and a few common aliases) because
 * admins retype them; values are checked strictly because a wrong serial number silently approves
 * nothing. Every row is checked and every problem reported; a file with any error imports nothing.
 *
 * A user may appear on several rows (one per device): the last row wins for the user's details, as in
 * Hexnode. The Password column is read and dropped: Mooring enrolls with enrollment tokens.
 */
import { type CsvRow, type ImportProblem, readImportFile, rowLimitProblem, shown } from './csv';

export const PREAPPROVED_MAX_ROWS = 5000;
export const PREAPPROVED_MAX_BYTES = 5 * 1024 * 1024;

export const PREAPPROVED_PLATFORMS = ['android', 'ios', 'macos', 'tvos'] as const;
export type PreapprovedPlatform = (typeof PREAPPROVED_PLATFORMS)[number];

export interface PreapprovedRow {
  row: number;
  name: string;
  email: string;
  mobile: string | null;
  sam_account_name: string | null;
  ownership: 'personal' | 'corporate';
  serial_number: string;
  device_name: string | null;
  platform: PreapprovedPlatform;
}

/** A user's details, from the last row with that email. */
export interface PreapprovedUser {
  email: string;
  name: string;
  mobile: string | null;
  sam_account_name: string | null;
  row: number;
}

export interface PreapprovedParse {
  rows: PreapprovedRow[];
  users: PreapprovedUser[];
  errors: ImportProblem[];
  warnings: ImportProblem[];
  /** Each recognised header, as written, to the field it was read as. */
  columns: Record<string, string>;
}

type Field = 'name' | 'sam_account_name' | 'email' | 'mobile' | 'ownership' | 'serial_number' | 'device_name' | 'platform' | 'password';

/** Header keys (lowercased, without spaces, `_` and `-`) to fields. */
const HEADER_FIELDS: Record<string, Field> = {
  name: 'name',
  displayname: 'name',
  username: 'name',
  samaccountname: 'sam_account_name',
  email: 'email',
  emailaddress: 'email',
  mobile: 'mobile',
  mobilenumber: 'mobile',
  phone: 'mobile',
  phonenumber: 'mobile',
  ownership: 'ownership',
  serialnumber: 'serial_number',
  serial: 'serial_number',
  devicename: 'device_name',
  platform: 'platform',
  os: 'platform',
  password: 'password',
};

/** Hexnode's titles, used when naming a column the file does not have. */
const TITLES: Record<Field, string> = {
  name: 'Name',
  sam_account_name: 'SAMAccountName',
  email: 'Email',
  mobile: 'Mobile',
  ownership: 'Ownership',
  serial_number: 'Serial number',
  device_name: 'Device name',
  platform: 'Platform',
  password: 'Password',
};
const MANDATORY: readonly Field[] = ['name', 'email', 'ownership', 'serial_number', 'platform'];

const NAME_MAX = 200;
const DEVICE_NAME_MAX = 200;
const EMAIL_MAX = 254;
const SERIAL_MAX = 64;
/** Active Directory caps sAMAccountName at 20 for pre-Windows 2000 logons; the attribute itself holds more. */
const SAM_MAX = 104;

export function parsePreapprovedCsv(bytes: Buffer): PreapprovedParse {
  const out: PreapprovedParse = { rows: [], users: [], errors: [], warnings: [], columns: {} };
  const file = readImportFile(bytes, PREAPPROVED_MAX_BYTES);
  if ('error' in file) return { ...out, errors: [file.error] };
  const [headerRecord, ...records] = file.rows;
  if (records.length === 0) {
    return { ...out, errors: [{ row: null, code: 'empty_file', detail: 'The file has a header row but no devices.' }] };
  }
  const tooMany = rowLimitProblem(records.length, PREAPPROVED_MAX_ROWS);
  if (tooMany) return { ...out, errors: [tooMany] };

  const header = readHeader(headerRecord, records);
  out.columns = header.columns;
  out.errors.push(...header.errors);
  out.warnings.push(...header.warnings);

  const devices = new Map<string, number>(); // family + serial -> first line
  const users = new Map<string, PreapprovedUser>();
  let password = false;
  for (const record of records) {
    const read = readRow(record, header);
    const errors = [...read.errors];
    password ||= read.password;
    if (read.device) {
      const first = devices.get(read.device.key);
      if (first === undefined) devices.set(read.device.key, record.line);
      else errors.push(duplicateSerial(record.line, read.device.serial, first));
    }
    out.errors.push(...errors);
    if (read.row && errors.length === 0) {
      out.rows.push(read.row);
      const { email, name, mobile, sam_account_name, row } = read.row;
      users.set(email, { email, name, mobile, sam_account_name, row });
    }
  }
  out.users = [...users.values()];
  if (password) {
    out.warnings.push({ row: null, code: 'password_ignored', detail: 'The Password column is ignored: Mooring devices enroll with an enrollment token, not a per-device password.' });
  }
  return out;
}

// ---- header -----------------------------------------------------------------------------------------

interface Header {
  index: Partial<Record<Field, number>>;
  titles: string[];
  columns: Record<string, string>;
  errors: ImportProblem[];
  warnings: ImportProblem[];
}

function headerKey(title: string): string {
  return title.trim().toLowerCase().replace(/[\s_-]+/g, '');
}

function readHeader({ line, fields }: CsvRow, records: CsvRow[]): Header {
  const header: Header = { index: {}, titles: fields, columns: {}, errors: [], warnings: [] };
  fields.forEach((title, i) => {
    const field = HEADER_FIELDS[headerKey(title)];
    if (field === undefined) {
      // Excel writes empty titles for cleared columns: only worth a word if the column holds data.
      if (title.trim() !== '' || records.some((r) => (r.fields[i] ?? '').trim() !== '')) {
        header.warnings.push({ row: line, code: 'unknown_column', detail: `Column ${i + 1} ${title.trim() === '' ? 'has no title' : `${shown(title.trim())} is not a column of this import`} and is ignored.` });
      }
      return;
    }
    const earlier = header.index[field];
    if (earlier !== undefined) {
      header.errors.push({ row: line, code: 'duplicate_column', detail: `Columns ${shown(fields[earlier].trim())} and ${shown(title.trim())} are both ${TITLES[field]}; keep one.` });
      return;
    }
    header.index[field] = i;
    header.columns[title] = field;
  });
  const hint = fields.length === 1 && fields[0].includes(';') ? ' The header looks separated by semicolons: save the file as "CSV UTF-8 (Comma delimited)".' : '';
  for (const field of MANDATORY) {
    if (header.index[field] === undefined) {
      header.errors.push({ row: line, code: 'missing_column', detail: `The header has no ${TITLES[field]} column; the first row must be the header (${Object.values(TITLES).join(', ')}).${hint}` });
    }
  }
  return header;
}

// ---- rows -------------------------------------------------------------------------------------------

type Check<T> = { ok: true; value: T } | { ok: false; code: string; detail: string };

interface RowRead {
  row?: PreapprovedRow;
  errors: ImportProblem[];
  /** The device's key and serial number, when both serial number and platform are valid. */
  device?: { key: string; serial: string };
  password: boolean;
}

function readRow({ line, fields }: CsvRow, header: Header): RowRead {
  const errors: ImportProblem[] = [];
  const extra = fields.slice(header.titles.length).filter((f) => f.trim() !== '').length;
  if (extra > 0) {
    errors.push({
      row: line,
      code: 'too_many_columns',
      detail: `Line has ${header.titles.length + extra} values but the header has ${header.titles.length}; a value containing a comma (a name like "Smith, Jane") must be in double quotes.`,
    });
  }
  /** A column's check, or undefined when the file has no such column (reported once, on the header). */
  const take = <T>(field: Field, check: (raw: string, title: string) => Check<T>): T | undefined => {
    const i = header.index[field];
    if (i === undefined) return undefined;
    const result = check(fields[i] ?? '', header.titles[i].trim());
    if (result.ok) return result.value;
    errors.push({ row: line, code: result.code, detail: result.detail });
    return undefined;
  };
  const name = take('name', checkName);
  const email = take('email', checkEmail);
  const mobile = take('mobile', checkMobile) ?? null;
  const sam_account_name = take('sam_account_name', checkSamAccountName) ?? null;
  const ownership = take('ownership', checkOwnership);
  const serial_number = take('serial_number', checkSerialNumber);
  const device_name = take('device_name', checkDeviceName) ?? null;
  const platform = take('platform', checkPlatform);
  const passwordAt = header.index.password;
  const password = passwordAt !== undefined && (fields[passwordAt] ?? '').trim() !== '';

  const device = serial_number !== undefined && platform !== undefined ? { key: `${familyOf(platform)}\n${serial_number}`, serial: serial_number } : undefined;
  if (name === undefined || email === undefined || ownership === undefined || serial_number === undefined || platform === undefined) {
    return { errors, device, password };
  }
  return { row: { row: line, name, email, mobile, sam_account_name, ownership, serial_number, device_name, platform }, errors, device, password };
}

/** Serial numbers are unique within a maker's family, not per OS: one Apple serial cannot be both an iPad and a Mac. */
function familyOf(platform: PreapprovedPlatform): 'android' | 'apple' {
  return platform === 'android' ? 'android' : 'apple';
}

function duplicateSerial(line: number, serial: string, first: number): ImportProblem {
  return { row: line, code: 'duplicate_serial', detail: `Serial number ${shown(serial)} is already on line ${first}; a device can be pre-approved once.` };
}

function missing(title: string): Check<never> {
  return { ok: false, code: 'missing_value', detail: `${title} is empty; it is required.` };
}

function refuse(code: string, detail: string): Check<never> {
  return { ok: false, code, detail };
}

function checkName(raw: string, title: string): Check<string> {
  const value = raw.trim();
  if (value === '') return missing(title);
  const length = [...value].length;
  if (length > NAME_MAX) return refuse('invalid_name', `${title} ${shown(value)} is ${length} characters long; the limit is ${NAME_MAX}.`);
  return { ok: true, value };
}

function checkEmail(raw: string, title: string): Check<string> {
  const value = raw.trim();
  if (value === '') return missing(title);
  return isEmail(value) ? { ok: true, value: value.toLowerCase() } : refuse('invalid_email', `${title} ${shown(value)} is not an email address.`);
}

/** A sane address, not RFC 5322: one @, a local part, a dotted domain without empty labels, no spaces. */
function isEmail(value: string): boolean {
  if (value.length > EMAIL_MAX || /\s/.test(value)) return false;
  const parts = value.split('@');
  if (parts.length !== 2) return false;
  const [local, domain] = parts;
  return local !== '' && domain.includes('.') && domain.split('.').every((label) => label !== '');
}

function checkMobile(raw: string, title: string): Check<string | null> {
  const value = raw.trim();
  if (value === '') return { ok: true, value: null };
  const compact = value.replace(/[\s\-.()]/g, '');
  if (/^\+?\d{6,20}$/.test(compact)) return { ok: true, value: compact };
  return refuse('invalid_mobile', `${title} ${shown(value)} is not a phone number: 6 to 20 digits, optionally starting with +.`);
}

const SAM_FORBIDDEN = /["/\\[\]:;|=,+*?<>@\p{Cc}]/u;

function checkSamAccountName(raw: string, title: string): Check<string | null> {
  const value = raw.trim();
  if (value === '') return { ok: true, value: null };
  const length = [...value].length;
  if (length > SAM_MAX) return refuse('invalid_sam_account_name', `${title} ${shown(value)} is ${length} characters long; the limit is ${SAM_MAX}.`);
  const bad = value.match(SAM_FORBIDDEN)?.[0];
  if (bad !== undefined) {
    return refuse('invalid_sam_account_name', `${title} ${shown(value)} contains "${bad}"; an account name cannot contain " / \\ [ ] : ; | = , + * ? < > @ (give the name without a domain).`);
  }
  return { ok: true, value };
}

function checkOwnership(raw: string, title: string): Check<'personal' | 'corporate'> {
  const value = raw.trim();
  if (value === '') return missing(title);
  const lower = value.toLowerCase();
  if (lower === 'personal' || lower === 'corporate') return { ok: true, value: lower };
  return refuse('invalid_ownership', `${title} ${shown(value)} is not an ownership: use personal or corporate.`);
}

/** Names admins write for a platform, pointing at the one to use. */
const PLATFORM_HINTS: Record<string, PreapprovedPlatform> = { ipados: 'ios', ipad: 'ios', iphone: 'ios', mac: 'macos', osx: 'macos', macosx: 'macos', appletv: 'tvos' };

function checkPlatform(raw: string, title: string): Check<PreapprovedPlatform> {
  const value = raw.trim();
  if (value === '') return missing(title);
  const lower = value.toLowerCase();
  const known = PREAPPROVED_PLATFORMS.find((p) => p === lower);
  if (known) return { ok: true, value: known };
  const allowed = `use one of ${PREAPPROVED_PLATFORMS.join(', ')}`;
  if (lower.startsWith('windows')) {
    return refuse('invalid_platform', `${title} ${shown(value)}: pre-approval supports Android and Apple devices only (${PREAPPROVED_PLATFORMS.join(', ')}); enroll Windows devices another way.`);
  }
  const hint = PLATFORM_HINTS[lower.replace(/[\s_-]/g, '')];
  return refuse('invalid_platform', `${title} ${shown(value)} is not a platform: ${hint ? `use ${hint}` : allowed}.`);
}

function checkSerialNumber(raw: string, title: string): Check<string> {
  // Matched exactly at enrollment, so case is kept; only surrounding whitespace goes.
  const value = raw.trim();
  if (value === '') return missing(title);
  const length = [...value].length;
  if (length > SERIAL_MAX) return refuse('invalid_serial', `${title} ${shown(value)} is ${length} characters long; the limit is ${SERIAL_MAX}.`);
  const bad = value.match(/[^A-Za-z0-9._-]/u)?.[0];
  if (bad !== undefined) {
    return refuse('invalid_serial', `${title} ${shown(value)} contains ${/\s/.test(bad) ? 'a space' : `"${bad}"`}; serial numbers are letters, digits, ., - and _ only.`);
  }
  return { ok: true, value };
}

function checkDeviceName(raw: string, title: string): Check<string | null> {
  const value = raw.trim();
  if (value === '') return { ok: true, value: null };
  const length = [...value].length;
  if (length > DEVICE_NAME_MAX) return refuse('invalid_device_name', `${title} ${shown(value)} is ${length} characters long; the limit is ${DEVICE_NAME_MAX}.`);
  return { ok: true, value };
}
