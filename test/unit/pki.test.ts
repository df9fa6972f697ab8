import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { parsePkiMessage } from '../../protocols/apple/scep';
import { ensureTlsCertificate, loadOrCreateCa, type CertificateAuthority } from '../../src/pki/ca';
import { withDirLock } from '../../src/pki/dir-lock';
import {
  csrPaths,
  issueClientCertificate,
  issueClientCertificateWithX509,
  readCsr,
  readCsrWithX509,
  verifyClientCertificate,
} from '../../src/pki/issue';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-pki-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

it('makes one CA when several starts race on a shared certs directory', async () => {
  const cas = await Promise.all([1, 2, 3].map(() => withDirLock(dir, () => loadOrCreateCa(dir))));
  expect(new Set(cas.map((c) => c.certPem)).size).toBe(1);
  expect(cas.filter((c) => c.created)).toHaveLength(1);
  expect(fs.statSync(path.join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(dir).sort()).toEqual(['ca.crt', 'ca.key']);
});

it('issues a server certificate for the hosts, chained to the CA, and reissues it when the host changes', async () => {
  const ca = await loadOrCreateCa(dir);
  const first = await ensureTlsCertificate(ca, dir, ['mdm.example.com', 'localhost', '127.0.0.1']);
  const cert = new crypto.X509Certificate(first.certPem);
  expect(cert.checkIssued(new crypto.X509Certificate(ca.certPem))).toBe(true);
  expect(cert.verify(new crypto.X509Certificate(ca.certPem).publicKey)).toBe(true);
  expect(cert.subjectAltName).toContain('DNS:mdm.example.com');
  expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
  expect(new x509.X509Certificate(first.certPem).getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.serverAuth]);
  expect(crypto.createPrivateKey(first.keyPem).asymmetricKeyDetails?.modulusLength).toBe(2048);

  const again = await ensureTlsCertificate(ca, dir, ['mdm.example.com', 'localhost', '127.0.0.1']);
  expect(again.issued).toBe(false);
  const moved = await ensureTlsCertificate(ca, dir, ['mdm2.example.com', 'localhost', '127.0.0.1']);
  expect(moved.issued).toBe(true);
  expect(new crypto.X509Certificate(moved.certPem).subjectAltName).toContain('DNS:mdm2.example.com');
});

it('reuses an existing CA on the next start', async () => {
  const first = await loadOrCreateCa(dir);
  const second = await loadOrCreateCa(dir);
  expect(second.created).toBe(false);
  expect(second.certPem).toBe(first.certPem);
});

// ---------------------------------------------------------------------------------------------------
// Device identity certificates (src/pki/issue.ts): requests read and certificates written in DER by hand

it('uses a CA supplied by configuration (PKCS#1 key too) and refuses a key that is not its own, or a leaf', async () => {
  const own = await loadOrCreateCa(path.join(dir, 'own'));
  const certFile = path.join(dir, 'own', 'ca.crt');
  const pkcs1 = path.join(dir, 'ca-pkcs1.key');
  fs.writeFileSync(pkcs1, crypto.createPrivateKey(own.keyPem).export({ type: 'pkcs1', format: 'pem' }));
  const supplied = await loadOrCreateCa(path.join(dir, 'unused'), () => {}, { certFile, keyFile: pkcs1 });
  expect(supplied.certPem).toBe(own.certPem);
  expect(supplied.created).toBe(false);
  expect(fs.existsSync(path.join(dir, 'unused'))).toBe(false);
  const csr = await readCsr(await csrFor());
  const issued = await issueClientCertificate(supplied, csr, { commonName: 'device' });
  expect(verifyClientCertificate(issued.der, own.certPem).ok).toBe(true);

  const other = await loadOrCreateCa(path.join(dir, 'other'));
  await expect(loadOrCreateCa(dir, () => {}, { certFile, keyFile: path.join(dir, 'other', 'ca.key') })).rejects.toThrow(/not the private key/);
  const tls = await ensureTlsCertificate(other, path.join(dir, 'other'), ['localhost']);
  fs.writeFileSync(path.join(dir, 'leaf.crt'), tls.certPem);
  fs.writeFileSync(path.join(dir, 'leaf.key'), tls.keyPem);
  await expect(loadOrCreateCa(dir, () => {}, { certFile: path.join(dir, 'leaf.crt'), keyFile: path.join(dir, 'leaf.key') })).rejects.toThrow(/not a CA certificate/);
});

async function csrFor(): Promise<Buffer> {
  const keys = (await crypto.webcrypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } });
  return Buffer.from(csr.rawData);
}

describe('client certificates', () => {
  type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;
  const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
  const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
  let caDir: string;
  let ca: CertificateAuthority;

  beforeAll(async () => {
    x509.cryptoProvider.set(crypto.webcrypto as never);
    caDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-pki-issue-'));
    ca = await loadOrCreateCa(caDir);
  });
  afterAll(() => fs.rmSync(caDir, { recursive: true, force: true }));

  async function csrFor(
    alg: { name: string; hash?: string; namedCurve?: string; modulusLength?: number; publicExponent?: Uint8Array },
    opts: { challenge?: string; keys?: CryptoKeyPair } = {},
  ): Promise<{ der: Buffer; keys: CryptoKeyPair }> {
    const keys = opts.keys ?? ((await crypto.webcrypto.subtle.generateKey(alg as never, true, ['sign', 'verify'])) as CryptoKeyPair);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=requested by the device, O=Ignored',
      keys,
      signingAlgorithm: alg as never,
      attributes: opts.challenge === undefined ? [] : [new x509.ChallengePasswordAttribute(opts.challenge)],
    });
    return { der: Buffer.from(csr.rawData), keys };
  }

  function openssl(args: string[]): string {
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** The extensions of a certificate as (OID, critical, value hex). */
  function extensionsOf(cert: x509.X509Certificate): { type: string; critical: boolean }[] {
    return cert.extensions.map((e) => ({ type: e.type, critical: e.critical }));
  }

  it.each([
    ['RSA-2048', RSA],
    ['ECDSA P-256', EC],
  ] as const)('issues a %s key a clientAuth certificate that @peculiar/x509, OpenSSL and Node read alike', async (_name, alg) => {
    const { der: csrDer, keys } = await csrFor(alg, { challenge: 'pw' });
    const csr = await readCsr(csrDer);
    expect(csr.challengePassword).toBe('pw');
    const now = new Date();
    const issued = await issueClientCertificate(ca, csr, { commonName: 'device-1', days: 30, now });

    const cert = new x509.X509Certificate(issued.der);
    expect(issued.pem).toBe(cert.toString('pem'));
    expect(issued.sha256).toBe(crypto.createHash('sha256').update(issued.der).digest('hex'));
    expect(issued.subject).toBe('CN=device-1');
    expect(cert.subject).toBe('CN=device-1');
    expect(cert.issuer).toBe(ca.cert.subject);
    expect(issued.serial).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(cert.serialNumber).toBe(issued.serial);
    // NotBefore is the moment of issue (to the second: X.509 times have no fraction), never back-dated.
    expect(cert.notBefore.getTime()).toBe(Math.floor(now.getTime() / 1000) * 1000);
    expect(cert.notAfter.getTime()).toBe(Math.floor((now.getTime() + 30 * 24 * 3600_000) / 1000) * 1000);
    expect(issued.notBefore).toEqual(now);
    expect(Buffer.from(cert.publicKey.rawData).equals(Buffer.from(await crypto.webcrypto.subtle.exportKey('spki', keys.publicKey)))).toBe(true);
    expect(cert.signatureAlgorithm).toMatchObject({ name: 'RSASSA-PKCS1-v1_5', hash: { name: 'SHA-256' } });
    expect(await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })).toBe(true);

    // Exactly these extensions, in this order.
    expect(extensionsOf(cert)).toEqual([
      { type: '2.5.29.19', critical: true },
      { type: '2.5.29.15', critical: true },
      { type: '2.5.29.37', critical: false },
      { type: '2.5.29.35', critical: false },
      { type: '2.5.29.14', critical: false },
    ]);
    expect(cert.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: false });
    expect(cert.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([CLIENT_AUTH]);
    const caSki = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(caSki);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toBe(Buffer.from(await cert.publicKey.getKeyIdentifier()).toString('hex'));

    // Node (OpenSSL) and the device-facing check.
    const native = new crypto.X509Certificate(issued.der);
    const caNative = new crypto.X509Certificate(ca.certPem);
    expect(native.checkIssued(caNative) && native.verify(caNative.publicKey)).toBe(true);
    expect(native.keyUsage).toEqual([CLIENT_AUTH]);
    expect(verifyClientCertificate(issued.der, ca.certPem)).toEqual({ ok: true, sha256: issued.sha256 });

    // The openssl command line.
    const file = path.join(caDir, `issued-${_name.replace(/\W/g, '')}.pem`);
    fs.writeFileSync(file, issued.pem);
    const text = openssl(['x509', '-in', file, '-noout', '-text']);
    expect(text).toContain('Version: 3 (0x2)');
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s*\n\s+TLS Web Client Authentication/);
    expect(text).toContain('X509v3 Authority Key Identifier');
    expect(text).toContain('X509v3 Subject Key Identifier');
    expect(text).toContain('Subject: CN = device-1');
    expect(openssl(['verify', '-CAfile', path.join(caDir, 'ca.crt'), '-purpose', 'sslclient', file]).trim()).toBe(`${file}: OK`);

    // The same certificate as the @peculiar/x509 generator writes, but for serial number and signature.
    const reference = await issueClientCertificateWithX509(ca, await readCsrWithX509(csrDer), { commonName: 'device-1', days: 30, now });
    const ref = new x509.X509Certificate(reference.der);
    expect(cert.extensions.map((e) => Buffer.from(e.rawData).toString('hex'))).toEqual(ref.extensions.map((e) => Buffer.from(e.rawData).toString('hex')));
    expect(Buffer.from(cert.subjectName.toArrayBuffer())).toEqual(Buffer.from(ref.subjectName.toArrayBuffer()));
    expect(Buffer.from(cert.issuerName.toArrayBuffer())).toEqual(Buffer.from(ref.issuerName.toArrayBuffer()));
    expect([cert.notBefore, cert.notAfter]).toEqual([ref.notBefore, ref.notAfter]);
    expect(issued.der.length).toBe(reference.der.length);
    expect(issued.subject).toBe(reference.subject);
  });

  it('issues for a request as @peculiar/x509 makes or reads it, too', async () => {
    const { der } = await csrFor(EC);
    const issued = await issueClientCertificate(ca, new x509.Pkcs10CertificateRequest(der), { commonName: 'device-2' });
    expect(Buffer.from(new x509.X509Certificate(issued.der).publicKey.rawData)).toEqual((await readCsr(der)).subjectPublicKeyInfo);
  });

  it('writes the common name as the reference generator does and renders the subject the same', async () => {
    const csr = await readCsr((await csrFor(EC)).der);
    const now = new Date();
    for (const commonName of ['Apple device 0123ABCD', 'dev@example', ' leading', 'trailing ', 'a,b+c=d"e\\f<g>h;i', 'Ünïcödé', 'tab\there', "it's (ok)"]) {
      const issued = await issueClientCertificate(ca, csr, { commonName, now });
      const reference = await issueClientCertificateWithX509(ca, csr, { commonName, now });
      const [a, b] = [new x509.X509Certificate(issued.der), new x509.X509Certificate(reference.der)];
      expect(Buffer.from(a.subjectName.toArrayBuffer()).toString('hex')).toBe(Buffer.from(b.subjectName.toArrayBuffer()).toString('hex'));
      expect(issued.subject).toBe(reference.subject);
      expect(issued.subject).toBe(a.subject);
    }
    // The reference generator reads a leading '#' as hex and fails; we write the text.
    const hash = await issueClientCertificate(ca, csr, { commonName: '#41' });
    expect(new x509.X509Certificate(hash.der).subjectName.getField('CN')).toEqual(['#41']);
    expect(hash.subject).toBe('CN=\\#41');
  });

  it('writes UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280)', async () => {
    const csr = await readCsr((await csrFor(EC)).der);
    const now = new Date('2049-12-30T12:34:56.789Z');
    const issued = await issueClientCertificate(ca, csr, { commonName: 'late', now, days: 2 });
    const native = new crypto.X509Certificate(issued.der);
    expect(new Date(native.validFrom).toISOString()).toBe('2049-12-30T12:34:56.000Z');
    expect(new Date(native.validTo).toISOString()).toBe('2050-01-01T12:34:56.000Z');
    const validity = issued.der.indexOf(Buffer.from('491230123456Z', 'latin1'));
    expect(issued.der[validity - 2]).toBe(0x17); // UTCTime
    const until = issued.der.indexOf(Buffer.from('20500101123456Z', 'latin1'));
    expect(issued.der[until - 2]).toBe(0x18); // GeneralizedTime
  });

  it("takes the authorityKeyIdentifier from the CA's subjectKeyIdentifier, else from the SHA-1 of its key", async () => {
    const csr = await readCsr((await csrFor(EC)).der);
    for (const ski of ['0102030405060708', undefined]) {
      const keys = (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
      const caCert = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: '01',
        name: 'CN=Other CA, O=Elsewhere',
        keys,
        signingAlgorithm: RSA,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        extensions: [new x509.BasicConstraintsExtension(true, 0, true), ...(ski ? [new x509.SubjectKeyIdentifierExtension(ski)] : [])],
      });
      const keyPem = x509.PemConverter.encode(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
      const other: CertificateAuthority = { cert: caCert, certPem: caCert.toString('pem'), keys, keyPem };
      const issued = await issueClientCertificate(other, csr, { commonName: 'x' });
      const aki = new x509.X509Certificate(issued.der).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
      expect(aki).toBe(ski ?? Buffer.from(await caCert.publicKey.getKeyIdentifier()).toString('hex'));
      expect(new crypto.X509Certificate(issued.der).verify(new crypto.X509Certificate(other.certPem).publicKey)).toBe(true);
      expect(new x509.X509Certificate(issued.der).issuer).toBe('CN=Other CA, O=Elsewhere');
    }
  });

  it.each([
    ['RSA SHA-1', { ...RSA, hash: 'SHA-1' }],
    ['RSA SHA-384', { ...RSA, hash: 'SHA-384' }],
    ['RSA SHA-512', { ...RSA, hash: 'SHA-512' }],
    ['ECDSA P-384 SHA-384', { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' }],
    ['ECDSA P-521 SHA-512', { name: 'ECDSA', namedCurve: 'P-521', hash: 'SHA-512' }],
  ])('checks a %s request natively, and refuses it once its signature is broken', async (_name, alg) => {
    const { der } = await csrFor(alg, { challenge: 'x' });
    const before = csrPaths.fast;
    const csr = await readCsr(der);
    expect(csrPaths.fast).toBe(before + 1);
    const ref = await readCsrWithX509(der);
    expect(csr.subjectPublicKeyInfo).toEqual(Buffer.from(ref.publicKey.rawData));
    expect(csr.subject).toEqual(Buffer.from(ref.subjectName.toArrayBuffer()));
    expect(csr.challengePassword).toBe('x');

    const badSignature = Buffer.from(der);
    badSignature[badSignature.length - 5]! ^= 0x01;
    await expect(readCsr(badSignature)).rejects.toMatchObject({ code: 'invalid_params', message: expect.stringContaining('does not verify') });
    await expect(readCsrWithX509(badSignature)).rejects.toMatchObject({ code: 'invalid_params' });
    const badContent = Buffer.from(der);
    const cn = badContent.indexOf(Buffer.from('requested by the device'));
    badContent[cn]! ^= 0x01;
    await expect(readCsr(badContent)).rejects.toMatchObject({ code: 'invalid_params', message: expect.stringContaining('does not verify') });
  });

  it('refuses a request signed by another key than the one it carries', async () => {
    const a = await csrFor(RSA);
    const b = await csrFor(RSA);
    // b's request with a's signature: well formed, does not verify.
    const parse = (der: Buffer) => new x509.Pkcs10CertificateRequest(der);
    const swapped = Buffer.from(b.der);
    const sigA = Buffer.from(parse(a.der).signature);
    const sigB = Buffer.from(parse(b.der).signature);
    sigA.copy(swapped, swapped.indexOf(sigB));
    await expect(readCsr(swapped)).rejects.toMatchObject({ code: 'invalid_params' });
  });

  it('refuses what is not a PKCS#10 request', async () => {
    for (const der of [Buffer.alloc(0), Buffer.from('hello'), Buffer.from(ca.cert.rawData)]) {
      await expect(readCsr(der)).rejects.toMatchObject({ code: 'invalid_params' });
    }
  });

  it('leaves other algorithms (RSA-PSS) to @peculiar/x509, which checks them', async () => {
    const alg = { name: 'RSA-PSS', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048, saltLength: 32 };
    const { der } = await csrFor(alg);
    const before = { ...csrPaths };
    const csr = await readCsr(der);
    expect(csrPaths.x509).toBe(before.x509 + 1);
    expect(csr.signatureAlgorithm).toBe('1.2.840.113549.1.1.10');
    const bad = Buffer.from(der);
    bad[bad.length - 5]! ^= 0x01;
    await expect(readCsr(bad)).rejects.toMatchObject({ code: 'invalid_params' });
  });

  it('reads the request inside the recorded SCEP fixture as @peculiar/x509 does', async () => {
    const fixtures = path.join(__dirname, '../../fixtures/apple/scep');
    const req = await parsePkiMessage(fs.readFileSync(path.join(fixtures, 'PKCSReq.1.der')), {
      certPem: fs.readFileSync(path.join(fixtures, 'ca.crt'), 'utf8'),
      privateKeyPem: fs.readFileSync(path.join(fixtures, 'ca.key'), 'utf8'),
    });
    const before = csrPaths.fast;
    const csr = await readCsr(req.csrDer);
    expect(csrPaths.fast).toBe(before + 1);
    const ref = await readCsrWithX509(req.csrDer);
    expect(csr).toEqual({
      der: req.csrDer,
      subject: Buffer.from(ref.subjectName.toArrayBuffer()),
      subjectPublicKeyInfo: Buffer.from(ref.publicKey.rawData),
      signatureAlgorithm: '1.2.840.113549.1.1.11',
      challengePassword: 'fixture-challenge',
    });
    const issued = await issueClientCertificate(ca, csr, { commonName: 'fixture' });
    expect(Buffer.from(new x509.X509Certificate(issued.der).publicKey.rawData)).toEqual(csr.subjectPublicKeyInfo);
  });
});
