import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';
import { ensureTlsCertificate, loadOrCreateCa, type CertificateAuthority } from '../../src/pki/ca';
import { cmsVerifyPaths, signAttached, verifyAttached, verifyDetachedSignature, verifyDetachedSignatureWithPkijs } from '../../src/pki/cms';
import { issueClientCertificate, type IssuedCertificate } from '../../src/pki/issue';

type CryptoKey = crypto.webcrypto.CryptoKey;
type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(crypto.webcrypto as never);
const subtle = crypto.webcrypto.subtle;
const engine = new pkijs.CryptoEngine({ name: 'node', crypto: crypto.webcrypto as never });

const RSA_SHA256 = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

const BODY = Buffer.from(
  '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>MessageType</key><string>Authenticate</string>' +
    '<key>UDID</key><string>0000-TEST</string></dict></plist>\n',
);

interface Identity {
  cert: IssuedCertificate;
  keys: CryptoKeyPair;
}

let dir: string;
let otherDir: string;
let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let rsa: Identity;
let ec: Identity;
let foreign: Identity;
let expired: Identity;

async function identity(authority: CertificateAuthority, alg: typeof RSA_SHA256 | typeof EC_P256, opts: { days?: number; now?: Date } = {}): Promise<Identity> {
  const keys = (await subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys, signingAlgorithm: alg });
  const cert = await issueClientCertificate(authority, csr, { commonName: `device-${crypto.randomUUID()}`, ...opts });
  return { cert, keys };
}

const buf = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/** A detached CMS SignedData as a device makes it for Mdm-Signature (pkijs; RSA or ECDSA). */
async function deviceSignPkijs(content: Buffer, id: Identity, opts: { signedAttrs?: boolean } = {}): Promise<string> {
  const cert = pkijs.Certificate.fromBER(buf(id.cert.der));
  const digest = crypto.createHash('sha256').update(content).digest();
  const signerInfo = new pkijs.SignerInfo({
    version: 1,
    sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
  });
  if (opts.signedAttrs !== false) {
    signerInfo.signedAttrs = new pkijs.SignedAndUnsignedAttributes({
      type: 0,
      attributes: [
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.3', values: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.1' })] }),
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.5', values: [new asn1js.UTCTime({ valueDate: new Date() })] }),
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.4', values: [new asn1js.OctetString({ valueHex: buf(digest) })] }),
      ],
    });
  }
  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: '1.2.840.113549.1.7.1' }),
    signerInfos: [signerInfo],
    certificates: [cert],
  });
  await signedData.sign(id.keys.privateKey as CryptoKey, 0, 'SHA-256', buf(content), engine);
  const ci = new pkijs.ContentInfo({ contentType: '1.2.840.113549.1.7.2', content: signedData.toSchema(true) });
  return Buffer.from(ci.toSchema().toBER(false)).toString('base64');
}

/** The same with node-forge, SHA-1 and RSA, as older devices and smallstep/pkcs7 simulators sign. */
async function deviceSignForgeSha1(content: Buffer, id: Identity): Promise<string> {
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', id.keys.privateKey as CryptoKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`;
  const p7 = forge.pkcs7.createSignedData();
  p7.content = forge.util.createBuffer(content.toString('binary'));
  const certificate = forge.pki.certificateFromPem(id.cert.pem);
  p7.addCertificate(certificate);
  p7.addSigner({
    key: forge.pki.privateKeyFromPem(keyPem),
    certificate,
    digestAlgorithm: forge.pki.oids.sha1!,
    authenticatedAttributes: [
      { type: forge.pki.oids.contentType!, value: forge.pki.oids.data! },
      { type: forge.pki.oids.messageDigest! },
      { type: forge.pki.oids.signingTime!, value: new Date() as unknown as string },
    ],
  });
  p7.sign({ detached: true });
  return Buffer.from(forge.asn1.toDer(p7.toAsn1()).getBytes(), 'binary').toString('base64');
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-cms-'));
  otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-cms-other-'));
  [ca, otherCa] = await Promise.all([loadOrCreateCa(dir), loadOrCreateCa(otherDir)]);
  [rsa, ec, foreign, expired] = await Promise.all([
    identity(ca, RSA_SHA256),
    identity(ca, EC_P256),
    identity(otherCa, RSA_SHA256),
    identity(ca, RSA_SHA256, { days: 1, now: new Date(Date.now() - 10 * 24 * 3600 * 1000) }),
  ]);
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(otherDir, { recursive: true, force: true });
});

describe('verifyDetachedSignature (Mdm-Signature)', () => {
  it('accepts an RSA signer with SHA-256 and signed attributes', async () => {
    const sig = await deviceSignPkijs(BODY, rsa);
    const res = await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem });
    expect(res).toEqual({ ok: true, signerDer: rsa.cert.der, sha256: rsa.cert.sha256 });
  });

  it('accepts an RSA signer with SHA-1 (node-forge, like older devices)', async () => {
    const sig = await deviceSignForgeSha1(BODY, rsa);
    const res = await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem });
    expect(res).toMatchObject({ ok: true, sha256: rsa.cert.sha256 });
  });

  it('accepts an ECDSA P-256 signer with SHA-256', async () => {
    const sig = await deviceSignPkijs(BODY, ec);
    const res = await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem });
    expect(res).toMatchObject({ ok: true, sha256: ec.cert.sha256 });
  });

  it('accepts a signature without signed attributes', async () => {
    const sig = await deviceSignPkijs(BODY, rsa, { signedAttrs: false });
    expect(await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem })).toMatchObject({ ok: true, sha256: rsa.cert.sha256 });
    const tampered = Buffer.from(BODY.toString().replace('Authenticate', 'TokenUpdate'));
    const res = await verifyDetachedSignature(sig, tampered, { caPem: ca.certPem });
    expect(res.ok).toBe(false);
  });

  it.each([
    ['RSA SHA-256', () => deviceSignPkijs(BODY, rsa)],
    ['RSA SHA-1', () => deviceSignForgeSha1(BODY, rsa)],
    ['ECDSA SHA-256', () => deviceSignPkijs(BODY, ec)],
  ])('rejects a tampered body (%s) with a digest reason', async (_name, sign) => {
    const sig = await sign();
    const tampered = Buffer.from(BODY.toString().replace('0000-TEST', '0000-EVIL'));
    const res = await verifyDetachedSignature(sig, tampered, { caPem: ca.certPem });
    expect(res.ok).toBe(false);
    expect(!res.ok && res.reason).toMatch(/digest/);
  });

  it('rejects a signer certificate from another CA', async () => {
    const sig = await deviceSignPkijs(BODY, foreign);
    const res = await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem });
    expect(res).toEqual({ ok: false, reason: expect.stringMatching(/not issued by this server/) });
  });

  it('rejects an expired signer certificate, and honours opts.now', async () => {
    const sig = await deviceSignPkijs(BODY, expired);
    const res = await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem });
    expect(res).toEqual({ ok: false, reason: expect.stringMatching(/expired/) });
    const then = new Date(expired.cert.notBefore.getTime() + 3600 * 1000);
    expect(await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem, now: then })).toMatchObject({ ok: true });
  });

  it('rejects a certificate without clientAuth (the TLS server certificate)', async () => {
    const tls = await ensureTlsCertificate(ca, dir, ['localhost']);
    const keys = {
      privateKey: await subtle.importKey('pkcs8', crypto.createPrivateKey(tls.keyPem).export({ type: 'pkcs8', format: 'der' }), RSA_SHA256, false, ['sign']),
    } as CryptoKeyPair;
    const der = new crypto.X509Certificate(tls.certPem).raw;
    const sig = await deviceSignPkijs(BODY, { cert: { der, pem: tls.certPem } as IssuedCertificate, keys });
    const res = await verifyDetachedSignature(sig, BODY, { caPem: ca.certPem });
    expect(res).toEqual({ ok: false, reason: expect.stringMatching(/client authentication/) });
  });

  it('fails cleanly on garbage, never throwing', async () => {
    const sig = await deviceSignPkijs(BODY, rsa);
    const inputs = [
      '',
      '!!!not base64!!!',
      'aGVsbG8gd29ybGQ=', // "hello world"
      Buffer.from([0x30, 0x82, 0xff, 0xff, 0x01]).toString('base64'),
      Buffer.from(new asn1js.Sequence({ value: [new asn1js.Integer({ value: 1 })] }).toBER()).toString('base64'),
      sig.slice(0, sig.length / 2),
      Buffer.from(Buffer.from(sig, 'base64').subarray(0, -8)).toString('base64'),
    ];
    for (const input of inputs) {
      const res = await verifyDetachedSignature(input, BODY, { caPem: ca.certPem });
      expect(res.ok).toBe(false);
      expect(!res.ok && typeof res.reason).toBe('string');
    }
    // A flipped bit in the signature value itself.
    const der = Buffer.from(sig, 'base64');
    der[der.length - 5]! ^= 0x01;
    const flipped = await verifyDetachedSignature(der.toString('base64'), BODY, { caPem: ca.certPem });
    expect(flipped.ok).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------
// The fast path (hand-read DER, node:crypto) against the pkijs implementation it falls back to.

const OID_SHA256_DER = Buffer.from('0609608648016503040201', 'hex');

interface SignOptions {
  /** The messageDigest attribute's value (default: the right one). */
  digest?: Buffer;
  signingTime?: Date;
  /** The certificates inside, in order (default: the signer's alone). */
  certificates?: Buffer[];
  /** How the signer is identified: issuer and serial (default), or its key identifier, IMPLICIT or wrapped. */
  sid?: 'issuerAndSerial' | 'keyId' | 'keyIdWrapped' | Buffer;
  signedAttrs?: boolean;
  /** Carry the content inside too. */
  attached?: boolean;
}

/** SHA-1 of the subjectPublicKey bits: the key identifier pkijs (and RFC 5280 method 1) use. */
function keyIdOf(der: Buffer): Buffer {
  const cert = pkijs.Certificate.fromBER(buf(der));
  return crypto.createHash('sha1').update(cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
}

async function signDer(content: Buffer, id: Identity, opts: SignOptions = {}): Promise<Buffer> {
  const cert = pkijs.Certificate.fromBER(buf(id.cert.der));
  const keyIdValue = Buffer.isBuffer(opts.sid) ? opts.sid : keyIdOf(id.cert.der);
  const sid =
    opts.sid === undefined || opts.sid === 'issuerAndSerial'
      ? new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber })
      : opts.sid === 'keyIdWrapped'
        ? new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.OctetString({ valueHex: buf(keyIdValue) })] })
        : new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: buf(keyIdValue) });
  const signerInfo = new pkijs.SignerInfo({ version: 1, sid: sid as never });
  if (opts.signedAttrs !== false) {
    const digest = opts.digest ?? crypto.createHash('sha256').update(content).digest();
    signerInfo.signedAttrs = new pkijs.SignedAndUnsignedAttributes({
      type: 0,
      attributes: [
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.3', values: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.1' })] }),
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.5', values: [new asn1js.UTCTime({ valueDate: opts.signingTime ?? new Date() })] }),
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.4', values: [new asn1js.OctetString({ valueHex: buf(digest) })] }),
      ],
    });
  }
  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: '1.2.840.113549.1.7.1',
      ...(opts.attached ? { eContent: new asn1js.OctetString({ valueHex: buf(content) }) } : {}),
    }),
    signerInfos: [signerInfo],
    certificates: (opts.certificates ?? [id.cert.der]).map((der) => pkijs.Certificate.fromBER(buf(der))),
  });
  await signedData.sign(id.keys.privateKey as CryptoKey, 0, 'SHA-256', buf(content), engine);
  const ci = new pkijs.ContentInfo({ contentType: '1.2.840.113549.1.7.2', content: signedData.toSchema(true) });
  return Buffer.from(ci.toSchema().toBER(false));
}

/** One TLV's header: tag, where the value starts and ends (definite lengths only). */
function tlvAt(b: Buffer, pos: number): { tag: number; body: number; end: number } {
  const tag = b[pos]!;
  let len = b[pos + 1]!;
  let body = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[body++]!;
  }
  return { tag, body, end: body + len };
}

/**
 * BER as streaming CMS writers produce it: the outer layers (ContentInfo, its [0], SignedData and the
 * SignedData's own fields) re-encoded with indefinite lengths, everything deeper (certificates, the
 * SignerInfo and its signed attributes) left in DER.
 */
function toIndefinite(der: Buffer, depth = 0, maxDepth = 3): Buffer {
  const { tag, body, end } = tlvAt(der, 0);
  if (!(tag & 0x20) || depth > maxDepth) return der.subarray(0, end);
  const parts: Buffer[] = [Buffer.from([tag, 0x80])];
  for (let pos = body; pos < end; ) {
    const child = tlvAt(der, pos);
    parts.push(toIndefinite(der.subarray(pos, child.end), depth + 1, maxDepth));
    pos = child.end;
  }
  parts.push(Buffer.from([0, 0]));
  return Buffer.concat(parts);
}

/** A deterministic PRNG (mulberry32), so that a failing corruption can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('verifyDetachedSignature: fast path and pkijs fallback', () => {
  /** Runs both implementations: same verdict, same reason. Returns the fast one's, and which path decided. */
  async function both(der: Buffer | string, body = BODY): Promise<{ res: Awaited<ReturnType<typeof verifyDetachedSignature>>; path: 'fast' | 'pkijs' }> {
    const sig = typeof der === 'string' ? der : der.toString('base64');
    const before = { ...cmsVerifyPaths };
    const res = await verifyDetachedSignature(sig, body, { caPem: ca.certPem });
    const path = cmsVerifyPaths.fast > before.fast ? 'fast' : 'pkijs';
    const ref = await verifyDetachedSignatureWithPkijs(sig, body, { caPem: ca.certPem });
    expect(res).toEqual(ref);
    return { res, path };
  }

  it('decides the usual signatures itself (RSA SHA-256, RSA SHA-1 by node-forge, ECDSA P-256/384/521, no signed attributes)', async () => {
    const ecBig = await Promise.all(
      (['P-384', 'P-521'] as const).map(async (namedCurve) => {
        const alg = { name: 'ECDSA', namedCurve, hash: namedCurve === 'P-384' ? 'SHA-384' : 'SHA-512' } as const;
        const keys = (await subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
        const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys, signingAlgorithm: alg });
        return { keys, cert: await issueClientCertificate(ca, csr, { commonName: `device-${namedCurve}` }) };
      }),
    );
    for (const sig of [
      await signDer(BODY, ecBig[0]!),
      await signDer(BODY, ecBig[1]!),
      await signDer(BODY, rsa),
      Buffer.from(await deviceSignForgeSha1(BODY, rsa), 'base64'),
      await signDer(BODY, ec),
      await signDer(BODY, rsa, { signedAttrs: false }),
      await signDer(BODY, ec, { signedAttrs: false }),
    ]) {
      const { res, path } = await both(sig);
      expect(res.ok).toBe(true);
      expect(path).toBe('fast');
    }
  });

  it('accepts BER (indefinite lengths) by falling back to pkijs', async () => {
    const der = await signDer(BODY, rsa);
    const ber = toIndefinite(der);
    expect(ber[1]).toBe(0x80);
    expect(ber.equals(der)).toBe(false);
    const { res, path } = await both(ber);
    expect(res).toEqual({ ok: true, signerDer: rsa.cert.der, sha256: rsa.cert.sha256 });
    expect(path).toBe('pkijs');
    // Still checked: a tampered body is refused on that path too.
    const { res: tampered } = await both(ber, Buffer.from(BODY.toString().replace('0000-TEST', '0000-EVIL')));
    expect(tampered).toEqual({ ok: false, reason: 'message digest does not match the content' });
  });

  it('reads attached content from BER (a constructed OCTET STRING) through pkijs', async () => {
    const der = toIndefinite(await signDer(BODY, rsa, { attached: true }));
    // pkijs writes eContent as [0] { OCTET STRING (constructed) { OCTET STRING } }, which the fast path
    // reads; with the envelope indefinite-length now, make that [0] and the outer OCTET STRING
    // indefinite too, in two chunks.
    const at = der.indexOf(BODY);
    expect(der.subarray(at - 9, at)).toEqual(Buffer.from([0xa0, 0x81, BODY.length + 6, 0x24, 0x81, BODY.length + 3, 0x04, 0x81, BODY.length]));
    const chunked = Buffer.concat([
      Buffer.from([0xa0, 0x80, 0x24, 0x80]),
      Buffer.from([0x04, 0x40]),
      BODY.subarray(0, 0x40),
      Buffer.from([0x04, 0x81, BODY.length - 0x40]),
      BODY.subarray(0x40),
      Buffer.from([0, 0, 0, 0]),
    ]);
    const ber = Buffer.concat([der.subarray(0, at - 9), chunked, der.subarray(at + BODY.length)]);
    const before = cmsVerifyPaths.pkijs;
    expect(await verifyAttached(ber, ca.certPem)).toMatchObject({ ok: true, content: BODY, signerDer: rsa.cert.der });
    expect(cmsVerifyPaths.pkijs).toBe(before + 1);
    const { res } = await both(ber);
    expect(res).toMatchObject({ ok: true, sha256: rsa.cert.sha256 });
  });

  it('finds the signer listed second among several certificates', async () => {
    const der = await signDer(BODY, rsa, { certificates: [Buffer.from(ca.cert.rawData), rsa.cert.der, ec.cert.der] });
    const { res, path } = await both(der);
    expect(res).toEqual({ ok: true, signerDer: rsa.cert.der, sha256: rsa.cert.sha256 });
    expect(path).toBe('fast');
    // Without the signer's certificate among them.
    const missing = await signDer(BODY, rsa, { certificates: [Buffer.from(ca.cert.rawData), ec.cert.der] });
    expect((await both(missing)).res).toEqual({ ok: false, reason: "the signer's certificate is not inside the signature" });
  });

  it('finds the signer by SubjectKeyIdentifier, IMPLICIT or wrapped', async () => {
    for (const sid of ['keyId', 'keyIdWrapped'] as const) {
      const der = await signDer(BODY, ec, { sid, certificates: [rsa.cert.der, ec.cert.der] });
      const { res, path } = await both(der);
      expect(res).toEqual({ ok: true, signerDer: ec.cert.der, sha256: ec.cert.sha256 });
      expect(path).toBe('fast');
    }
    const unknown = await signDer(BODY, ec, { sid: crypto.randomBytes(20) });
    expect(await both(unknown)).toEqual({ res: { ok: false, reason: "the signer's certificate is not inside the signature" }, path: 'fast' });
  });

  it('refuses a messageDigest attribute that is not the body digest', async () => {
    const der = await signDer(BODY, rsa, { digest: crypto.createHash('sha256').update('something else').digest() });
    expect(await both(der)).toEqual({ res: { ok: false, reason: 'message digest does not match the content' }, path: 'fast' });
  });

  it('refuses tampered signed attributes', async () => {
    const der = await signDer(BODY, rsa, { signingTime: new Date('2024-05-06T07:08:09Z') });
    const at = der.indexOf('240506070809Z');
    expect(at).toBeGreaterThan(0);
    der[at + 10] = '1'.charCodeAt(0); // ...0819Z: still a valid time, no longer what was signed
    expect(await both(der)).toEqual({ res: { ok: false, reason: 'the signature does not verify' }, path: 'fast' });
  });

  it('does not judge signingTime against the certificate validity (device clocks drift)', async () => {
    for (const signingTime of [new Date('2001-01-01T00:00:00Z'), new Date(Date.now() + 400 * 24 * 3600 * 1000)]) {
      const { res } = await both(await signDer(BODY, rsa, { signingTime }));
      expect(res).toMatchObject({ ok: true, sha256: rsa.cert.sha256 });
    }
  });

  it('names an unsupported digest algorithm', async () => {
    const der = await signDer(BODY, rsa);
    // SHA-256 -> SHA-224 in digestAlgorithms and the SignerInfo (the certificate uses sha256WithRSAEncryption, another OID).
    const sha224 = Buffer.from('0609608648016503040204', 'hex');
    let n = 0;
    for (let at = der.indexOf(OID_SHA256_DER); at >= 0; at = der.indexOf(OID_SHA256_DER, at + 1), n++) sha224.copy(der, at);
    expect(n).toBe(2);
    expect(await both(der)).toEqual({ res: { ok: false, reason: 'unsupported digest algorithm 2.16.840.1.101.3.4.2.4' }, path: 'fast' });
  });

  it('refuses truncated DER without calling pkijs', async () => {
    const der = await signDer(BODY, rsa);
    for (const length of [1, 2, 4, 100, der.length / 2, der.length - 300, der.length - 1]) {
      const { res, path } = await both(der.subarray(0, Math.floor(length)));
      expect(res).toEqual({ ok: false, reason: 'the signature is not DER/BER' });
      if (length > 4) expect(path).toBe('fast');
    }
    // Trailing bytes are refused the same way.
    expect(await both(Buffer.concat([der, Buffer.from([0])]))).toEqual({ res: { ok: false, reason: 'the signature is not DER/BER' }, path: 'fast' });
  });

  it('never throws on random corruptions, and never accepts another identity', async () => {
    const random = prng(0x5eed);
    const signatures = [await signDer(BODY, rsa), await signDer(BODY, ec, { sid: 'keyId' }), Buffer.from(await deviceSignForgeSha1(BODY, rsa), 'base64')];
    const owners = [rsa, ec, rsa];
    let accepted = 0;
    let fallbacks = 0;
    const disagreements: string[] = [];
    for (let i = 0; i < 300; i++) {
      const which = i % signatures.length;
      const der = Buffer.from(signatures[which]!);
      const kind = Math.floor(random() * 4);
      let input: Buffer = der;
      if (kind === 0) {
        der[Math.floor(random() * der.length)] = Math.floor(random() * 256); // one random byte
      } else if (kind === 1) {
        for (let n = 1 + Math.floor(random() * 4); n > 0; n--) der[Math.floor(random() * der.length)] ^= 1 << Math.floor(random() * 8); // a few bit flips
      } else if (kind === 2) {
        const at = Math.floor(random() * der.length);
        input = Buffer.concat([der.subarray(0, at), der.subarray(at + 1 + Math.floor(random() * 8))]); // bytes removed
      } else {
        // A length byte somewhere in the first 64 bytes (the envelope's headers) made large, small or indefinite.
        const at = Math.floor(random() * 64);
        der[at] = [0x80, 0x81, 0x84, 0x00, 0xff][Math.floor(random() * 5)]!;
      }
      const before = cmsVerifyPaths.pkijs;
      let res: Awaited<ReturnType<typeof verifyDetachedSignature>>;
      try {
        res = await verifyDetachedSignature(input.toString('base64'), BODY, { caPem: ca.certPem });
      } catch (err) {
        throw new Error(`corruption #${i} threw: ${String(err)}`);
      }
      if (cmsVerifyPaths.pkijs > before) fallbacks++;
      if (res.ok) {
        accepted++;
        expect(res.sha256).toBe(owners[which]!.cert.sha256);
      } else {
        expect(typeof res.reason).toBe('string');
        expect(res.reason.length).toBeGreaterThan(0);
      }
      const ref = await verifyDetachedSignatureWithPkijs(input.toString('base64'), BODY, { caPem: ca.certPem });
      if (ref.ok !== res.ok) disagreements.push(`#${i}: fast ${res.ok ? 'ok' : res.reason} / pkijs ${ref.ok ? 'ok' : ref.reason}`);
    }
    // Most corruptions break something; a few land in bytes nobody checks (a version number, an
    // unused algorithm parameter) and still verify, as the same signer.
    expect(accepted).toBeLessThan(60);
    expect(fallbacks).toBeGreaterThan(0);
    // The fast path never accepts what pkijs refuses. It does refuse some of what pkijs accepts: asn1js
    // reads an outer length shorter than its contents, and pkijs re-encodes a certificate whose inner
    // lengths or time strings were damaged back into the original (so the CA signature verifies); the
    // fast path takes the bytes as they are.
    for (const d of disagreements) expect(d).toMatch(/: fast (the signature is not DER\/BER|signer certificate: not an X\.509 certificate) \/ pkijs ok$/);
  });
});

describe('signAttached / verifyAttached (signed .mobileconfig)', () => {
  const profile = Buffer.from('<?xml version="1.0"?><plist version="1.0"><dict><key>PayloadType</key><string>Configuration</string></dict></plist>');

  it('round-trips with the CA key (WebCrypto) and with a PEM key plus extra certificates', async () => {
    const signed = await signAttached(profile, { certPem: ca.certPem, privateKey: ca.keys.privateKey as CryptoKey });
    const res = await verifyAttached(signed, ca.certPem);
    expect(res).toMatchObject({ ok: true, content: profile, signerDer: Buffer.from(ca.cert.rawData) });

    const tls = await ensureTlsCertificate(ca, dir, ['localhost']);
    const signed2 = await signAttached(profile, { certPem: tls.certPem, privateKey: tls.keyPem }, [ca.certPem]);
    const res2 = await verifyAttached(signed2, ca.certPem);
    expect(res2).toMatchObject({ ok: true, content: profile, signerDer: new crypto.X509Certificate(tls.certPem).raw });

    expect(await verifyAttached(signed2, otherCa.certPem)).toEqual({ ok: false, reason: expect.stringMatching(/not issued/) });
    expect((await verifyAttached(Buffer.from('garbage'))).ok).toBe(false);

    // The signed attributes are there and the digest is SHA-256.
    const sd = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(buf(signed)).content });
    expect(sd.signerInfos[0]!.digestAlgorithm.algorithmId).toBe('2.16.840.1.101.3.4.2.1');
    expect(sd.signerInfos[0]!.signedAttrs!.attributes.map((a) => a.type).sort()).toEqual(['1.2.840.113549.1.9.3', '1.2.840.113549.1.9.4', '1.2.840.113549.1.9.5']);
    expect(sd.certificates).toHaveLength(1);
  });

  it('verifies its own output on the fast path (attached content as a constructed OCTET STRING)', async () => {
    const signed = await signAttached(profile, { certPem: ca.certPem, privateKey: ca.keys.privateKey as CryptoKey });
    const before = { ...cmsVerifyPaths };
    expect(await verifyAttached(signed, ca.certPem)).toMatchObject({ ok: true, content: profile });
    expect(cmsVerifyPaths).toEqual({ fast: before.fast + 1, pkijs: before.pkijs });
  });

  it('rejects modified content', async () => {
    const signed = await signAttached(profile, { certPem: ca.certPem, privateKey: ca.keys.privateKey as CryptoKey });
    const at = signed.indexOf(Buffer.from('Configuration'));
    const copy = Buffer.from(signed);
    copy[at] = 'X'.charCodeAt(0);
    const res = await verifyAttached(copy, ca.certPem);
    expect(res).toEqual({ ok: false, reason: expect.stringMatching(/digest/) });
  });

  it('is accepted by openssl cms -verify when openssl is installed', async () => {
    let haveOpenssl = true;
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
    } catch {
      haveOpenssl = false;
    }
    if (!haveOpenssl) return;
    const tls = await ensureTlsCertificate(ca, dir, ['localhost']);
    for (const signer of [
      { certPem: ca.certPem, privateKey: ca.keys.privateKey as CryptoKey },
      { certPem: tls.certPem, privateKey: tls.keyPem },
    ]) {
      const signed = await signAttached(profile, signer, [ca.certPem]);
      const inFile = path.join(dir, 'signed.der');
      const outFile = path.join(dir, 'content.out');
      fs.writeFileSync(inFile, signed);
      execFileSync('openssl', ['cms', '-verify', '-inform', 'DER', '-in', inFile, '-noverify', '-out', outFile], { stdio: 'pipe' });
      expect(fs.readFileSync(outFile)).toEqual(profile);
      // And with the chain checked against our CA.
      const caFile = path.join(dir, 'ca-check.pem');
      fs.writeFileSync(caFile, ca.certPem);
      execFileSync('openssl', ['cms', '-verify', '-inform', 'DER', '-in', inFile, '-CAfile', caFile, '-purpose', 'any', '-out', outFile], { stdio: 'pipe' });
    }
  });
});
