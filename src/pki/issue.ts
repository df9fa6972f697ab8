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
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(der);
  } catch {
    return { ok: false, reason: 'not an X.509 certificate' };
  }
  const ca = new crypto.X509Certificate(caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return { ok: false, reason: 'not issued by this server' };
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) return { ok: false, reason: 'expired or not yet valid' };
  if (cert.keyUsage && !cert.keyUsage.includes('1.3.6.1.5.5.7.3.2')) return { ok: false, reason: 'not for client authentication' };
  return { ok: true, sha256: crypto.createHash('sha256').update(der).digest('hex') };
}
