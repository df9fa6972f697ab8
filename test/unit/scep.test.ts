import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';
import {
  FAIL_INFO,
  OID,
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

x509.cryptoProvider.set(crypto.webcrypto as never);

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const FIXTURES = path.join(__dirname, '../../fixtures/apple/scep');
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

/**
 * Plays the device side of RFC 8894, built independently of the codec under test: pkijs for the
 * SignedData (arbitrary signed attributes, WebCrypto signing and verification), forge for the
 * EnvelopedData.
 */
class ScepClient {
  private constructor(
    readonly keys: CryptoKeyPair,
    readonly certDer: Buffer,
    readonly privateKeyPem: string,
  ) {}

  static async create(commonName = 'device'): Promise<ScepClient> {
    const keys = (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: `CN=${commonName}`,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      keys,
      signingAlgorithm: RSA,
    });
    const pkcs8 = await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return new ScepClient(keys, Buffer.from(cert.rawData), x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'));
  }

  async csr(challenge?: string): Promise<Buffer> {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=device-request',
      keys: this.keys,
      signingAlgorithm: RSA,
      attributes: challenge === undefined ? [] : [new x509.ChallengePasswordAttribute(challenge)],
    });
    return Buffer.from(csr.rawData);
  }

  /** A PKCSReq (19) or RenewalReq (17) pkiMessage; signed by `signer` (default: our self-signed cert). */
  async request(opts: {
    caCertPem: string;
    challenge?: string;
    encryption: 'aes256' | '3des' | 'aes128' | 'des';
    messageType?: 19 | 17;
    signer?: { certDer: Buffer };
    /** Replaces the RSA-encrypted content key with random bytes (before signing). */
    corruptKey?: boolean;
  }): Promise<{ der: Buffer; envelopeDer: Buffer; transactionId: string; senderNonce: Buffer }> {
    const csrDer = await this.csr(opts.challenge);
    const env = forge.pkcs7.createEnvelopedData();
    env.addRecipient(forge.pki.certificateFromPem(opts.caCertPem));
    env.content = forge.util.createBuffer(csrDer.toString('binary'));
    if (opts.encryption === 'des') {
      // forge decrypts single DES but will not encrypt with it: do its steps by hand.
      const key = forge.random.getBytesSync(8);
      const iv = forge.random.getBytesSync(8);
      const des = forge.cipher.createCipher('DES-CBC', key);
      des.start({ iv });
      des.update(forge.util.createBuffer(csrDer.toString('binary')));
      des.finish();
      const internal = env as unknown as {
        encryptedContent: object;
        recipients: Array<{ encryptedContent: { key: forge.pki.rsa.PublicKey; content?: string } }>;
      };
      internal.encryptedContent = { algorithm: forge.pki.oids['desCBC'], parameter: forge.util.createBuffer(iv), content: des.output };
      for (const r of internal.recipients) r.encryptedContent.content = r.encryptedContent.key.encrypt(key, 'RSAES-PKCS1-V1_5');
    } else {
      const cipherOid = { aes256: 'aes256-CBC', '3des': 'des-EDE3-CBC', aes128: 'aes128-CBC' }[opts.encryption];
      env.encrypt(undefined, forge.pki.oids[cipherOid]);
    }
    if (opts.corruptKey) {
      const recipient = env.recipients[0] as unknown as { encryptedContent: { content: string } };
      recipient.encryptedContent.content = '\x00' + crypto.randomBytes(255).toString('binary');
    }
    const envelopeDer = Buffer.from(forge.asn1.toDer(env.toAsn1()).getBytes(), 'binary');

    // RFC 8894 §3.2.1.1: the transactionID is the hash of the public key; a fresh 16-byte senderNonce.
    const spki = Buffer.from(await crypto.webcrypto.subtle.exportKey('spki', this.keys.publicKey));
    const transactionId = crypto.createHash('sha256').update(spki).digest('hex').toUpperCase();
    const senderNonce = crypto.randomBytes(16);
    const signerCert = pkijs.Certificate.fromBER(new Uint8Array(opts.signer?.certDer ?? this.certDer));
    const attr = (type: string, value: asn1js.AsnType) => new pkijs.Attribute({ type, values: [value] });
    const sd = new pkijs.SignedData({
      version: 1,
      encapContentInfo: new pkijs.EncapsulatedContentInfo({
        eContentType: OID.data,
        eContent: new asn1js.OctetString({ valueHex: new Uint8Array(envelopeDer) }),
      }),
      signerInfos: [
        new pkijs.SignerInfo({
          version: 1,
          sid: new pkijs.IssuerAndSerialNumber({ issuer: signerCert.issuer, serialNumber: signerCert.serialNumber }),
          signedAttrs: new pkijs.SignedAndUnsignedAttributes({
            type: 0,
            attributes: [
              attr(OID.contentType, new asn1js.ObjectIdentifier({ value: OID.data })),
              attr(OID.messageDigest, new asn1js.OctetString({ valueHex: crypto.createHash('sha256').update(envelopeDer).digest() })),
              attr(OID.messageType, new asn1js.PrintableString({ value: String(opts.messageType ?? 19) })),
              attr(OID.transactionID, new asn1js.PrintableString({ value: transactionId })),
              attr(OID.senderNonce, new asn1js.OctetString({ valueHex: senderNonce })),
            ],
          }),
        }),
      ],
      certificates: [signerCert],
    });
    await sd.sign(this.keys.privateKey, 0, 'SHA-256');
    const der = Buffer.from(new pkijs.ContentInfo({ contentType: OID.signedData, content: sd.toSchema(true) }).toSchema().toBER(false));
    return { der, envelopeDer, transactionId, senderNonce };
  }

  /** Verifies a CertRep against the CA, reads every signed attribute and decrypts the issued certificates. */
  async readCertRep(der: Buffer, caCertPem: string) {
    const ci = pkijs.ContentInfo.fromBER(new Uint8Array(der));
    expect(ci.contentType).toBe(OID.signedData);
    const sd = new pkijs.SignedData({ schema: ci.content });
    const verified = await sd.verify({ signer: 0, checkChain: false, extendedMode: true });
    expect(verified.signatureVerified).toBe(true);
    const caDer = Buffer.from(new crypto.X509Certificate(caCertPem).raw);
    expect(Buffer.from(verified.signerCertificate!.toSchema().toBER(false)).equals(caDer)).toBe(true);

    const attrs = new Map<string, asn1js.AsnType>();
    for (const a of sd.signerInfos[0]!.signedAttrs!.attributes) attrs.set(a.type, a.values[0] as asn1js.AsnType);
    const str = (o: string) => {
      const v = attrs.get(o);
      if (v === undefined) return undefined;
      expect(v).toBeInstanceOf(asn1js.PrintableString);
      return (v as asn1js.PrintableString).valueBlock.value;
    };
    const oct = (o: string) => {
      const v = attrs.get(o);
      expect(v).toBeInstanceOf(asn1js.OctetString);
      return Buffer.from((v as asn1js.OctetString).valueBlock.valueHexView);
    };
    expect((attrs.get(OID.contentType) as asn1js.ObjectIdentifier).valueBlock.toString()).toBe(OID.data);

    const eContent = sd.encapContentInfo.eContent;
    const content = eContent ? Buffer.from(eContent.getValue()) : Buffer.alloc(0);
    const reply = {
      messageType: str(OID.messageType),
      pkiStatus: str(OID.pkiStatus),
      failInfo: str(OID.failInfo),
      transactionId: str(OID.transactionID),
      senderNonce: oct(OID.senderNonce),
      recipientNonce: oct(OID.recipientNonce),
      encryption: undefined as string | undefined,
      certs: [] as x509.X509Certificate[],
    };
    if (content.length > 0) {
      const env = forge.pkcs7.messageFromAsn1(forge.asn1.fromDer(content.toString('binary'))) as forge.pkcs7.PkcsEnvelopedData;
      const internal = env as unknown as { encryptedContent: { algorithm: string }; content: forge.util.ByteStringBuffer };
      reply.encryption = internal.encryptedContent.algorithm;
      const key = forge.pki.privateKeyFromPem(this.privateKeyPem);
      expect(env.recipients).toHaveLength(1);
      env.decrypt(env.recipients[0]!, key as forge.pki.rsa.PrivateKey);
      const inner = pkijs.ContentInfo.fromBER(new Uint8Array(Buffer.from(internal.content.getBytes(), 'binary')));
      expect(inner.contentType).toBe(OID.signedData);
      const degenerate = new pkijs.SignedData({ schema: inner.content });
      expect(degenerate.signerInfos).toHaveLength(0);
      reply.certs = (degenerate.certificates ?? []).map((c) => new x509.X509Certificate(c.toSchema().toBER(false)));
    }
    return reply;
  }
}

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
