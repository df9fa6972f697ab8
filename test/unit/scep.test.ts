import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import forge from 'node-forge';
import {
  FAIL_INFO,
  SCEP_CA_CAPS,
  ScepError,
  buildCertRep,
  caCapsText,
  caCertResponse,
  certRepEncryption,
  parsePkiMessage,
  type ScepCaKey,
} from '../../protocols/apple/scep';
import { loadOrCreateCa, type CertificateAuthority } from '../../src/pki/ca';
import { issueClientCertificate, readCsr } from '../../src/pki/issue';
import { ScepClient } from '../helpers/scep-client';

x509.cryptoProvider.set(crypto.webcrypto as never);

const FIXTURES = path.join(__dirname, '../../fixtures/apple/scep');
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

let dir: string;
let ca: CertificateAuthority;
let caKey: ScepCaKey;
let client: ScepClient;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-scep-'));
  ca = await loadOrCreateCa(dir);
  caKey = { certPem: ca.certPem, privateKeyPem: fs.readFileSync(path.join(dir, 'ca.key'), 'utf8') };
  client = await ScepClient.create();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function expectScepError(p: Promise<unknown>, failInfo: keyof typeof FAIL_INFO): Promise<ScepError> {
  const err = await p.then(
    () => {
      throw new Error('expected a ScepError');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ScepError);
  expect((err as ScepError).failInfo).toBe(failInfo);
  return err as ScepError;
}

async function issueFor(der: Buffer, encryption: 'aes256' | '3des') {
  const req = await parsePkiMessage(der, caKey);
  const csr = await readCsr(req.csrDer);
  const issued = await issueClientCertificate(ca, csr, { commonName: 'device-1' });
  const rep = await buildCertRep({
    ca: caKey,
    transactionId: req.transactionId,
    recipientNonce: req.senderNonce,
    status: 'SUCCESS',
    issuedCertDer: issued.der,
    recipientCertDer: req.signerCertDer,
    encryption: certRepEncryption(req.encryption),
  });
  expect(certRepEncryption(req.encryption)).toBe(encryption);
  return { req, issued, rep };
}

it('advertises the GetCACaps capabilities, one per line', () => {
  expect(caCapsText()).toBe('POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\nRenewal');
  expect(caCapsText().split('\n')).toEqual([...SCEP_CA_CAPS]);
});

it('answers GetCACert with the DER CA certificate as application/x-x509-ca-cert', () => {
  const res = caCertResponse(ca);
  expect(res.contentType).toBe('application/x-x509-ca-cert');
  expect(res.body.equals(Buffer.from(ca.cert.rawData))).toBe(true);
  expect(caCertResponse({ certPem: ca.certPem }).body.equals(res.body)).toBe(true);
});

it.each(['aes256', '3des'] as const)('runs PKCSReq → issue → CertRep end to end with %s', async (encryption) => {
  const sent = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption });
  const { req, issued, rep } = await issueFor(sent.der, encryption);
  expect(req).toMatchObject({ messageType: 'PKCSReq', transactionId: sent.transactionId, challengePassword: 's3cret', encryption });
  expect(req.senderNonce.equals(sent.senderNonce)).toBe(true);
  expect(req.signerCertDer.equals(client.certDer)).toBe(true);

  const reply = await client.readCertRep(rep, ca.certPem);
  expect(reply.messageType).toBe('3');
  expect(reply.pkiStatus).toBe('0');
  expect(reply.failInfo).toBeUndefined();
  expect(reply.transactionId).toBe(sent.transactionId);
  expect(reply.recipientNonce.equals(sent.senderNonce)).toBe(true);
  expect(reply.senderNonce).toHaveLength(16);
  expect(reply.senderNonce.equals(sent.senderNonce)).toBe(false);
  expect(reply.encryption).toBe(encryption === 'aes256' ? forge.pki.oids['aes256-CBC'] : forge.pki.oids['des-EDE3-CBC']);

  const spki = Buffer.from(await crypto.webcrypto.subtle.exportKey('spki', client.keys.publicKey));
  const mine = reply.certs.find((c) => Buffer.from(c.publicKey.rawData).equals(spki));
  expect(mine).toBeDefined();
  expect(Buffer.from(mine!.rawData).equals(issued.der)).toBe(true);
  expect(mine!.issuer).toBe(ca.cert.subject);
  expect(mine!.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toContain(CLIENT_AUTH);
});

it('reads a RenewalReq signed with the current identity certificate', async () => {
  const first = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption: 'aes256' });
  const { issued } = await issueFor(first.der, 'aes256');
  const renewal = await client.request({ caCertPem: ca.certPem, encryption: 'aes256', messageType: 17, signer: { certDer: issued.der } });
  const req = await parsePkiMessage(renewal.der, caKey);
  expect(req.messageType).toBe('RenewalReq');
  expect(req.challengePassword).toBeUndefined();
  expect(req.signerCertDer.equals(issued.der)).toBe(true);
});

it('builds a FAILURE CertRep with failInfo and no envelope', async () => {
  const sent = await client.request({ caCertPem: ca.certPem, challenge: 'wrong', encryption: 'aes256' });
  const req = await parsePkiMessage(sent.der, caKey);
  expect(req.challengePassword).toBe('wrong');
  const rep = await buildCertRep({
    ca: {
      certPem: ca.certPem,
      // a caller-supplied signer (e.g. a key held elsewhere) instead of privateKeyPem
      sign: async (data) => Buffer.from(await crypto.webcrypto.subtle.sign('RSASSA-PKCS1-v1_5', ca.keys.privateKey, data)),
    },
    transactionId: req.transactionId,
    recipientNonce: req.senderNonce,
    status: 'FAILURE',
    failInfo: 'badRequest',
    recipientCertDer: req.signerCertDer,
    encryption: 'aes256',
  });
  const reply = await client.readCertRep(rep, ca.certPem);
  expect(reply).toMatchObject({ messageType: '3', pkiStatus: '2', failInfo: '2', transactionId: sent.transactionId, certs: [] });
  expect(reply.recipientNonce.equals(sent.senderNonce)).toBe(true);
});

it('rejects a tampered message with badMessageCheck', async () => {
  const sent = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption: 'aes256' });
  const inEnvelope = Buffer.from(sent.der);
  const at = inEnvelope.indexOf(sent.envelopeDer);
  expect(at).toBeGreaterThan(0);
  inEnvelope[at + sent.envelopeDer.length - 5]! ^= 0x01;
  await expectScepError(parsePkiMessage(inEnvelope, caKey), 'badMessageCheck');

  const inSignature = Buffer.from(sent.der);
  inSignature[inSignature.length - 3]! ^= 0x01; // the signature is the last field
  await expectScepError(parsePkiMessage(inSignature, caKey), 'badMessageCheck');
});

it('rejects an envelope addressed to another CA with badRequest', async () => {
  const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-scep-other-'));
  try {
    const other = await loadOrCreateCa(otherDir);
    const sent = await client.request({ caCertPem: other.certPem, challenge: 's3cret', encryption: 'aes256' });
    await expectScepError(parsePkiMessage(sent.der, caKey), 'badRequest');
  } finally {
    fs.rmSync(otherDir, { recursive: true, force: true });
  }
});

it.each(['aes128', 'des'] as const)('also reads requests encrypted with %s', async (encryption) => {
  const sent = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption });
  const req = await parsePkiMessage(sent.der, caKey);
  expect(req).toMatchObject({ messageType: 'PKCSReq', encryption, challengePassword: 's3cret' });
  expect(certRepEncryption(req.encryption)).toBe(encryption === 'des' ? '3des' : 'aes256');
  await expect(readCsr(req.csrDer)).resolves.toBeDefined();
});

it('fails a content key that does not decrypt without revealing the padding check', async () => {
  const sent = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption: 'aes256', corruptKey: true });
  const err = await parsePkiMessage(sent.der, caKey).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ScepError);
  // Bad RSA padding is replaced by a random key, so this fails in AES (badMessageCheck); about 1 in 256
  // random keys pass the CBC padding and the result is then not a CSR (badRequest).
  expect(['badMessageCheck', 'badRequest']).toContain((err as ScepError).failInfo);
});

it('rejects garbage and non-SCEP DER with badRequest', async () => {
  await expectScepError(parsePkiMessage(Buffer.from('hello, world'), caKey), 'badRequest');
  await expectScepError(parsePkiMessage(Buffer.alloc(0), caKey), 'badRequest');
  await expectScepError(parsePkiMessage(Buffer.from(ca.cert.rawData), caKey), 'badRequest');
});

it('parses the recorded PKCSReq fixture with its CA', async () => {
  if (process.env.SCEP_WRITE_FIXTURES) {
    fs.mkdirSync(FIXTURES, { recursive: true });
    fs.copyFileSync(path.join(dir, 'ca.crt'), path.join(FIXTURES, 'ca.crt'));
    fs.copyFileSync(path.join(dir, 'ca.key'), path.join(FIXTURES, 'ca.key'));
    const sent = await client.request({ caCertPem: ca.certPem, challenge: 'fixture-challenge', encryption: 'aes256' });
    fs.writeFileSync(path.join(FIXTURES, 'PKCSReq.1.der'), sent.der);
  }
  const fixtureCa: ScepCaKey = {
    certPem: fs.readFileSync(path.join(FIXTURES, 'ca.crt'), 'utf8'),
    privateKeyPem: fs.readFileSync(path.join(FIXTURES, 'ca.key'), 'utf8'),
  };
  const req = await parsePkiMessage(fs.readFileSync(path.join(FIXTURES, 'PKCSReq.1.der')), fixtureCa);
  expect(req.messageType).toBe('PKCSReq');
  expect(req.challengePassword).toBe('fixture-challenge');
  expect(req.encryption).toBe('aes256');
  expect(req.transactionId).toMatch(/^[0-9A-F]{64}$/);
  expect(req.senderNonce).toHaveLength(16);
  await expect(readCsr(req.csrDer)).resolves.toBeDefined();
});
