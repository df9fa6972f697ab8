/**
 * protocols/windows/xml.ts: the single-pass reader against the implementation it replaced
 * (fast-xml-parser's XMLValidator + XMLParser and a tree conversion), which is kept below as the
 * reference so the comparison outlives the old code.
 */
import fs from 'node:fs';
import path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import {
  XML_DEFAULT_MAX_BYTES,
  XML_DEFAULT_MAX_DEPTH,
  XmlError,
  isXmlError,
  parseXml,
  type XmlElement,
  type XmlLimits,
} from '../../protocols/windows/xml';

const FIXTURES = path.join(__dirname, '../../fixtures/windows');

// ---------------------------------------------------------------------------------------------
// Reference: the previous parseXml, verbatim apart from names.

const referenceParser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  processEntities: false,
  htmlEntities: false,
});

function referenceParseXml(input: Buffer | string, limits: XmlLimits = {}): XmlElement {
  const maxBytes = limits.maxBytes ?? XML_DEFAULT_MAX_BYTES;
  const maxDepth = limits.maxDepth ?? XML_DEFAULT_MAX_DEPTH;
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > maxBytes) throw new XmlError('too_large', `XML body of ${size} bytes exceeds ${maxBytes}`);

  let xml = typeof input === 'string' ? input : input.toString('utf8');
  if (xml.charCodeAt(0) === 0xfeff) xml = xml.slice(1);
  if (/<!(DOCTYPE|ENTITY)/i.test(xml)) throw new XmlError('doctype', 'DOCTYPE and ENTITY declarations are not accepted');

  const depth = referenceNestingDepth(xml, maxDepth);
  if (depth > maxDepth) throw new XmlError('too_deep', `XML nesting exceeds ${maxDepth} levels`);

  const verdict = XMLValidator.validate(xml);
  if (verdict !== true) {
    throw new XmlError('malformed', `malformed XML: ${verdict.err.msg} (line ${verdict.err.line})`);
  }
  let nodes: unknown;
  try {
    nodes = referenceParser.parse(xml);
  } catch (err) {
    throw new XmlError('malformed', `malformed XML: ${(err as Error).message}`, { cause: err });
  }
  const roots = referenceToElements(nodes);
  if (roots.length !== 1) throw new XmlError('malformed', 'malformed XML: expected exactly one root element');
  return roots[0]!;
}

function referenceNestingDepth(xml: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  let i = 0;
  const n = xml.length;
  while (i < n) {
    const lt = xml.indexOf('<', i);
    if (lt < 0) break;
    if (xml.startsWith('<!--', lt)) {
      i = referenceEndOf(xml, '-->', lt + 4);
    } else if (xml.startsWith('<![CDATA[', lt)) {
      i = referenceEndOf(xml, ']]>', lt + 9);
    } else if (xml[lt + 1] === '?') {
      i = referenceEndOf(xml, '?>', lt + 2);
    } else if (xml[lt + 1] === '!') {
      i = referenceEndOf(xml, '>', lt + 2);
    } else if (xml[lt + 1] === '/') {
      depth -= 1;
      i = referenceEndOf(xml, '>', lt + 2);
    } else {
      const close = referenceTagEnd(xml, lt + 1);
      const selfClosing = xml[close - 1] === '/';
      if (depth + 1 > deepest) deepest = depth + 1;
      if (deepest > limit) return deepest;
      if (!selfClosing) depth += 1;
      i = close + 1;
    }
  }
  return deepest;
}

function referenceEndOf(xml: string, marker: string, from: number): number {
  const at = xml.indexOf(marker, from);
  return at < 0 ? xml.length : at + marker.length;
}

function referenceTagEnd(xml: string, from: number): number {
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

function referenceToElements(nodes: unknown): XmlElement[] {
  if (!Array.isArray(nodes)) return [];
  const out: XmlElement[] = [];
  for (const node of nodes as OrderedNode[]) {
    const name = Object.keys(node).find((k) => k !== ':@');
    if (name === undefined || name === '#text') continue;
    const rawChildren = node[name];
    const attrs: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [k, v] of Object.entries(node[':@'] ?? {})) {
      if (k === 'xmlns' || k.startsWith('xmlns:')) continue;
      attrs[k] = referenceDecodeEntities(String(v));
    }
    const texts: string[] = [];
    if (Array.isArray(rawChildren)) {
      for (const c of rawChildren as OrderedNode[]) {
        if (typeof c['#text'] === 'string' || typeof c['#text'] === 'number') texts.push(String(c['#text']));
      }
    }
    out.push({ name, attrs, children: referenceToElements(rawChildren), text: referenceDecodeEntities(texts.join('')).trim() });
  }
  return out;
}

const REFERENCE_NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function referenceDecodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g, (whole, ref: string) => {
    if (ref[0] !== '#') return REFERENCE_NAMED[ref] ?? whole;
    const code = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers

type Outcome = { ok: true; root: XmlElement } | { ok: false; reason: string; message: string; error: unknown };

function outcome(parse: () => XmlElement): Outcome {
  try {
    return { ok: true, root: parse() };
  } catch (error) {
    if (isXmlError(error)) return { ok: false, reason: error.reason, message: error.message, error };
    return { ok: false, reason: `not an XmlError: ${String(error)}`, message: String(error), error };
  }
}

const reasonOf = (parse: () => XmlElement): string => {
  const o = outcome(parse);
  return o.ok ? 'accepted' : o.reason;
};

function xmlFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? xmlFiles(path.join(dir, e.name)) : e.name.endsWith('.xml') ? [path.join(dir, e.name)] : []));
}

/** Every element of a tree, iteratively (trees in these tests can be 100,000 deep). */
function elementsOf(root: XmlElement): XmlElement[] {
  const out: XmlElement[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const el = todo.pop()!;
    out.push(el);
    todo.push(...el.children);
  }
  return out;
}

function expectSameAsReference(input: Buffer | string, limits?: XmlLimits): XmlElement {
  const want = outcome(() => referenceParseXml(input, limits));
  const have = outcome(() => parseXml(input, limits));
  if (!want.ok) throw new Error(`reference refused the document: ${want.message}`);
  if (!have.ok) throw new Error(`parseXml refused the document: ${have.message}`);
  expect(have.root).toEqual(want.root);
  for (const el of elementsOf(have.root)) expect(Object.getPrototypeOf(el.attrs)).toBeNull();
  return have.root;
}

// ---------------------------------------------------------------------------------------------

describe('parseXml: same trees as the previous implementation', () => {
  const files = xmlFiles(FIXTURES);

  it('finds the fixtures', () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
  });

  it.each(files.map((f) => [path.relative(FIXTURES, f), f]))('%s', (_name, file) => {
    const body = fs.readFileSync(file);
    expectSameAsReference(body);
    expectSameAsReference(body.toString('utf8'));
  });

  it.each([
    ['text around children', '<a> one <b>two</b> three <c/> four </a>'],
    ['text split by comments and PIs', '<a> x <!-- c --> y <b/> z <?p q?> w <!--d--></a>'],
    ['declaration, PIs and comments around the root', '<?xml version="1.0" encoding="utf-8"?>\n<?app data?>\n<!-- c -->\n<a> x </a>\n<!-- trailing -->\n<?end?>\n'],
    ['CDATA', '<a>pre <![CDATA[ <not> a tag ]]> post<b><![CDATA[]]></b><c> <![CDATA[  ]]> </c><d><![CDATA[x]]>y<![CDATA[z]]></d></a>'],
    ['CDATA with line ends', '<a><![CDATA[l1\r\nl2\rl3\n]]></a>'],
    ['predefined and numeric references', '<a t="&lt;&gt;&amp;&quot;&apos;">&lt;tag&gt; &amp;amp; &#65;&#x42;&#x1F600;&#0065;</a>'],
    ['references kept as written', '<a v="&foo; &#0; &x &#xZ;">&foo; &#0; &#x110000; &#; &#x; &#99999999999999999999; &abcdefghijklmnopqrst;</a>'],
    ['references at the edges of text', '<a>&#32;x&#160;</a>'],
    ['bare & in an attribute value (kept, as before)', '<a v="x & y &amp z"/>'],
    [
      'prefixes and namespace declarations',
      '<s:Envelope xmlns:s="urn:s" xmlns="urn:d" xmlns:u="urn:u"><s:Header><a:Action s:mustUnderstand="1" xmlns:a="urn:a">act</a:Action></s:Header><s:Body u:Id="_0" xml:lang="en-US"><Plain/></s:Body></s:Envelope>',
    ],
    ['two prefixes, one local attribute name (last wins)', '<a x:i="1" y:i="2" xmlns:x="urn:x" xmlns:y="urn:y" i="3"/>'],
    ['single and double quotes', `<a x='single "q"' y="double 'q'" z = ' spaced ' w="&apos;&quot;"/>`],
    ['whitespace in tags', '<a\n\tx="1"\r\n  y = "2"\r\n>\r\n  text\r\n  more\r\n<b   /><c\t></c\n></a\n>'],
    ['tabs and line ends in attribute values', '<a b="\tx\t" c="l1\r\nl2" d=" \r\n "/>'],
    ['> and / in attribute values, > and ]]> in text', '<a t="x/>y>" u="/">x > y ]]> z</a>'],
    ['non-ASCII names and text', '<ü:Straße xmlns:ü="urn:ü" ü:ß="é">grüße · ∑</ü:Straße>'],
    ['unicode whitespace trimmed', '<a>\u00a0 x \u00a0<b>\u2003</b></a>'],
    ['empty elements', '<a><b></b><c/><d> </d></a>'],
    ['BOM', '\ufeff<?xml version="1.0"?><a>x</a>'],
    ['dots, dashes and digits in names', '<a.b-c_1 d.e-f_2="v"><_x/></a.b-c_1>'],
    ['64 levels (the default limit)', `${'<e>'.repeat(64)}x${'</e>'.repeat(64)}`],
    ['SyncML-like Data with escaped XML', '<SyncML><SyncBody><Results><Item><Data>&lt;Policy&gt;&lt;Enabled/&gt;&lt;/Policy&gt;</Data></Item></Results><Final/></SyncBody></SyncML>'],
  ])('%s', (_name, doc) => {
    expectSameAsReference(doc);
    expectSameAsReference(Buffer.from(doc, 'utf8'));
  });

  it('reads the text and attributes callers rely on', () => {
    const root = parseXml('<a:R xmlns:a="u" a:Id="1" xml:lang="en"> x <!-- c --> y <k>&lt;&#65;</k> z <![CDATA[ &amp; ]]></a:R>');
    expect(root.name).toBe('R');
    expect({ ...root.attrs }).toEqual({ Id: '1', lang: 'en' });
    expect(root.text).toBe('x  yz &amp;');
    expect(root.children[0]).toEqual({ name: 'k', attrs: {}, children: [], text: '<A' });
  });
});

describe('parseXml: malformed input is refused, as before', () => {
  it.each([
    ['empty document', ''],
    ['whitespace only', '  \r\n\t'],
    ['only a comment', '<!-- nothing -->'],
    ['not XML', 'hello'],
    ['text before the root', 'x<a/>'],
    ['text after the root', '<a></a>tail'],
    ['mismatched end tag', '<a><b></a>'],
    ['end tag of another name', '<a></b>'],
    ['end tag with a longer name', '<a></ab>'],
    ['unclosed element', '<a><b></b>'],
    ['end tag with nothing open', '</a>'],
    ['extra end tag', '<a></a></a>'],
    ['two root elements', '<a></a><b></b>'],
    ['unquoted attribute value', '<a b=1/>'],
    ['attribute without value', '<a b/>'],
    ['attribute with = but no value', '<a b= />'],
    ['duplicate attribute', '<a b="1" b="2"/>'],
    ['no space between attributes', '<a b="1"c="2"/>'],
    ['unterminated attribute value', '<a b="1/>'],
    ['tag name starting with a digit', '<1a/>'],
    ['space after <', '< a/>'],
    ['attributes on an end tag', '<a></a x>'],
    ['/ not followed by >', '<a/ >'],
    ['unterminated start tag', '<a'],
    ['unterminated comment', '<a><!-- x</a>'],
    ['unterminated comment after the root', '<a/><!-- x'],
    ['unterminated CDATA', '<a><![CDATA[x</a>'],
    ['unterminated PI', '<a/><?pi x'],
    ['bare & in text', '<a>x & y</a>'],
    ['bad decimal reference', '<a>&#12a;</a>'],
    ['upper-case X in a hex reference', '<a>&#X41;</a>'],
    ['reference name too long', '<a>&abcdefghijklmnopqrstu;</a>'],
    ['non-ASCII reference name', '<a>&é;</a>'],
    ['XML declaration not at the start', ' <?xml version="1.0"?><a/>'],
    ['prototype name as element', '<a><constructor>x</constructor></a>'],
    ['prototype name as attribute', '<a __proto__="x"/>'],
  ])('%s', (_name, doc) => {
    expect(reasonOf(() => parseXml(doc))).toBe('malformed');
    expect(reasonOf(() => referenceParseXml(doc))).toBe('malformed');
  });

  // Not well-formed, but the previous implementation accepted these (mostly by building some tree
  // anyway); the single pass refuses them. Each entry says what the old code made of it.
  it.each([
    ['< in an attribute value (old: value "<")', '<a b="<"/>'],
    ['text after a self-closing root (old: ignored)', '<a/>junk'],
    ['reference after the root (old: ignored)', '<a></a>&amp;'],
    ["'<!' that is no comment or CDATA (old: element named '!foo')", '<a><!foo></a>'],
    ['broken comment opener (old: element)', '<a><!- x --></a>'],
    ['CDATA before the root (old: ignored)', '<![CDATA[x]]><a/>'],
    ['XML declaration inside the root (old: ignored)', '<a><?xml version="1.0"?></a>'],
    ['PI without a target (old: ignored)', '<? x?><a/>'],
    ["element name with an empty local part (old: name '')", '<a:>x</a:>'],
    ["element name with two colons (old: name 'b:c')", '<a:b:c/>'],
    ["attribute name with two colons (old: kept 'x:y:z')", '<a x:y:z="1"/>'],
    ['attribute name with an empty local part (old: dropped)', '<a a:="1"/>'],
    ["Object.prototype name as element (old: renamed '__toString')", '<toString/>'],
    ["Object.prototype name as attribute (old: renamed '__valueOf')", '<a valueOf="1"/>'],
    ['no-break space ending a tag name (old: trimmed)', '<a\u00a0 b="1"/>'],
    ['no-break space in an end tag (old: trimmed)', '<a>x</a\u00a0>'],
    ['two byte order marks (old: both skipped)', '\ufeff\ufeff<a/>'],
  ])('%s', (_name, doc) => {
    expect(reasonOf(() => referenceParseXml(doc))).toBe('accepted');
    expect(reasonOf(() => parseXml(doc))).toBe('malformed');
  });

  it('says what and where', () => {
    const o = outcome(() => parseXml('<a>\n  <b></c>\n</a>'));
    expect(o.ok).toBe(false);
    if (!o.ok) {
      expect(o.error).toBeInstanceOf(XmlError);
      expect(o.message).toBe('malformed XML: expected </b> (line 2, column 6)');
    }
    const amp = outcome(() => parseXml('<a>\r\n<b>x & y</b></a>'));
    expect(!amp.ok && amp.message).toMatch(/'&'.*\(line 2, column 6\)$/);
  });

  it('throws nothing but XmlError on mangled fixtures, and accepts only what the reference accepts', () => {
    // Deterministic mutations (delete, insert a markup fragment, copy a character) of the fixtures.
    const docs = xmlFiles(FIXTURES).map((f) => fs.readFileSync(f, 'utf8'));
    const pieces = ['<', '>', '/', '"', "'", '&', ';', '=', ' ', '\n', '\r', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>', ':', '&amp;', '&#', '<a>', '</a>', '<b/>', '!', '<!', '-', '\u00a0'];
    let seed = 20240611;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    let accepted = 0;
    for (let k = 0; k < 600; k++) {
      let s = docs[Math.floor(rnd() * docs.length)]!;
      for (let m = 1 + Math.floor(rnd() * 3); m > 0; m--) {
        const at = Math.floor(rnd() * (s.length + 1));
        const op = rnd();
        if (op < 0.4) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 3));
        else if (op < 0.8) s = s.slice(0, at) + pieces[Math.floor(rnd() * pieces.length)]! + s.slice(at);
        else s = s.slice(0, at) + s[Math.floor(rnd() * s.length)]! + s.slice(at + 1);
      }
      const have = outcome(() => parseXml(s));
      if (!have.ok) {
        expect(have.error).toBeInstanceOf(XmlError);
        continue;
      }
      accepted++;
      const want = outcome(() => referenceParseXml(s));
      expect(want.ok).toBe(true);
      if (want.ok) expect(have.root).toEqual(want.root);
    }
    expect(accepted).toBeGreaterThan(50);
  });
});

describe('parseXml: deliberate differences from the previous implementation', () => {
  it('keeps CDATA content as written (the old code decoded references inside CDATA)', () => {
    const doc = '<a><![CDATA[&lt;b&gt; &amp; &#65;]]></a>';
    expect(parseXml(doc).text).toBe('&lt;b&gt; &amp; &#65;');
    expect(referenceParseXml(doc).text).toBe('<b> & A');
  });

  it('reads a PI whose content has an odd quote (the old parser looked for a closing quote)', () => {
    const doc = "<a><?pi don't?>x</a>";
    expect(parseXml(doc).text).toBe('x');
    expect(reasonOf(() => referenceParseXml(doc))).toBe('malformed');
  });

  it('nests deeper than 100 when maxDepth allows it (fast-xml-parser stopped at 100)', () => {
    const doc = `${'<e>'.repeat(150)}${'</e>'.repeat(150)}`;
    expect(reasonOf(() => parseXml(doc, { maxDepth: 200 }))).toBe('accepted');
    expect(reasonOf(() => referenceParseXml(doc, { maxDepth: 200 }))).toBe('malformed');
  });
});

describe('parseXml: limits', () => {
  it('refuses bodies over maxBytes, counted in UTF-8 bytes, before anything else', () => {
    const big = `<a>${'x'.repeat(XML_DEFAULT_MAX_BYTES)}</a>`;
    expect(reasonOf(() => parseXml(big))).toBe('too_large');
    expect(reasonOf(() => parseXml(Buffer.from(big)))).toBe('too_large');
    expect(reasonOf(() => parseXml('<!DOCTYPE a><a>', { maxBytes: 10 }))).toBe('too_large');

    const wide = `<a>${'é'.repeat(400)}</a>`; // 407 characters, 807 bytes
    for (const [maxBytes, want] of [
      [806, 'too_large'],
      [807, 'accepted'],
      [2000, 'accepted'],
    ] as const) {
      expect(reasonOf(() => parseXml(wide, { maxBytes }))).toBe(want);
      expect(reasonOf(() => parseXml(Buffer.from(wide), { maxBytes }))).toBe(want);
      expect(reasonOf(() => referenceParseXml(wide, { maxBytes }))).toBe(want);
    }
  });

  it.each([
    ['DOCTYPE', '<!DOCTYPE a><a/>'],
    ['DOCTYPE after the XML declaration', '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'],
    ['lower-case entity', '<!entity x "y"><a/>'],
    ['mixed-case ENTITY inside the root', '<a><!eNtItY x "y"></a>'],
    ['DOCTYPE inside a comment', '<a><!-- <!DOCTYPE a> --></a>'],
    ['ENTITY inside CDATA', '<a><![CDATA[<!ENTITY x "y">]]></a>'],
    ['DOCTYPE inside a PI', '<a><?pi <!DOCTYPE a>?></a>'],
    ['DOCTYPE in an attribute value', '<a b="<!DOCTYPE"/>'],
    ['DOCTYPE after a malformation', '<a></b><!DOCTYPE a>'],
    ['DOCTYPE after too deep nesting', `${'<a>'.repeat(100)}<!DOCTYPE a>`],
  ])('refuses %s as doctype', (_name, doc) => {
    expect(reasonOf(() => parseXml(doc))).toBe('doctype');
    expect(reasonOf(() => referenceParseXml(doc))).toBe('doctype');
  });

  it('refuses nesting deeper than maxDepth and accepts exactly maxDepth', () => {
    const nest = (n: number, inner = ''): string => `${'<e>'.repeat(n)}${inner}${'</e>'.repeat(n)}`;
    for (const parse of [parseXml, referenceParseXml]) {
      expect(reasonOf(() => parse(nest(5), { maxDepth: 5 }))).toBe('accepted');
      expect(reasonOf(() => parse(nest(6), { maxDepth: 5 }))).toBe('too_deep');
      // A self-closing element counts as one level at its depth.
      expect(reasonOf(() => parse(nest(4, '<s/>'), { maxDepth: 5 }))).toBe('accepted');
      expect(reasonOf(() => parse(nest(5, '<s/>'), { maxDepth: 5 }))).toBe('too_deep');
      // Siblings do not add up.
      expect(reasonOf(() => parse(`<r>${nest(3).repeat(50)}</r>`, { maxDepth: 4 }))).toBe('accepted');
      expect(reasonOf(() => parse(nest(XML_DEFAULT_MAX_DEPTH)))).toBe('accepted');
      expect(reasonOf(() => parse(nest(XML_DEFAULT_MAX_DEPTH + 1)))).toBe('too_deep');
    }
  });

  it('refuses 100,000 nested start tags quickly', () => {
    const hostile = '<a>'.repeat(100_000);
    const started = Date.now();
    expect(reasonOf(() => parseXml(hostile))).toBe('too_deep');
    expect(reasonOf(() => parseXml(hostile, { maxDepth: 1_000_000 }))).toBe('malformed'); // read to the end: unclosed
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('reads 100,000 levels without recursion when maxDepth allows it', () => {
    const deep = `${'<a>'.repeat(100_000)}x${'</a>'.repeat(100_000)}`;
    let el: XmlElement | undefined = parseXml(deep, { maxDepth: 100_000 });
    let depth = 0;
    while (el !== undefined) {
      depth++;
      if (el.children.length === 0) expect(el.text).toBe('x');
      el = el.children[0];
    }
    expect(depth).toBe(100_000);
  });
});
