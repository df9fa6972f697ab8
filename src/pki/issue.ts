/**
 * Device identity certificates: a PKCS#10 request, signature-checked, signed by Mooring's CA for TLS
 * client authentication. The subject and lifetime are ours to decide, never the device's; NotBefore is
 * the moment of issue (Windows refuses a back-dated one in the provisioning document).
 *
 * Both steps run on every enrollment (Apple SCEP, Windows MS-WSTEP), so both are done by hand in DER
 * (src/pki/der.ts) with node:crypto for the signatures: the request is walked and its signature checked
 * natively, and the certificate's TBSCertificate is written directly (the CA's subject Name copied
 * byte for byte as the issuer, the request's SubjectPublicKeyInfo copied byte for byte) and signed with
 * a cached native key. A request the DER reader does not handle (BER, other algorithms) goes to
 * @peculiar/x509, which is also the reference implementation the tests compare against.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { Errors } from '../core/errors';
import type { CertificateAuthority } from './ca';
import {
  FALLBACK,
  SIGNATURES,
  algorithmOid,
  asciiString,
  certParts,
  checkName,
  children,
  expectTag,
  extensionValue,
  octets,
  oid,
  pem,
  pemToDer,
  printable,
  publicKeyOf,
  readOid,
  readTlv,
  readWhole,
  seq,
  set,
  subjectPublicKeyBits,
  tlv,
  unsignedInteger,
  utf8,
  verifyWith,
  walk,
  x509Time,
  type Tlv,
} from './der';

const SIGNING = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;
const CHALLENGE_PASSWORD = '1.2.840.113549.1.9.7';

export interface IssuedCertificate {
  der: Buffer;
  pem: string;
  serial: string;
  sha256: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
}

/** A PKCS#10 request as read by `readCsr` (signature checked) or `peekCsr` (not checked). */
export interface CertificateRequest {
  /** The whole request. */
  der: Buffer;
  /** The subject Name the device asked for (DER). Not used for issuing: the subject is ours to decide. */
  subject: Buffer;
  /** The SubjectPublicKeyInfo (DER), copied verbatim into the certificate. */
  subjectPublicKeyInfo: Buffer;
  /** The PKCS#9 challengePassword attribute, when present. */
  challengePassword?: string;
  /** The request's signature algorithm (OID). */
  signatureAlgorithm: string;
}

/** What `issueClientCertificate` takes: our own request, or one made or read with @peculiar/x509. */
export type CsrInput = CertificateRequest | x509.Pkcs10CertificateRequest;

// ---------------------------------------------------------------------------------------------------
// Reading a request

/** How many requests each path read (for tests and diagnostics). */
export const csrPaths = { fast: 0, x509: 0 };

/** Reads and checks a PKCS#10 request; a bad one is `invalid_params` with the reason. */
export async function readCsr(der: Buffer): Promise<CertificateRequest> {
  let fast: { csr: CertificateRequest; parts: CsrParts } | undefined;
  try {
    fast = parseCsrFast(der);
  } catch {
    fast = undefined;
  }
  if (fast) {
    let verified: boolean | undefined;
    try {
      verified = verifyCsrFast(der, fast.parts);
    } catch {
      verified = undefined; // a key or algorithm node:crypto refuses: @peculiar/x509 decides
    }
    if (verified !== undefined) {
      csrPaths.fast++;
      if (!verified) throw Errors.of('invalid_params', 'the certificate request signature does not verify');
      return fast.csr;
    }
  }
  csrPaths.x509++;
  return fromX509(await readCsrWithX509(der));
}

/**
 * The reference implementation (@peculiar/x509 over WebCrypto): what `readCsr` falls back to, and what
 * the tests compare against.
 */
export async function readCsrWithX509(der: Buffer): Promise<x509.Pkcs10CertificateRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
  } catch (err) {
    throw Errors.of('invalid_params', `the certificate request is not PKCS#10: ${(err as Error).message}`);
  }
  if (!(await csr.verify())) throw Errors.of('invalid_params', 'the certificate request signature does not verify');
  return csr;
}

/**
 * A PKCS#10 request's fields read by the DER fast path, signature NOT checked (use `readCsr` for that);
 * undefined for a request the fast path leaves to @peculiar/x509 (BER, unusual attribute encodings, ...).
 */
export function peekCsr(der: Buffer): CertificateRequest | undefined {
  try {
    return parseCsrFast(der).csr;
  } catch {
    return undefined;
  }
}

interface CsrParts {
  info: Tlv;
  signatureAlgorithm: string;
  signature: Tlv;
  spki: Tlv;
}

/**
 * CertificationRequest ::= SEQUENCE { certificationRequestInfo SEQUENCE { version INTEGER, subject Name,
 * subjectPKInfo SubjectPublicKeyInfo, attributes [0] IMPLICIT SET OF Attribute }, signatureAlgorithm,
 * signature BIT STRING }. Throws FALLBACK for anything it does not read exactly as @peculiar/x509 would.
 */
function parseCsrFast(der: Buffer): { csr: CertificateRequest; parts: CsrParts } {
  const top = readWhole(der, 0x30);
  walk(der, top);
  const outer = children(der, top);
  if (outer.length !== 3) throw FALLBACK;
  const info = expectTag(outer[0], 0x30);
  const signatureAlgorithm = algorithmOid(der, outer[1]);
  const signature = expectTag(outer[2], 0x03);
  if (signature.body === signature.end || der[signature.body] !== 0) throw FALLBACK;

  const fields = children(der, info);
  if (fields.length < 3 || fields.length > 4) throw FALLBACK;
  expectTag(fields[0], 0x02);
  const subject = checkName(der, fields[1]);
  const spki = expectTag(fields[2], 0x30);
  const spkiParts = children(der, spki);
  if (spkiParts.length !== 2) throw FALLBACK;
  algorithmOid(der, spkiParts[0]);
  expectTag(spkiParts[1], 0x03);

  let challengePassword: string | undefined;
  let seenChallenge = false;
  if (fields[3]) {
    for (const attr of children(der, expectTag(fields[3], 0xa0))) {
      const parts = children(der, expectTag(attr, 0x30));
      if (parts.length !== 2) throw FALLBACK;
      const type = readOid(der, parts[0]);
      const values = children(der, expectTag(parts[1], 0x31));
      if (type !== CHALLENGE_PASSWORD || seenChallenge) continue;
      seenChallenge = true;
      // A DirectoryString: PrintableString or UTF8String of ASCII here; the rest is left to @peculiar/x509.
      if (values.length !== 1 || (values[0]!.tag !== 0x13 && values[0]!.tag !== 0x0c)) throw FALLBACK;
      challengePassword = asciiString(der, values[0]);
    }
  }
  const csr: CertificateRequest = {
    der,
    subject: der.subarray(subject.start, subject.end),
    subjectPublicKeyInfo: der.subarray(spki.start, spki.end),
    signatureAlgorithm,
    ...(challengePassword === undefined ? {} : { challengePassword }),
  };
  return { csr, parts: { info, signatureAlgorithm, signature, spki } };
}

/** The signature check, natively; undefined for an algorithm or key left to @peculiar/x509. */
function verifyCsrFast(der: Buffer, parts: CsrParts): boolean | undefined {
  const algorithm = SIGNATURES.get(parts.signatureAlgorithm);
  if (!algorithm?.hash) return undefined;
  const key = publicKeyOf(der, parts.spki);
  if (!key || key.kind !== algorithm.kind) return undefined;
  const signed = der.subarray(parts.info.start, parts.info.end);
  return verifyWith(key, algorithm.hash, signed, der, parts.signature.body + 1, parts.signature.end);
}

function fromX509(csr: x509.Pkcs10CertificateRequest): CertificateRequest {
  let challengePassword: string | undefined;
  try {
    const attr = csr.getAttribute(CHALLENGE_PASSWORD);
    if (attr) challengePassword = attr instanceof x509.ChallengePasswordAttribute ? attr.password : new x509.ChallengePasswordAttribute(attr.rawData).password;
  } catch {
    challengePassword = undefined; // unreadable: not ours to judge here
  }
  const der = Buffer.from(csr.rawData);
  let signatureAlgorithm = '';
  try {
    signatureAlgorithm = algorithmOid(der, children(der, readTlv(der, 0, der.length))[1]);
  } catch {
    // BER the DER reader does not follow: the OID stays unknown
  }
  return {
    der,
    subject: Buffer.from(csr.subjectName.toArrayBuffer()),
    subjectPublicKeyInfo: Buffer.from(csr.publicKey.rawData),
    signatureAlgorithm,
    ...(challengePassword === undefined ? {} : { challengePassword }),
  };
}

// ---------------------------------------------------------------------------------------------------
// Issuing

const ID_CE = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  authorityKeyIdentifier: '2.5.29.35',
} as const;

const VERSION_3 = Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]);
const COMMON_NAME = '2.5.4.3';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const TRUE = Buffer.from([0x01, 0x01, 0xff]);

/** The fixed extensions: basicConstraints cA=false, keyUsage digitalSignature|keyEncipherment, extKeyUsage clientAuth. */
const FIXED_EXTENSIONS = [
  seq(oid(ID_CE.basicConstraints), TRUE, octets(seq())),
  seq(oid(ID_CE.keyUsage), TRUE, octets(Buffer.from([0x03, 0x02, 0x05, 0xa0]))),
  seq(oid(ID_CE.extKeyUsage), octets(seq(oid(CLIENT_AUTH)))),
];

/** What issuing needs from the CA, derived once per CA. */
interface CaSigner {
  certPem: string;
  keyPem: string | undefined;
  key: crypto.KeyObject;
  /** signatureAlgorithm (AlgorithmIdentifier DER) matching the key. */
  signatureAlgorithm: Buffer;
  /** The CA certificate's subject Name, verbatim. */
  issuer: Buffer;
  /** The authorityKeyIdentifier extension (DER). */
  authorityKeyIdentifier: Buffer;
}

const caSigners = new WeakMap<object, CaSigner>();

/** The CA's signing material; undefined when the CA certificate is one the DER reader leaves alone. */
function caSigner(ca: CertificateAuthority): CaSigner | undefined {
  const hit = caSigners.get(ca);
  if (hit && hit.certPem === ca.certPem && hit.keyPem === ca.keyPem) return hit;
  let signer: CaSigner;
  try {
    const certDer = pemToDer(ca.certPem);
    const cert = certParts(certDer, readWhole(certDer, 0x30));
    const key = ca.keyPem ? crypto.createPrivateKey(ca.keyPem) : crypto.KeyObject.from(ca.keys.privateKey);
    let signatureAlgorithm: Buffer;
    if (key.asymmetricKeyType === 'rsa') signatureAlgorithm = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
    else if (key.asymmetricKeyType === 'ec') signatureAlgorithm = seq(oid('1.2.840.10045.4.3.2'));
    else return undefined;
    // RFC 5280 §4.2.1.1: the CA's own subjectKeyIdentifier; the SHA-1 of its key bits when it has none.
    let keyId: Buffer;
    const ski = extensionValue(certDer, cert, ID_CE.subjectKeyIdentifier);
    if (ski) {
      const inner = readTlv(ski, 0, ski.length);
      if (inner.tag !== 0x04 || inner.end !== ski.length) throw FALLBACK;
      keyId = Buffer.from(ski.subarray(inner.body, inner.end));
    } else {
      keyId = crypto.createHash('sha1').update(subjectPublicKeyBits(certDer, cert.spki)).digest();
    }
    signer = {
      certPem: ca.certPem,
      keyPem: ca.keyPem,
      key,
      signatureAlgorithm,
      issuer: Buffer.from(certDer.subarray(cert.subject.start, cert.subject.end)),
      authorityKeyIdentifier: seq(oid(ID_CE.authorityKeyIdentifier), octets(seq(tlv(0x80, [keyId])))),
    };
  } catch {
    return undefined;
  }
  caSigners.set(ca, signer);
  return signer;
}

/** How many certificates each path issued (for tests and diagnostics). */
export const issuePaths = { fast: 0, x509: 0 };

/** The common name as it goes into the certificate: characters that are special in a DN string are replaced. */
function cleanCommonName(commonName: string): string {
  return commonName.replace(/[,+="\\<>;]/g, '_');
}

export async function issueClientCertificate(
  ca: CertificateAuthority,
  csr: CsrInput,
  opts: { commonName: string; days?: number; now?: Date },
): Promise<IssuedCertificate> {
  const signer = caSigner(ca);
  if (!signer) {
    issuePaths.x509++;
    return issueClientCertificateWithX509(ca, csr, opts);
  }
  issuePaths.fast++;
  const notBefore = opts.now ?? new Date();
  const notAfter = new Date(notBefore.getTime() + (opts.days ?? 365) * DAY);
  const serial = randomSerial();
  const spki = 'subjectPublicKeyInfo' in csr ? csr.subjectPublicKeyInfo : Buffer.from(csr.publicKey.rawData);
  // RFC 5280 §4.2.1.2 method 1: the SHA-1 of the subjectPublicKey BIT STRING's bits.
  const spkiBits = subjectPublicKeyBits(spki, readWhole(spki, 0x30));
  const cn = cleanCommonName(opts.commonName);
  const tbs = seq(
    VERSION_3,
    unsignedInteger(serial),
    signer.signatureAlgorithm,
    signer.issuer,
    seq(x509Time(notBefore), x509Time(notAfter)),
    seq(set(seq(oid(COMMON_NAME), PRINTABLE.test(cn) ? printable(cn) : utf8(cn)))),
    spki,
    tlv(0xa3, [
      seq(
        ...FIXED_EXTENSIONS,
        signer.authorityKeyIdentifier,
        seq(oid(ID_CE.subjectKeyIdentifier), octets(octets(crypto.createHash('sha1').update(spkiBits).digest()))),
      ),
    ]),
  );
  const signature = crypto.sign('sha256', tbs, signer.key);
  const der = seq(tbs, signer.signatureAlgorithm, tlv(0x03, [Buffer.from([0]), signature]));
  return {
    der,
    pem: pem('CERTIFICATE', der),
    serial: serial.toString('hex'),
    sha256: crypto.createHash('sha256').update(der).digest('hex'),
    subject: `CN=${escapeDnValue(cn)}`,
    notBefore,
    notAfter,
  };
}

/** PrintableString's alphabet (X.680): what @peculiar/x509 writes as PrintableString, the rest as UTF8String. */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** A DN attribute value as @peculiar/x509's Name.toString() renders it (RFC 4514-style escapes). */
function escapeDnValue(value: string): string {
  return value
    .replace(/([,+"\\<>;])/g, '\\$1')
    .replace(/^([ #])/, '\\$1')
    .replace(/([ ]$)/, '\\$1')
    .replace(/([\r\n\t])/, (c) => `\\${Buffer.from(c, 'utf8').toString('hex').toUpperCase()}`);
}

/** 16 random bytes, a positive INTEGER of exactly 16 bytes (so the hex is the certificate's serial). */
function randomSerial(): Buffer {
  const serial = crypto.randomBytes(16);
  serial[0]! &= 0x7f;
  if (serial[0] === 0) serial[0] = 0x01;
  return serial;
}

/**
 * The reference implementation (@peculiar/x509's generator over WebCrypto): what `issueClientCertificate`
 * falls back to for a CA certificate the DER reader leaves alone, and what the tests compare against.
 */
export async function issueClientCertificateWithX509(
  ca: CertificateAuthority,
  csr: CsrInput,
  opts: { commonName: string; days?: number; now?: Date },
): Promise<IssuedCertificate> {
  const notBefore = opts.now ?? new Date();
  const notAfter = new Date(notBefore.getTime() + (opts.days ?? 365) * DAY);
  const serial = randomSerial();
  const publicKey = 'subjectPublicKeyInfo' in csr ? new x509.PublicKey(csr.subjectPublicKeyInfo) : csr.publicKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: `CN=${cleanCommonName(opts.commonName)}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
  const der = Buffer.from(cert.rawData);
  return {
    der,
    pem: cert.toString('pem'),
    serial: serial.toString('hex'),
    sha256: crypto.createHash('sha256').update(der).digest('hex'),
    subject: cert.subject,
    notBefore,
    notAfter,
  };
}

/**
 * Checks a client certificate the way device endpoints must: signed by our CA, for client
 * authentication, and within its validity. Returns its SHA-256 (the key bound to an enrollment).
 */
export function verifyClientCertificate(der: Buffer, caPem: string, now = new Date()): { ok: true; sha256: string } | { ok: false; reason: string } {
  const sha256 = crypto.createHash('sha256').update(der).digest('hex');
  // A device shows the same certificate at every session: check its signature once, its dates always.
  const key = `${sha256}:${caHash(caPem)}`;
  let known = verified.get(key);
  if (!known) {
    const checked = checkIssuedByUs(der, caPem);
    if (!checked.ok) return checked;
    known = checked.validity;
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
    verified.set(key, known);
  }
  if (now < known.from || now > known.to) return { ok: false, reason: 'expired or not yet valid' };
  return { ok: true, sha256 };
}

const VERIFIED_CACHE_SIZE = 50_000; // more than the devices polling in rotation
const verified = new Map<string, { from: Date; to: Date }>();
const caObjects = new Map<string, { hash: string; cert: crypto.X509Certificate }>();

function caOf(caPem: string): { hash: string; cert: crypto.X509Certificate } {
  let ca = caObjects.get(caPem);
  if (!ca) {
    ca = { hash: crypto.createHash('sha256').update(caPem).digest('hex').slice(0, 16), cert: new crypto.X509Certificate(caPem) };
    caObjects.set(caPem, ca);
  }
  return ca;
}

function caHash(caPem: string): string {
  return caOf(caPem).hash;
}

function checkIssuedByUs(der: Buffer, caPem: string): { ok: true; validity: { from: Date; to: Date } } | { ok: false; reason: string } {
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(der);
  } catch {
    return { ok: false, reason: 'not an X.509 certificate' };
  }
  const ca = caOf(caPem).cert;
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return { ok: false, reason: 'not issued by this server' };
  if (cert.keyUsage && !cert.keyUsage.includes('1.3.6.1.5.5.7.3.2')) return { ok: false, reason: 'not for client authentication' };
  return { ok: true, validity: { from: new Date(cert.validFrom), to: new Date(cert.validTo) } };
}
