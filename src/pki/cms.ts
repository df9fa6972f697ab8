/**
 * CMS (PKCS#7) SignedData for the Apple channel:
 *  - `verifyDetachedSignature` checks an `Mdm-Signature` header: a detached SignedData over the exact
 *    HTTP body, one signer, its certificate inside, SHA-1/SHA-256 digests, RSA PKCS#1 v1.5 or ECDSA;
 *    the signer must be a client certificate issued by our CA (same rules as TLS client auth).
 *  - `signAttached` signs a .mobileconfig (SHA-256, signed attributes contentType/messageDigest/
 *    signingTime, the signer certificate and any extra certificates included).
 *  - `verifyAttached` reads such a signed blob back.
 * Everything runs on pkijs over Node's WebCrypto. Verification never throws: malformed input is
 * `{ ok: false, reason }`.
 */
import crypto from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
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

/** Digest algorithms we accept from devices, by OID, as node:crypto names. */
const DIGESTS: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

export type DetachedVerification = { ok: true; signerDer: Buffer; sha256: string } | { ok: false; reason: string };
export type AttachedVerification = { ok: true; content: Buffer; signerDer: Buffer; sha256: string } | { ok: false; reason: string };

/**
 * Verifies an `Mdm-Signature` header value (base64 of a detached CMS SignedData) over `content`, the
 * exact request body. On success returns the signer certificate and its SHA-256 (hex), the key bound
 * to an enrollment.
 */
export async function verifyDetachedSignature(signatureB64: string, content: Buffer, opts: { caPem: string; now?: Date }): Promise<DetachedVerification> {
  try {
    const der = decodeBase64(signatureB64);
    if (!der) return { ok: false, reason: 'the signature is not base64' };
    const checked = await verifySignedData(der, content);
    if (!checked.ok) return checked;
    const cert = verifyClientCertificate(checked.signerDer, opts.caPem, opts.now ?? new Date());
    if (!cert.ok) return { ok: false, reason: `signer certificate: ${cert.reason}` };
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

type SignedDataCheck = { ok: true; signerDer: Buffer; content: Buffer } | { ok: false; reason: string };

/**
 * Parses and checks a CMS SignedData: exactly one signer whose certificate is inside, a supported
 * digest, the messageDigest/contentType signed attributes when present, and the signature. `detached`
 * is the content for a detached signature; without it the content must be attached.
 */
async function verifySignedData(der: Buffer, detached: Buffer | undefined): Promise<SignedDataCheck> {
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

/** DER requires a SET OF to be sorted by encoding; verifiers such as OpenSSL re-encode signed attributes. */
function sortForDer(attributes: pkijs.Attribute[]): pkijs.Attribute[] {
  return attributes
    .map((a) => ({ a, enc: Buffer.from(a.toSchema().toBER(false)) }))
    .sort((x, y) => Buffer.compare(x.enc, y.enc))
    .map((x) => x.a);
}

function decodeBase64(text: string): Buffer | undefined {
  const clean = text.replace(/\s+/g, '');
  if (clean.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(clean)) return undefined;
  const der = Buffer.from(clean.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return der.length > 0 ? der : undefined;
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
