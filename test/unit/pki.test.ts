import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { ensureTlsCertificate, loadOrCreateCa } from '../../src/pki/ca';
import { withDirLock } from '../../src/pki/dir-lock';

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
