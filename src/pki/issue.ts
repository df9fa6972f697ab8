/**
 * Device identity certificates: a PKCS#10 request, signature-checked, signed by Mooring's CA for TLS
 * client authentication. The subject and lifetime are ours to decide, never the device's; NotBefore is
 * the moment of issue (Windows refuses a back-dated one in the provisioning document).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { Errors } from '../core/errors';
import type { CertificateAuthority } from './ca';

const SIGNING = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

export interface IssuedCertificate {
  der: Buffer;
  pem: string;
  serial: string;
  sha256: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
}

/** Reads and checks a PKCS#10 request; a bad one is `invalid_params` with the reason. */
export async function readCsr(der: Buffer): Promise<x509.Pkcs10CertificateRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
  } catch (err) {
    throw Errors.of('invalid_params', `the certificate request is not PKCS#10: ${(err as Error).message}`);
  }
  if (!(await csr.verify())) throw Errors.of('invalid_params', 'the certificate request signature does not verify');
  return csr;
}

export async function issueClientCertificate(
  ca: CertificateAuthority,
  csr: x509.Pkcs10CertificateRequest,
  opts: { commonName: string; days?: number; now?: Date },
): Promise<IssuedCertificate> {
  const notBefore = opts.now ?? new Date();
  const notAfter = new Date(notBefore.getTime() + (opts.days ?? 365) * DAY);
  const serial = crypto.randomBytes(16);
  serial[0]! &= 0x7f;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: `CN=${opts.commonName.replace(/[,+="\\<>;]/g, '_')}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: csr.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
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
