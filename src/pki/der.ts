/**
 * Small DER helpers for the hot PKI paths (CMS verification, SCEP, certificate issuance): a reader
 * that walks definite-length encodings by offset without building objects, and a writer for the few
 * structures we produce by hand. Both are deliberately narrow. The reader throws `FALLBACK` (a symbol:
 * no stack trace is captured) for anything it does not handle — indefinite lengths, multi-byte tags,
 * unexpected tags — and the callers then hand the input to a full ASN.1 library, which decides.
 */
import crypto from 'node:crypto';

/** Thrown by the reader for input it leaves to the library path. Never escapes a module's public API. */
export const FALLBACK: unique symbol = Symbol('der: leave to the library');

// ---------------------------------------------------------------------------------------------------
// Reading

/** One TLV: its tag byte, where it starts, where its value starts, where it ends. */
export interface Tlv {
  tag: number;
  start: number;
  body: number;
  end: number;
}

/** The TLV at `pos`, which must end by `limit`. Indefinite lengths and multi-byte tags throw FALLBACK. */
export function readTlv(b: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw FALLBACK;
  const tag = b[pos]!;
  if ((tag & 0x1f) === 0x1f) throw FALLBACK;
  let len = b[pos + 1]!;
  let body = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > limit) throw FALLBACK;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[body++]!;
  }
  const end = body + len;
  if (end > limit) throw FALLBACK;
  return { tag, start: pos, body, end };
}

/** The single TLV that fills `b` exactly (no trailing bytes), with tag `tag`. */
export function readWhole(b: Buffer, tag: number): Tlv {
  const top = readTlv(b, 0, b.length);
  if (top.end !== b.length || top.tag !== tag) throw FALLBACK;
  return top;
}

/** The TLVs inside a constructed one, which must fill it exactly. */
export function children(b: Buffer, parent: Tlv): Tlv[] {
  if (!(parent.tag & 0x20)) throw FALLBACK;
  const out: Tlv[] = [];
  for (let pos = parent.body; pos < parent.end; ) {
    const child = readTlv(b, pos, parent.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

/**
 * Checks that every constructed TLV under `node` (itself included) is filled exactly by its children,
 * as a full BER decoder would on parsing. Primitive contents are not looked into.
 */
export function walk(b: Buffer, node: Tlv, depth = 0): void {
  const tag = node.tag;
  if (!(tag & 0x20)) {
    // The primitive encodings a BER decoder (asn1js) refuses outright.
    if (tag === 0x06 || tag === 0x0d) {
      if (node.body === node.end || b[node.end - 1]! & 0x80) throw FALLBACK; // unterminated OID arc
    } else if (tag === 0x03) {
      if (node.body === node.end || b[node.body]! > 7) throw FALLBACK; // unused-bits octet
    } else if (tag === 0x10 || tag === 0x11 || tag === 0x00) {
      throw FALLBACK; // a primitive SEQUENCE or SET; end-of-contents
    }
    return;
  }
  if (tag < 0x40 && PRIMITIVE_ONLY.has(tag & 0x1f)) throw FALLBACK;
  if (depth > 64) throw FALLBACK;
  for (let pos = node.body; pos < node.end; ) {
    const child = readTlv(b, pos, node.end);
    walk(b, child, depth + 1);
    pos = child.end;
  }
}

/** Universal types that have no constructed encoding (asn1js refuses one). */
const PRIMITIVE_ONLY = new Set([1, 2, 5, 6, 9, 13, 14, 23, 24, 31, 32, 33, 34]);

export function expectTag(t: Tlv | undefined, tag: number): Tlv {
  if (!t || t.tag !== tag) throw FALLBACK;
  return t;
}

/** An OBJECT IDENTIFIER in dotted form (minimal encoding only). */
export function readOid(b: Buffer, t: Tlv | undefined): string {
  const node = expectTag(t, 0x06);
  if (node.body === node.end || b[node.end - 1]! & 0x80) throw FALLBACK;
  let out = '';
  let arc = 0;
  for (let i = node.body; i < node.end; i++) {
    const byte = b[i]!;
    if (byte === 0x80 && arc === 0) throw FALLBACK; // a non-minimal arc: not DER
    arc = arc * 128 + (byte & 0x7f);
    if (arc > Number.MAX_SAFE_INTEGER / 128) throw FALLBACK;
    if (byte & 0x80) continue;
    out += out === '' ? (arc < 40 ? `0.${arc}` : arc < 80 ? `1.${arc - 40}` : `2.${arc - 80}`) : `.${arc}`;
    arc = 0;
  }
  return out;
}

/** An AlgorithmIdentifier's OID (parameters are not looked at). */
export function algorithmOid(b: Buffer, t: Tlv | undefined): string {
  const parts = children(b, expectTag(t, 0x30));
  if (parts.length < 1 || parts.length > 2) throw FALLBACK;
  return readOid(b, parts[0]);
}

/**
 * An OCTET STRING's octets: primitive, or constructed from primitive chunks. Deeper nesting throws
 * FALLBACK. A primitive one is a view into `b`, not a copy.
 */
export function octetsOf(b: Buffer, t: Tlv | undefined): Buffer {
  if (t?.tag === 0x04) return b.subarray(t.body, t.end);
  const chunks = children(b, expectTag(t, 0x24));
  return Buffer.concat(chunks.map((c) => octetsOf(b, expectTag(c, 0x04))));
}

/** The text of a primitive PrintableString, UTF8String or IA5String holding ASCII only; else FALLBACK. */
export function asciiString(b: Buffer, t: Tlv | undefined): string {
  if (!t || (t.tag !== 0x13 && t.tag !== 0x0c && t.tag !== 0x16)) throw FALLBACK;
  for (let i = t.body; i < t.end; i++) if (b[i]! >= 0x80) throw FALLBACK;
  return b.toString('latin1', t.body, t.end);
}

export const sameBytes = (b: Buffer, x: Tlv, y: Tlv): boolean => b.subarray(x.start, x.end).equals(b.subarray(y.start, y.end));

/** Checks a Name's shape: SEQUENCE OF SET OF SEQUENCE { OID, value }. */
export function checkName(b: Buffer, name: Tlv | undefined): Tlv {
  for (const rdn of children(b, expectTag(name, 0x30))) {
    const atvs = children(b, expectTag(rdn, 0x31));
    if (atvs.length === 0) throw FALLBACK;
    for (const atv of atvs) {
      const parts = children(b, expectTag(atv, 0x30));
      if (parts.length !== 2) throw FALLBACK;
      readOid(b, parts[0]);
    }
  }
  return name!;
}

/** The parts of an X.509 certificate the PKI code needs. */
export interface CertParts {
  node: Tlv;
  tbs: Tlv;
  serial: Tlv;
  issuer: Tlv;
  subject: Tlv;
  spki: Tlv;
  /** The [3] EXPLICIT extensions' inner SEQUENCE OF Extension, if any. */
  extensions?: Tlv;
}

/**
 * A certificate's fields, with their shapes checked about as far as an X.509 library's schema does
 * (tags of every TBSCertificate field, names, times, the extension list); FALLBACK otherwise.
 */
export function certParts(b: Buffer, node: Tlv): CertParts {
  const outer = children(b, expectTag(node, 0x30));
  if (outer.length !== 3) throw FALLBACK;
  const tbsNode = expectTag(outer[0], 0x30);
  const tbs = children(b, tbsNode);
  algorithmOid(b, outer[1]);
  expectTag(outer[2], 0x03);
  let i = 0;
  if (tbs[0]?.tag === 0xa0) {
    const v = children(b, tbs[i++]!);
    if (v.length !== 1) throw FALLBACK;
    expectTag(v[0], 0x02);
  }
  const serial = expectTag(tbs[i++], 0x02);
  algorithmOid(b, tbs[i++]);
  const issuer = checkName(b, tbs[i++]);
  const validity = children(b, expectTag(tbs[i++], 0x30));
  if (validity.length !== 2) throw FALLBACK;
  for (const t of validity) if (t.tag !== 0x17 && t.tag !== 0x18) throw FALLBACK;
  const subject = checkName(b, tbs[i++]);
  const spki = expectTag(tbs[i++], 0x30);
  const spkiParts = children(b, spki);
  if (spkiParts.length !== 2) throw FALLBACK;
  algorithmOid(b, spkiParts[0]);
  expectTag(spkiParts[1], 0x03);
  if (tbs[i]?.tag === 0x81) i++;
  if (tbs[i]?.tag === 0x82) i++;
  let extensions: Tlv | undefined;
  if (tbs[i]?.tag === 0xa3) {
    const wrapped = children(b, tbs[i++]!);
    if (wrapped.length !== 1) throw FALLBACK;
    extensions = expectTag(wrapped[0], 0x30);
    for (const ext of children(b, extensions)) {
      const parts = children(b, expectTag(ext, 0x30));
      if (parts.length < 2 || parts.length > 3) throw FALLBACK;
      readOid(b, parts[0]);
      if (parts.length === 3) expectTag(parts[1], 0x01);
      expectTag(parts[parts.length - 1], 0x04);
    }
  }
  if (i !== tbs.length) throw FALLBACK;
  return { node, tbs: tbsNode, serial, issuer, subject, spki, ...(extensions ? { extensions } : {}) };
}

/** The extnValue octets of the extension `oid` in a certificate, if present. */
export function extensionValue(b: Buffer, cert: CertParts, oid: string): Buffer | undefined {
  if (!cert.extensions) return undefined;
  for (const ext of children(b, cert.extensions)) {
    const parts = children(b, ext);
    if (readOid(b, parts[0]) === oid) {
      const value = parts[parts.length - 1]!;
      return b.subarray(value.body, value.end);
    }
  }
  return undefined;
}

/** The contents of a SubjectPublicKeyInfo's BIT STRING (without the unused-bits octet). */
export function subjectPublicKeyBits(b: Buffer, spki: Tlv): Buffer {
  const parts = children(b, expectTag(spki, 0x30));
  const bits = expectTag(parts[1], 0x03);
  if (parts.length !== 2 || bits.body === bits.end || b[bits.body] !== 0) throw FALLBACK;
  return b.subarray(bits.body + 1, bits.end);
}

// ---------------------------------------------------------------------------------------------------
// Keys and signatures

/** Digest algorithms by OID, as node:crypto names. */
export const DIGESTS: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/**
 * Signature algorithms verified natively: the key type, and the hash (none for rsaEncryption, where
 * CMS takes the signer's digest algorithm).
 */
export const SIGNATURES = new Map<string, { kind: 'rsa' | 'ec'; hash?: string }>([
  ['1.2.840.113549.1.1.1', { kind: 'rsa' }],
  ['1.2.840.113549.1.1.5', { kind: 'rsa', hash: 'sha1' }],
  ['1.2.840.113549.1.1.11', { kind: 'rsa', hash: 'sha256' }],
  ['1.2.840.113549.1.1.12', { kind: 'rsa', hash: 'sha384' }],
  ['1.2.840.113549.1.1.13', { kind: 'rsa', hash: 'sha512' }],
  ['1.2.840.10045.4.1', { kind: 'ec', hash: 'sha1' }],
  ['1.2.840.10045.4.3.2', { kind: 'ec', hash: 'sha256' }],
  ['1.2.840.10045.4.3.3', { kind: 'ec', hash: 'sha384' }],
  ['1.2.840.10045.4.3.4', { kind: 'ec', hash: 'sha512' }],
]);

/** The curves WebCrypto verifies, by OpenSSL name, with their field size in bytes. */
export const CURVES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66 };

/** The same curves by OID, with their JWK names. */
export const JWK_CURVES: Record<string, { crv: string; size: number }> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', size: 32 },
  '1.3.132.0.34': { crv: 'P-384', size: 48 },
  '1.3.132.0.35': { crv: 'P-521', size: 66 },
};

/** A public key ready for node:crypto. */
export type NativePublicKey = { kind: 'rsa'; key: crypto.KeyObject } | { kind: 'ec'; key: crypto.KeyObject; size: number };

/**
 * The public key of a SubjectPublicKeyInfo; null for a key of another type or curve. Imported the cheap
 * way where there is one: OpenSSL 3 takes ~150 µs to decode an SPKI, ~10 µs for the same RSA key as
 * PKCS#1 and about half for an EC point as JWK.
 */
export function publicKeyOf(b: Buffer, spki: Tlv): NativePublicKey | null {
  const parts = children(b, spki);
  if (parts.length !== 2) throw FALLBACK;
  const alg = children(b, expectTag(parts[0], 0x30));
  const bits = expectTag(parts[1], 0x03);
  const keyOid = readOid(b, alg[0]);
  const params = alg[1];
  // Unused bits in a key: WebCrypto-based readers ignore them, OpenSSL does not: left to the library.
  if (bits.end === bits.body || b[bits.body] !== 0) throw FALLBACK;
  const point = b.subarray(bits.body + 1, bits.end);
  if (keyOid === '1.2.840.113549.1.1.1') {
    return { kind: 'rsa', key: crypto.createPublicKey({ key: point, format: 'der', type: 'pkcs1' }) };
  }
  const curve = keyOid === '1.2.840.10045.2.1' && params?.tag === 0x06 ? JWK_CURVES[readOid(b, params)] : undefined;
  if (curve && point.length === 1 + 2 * curve.size && point[0] === 0x04) {
    const x = point.subarray(1, 1 + curve.size).toString('base64url');
    const y = point.subarray(1 + curve.size).toString('base64url');
    return { kind: 'ec', key: crypto.createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' }), size: curve.size };
  }
  // Anything else (compressed points, other algorithms): OpenSSL decides what the key is.
  const key = crypto.createPublicKey({ key: b.subarray(spki.start, spki.end), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType === 'rsa') return { kind: 'rsa', key };
  if (key.asymmetricKeyType === 'ec') {
    const size = CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
    return size ? { kind: 'ec', key, size } : null;
  }
  return null;
}

/**
 * An ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) in b[start, end) as r || s, each left-padded
 * to the field size, read as leniently as WebCrypto-based libraries read it (redundant leading zeros,
 * missing sign bytes); undefined if it is not one, which cannot verify.
 */
export function ecdsaP1363(b: Buffer, start: number, end: number, size: number): Buffer | undefined {
  try {
    const seq = readTlv(b, start, end);
    if (seq.tag !== 0x30 || seq.end !== end) return undefined;
    const ints = children(b, seq);
    if (ints.length !== 2 || ints[0]!.tag !== 0x02 || ints[1]!.tag !== 0x02) return undefined;
    const out = Buffer.alloc(2 * size);
    for (let n = 0; n < 2; n++) {
      let from = ints[n]!.body;
      const to = ints[n]!.end;
      while (from < to && b[from] === 0) from++;
      if (to - from > size) return undefined;
      b.copy(out, (n + 1) * size - (to - from), from, to);
    }
    return out;
  } catch {
    return undefined;
  }
}

/** Verifies `value` (in b[start, end)) over `data` with `key` and `hash`; ECDSA values are DER. */
export function verifyWith(key: NativePublicKey, hash: string, data: Buffer, b: Buffer, start: number, end: number): boolean {
  if (key.kind === 'rsa') return crypto.verify(hash, data, key.key, b.subarray(start, end));
  const p1363 = ecdsaP1363(b, start, end, key.size);
  return p1363 !== undefined && crypto.verify(hash, data, { key: key.key, dsaEncoding: 'ieee-p1363' }, p1363);
}

// ---------------------------------------------------------------------------------------------------
// Writing

export function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.from([0x84, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** A TLV with `tag` around the concatenation of `parts`. */
export function tlv(tag: number, parts: readonly Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const head = encodeLength(len);
  const out = Buffer.allocUnsafe(1 + head.length + len);
  out[0] = tag;
  head.copy(out, 1);
  let pos = 1 + head.length;
  for (const p of parts) pos += p.copy(out, pos);
  return out;
}

export const seq = (...parts: Buffer[]): Buffer => tlv(0x30, parts);
export const set = (...parts: Buffer[]): Buffer => tlv(0x31, parts);
export const octets = (b: Buffer): Buffer => tlv(0x04, [b]);
export const printable = (s: string): Buffer => tlv(0x13, [Buffer.from(s, 'latin1')]);
export const utf8 = (s: string): Buffer => tlv(0x0c, [Buffer.from(s, 'utf8')]);
export const NULL = Buffer.from([0x05, 0x00]);

/** A small non-negative INTEGER. */
export function smallInteger(n: number): Buffer {
  if (n < 0 || n > 0x7f) throw new RangeError('smallInteger takes 0..127');
  return Buffer.from([0x02, 0x01, n]);
}

/** A non-negative INTEGER from its big-endian magnitude, minimally encoded. */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  return m[0]! & 0x80 ? tlv(0x02, [Buffer.from([0]), m]) : tlv(0x02, [m]);
}

const oidCache = new Map<string, Buffer>();

/** An OBJECT IDENTIFIER (cached: the same few are written over and over). */
export function oid(dotted: string): Buffer {
  let hit = oidCache.get(dotted);
  if (!hit) {
    const arcs = dotted.split('.').map(Number);
    const out: number[] = [];
    const push = (v: number) => {
      const chunk: number[] = [v & 0x7f];
      for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
      out.push(...chunk);
    };
    push(arcs[0]! * 40 + arcs[1]!);
    for (const a of arcs.slice(2)) push(a);
    hit = tlv(0x06, [Buffer.from(out)]);
    if (oidCache.size < 256) oidCache.set(dotted, hit);
  }
  return hit;
}

/** UTCTime, always (the CMS signingTime attribute). */
export function utcTime(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-11-21T19:55:55.123Z
  const s = iso.slice(2, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z';
  return tlv(0x17, [Buffer.from(s, 'latin1')]);
}

/** An X.509 Time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050; whole seconds. */
export function x509Time(d: Date): Buffer {
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError('date out of range for an X.509 Time');
  if (year >= 1950 && year < 2050) return utcTime(d);
  const iso = d.toISOString();
  const s = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z';
  return tlv(0x18, [Buffer.from(s, 'latin1')]);
}

/** PEM armour, 64 characters a line, no trailing newline (as @peculiar/x509 writes it). */
export function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----`;
}

/** The first PEM block's DER (any label). */
export function pemToDer(text: string): Buffer {
  const m = /-----BEGIN [^-]+-----([\s\S]+?)-----END [^-]+-----/.exec(text);
  if (!m) throw new Error('not PEM');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}
