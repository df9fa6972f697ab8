/**
 * The device side of SCEP (RFC 8894), built independently of the server's codec under test
 * (protocols/apple/scep.ts): pkijs for the SignedData (arbitrary signed attributes, WebCrypto signing
 * and verification), forge to build and parse the EnvelopedData, Node's native RSA and ciphers to open
 * the reply's envelope (a raw RSA operation and our own PKCS#1 v1.5 unpadding: Node 20 refuses
 * PKCS#1 v1.5 private decryption and forge's JavaScript RSA is slow).
 *
 * A client holds one RSA key pair and a self-signed certificate over it, as a device does for its
 * first PKCSReq (RFC 8894 §2.3). `request` makes a pkiMessage, `checkCertRep` reads the CA's reply the
 * way a device must (signature by the CA, messageType, transactionID, recipientNonce, then the issued
 * certificate out of the envelope) and `readCertRep` exposes every field for codec tests.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';

x509.cryptoProvider.set(crypto.webcrypto as never);
const engine = new pkijs.CryptoEngine({ name: 'scep-client', crypto: crypto.webcrypto as never });

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

export const RSA_2048 = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;

/** The OIDs a SCEP client needs (RFC 8894 §3.2.1 and CMS). */
export const SCEP_OID = {
  data: '1.2.840.113549.1.7.1',
  signedData: '1.2.840.113549.1.7.2',
  envelopedData: '1.2.840.113549.1.7.3',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  messageType: '2.16.840.1.113733.1.9.2',
  pkiStatus: '2.16.840.1.113733.1.9.3',
  failInfo: '2.16.840.1.113733.1.9.4',
  senderNonce: '2.16.840.1.113733.1.9.5',
  recipientNonce: '2.16.840.1.113733.1.9.6',
  transactionID: '2.16.840.1.113733.1.9.7',
} as const;

/** failInfo values (RFC 8894 §3.2.1.4), by number. */
export const SCEP_FAIL_INFO_NAMES = ['badAlg', 'badMessageCheck', 'badRequest', 'badTime', 'badCertId'] as const;
export type ScepFailInfoName = (typeof SCEP_FAIL_INFO_NAMES)[number];

export type ScepEncryption = 'aes256' | '3des' | 'aes128' | 'des';

/** A CertRep the device must not act on: not signed by the CA, not about its request, not decryptable. */
export class ScepReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScepReplyError';
  }
}

/** Every field of a CertRep, for codec tests. */
export interface CertRepFields {
  messageType?: string;
  pkiStatus?: string;
  failInfo?: string;
  transactionId?: string;
  senderNonce: Buffer;
  recipientNonce: Buffer;
  /** OID of the envelope's content encryption. */
  encryption?: string;
  /** The certificates of the degenerate SignedData inside the envelope. */
  certs: x509.X509Certificate[];
}

/** What a device takes from a CertRep: the outcome and, on SUCCESS, its own certificate. */
export interface CertRepResult {
  status: 'SUCCESS' | 'FAILURE';
  failInfo?: ScepFailInfoName | string;
  certDer?: Buffer;
  /** SUCCESS: the OID of the envelope's content encryption. */
  encryption?: string;
}

/** The name a string or JSON name stands for: a bare string is a common name. */
function nameOf(name: string | x509.JsonName): string | x509.JsonName {
  return typeof name === 'string' && !name.includes('=') ? `CN=${name}` : name;
}

export class ScepClient {
  /** The same key as `privateKeyPem`, for native RSA. */
  readonly #privateKey: crypto.KeyObject;

  private constructor(
    readonly keys: CryptoKeyPair,
    readonly certDer: Buffer,
    readonly privateKeyPem: string,
    readonly name: string | x509.JsonName,
    readonly spki: Buffer,
  ) {
    this.#privateKey = crypto.createPrivateKey(privateKeyPem);
  }

  /**
   * A client with a fresh RSA-2048 key (or `opts.keys`, extractable, to skip key generation) and a
   * self-signed certificate named `name` (a bare string is a CN; a JSON name is taken as is).
   */
  static async create(name: string | x509.JsonName = 'device', opts: { keys?: CryptoKeyPair } = {}): Promise<ScepClient> {
    const keys = opts.keys ?? ((await crypto.webcrypto.subtle.generateKey(RSA_2048, true, ['sign', 'verify'])) as CryptoKeyPair);
    const subject = nameOf(name);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: crypto.randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
      name: subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      keys,
      signingAlgorithm: RSA_2048,
    });
    const [pkcs8, spki] = await Promise.all([
      crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey),
      crypto.webcrypto.subtle.exportKey('spki', keys.publicKey),
    ]);
    return new ScepClient(keys, Buffer.from(cert.rawData), x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), subject, Buffer.from(spki));
  }

  /** A PKCS#10 request for our key and name, with the challengePassword attribute when given. */
  async csr(challenge?: string): Promise<Buffer> {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: this.name,
      keys: this.keys,
      signingAlgorithm: RSA_2048,
      attributes: challenge === undefined ? [] : [new x509.ChallengePasswordAttribute(challenge)],
    });
    return Buffer.from(csr.rawData);
  }

  /** A PKCSReq (19) or RenewalReq (17) pkiMessage; signed by `signer` (default: our self-signed cert). */
  async request(opts: {
    caCertPem: string;
    challenge?: string;
    encryption: ScepEncryption;
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
    const transactionId = crypto.createHash('sha256').update(this.spki).digest('hex').toUpperCase();
    const senderNonce = crypto.randomBytes(16);
    const signerCert = pkijs.Certificate.fromBER(new Uint8Array(opts.signer?.certDer ?? this.certDer));
    const attr = (type: string, value: asn1js.AsnType) => new pkijs.Attribute({ type, values: [value] });
    const sd = new pkijs.SignedData({
      version: 1,
      encapContentInfo: new pkijs.EncapsulatedContentInfo({
        eContentType: SCEP_OID.data,
        eContent: new asn1js.OctetString({ valueHex: new Uint8Array(envelopeDer) }),
      }),
      signerInfos: [
        new pkijs.SignerInfo({
          version: 1,
          sid: new pkijs.IssuerAndSerialNumber({ issuer: signerCert.issuer, serialNumber: signerCert.serialNumber }),
          signedAttrs: new pkijs.SignedAndUnsignedAttributes({
            type: 0,
            attributes: [
              attr(SCEP_OID.contentType, new asn1js.ObjectIdentifier({ value: SCEP_OID.data })),
              attr(SCEP_OID.messageDigest, new asn1js.OctetString({ valueHex: crypto.createHash('sha256').update(envelopeDer).digest() })),
              attr(SCEP_OID.messageType, new asn1js.PrintableString({ value: String(opts.messageType ?? 19) })),
              attr(SCEP_OID.transactionID, new asn1js.PrintableString({ value: transactionId })),
              attr(SCEP_OID.senderNonce, new asn1js.OctetString({ valueHex: senderNonce })),
            ],
          }),
        }),
      ],
      certificates: [signerCert],
    });
    await sd.sign(this.keys.privateKey, 0, 'SHA-256', undefined, engine);
    const der = Buffer.from(new pkijs.ContentInfo({ contentType: SCEP_OID.signedData, content: sd.toSchema(true) }).toSchema().toBER(false));
    return { der, envelopeDer, transactionId, senderNonce };
  }

  /**
   * Verifies a CertRep's signature (over its signed attributes) by the CA certificate `caCert` (PEM or
   * DER: what GetCACert returned), reads every signed attribute and, when there is an envelope, opens
   * it with our key and lists the certificates inside. Throws `ScepReplyError` when the reply is not a
   * SignedData, is not signed by that certificate, or its envelope does not open.
   */
  async readCertRep(der: Buffer, caCert: string | Buffer): Promise<CertRepFields> {
    let sd: pkijs.SignedData;
    try {
      const parsed = asn1js.fromBER(new Uint8Array(der));
      if (parsed.offset === -1) throw new Error(parsed.result.error || 'not DER');
      const ci = new pkijs.ContentInfo({ schema: parsed.result });
      if (ci.contentType !== SCEP_OID.signedData) throw new Error(`content type ${ci.contentType} is not signedData`);
      sd = new pkijs.SignedData({ schema: ci.content });
    } catch (err) {
      throw new ScepReplyError(`the CertRep is not a CMS SignedData: ${(err as Error).message}`);
    }
    if (sd.signerInfos.length !== 1 || !sd.signerInfos[0]!.signedAttrs) throw new ScepReplyError('the CertRep needs exactly one signer with signed attributes');
    let verified: pkijs.SignedDataVerifyResult;
    try {
      verified = await sd.verify({ signer: 0, checkChain: false, extendedMode: true }, engine);
    } catch (err) {
      throw new ScepReplyError(`the CertRep signature does not verify: ${(err as { message?: string }).message ?? String(err)}`);
    }
    if (!verified.signatureVerified || !verified.signerCertificate) throw new ScepReplyError('the CertRep signature does not verify');
    const caDer = Buffer.isBuffer(caCert) ? caCert : Buffer.from(new crypto.X509Certificate(caCert).raw);
    if (!Buffer.from(verified.signerCertificate.toSchema().toBER(false)).equals(caDer)) {
      throw new ScepReplyError('the CertRep is not signed by the CA certificate GetCACert returned');
    }

    const attrs = new Map<string, asn1js.AsnType>();
    for (const a of sd.signerInfos[0]!.signedAttrs!.attributes) {
      if (attrs.has(a.type)) throw new ScepReplyError(`signed attribute ${a.type} appears twice`);
      attrs.set(a.type, a.values[0] as asn1js.AsnType);
    }
    const str = (oid: string): string | undefined => {
      const v = attrs.get(oid);
      if (v === undefined) return undefined;
      if (!(v instanceof asn1js.PrintableString)) throw new ScepReplyError(`signed attribute ${oid} is not a PrintableString`);
      return v.valueBlock.value;
    };
    const oct = (oid: string): Buffer => {
      const v = attrs.get(oid);
      if (!(v instanceof asn1js.OctetString)) throw new ScepReplyError(`signed attribute ${oid} is missing or not an OCTET STRING`);
      return Buffer.from(v.valueBlock.valueHexView);
    };
    const contentType = attrs.get(SCEP_OID.contentType);
    if (!(contentType instanceof asn1js.ObjectIdentifier) || contentType.valueBlock.toString() !== SCEP_OID.data) {
      throw new ScepReplyError('the CertRep contentType attribute is not id-data');
    }

    const eContent = sd.encapContentInfo.eContent;
    const content = eContent ? Buffer.from(eContent.getValue()) : Buffer.alloc(0);
    const reply: CertRepFields = {
      messageType: str(SCEP_OID.messageType),
      pkiStatus: str(SCEP_OID.pkiStatus),
      failInfo: str(SCEP_OID.failInfo),
      transactionId: str(SCEP_OID.transactionID),
      senderNonce: oct(SCEP_OID.senderNonce),
      recipientNonce: oct(SCEP_OID.recipientNonce),
      certs: [],
    };
    if (content.length > 0) {
      const opened = this.#open(content);
      reply.encryption = opened.algorithm;
      let degenerate: pkijs.SignedData;
      try {
        const inner = pkijs.ContentInfo.fromBER(new Uint8Array(opened.content));
        if (inner.contentType !== SCEP_OID.signedData) throw new Error(`content type ${inner.contentType}`);
        degenerate = new pkijs.SignedData({ schema: inner.content });
      } catch (err) {
        throw new ScepReplyError(`the envelope does not hold a certs-only SignedData: ${(err as Error).message}`);
      }
      if (degenerate.signerInfos.length !== 0) throw new ScepReplyError('the certs-only SignedData has signers');
      reply.certs = (degenerate.certificates ?? [])
        .filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate)
        .map((c) => new x509.X509Certificate(c.toSchema().toBER(false)));
    }
    return reply;
  }

  /**
   * Reads the CertRep for the request we sent, as a device does: it must verify against the CA
   * certificate, be a CertRep (3) for our transactionID with our senderNonce as its recipientNonce;
   * SUCCESS must carry a certificate for our key issued by that CA. Throws `ScepReplyError` otherwise.
   */
  async checkCertRep(der: Buffer, expected: { caCert: string | Buffer; transactionId: string; senderNonce: Buffer }): Promise<CertRepResult> {
    const reply = await this.readCertRep(der, expected.caCert);
    if (reply.messageType !== '3') throw new ScepReplyError(`messageType ${reply.messageType ?? '(none)'} is not CertRep (3)`);
    if (reply.transactionId !== expected.transactionId) throw new ScepReplyError('the CertRep is for another transactionID');
    if (!reply.recipientNonce.equals(expected.senderNonce)) throw new ScepReplyError('the recipientNonce is not our senderNonce');
    if (reply.senderNonce.length === 0) throw new ScepReplyError('the CertRep has an empty senderNonce');
    switch (reply.pkiStatus) {
      case '0': {
        const mine = reply.certs.find((c) => Buffer.from(c.publicKey.rawData).equals(this.spki));
        if (!mine) throw new ScepReplyError('SUCCESS without a certificate for our key');
        const certDer = Buffer.from(mine.rawData);
        const ca = new crypto.X509Certificate(expected.caCert);
        const issued = new crypto.X509Certificate(certDer);
        if (!issued.checkIssued(ca) || !issued.verify(ca.publicKey)) throw new ScepReplyError('the issued certificate is not signed by the CA');
        return { status: 'SUCCESS', certDer, ...(reply.encryption ? { encryption: reply.encryption } : {}) };
      }
      case '2': {
        const n = Number(reply.failInfo);
        const failInfo = reply.failInfo === undefined ? undefined : (SCEP_FAIL_INFO_NAMES[n] ?? reply.failInfo);
        return failInfo === undefined ? { status: 'FAILURE' } : { status: 'FAILURE', failInfo };
      }
      case '3':
        throw new ScepReplyError('PENDING CertReps (manual approval, CertPoll) are not simulated');
      default:
        throw new ScepReplyError(`unknown pkiStatus ${reply.pkiStatus ?? '(none)'}`);
    }
  }

  /** Opens an EnvelopedData addressed to us: forge parses, native RSA and ciphers decrypt. */
  #open(der: Buffer): { content: Buffer; algorithm: string } {
    let env: forge.pkcs7.PkcsEnvelopedData;
    try {
      env = forge.pkcs7.messageFromAsn1(forge.asn1.fromDer(der.toString('binary'))) as forge.pkcs7.PkcsEnvelopedData;
    } catch (err) {
      throw new ScepReplyError(`the CertRep content is not an EnvelopedData: ${(err as Error).message}`);
    }
    const internal = env as unknown as {
      encryptedContent?: { algorithm?: string; parameter?: ForgeBytes; content?: ForgeBytes };
      recipients: Array<{ encryptedContent?: { algorithm?: string; content?: ForgeBytes } }>;
    };
    if (internal.recipients.length !== 1) throw new ScepReplyError(`the envelope has ${internal.recipients.length} recipients, expected 1`);
    const recipient = internal.recipients[0]!;
    if (recipient.encryptedContent?.algorithm !== forge.pki.oids.rsaEncryption) throw new ScepReplyError('the envelope key transport is not RSA');
    const algorithm = internal.encryptedContent?.algorithm ?? '';
    const cipher = CIPHERS[algorithm];
    if (!cipher) throw new ScepReplyError(`unsupported envelope encryption ${algorithm || '?'}`);
    const raw = crypto.privateDecrypt({ key: this.#privateKey, padding: crypto.constants.RSA_NO_PADDING }, bytes(recipient.encryptedContent.content));
    const key = unpadPkcs1Type2(raw);
    if (!key || key.length !== cipher.keyLen) throw new ScepReplyError('the envelope key does not decrypt with our key');
    const iv = bytes(internal.encryptedContent?.parameter);
    const encrypted = bytes(internal.encryptedContent?.content);
    try {
      // Single DES is not in Node 20's default OpenSSL provider; 3DES-EDE with K1 = K2 = K3 = K is DES.
      const d = crypto.createDecipheriv(cipher.native, cipher.keyLen === 8 ? Buffer.concat([key, key, key]) : key, iv);
      return { content: Buffer.concat([d.update(encrypted), d.final()]), algorithm };
    } catch (err) {
      throw new ScepReplyError(`the envelope content does not decrypt: ${(err as Error).message}`);
    }
  }
}

/** forge keeps binary data either as a ByteStringBuffer or as a "binary" string. */
type ForgeBytes = forge.util.ByteStringBuffer | string;
function bytes(b: ForgeBytes | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return Buffer.from(typeof b === 'string' ? b : b.bytes(), 'binary');
}

const CIPHERS: Record<string, { native: string; keyLen: number }> = {
  '2.16.840.1.101.3.4.1.2': { native: 'aes-128-cbc', keyLen: 16 },
  '2.16.840.1.101.3.4.1.22': { native: 'aes-192-cbc', keyLen: 24 },
  '2.16.840.1.101.3.4.1.42': { native: 'aes-256-cbc', keyLen: 32 },
  '1.2.840.113549.3.7': { native: 'des-ede3-cbc', keyLen: 24 },
  '1.3.14.3.2.7': { native: 'des-ede3-cbc', keyLen: 8 }, // single DES: micromdm's scepserver answers with it
};

/** EME-PKCS1-v1_5 decoding (RFC 8017 §7.2.2); undefined when malformed. */
function unpadPkcs1Type2(em: Buffer): Buffer | undefined {
  if (em[0] !== 0 || em[1] !== 2) return undefined;
  const sep = em.indexOf(0, 2);
  if (sep < 10) return undefined;
  return em.subarray(sep + 1);
}
