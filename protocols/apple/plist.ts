/**
 * The one XML property-list reader and writer of the Apple protocol codecs. Pure: no I/O.
 *
 * Hardening (code-style lesson L10), done on the text before the `plist` package sees it:
 * - bodies over `maxBytes` are refused (`too_large`);
 * - the only DOCTYPE accepted is Apple's standard plist DTD
 *   (`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`,
 *   also the older `-//Apple Computer//` spelling), with no internal subset; any other is `doctype`;
 * - any `<!ENTITY` is refused (`entity`): no XXE, no entity expansion;
 * - element nesting deeper than `maxDepth` is refused by a linear scan (`too_deep`);
 * - binary plists (`bplist00`) are refused (`binary`): MDM check-ins and reports are XML.
 * Anything the parser then rejects or warns about is `malformed`.
 *
 * Data values (`<data>`) decode to Buffers; Buffers encode back to `<data>`.
 * See https://developer.apple.com/documentation/devicemanagement (plists throughout).
 */
import * as plist from 'plist';

export type PlistValue = plist.PlistValue;
export type PlistDict = { [key: string]: PlistValue };

export type PlistErrorReason = 'too_large' | 'doctype' | 'entity' | 'too_deep' | 'binary' | 'malformed' | 'not_a_dict';

export class PlistError extends Error {
  constructor(
    readonly reason: PlistErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PlistError';
  }
}

export function isPlistError(err: unknown): err is PlistError {
  return err instanceof PlistError;
}

export interface PlistLimits {
  /** Largest accepted body in bytes. @defaultValue 1 MiB */
  maxBytes?: number;
  /** Deepest accepted element nesting (`plist` itself counts as one). @defaultValue 32 */
  maxDepth?: number;
}

export const PLIST_DEFAULT_MAX_BYTES = 1024 * 1024;
export const PLIST_DEFAULT_MAX_DEPTH = 32;

const APPLE_DOCTYPE =
  /^<!DOCTYPE\s+plist\s+PUBLIC\s+"-\/\/Apple(?: Computer)?\/\/DTD PLIST 1\.0\/\/EN"\s+"http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd"\s*>$/;

/** Comments and CDATA may contain anything that looks like markup; the scans ignore them. */
const stripOpaque = (xml: string): string => xml.replace(/<!--[\s\S]*?-->/g, '').replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, '');

function checkDeclarations(xml: string): void {
  if (/<!ENTITY/i.test(xml)) throw new PlistError('entity', 'entity declarations are not accepted');
  const doctypes = xml.match(/<!DOCTYPE[^>]*>?/gi) ?? [];
  if (doctypes.length > 1) throw new PlistError('doctype', 'more than one DOCTYPE');
  const [doctype] = doctypes;
  if (doctype !== undefined && !APPLE_DOCTYPE.test(doctype)) {
    throw new PlistError('doctype', 'only the Apple plist DOCTYPE is accepted');
  }
}

function checkDepth(xml: string, maxDepth: number): void {
  let depth = 0;
  for (const m of xml.matchAll(/<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>/g)) {
    if (m[1]) depth -= 1;
    else if (!m[3]) {
      depth += 1;
      if (depth > maxDepth) throw new PlistError('too_deep', `plist nests deeper than ${maxDepth} elements`);
    }
  }
}

/**
 * Runs the parser with the console's warn/error captured: xmldom (under `plist`) reports malformed
 * XML through `console.warn`/`console.error` instead of throwing, and a device body that makes it
 * complain is refused rather than half-read.
 */
function parseStrict(xml: string): PlistValue {
  const complaints: string[] = [];
  const { warn, error } = console;
  console.warn = (...args: unknown[]) => void complaints.push(args.map(String).join(' '));
  console.error = (...args: unknown[]) => void complaints.push(args.map(String).join(' '));
  try {
    const value = plist.parse(xml);
    if (complaints.length > 0) throw new PlistError('malformed', `malformed XML: ${complaints[0]!.replace(/\s+/g, ' ').trim()}`);
    return value;
  } catch (err) {
    if (err instanceof PlistError) throw err;
    throw new PlistError('malformed', `not a property list: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    console.warn = warn;
    console.error = error;
  }
}

/** Decodes an XML plist body within the limits; throws `PlistError`. */
export function decodePlist(raw: Buffer | string, limits: PlistLimits = {}): PlistValue {
  const maxBytes = limits.maxBytes ?? PLIST_DEFAULT_MAX_BYTES;
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > maxBytes) throw new PlistError('too_large', `plist of ${size} bytes is over the ${maxBytes}-byte limit`);
  let xml = typeof raw === 'string' ? raw : raw.toString('utf8');
  if (xml.startsWith('\uFEFF')) xml = xml.slice(1);
  if (xml.startsWith('bplist')) throw new PlistError('binary', 'binary plists are not accepted');
  const visible = stripOpaque(xml);
  checkDeclarations(visible);
  checkDepth(visible, limits.maxDepth ?? PLIST_DEFAULT_MAX_DEPTH);
  return parseStrict(xml);
}

export function isPlistDict(value: unknown): value is PlistDict {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value) && !(value instanceof Date);
}

/**
 * The shape of most device messages on the hot path (Idle, simple acknowledgements): one dict of
 * plain keys to strings without entities, comments or CDATA. Read with two bounded regular expressions
 * instead of a DOM; anything else, however slightly different, goes to the full parser.
 */
const FLAT_DICT =
  /^\s*(?:<\?xml[^<>]*\?>\s*)?(<!DOCTYPE[^<>[\]]*>\s*)?<plist(?:\s+version="1\.0")?\s*>\s*<dict>((?:\s*<key>[\w.-]+<\/key>\s*<string>[^<&]*<\/string>)*)\s*<\/dict>\s*<\/plist>\s*$/;
const FLAT_ENTRY = /<key>([\w.-]+)<\/key>\s*<string>([^<&]*)<\/string>/g;
const FLAT_MAX_BYTES = 8 * 1024;

function decodeFlatStringDict(xml: string): PlistDict | undefined {
  if (xml.length > FLAT_MAX_BYTES) return undefined;
  const m = FLAT_DICT.exec(xml);
  if (!m || (m[1] !== undefined && !APPLE_DOCTYPE.test(m[1].trim()))) return undefined;
  const dict: PlistDict = {};
  for (const [, key, value] of m[2]!.matchAll(FLAT_ENTRY)) {
    if (Object.hasOwn(dict, key!)) return undefined; // let the full parser decide on repeated keys
    dict[key!] = value!;
  }
  return dict;
}

/** `decodePlist` for messages whose top level must be a dictionary (check-ins, reports, commands). */
export function decodePlistDict(raw: Buffer | string, limits?: PlistLimits): PlistDict {
  if (raw.length <= FLAT_MAX_BYTES) {
    const text = typeof raw === 'string' ? raw : raw.toString('utf8');
    const flat = decodeFlatStringDict(text.startsWith('\uFEFF') ? text.slice(1) : text);
    if (flat) return flat;
  }
  const value = decodePlist(raw, limits);
  if (!isPlistDict(value)) throw new PlistError('not_a_dict', 'the plist top level is not a dictionary');
  return value;
}

/** Encodes a value as XML plist text (with Apple's XML declaration and DOCTYPE). */
export function encodePlist(value: PlistValue): string {
  return plist.build(value);
}
