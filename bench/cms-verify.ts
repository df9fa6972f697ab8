/**
 * Micro-benchmark of `Mdm-Signature` verification: the pkijs implementation (what every Apple MDM
 * request paid before) against the fast path, on one signature verified again and again, as an idle
 * device's polls are (same certificate, so the signer-key and chain caches are warm after the first).
 *
 *   npx tsx bench/cms-verify.ts            # about 45 s
 *   CMS_BENCH_SECONDS=1 npx tsx bench/cms-verify.ts
 *
 * Main case: RSA-2048, SHA-256, signed attributes (contentType, signingTime, messageDigest) over a
 * ~400-byte plist body. Also: ECDSA P-256, no signed attributes, and the raw node:crypto.verify of the
 * same signature as the floor no implementation can go under. Variants run interleaved, 3 rounds, each
 * a timed loop of sequential awaits; the median round is reported.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { loadOrCreateCa } from '../src/pki/ca';
import { cmsVerifyPaths, verifyDetachedSignature, verifyDetachedSignatureWithPkijs } from '../src/pki/cms';
import { issueClientCertificate, verifyClientCertificate } from '../src/pki/issue';

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;
type CryptoKey = crypto.webcrypto.CryptoKey;

const SECONDS = Number(process.env.CMS_BENCH_SECONDS ?? 1.5);
const ROUNDS = 3;
const subtle = crypto.webcrypto.subtle;
const engine = new pkijs.CryptoEngine({ name: 'node', crypto: crypto.webcrypto as never });
const buf = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

const RSA_2048 = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** An idle poll: the device reports Idle, about 400 bytes. */
const BODY = Buffer.from(
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n' +
    '<plist version="1.0">\n<dict>\n\t<key>Status</key>\n\t<string>Idle</string>\n' +
    '\t<key>UDID</key>\n\t<string>00008110-000A1C2E3F4B801E</string>\n' +
    '\t<key>EnrollmentID</key>\n\t<string>6A1F2C3D-4E5F-4061-8273-94A5B6C7D8E9</string>\n' +
    '\t<key>NotOnConsole</key>\n\t<false/>\n</dict>\n</plist>\n',
);

async function sign(content: Buffer, keys: CryptoKeyPair, certDer: Buffer, signedAttrs: boolean): Promise<string> {
  const cert = pkijs.Certificate.fromBER(buf(certDer));
  const signerInfo = new pkijs.SignerInfo({
    version: 1,
    sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
  });
  if (signedAttrs) {
    const digest = crypto.createHash('sha256').update(content).digest();
    signerInfo.signedAttrs = new pkijs.SignedAndUnsignedAttributes({
      type: 0,
      attributes: [
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.3', values: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.1' })] }),
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.5', values: [new asn1js.UTCTime({ valueDate: new Date() })] }),
        new pkijs.Attribute({ type: '1.2.840.113549.1.9.4', values: [new asn1js.OctetString({ valueHex: buf(digest) })] }),
      ],
    });
  }
  const signedData = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: '1.2.840.113549.1.7.1' }),
    signerInfos: [signerInfo],
    certificates: [cert],
  });
  await signedData.sign(keys.privateKey as CryptoKey, 0, 'SHA-256', buf(content), engine);
  const ci = new pkijs.ContentInfo({ contentType: '1.2.840.113549.1.7.2', content: signedData.toSchema(true) });
  return Buffer.from(ci.toSchema().toBER(false)).toString('base64');
}

/** The signature value and the bytes it covers, for the raw crypto.verify floor. */
function rawParts(sigB64: string): { signed: Buffer; value: Buffer } {
  const sd = new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(buf(Buffer.from(sigB64, 'base64'))).content });
  const si = sd.signerInfos[0]!;
  const value = Buffer.from(si.signature.valueBlock.valueHexView);
  if (!si.signedAttrs) return { signed: BODY, value };
  const signed = Buffer.from(si.signedAttrs.encodedValue);
  signed[0] = 0x31;
  return { signed, value };
}

interface Variant {
  name: string;
  run: () => Promise<unknown> | unknown;
}

/** Verifications per second: a warm-up (200 runs or 0.3 s), then sequential awaits for SECONDS. */
async function timed(run: Variant['run']): Promise<number> {
  const warm = performance.now() + 300;
  for (let i = 0; i < 200 && performance.now() < warm; i++) await run();
  const t0 = performance.now();
  const until = t0 + SECONDS * 1000;
  let n = 0;
  let t = t0;
  while (t < until) {
    for (let i = 0; i < 50; i++) await run();
    n += 50;
    t = performance.now();
  }
  return (n * 1000) / (t - t0);
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-cms-bench-'));
  try {
    x509.cryptoProvider.set(crypto.webcrypto as never);
    const ca = await loadOrCreateCa(dir);
    const opts = { caPem: ca.certPem };
    const device = async (alg: typeof RSA_2048 | typeof EC_P256) => {
      const keys = (await subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys, signingAlgorithm: alg });
      const cert = await issueClientCertificate(ca, csr, { commonName: `bench-${crypto.randomUUID()}` });
      return { keys, cert };
    };
    const rsa = await device(RSA_2048);
    const ec = await device(EC_P256);
    const rsaSig = await sign(BODY, rsa.keys, rsa.cert.der, true);
    const rsaSigNoAttrs = await sign(BODY, rsa.keys, rsa.cert.der, false);
    const ecSig = await sign(BODY, ec.keys, ec.cert.der, true);

    // Both implementations must accept all three, and the fast path must be the one deciding.
    for (const sig of [rsaSig, rsaSigNoAttrs, ecSig]) {
      const before = cmsVerifyPaths.fast;
      const [a, b] = [await verifyDetachedSignature(sig, BODY, opts), await verifyDetachedSignatureWithPkijs(sig, BODY, opts)];
      if (!a.ok || !b.ok || a.sha256 !== b.sha256) throw new Error(`setup: the implementations disagree: ${JSON.stringify([a, b])}`);
      if (cmsVerifyPaths.fast !== before + 1) throw new Error('setup: the fast path did not decide');
    }

    const rsaRaw = rawParts(rsaSig);
    const rsaKey = new crypto.X509Certificate(rsa.cert.der).publicKey;
    const sigBytes = Buffer.byteLength(rsaSig, 'base64');

    const variants: Variant[] = [
      { name: 'RSA-2048 SHA-256 signed attrs: pkijs (before)', run: () => verifyDetachedSignatureWithPkijs(rsaSig, BODY, opts) },
      { name: 'RSA-2048 SHA-256 signed attrs: fast (after)', run: () => verifyDetachedSignature(rsaSig, BODY, opts) },
      { name: 'RSA-2048 SHA-256 no signed attrs: pkijs', run: () => verifyDetachedSignatureWithPkijs(rsaSigNoAttrs, BODY, opts) },
      { name: 'RSA-2048 SHA-256 no signed attrs: fast', run: () => verifyDetachedSignature(rsaSigNoAttrs, BODY, opts) },
      { name: 'ECDSA P-256 SHA-256 signed attrs: pkijs', run: () => verifyDetachedSignatureWithPkijs(ecSig, BODY, opts) },
      { name: 'ECDSA P-256 SHA-256 signed attrs: fast', run: () => verifyDetachedSignature(ecSig, BODY, opts) },
      { name: 'floor: crypto.verify RSA-2048 alone', run: () => crypto.verify('sha256', rsaRaw.signed, rsaKey, rsaRaw.value) },
      { name: 'floor: verifyClientCertificate alone (cached)', run: () => verifyClientCertificate(rsa.cert.der, ca.certPem) },
    ];

    // First sight of a device certificate (after a restart, or once evicted from the caches): every
    // verification below is of a certificate neither cache has seen.
    const COLD = 300;
    const cold: string[] = [];
    for (let i = 0; i < COLD; i++) {
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys: rsa.keys, signingAlgorithm: RSA_2048 });
      const cert = await issueClientCertificate(ca, csr, { commonName: `bench-cold-${i}` });
      cold.push(await sign(BODY, rsa.keys, cert.der, true));
    }
    let coldNext = 0;
    const coldStart = performance.now();
    for (const sig of cold) {
      const res = await verifyDetachedSignature(sig, BODY, opts);
      if (!res.ok) throw new Error(`cold: ${res.reason}`);
      coldNext++;
    }
    const coldOps = (coldNext * 1000) / (performance.now() - coldStart);

    const results = new Map<string, number[]>(variants.map((v) => [v.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of variants) results.get(v.name)!.push(await timed(v.run));
    }

    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log(`body ${BODY.length} bytes, RSA signature ${sigBytes} bytes DER; ${ROUNDS} rounds of ${SECONDS}s each, median shown`);
    console.log('');
    const width = Math.max(...variants.map((v) => v.name.length));
    for (const v of variants) {
      const ops = median(results.get(v.name)!);
      console.log(`${v.name.padEnd(width)}  ${Math.round(ops).toLocaleString('en-US').padStart(9)} verifications/s  ${(1e6 / ops).toFixed(1).padStart(7)} µs each`);
    }
    const coldName = `RSA-2048 signed attrs: fast, first sight of ${COLD} certs`;
    console.log(`${coldName.padEnd(width)}  ${Math.round(coldOps).toLocaleString('en-US').padStart(9)} verifications/s  ${(1e6 / coldOps).toFixed(1).padStart(7)} µs each (one pass)`);
    const before = median(results.get(variants[0]!.name)!);
    const after = median(results.get(variants[1]!.name)!);
    console.log('');
    console.log(`main case: ${(after / before).toFixed(1)}x faster, ${(1e6 / before - 1e6 / after).toFixed(0)} µs saved per request`);
    console.log(`verifyDetachedSignature decided on the fast path ${cmsVerifyPaths.fast} times, fell back to pkijs ${cmsVerifyPaths.pkijs} times`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
