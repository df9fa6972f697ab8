import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import forge from 'node-forge';
import {
  FAIL_INFO,
  OID,
  SCEP_CA_CAPS,
  ScepError,
  buildCertRep,
  caCapsText,
  caCertResponse,
  certRepEncryption,
  envelope,
  parsePkiMessage,
  parsePkiMessageWithPkijs,
  scepParsePaths,
  type ScepCaKey,
  type ScepRequest,
} from '../../protocols/apple/scep';
import { loadOrCreateCa, type CertificateAuthority } from '../../src/pki/ca';
import { certParts, NULL, octets, oid, printable, readWhole, seq, set, smallInteger, tlv, utf8 } from '../../src/pki/der';
import { issueClientCertificate, readCsr } from '../../src/pki/issue';
import { ScepClient, type ScepEncryption } from '../helpers/scep-client';

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

// ---------------------------------------------------------------------------------------------------
// The fast path (DER reader + node:crypto) against the reference path (pkijs, forge, @peculiar/x509)

/** What a parse came to, comparable with toEqual: the request, or the ScepError's failInfo and replyTo. */
async function outcome(p: Promise<ScepRequest>): Promise<unknown> {
  return p.then(
    (req) => ({ ok: req }),
    (err: unknown) => {
      if (!(err instanceof ScepError)) return { threw: err };
      return { failInfo: err.failInfo, replyTo: err.replyTo };
    },
  );
}

/** Both paths on the same input; the public entry point must decide like the reference. */
async function bothPaths(der: Buffer, key: ScepCaKey = caKey): Promise<{ fast: unknown; reference: unknown }> {
  const [fast, reference] = [await outcome(parsePkiMessage(der, key)), await outcome(parsePkiMessageWithPkijs(der, key))];
  return { fast, reference };
}

describe('fast path', () => {
  let renewalSigner: Buffer;
  beforeAll(async () => {
    const first = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption: 'aes256' });
    renewalSigner = (await issueFor(first.der, 'aes256')).issued.der;
  });

  it('reads every kind of request exactly as the reference path does, and decides them itself', async () => {
    const encryptions: ScepEncryption[] = ['aes128', 'aes256', '3des', 'des'];
    let n = 0;
    for (const encryption of encryptions) {
      for (const challenge of ['s3cret', undefined, 'with space and (parens)', '']) {
        for (const renewal of [false, true]) {
          const sent = await client.request({
            caCertPem: ca.certPem,
            encryption,
            ...(challenge === undefined ? {} : { challenge }),
            ...(renewal ? { messageType: 17 as const, signer: { certDer: renewalSigner } } : {}),
          });
          const before = { ...scepParsePaths };
          const { fast, reference } = await bothPaths(sent.der);
          expect(scepParsePaths.fast).toBe(before.fast + 1);
          expect(scepParsePaths.pkijs).toBe(before.pkijs);
          expect(fast).toEqual(reference);
          const req = (fast as { ok: ScepRequest }).ok;
          expect(req).toMatchObject({ messageType: renewal ? 'RenewalReq' : 'PKCSReq', encryption, transactionId: sent.transactionId });
          expect(req.challengePassword).toBe(challenge);
          expect(req.signerCertDer.equals(renewal ? renewalSigner : client.certDer)).toBe(true);
          n++;
        }
      }
    }
    expect(n).toBe(32);
  });

  it('reads the recorded fixture on the fast path', async () => {
    const fixtureCa: ScepCaKey = {
      certPem: fs.readFileSync(path.join(FIXTURES, 'ca.crt'), 'utf8'),
      privateKeyPem: fs.readFileSync(path.join(FIXTURES, 'ca.key'), 'utf8'),
    };
    const der = fs.readFileSync(path.join(FIXTURES, 'PKCSReq.1.der'));
    const before = scepParsePaths.fast;
    const { fast, reference } = await bothPaths(der, fixtureCa);
    expect(scepParsePaths.fast).toBe(before + 1);
    expect(fast).toEqual(reference);
    expect((fast as { ok: ScepRequest }).ok.challengePassword).toBe('fixture-challenge');
  });

  it('leaves BER (indefinite lengths) to the reference path, which reads it', async () => {
    const sent = await client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption: 'aes256' });
    const top = readWhole(sent.der, 0x30);
    const ber = Buffer.concat([Buffer.from([0x30, 0x80]), sent.der.subarray(top.body), Buffer.from([0, 0])]);
    const before = { ...scepParsePaths };
    const req = await parsePkiMessage(ber, caKey);
    expect(scepParsePaths.pkijs).toBe(before.pkijs + 1);
    expect(scepParsePaths.fast).toBe(before.fast);
    expect(req).toEqual(await parsePkiMessage(sent.der, caKey));
  });

  it('decides randomly corrupted messages like the reference path, and never throws anything but ScepError', async () => {
    const bases = await Promise.all(
      (['aes256', '3des', 'aes128', 'des'] as const).map((encryption) => client.request({ caCertPem: ca.certPem, challenge: 's3cret', encryption })),
    );
    const rnd = (n: number) => crypto.randomInt(n);
    for (let n = 0; n < 400; n++) {
      const base = bases[n % bases.length]!.der;
      let m = Buffer.from(base);
      switch (n % 5) {
        case 0:
          m[rnd(m.length)]! ^= 1 << rnd(8);
          break;
        case 1:
          m[rnd(m.length)] = rnd(256);
          break;
        case 2: {
          const at = rnd(m.length);
          for (let j = at; j < Math.min(at + 4, m.length); j++) m[j] = rnd(256);
          break;
        }
        case 3:
          m = m.subarray(0, rnd(m.length));
          break;
        default: {
          // a length octet in the first 1500 bytes (the structure, the certificate, the attributes)
          const at = rnd(Math.min(1500, m.length));
          m[at] = m[at]! ^ (1 << rnd(3));
        }
      }
      const { fast, reference } = await bothPaths(m);
      expect(fast).not.toHaveProperty('threw');
      expect(fast).toEqual(reference);
    }
  }, 120_000);

  describe('with envelopes and attributes of our making (re-signed, so the signature holds)', () => {
    /** An EnvelopedData of `content` to the CA, made with forge. */
    function envelopeFor(content: Buffer, encryption: 'aes256' | '3des' | 'aes128' = 'aes256'): Buffer {
      const env = forge.pkcs7.createEnvelopedData();
      env.addRecipient(forge.pki.certificateFromPem(ca.certPem));
      env.content = forge.util.createBuffer(content.toString('binary'));
      env.encrypt(undefined, forge.pki.oids[{ aes256: 'aes256-CBC', '3des': 'des-EDE3-CBC', aes128: 'aes128-CBC' }[encryption]]);
      return Buffer.from(forge.asn1.toDer(env.toAsn1()).getBytes(), 'binary');
    }

    const attr = (type: string, value: Buffer) => seq(oid(type), set(value));

    /** A pkiMessage over `content` signed by the client's key, with exactly the signed attributes given. */
    function signed(content: Buffer, attrs: Buffer[]): Buffer {
      const cert = certParts(client.certDer, readWhole(client.certDer, 0x30));
      const ias = seq(
        client.certDer.subarray(cert.issuer.start, cert.issuer.end),
        client.certDer.subarray(cert.serial.start, cert.serial.end),
      );
      const sorted = [...attrs].sort(Buffer.compare);
      const signature = crypto.sign('sha256', tlv(0x31, sorted), crypto.createPrivateKey(client.privateKeyPem));
      const sha256 = seq(oid(OID.sha256), NULL);
      const signerInfo = seq(smallInteger(1), ias, sha256, tlv(0xa0, sorted), seq(oid(OID.rsaEncryption), NULL), octets(signature));
      const sd = seq(smallInteger(1), set(sha256), seq(oid(OID.data), tlv(0xa0, [octets(content)])), tlv(0xa0, [client.certDer]), set(signerInfo));
      return seq(oid(OID.signedData), tlv(0xa0, [sd]));
    }

    function standardAttrs(content: Buffer, overrides: Record<string, Buffer | null> = {}): Buffer[] {
      const values: Record<string, Buffer> = {
        [OID.contentType]: oid(OID.data),
        [OID.messageDigest]: octets(crypto.createHash('sha256').update(content).digest()),
        [OID.messageType]: printable('19'),
        [OID.transactionID]: printable('TX-1'),
        [OID.senderNonce]: octets(Buffer.alloc(16, 7)),
      };
      const out: Buffer[] = [];
      for (const [type, value] of Object.entries({ ...values, ...overrides })) if (value) out.push(attr(type, value));
      return out;
    }

    it('builds a message the fast path reads', async () => {
      const env = envelopeFor(await client.csr('pw'));
      const before = scepParsePaths.fast;
      const { fast, reference } = await bothPaths(signed(env, standardAttrs(env)));
      expect(scepParsePaths.fast).toBe(before + 1);
      expect(fast).toEqual(reference);
      expect((fast as { ok: ScepRequest }).ok).toMatchObject({ transactionId: 'TX-1', challengePassword: 'pw', encryption: 'aes256' });
    });

    it.each<[string, Record<string, Buffer | null>]>([
      ['no messageType', { [OID.messageType]: null }],
      ['messageType 20 (CertPoll)', { [OID.messageType]: printable('20') }],
      ['messageType as hex text', { [OID.messageType]: printable('0x13') }],
      ['messageType as an INTEGER', { [OID.messageType]: Buffer.from([0x02, 0x01, 19]) }],
      ['a UTF8String transactionID', { [OID.transactionID]: utf8('TX-utf8') }],
      ['a BMPString transactionID', { [OID.transactionID]: tlv(0x1e, [Buffer.from([0, 0x54, 0, 0x58])]) }],
      ['an empty transactionID', { [OID.transactionID]: printable('') }],
      ['no transactionID', { [OID.transactionID]: null }],
      ['an empty senderNonce', { [OID.senderNonce]: octets(Buffer.alloc(0)) }],
      ['a senderNonce that is not an OCTET STRING', { [OID.senderNonce]: printable('nonce') }],
      ['a constructed senderNonce', { [OID.senderNonce]: tlv(0x24, [octets(Buffer.alloc(8, 1)), octets(Buffer.alloc(8, 2))]) }],
      ['no contentType', { [OID.contentType]: null }],
      ['no messageDigest', { [OID.messageDigest]: null }],
      ['a wrong messageDigest', { [OID.messageDigest]: octets(Buffer.alloc(32)) }],
    ])('decides a message with %s like the reference path', async (_name, overrides) => {
      const env = envelopeFor(await client.csr('pw'));
      const { fast, reference } = await bothPaths(signed(env, standardAttrs(env, overrides)));
      expect(fast).not.toHaveProperty('threw');
      expect(fast).toEqual(reference);
    });

    it.each([
      ['not a CSR', Buffer.from('hello')],
      ['a CSR with trailing bytes', null],
      ['a CSR with a BMPString challengePassword', 'bmp'],
      ['a CSR with an IA5String challengePassword', 'ia5'],
    ] as const)('decides an envelope holding %s like the reference path', async (_name, kind) => {
      let content: Buffer;
      const csr = await client.csr('pw');
      if (Buffer.isBuffer(kind)) content = kind;
      else if (kind === null) content = Buffer.concat([csr, Buffer.from([0, 0])]);
      else {
        // Swap the PrintableString of the challenge for another string type (the CSR signature breaks, which parsing does not check).
        const at = csr.indexOf(Buffer.from('pw'));
        content = Buffer.from(csr);
        content[at - 2] = kind === 'bmp' ? 0x1e : 0x16;
        if (kind === 'bmp') content[at - 1] = 2;
      }
      const env = envelopeFor(content);
      const { fast, reference } = await bothPaths(signed(env, standardAttrs(env)));
      expect(fast).not.toHaveProperty('threw');
      expect(fast).toEqual(reference);
    });

    it('decides corrupted envelopes like the reference path', async () => {
      const rnd = (n: number) => crypto.randomInt(n);
      const csr = await client.csr('pw');
      const envs = (['aes256', '3des', 'aes128'] as const).map((e) => envelopeFor(csr, e));
      for (let n = 0; n < 210; n++) {
        const base = envs[n % envs.length]!;
        // The RSA-encrypted content key (OCTET STRING of 256 bytes): corrupting it yields a random
        // content key (implicit rejection), a coin toss between badMessageCheck and badRequest, below.
        const key = base.indexOf(Buffer.from([0x04, 0x82, 0x01, 0x00])) + 4;
        const pick = (limit: number) => {
          for (;;) {
            const at = rnd(limit);
            if (at < key || at >= key + 256) return at;
          }
        };
        const env = Buffer.from(base);
        if (n % 3 === 0) env[pick(env.length)]! ^= 1 << rnd(8);
        else if (n % 3 === 1) env[pick(Math.min(env.length, 400))] = rnd(256); // the structure and the recipient
        const content = n % 3 === 2 ? env.subarray(0, rnd(env.length)) : env;
        const { fast, reference } = await bothPaths(signed(content, standardAttrs(content)));
        expect(fast).not.toHaveProperty('threw');
        expect(fast).toEqual(reference);
      }
    }, 120_000);

    it('fails a corrupted content key with badMessageCheck or badRequest on both paths', async () => {
      const base = envelopeFor(await client.csr('pw'));
      const key = base.indexOf(Buffer.from([0x04, 0x82, 0x01, 0x00])) + 4;
      for (let n = 0; n < 20; n++) {
        const env = Buffer.from(base);
        env[key + crypto.randomInt(256)]! ^= 1 << crypto.randomInt(8);
        const { fast, reference } = await bothPaths(signed(env, standardAttrs(env)));
        for (const r of [fast, reference] as { failInfo: string; replyTo: unknown }[]) {
          expect(['badMessageCheck', 'badRequest']).toContain(r.failInfo);
          expect(r.replyTo).toEqual((reference as { replyTo: unknown }).replyTo);
        }
      }
    });

    it('refuses an envelope with an unknown cipher like the reference path', async () => {
      const csr = await client.csr('pw');
      const env = envelopeFor(csr);
      const aes256 = oid(OID.aes256Cbc);
      const gcm = Buffer.from(env);
      oid('2.16.840.1.101.3.4.1.46').copy(gcm, gcm.indexOf(aes256)); // AES-256-GCM: an OID of the same length
      const { fast, reference } = await bothPaths(signed(gcm, standardAttrs(gcm)));
      expect(fast).toEqual(reference);
      expect(fast).toMatchObject({ failInfo: 'badAlg' });
    });
  });
});

it('encrypts the CertRep to the request signer with the same result through the DER reader as through OpenSSL', async () => {
  const content = crypto.randomBytes(100);
  const env = envelope(content, client.certDer, 'aes256');
  const parsed = forge.pkcs7.messageFromAsn1(forge.asn1.fromDer(env.toString('binary'))) as forge.pkcs7.PkcsEnvelopedData;
  const recipient = parsed.findRecipient(forge.pki.certificateFromAsn1(forge.asn1.fromDer(client.certDer.toString('binary'))));
  expect(recipient).not.toBeNull();
  parsed.decrypt(recipient!, forge.pki.privateKeyFromPem(client.privateKeyPem));
  const opened = parsed.content!;
  expect(Buffer.from(typeof opened === 'string' ? opened : opened.getBytes(), 'binary').equals(content)).toBe(true);
});
