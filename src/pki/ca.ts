/**
 * Mooring's built-in certificate authority and the HTTPS server certificate it signs. Both are made on
 * first start under the certs directory and reused afterwards; the server certificate is re-issued
 * when it nears expiry or no longer covers the public host name. Keys never leave the directory and
 * are written with mode 0600. All signing runs in Node's native crypto (WebCrypto).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { writeAtomic } from './dir-lock';

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;
type CryptoKey = crypto.webcrypto.CryptoKey;

x509.cryptoProvider.set(crypto.webcrypto as never);

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const DAY = 24 * 3600 * 1000;

export interface CertificateAuthority {
  cert: x509.X509Certificate;
  certPem: string;
  keys: CryptoKeyPair;
  /** The private key as PKCS#8 PEM, for the signers that take a native key (SCEP CertRep). */
  keyPem: string;
}

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  caPem: string;
  /** true when this start issued a new server certificate. */
  issued: boolean;
}

/**
 * The CA: the one supplied by configuration (`supplied`, never written to), else the one in `certsDir`,
 * else a new one created there.
 */
export async function loadOrCreateCa(
  certsDir: string,
  log: (msg: string) => void = () => {},
  supplied?: { certFile: string; keyFile: string },
): Promise<CertificateAuthority & { created: boolean }> {
  if (supplied) return { ...(await loadCa(supplied.certFile, supplied.keyFile)), created: false };
  const certFile = path.join(certsDir, 'ca.crt');
  const keyFile = path.join(certsDir, 'ca.key');
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) return { ...(await loadCa(certFile, keyFile)), created: false };
  fs.mkdirSync(certsDir, { recursive: true, mode: 0o700 });
  log(`creating a new certificate authority in ${certsDir}`);
  const keys = (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=Mooring CA ${crypto.randomBytes(4).toString('hex')}, O=Mooring`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 10 * 365 * DAY),
    keys,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = await exportKeyPem(keys.privateKey);
  writeAtomic(keyFile, keyPem, 0o600);
  writeAtomic(certFile, cert.toString('pem'));
  return { cert, certPem: cert.toString('pem'), keys, keyPem, created: true };
}

async function loadCa(certFile: string, keyFile: string): Promise<CertificateAuthority> {
  let cert: x509.X509Certificate;
  let keyPem: string;
  try {
    cert = new x509.X509Certificate(fs.readFileSync(certFile, 'utf8'));
    // Through Node so PKCS#1 ("RSA PRIVATE KEY") files load as well as PKCS#8.
    keyPem = crypto.createPrivateKey(fs.readFileSync(keyFile, 'utf8')).export({ type: 'pkcs8', format: 'pem' }).toString();
  } catch (err) {
    throw new Error(`cannot read the CA from ${certFile} and ${keyFile}: ${(err as Error).message}`);
  }
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (basic && !basic.ca) throw new Error(`${certFile} is not a CA certificate (basicConstraints cA is false)`);
  const keys = await importKeyPair(keyPem, cert);
  const probe = Buffer.from('mooring');
  if (!crypto.verify('sha256', probe, new crypto.X509Certificate(cert.toString('pem')).publicKey, crypto.sign('sha256', probe, keyPem))) {
    throw new Error(`${keyFile} is not the private key of ${certFile}`);
  }
  return { cert, certPem: cert.toString('pem'), keys, keyPem };
}

/** The HTTPS server certificate for `hosts` (DNS names or IPs), issued by the CA if needed. */
export async function ensureTlsCertificate(ca: CertificateAuthority, certsDir: string, hosts: string[]): Promise<TlsMaterial> {
  const certFile = path.join(certsDir, 'tls.crt');
  const keyFile = path.join(certsDir, 'tls.key');
  const wanted = [...new Set(hosts)];
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) {
    const current = new x509.X509Certificate(fs.readFileSync(certFile, 'utf8'));
    if (stillGood(current, wanted) && current.issuer === ca.cert.subject) {
      return { certPem: current.toString('pem'), keyPem: fs.readFileSync(keyFile, 'utf8'), caPem: ca.certPem, issued: false };
    }
  }
  const keys = (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${wanted[0] ?? 'localhost'}`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 397 * DAY), // the longest validity Apple platforms accept for TLS
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(wanted.map((h) => (net.isIP(h) ? { type: 'ip', value: h } : { type: 'dns', value: h }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  const keyPem = await exportKeyPem(keys.privateKey);
  writeAtomic(keyFile, keyPem, 0o600);
  writeAtomic(certFile, cert.toString('pem'));
  return { certPem: cert.toString('pem'), keyPem, caPem: ca.certPem, issued: true };
}

function stillGood(cert: x509.X509Certificate, hosts: string[]): boolean {
  if (cert.notAfter.getTime() - Date.now() < 30 * DAY) return false;
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const covered = new Set((san?.names.items ?? []).map((n) => n.value));
  return hosts.every((h) => covered.has(h));
}

async function importKeyPair(pem: string, cert: x509.X509Certificate): Promise<CryptoKeyPair> {
  const der = x509.PemConverter.decodeFirst(pem);
  const privateKey = await crypto.webcrypto.subtle.importKey('pkcs8', der, RSA, true, ['sign']);
  const publicKey = await cert.publicKey.export(RSA, ['verify']);
  return { privateKey, publicKey } as CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serial(): string {
  const bytes = crypto.randomBytes(16);
  bytes[0]! &= 0x7f; // positive INTEGER
  return bytes.toString('hex');
}
