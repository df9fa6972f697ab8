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
 *   request's capabilities; the simulator's check (test/helpers/scep-client.ts) opens that too.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { children, readWhole } from '../../src/pki/der';
import { freePort } from '../../src/storage/embedded';
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

/**
 * A pkiMessage with its signed attributes in DER order, signed again with the same key: the attributes are
 * sorted in place (same length) and the signature (same length) overwritten, by a few lines of DER walking
 * (Mooring's own reader, src/pki/der.ts) rather than a CMS library, which takes ten times the RSA
 * signature's time to parse and re-encode.
 */
export function inDerOrder(der: Buffer, key: crypto.KeyObject): Buffer {
  const out = Buffer.from(der);
  const signed = children(out, readWhole(out, 0x30))[1]; // ContentInfo { contentType, [0] SignedData }
  const signerInfos = signed && children(out, children(out, signed)[0]!).at(-1);
  const signerInfo = signerInfos && children(out, signerInfos)[0];
  const fields = signerInfo ? children(out, signerInfo) : [];
  const k = fields.findIndex((f) => f.tag === 0xa0); // [0] IMPLICIT signedAttrs
  const attrs = fields[k];
  const signature = fields[k + 2]; // after signatureAlgorithm
  if (!attrs || signature?.tag !== 0x04) throw new Error('the pkiMessage has no signed attributes and signature where expected');
  const sorted = children(out, attrs)
    .map((a) => Buffer.from(out.subarray(a.start, a.end)))
    .sort(Buffer.compare);
  Buffer.concat(sorted).copy(out, attrs.body);
  const toSign = Buffer.from(out.subarray(attrs.start, attrs.end));
  toSign[0] = 0x31; // signed as a SET (RFC 5652 §5.4)
  const value = crypto.sign('sha256', toSign, key);
  if (value.length !== signature.end - signature.body) throw new Error('the new signature does not fit the old one');
  value.copy(out, signature.body);
  return out;
}
