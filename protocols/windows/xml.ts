/**
 * The one XML reader of the Windows enrollment codecs: a bounded, DTD-free parse into a small element
 * tree keyed by local names, so `s:`/`a:`/`wsse:`/`o:` prefix choices of different clients do not
 * matter (research notes windows-mdm.md section 7; section 1.1 lists the spelling variations Windows
 * sends). Pure: no I/O.
 *
 * Hardening (code-style lesson L10): bodies over `maxBytes` are refused before any work, any
 * `<!DOCTYPE`/`<!ENTITY` is refused (no XXE, no entity expansion: only the five predefined entities
 * and character references are decoded), nesting deeper than `maxDepth` is refused by a linear scan
 * before the parser runs, and anything XMLValidator rejects is `malformed`.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';

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

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // Entities are decoded by `decodeEntities` below in one pass (no double decoding, no DTD entities).
  processEntities: false,
  htmlEntities: false,
});

/** Parses a bounded, DTD-free XML document and returns its root element. Throws `XmlError`. */
export function parseXml(input: Buffer | string, limits: XmlLimits = {}): XmlElement {
  const maxBytes = limits.maxBytes ?? XML_DEFAULT_MAX_BYTES;
  const maxDepth = limits.maxDepth ?? XML_DEFAULT_MAX_DEPTH;
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > maxBytes) throw new XmlError('too_large', `XML body of ${size} bytes exceeds ${maxBytes}`);

  let xml = typeof input === 'string' ? input : input.toString('utf8');
  if (xml.charCodeAt(0) === 0xfeff) xml = xml.slice(1);
  if (/<!(DOCTYPE|ENTITY)/i.test(xml)) throw new XmlError('doctype', 'DOCTYPE and ENTITY declarations are not accepted');

  const depth = nestingDepth(xml, maxDepth);
  if (depth > maxDepth) throw new XmlError('too_deep', `XML nesting exceeds ${maxDepth} levels`);

  const verdict = XMLValidator.validate(xml);
  if (verdict !== true) {
    throw new XmlError('malformed', `malformed XML: ${verdict.err.msg} (line ${verdict.err.line})`);
  }
  let nodes: unknown;
  try {
    nodes = parser.parse(xml);
  } catch (err) {
    throw new XmlError('malformed', `malformed XML: ${(err as Error).message}`, { cause: err });
  }
  const roots = toElements(nodes);
  if (roots.length !== 1) throw new XmlError('malformed', 'malformed XML: expected exactly one root element');
  return roots[0]!;
}

/**
 * The deepest element nesting in `xml`, counted by a linear scan that skips comments, CDATA,
 * processing instructions and quoted attribute values. Stops counting once `limit` is passed.
 */
function nestingDepth(xml: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let i = 0;
  const n = xml.length;
  while (i < n) {
    const lt = xml.indexOf('<', i);
    if (lt < 0) break;
    if (xml.startsWith('<!--', lt)) {
      i = endOf(xml, '-->', lt + 4);
    } else if (xml.startsWith('<![CDATA[', lt)) {
      i = endOf(xml, ']]>', lt + 9);
    } else if (xml[lt + 1] === '?') {
      i = endOf(xml, '?>', lt + 2);
    } else if (xml[lt + 1] === '!') {
      i = endOf(xml, '>', lt + 2);
    } else if (xml[lt + 1] === '/') {
      depth -= 1;
      i = endOf(xml, '>', lt + 2);
    } else {
      const close = tagEnd(xml, lt + 1);
      const selfClosing = xml[close - 1] === '/';
      if (depth + 1 > deepest) deepest = depth + 1;
      if (deepest > limit) return deepest;
      if (!selfClosing) depth += 1;
      i = close + 1;
    }
  }
  return deepest;
}

function endOf(xml: string, marker: string, from: number): number {
  const at = xml.indexOf(marker, from);
  return at < 0 ? xml.length : at + marker.length;
}

/** Index of the `>` that ends a start tag, skipping `>` inside quoted attribute values. */
function tagEnd(xml: string, from: number): number {
  let quote = '';
  for (let i = from; i < xml.length; i++) {
    const c = xml[i];
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '>') {
      return i;
    }
  }
  return xml.length;
}

type OrderedNode = Record<string, unknown> & { ':@'?: Record<string, string> };

function toElements(nodes: unknown): XmlElement[] {
  if (!Array.isArray(nodes)) return [];
  const out: XmlElement[] = [];
  for (const node of nodes as OrderedNode[]) {
    const name = Object.keys(node).find((k) => k !== ':@');
    if (name === undefined || name === '#text') continue;
    const rawChildren = node[name];
    const attrs: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [k, v] of Object.entries(node[':@'] ?? {})) {
      if (k === 'xmlns' || k.startsWith('xmlns:')) continue;
      attrs[k] = decodeEntities(String(v));
    }
    const texts: string[] = [];
    if (Array.isArray(rawChildren)) {
      for (const c of rawChildren as OrderedNode[]) {
        if (typeof c['#text'] === 'string' || typeof c['#text'] === 'number') texts.push(String(c['#text']));
      }
    }
    out.push({ name, attrs, children: toElements(rawChildren), text: decodeEntities(texts.join('')).trim() });
  }
  return out;
}

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g, (whole, ref: string) => {
    if (ref[0] !== '#') return NAMED[ref] ?? whole;
    const code = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
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
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
