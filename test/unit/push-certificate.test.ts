/** Reading an uploaded MDM push certificate (PEM and PKCS#12) and making the CSR for it. */
import 'reflect-metadata';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { MooringError } from '../../src/core/errors';
import { createPushCsr, readPushCertificate } from '../../src/pki/push-certificate';
import { createApnsTestPki, toPkcs12, type ApnsTestPki, type TestPushCertificate } from '../helpers/apns-mock';

let pki: ApnsTestPki;
let push: TestPushCertificate;

beforeAll(async () => {
  pki = await createApnsTestPki();
  push = await pki.pushCertificate();
});

/** The MooringError `fn` throws (fails the test if it throws something else or nothing). */
function refusal(fn: () => unknown): MooringError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MooringError);
    return err as MooringError;
  }
  throw new Error('expected a refusal');
}

describe('readPushCertificate from PEM', () => {
  it('reads the topic from the subject UID, the expiry, and returns the key as PKCS#8', () => {
    const read = readPushCertificate({ certificate: push.certPem, private_key: push.keyPem });
    expect(read.topic).toBe(push.topic);
    expect(read.topic).toMatch(/^com\.apple\.mgmt\.External\.[0-9a-f-]{36}$/);
    expect(read.notAfter.getTime()).toBe(push.notAfter.getTime());
    expect(read.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(new crypto.X509Certificate(read.certPem).checkPrivateKey(crypto.createPrivateKey(read.keyPem))).toBe(true);
  });

  it('accepts a PKCS#1 key, and a certificate file with the chain and the key pasted in too', () => {
    const pkcs1 = crypto.createPrivateKey(push.keyPem).export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(pkcs1).toMatch(/BEGIN RSA PRIVATE KEY/);
    const bundle = `${push.certPem}\n${pki.caPem}\n${pkcs1}`;
    const read = readPushCertificate({ certificate: bundle, private_key: pkcs1 });
    expect(read.topic).toBe(push.topic);
    expect(read.certPem.replace(/\s/g, '')).toBe(push.certPem.replace(/\s/g, ''));
  });

  it('refuses a key that is not the certificate’s', async () => {
    const other = await pki.pushCertificate();
    const err = refusal(() => readPushCertificate({ certificate: push.certPem, private_key: other.keyPem }));
    expect(err.code).toBe('invalid_params');
    expect(err.detail).toMatch(/private key does not belong to the certificate/);
  });

  it('refuses a certificate whose UID is not an MDM topic, and one with no UID', async () => {
    const app = await pki.pushCertificate({ topic: 'com.example.someapp' });
    const err = refusal(() => readPushCertificate({ certificate: app.certPem, private_key: app.keyPem }));
    expect(err.code).toBe('invalid_params');
    expect(err.detail).toMatch(/com\.example\.someapp does not start with com\.apple\.mgmt\./);

    const err2 = refusal(() => readPushCertificate({ certificate: pki.server.certPem, private_key: pki.server.keyPem }));
    expect(err2.detail).toMatch(/no UID attribute/);
  });

  it('refuses an expired certificate', async () => {
    const old = await pki.pushCertificate({ notBefore: new Date(Date.now() - 400 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const err = refusal(() => readPushCertificate({ certificate: old.certPem, private_key: old.keyPem }));
    expect(err.detail).toMatch(/expired on/);
  });

  it('refuses garbage with a clear detail', () => {
    expect(refusal(() => readPushCertificate({ certificate: 'hello', private_key: push.keyPem })).detail).toMatch(/not a PEM certificate/);
    expect(refusal(() => readPushCertificate({ certificate: push.certPem, private_key: 'hello' })).detail).toMatch(/not a PEM private key/);
    const broken = push.certPem.replace(/\n[A-Za-z0-9+/]{20}/, '\nAAAAAAAAAAAAAAAAAAAA');
    expect(refusal(() => readPushCertificate({ certificate: broken, private_key: push.keyPem })).code).toBe('invalid_params');
    const encrypted = crypto.createPrivateKey(push.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' }).toString();
    expect(refusal(() => readPushCertificate({ certificate: push.certPem, private_key: encrypted })).detail).toMatch(/encrypted/);
  });
});

describe('readPushCertificate from PKCS#12', () => {
  it('reads a password-protected PKCS#12 (3DES, as Keychain exports it) with the CA in it', () => {
    const p12 = toPkcs12(push, 'secret pw', { chain: [pki.caPem] });
    const read = readPushCertificate({ pkcs12: p12, password: 'secret pw' });
    expect(read.topic).toBe(push.topic);
    expect(new crypto.X509Certificate(read.certPem).checkPrivateKey(crypto.createPrivateKey(read.keyPem))).toBe(true);
  });

  it('reads an AES-256 PKCS#12 and one with an empty password', () => {
    expect(readPushCertificate({ pkcs12: toPkcs12(push, 'pw', { algorithm: 'aes256' }), password: 'pw' }).topic).toBe(push.topic);
    expect(readPushCertificate({ pkcs12: toPkcs12(push, '') }).topic).toBe(push.topic);
  });

  it('reads a PKCS#12 made by the openssl command line (legacy and default algorithms)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-p12-'));
    try {
      fs.writeFileSync(path.join(dir, 'c.pem'), push.certPem);
      fs.writeFileSync(path.join(dir, 'k.pem'), push.keyPem);
      let read = 0;
      for (const extra of [[], ['-legacy']]) {
        let der: Buffer;
        try {
          der = execFileSync('openssl', ['pkcs12', '-export', ...extra, '-in', 'c.pem', '-inkey', 'k.pem', '-passout', 'pass:pw'], { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] });
        } catch {
          continue; // no -legacy in this OpenSSL (1.1 writes the legacy form by default)
        }
        expect(readPushCertificate({ pkcs12: der.toString('base64'), password: 'pw' }).topic).toBe(push.topic);
        read += 1;
      }
      expect(read).toBeGreaterThan(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a wrong password, non-base64 and non-PKCS#12 input', () => {
    const p12 = toPkcs12(push, 'right');
    expect(refusal(() => readPushCertificate({ pkcs12: p12, password: 'wrong' })).detail).toMatch(/password is wrong/);
    expect(refusal(() => readPushCertificate({ pkcs12: '***', password: 'x' })).detail).toMatch(/not base64/);
    expect(refusal(() => readPushCertificate({ pkcs12: Buffer.from('not a pfx at all').toString('base64') })).code).toBe('invalid_params');
  });

  it('refuses a PKCS#12 of an app push certificate', async () => {
    const app = await pki.pushCertificate({ topic: 'com.example.app' });
    expect(refusal(() => readPushCertificate({ pkcs12: toPkcs12(app, 'pw'), password: 'pw' })).detail).toMatch(/not an MDM one/);
  });
});

describe('createPushCsr', () => {
  it('makes an RSA 2048 key and a signed SHA-256 CSR for it', async () => {
    const { csrPem, keyPem } = await createPushCsr({ commonName: 'Acme MDM', email: 'mdm@acme.example' });
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toContain('CN=Acme MDM');
    expect(csr.subject).toContain('E=mdm@acme.example');
    const key = crypto.createPrivateKey(keyPem);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const csrSpki = Buffer.from(csr.publicKey.rawData);
    expect(crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(csrSpki)).toBe(true);
  });

  it('and the certificate Apple returns for that CSR reads back with the CSR key', async () => {
    const { csrPem, keyPem } = await createPushCsr();
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    expect(csr.subject).toBe('CN=Mooring MDM push');
    const spkiPem = x509.PemConverter.encode(csr.publicKey.rawData, 'PUBLIC KEY');
    const issued = await pki.pushCertificate({ publicKeyPem: spkiPem });
    expect(readPushCertificate({ certificate: issued.certPem, private_key: keyPem }).topic).toBe(issued.topic);
  });
});
