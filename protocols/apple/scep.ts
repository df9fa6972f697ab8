/**
 * SCEP (RFC 8894) message codec for Apple devices: GetCACaps text, the GetCACert body, reading a
 * PKIOperation request (PKCSReq / RenewalReq) and writing the CertRep reply. No HTTP and no database:
 * the caller decides whether a request is accepted (challenge, renewal signer) and issues the
 * certificate.
 *
 * Reading a request has two implementations that decide alike:
 * - the fast path (`parseFast`) walks the definite-length DER by offset (src/pki/der.ts): the outer
 *   SignedData, its one signer and signed attributes, the signature checked with node:crypto against
 *   the signer certificate inside the message, then the EnvelopedData opened with the CA key (a raw
 *   native RSA operation with our own constant-time PKCS#1 v1.5 unpadding: Node 20 refuses PKCS#1 v1.5
 *   private decryption) and native AES / 3DES / DES-CBC, then the CSR read by hand;
 * - the reference path (`parsePkiMessageWithPkijs`): pkijs for the SignedData, node-forge for the
 *   EnvelopedData structure, @peculiar/x509 for the CSR. Everything the fast path does not read exactly
 *   (BER indefinite lengths, other algorithms, recipients matched only after name normalisation, ...)
 *   goes there; the fast path only ever decides where the reference path would decide the same.
 *
 * The CertRep is written by hand in DER and signed / encrypted with Node's native crypto (RSA PKCS#1
 * v1.5 signing and public-key encryption, AES-256-CBC or 3DES-CBC).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';
import {
  DIGESTS,
  FALLBACK,
  NULL,
  SIGNATURES,
  algorithmOid,
  asciiString,
  certParts,
  checkName,
  children,
  expectTag,
  octets,
  octetsOf,
  oid,
  pemToDer,
  printable,
  publicKeyOf,
  readOid,
  readTlv,
  readWhole,
  sameBytes,
  seq,
  smallInteger,
  tlv,
  utcTime,
  verifyWith,
  walk,
  type CertParts,
  type Tlv,
} from '../../src/pki/der';
import { peekCsr } from '../../src/pki/issue';

export const SCEP_CA_CAPS = ['POSTPKIOperation', 'SHA-256', 'AES', 'SCEPStandard', 'Renewal'] as const;

/** The GetCACaps body (text/plain), one capability per line. */
export function caCapsText(): string {
  return SCEP_CA_CAPS.join('\n');
}

/** The GetCACert reply for a single CA (no RA): the DER certificate, `application/x-x509-ca-cert`. */
export function caCertResponse(ca: { certPem: string } | { cert: { rawData: ArrayBuffer } }): { contentType: 'application/x-x509-ca-cert'; body: Buffer } {
  const body = 'cert' in ca ? Buffer.from(ca.cert.rawData) : Buffer.from(new crypto.X509Certificate(ca.certPem).raw);
  return { contentType: 'application/x-x509-ca-cert', body };
}

// ---------------------------------------------------------------------------------------------------
// Constants

export const OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
  challengePassword: '1.2.840.113549.1.9.7',
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256: '2.16.840.1.101.3.4.2.1',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
  desEde3Cbc: '1.2.840.113549.3.7',
  // SCEP signed attributes (RFC 8894 §3.2.1)
  messageType: '2.16.840.1.113733.1.9.2',
  pkiStatus: '2.16.840.1.113733.1.9.3',
  failInfo: '2.16.840.1.113733.1.9.4',
  senderNonce: '2.16.840.1.113733.1.9.5',
  recipientNonce: '2.16.840.1.113733.1.9.6',
  transactionID: '2.16.840.1.113733.1.9.7',
} as const;

export const MESSAGE_TYPES = { CertRep: 3, RenewalReq: 17, PKCSReq: 19, CertPoll: 20, GetCert: 21, GetCRL: 22 } as const;
export type ScepMessageType = keyof typeof MESSAGE_TYPES;
export const PKI_STATUS = { SUCCESS: 0, FAILURE: 2, PENDING: 3 } as const;
export type ScepPkiStatus = keyof typeof PKI_STATUS;
export const FAIL_INFO = { badAlg: 0, badMessageCheck: 1, badRequest: 2, badTime: 3, badCertId: 4 } as const;
export type ScepFailInfo = keyof typeof FAIL_INFO;

/** A request we cannot act on; `failInfo` is what the CertRep FAILURE should carry. */
export class ScepError extends Error {
  /**
   * Where a CertRep FAILURE can go: the request's transactionID, senderNonce and signer certificate,
   * when they could be read (even from a message whose signature did not verify: the refusal carries
   * no secret, and it is the protocol's own way to say no).
   */
  replyTo?: { transactionId: string; senderNonce: Buffer; signerCertDer: Buffer };

  constructor(
    readonly failInfo: ScepFailInfo,
    message: string,
  ) {
    super(message);
    this.name = 'ScepError';
  }
}

// ---------------------------------------------------------------------------------------------------
// Reading a PKIOperation request

export interface ScepRequest {
  messageType: 'PKCSReq' | 'RenewalReq';
  transactionId: string;
  senderNonce: Buffer;
  /** The certificate that signed the message: self-signed for PKCSReq, the current identity for RenewalReq. */
  signerCertDer: Buffer;
  /** The PKCS#10 request from inside the envelope (signature not yet checked: use `readCsr`). */
  csrDer: Buffer;
  challengePassword?: string;
  /** Content-encryption algorithm the device used; reply with the same. */
  encryption: 'aes128' | 'aes192' | 'aes256' | '3des' | 'des';
}

export interface ScepCaKey {
  certPem: string;
  privateKeyPem: string;
}

/** What reading needs from the CA, parsed once per PEM pair. */
interface CaMaterial {
  /** The CA key, native. */
  key: crypto.KeyObject;
  /** The CA certificate's issuer Name and serialNumber (DER), as a RecipientInfo addresses it. */
  issuer: Buffer;
  serial: Buffer;
  /** The certificate as forge reads it (recipient matching on the reference path), made on first use. */
  forgeCert?: forge.pki.Certificate;
  certPem: string;
}

const caCache = new Map<string, CaMaterial>();

function caMaterial(ca: ScepCaKey): CaMaterial {
  const id = ca.certPem + ca.privateKeyPem;
  let hit = caCache.get(id);
  if (!hit) {
    const key = crypto.createPrivateKey(ca.privateKeyPem);
    let issuer = Buffer.alloc(0);
    let serial = Buffer.alloc(0);
    try {
      const der = pemToDer(ca.certPem);
      const cert = certParts(der, readWhole(der, 0x30));
      issuer = Buffer.from(der.subarray(cert.issuer.start, cert.issuer.end));
      serial = Buffer.from(der.subarray(cert.serial.start, cert.serial.end));
    } catch {
      // a CA certificate the DER reader leaves alone: no recipient ever matches on the fast path
    }
    hit = { key, issuer, serial, certPem: ca.certPem };
    if (caCache.size >= 8) caCache.clear();
    caCache.set(id, hit);
  }
  return hit;
}

function forgeCertOf(material: CaMaterial): forge.pki.Certificate {
  material.forgeCert ??= forge.pki.certificateFromPem(material.certPem);
  return material.forgeCert;
}

/** How many messages each path decided (for tests and diagnostics). */
export const scepParsePaths = { fast: 0, pkijs: 0 };

/**
 * Reads a PKIOperation message: verifies the outer SignedData (its signer certificate travels inside
 * it), reads the SCEP signed attributes, decrypts the envelope with the CA key and pulls out the CSR
 * and its challengePassword. Throws `ScepError` (badRequest: not a SCEP message; badMessageCheck:
 * signature or decryption fails; badAlg: an algorithm we do not support).
 */
export async function parsePkiMessage(der: Buffer, ca: ScepCaKey): Promise<ScepRequest> {
  let fast: ScepRequest | typeof FALLBACK;
  try {
    fast = parseFast(der, ca);
  } catch (err) {
    if (err instanceof ScepError) {
      scepParsePaths.fast++;
      throw err;
    }
    fast = FALLBACK; // FALLBACK, or anything unexpected (a key node:crypto refuses, ...): the reference path decides
  }
  if (fast !== FALLBACK) {
    scepParsePaths.fast++;
    return fast;
  }
  scepParsePaths.pkijs++;
  return parsePkiMessageWithPkijs(der, ca);
}

/**
 * The reference implementation (pkijs, node-forge, @peculiar/x509): what `parsePkiMessage` falls back
 * to, and what the tests compare the fast path against.
 */
export async function parsePkiMessageWithPkijs(der: Buffer, ca: ScepCaKey): Promise<ScepRequest> {
  const sd = readSignedData(der);
  try {
    return await readPkiMessage(sd, ca);
  } catch (err) {
    if (err instanceof ScepError) {
      const replyTo = peekReplyTo(sd);
      if (replyTo) err.replyTo = replyTo;
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Fast path

const CONTENT_ENCRYPTION: Record<string, { name: ScepRequest['encryption']; keyLen: number; ivLen: number; native: string }> = {
  '2.16.840.1.101.3.4.1.2': { name: 'aes128', keyLen: 16, ivLen: 16, native: 'aes-128-cbc' },
  '2.16.840.1.101.3.4.1.22': { name: 'aes192', keyLen: 24, ivLen: 16, native: 'aes-192-cbc' },
  [OID.aes256Cbc]: { name: 'aes256', keyLen: 32, ivLen: 16, native: 'aes-256-cbc' },
  [OID.desEde3Cbc]: { name: '3des', keyLen: 24, ivLen: 8, native: 'des-ede3-cbc' },
  // Single DES is not in Node 20's default OpenSSL provider, but 3DES-EDE with K1 = K2 = K3 = K is DES
  // with K (E_K(D_K(E_K(x))) = E_K(x)): the key is repeated three times below.
  '1.3.14.3.2.7': { name: 'des', keyLen: 8, ivLen: 8, native: 'des-ede3-cbc' },
};

/** A signer's attributes: every Attribute in order, and the first value of the first of each type (as pkijs' reader keeps them). */
interface SignedAttrs {
  all: { type: string; values: Tlv[] }[];
  first: Map<string, Tlv>;
}

/**
 * The fast path. Returns the request, throws `ScepError` where the reference path would throw the same
 * failInfo, and FALLBACK for everything else. The structure is read completely (as pkijs parses before
 * it checks) before any verdict.
 */
function parseFast(der: Buffer, ca: ScepCaKey): ScepRequest {
  // ContentInfo { signedData, [0] SignedData }, every constructed TLV filled exactly by its children.
  const top = readWhole(der, 0x30);
  walk(der, top);
  const contentInfo = children(der, top);
  if (contentInfo.length !== 2 || readOid(der, contentInfo[0]) !== OID.signedData) throw FALLBACK;
  const wrapped = children(der, expectTag(contentInfo[1], 0xa0));
  if (wrapped.length !== 1) throw FALLBACK;

  // SignedData: version, digestAlgorithms, encapContentInfo, [0] certificates, signerInfos (no CRLs).
  const sd = children(der, expectTag(wrapped[0], 0x30));
  let i = 0;
  expectTag(sd[i++], 0x02);
  for (const alg of children(der, expectTag(sd[i++], 0x31))) algorithmOid(der, alg);
  const encap = children(der, expectTag(sd[i++], 0x30));
  const certsNode = sd[i]?.tag === 0xa0 ? sd[i++] : undefined;
  const signerInfos = children(der, expectTag(sd[i++], 0x31));
  if (i !== sd.length || signerInfos.length !== 1) throw FALLBACK;
  if (encap.length !== 2 || readOid(der, encap[0]) !== OID.data) throw FALLBACK;
  const eContentNode = children(der, expectTag(encap[1], 0xa0));
  if (eContentNode.length !== 1) throw FALLBACK;
  const eContent = octetsOf(der, eContentNode[0]);

  const certs: CertParts[] = certsNode ? children(der, certsNode).map((c) => certParts(der, c)) : [];
  if (certs.length === 0) throw FALLBACK;

  // SignerInfo: version, sid (IssuerAndSerialNumber), digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature, [1] unsignedAttrs.
  const si = children(der, expectTag(signerInfos[0], 0x30));
  let k = 0;
  expectTag(si[k++], 0x02);
  const sid = children(der, expectTag(si[k++], 0x30));
  const digestOid = algorithmOid(der, si[k++]);
  const signedAttrsNode = expectTag(si[k++], 0xa0);
  const signatureOid = algorithmOid(der, si[k++]);
  const signature = expectTag(si[k++], 0x04);
  if (si[k]?.tag === 0xa1) readAttributes(der, si[k++]!);
  if (k !== si.length || sid.length !== 2) throw FALLBACK;
  const sidIssuer = checkName(der, sid[0]);
  const sidSerial = expectTag(sid[1], 0x02);
  const attrs = readAttributes(der, signedAttrsNode);

  // The SCEP attributes, read now so that a refusal carries the same replyTo as on the reference path.
  const messageTypeText = stringAttr(der, attrs, OID.messageType);
  const transactionId = stringAttr(der, attrs, OID.transactionID);
  const senderNonce = octetAttr(der, attrs, OID.senderNonce);
  const firstCert = certs[0]!.node;
  const replyTo =
    transactionId && senderNonce && senderNonce.length > 0
      ? { transactionId, senderNonce, signerCertDer: Buffer.from(der.subarray(firstCert.start, firstCert.end)) }
      : undefined;
  const refuse = (failInfo: ScepFailInfo, message: string): ScepError => {
    const err = new ScepError(failInfo, message);
    if (replyTo) err.replyTo = replyTo;
    return err;
  };

  // The signature (what pkijs' SignedData.verify checks, in its order).
  const signer = certs.find((c) => sameBytes(der, c.issuer, sidIssuer) && sameBytes(der, c.serial, sidSerial));
  if (!signer) throw FALLBACK; // pkijs also matches names equal after string preparation
  const digestName = DIGESTS[digestOid];
  const algorithm = SIGNATURES.get(signatureOid);
  if (!digestName || !algorithm) throw FALLBACK;
  const contentTypes = attrs.all.filter((a) => a.type === OID.contentType);
  const digests = attrs.all.filter((a) => a.type === OID.messageDigest);
  if (contentTypes.length !== 1 || digests.length !== 1 || digests[0]!.values.length !== 1) throw FALLBACK;
  const claimed = expectTag(digests[0]!.values[0], 0x04);
  if (!der.subarray(claimed.body, claimed.end).equals(crypto.hash(digestName, eContent, 'buffer'))) {
    throw refuse('badMessageCheck', "the request signature does not verify: the message digest doesn't match");
  }
  const key = publicKeyOf(der, signer.spki);
  if (!key || key.kind !== algorithm.kind) throw FALLBACK;
  // What was signed is the DER of the SET OF, not the [0] IMPLICIT that carries it.
  const signed = Buffer.from(der.subarray(signedAttrsNode.start, signedAttrsNode.end));
  signed[0] = 0x31;
  if (!verifyWith(key, algorithm.hash ?? digestName, signed, der, signature.body, signature.end)) {
    throw refuse('badMessageCheck', 'the request signature does not verify');
  }

  // The SCEP attributes, checked as the reference path checks them.
  if (messageTypeText === undefined) throw refuse('badRequest', 'missing messageType');
  const typeNumber = Number(messageTypeText);
  const messageType = (Object.keys(MESSAGE_TYPES) as ScepMessageType[]).find((t) => MESSAGE_TYPES[t] === typeNumber);
  if (messageType !== 'PKCSReq' && messageType !== 'RenewalReq') {
    throw refuse('badRequest', `unsupported messageType ${Number.isFinite(typeNumber) ? typeNumber : '?'}`);
  }
  if (transactionId === undefined) throw refuse('badRequest', 'missing transactionID');
  if (senderNonce === undefined) throw refuse('badRequest', 'missing senderNonce');
  if (!transactionId) throw refuse('badRequest', 'empty transactionID');
  if (senderNonce.length === 0) throw refuse('badRequest', 'empty senderNonce');

  let opened: { content: Buffer; encryption: ScepRequest['encryption'] };
  try {
    opened = openEnvelopeFast(Buffer.from(eContent), ca);
  } catch (err) {
    if (err instanceof ScepError && replyTo) err.replyTo = replyTo;
    throw err;
  }

  let challengePassword: string | undefined;
  const csr = peekCsr(opened.content);
  try {
    challengePassword = csr ? csr.challengePassword : readChallengePassword(readCsrStructure(opened.content));
  } catch (err) {
    if (err instanceof ScepError && replyTo) err.replyTo = replyTo;
    throw err;
  }
  return {
    messageType,
    transactionId,
    senderNonce,
    signerCertDer: Buffer.from(der.subarray(signer.node.start, signer.node.end)),
    csrDer: opened.content,
    encryption: opened.encryption,
    ...(challengePassword === undefined ? {} : { challengePassword }),
  };
}

/** SET OF Attribute { type OID, values SET } ([0] or [1] IMPLICIT). */
function readAttributes(der: Buffer, node: Tlv): SignedAttrs {
  const all: SignedAttrs['all'] = [];
  const first = new Map<string, Tlv>();
  for (const attr of children(der, node)) {
    const parts = children(der, expectTag(attr, 0x30));
    if (parts.length !== 2) throw FALLBACK;
    const type = readOid(der, parts[0]);
    const values = children(der, expectTag(parts[1], 0x31));
    all.push({ type, values });
    if (values.length > 0 && !first.has(type)) first.set(type, values[0]!);
  }
  return { all, first };
}

/** A string attribute's text (ASCII PrintableString / UTF8String / IA5String), undefined when absent; other types FALLBACK. */
function stringAttr(der: Buffer, attrs: SignedAttrs, type: string): string | undefined {
  const v = attrs.first.get(type);
  return v === undefined ? undefined : asciiString(der, v);
}

/** An OCTET STRING attribute's octets (primitive), undefined when absent; other types FALLBACK. */
function octetAttr(der: Buffer, attrs: SignedAttrs, type: string): Buffer | undefined {
  const v = attrs.first.get(type);
  return v === undefined ? undefined : Buffer.from(der.subarray(expectTag(v, 0x04).body, v.end));
}

/**
 * Opens the request's EnvelopedData: ContentInfo { envelopedData, [0] EnvelopedData { version,
 * recipientInfos, EncryptedContentInfo { data, { cipher, IV }, [0] encryptedContent } } }, addressed
 * (first recipient) to the CA certificate by issuer and serial number, RSA key transport.
 */
function openEnvelopeFast(env: Buffer, ca: ScepCaKey): { content: Buffer; encryption: ScepRequest['encryption'] } {
  const top = readWhole(env, 0x30);
  walk(env, top);
  const contentInfo = children(env, top);
  if (contentInfo.length !== 2 || readOid(env, contentInfo[0]) !== OID.envelopedData) throw FALLBACK;
  const wrapped = children(env, expectTag(contentInfo[1], 0xa0));
  if (wrapped.length !== 1) throw FALLBACK;
  const ed = children(env, expectTag(wrapped[0], 0x30));
  if (ed.length !== 3) throw FALLBACK;
  expectTag(ed[0], 0x02);
  const recipients = children(env, expectTag(ed[1], 0x31)).map((r) => {
    const parts = children(env, expectTag(r, 0x30));
    if (parts.length !== 4) throw FALLBACK;
    expectTag(parts[0], 0x02);
    const ias = children(env, expectTag(parts[1], 0x30));
    if (ias.length !== 2) throw FALLBACK;
    const alg = children(env, expectTag(parts[2], 0x30));
    if (alg.length < 1 || alg.length > 2 || (alg[1] && alg[1].tag >= 0x20)) throw FALLBACK;
    return { issuer: checkName(env, ias[0]), serial: expectTag(ias[1], 0x02), algorithm: readOid(env, alg[0]), encryptedKey: expectTag(parts[3], 0x04) };
  });
  const eci = children(env, expectTag(ed[2], 0x30));
  if (eci.length !== 3 || readOid(env, eci[0]) !== OID.data) throw FALLBACK;
  const contentAlg = children(env, expectTag(eci[1], 0x30));
  if (contentAlg.length !== 2) throw FALLBACK;
  const cipherOid = readOid(env, contentAlg[0]);
  const ivNode = expectTag(contentAlg[1], 0x04);
  const encNode = eci[2]!;
  let encrypted: Buffer;
  if (encNode.tag === 0x80) encrypted = env.subarray(encNode.body, encNode.end);
  else if (encNode.tag === 0xa0) encrypted = Buffer.concat(children(env, encNode).map((c) => env.subarray(expectTag(c, 0x04).body, c.end)));
  else throw FALLBACK;

  // The reference path's checks, in its order.
  const cipher = CONTENT_ENCRYPTION[cipherOid];
  if (!cipher) throw new ScepError('badAlg', `unsupported content encryption ${cipherOid}`);
  const material = caMaterial(ca);
  const recipient = recipients[0];
  if (!recipient || !env.subarray(recipient.issuer.start, recipient.issuer.end).equals(material.issuer)) throw FALLBACK;
  if (!env.subarray(recipient.serial.start, recipient.serial.end).equals(material.serial)) throw FALLBACK;
  if (recipient.algorithm !== OID.rsaEncryption) throw new ScepError('badAlg', `unsupported key transport ${recipient.algorithm}`);
  const iv = env.subarray(ivNode.body, ivNode.end);
  if (iv.length !== cipher.ivLen) throw new ScepError('badRequest', 'the content-encryption IV has the wrong length');
  const encryptedKey = env.subarray(recipient.encryptedKey.body, recipient.encryptedKey.end);
  return { content: decryptContent(material.key, encryptedKey, cipher, iv, encrypted), encryption: cipher.name };
}

/** RSA key transport (raw RSA, constant-time PKCS#1 v1.5 unpadding) and CBC decryption; badMessageCheck on failure. */
function decryptContent(
  caKey: crypto.KeyObject,
  encryptedKey: Buffer,
  cipher: { name: ScepRequest['encryption']; keyLen: number; native: string },
  iv: Buffer,
  encrypted: Buffer,
): Buffer {
  try {
    const em = crypto.privateDecrypt({ key: caKey, padding: crypto.constants.RSA_NO_PADDING }, encryptedKey);
    const key = unpadPkcs1Type2(em, cipher.keyLen);
    const d = crypto.createDecipheriv(cipher.native, cipher.name === 'des' ? Buffer.concat([key, key, key]) : key, iv);
    const content = Buffer.concat([d.update(encrypted), d.final()]);
    if (content.length === 0) throw new Error('empty content');
    return content;
  } catch (err) {
    throw new ScepError('badMessageCheck', `the envelope does not decrypt with this CA key: ${errorMessage(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Reference path

/** transactionID, senderNonce and the first certificate, read without trusting them; undefined if absent. */
function peekReplyTo(sd: pkijs.SignedData): ScepError['replyTo'] {
  try {
    const signer = sd.signerInfos[0];
    const cert = (sd.certificates ?? []).find((c): c is pkijs.Certificate => c instanceof pkijs.Certificate);
    if (!signer?.signedAttrs || !cert) return undefined;
    const attrs = attributeMap(signer.signedAttrs);
    const transactionId = pkijsStringAttr(attrs, OID.transactionID, 'transactionID');
    const senderNonce = pkijsOctetAttr(attrs, OID.senderNonce, 'senderNonce');
    if (!transactionId || senderNonce.length === 0) return undefined;
    return { transactionId, senderNonce, signerCertDer: Buffer.from(cert.toSchema().toBER(false)) };
  } catch {
    return undefined;
  }
}

async function readPkiMessage(sd: pkijs.SignedData, ca: ScepCaKey): Promise<ScepRequest> {
  const signer = sd.signerInfos[0];
  if (sd.signerInfos.length !== 1 || !signer) throw new ScepError('badRequest', 'expected exactly one signer');
  if (!signer.signedAttrs) throw new ScepError('badRequest', 'the signer has no signed attributes');
  if (sd.encapContentInfo.eContentType !== OID.data || !sd.encapContentInfo.eContent) {
    throw new ScepError('badRequest', 'the signed content is not id-data');
  }

  // Signature first: nothing inside is trusted until it verifies.
  let verified: pkijs.SignedDataVerifyResult;
  try {
    verified = await sd.verify({ signer: 0, checkChain: false, extendedMode: true });
  } catch (err) {
    const message = errorMessage(err);
    if (/algorithm/i.test(message)) throw new ScepError('badAlg', `unsupported signature algorithm: ${message}`);
    throw new ScepError('badMessageCheck', `the request signature does not verify: ${message}`);
  }
  if (!verified.signatureVerified || !verified.signerCertificate) {
    throw new ScepError('badMessageCheck', 'the request signature does not verify');
  }
  const signerCertDer = Buffer.from(verified.signerCertificate.toSchema().toBER(false));

  const attrs = attributeMap(signer.signedAttrs);
  const typeNumber = Number(pkijsStringAttr(attrs, OID.messageType, 'messageType'));
  const messageType = (Object.keys(MESSAGE_TYPES) as ScepMessageType[]).find((k) => MESSAGE_TYPES[k] === typeNumber);
  if (messageType !== 'PKCSReq' && messageType !== 'RenewalReq') {
    throw new ScepError('badRequest', `unsupported messageType ${Number.isFinite(typeNumber) ? typeNumber : '?'}`);
  }
  const transactionId = pkijsStringAttr(attrs, OID.transactionID, 'transactionID');
  const senderNonce = pkijsOctetAttr(attrs, OID.senderNonce, 'senderNonce');
  if (!transactionId) throw new ScepError('badRequest', 'empty transactionID');
  if (senderNonce.length === 0) throw new ScepError('badRequest', 'empty senderNonce');

  const envelope = octetStringValue(sd.encapContentInfo.eContent);
  const { content: csrDer, encryption } = decryptEnvelope(envelope, ca);
  const challengePassword = readChallengePassword(readCsrStructure(csrDer));
  return {
    messageType,
    transactionId,
    senderNonce,
    signerCertDer,
    csrDer,
    encryption,
    ...(challengePassword === undefined ? {} : { challengePassword }),
  };
}

function readSignedData(der: Buffer): pkijs.SignedData {
  try {
    const parsed = asn1js.fromBER(new Uint8Array(der));
    if (parsed.offset === -1) throw new Error(parsed.result.error || 'not DER');
    const ci = new pkijs.ContentInfo({ schema: parsed.result });
    if (ci.contentType !== OID.signedData) throw new Error(`content type ${ci.contentType} is not signedData`);
    return new pkijs.SignedData({ schema: ci.content });
  } catch (err) {
    throw new ScepError('badRequest', `not a SCEP pkiMessage: ${errorMessage(err)}`);
  }
}

function attributeMap(attrs: pkijs.SignedAndUnsignedAttributes): Map<string, asn1js.AsnType> {
  const map = new Map<string, asn1js.AsnType>();
  for (const a of attrs.attributes) {
    const first = a.values[0];
    if (first !== undefined && !map.has(a.type)) map.set(a.type, first as asn1js.AsnType);
  }
  return map;
}

function pkijsStringAttr(attrs: Map<string, asn1js.AsnType>, oid: string, name: string): string {
  const v = attrs.get(oid);
  if (!v) throw new ScepError('badRequest', `missing ${name}`);
  if (v instanceof asn1js.PrintableString || v instanceof asn1js.Utf8String || v instanceof asn1js.IA5String) return v.valueBlock.value;
  if ('valueBlock' in v && v.valueBlock && 'value' in v.valueBlock && typeof v.valueBlock.value === 'string') return v.valueBlock.value;
  throw new ScepError('badRequest', `${name} is not a string`);
}

function pkijsOctetAttr(attrs: Map<string, asn1js.AsnType>, oid: string, name: string): Buffer {
  const v = attrs.get(oid);
  if (!v) throw new ScepError('badRequest', `missing ${name}`);
  if (!(v instanceof asn1js.OctetString)) throw new ScepError('badRequest', `${name} is not an OCTET STRING`);
  return octetStringValue(v);
}

function octetStringValue(v: asn1js.OctetString): Buffer {
  if (v.idBlock.isConstructed) {
    return Buffer.concat((v.valueBlock.value as asn1js.OctetString[]).map((part) => octetStringValue(part)));
  }
  return Buffer.from(v.valueBlock.valueHexView);
}

const CIPHERS: Record<string, { name: ScepRequest['encryption']; keyLen: number; ivLen: number; native?: string }> = {
  '2.16.840.1.101.3.4.1.2': { name: 'aes128', keyLen: 16, ivLen: 16, native: 'aes-128-cbc' },
  '2.16.840.1.101.3.4.1.22': { name: 'aes192', keyLen: 24, ivLen: 16, native: 'aes-192-cbc' },
  [OID.aes256Cbc]: { name: 'aes256', keyLen: 32, ivLen: 16, native: 'aes-256-cbc' },
  [OID.desEde3Cbc]: { name: '3des', keyLen: 24, ivLen: 8, native: 'des-ede3-cbc' },
  '1.3.14.3.2.7': { name: 'des', keyLen: 8, ivLen: 8 }, // not in Node 20's default OpenSSL provider: forge
};

/**
 * Decrypts the request's EnvelopedData (reference path). forge parses the structure; the RSA step is a
 * native raw (RSA_NO_PADDING) private operation — Node 20 refuses PKCS#1 v1.5 private decryption, and
 * forge's JavaScript RSA takes ~200 ms — followed by our own PKCS#1 v1.5 unpadding with implicit
 * rejection (a bad padding yields a random key, so it fails later exactly like a wrong key would).
 */
function decryptEnvelope(der: Buffer, ca: ScepCaKey): { content: Buffer; encryption: ScepRequest['encryption'] } {
  let msg: forge.pkcs7.PkcsEnvelopedData;
  try {
    const obj = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')), true);
    const parsed = forge.pkcs7.messageFromAsn1(obj) as forge.pkcs7.PkcsEnvelopedData & { type?: string };
    if (parsed.type !== forge.pki.oids.envelopedData) throw new Error('not envelopedData');
    msg = parsed;
  } catch (err) {
    throw new ScepError('badRequest', `the signed content is not an EnvelopedData: ${errorMessage(err)}`);
  }
  const internal = msg as unknown as ForgeEnveloped;
  const algorithm = internal.encryptedContent?.algorithm ?? '';
  const cipher = CIPHERS[algorithm];
  if (!cipher) throw new ScepError('badAlg', `unsupported content encryption ${algorithm || '?'}`);
  const material = caMaterial(ca);
  // Addressed to the certificate GetCACert returns (issuer and serial number), as RFC 8894 §3.2.2 requires.
  const recipient = msg.findRecipient(forgeCertOf(material)) as ForgeRecipient | null;
  if (!recipient) throw new ScepError('badRequest', 'the envelope is not addressed to this CA');
  if (recipient.encryptedContent?.algorithm !== forge.pki.oids.rsaEncryption) {
    throw new ScepError('badAlg', `unsupported key transport ${recipient.encryptedContent?.algorithm ?? '?'}`);
  }
  const encryptedKey = bytes(recipient.encryptedContent.content);
  const iv = bytes(internal.encryptedContent?.parameter);
  const encrypted = bytes(internal.encryptedContent?.content);
  if (iv.length !== cipher.ivLen) throw new ScepError('badRequest', 'the content-encryption IV has the wrong length');
  try {
    const em = crypto.privateDecrypt({ key: material.key, padding: crypto.constants.RSA_NO_PADDING }, encryptedKey);
    const key = unpadPkcs1Type2(em, cipher.keyLen);
    let content: Buffer;
    if (cipher.native) {
      const d = crypto.createDecipheriv(cipher.native, key, iv);
      content = Buffer.concat([d.update(encrypted), d.final()]);
    } else {
      const d = forge.cipher.createDecipher('DES-CBC', forge.util.createBuffer(key.toString('binary')));
      d.start({ iv: forge.util.createBuffer(iv.toString('binary')) });
      d.update(forge.util.createBuffer(encrypted.toString('binary')));
      if (!d.finish()) throw new Error('bad decrypt');
      content = Buffer.from(d.output.getBytes(), 'binary');
    }
    if (content.length === 0) throw new Error('empty content');
    return { content, encryption: cipher.name };
  } catch (err) {
    throw new ScepError('badMessageCheck', `the envelope does not decrypt with this CA key: ${errorMessage(err)}`);
  }
}

/** forge keeps binary data either as a ByteStringBuffer or as a "binary" string. */
function bytes(b: forge.util.ByteStringBuffer | string | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return Buffer.from(typeof b === 'string' ? b : b.bytes(), 'binary');
}

/**
 * EME-PKCS1-v1_5 decoding (RFC 8017 §7.2.2) of a raw RSA result, without branching on the padding:
 * when it is malformed or the key is not `keyLen` bytes, a random key is returned instead.
 */
function unpadPkcs1Type2(em: Buffer, keyLen: number): Buffer {
  const fallback = crypto.randomBytes(keyLen);
  let bad = (em[0] ?? 1) | ((em[1] ?? 0) ^ 0x02);
  let sep = 0; // index of the first zero after the padding string
  for (let i = 2; i < em.length; i++) {
    const isZero = ((em[i]! - 1) >> 31) & 1; // 1 when em[i] === 0
    const first = isZero & (sep === 0 ? 1 : 0);
    sep = first ? i : sep;
  }
  bad |= sep < 10 ? 1 : 0; // at least 8 padding bytes
  bad |= em.length - sep - 1 !== keyLen ? 1 : 0;
  const start = Math.max(0, em.length - keyLen);
  const candidate = em.subarray(start);
  const out = Buffer.alloc(keyLen);
  const mask = bad ? 0xff : 0x00;
  for (let i = 0; i < keyLen; i++) out[i] = ((candidate[i] ?? 0) & ~mask) | (fallback[i]! & mask);
  return out;
}

interface ForgeRecipient {
  encryptedContent?: { algorithm?: string; content?: forge.util.ByteStringBuffer | string };
}
interface ForgeEnveloped {
  encryptedContent?: { algorithm?: string; parameter?: forge.util.ByteStringBuffer; content?: forge.util.ByteStringBuffer };
}

/** The envelope's content as a PKCS#10 request (@peculiar/x509); badRequest when it is not one. */
function readCsrStructure(csrDer: Buffer): x509.Pkcs10CertificateRequest {
  try {
    return new x509.Pkcs10CertificateRequest(csrDer);
  } catch (err) {
    throw new ScepError('badRequest', `the envelope does not hold a PKCS#10 request: ${errorMessage(err)}`);
  }
}

function readChallengePassword(csr: x509.Pkcs10CertificateRequest): string | undefined {
  try {
    // getAttribute reads every attribute: a malformed one (any type) throws here.
    const attr = csr.getAttribute(OID.challengePassword);
    if (!attr) return undefined;
    return attr instanceof x509.ChallengePasswordAttribute ? attr.password : new x509.ChallengePasswordAttribute(attr.rawData).password;
  } catch (err) {
    throw new ScepError('badRequest', `unreadable challengePassword: ${errorMessage(err)}`);
  }
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}

// ---------------------------------------------------------------------------------------------------
// Writing a CertRep

export interface CertRepOptions {
  /** The CA: its certificate plus either `privateKeyPem` or `sign` (RSA PKCS#1 v1.5 with SHA-256 over `data`). */
  ca: { certPem: string; privateKeyPem?: string; sign?: (data: Buffer) => Buffer | Promise<Buffer> };
  transactionId: string;
  /** The request's senderNonce. */
  recipientNonce: Buffer;
  status: 'SUCCESS' | 'FAILURE';
  failInfo?: ScepFailInfo;
  /** The issued certificate (SUCCESS). */
  issuedCertDer?: Buffer;
  /** The certificate that signed the request; the reply is encrypted to its (RSA) key. */
  recipientCertDer: Buffer;
  encryption: 'aes256' | '3des';
  /** Extra certificates for the degenerate SignedData after the issued one (e.g. the CA). */
  chainDer?: Buffer[];
}

/** The CertRep cipher for a request: AES-256 when the device used AES, else 3DES (never single DES). */
export function certRepEncryption(requested: ScepRequest['encryption']): 'aes256' | '3des' {
  return requested.startsWith('aes') ? 'aes256' : '3des';
}

/** The CA certificate's DER and IssuerAndSerialNumber, by PEM; the signing key, by PEM (parsing a PEM key costs ~0.5 ms). */
const certRepCa = new Map<string, { der: Buffer; issuerAndSerial: Buffer }>();
const signingKeys = new Map<string, crypto.KeyObject>();

function certRepCaOf(certPem: string): { der: Buffer; issuerAndSerial: Buffer } {
  let hit = certRepCa.get(certPem);
  if (!hit) {
    const der = Buffer.from(new crypto.X509Certificate(certPem).raw);
    hit = { der, issuerAndSerial: issuerAndSerial(der) };
    if (certRepCa.size >= 8) certRepCa.clear();
    certRepCa.set(certPem, hit);
  }
  return hit;
}

function signingKeyOf(pem: string | undefined): crypto.KeyObject {
  if (!pem) throw new Error('buildCertRep needs ca.privateKeyPem or ca.sign');
  let key = signingKeys.get(pem);
  if (!key) {
    key = crypto.createPrivateKey(pem);
    if (signingKeys.size >= 8) signingKeys.clear();
    signingKeys.set(pem, key);
  }
  return key;
}

const SHA256_ALG = seq(oid(OID.sha256), NULL);
const RSA_ENCRYPTION_ALG = seq(oid(OID.rsaEncryption), NULL);

/** Builds the CertRep pkiMessage (a DER ContentInfo/SignedData) for a SUCCESS or FAILURE. */
export async function buildCertRep(opts: CertRepOptions): Promise<Buffer> {
  const ca = certRepCaOf(opts.ca.certPem);
  let content: Buffer = Buffer.alloc(0);
  if (opts.status === 'SUCCESS') {
    if (!opts.issuedCertDer) throw new Error('a SUCCESS CertRep needs issuedCertDer');
    const degenerate = degenerateSignedData([opts.issuedCertDer, ...(opts.chainDer ?? [])]);
    content = envelope(degenerate, opts.recipientCertDer, opts.encryption);
  } else if (!opts.failInfo) {
    throw new Error('a FAILURE CertRep needs failInfo');
  }

  const attrs: Buffer[] = [
    attribute(OID.contentType, oid(OID.data)),
    attribute(OID.signingTime, utcTime(new Date())),
    attribute(OID.messageDigest, octets(crypto.createHash('sha256').update(content).digest())),
    attribute(OID.messageType, printable(String(MESSAGE_TYPES.CertRep))),
    attribute(OID.pkiStatus, printable(String(PKI_STATUS[opts.status]))),
    attribute(OID.transactionID, printable(opts.transactionId)),
    attribute(OID.senderNonce, octets(crypto.randomBytes(16))),
    attribute(OID.recipientNonce, octets(opts.recipientNonce)),
  ];
  if (opts.status === 'FAILURE') attrs.push(attribute(OID.failInfo, printable(String(FAIL_INFO[opts.failInfo!]))));
  attrs.sort(Buffer.compare); // DER SET OF order
  const signedAttrsForSigning = tlv(0x31, attrs);
  const signature = opts.ca.sign
    ? await opts.ca.sign(signedAttrsForSigning)
    : crypto.sign('sha256', signedAttrsForSigning, signingKeyOf(opts.ca.privateKeyPem));

  const signerInfo = seq(smallInteger(1), ca.issuerAndSerial, SHA256_ALG, tlv(0xa0, attrs), RSA_ENCRYPTION_ALG, octets(signature));
  const signedData = seq(
    smallInteger(1),
    tlv(0x31, [SHA256_ALG]),
    seq(oid(OID.data), tlv(0xa0, [octets(content)])),
    tlv(0xa0, [ca.der]),
    tlv(0x31, [signerInfo]),
  );
  return seq(oid(OID.signedData), tlv(0xa0, [signedData]));
}

/** A certs-only SignedData (RFC 8894 §3.3.2: the issued certificate inside the CertRep envelope). */
export function degenerateSignedData(certsDer: Buffer[]): Buffer {
  const sd = seq(smallInteger(1), tlv(0x31, []), seq(oid(OID.data)), tlv(0xa0, certsDer), tlv(0x31, []));
  return seq(oid(OID.signedData), tlv(0xa0, [sd]));
}

/**
 * The RSA key and IssuerAndSerialNumber of a recipient certificate, read by the DER reader (no full
 * X.509 parse: OpenSSL takes ~0.1 ms for that, and the key as PKCS#1 ~10 µs); undefined when it is not
 * an RSA certificate the reader handles.
 */
function rsaRecipient(certDer: Buffer): { key: crypto.KeyObject; issuerAndSerial: Buffer } | undefined {
  try {
    const cert = certParts(certDer, readWhole(certDer, 0x30));
    const key = publicKeyOf(certDer, cert.spki);
    if (key?.kind !== 'rsa') return undefined;
    return {
      key: key.key,
      issuerAndSerial: seq(certDer.subarray(cert.issuer.start, cert.issuer.end), certDer.subarray(cert.serial.start, cert.serial.end)),
    };
  } catch {
    return undefined;
  }
}

/** EnvelopedData of `content` to the RSA key of `recipientCertDer` (key transport RSA PKCS#1 v1.5). */
export function envelope(content: Buffer, recipientCertDer: Buffer, encryption: 'aes256' | '3des'): Buffer {
  let recipient = rsaRecipient(recipientCertDer);
  if (!recipient) {
    const cert = new crypto.X509Certificate(recipientCertDer);
    if (cert.publicKey.asymmetricKeyType !== 'rsa') {
      throw new ScepError('badAlg', `cannot encrypt to a ${cert.publicKey.asymmetricKeyType ?? 'unknown'} key`);
    }
    recipient = { key: cert.publicKey, issuerAndSerial: issuerAndSerial(Buffer.from(cert.raw)) };
  }
  const [cipherName, keyLen, ivLen, algOid] =
    encryption === 'aes256' ? (['aes-256-cbc', 32, 16, OID.aes256Cbc] as const) : (['des-ede3-cbc', 24, 8, OID.desEde3Cbc] as const);
  const key = crypto.randomBytes(keyLen);
  const iv = crypto.randomBytes(ivLen);
  const cipher = crypto.createCipheriv(cipherName, key, iv);
  const encrypted = Buffer.concat([cipher.update(content), cipher.final()]);
  const encryptedKey = crypto.publicEncrypt({ key: recipient.key, padding: crypto.constants.RSA_PKCS1_PADDING }, key);
  const recipientInfo = seq(smallInteger(0), recipient.issuerAndSerial, RSA_ENCRYPTION_ALG, octets(encryptedKey));
  const env = seq(
    smallInteger(0),
    tlv(0x31, [recipientInfo]),
    seq(oid(OID.data), seq(oid(algOid), octets(iv)), tlv(0x80, [encrypted])),
  );
  return seq(oid(OID.envelopedData), tlv(0xa0, [env]));
}

function attribute(type: string, value: Buffer): Buffer {
  return seq(oid(type), tlv(0x31, [value]));
}

/** IssuerAndSerialNumber of a certificate, copied byte for byte from its TBSCertificate. */
function issuerAndSerial(certDer: Buffer): Buffer {
  try {
    const at = (pos: number) => readTlv(certDer, pos, certDer.length);
    const tbs = at(at(0).body);
    let serial = at(tbs.body);
    if (serial.tag === 0xa0) serial = at(serial.end); // [0] version
    const issuer = at(at(serial.end).end); // after the signature algorithm
    return seq(certDer.subarray(issuer.start, issuer.end), certDer.subarray(serial.start, serial.end));
  } catch (err) {
    if (err === FALLBACK) throw new ScepError('badRequest', 'the certificate could not be read');
    throw err;
  }
}
