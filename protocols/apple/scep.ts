/**
 * SCEP (RFC 8894) message codec for Apple devices: GetCACaps text, the GetCACert body, reading a
 * PKIOperation request (PKCSReq / RenewalReq) and writing the CertRep reply. No HTTP and no database:
 * the caller decides whether a request is accepted (challenge, renewal signer) and issues the
 * certificate.
 *
 * Crypto split (see docs in shared research, dependencies §1):
 * - the request's outer SignedData is verified with pkijs (WebCrypto; RSA and ECDSA signers, SHA-1/2);
 * - its EnvelopedData is decrypted with node-forge, because neither WebCrypto nor Node 20's OpenSSL
 *   allows RSA PKCS#1 v1.5 *private* decryption (the key transport SCEP uses);
 * - the CertRep is written by hand in DER and signed / encrypted with Node's native crypto
 *   (RSA PKCS#1 v1.5 signing and public-key encryption, AES-256-CBC or 3DES-CBC).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';

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

/** The CA key (native) and certificate (forge, for recipient matching), parsed once per PEM pair. */
const caCache = new Map<string, { key: crypto.KeyObject; cert: forge.pki.Certificate }>();

function caMaterial(ca: ScepCaKey): { key: crypto.KeyObject; cert: forge.pki.Certificate } {
  const id = ca.certPem + ca.privateKeyPem;
  let hit = caCache.get(id);
  if (!hit) {
    hit = { key: crypto.createPrivateKey(ca.privateKeyPem), cert: forge.pki.certificateFromPem(ca.certPem) };
    if (caCache.size >= 8) caCache.clear();
    caCache.set(id, hit);
  }
  return hit;
}

/**
 * Reads a PKIOperation message: verifies the outer SignedData (its signer certificate travels inside
 * it), reads the SCEP signed attributes, decrypts the envelope with the CA key and pulls out the CSR
 * and its challengePassword. Throws `ScepError` (badRequest: not a SCEP message; badMessageCheck:
 * signature or decryption fails; badAlg: an algorithm we do not support).
 */
export async function parsePkiMessage(der: Buffer, ca: ScepCaKey): Promise<ScepRequest> {
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

/** transactionID, senderNonce and the first certificate, read without trusting them; undefined if absent. */
function peekReplyTo(sd: pkijs.SignedData): ScepError['replyTo'] {
  try {
    const signer = sd.signerInfos[0];
    const cert = (sd.certificates ?? []).find((c): c is pkijs.Certificate => c instanceof pkijs.Certificate);
    if (!signer?.signedAttrs || !cert) return undefined;
    const attrs = attributeMap(signer.signedAttrs);
    const transactionId = stringAttr(attrs, OID.transactionID, 'transactionID');
    const senderNonce = octetAttr(attrs, OID.senderNonce, 'senderNonce');
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
  const typeNumber = Number(stringAttr(attrs, OID.messageType, 'messageType'));
  const messageType = (Object.keys(MESSAGE_TYPES) as ScepMessageType[]).find((k) => MESSAGE_TYPES[k] === typeNumber);
  if (messageType !== 'PKCSReq' && messageType !== 'RenewalReq') {
    throw new ScepError('badRequest', `unsupported messageType ${Number.isFinite(typeNumber) ? typeNumber : '?'}`);
  }
  const transactionId = stringAttr(attrs, OID.transactionID, 'transactionID');
  const senderNonce = octetAttr(attrs, OID.senderNonce, 'senderNonce');
  if (!transactionId) throw new ScepError('badRequest', 'empty transactionID');
  if (senderNonce.length === 0) throw new ScepError('badRequest', 'empty senderNonce');

  const envelope = octetStringValue(sd.encapContentInfo.eContent);
  const { content: csrDer, encryption } = decryptEnvelope(envelope, ca);

  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrDer);
  } catch (err) {
    throw new ScepError('badRequest', `the envelope does not hold a PKCS#10 request: ${errorMessage(err)}`);
  }
  const challengePassword = readChallengePassword(csr);
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

function stringAttr(attrs: Map<string, asn1js.AsnType>, oid: string, name: string): string {
  const v = attrs.get(oid);
  if (!v) throw new ScepError('badRequest', `missing ${name}`);
  if (v instanceof asn1js.PrintableString || v instanceof asn1js.Utf8String || v instanceof asn1js.IA5String) return v.valueBlock.value;
  if ('valueBlock' in v && v.valueBlock && 'value' in v.valueBlock && typeof v.valueBlock.value === 'string') return v.valueBlock.value;
  throw new ScepError('badRequest', `${name} is not a string`);
}

function octetAttr(attrs: Map<string, asn1js.AsnType>, oid: string, name: string): Buffer {
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
  '1.3.14.3.2.7': { name: 'des', keyLen: 8, ivLen: 8 }, // not in Node 20's OpenSSL: forge
};

/**
 * Decrypts the request's EnvelopedData. forge parses the structure; the RSA step is a native raw
 * (RSA_NO_PADDING) private operation — Node 20 refuses PKCS#1 v1.5 private decryption, and forge's
 * JavaScript RSA takes ~200 ms — followed by our own PKCS#1 v1.5 unpadding with implicit rejection
 * (a bad padding yields a random key, so it fails later exactly like a wrong key would).
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
  const { key: caKey, cert } = caMaterial(ca);
  // Addressed to the certificate GetCACert returns (issuer and serial number), as RFC 8894 §3.2.2 requires.
  const recipient = msg.findRecipient(cert) as ForgeRecipient | null;
  if (!recipient) throw new ScepError('badRequest', 'the envelope is not addressed to this CA');
  if (recipient.encryptedContent?.algorithm !== forge.pki.oids.rsaEncryption) {
    throw new ScepError('badAlg', `unsupported key transport ${recipient.encryptedContent?.algorithm ?? '?'}`);
  }
  const encryptedKey = bytes(recipient.encryptedContent.content);
  const iv = bytes(internal.encryptedContent?.parameter);
  const encrypted = bytes(internal.encryptedContent?.content);
  if (iv.length !== cipher.ivLen) throw new ScepError('badRequest', 'the content-encryption IV has the wrong length');
  try {
    const em = crypto.privateDecrypt({ key: caKey, padding: crypto.constants.RSA_NO_PADDING }, encryptedKey);
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

function readChallengePassword(csr: x509.Pkcs10CertificateRequest): string | undefined {
  const attr = csr.getAttribute(OID.challengePassword);
  if (!attr) return undefined;
  try {
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

/** Builds the CertRep pkiMessage (a DER ContentInfo/SignedData) for a SUCCESS or FAILURE. */
export async function buildCertRep(opts: CertRepOptions): Promise<Buffer> {
  const caCertDer = Buffer.from(new crypto.X509Certificate(opts.ca.certPem).raw);
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
    : crypto.sign('sha256', signedAttrsForSigning, requireKey(opts.ca.privateKeyPem));

  const sha256Alg = seq(oid(OID.sha256), NULL);
  const signerInfo = seq(
    integer(1),
    issuerAndSerial(caCertDer),
    sha256Alg,
    tlv(0xa0, attrs),
    seq(oid(OID.rsaEncryption), NULL),
    octets(signature),
  );
  const signedData = seq(
    integer(1),
    tlv(0x31, [sha256Alg]),
    seq(oid(OID.data), tlv(0xa0, [octets(content)])),
    tlv(0xa0, [caCertDer]),
    tlv(0x31, [signerInfo]),
  );
  return seq(oid(OID.signedData), tlv(0xa0, [signedData]));
}

function requireKey(pem: string | undefined): string {
  if (!pem) throw new Error('buildCertRep needs ca.privateKeyPem or ca.sign');
  return pem;
}

/** A certs-only SignedData (RFC 8894 §3.3.2: the issued certificate inside the CertRep envelope). */
export function degenerateSignedData(certsDer: Buffer[]): Buffer {
  const sd = seq(integer(1), tlv(0x31, []), seq(oid(OID.data)), tlv(0xa0, certsDer), tlv(0x31, []));
  return seq(oid(OID.signedData), tlv(0xa0, [sd]));
}

/** EnvelopedData of `content` to the RSA key of `recipientCertDer` (key transport RSA PKCS#1 v1.5). */
export function envelope(content: Buffer, recipientCertDer: Buffer, encryption: 'aes256' | '3des'): Buffer {
  const cert = new crypto.X509Certificate(recipientCertDer);
  if (cert.publicKey.asymmetricKeyType !== 'rsa') {
    throw new ScepError('badAlg', `cannot encrypt to a ${cert.publicKey.asymmetricKeyType ?? 'unknown'} key`);
  }
  const [cipherName, keyLen, ivLen, algOid] =
    encryption === 'aes256' ? (['aes-256-cbc', 32, 16, OID.aes256Cbc] as const) : (['des-ede3-cbc', 24, 8, OID.desEde3Cbc] as const);
  const key = crypto.randomBytes(keyLen);
  const iv = crypto.randomBytes(ivLen);
  const cipher = crypto.createCipheriv(cipherName, key, iv);
  const encrypted = Buffer.concat([cipher.update(content), cipher.final()]);
  const encryptedKey = crypto.publicEncrypt({ key: cert.publicKey, padding: crypto.constants.RSA_PKCS1_PADDING }, key);
  const recipientInfo = seq(integer(0), issuerAndSerial(Buffer.from(cert.raw)), seq(oid(OID.rsaEncryption), NULL), octets(encryptedKey));
  const env = seq(
    integer(0),
    tlv(0x31, [recipientInfo]),
    seq(oid(OID.data), seq(oid(algOid), octets(iv)), tlv(0x80, [encrypted])),
  );
  return seq(oid(OID.envelopedData), tlv(0xa0, [env]));
}

// ---------------------------------------------------------------------------------------------------
// Minimal DER writer/reader (just what the CertRep needs)

const NULL = Buffer.from([0x05, 0x00]);

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

function seq(...parts: Buffer[]): Buffer {
  return tlv(0x30, parts);
}

function integer(n: number): Buffer {
  return tlv(0x02, [Buffer.from([n])]);
}

function octets(b: Buffer): Buffer {
  return tlv(0x04, [b]);
}

function printable(s: string): Buffer {
  return tlv(0x13, [Buffer.from(s, 'latin1')]);
}

function utcTime(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-11-21T19:55:55.123Z
  const s = iso.slice(2, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z';
  return tlv(0x17, [Buffer.from(s, 'latin1')]);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [];
  const push = (v: number) => {
    const chunk: number[] = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
    out.push(...chunk);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(0x06, [Buffer.from(out)]);
}

function attribute(type: string, value: Buffer): Buffer {
  return seq(oid(type), tlv(0x31, [value]));
}

/** Reads one TLV at `pos`: its full encoding and the offset of its content. */
function readTlv(buf: Buffer, pos: number): { start: number; contentStart: number; end: number; tag: number } {
  const tag = buf[pos];
  let len = buf[pos + 1];
  if (tag === undefined || len === undefined) throw new Error('truncated DER');
  let contentStart = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[contentStart + i] ?? 0);
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > buf.length) throw new Error('truncated DER');
  return { start: pos, contentStart, end, tag };
}

/** IssuerAndSerialNumber of a certificate, copied byte for byte from its TBSCertificate. */
function issuerAndSerial(certDer: Buffer): Buffer {
  const certificate = readTlv(certDer, 0);
  const tbs = readTlv(certDer, certificate.contentStart);
  let field = readTlv(certDer, tbs.contentStart);
  if (field.tag === 0xa0) field = readTlv(certDer, field.end); // [0] version
  const serial = field;
  const signatureAlg = readTlv(certDer, serial.end);
  const issuer = readTlv(certDer, signatureAlg.end);
  return seq(certDer.subarray(issuer.start, issuer.end), certDer.subarray(serial.start, serial.end));
}
