/**
 * CMS (PKCS#7) SignedData for the Apple channel:
 *  - `verifyDetachedSignature` checks an `Mdm-Signature` header: a detached SignedData over the exact
 *    HTTP body, one signer, its certificate inside, SHA-1/SHA-256/384/512 digests, RSA PKCS#1 v1.5 or
 *    ECDSA; the signer must be a client certificate issued by our CA (same rules as TLS client auth).
 *  - `signAttached` signs a .mobileconfig (SHA-256, signed attributes contentType/messageDigest/
 *    signingTime, the signer certificate and any extra certificates included).
 *  - `verifyAttached` reads such a signed blob back.
 *
 * Verification runs on every Apple MDM request, so it has a fast path: a small reader walks the
 * definite-length encoding to the few fields it needs, the signer's public key is cached by the
 * certificate's SHA-256, and the signature is checked with node:crypto. Anything the fast path does
 * not handle (indefinite-length BER, nested constructed strings, RSA-PSS, other curves, names matched
 * only after string preparation, ...) goes to the pkijs implementation, which is also the reference
 * the tests compare against. Signing stays on pkijs over Node's WebCrypto. Verification never
 * throws: malformed input is `{ ok: false, reason }`.
 */
import crypto from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import {
  DIGESTS,
  FALLBACK,
  SIGNATURES,
  algorithmOid as algorithmOf,
  children,
  ecdsaP1363,
  expectTag,
  octetsOf,
  publicKeyOf as signerKeyOf,
  readOid as oidOf,
  readTlv as tlv,
  sameBytes as equalBytes,
  type NativePublicKey as SignerKey,
  type Tlv,
} from './der';
import { verifyClientCertificate } from './issue';

type CryptoKey = crypto.webcrypto.CryptoKey;

const engine = new pkijs.CryptoEngine({ name: 'node', crypto: crypto.webcrypto as never });
pkijs.setEngine('node', engine);

const OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingTime: '1.2.840.113549.1.9.5',
} as const;

export type DetachedVerification = { ok: true; signerDer: Buffer; sha256: string } | { ok: false; reason: string };
export type AttachedVerification = { ok: true; content: Buffer; signerDer: Buffer; sha256: string } | { ok: false; reason: string };

/**
 * Verifies an `Mdm-Signature` header value (base64 of a detached CMS SignedData) over `content`, the
 * exact request body. On success returns the signer certificate and its SHA-256 (hex), the key bound
 * to an enrollment.
 */
export function verifyDetachedSignature(signatureB64: string, content: Buffer, opts: { caPem: string; now?: Date }): Promise<DetachedVerification> {
  return detached(signatureB64, content, opts, verifySignedData);
}

/**
 * The same check on pkijs alone, without the fast path: what `verifyDetachedSignature` falls back to.
 * Exported for the tests, which compare the two.
 */
export function verifyDetachedSignatureWithPkijs(signatureB64: string, content: Buffer, opts: { caPem: string; now?: Date }): Promise<DetachedVerification> {
  return detached(signatureB64, content, opts, verifySignedDataWithPkijs);
}

async function detached(
  signatureB64: string,
  content: Buffer,
  opts: { caPem: string; now?: Date },
  check: (der: Buffer, detached: Buffer | undefined) => SignedDataCheck | Promise<SignedDataCheck>,
): Promise<DetachedVerification> {
  try {
    const der = decodeBase64(signatureB64);
    if (!der) return { ok: false, reason: 'the signature is not base64' };
    const pending = check(der, content);
    // No await (no extra turn of the microtask queue) when the fast path has decided.
    const checked = pending instanceof Promise ? await pending : pending;
    if (!checked.ok) return checked;
    // Checked at every call: the dates against now (never against signingTime: devices' clocks drift);
    // the CA's signature on the certificate is cached by verifyClientCertificate.
    const cert = verifyClientCertificate(checked.signerDer, opts.caPem, opts.now ?? new Date());
    if (!cert.ok) return { ok: false, reason: `signer certificate: ${cert.reason}` };
    checked.remember?.();
    return { ok: true, signerDer: checked.signerDer, sha256: cert.sha256 };
  } catch (err) {
    return { ok: false, reason: `signature check failed: ${(err as Error)?.message ?? String(err)}` };
  }
}

/**
 * Reads an attached CMS SignedData (a signed profile) and checks its signature. With `caPem`, the
 * signer must also be the CA itself or a certificate issued by it and valid now.
 */
export async function verifyAttached(der: Buffer, caPem?: string, now = new Date()): Promise<AttachedVerification> {
  try {
    const checked = await verifySignedData(der, undefined);
    if (!checked.ok) return checked;
    const sha256 = crypto.createHash('sha256').update(checked.signerDer).digest('hex');
    if (caPem !== undefined) {
      const ca = new crypto.X509Certificate(caPem);
      const cert = new crypto.X509Certificate(checked.signerDer);
      if (!cert.raw.equals(ca.raw) && !(cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
        return { ok: false, reason: 'signer certificate: not issued by this server' };
      }
      if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) {
        return { ok: false, reason: 'signer certificate: expired or not yet valid' };
      }
      checked.remember?.();
    }
    return { ok: true, content: checked.content, signerDer: checked.signerDer, sha256 };
  } catch (err) {
    return { ok: false, reason: `signature check failed: ${(err as Error)?.message ?? String(err)}` };
  }
}

/**
 * Signs `content` as an attached CMS SignedData (DER): SHA-256, signed attributes contentType (id-data),
 * messageDigest and signingTime, with the signer certificate and `extraCerts` (PEM) included.
 * `privateKey` is a WebCrypto key (RSASSA-PKCS1-v1_5 with SHA-256, or ECDSA) or a PKCS#8 PEM (RSA or EC).
 */
export async function signAttached(
  content: Buffer,
  signer: { certPem: string; privateKey: CryptoKey | string },
  extraCerts: string[] = [],
): Promise<Buffer> {
  const signerCert = parseCertificate(pemToDer(signer.certPem));
  const key = typeof signer.privateKey === 'string' ? await importPrivateKey(signer.privateKey) : signer.privateKey;
  const digest = crypto.createHash('sha256').update(content).digest();

  const attributes = sortForDer([
    new pkijs.Attribute({ type: OID.contentType, values: [new asn1js.ObjectIdentifier({ value: OID.data })] }),
    new pkijs.Attribute({ type: OID.signingTime, values: [new asn1js.UTCTime({ valueDate: new Date() })] }),
    new pkijs.Attribute({ type: OID.messageDigest, values: [new asn1js.OctetString({ valueHex: toArrayBuffer(digest) })] }),
  ]);

  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: OID.data,
      eContent: new asn1js.OctetString({ valueHex: toArrayBuffer(content) }),
    }),
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: signerCert.issuer, serialNumber: signerCert.serialNumber }),
        signedAttrs: new pkijs.SignedAndUnsignedAttributes({ type: 0, attributes }),
      }),
    ],
    certificates: [signerCert, ...extraCerts.map((pem) => parseCertificate(pemToDer(pem)))],
  });
  await signedData.sign(key, 0, 'SHA-256', undefined, engine);

  const contentInfo = new pkijs.ContentInfo({ contentType: OID.signedData, content: signedData.toSchema(true) });
  return Buffer.from(contentInfo.toSchema().toBER(false));
}

// ---------------------------------------------------------------------------------------------------

/**
 * A checked SignedData. `remember`, on the fast path, caches the signer's public key; callers run it
 * once they have accepted the signer certificate, so that strangers' certificates never fill the cache.
 */
type SignedDataCheck = { ok: true; signerDer: Buffer; content: Buffer; remember?: () => void } | { ok: false; reason: string };

/**
 * Parses and checks a CMS SignedData: exactly one signer whose certificate is inside, a supported
 * digest, the messageDigest/contentType signed attributes when present, and the signature. `detached`
 * is the content for a detached signature; without it the content must be attached. Fast path first;
 * pkijs for whatever the fast path leaves (it never decides those itself).
 */
function verifySignedData(der: Buffer, detached: Buffer | undefined): SignedDataCheck | Promise<SignedDataCheck> {
  if (der.length === 0) return { ok: false, reason: 'the signature is empty' };
  let fast: SignedDataCheck | typeof FALLBACK;
  try {
    fast = verifySignedDataFast(der, detached);
  } catch {
    // FALLBACK, or anything unexpected (a key node:crypto refuses, ...): pkijs decides.
    fast = FALLBACK;
  }
  if (fast !== FALLBACK) {
    cmsVerifyPaths.fast++;
    return fast;
  }
  cmsVerifyPaths.pkijs++;
  return verifySignedDataWithPkijs(der, detached);
}

/** How many SignedData checks each path decided (for tests and diagnostics; BER input goes to pkijs). */
export const cmsVerifyPaths = { fast: 0, pkijs: 0 };

/** The pkijs implementation (ContentInfo/SignedData object model, WebCrypto). */
async function verifySignedDataWithPkijs(der: Buffer, detached: Buffer | undefined): Promise<SignedDataCheck> {
  if (der.length === 0) return { ok: false, reason: 'the signature is empty' };
  const asn1 = asn1js.fromBER(toArrayBuffer(der));
  if (asn1.offset === -1 || asn1.offset !== der.length) return { ok: false, reason: 'the signature is not DER/BER' };

  let signedData: pkijs.SignedData;
  try {
    const contentInfo = new pkijs.ContentInfo({ schema: asn1.result });
    if (contentInfo.contentType !== OID.signedData) return { ok: false, reason: 'not a CMS SignedData' };
    signedData = new pkijs.SignedData({ schema: contentInfo.content });
  } catch (err) {
    return { ok: false, reason: `not a CMS SignedData: ${(err as Error)?.message ?? String(err)}` };
  }

  if (signedData.signerInfos.length !== 1) return { ok: false, reason: `expected exactly one signer, found ${signedData.signerInfos.length}` };
  const signerInfo = signedData.signerInfos[0]!;
  const certs = (signedData.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate);
  if (certs.length === 0) return { ok: false, reason: 'no certificate inside the signature' };
  const signerCert = await findSigner(signerInfo, certs);
  if (!signerCert) return { ok: false, reason: "the signer's certificate is not inside the signature" };

  const digestName = DIGESTS[signerInfo.digestAlgorithm.algorithmId];
  if (!digestName) return { ok: false, reason: `unsupported digest algorithm ${signerInfo.digestAlgorithm.algorithmId}` };

  // The content: the request body for a detached signature, or the encapsulated content.
  const eContent = signedData.encapContentInfo.eContent;
  let content: Buffer;
  if (detached !== undefined) {
    if (eContent && !Buffer.from(octets(eContent)).equals(detached)) return { ok: false, reason: 'the signature carries content other than the body' };
    content = detached;
  } else {
    if (!eContent) return { ok: false, reason: 'the signature carries no content' };
    content = Buffer.from(octets(eContent));
  }
  if (content.length === 0) return { ok: false, reason: 'empty content' };

  if (signerInfo.signedAttrs) {
    const attrs = signerInfo.signedAttrs.attributes;
    const md = attrs.filter((a) => a.type === OID.messageDigest);
    const ct = attrs.filter((a) => a.type === OID.contentType);
    if (md.length !== 1 || md[0]!.values.length !== 1 || !(md[0]!.values[0] instanceof asn1js.OctetString)) {
      return { ok: false, reason: 'signed attributes lack a single messageDigest' };
    }
    if (ct.length !== 1 || ct[0]!.values.length !== 1 || !(ct[0]!.values[0] instanceof asn1js.ObjectIdentifier)) {
      return { ok: false, reason: 'signed attributes lack a single contentType' };
    }
    if ((ct[0]!.values[0] as asn1js.ObjectIdentifier).getValue() !== signedData.encapContentInfo.eContentType) {
      return { ok: false, reason: 'the contentType attribute does not match the content type' };
    }
    const claimed = Buffer.from((md[0]!.values[0] as asn1js.OctetString).getValue());
    const actual = crypto.createHash(digestName).update(content).digest();
    if (!claimed.equals(actual)) return { ok: false, reason: 'message digest does not match the content' };
  }

  let verified: boolean;
  try {
    const result = await signedData.verify({ signer: 0, data: toArrayBuffer(content), checkChain: false, extendedMode: true }, engine);
    verified = result.signatureVerified === true;
  } catch (err) {
    const message = err instanceof pkijs.SignedDataVerifyError ? err.message : (err as Error)?.message ?? String(err);
    return { ok: false, reason: /digest/i.test(message) ? 'message digest does not match the content' : `signature check failed: ${message}` };
  }
  if (!verified) return { ok: false, reason: 'the signature does not verify' };
  return { ok: true, signerDer: Buffer.from(signerCert.toSchema().toBER(false)), content };
}

async function findSigner(signerInfo: pkijs.SignerInfo, certs: pkijs.Certificate[]): Promise<pkijs.Certificate | undefined> {
  const sid = signerInfo.sid as unknown;
  if (sid instanceof pkijs.IssuerAndSerialNumber) {
    return certs.find((c) => c.issuer.isEqual(sid.issuer) && c.serialNumber.isEqual(sid.serialNumber));
  }
  // SubjectKeyIdentifier ([0] IMPLICIT OCTET STRING), matched like pkijs does: SHA-1 of the public key.
  const block = sid as asn1js.BaseBlock & { valueBlock: { valueHex?: ArrayBuffer; value?: asn1js.BaseBlock[] } };
  const keyIdRaw = block.idBlock?.isConstructed ? (block.valueBlock.value?.[0] as unknown as { valueBlock: { valueHex: ArrayBuffer } })?.valueBlock.valueHex : block.valueBlock?.valueHex;
  if (!keyIdRaw) return undefined;
  const keyId = Buffer.from(keyIdRaw);
  return certs.find((c) => crypto.createHash('sha1').update(c.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest().equals(keyId));
}

/** The octets of an eContent OCTET STRING, primitive or constructed (BER). */
function octets(eContent: asn1js.OctetString): ArrayBuffer {
  return eContent.getValue();
}

// ---------------------------------------------------------------------------------------------------
// Fast path: a definite-length DER/BER reader (src/pki/der.ts) over the few fields needed, node:crypto for the rest.

/**
 * Signer keys by SHA-256 (base64) of the certificate DER, least recently used first. Only signers whose
 * certificate was accepted go in, so strangers cannot evict the devices'.
 */
// Larger than the fleet polling in rotation, or every request pays the ~0.4 ms first-contact parse.
const SIGNER_KEY_CACHE_SIZE = 50_000;
const signerKeys = new Map<string, SignerKey>();

/** The parts of a certificate needed to find the signer and its key. */
interface CertParts {
  node: Tlv;
  serial: Tlv;
  issuer: Tlv;
  spki: Tlv;
}

function certParts(b: Buffer, node: Tlv): CertParts {
  const outer = children(b, node);
  if (outer.length !== 3) throw FALLBACK;
  const tbs = children(b, expectTag(outer[0], 0x30));
  expectTag(outer[1], 0x30);
  expectTag(outer[2], 0x03);
  let i = tbs[0]?.tag === 0xa0 ? 1 : 0;
  const serial = expectTag(tbs[i++], 0x02);
  expectTag(tbs[i++], 0x30); // signature
  const issuer = expectTag(tbs[i++], 0x30);
  expectTag(tbs[i++], 0x30); // validity
  expectTag(tbs[i++], 0x30); // subject
  const spki = expectTag(tbs[i++], 0x30);
  return { node, serial, issuer, spki };
}

/**
 * The fast verification. Returns a verdict only where pkijs would reach the same one; throws FALLBACK
 * for everything else. Structure is read completely before any verdict, as pkijs parses before checking.
 */
function verifySignedDataFast(der: Buffer, detached: Buffer | undefined): SignedDataCheck {
  // ContentInfo. A definite outer length that does not match the input is truncation or trailing bytes.
  if (der.length < 2) return { ok: false, reason: 'the signature is not DER/BER' };
  const top = tlv(der, 0, Number.MAX_SAFE_INTEGER); // the declared length, compared with the input's
  if (top.body > der.length || top.end !== der.length) return { ok: false, reason: 'the signature is not DER/BER' };
  const contentInfo = children(der, expectTag(top, 0x30));
  if (contentInfo.length !== 2) throw FALLBACK;
  const contentType = oidOf(der, contentInfo[0]);
  const wrapped = children(der, expectTag(contentInfo[1], 0xa0));
  if (wrapped.length !== 1) throw FALLBACK;
  if (contentType !== OID.signedData) return { ok: false, reason: 'not a CMS SignedData' };

  // SignedData: version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos.
  const sd = children(der, expectTag(wrapped[0], 0x30));
  let i = 0;
  expectTag(sd[i++], 0x02);
  for (const alg of children(der, expectTag(sd[i++], 0x31))) algorithmOf(der, alg);
  const encap = children(der, expectTag(sd[i++], 0x30));
  const certsNode = sd[i]?.tag === 0xa0 ? sd[i++] : undefined;
  if (sd[i]?.tag === 0xa1) i++;
  const signerInfos = children(der, expectTag(sd[i++], 0x31));
  if (i !== sd.length) throw FALLBACK;

  if (encap.length < 1 || encap.length > 2) throw FALLBACK;
  const eContentType = oidOf(der, encap[0]);
  let eContent: Buffer | undefined;
  if (encap.length === 2) {
    const inner = children(der, expectTag(encap[1], 0xa0));
    if (inner.length !== 1) throw FALLBACK;
    eContent = octetsOf(der, inner[0]);
  }

  const certs: CertParts[] = [];
  for (const choice of certsNode ? children(der, certsNode) : []) {
    if (choice.tag === 0x30) certs.push(certParts(der, choice));
    else if (choice.tag < 0xa0 || choice.tag > 0xa3) throw FALLBACK; // other CertificateChoices are skipped, as pkijs does
  }

  // SignerInfo: version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature, [1] unsignedAttrs.
  let si: Tlv[] = [];
  for (const signerInfo of signerInfos) si = children(der, expectTag(signerInfo, 0x30));
  if (signerInfos.length !== 1) return { ok: false, reason: `expected exactly one signer, found ${signerInfos.length}` };
  let k = 0;
  expectTag(si[k++], 0x02);
  const sid = si[k++];
  const digestOid = algorithmOf(der, si[k++]);
  const signedAttrs = si[k]?.tag === 0xa0 ? si[k++] : undefined;
  const signatureOid = algorithmOf(der, si[k++]);
  const signature = expectTag(si[k++], 0x04);
  if (si[k]?.tag === 0xa1) children(der, si[k++]!);
  if (k !== si.length || !sid) throw FALLBACK;

  // The signed attributes: SET OF Attribute { type OID, values SET }.
  const attrs: { type: string; values: Tlv[] }[] = [];
  if (signedAttrs) {
    for (const attr of children(der, signedAttrs)) {
      const parts = children(der, expectTag(attr, 0x30));
      if (parts.length !== 2) throw FALLBACK;
      attrs.push({ type: oidOf(der, parts[0]), values: children(der, expectTag(parts[1], 0x31)) });
    }
  }

  if (certs.length === 0) return { ok: false, reason: 'no certificate inside the signature' };
  let signer: CertParts | undefined;
  if (sid.tag === 0x30) {
    // IssuerAndSerialNumber, matched on the encodings; pkijs also matches names equal after string
    // preparation (case, spaces, string types), so a miss is left to it.
    const ias = children(der, sid);
    if (ias.length !== 2) throw FALLBACK;
    const issuer = expectTag(ias[0], 0x30);
    const serial = expectTag(ias[1], 0x02);
    signer = certs.find((c) => equalBytes(der, c.issuer, issuer) && equalBytes(der, c.serial, serial));
    if (!signer) throw FALLBACK;
  } else {
    // SubjectKeyIdentifier, [0] IMPLICIT OCTET STRING (or, as pkijs also reads it, [0] { OCTET STRING }),
    // matched like pkijs does: the SHA-1 of the public key bits.
    let keyId: Tlv;
    if (sid.tag === 0x80) keyId = sid;
    else if (sid.tag === 0xa0) {
      const inner = children(der, sid);
      if (inner.length !== 1) throw FALLBACK;
      keyId = expectTag(inner[0], 0x04);
    } else throw FALLBACK;
    const wanted = der.subarray(keyId.body, keyId.end);
    signer = certs.find((c) => {
      const spki = children(der, c.spki);
      const bits = expectTag(spki[1], 0x03);
      if (spki.length !== 2 || bits.body === bits.end) throw FALLBACK;
      return crypto.hash('sha1', der.subarray(bits.body + 1, bits.end), 'buffer').equals(wanted);
    });
    if (!signer) return { ok: false, reason: "the signer's certificate is not inside the signature" };
  }

  const digestName = DIGESTS[digestOid];
  if (!digestName) return { ok: false, reason: `unsupported digest algorithm ${digestOid}` };

  let content: Buffer;
  if (detached !== undefined) {
    if (eContent && !eContent.equals(detached)) return { ok: false, reason: 'the signature carries content other than the body' };
    content = detached;
  } else {
    if (!eContent) return { ok: false, reason: 'the signature carries no content' };
    content = Buffer.from(eContent);
  }
  if (content.length === 0) return { ok: false, reason: 'empty content' };

  let signed: Buffer = content;
  if (signedAttrs) {
    const md = attrs.filter((a) => a.type === OID.messageDigest);
    const ct = attrs.filter((a) => a.type === OID.contentType);
    // A constructed OCTET STRING (0x24) is one for pkijs too: left to it.
    if (md.length === 1 && md[0]!.values.length === 1 && md[0]!.values[0]!.tag === 0x24) throw FALLBACK;
    if (md.length !== 1 || md[0]!.values.length !== 1 || md[0]!.values[0]!.tag !== 0x04) {
      return { ok: false, reason: 'signed attributes lack a single messageDigest' };
    }
    if (ct.length !== 1 || ct[0]!.values.length !== 1 || ct[0]!.values[0]!.tag !== 0x06) {
      return { ok: false, reason: 'signed attributes lack a single contentType' };
    }
    if (oidOf(der, ct[0]!.values[0]) !== eContentType) return { ok: false, reason: 'the contentType attribute does not match the content type' };
    const claimed = md[0]!.values[0]!;
    if (!der.subarray(claimed.body, claimed.end).equals(crypto.hash(digestName, content, 'buffer'))) {
      return { ok: false, reason: 'message digest does not match the content' };
    }
    // What was signed is the DER of the SET OF, not the [0] IMPLICIT that carries it.
    signed = Buffer.from(der.subarray(signedAttrs.start, signedAttrs.end));
    signed[0] = 0x31;
  }

  const algorithm = SIGNATURES.get(signatureOid);
  if (!algorithm) throw FALLBACK;
  const certDer = der.subarray(signer.node.start, signer.node.end);
  const cacheKey = crypto.hash('sha256', certDer, 'base64');
  let key: SignerKey | null | undefined = signerKeys.get(cacheKey);
  const cached = key !== undefined;
  if (key === undefined) key = signerKeyOf(der, signer.spki);
  if (key === null || key.kind !== algorithm.kind) throw FALLBACK;

  const hash = algorithm.hash ?? digestName;
  const value = der.subarray(signature.body, signature.end);
  let verified: boolean;
  if (key.kind === 'rsa') {
    verified = crypto.verify(hash, signed, key.key, value);
  } else {
    const p1363 = ecdsaP1363(der, signature.body, signature.end, key.size);
    verified = p1363 !== undefined && crypto.verify(hash, signed, { key: key.key, dsaEncoding: 'ieee-p1363' }, p1363);
  }
  if (!verified) return { ok: false, reason: 'the signature does not verify' };

  const signerKey = key;
  const remember = (): void => {
    if (cached) {
      // Least recently used first: move it to the end.
      signerKeys.delete(cacheKey);
    } else if (signerKeys.size >= SIGNER_KEY_CACHE_SIZE) {
      signerKeys.delete(signerKeys.keys().next().value!);
    }
    signerKeys.set(cacheKey, signerKey);
  };
  return { ok: true, signerDer: Buffer.from(certDer), content, remember };
}

/** DER requires a SET OF to be sorted by encoding; verifiers such as OpenSSL re-encode signed attributes. */
function sortForDer(attributes: pkijs.Attribute[]): pkijs.Attribute[] {
  return attributes
    .map((a) => ({ a, enc: Buffer.from(a.toSchema().toBER(false)) }))
    .sort((x, y) => Buffer.compare(x.enc, y.enc))
    .map((x) => x.a);
}

/** Base64 or base64url, whitespace allowed; undefined for anything else. */
function decodeBase64(text: string): Buffer | undefined {
  // The usual header is plain base64 with no whitespace: Node's decoder skips characters it does not
  // know, so a decoded length that matches the text's proves every character counted (no regex pass).
  const der = Buffer.from(text, 'base64');
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  if (der.length > 0 && text.length % 4 === 0 && der.length === (text.length / 4) * 3 - padding) return der;
  // Otherwise clean it: whitespace and line breaks removed, URL-safe letters accepted, anything else refused.
  const clean = text.replace(/\s+/g, '');
  if (clean.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(clean)) return undefined;
  const cleaned = Buffer.from(clean.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return cleaned.length > 0 ? cleaned : undefined;
}

function pemToDer(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error('not a PEM certificate');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

function parseCertificate(der: Buffer): pkijs.Certificate {
  return pkijs.Certificate.fromBER(toArrayBuffer(der));
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const key = crypto.createPrivateKey(pem);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  if (key.asymmetricKeyType === 'rsa') {
    return crypto.webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : curve === 'secp521r1' ? 'P-521' : undefined;
    if (!namedCurve) throw new Error(`unsupported EC curve ${curve}`);
    return crypto.webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve }, false, ['sign']);
  }
  throw new Error(`unsupported signing key type ${key.asymmetricKeyType}`);
}

function toArrayBuffer(buf: Buffer): ArrayBuffer {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}
