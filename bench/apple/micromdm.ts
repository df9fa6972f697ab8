/**
 * micromdm's scepserver (micromdm/scep, Debian package `scep`) as the SCEP yardstick, measured on the
 * same host in the same run as Mooring: the host's speed swings by 2x between days, a constant does not.
 *
 * The bench process side: `startScepServer` makes a 2048-bit CA in a temp depot and serves SCEP over plain
 * HTTP (scepserver has no TLS) on a free port with a fixed challenge; it is stopped and its depot removed
 * on every exit path. Its CPU is its own process's (/proc/<pid>/stat, all threads): the requests, the
 * signing and its file depot (index.txt plus one PEM per certificate), which is its database.
 *
 * The load client side: what the simulator's PKCSReq messages and CertRep check need to work with it.
 * - Go's pkcs7 verifies a signature over the signed attributes as it re-encodes them (DER: the SET sorted),
 *   not as received. The simulator adds them in protocol order, which Mooring verifies as received; real
 *   devices send DER, or micromdm could not serve them. So micromdm gets them sorted and re-signed.
 * - Each request gets its own CN (client.ts, scepSubject): its depot keys certificates by subject.
 * - micromdm (fullsailor/pkcs7's default) encrypts the CertRep's envelope with single DES-CBC whatever the
 *   request's capabilities, which the simulator's check does not open and Node's OpenSSL 3 no longer
 *   offers. `checkCertRep` makes the device's checks itself, with forge's DES.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as asn1js from 'asn1js';
import forge from 'node-forge';
import * as pkijs from 'pkijs';
import { OID as SCEP_OID } from '../../protocols/apple/scep';
import { freePort } from '../../src/storage/embedded';
import { SCEP_FAIL_INFO_NAMES } from '../../test/helpers/scep-client';
import { procStat } from './cpu';

export const SCEPSERVER_INSTALL = '`apt-get install scep` (Debian package `scep`: /usr/bin/scepserver and /usr/bin/scepclient)';

// ---- the server (bench process) ----

export interface ScepServer {
  readonly pid: number;
  readonly port: number;
  readonly version: string;
  readonly caPem: string;
  /** The one challenge it accepts (`-challenge`). */
  readonly challenge: string;
  /** Its process's CPU (utime + stime), seconds. */
  cpuSeconds(): number;
  /** Its depot's index: valid certificates, and serial numbers found on more than one of them. */
  depot(): { certificates: number; repeatedSerials: number };
  /** The errors it logged for CSRs it did not sign, since the last call. */
  signFailures(): string[];
  close(): Promise<void>;
}

/**
 * scepserver 2.1.0 signs without a lock: concurrent requests read its depot's serial file while another
 * deletes and rewrites it ("could not convert  to serial number"), or create it at the same time ("open
 * <depot>/serial: file exists"), and get a CertRep FAILURE (badRequest) for it; a request that finds no
 * file restarts the serial numbers at 2. Later micromdm/scep releases lock the signer. This tells those
 * refusals from any other.
 */
export function isSerialRace(signError: string): boolean {
  return /could not convert .* to serial number|\/serial: /.test(signError);
}

/** The scepserver binary on PATH, if installed. */
export function scepServerBinary(): string | undefined {
  try {
    return execFileSync('/bin/sh', ['-c', 'command -v scepserver'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export async function startScepServer(binary: string): Promise<ScepServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-bench-scepserver-'));
  const depot = path.join(dir, 'depot');
  const logFile = path.join(dir, 'scepserver.log');
  let child: ChildProcess | undefined;
  const stop = stopOnExit(() => child, dir);
  try {
    execFileSync(binary, ['ca', '-init', '-depot', depot, '-keySize', '2048'], { stdio: 'ignore', timeout: 60_000 });
    const caPem = fs.readFileSync(path.join(depot, 'ca.pem'), 'utf8');
    const version = execFileSync(binary, ['-version'], { encoding: 'utf8' }).trim();
    const port = await freePort();
    const challenge = crypto.randomBytes(16).toString('hex');
    // -allowrenew 0: a subject already in the depot is reissued, not refused (each request has its own CN anyway).
    // It listens on every interface (no flag to bind loopback only); the challenge is random.
    const log = fs.openSync(logFile, 'w');
    try {
      child = spawn(binary, ['-depot', depot, '-port', String(port), '-challenge', challenge, '-allowrenew', '0'], { stdio: ['ignore', log, log] });
    } finally {
      fs.closeSync(log);
    }
    const running = child;
    await untilServing(running, port, caPem, logFile);
    return {
      pid: running.pid!,
      port,
      version,
      caPem,
      challenge,
      cpuSeconds: () => {
        const s = procStat(running.pid!);
        if (!s) throw new Error(`scepserver (pid ${running.pid}) is gone: ${tail(logFile)}`);
        return s.self;
      },
      depot: () => depotIndex(path.join(depot, 'index.txt')),
      signFailures: logReader(logFile, /msg="failed to sign CSR" err="((?:[^"\\]|\\.)*)"/g),
      close: stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Kills the server and removes its directory when `stop` is called, when this process exits, or on SIGINT
 * and SIGTERM (then the signal is raised again, as if nobody had listened).
 */
function stopOnExit(child: () => ChildProcess | undefined, dir: string): () => Promise<void> {
  const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
  const now = () => {
    const c = child();
    if (c && alive(c)) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    detach();
    now();
    process.kill(process.pid, signal);
  };
  const detach = () => {
    process.removeListener('exit', now);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };
  process.on('exit', now);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return async () => {
    detach();
    const c = child();
    if (c && alive(c)) {
      const exited = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
}

/** index.txt: `V|R <tab> expiry <tab> revoked <tab> serial <tab> file <tab> subject`, one line each. */
function depotIndex(file: string): { certificates: number; repeatedSerials: number } {
  const valid = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('V\t'));
  const serials = new Set(valid.map((l) => l.split('\t')[3]));
  return { certificates: valid.length, repeatedSerials: valid.length - serials.size };
}

/** Reads on in a growing log: each call answers the first group of `pattern` in the lines added since the last. */
function logReader(file: string, pattern: RegExp): () => string[] {
  let offset = 0;
  return () => {
    const fd = fs.openSync(file, 'r');
    const text = Buffer.alloc(Math.max(0, fs.fstatSync(fd).size - offset));
    try {
      fs.readSync(fd, text, 0, text.length, offset);
    } finally {
      fs.closeSync(fd);
    }
    const complete = text.lastIndexOf(0x0a) + 1; // a line still being written waits for the next call
    offset += complete;
    return [...text.subarray(0, complete).toString('utf8').matchAll(pattern)].map((m) => m[1]!);
  };
}

/** Waits until GetCACert answers with our CA (not merely something on that port). */
async function untilServing(child: ChildProcess, port: number, caPem: string, logFile: string): Promise<void> {
  const caDer = Buffer.from(new crypto.X509Certificate(caPem).raw);
  const t0 = performance.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`scepserver exited (${child.exitCode ?? child.signalCode}): ${tail(logFile)}`);
    const r = await httpGet(`http://127.0.0.1:${port}/scep?operation=GetCACert`).catch(() => undefined);
    if (r?.status === 200) {
      if (r.body.equals(caDer)) return;
      throw new Error(`port ${port} answered GetCACert with another certificate`);
    }
    if (performance.now() - t0 > 10_000) throw new Error(`scepserver did not serve on port ${port} within 10 s: ${tail(logFile)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function httpGet(url: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

// ---- the device side (load client process) ----

const engine = new pkijs.CryptoEngine({ name: 'bench-micromdm', crypto: crypto.webcrypto as never });

// Mooring's SCEP OIDs, plus the single-DES cipher only micromdm still uses.
const OID = { ...SCEP_OID, desCBC: '1.3.14.3.2.7' } as const;

/** The envelope ciphers a CertRep may use: name, and Node's cipher when OpenSSL 3 still has it. */
const CIPHERS: Record<string, { name: string; native?: string; keyLen: number }> = {
  [OID.desCBC]: { name: 'DES-CBC', keyLen: 8 },
  '1.2.840.113549.3.7': { name: 'DES-EDE3-CBC', native: 'des-ede3-cbc', keyLen: 24 },
  '2.16.840.1.101.3.4.1.2': { name: 'AES-128-CBC', native: 'aes-128-cbc', keyLen: 16 },
  '2.16.840.1.101.3.4.1.42': { name: 'AES-256-CBC', native: 'aes-256-cbc', keyLen: 32 },
};

/**
 * A pkiMessage with its signed attributes in DER order, signed again with the same key: the attributes are
 * sorted in place (same length) and the signature (same length) overwritten, by a few lines of DER walking
 * rather than a CMS library, which takes ten times the RSA signature's time to parse and re-encode.
 */
export function inDerOrder(der: Buffer, key: crypto.KeyObject): Buffer {
  const out = Buffer.from(der);
  const signed = children(out, tlv(out, 0))[1]; // ContentInfo { contentType, [0] SignedData }
  const signerInfos = signed && children(out, tlv(out, signed.valueStart)).at(-1);
  const signerInfo = signerInfos && children(out, signerInfos)[0];
  const fields = signerInfo ? children(out, signerInfo) : [];
  const k = fields.findIndex((f) => f.tag === 0xa0); // [0] IMPLICIT signedAttrs
  const attrs = fields[k];
  const signature = fields[k + 2]; // after signatureAlgorithm
  if (!attrs || signature?.tag !== 0x04) throw new Error('the pkiMessage has no signed attributes and signature where expected');
  const sorted = children(out, attrs)
    .map((a) => Buffer.from(out.subarray(a.start, a.end)))
    .sort(Buffer.compare);
  Buffer.concat(sorted).copy(out, attrs.valueStart);
  const toSign = Buffer.from(out.subarray(attrs.start, attrs.end));
  toSign[0] = 0x31; // signed as a SET (RFC 5652 §5.4)
  const value = crypto.sign('sha256', toSign, key);
  if (value.length !== signature.end - signature.valueStart) throw new Error('the new signature does not fit the old one');
  value.copy(out, signature.valueStart);
  return out;
}

interface Tlv {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/** The DER element at `start` (one-byte tags, definite lengths: all a pkiMessage uses). */
function tlv(buf: Buffer, start: number): Tlv {
  const tag = buf[start]!;
  let len = buf[start + 1]!;
  let valueStart = start + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = buf.readUIntBE(valueStart, n);
    valueStart += n;
  }
  if (valueStart + len > buf.length) throw new Error('DER element past the end of the message');
  return { tag, start, valueStart, end: valueStart + len };
}

function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.valueStart; at < parent.end; at = out.at(-1)!.end) out.push(tlv(buf, at));
  return out;
}

export interface CertRepCheck {
  status: 'SUCCESS' | 'FAILURE';
  failInfo?: string;
  certDer?: Buffer;
  /** The envelope's cipher (SUCCESS only). */
  encryption?: string;
}

/**
 * What the simulator's `checkCertRep` checks, for any envelope cipher: signed by the CA certificate, a
 * CertRep (3) for our transactionID with our senderNonce as its recipientNonce, and on SUCCESS an envelope
 * that opens with our key and holds a certificate for our key issued by that CA. Throws otherwise.
 */
export async function checkCertRep(
  der: Buffer,
  device: { privateKeyPem: string; spki: Buffer },
  expected: { caPem: string; transactionId: string; senderNonce: Buffer },
): Promise<CertRepCheck> {
  const sd = await verifiedBy(der, expected.caPem);
  const attrs = signedAttributes(sd);
  const str = (oid: string) => (attrs.get(oid) instanceof asn1js.PrintableString ? (attrs.get(oid) as asn1js.PrintableString).valueBlock.value : undefined);
  const oct = (oid: string) => (attrs.get(oid) instanceof asn1js.OctetString ? Buffer.from((attrs.get(oid) as asn1js.OctetString).valueBlock.valueHexView) : undefined);
  const contentType = attrs.get(OID.contentType);
  if (!(contentType instanceof asn1js.ObjectIdentifier) || contentType.valueBlock.toString() !== OID.data) throw new Error('the contentType attribute is not id-data');
  if (str(OID.messageType) !== '3') throw new Error(`messageType ${str(OID.messageType) ?? '(none)'} is not CertRep (3)`);
  if (str(OID.transactionID) !== expected.transactionId) throw new Error('the CertRep is for another transactionID');
  if (!oct(OID.recipientNonce)?.equals(expected.senderNonce)) throw new Error('the recipientNonce is not our senderNonce');
  if (!oct(OID.senderNonce)?.length) throw new Error('the CertRep has no senderNonce');
  const status = str(OID.pkiStatus);
  if (status === '2') {
    const failInfo = str(OID.failInfo);
    return { status: 'FAILURE', ...(failInfo ? { failInfo: SCEP_FAIL_INFO_NAMES[Number(failInfo)] ?? failInfo } : {}) };
  }
  if (status !== '0') throw new Error(`pkiStatus ${status ?? '(none)'} (only SUCCESS and FAILURE are expected)`);

  const eContent = sd.encapContentInfo.eContent;
  if (!eContent) throw new Error('SUCCESS without an envelope');
  const opened = openEnvelope(Buffer.from(eContent.getValue()), device.privateKeyPem);
  const ca = new crypto.X509Certificate(expected.caPem);
  for (const certDer of certsOnly(opened.content)) {
    const cert = new crypto.X509Certificate(certDer);
    if (!cert.publicKey.export({ type: 'spki', format: 'der' }).equals(device.spki)) continue;
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new Error('the issued certificate is not signed by the CA');
    return { status: 'SUCCESS', certDer, encryption: opened.cipher };
  }
  throw new Error('SUCCESS without a certificate for our key');
}

/** The CertRep's SignedData, once its one signer is verified to be the CA certificate. */
async function verifiedBy(der: Buffer, caPem: string): Promise<pkijs.SignedData> {
  const ci = pkijs.ContentInfo.fromBER(new Uint8Array(der));
  if (ci.contentType !== OID.signedData) throw new Error(`the CertRep is not a SignedData (${ci.contentType})`);
  const sd = new pkijs.SignedData({ schema: ci.content });
  if (sd.signerInfos.length !== 1 || !sd.signerInfos[0]!.signedAttrs) throw new Error('the CertRep needs exactly one signer with signed attributes');
  const v = await sd.verify({ signer: 0, checkChain: false, extendedMode: true }, engine).catch((err: unknown) => {
    throw new Error(`the CertRep signature does not verify: ${(err as { message?: string }).message ?? String(err)}`);
  });
  if (!v.signatureVerified || !v.signerCertificate) throw new Error('the CertRep signature does not verify');
  const caDer = Buffer.from(new crypto.X509Certificate(caPem).raw);
  if (!Buffer.from(v.signerCertificate.toSchema().toBER(false)).equals(caDer)) throw new Error('the CertRep is not signed by the CA certificate');
  return sd;
}

function signedAttributes(sd: pkijs.SignedData): Map<string, asn1js.AsnType> {
  const out = new Map<string, asn1js.AsnType>();
  for (const a of sd.signerInfos[0]!.signedAttrs!.attributes) {
    if (out.has(a.type)) throw new Error(`signed attribute ${a.type} appears twice`);
    out.set(a.type, a.values[0] as asn1js.AsnType);
  }
  return out;
}

/** Opens an EnvelopedData addressed to us: forge parses, native RSA (raw, unpadded here) and ciphers, forge's DES. */
function openEnvelope(der: Buffer, privateKeyPem: string): { content: Buffer; cipher: string } {
  const env = forge.pkcs7.messageFromAsn1(forge.asn1.fromDer(der.toString('binary'))) as unknown as {
    encryptedContent?: { algorithm?: string; parameter?: ForgeBytes; content?: ForgeBytes };
    recipients: Array<{ encryptedContent?: { algorithm?: string; content?: ForgeBytes } }>;
  };
  if (env.recipients.length !== 1) throw new Error(`the envelope has ${env.recipients.length} recipients, expected 1`);
  const wrapped = env.recipients[0]!.encryptedContent;
  if (wrapped?.algorithm !== OID.rsaEncryption) throw new Error('the envelope key transport is not RSA');
  const algorithm = env.encryptedContent?.algorithm ?? '';
  const cipher = CIPHERS[algorithm];
  if (!cipher) throw new Error(`unsupported envelope encryption ${algorithm || '?'}`);
  // Node 20 refuses PKCS#1 v1.5 private decryption: a raw RSA operation, unpadded here (RFC 8017 §7.2.2).
  const em = crypto.privateDecrypt({ key: privateKeyPem, padding: crypto.constants.RSA_NO_PADDING }, bytes(wrapped.content));
  const sep = em.indexOf(0, 2);
  const key = em[0] === 0 && em[1] === 2 && sep >= 10 ? em.subarray(sep + 1) : undefined;
  if (!key || key.length !== cipher.keyLen) throw new Error('the envelope key does not decrypt with our key');
  const iv = bytes(env.encryptedContent?.parameter);
  const encrypted = bytes(env.encryptedContent?.content);
  if (cipher.native) {
    const d = crypto.createDecipheriv(cipher.native, key, iv);
    return { content: Buffer.concat([d.update(encrypted), d.final()]), cipher: cipher.name };
  }
  const d = forge.cipher.createDecipher('DES-CBC', forge.util.createBuffer(key.toString('binary')));
  d.start({ iv: forge.util.createBuffer(iv.toString('binary')) });
  d.update(forge.util.createBuffer(encrypted.toString('binary')));
  if (!d.finish()) throw new Error('the envelope content does not decrypt');
  return { content: Buffer.from(d.output.getBytes(), 'binary'), cipher: cipher.name };
}

/** The certificates of a certs-only (degenerate) SignedData, DER. */
function certsOnly(der: Buffer): Buffer[] {
  const ci = pkijs.ContentInfo.fromBER(new Uint8Array(der));
  if (ci.contentType !== OID.signedData) throw new Error(`the envelope does not hold a SignedData (${ci.contentType})`);
  const sd = new pkijs.SignedData({ schema: ci.content });
  if (sd.signerInfos.length !== 0) throw new Error('the certs-only SignedData has signers');
  return (sd.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate).map((c) => Buffer.from(c.toSchema().toBER(false)));
}

/** forge keeps binary data either as a ByteStringBuffer or as a "binary" string. */
type ForgeBytes = forge.util.ByteStringBuffer | string;
function bytes(b: ForgeBytes | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return Buffer.from(typeof b === 'string' ? b : b.bytes(), 'binary');
}
