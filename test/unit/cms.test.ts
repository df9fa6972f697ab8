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
import { signAttached, verifyAttached, verifyDetachedSignature } from '../../src/pki/cms';
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
