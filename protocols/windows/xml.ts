/**
 * The one XML reader of the Windows enrollment codecs: a bounded, DTD-free parse into a small element
 * tree keyed by local names, so `s:`/`a:`/`wsse:`/`o:` prefix choices of different clients do not
 * matter (research notes windows-mdm.md section 7; section 1.1 lists the spelling variations Windows
 * sends). Pure: no I/O.
 *
 * One pass: a hand-written reader walks the text once, left to right (indexOf/charCodeAt; every
 * search resumes where the last one stopped, so the work is linear in the input), and builds the
 * `XmlElement` tree directly on an explicit stack while checking well-formedness: XML 1.0 names with
 * at most one `:`, properly nested and matched tags, exactly one root with only whitespace, comments
 * and processing instructions around it, quoted attribute values without `<`, no duplicate
 * attributes, terminated comments, CDATA sections and processing instructions, and `&` in character
 * data only as a reference. Comments and processing instructions (the XML declaration included) are
 * skipped; CDATA content is text, kept as written.
 *
 * Hardening (code-style lesson L10): bodies over `maxBytes` are refused before any work; any
 * `<!DOCTYPE`/`<!ENTITY` (any case, anywhere, even inside a comment or CDATA section) is refused as
 * `doctype`, so there is no DTD and no entity expansion: only the five predefined entities and
 * character references are decoded, other references are kept as written; an element deeper than
 * `maxDepth` is refused as `too_deep` as soon as its start tag is read, and nothing recurses, so
 * hostile nesting can neither run long nor overflow the call stack; element and attribute names that
 * are Object.prototype members (`__proto__`, `constructor`, `toString`, ...) are refused; everything
 * else that is not well-formed is `malformed`, with what and where (line, column). No other
 * exception type leaves `parseXml`.
 */

export type XmlErrorReason = 'too_large' | 'doctype' | 'too_deep' | 'malformed';

export class XmlError extends Error {
  constructor(
    readonly reason: XmlErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'XmlError';
  }
}

export function isXmlError(err: unknown): err is XmlError {
  return err instanceof XmlError;
}

/** An element by its local name (prefix removed); namespace declarations are dropped from `attrs`. */
export interface XmlElement {
  name: string;
  /** Attributes by local name (`u:Id` → `Id`, `xml:lang` → `lang`). */
  attrs: Record<string, string>;
  children: XmlElement[];
  /** The element's own character data (text and CDATA, entities decoded), trimmed. */
  text: string;
}

export interface XmlLimits {
  /** Largest accepted body in bytes. @defaultValue 1 MiB */
  maxBytes?: number;
  /** Deepest accepted element nesting. @defaultValue 64 */
  maxDepth?: number;
}

export const XML_DEFAULT_MAX_BYTES = 1024 * 1024;
export const XML_DEFAULT_MAX_DEPTH = 64;

/** Parses a bounded, DTD-free XML document and returns its root element. Throws `XmlError`. */
export function parseXml(input: Buffer | string, limits: XmlLimits = {}): XmlElement {
  const maxBytes = limits.maxBytes ?? XML_DEFAULT_MAX_BYTES;
  const maxDepth = limits.maxDepth ?? XML_DEFAULT_MAX_DEPTH;
  let xml: string;
  if (typeof input === 'string') {
    // A UTF-16 code unit is at most 3 UTF-8 bytes: only count the bytes when the limit could be hit.
    const size = input.length * 3 > maxBytes ? Buffer.byteLength(input, 'utf8') : 0;
    if (size > maxBytes) throw new XmlError('too_large', `XML body of ${size} bytes exceeds ${maxBytes}`);
    xml = input;
  } else {
    if (input.length > maxBytes) throw new XmlError('too_large', `XML body of ${input.length} bytes exceeds ${maxBytes}`);
    xml = input.toString('utf8');
  }
  if (xml.charCodeAt(0) === 0xfeff) xml = xml.slice(1);

  try {
    return readDocument(xml, maxDepth);
  } catch (err) {
    // As before, a declaration anywhere in the text outranks any other fault; the reader stops at
    // the first fault it meets, so a refusal looks for one (a cost only refusals pay).
    if (!(err instanceof XmlError) || err.reason !== 'doctype') {
      if (DECLARATION.test(xml)) throw declarationError();
    }
    if (err instanceof XmlError) throw err;
    throw new XmlError('malformed', `malformed XML: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

const DECLARATION = /<!(DOCTYPE|ENTITY)/i;

function declarationError(): XmlError {
  return new XmlError('doctype', 'DOCTYPE and ENTITY declarations are not accepted');
}

function malformed(xml: string, what: string, at: number): XmlError {
  let line = 1;
  let lineStart = 0;
  for (let nl = xml.indexOf('\n'); nl !== -1 && nl < at; nl = xml.indexOf('\n', nl + 1)) {
    line += 1;
    lineStart = nl + 1;
  }
  return new XmlError('malformed', `malformed XML: ${what} (line ${line}, column ${at - lineStart + 1})`);
}

// Character codes.
const TAB = 9;
const LF = 10;
const CR = 13;
const SPACE = 32;
const BANG = 33;
const DQUOTE = 34;
const HASH = 35;
const AMP = 38;
const SQUOTE = 39;
const DASH = 45;
const SLASH = 47;
const COLON = 58;
const SEMI = 59;
const LT = 60;
const EQUALS = 61;
const GT = 62;
const QUESTION = 63;
const LOWER_X = 120;

function isSpace(c: number): boolean {
  return c === SPACE || c === LF || c === TAB || c === CR;
}

/**
 * Name characters: XML 1.0 NameStartChar / NameChar within the BMP, the set fast-xml-parser's
 * validator accepted (astral-plane names stay refused, as before). ASCII by table, the rest by range.
 */
const NAME_START = 1;
const NAME_CHAR = 2;
const ASCII_NAME = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === COLON;
  const other = (c >= 48 && c <= 57) || c === DASH || c === 46;
  ASCII_NAME[c] = letter ? NAME_START | NAME_CHAR : other ? NAME_CHAR : 0;
}

function isWideNameStart(c: number): boolean {
  return (
    (c >= 0xc0 && c <= 0xd6) ||
    (c >= 0xd8 && c <= 0xf6) ||
    (c >= 0xf8 && c <= 0x2ff) ||
    (c >= 0x370 && c <= 0x37d) ||
    (c >= 0x37f && c <= 0x1fff) ||
    (c >= 0x200c && c <= 0x200d) ||
    (c >= 0x2070 && c <= 0x218f) ||
    (c >= 0x2c00 && c <= 0x2fef) ||
    (c >= 0x3001 && c <= 0xd7ff) ||
    (c >= 0xf900 && c <= 0xfdcf) ||
    (c >= 0xfdf0 && c <= 0xfffd)
  );
}

function isNameStart(c: number): boolean {
  return c < 128 ? (ASCII_NAME[c]! & NAME_START) !== 0 : isWideNameStart(c);
}

function isNameChar(c: number): boolean {
  if (c < 128) return ASCII_NAME[c] !== 0;
  return isWideNameStart(c) || c === 0xb7 || (c >= 0x300 && c <= 0x36f) || c === 0x203f || c === 0x2040;
}

/** Index just past the name starting at `from` (whose first character the caller has checked). */
function nameEnd(xml: string, from: number): number {
  let p = from + 1;
  while (isNameChar(xml.charCodeAt(p))) p++;
  return p;
}

/**
 * Names that are Object.prototype members. fast-xml-parser refused `__proto__`, `constructor` and
 * `prototype` and renamed the rest; refusing them all keeps such names out of callers' lookups.
 */
const RESERVED_NAMES = new Set([
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  'toString',
  'valueOf',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
]);

/**
 * The local part of a qualified name `raw` read at `at`; refuses names that are not QNames (empty
 * prefix or local part, or a second `:`) and reserved names.
 */
function localName(xml: string, raw: string, at: number): string {
  const colon = raw.indexOf(':');
  let local = raw;
  if (colon !== -1) {
    if (colon === 0 || colon === raw.length - 1 || raw.indexOf(':', colon + 1) !== -1) {
      throw malformed(xml, `'${raw}' is not a valid qualified name`, at);
    }
    local = raw.slice(colon + 1);
  }
  const c = local.charCodeAt(0);
  // Only names starting with one of these letters can be reserved: skips the set lookup for nearly all.
  if ((c === 95 || c === 99 || c === 104 || c === 112 || c === 116 || c === 118) && RESERVED_NAMES.has(local)) {
    throw malformed(xml, `the name '${raw}' is reserved`, at);
  }
  return local;
}

/** Whether `<!DOCTYPE` or `<!ENTITY` (ASCII case-insensitive) starts at `at` (which holds `<!`). */
function isDeclarationAt(xml: string, at: number): boolean {
  return matchesUpper(xml, at + 2, 'DOCTYPE') || matchesUpper(xml, at + 2, 'ENTITY');
}

function matchesUpper(xml: string, at: number, word: string): boolean {
  for (let j = 0; j < word.length; j++) {
    const c = xml.charCodeAt(at + j);
    if ((c >= 97 && c <= 122 ? c - 32 : c) !== word.charCodeAt(j)) return false;
  }
  return true;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isHexDigit(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/**
 * Index of the `;` ending the reference whose `&` is at `amp`, or -1. The rules fast-xml-parser's
 * validator applied to character data: `&#` digits `;`, `&#x` hex digits `;`, or 1..20 ASCII word
 * characters and `;`. References that are neither predefined nor a valid character are kept as
 * written (see `decodeEntities`), as before.
 */
function referenceEnd(xml: string, amp: number, end: number): number {
  let p = amp + 1;
  if (xml.charCodeAt(p) === HASH) {
    p++;
    const hex = xml.charCodeAt(p) === LOWER_X;
    if (hex) p++;
    for (; p < end; p++) {
      const c = xml.charCodeAt(p);
      if (c === SEMI) return p;
      if (!(hex ? isHexDigit(c) : isDigit(c))) return -1;
    }
    return -1;
  }
  for (let count = 0; p < end; p++, count++) {
    const c = xml.charCodeAt(p);
    if (c === SEMI) return count > 0 ? p : -1;
    if (count >= 20 || !isWordChar(c)) return -1;
  }
  return -1;
}

/** The five predefined entities, by name with its ';'. */
const PREDEFINED: ReadonlyArray<[name: string, text: string]> = [
  ['amp;', '&'],
  ['lt;', '<'],
  ['gt;', '>'],
  ['quot;', '"'],
  ['apos;', "'"],
];

/**
 * Decodes the five predefined entities and character references (decimal or `x` hex, 1..0x10FFFF)
 * in one left-to-right pass; anything else after `&` stays as written. Never expands a result again.
 */
function decodeEntities(s: string): string {
  let amp = s.indexOf('&');
  if (amp === -1) return s;
  let out = '';
  let last = 0;
  const n = s.length;
  while (amp !== -1) {
    let p = amp + 1;
    let replacement: string | undefined;
    if (s.charCodeAt(p) === HASH) {
      p++;
      const hex = s.charCodeAt(p) === LOWER_X;
      if (hex) p++;
      const digits = p;
      let code = 0;
      for (; p < n; p++) {
        const c = s.charCodeAt(p);
        let v: number;
        if (c >= 48 && c <= 57) v = c - 48;
        else if (hex && c >= 65 && c <= 70) v = c - 55;
        else if (hex && c >= 97 && c <= 102) v = c - 87;
        else break;
        // Clamp so a long digit run cannot lose precision into the valid range.
        code = Math.min(code * (hex ? 16 : 10) + v, 0x110000);
      }
      if (p > digits && s.charCodeAt(p) === SEMI && code > 0 && code <= 0x10ffff) {
        replacement = String.fromCodePoint(code);
      }
    } else {
      const named = PREDEFINED.find(([name]) => s.startsWith(name, p));
      if (named) {
        replacement = named[1];
        p += named[0].length - 1; // at the ';'
      }
    }
    if (replacement !== undefined) {
      out += s.slice(last, amp) + replacement;
      last = p + 1;
      amp = s.indexOf('&', last);
    } else {
      amp = s.indexOf('&', amp + 1);
    }
  }
  return out + s.slice(last);
}

const CRLF = /\r\n?/g;

/** Line ends as XML (and fast-xml-parser before) normalize them: CRLF and lone CR become LF. */
function normalizeNewlines(s: string): string {
  return s.indexOf('\r') === -1 ? s : s.replace(CRLF, '\n');
}

/**
 * A run of character data as it joins its element's text: trimmed on its own, then decoded. The
 * runs of one element are split by its child elements, processing instructions and CDATA sections,
 * but not by comments (fast-xml-parser's trimValues behaviour, which callers' texts depend on).
 */
function textRun(raw: string, hasReference: boolean): string {
  const t = normalizeNewlines(raw.trim());
  return hasReference ? decodeEntities(t) : t;
}

/** The single pass: see the module comment. Throws `XmlError`. */
function readDocument(xml: string, maxDepth: number): XmlElement {
  const n = xml.length;
  // Open elements and the qualified names their end tags must repeat (an explicit stack: no recursion).
  const open: XmlElement[] = [];
  const openNames: string[] = [];
  let cur: XmlElement | undefined; // innermost open element
  let root: XmlElement | undefined;
  let run = ''; // character data of `cur` not yet added to its text
  let runHasReference = false;
  // Next `&` / `<!` at or after the scan position, cached so each search covers new ground only.
  let nextAmp = xml.indexOf('&');
  let nextBang = -2;

  /** Refuses a declaration inside [from, to) (a comment, CDATA section or processing instruction). */
  const refuseDeclarationsIn = (from: number, to: number): void => {
    if (nextBang !== -1 && nextBang < from) nextBang = xml.indexOf('<!', from);
    while (nextBang !== -1 && nextBang < to) {
      if (isDeclarationAt(xml, nextBang)) throw declarationError();
      nextBang = xml.indexOf('<!', nextBang + 2);
    }
  };

  let i = 0;
  for (;;) {
    const lt = xml.indexOf('<', i);
    const end = lt === -1 ? n : lt;

    // Character data in [i, end).
    if (end > i) {
      if (cur === undefined) {
        for (let k = i; k < end; k++) {
          if (!isSpace(xml.charCodeAt(k))) {
            throw malformed(xml, root === undefined ? 'text before the root element' : 'text after the root element', k);
          }
        }
      } else {
        if (nextAmp !== -1 && nextAmp < i) nextAmp = xml.indexOf('&', i);
        while (nextAmp !== -1 && nextAmp < end) {
          const semi = referenceEnd(xml, nextAmp, end);
          if (semi === -1) throw malformed(xml, "'&' that does not start a reference", nextAmp);
          runHasReference = true;
          nextAmp = xml.indexOf('&', semi + 1);
        }
        run = run === '' ? xml.slice(i, end) : run + xml.slice(i, end);
      }
    }
    if (lt === -1) break;

    const c1 = xml.charCodeAt(lt + 1);
    if (c1 === SLASH) {
      // End tag: `</` the open element's qualified name, optional whitespace, `>`.
      if (cur === undefined) throw malformed(xml, 'end tag with no open element', lt);
      const depth = open.length;
      const qname = openNames[depth - 1]!;
      let p = lt + 2;
      if (!xml.startsWith(qname, p) || isNameChar(xml.charCodeAt(p + qname.length))) {
        throw malformed(xml, `expected </${qname}>`, lt);
      }
      p += qname.length;
      while (isSpace(xml.charCodeAt(p))) p++;
      if (xml.charCodeAt(p) !== GT) throw malformed(xml, `end tag </${qname}> not closed by '>'`, p);
      if (run !== '') {
        cur.text += textRun(run, runHasReference);
        run = '';
        runHasReference = false;
      }
      // Runs are trimmed already; this trims what CDATA or decoded references left at the edges.
      if (cur.text !== '') cur.text = cur.text.trim();
      open.pop();
      openNames.pop();
      cur = depth > 1 ? open[depth - 2] : undefined;
      i = p + 1;
    } else if (c1 === BANG) {
      if (xml.charCodeAt(lt + 2) === DASH && xml.charCodeAt(lt + 3) === DASH) {
        // Comment: skipped; character data on both sides stays one run.
        const close = xml.indexOf('-->', lt + 4);
        if (close === -1) throw malformed(xml, 'unterminated comment', lt);
        refuseDeclarationsIn(lt + 4, close);
        i = close + 3;
      } else if (xml.startsWith('[CDATA[', lt + 2)) {
        // CDATA section: its content is text as written (no references, no markup).
        if (cur === undefined) throw malformed(xml, 'CDATA section outside the root element', lt);
        const close = xml.indexOf(']]>', lt + 9);
        if (close === -1) throw malformed(xml, 'unterminated CDATA section', lt);
        refuseDeclarationsIn(lt + 9, close);
        if (run !== '') {
          cur.text += textRun(run, runHasReference);
          run = '';
          runHasReference = false;
        }
        cur.text += normalizeNewlines(xml.slice(lt + 9, close));
        i = close + 3;
      } else if (isDeclarationAt(xml, lt)) {
        throw declarationError();
      } else {
        throw malformed(xml, "'<!' that starts no comment or CDATA section", lt);
      }
    } else if (c1 === QUESTION) {
      // Processing instruction (the XML declaration only at the very start): skipped.
      const target = lt + 2;
      if (!isNameStart(xml.charCodeAt(target))) throw malformed(xml, 'processing instruction without a target', lt);
      const targetEnd = nameEnd(xml, target);
      const close = xml.indexOf('?>', targetEnd);
      if (close === -1) throw malformed(xml, 'unterminated processing instruction', lt);
      if (close !== targetEnd && !isSpace(xml.charCodeAt(targetEnd))) {
        throw malformed(xml, 'invalid processing instruction target', lt);
      }
      if (lt !== 0 && targetEnd - target === 3 && xml.slice(target, targetEnd).toLowerCase() === 'xml') {
        throw malformed(xml, 'XML declaration not at the start of the document', lt);
      }
      refuseDeclarationsIn(targetEnd, close);
      if (cur !== undefined && run !== '') {
        cur.text += textRun(run, runHasReference);
        run = '';
        runHasReference = false;
      }
      i = close + 2;
    } else {
      // Start tag: `<` QName (whitespace attribute)* whitespace? (`>` | `/>`).
      if (!isNameStart(c1)) throw malformed(xml, "'<' that starts no tag", lt);
      if (cur === undefined && root !== undefined) throw malformed(xml, 'more than one root element', lt);
      if (open.length >= maxDepth) throw new XmlError('too_deep', `XML nesting exceeds ${maxDepth} levels`);
      let p = nameEnd(xml, lt + 1);
      const qname = xml.slice(lt + 1, p);
      const el: XmlElement = {
        name: localName(xml, qname, lt + 1),
        attrs: Object.create(null) as Record<string, string>,
        children: [],
        text: '',
      };
      let seen: string[] | undefined; // qualified attribute names, for the duplicate check
      let seenSet: Set<string> | undefined; // the same once there are many (keeps the check linear)
      let selfClosing = false;
      for (;;) {
        const before = p;
        let c = xml.charCodeAt(p);
        while (isSpace(c)) c = xml.charCodeAt(++p);
        if (c === GT) {
          p++;
          break;
        }
        if (c === SLASH) {
          if (xml.charCodeAt(p + 1) !== GT) throw malformed(xml, `expected '/>' in <${qname}>`, p);
          p += 2;
          selfClosing = true;
          break;
        }
        if (p >= n) throw malformed(xml, `unterminated start tag <${qname}>`, lt);
        if (p === before || !isNameStart(c)) throw malformed(xml, `unexpected character in <${qname}>`, p);

        // Attribute: QName whitespace? `=` whitespace? quoted value.
        const nameAt = p;
        p = nameEnd(xml, p);
        const aname = xml.slice(nameAt, p);
        c = xml.charCodeAt(p);
        while (isSpace(c)) c = xml.charCodeAt(++p);
        if (c !== EQUALS) throw malformed(xml, `attribute '${aname}' without a value`, nameAt);
        c = xml.charCodeAt(++p);
        while (isSpace(c)) c = xml.charCodeAt(++p);
        if (c !== DQUOTE && c !== SQUOTE) throw malformed(xml, `value of attribute '${aname}' not quoted`, p);
        const valueAt = p + 1;
        let hasReference = false;
        let hasCr = false;
        for (p = valueAt; ; p++) {
          if (p >= n) throw malformed(xml, `unterminated value of attribute '${aname}'`, valueAt - 1);
          const v = xml.charCodeAt(p);
          if (v === c) break;
          if (v === LT) throw malformed(xml, `'<' in the value of attribute '${aname}'`, p);
          if (v === AMP) hasReference = true;
          else if (v === CR) hasCr = true;
        }
        let value = xml.slice(valueAt, p);
        p++;

        if (seenSet !== undefined) {
          if (seenSet.has(aname)) throw malformed(xml, `duplicate attribute '${aname}'`, nameAt);
          seenSet.add(aname);
        } else if (seen === undefined) {
          seen = [aname];
        } else {
          if (seen.includes(aname)) throw malformed(xml, `duplicate attribute '${aname}'`, nameAt);
          seen.push(aname);
          if (seen.length > 16) seenSet = new Set(seen);
        }

        if (aname === 'xmlns' || aname.startsWith('xmlns:')) continue; // namespace declarations are dropped
        const local = localName(xml, aname, nameAt);
        // As before: line ends normalized, value trimmed, then references decoded.
        if (hasCr) value = normalizeNewlines(value);
        value = value.trim();
        el.attrs[local] = hasReference ? decodeEntities(value) : value;
      }

      if (cur === undefined) {
        root = el;
      } else {
        if (run !== '') {
          cur.text += textRun(run, runHasReference);
          run = '';
          runHasReference = false;
        }
        cur.children.push(el);
      }
      if (!selfClosing) {
        open.push(el);
        openNames.push(qname);
        cur = el;
      }
      i = p;
    }
  }

  if (cur !== undefined) throw malformed(xml, `unclosed element <${openNames[openNames.length - 1]}>`, n);
  if (root === undefined) throw malformed(xml, 'no root element', n);
  return root;
}

// ---------------------------------------------------------------------------------------------
// Navigation by local name

/** Follows a path of local names through first matches: `child(env, 'Header', 'Action')`. */
export function child(el: XmlElement | undefined, ...path: string[]): XmlElement | undefined {
  let cur = el;
  for (const name of path) {
    if (cur === undefined) return undefined;
    cur = cur.children.find((c) => c.name === name);
  }
  return cur;
}

/** Every direct child named `name` (an array even for one or none). */
export function all(el: XmlElement | undefined, name: string): XmlElement[] {
  return el === undefined ? [] : el.children.filter((c) => c.name === name);
}

/** The trimmed text of an element, or '' when it is absent. */
export function text(el: XmlElement | undefined): string {
  return el?.text ?? '';
}

/** The trimmed text of an element, or undefined when it is absent or empty. */
export function optionalText(el: XmlElement | undefined): string | undefined {
  const t = el?.text;
  return t ? t : undefined;
}

/** An attribute by local name. */
export function attr(el: XmlElement | undefined, name: string): string | undefined {
  return el?.attrs[name];
}

/** Escapes text for element content and double- or single-quoted attribute values. */
export function escapeXml(s: string): string {
  // Most texts (URLs, base64, ids) need nothing: a test is half the cost of a replace that finds nothing.
  return ESCAPABLE.test(s) ? s.replace(ESCAPABLE_ALL, (c) => ESCAPES[c]!) : s;
}

const ESCAPABLE = /[&<>"']/;
const ESCAPABLE_ALL = /[&<>"']/g;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
