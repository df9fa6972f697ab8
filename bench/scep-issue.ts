/**
 * Micro-benchmark of the SCEP PKIOperation codec and certificate issuance, before and after the DER
 * fast paths: per operation, the reference implementation (what every PKCSReq paid before: pkijs,
 * node-forge, @peculiar/x509) against what `/scep` and Windows enrollment now run.
 *
 *   npx tsx bench/scep-issue.ts            # about 40 s
 *   SCEP_BENCH_SECONDS=0.5 npx tsx bench/scep-issue.ts
 *
 * Operations (one PKCSReq, AES-256, RSA-2048 device key and CA, built by the test suite's ScepClient
 * before the clock starts):
 *   parse         parsePkiMessage: SignedData verified, envelope opened with the CA key, CSR read
 *   readCsr       the PKCS#10 request read and its signature checked
 *   issue         the identity certificate written and signed by the CA
 *   buildCertRep  the CertRep: degenerate SignedData, encrypted to the device, signed by the CA
 *   total         the four in a row, as pkiOperation runs them (no database, no HTTP)
 * "before" for buildCertRep is the previous code reproduced here (a full X.509 parse of the CA PEM and of
 * the device certificate and a PEM key parse on every call); the others call the reference functions
 * the modules keep as fallbacks. Variants run interleaved, 3 rounds, each a timed loop of sequential
 * awaits over 64 distinct messages; the median round is reported. The floor is the three native RSA
 * private-key operations every PKCSReq needs (open the content key, sign the certificate, sign the CertRep).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import {
  FAIL_INFO,
  MESSAGE_TYPES,
  OID,
  PKI_STATUS,
  buildCertRep,
  certRepEncryption,
  degenerateSignedData,
  parsePkiMessage,
  parsePkiMessageWithPkijs,
  scepParsePaths,
  type CertRepOptions,
  type ScepRequest,
} from '../protocols/apple/scep';
import { loadOrCreateCa, type CertificateAuthority } from '../src/pki/ca';
import { NULL, octets, oid, printable, seq, smallInteger, tlv, utcTime } from '../src/pki/der';
import {
  csrPaths,
  issuePaths,
  issueClientCertificate,
  issueClientCertificateWithX509,
  readCsr,
  readCsrWithX509,
  type CsrInput,
} from '../src/pki/issue';
import { ScepClient } from '../test/helpers/scep-client';

const SECONDS = Number(process.env.SCEP_BENCH_SECONDS ?? 1.5);
const ROUNDS = 3;
const MESSAGES = 64;

interface Variant {
  name: string;
  run: (i: number) => unknown;
}

/** Operations per second of `run` for about SECONDS. */
async function rate(run: (i: number) => unknown): Promise<number> {
  for (let i = 0; i < 20; i++) await run(i); // warm-up
  let n = 0;
  const t0 = performance.now();
  const until = t0 + SECONDS * 1000;
  let t = t0;
  while (t < until) {
    for (let i = 0; i < 10; i++) await run(n + i);
    n += 10;
    t = performance.now();
  }
  return (n * 1000) / (t - t0);
}

// ---------------------------------------------------------------------------------------------------
// The previous buildCertRep, reproduced: a full X.509 parse of the CA certificate from its PEM, of the
// device certificate for its key, and the CA key parsed from PEM by crypto.sign, on every call.

function attribute(type: string, value: Buffer): Buffer {
  return seq(oid(type), tlv(0x31, [value]));
}

function issuerAndSerialOf(cert: crypto.X509Certificate): Buffer {
  const der = cert.raw;
  const read = (pos: number) => {
    let len = der[pos + 1]!;
    let body = pos + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[body++]!;
    }
    return { start: pos, body, end: body + len, tag: der[pos]! };
  };
  const tbs = read(read(0).body);
  let field = read(tbs.body);
  if (field.tag === 0xa0) field = read(field.end);
  const alg = read(field.end);
  const issuer = read(alg.end);
  return seq(der.subarray(issuer.start, issuer.end), der.subarray(field.start, field.end));
}

function envelopeBefore(content: Buffer, recipientCertDer: Buffer, encryption: 'aes256' | '3des'): Buffer {
  const cert = new crypto.X509Certificate(recipientCertDer);
  const [cipherName, keyLen, ivLen, algOid] =
    encryption === 'aes256' ? (['aes-256-cbc', 32, 16, OID.aes256Cbc] as const) : (['des-ede3-cbc', 24, 8, OID.desEde3Cbc] as const);
  const key = crypto.randomBytes(keyLen);
  const iv = crypto.randomBytes(ivLen);
  const cipher = crypto.createCipheriv(cipherName, key, iv);
  const encrypted = Buffer.concat([cipher.update(content), cipher.final()]);
  const encryptedKey = crypto.publicEncrypt({ key: cert.publicKey, padding: crypto.constants.RSA_PKCS1_PADDING }, key);
  const recipientInfo = seq(smallInteger(0), issuerAndSerialOf(cert), seq(oid(OID.rsaEncryption), NULL), octets(encryptedKey));
  const env = seq(smallInteger(0), tlv(0x31, [recipientInfo]), seq(oid(OID.data), seq(oid(algOid), octets(iv)), tlv(0x80, [encrypted])));
  return seq(oid(OID.envelopedData), tlv(0xa0, [env]));
}

function buildCertRepBefore(opts: CertRepOptions): Buffer {
  const caCert = new crypto.X509Certificate(opts.ca.certPem);
  const caCertDer = Buffer.from(caCert.raw);
  const degenerate = degenerateSignedData([opts.issuedCertDer!, ...(opts.chainDer ?? [])]);
  const content = envelopeBefore(degenerate, opts.recipientCertDer, opts.encryption);
  const attrs: Buffer[] = [
    attribute(OID.contentType, oid(OID.data)),
    attribute(OID.signingTime, utcTime(new Date())),
    attribute(OID.messageDigest, octets(crypto.createHash('sha256').update(content).digest())),
    attribute(OID.messageType, printable(String(MESSAGE_TYPES.CertRep))),
    attribute(OID.pkiStatus, printable(String(PKI_STATUS[opts.status]))),
    attribute(OID.transactionID, printable(opts.transactionId)),
    attribute(OID.senderNonce, octets(crypto.randomBytes(16))),
    attribute(OID.recipientNonce, octets(opts.recipientNonce)),
  ];
  if (opts.status === 'FAILURE') attrs.push(attribute(OID.failInfo, printable(String(FAIL_INFO[opts.failInfo!]))));
  attrs.sort(Buffer.compare);
  const signature = crypto.sign('sha256', tlv(0x31, attrs), opts.ca.privateKeyPem!);
  const sha256Alg = seq(oid(OID.sha256), NULL);
  const signerInfo = seq(smallInteger(1), issuerAndSerialOf(caCert), sha256Alg, tlv(0xa0, attrs), seq(oid(OID.rsaEncryption), NULL), octets(signature));
  const signedData = seq(smallInteger(1), tlv(0x31, [sha256Alg]), seq(oid(OID.data), tlv(0xa0, [octets(content)])), tlv(0xa0, [caCertDer]), tlv(0x31, [signerInfo]));
  return seq(oid(OID.signedData), tlv(0xa0, [signedData]));
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-scep-bench-'));
  try {
    x509.cryptoProvider.set(crypto.webcrypto as never);
    const ca: CertificateAuthority = await loadOrCreateCa(dir);
    const caKey = { certPem: ca.certPem, privateKeyPem: ca.keyPem };
    const client = await ScepClient.create();
    process.stdout.write(`building ${MESSAGES} PKCSReq messages...\n`);
    const messages: Buffer[] = [];
    for (let i = 0; i < MESSAGES; i++) messages.push((await client.request({ caCertPem: ca.certPem, challenge: `challenge-${i}`, encryption: 'aes256' })).der);

    // Setup checks: both implementations read every message alike, and the new code takes its fast paths.
    const requests: ScepRequest[] = [];
    const refCsrs: CsrInput[] = [];
    for (const der of messages) {
      const before = scepParsePaths.fast;
      const [a, b] = [await parsePkiMessage(der, caKey), await parsePkiMessageWithPkijs(der, caKey)];
      if (scepParsePaths.fast !== before + 1) throw new Error('setup: the SCEP fast path did not decide');
      if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error('setup: the SCEP paths disagree');
      requests.push(a);
      refCsrs.push(await readCsrWithX509(a.csrDer));
    }
    const csrs = await Promise.all(requests.map((r) => readCsr(r.csrDer)));
    if (csrPaths.fast !== MESSAGES || csrPaths.x509 !== 0) throw new Error(`setup: readCsr paths ${JSON.stringify(csrPaths)}`);
    const issued = await Promise.all(csrs.map((c, i) => issueClientCertificate(ca, c, { commonName: `Apple device ${i}` })));
    if (issuePaths.x509 !== 0) throw new Error('setup: issuance fell back to @peculiar/x509');
    const certRepOpts = (i: number): CertRepOptions => {
      const req = requests[i % MESSAGES]!;
      return {
        ca: caKey,
        transactionId: req.transactionId,
        recipientNonce: req.senderNonce,
        status: 'SUCCESS',
        issuedCertDer: issued[i % MESSAGES]!.der,
        recipientCertDer: req.signerCertDer,
        encryption: certRepEncryption(req.encryption),
      };
    };
    for (let i = 0; i < 4; i++) {
      const [a, b] = [await client.readCertRep(await buildCertRep(certRepOpts(i)), ca.certPem), await client.readCertRep(buildCertRepBefore(certRepOpts(i)), ca.certPem)];
      if (a.certs.length !== 1 || b.certs.length !== 1 || a.transactionId !== b.transactionId) throw new Error('setup: the CertReps differ');
    }

    const caNative = crypto.createPrivateKey(ca.keyPem);
    const rsaBlock = crypto.publicEncrypt({ key: crypto.createPublicKey(ca.keyPem), padding: crypto.constants.RSA_PKCS1_PADDING }, crypto.randomBytes(32));
    const tbsLike = crypto.randomBytes(800);

    const totalBefore = async (i: number) => {
      const req = await parsePkiMessageWithPkijs(messages[i % MESSAGES]!, caKey);
      const csr = await readCsrWithX509(req.csrDer);
      const cert = await issueClientCertificateWithX509(ca, csr, { commonName: 'Apple device' });
      return buildCertRepBefore({ ...certRepOpts(i), issuedCertDer: cert.der });
    };
    const totalAfter = async (i: number) => {
      const req = await parsePkiMessage(messages[i % MESSAGES]!, caKey);
      const csr = await readCsr(req.csrDer);
      const cert = await issueClientCertificate(ca, csr, { commonName: 'Apple device' });
      return buildCertRep({ ...certRepOpts(i), issuedCertDer: cert.der });
    };

    const groups: { op: string; before: Variant; after: Variant }[] = [
      {
        op: 'parse (parsePkiMessage)',
        before: { name: 'pkijs + forge + @peculiar/x509', run: (i) => parsePkiMessageWithPkijs(messages[i % MESSAGES]!, caKey) },
        after: { name: 'DER fast path', run: (i) => parsePkiMessage(messages[i % MESSAGES]!, caKey) },
      },
      {
        op: 'readCsr',
        before: { name: '@peculiar/x509 + WebCrypto', run: (i) => readCsrWithX509(requests[i % MESSAGES]!.csrDer) },
        after: { name: 'DER + node:crypto', run: (i) => readCsr(requests[i % MESSAGES]!.csrDer) },
      },
      {
        op: 'issue (issueClientCertificate)',
        before: { name: '@peculiar/x509 generator', run: (i) => issueClientCertificateWithX509(ca, refCsrs[i % MESSAGES]!, { commonName: 'Apple device' }) },
        after: { name: 'TBSCertificate by hand', run: (i) => issueClientCertificate(ca, csrs[i % MESSAGES]!, { commonName: 'Apple device' }) },
      },
      {
        op: 'buildCertRep',
        before: { name: 'X.509 + PEM key parsed per call', run: (i) => buildCertRepBefore(certRepOpts(i)) },
        after: { name: 'cached CA, DER-read recipient', run: (i) => buildCertRep(certRepOpts(i)) },
      },
      {
        op: 'total (the four in a row)',
        before: { name: 'before', run: totalBefore },
        after: { name: 'after', run: totalAfter },
      },
    ];
    const floor: Variant = {
      name: 'floor: 3 native RSA-2048 private-key operations (decrypt + 2 signs)',
      run: () => {
        crypto.privateDecrypt({ key: caNative, padding: crypto.constants.RSA_NO_PADDING }, rsaBlock);
        crypto.sign('sha256', tbsLike, caNative);
        crypto.sign('sha256', tbsLike, caNative);
      },
    };

    const variants = [...groups.flatMap((g) => [g.before, g.after]), floor];
    const results = new Map<Variant, number[]>(variants.map((v) => [v, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of variants) {
        const ops = await rate(v.run);
        results.get(v)!.push(ops);
        process.stdout.write(`round ${r + 1}/${ROUNDS} ${v.name}: ${(1e6 / ops).toFixed(1)} µs/op\n`);
      }
    }
    const us = (v: Variant) => {
      const sorted = [...results.get(v)!].sort((a, b) => a - b);
      return 1e6 / sorted[Math.floor(sorted.length / 2)]!;
    };

    const lines = [
      '',
      `SCEP PKIOperation codec, RSA-2048 CA and device key, AES-256; median of ${ROUNDS} rounds of ~${SECONDS} s; Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}`,
      '',
      '| operation | before µs/op | after µs/op | speed-up |',
      '|---|---:|---:|---:|',
      ...groups.map((g) => `| ${g.op} | ${us(g.before).toFixed(0)} | ${us(g.after).toFixed(0)} | ${(us(g.before) / us(g.after)).toFixed(1)}x |`),
      `| ${floor.name} | | ${us(floor).toFixed(0)} | |`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
