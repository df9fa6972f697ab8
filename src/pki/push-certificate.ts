/**
 * The Apple MDM push certificate an admin uploads (PEM pair or PKCS#12), read and checked before it is
 * stored: the APNs topic is the subject's UID attribute and must start with `com.apple.mgmt.`, the key
 * must be the certificate's, and the certificate must not have expired. Also the CSR an admin takes to
 * the vendor-signing step (mdmcert.download or their own MDM vendor certificate) and then to
 * identity.apple.com. Pure helpers: nothing here touches storage or the network.
 *
 * PKCS#12 is read with node-forge: Node 20 has no PKCS#12 parser that returns the key. Everything
 * else uses Node's crypto (key checks, PKCS#8 export) and @peculiar/x509 (names, dates, the CSR).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import forge from 'node-forge';
import { Errors } from '../core/errors';

x509.cryptoProvider.set(crypto.webcrypto as never);

/** The subject attribute Apple puts the push topic in (userId, "UID"). */
export const UID_OID = '0.9.2342.19200300.100.1.1';
export const MDM_TOPIC_PREFIX = 'com.apple.mgmt.';

export type PushCertificateInput = { certificate: string; private_key: string } | { pkcs12: string; password?: string };

export interface PushCertificate {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  topic: string;
  notAfter: Date;
}

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const bad = (detail: string) => Errors.of('invalid_params', detail);

/** Reads and checks an uploaded push certificate; throws `invalid_params` saying what is wrong. */
export function readPushCertificate(input: PushCertificateInput, now: Date = new Date()): PushCertificate {
  const { certPem, key } = 'pkcs12' in input ? fromPkcs12(input.pkcs12, input.password) : fromPem(input.certificate, input.private_key);
  let cert: x509.X509Certificate;
  let native: crypto.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
    native = new crypto.X509Certificate(certPem);
  } catch (err) {
    throw bad(`the certificate cannot be parsed: ${(err as Error).message}`);
  }
  const topic = topicOf(cert);
  if (!native.checkPrivateKey(key)) throw bad('the private key does not belong to the certificate (their public keys differ)');
  if (cert.notAfter.getTime() <= now.getTime()) throw bad(`the certificate expired on ${cert.notAfter.toISOString()}; renew it at identity.apple.com`);
  return { certPem: cert.toString('pem'), keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(), topic, notAfter: cert.notAfter };
}

/** The push topic (subject UID), refused unless it is an MDM topic. */
function topicOf(cert: x509.X509Certificate): string {
  const uids = cert.subjectName.getField(UID_OID);
  if (uids.length === 0) {
    throw bad(`the certificate subject (${cert.subject}) has no UID attribute: it is not an Apple MDM push certificate`);
  }
  const topic = uids[0]!;
  if (!topic.startsWith(MDM_TOPIC_PREFIX)) {
    throw bad(`the certificate topic ${topic} does not start with ${MDM_TOPIC_PREFIX}: it is an app push certificate, not an MDM one`);
  }
  return topic;
}

function fromPem(certificate: string, privateKey: string): { certPem: string; key: crypto.KeyObject } {
  const certPem = firstPemBlock(certificate, 'CERTIFICATE');
  if (!certPem) throw bad('certificate is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)');
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(privateKey);
  } catch (err) {
    const encrypted = /ENCRYPTED/.test(privateKey);
    throw bad(encrypted ? 'private_key is encrypted: upload it unencrypted, or as PKCS#12 with its password' : `private_key is not a PEM private key (${(err as Error).message})`);
  }
  return { certPem, key };
}

function firstPemBlock(text: string, label: string): string | undefined {
  const m = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`).exec(text);
  return m?.[0];
}

function fromPkcs12(base64: string, password = ''): { certPem: string; key: crypto.KeyObject } {
  const compact = base64.replace(/\s+/g, '');
  if (!compact || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw bad('pkcs12 is not base64');
  let p12: forge.pkcs12.Pkcs12Pfx;
  try {
    const der = forge.util.decode64(compact);
    p12 = forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(der), password);
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    if (/MAC could not be verified|Invalid password/i.test(message)) throw bad('the PKCS#12 password is wrong');
    throw bad(`pkcs12 is not a PKCS#12 file forge can read (${message})`);
  }
  const keyBags = [
    ...(p12.getBags({ bagType: forge.pki.oids.pkcs8ShroudedKeyBag })[forge.pki.oids.pkcs8ShroudedKeyBag] ?? []),
    ...(p12.getBags({ bagType: forge.pki.oids.keyBag })[forge.pki.oids.keyBag] ?? []),
  ];
  const certBags = p12.getBags({ bagType: forge.pki.oids.certBag })[forge.pki.oids.certBag] ?? [];
  const forgeKey = keyBags.find((b) => b.key)?.key;
  if (!forgeKey) throw bad('the PKCS#12 file holds no private key (was it exported without it, or with a wrong password?)');
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(forge.pki.privateKeyToPem(forgeKey));
  } catch (err) {
    throw bad(`the PKCS#12 private key cannot be read (${(err as Error).message})`);
  }
  const pems = certBags.filter((b) => b.cert).map((b) => forge.pki.certificateToPem(b.cert!));
  if (pems.length === 0) throw bad('the PKCS#12 file holds no certificate');
  // The leaf is the certificate of the key; chain certificates (Apple's intermediates) may come first.
  const certPem = pems.find((pem) => new crypto.X509Certificate(pem).checkPrivateKey(key)) ?? pems[0]!;
  return { certPem, key };
}

export interface PushCsr {
  csrPem: string;
  /** PKCS#8 PEM of the new RSA 2048 key; it is needed with the certificate Apple returns. */
  keyPem: string;
}

/** A new RSA 2048 key and a SHA-256 CSR for it, for the vendor-signing step. */
export async function createPushCsr(opts: { commonName?: string; email?: string } = {}): Promise<PushCsr> {
  const keys = (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const name = new x509.Name([
    { CN: [opts.commonName?.trim() || 'Mooring MDM push'] },
    ...(opts.email ? [{ E: [opts.email] }] : []),
  ]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: RSA });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { csrPem: csr.toString('pem'), keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}
