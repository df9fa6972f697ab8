/**
 * Interoperability with independent implementations (issue #3), over real HTTPS on loopback:
 *  - micromdm's `scepclient` (Debian package `scep`, a Go client on go.mozilla.org/pkcs7) gets an
 *    identity certificate from our `/scep` with the challenge of a served enrollment profile, and is
 *    refused with a used or a wrong challenge;
 *  - `openssl cms -verify` accepts the enrollment profile's signature against our CA and nothing else.
 *
 * `.ci/run` installs `scep`. When `scepclient` is missing, its tests FAIL if process.env.CI is set and
 * are skipped with a warning otherwise. `openssl` is required everywhere.
 *
 * scepclient keeps csr.pem and self.pem next to its private key and re-sends an existing csr.pem (with
 * the challenge inside it); when the certificate file already exists it sends a RenewalReq signed by
 * it. So every fresh request gets its own directory here.
 */
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { decodePlistDict, type PlistDict } from '../../protocols/apple/plist';
import { verifyAttached } from '../../src/pki/cms';
import { createApnsTestPki } from '../helpers/apns-mock';
import { readEnrollmentProfile } from '../helpers/apple-device';
import { startAppleServer, type AppleTestServer } from '../helpers/apple-server';
import type { TestServer } from '../helpers/server';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const SCEPCLIENT = which('scepclient');
const OPENSSL = which('openssl');
const inCi = Boolean(process.env.CI) && !/^(false|0)$/i.test(process.env.CI ?? '');
if (!SCEPCLIENT) {
  console.warn(
    inCi
      ? 'scepclient (Debian package `scep`) is not installed: the SCEP interop tests FAIL (CI is set; .ci/run should have installed it)'
      : 'scepclient (Debian package `scep`) is not installed: the SCEP interop tests are SKIPPED (apt-get install scep to run them)',
  );
}
/** SCEP tests run when scepclient is here, and in CI (where they then fail on its absence). */
const scepIt = SCEPCLIENT || inCi ? it : it.skip;

function scepclientBinary(): string {
  if (!SCEPCLIENT) throw new Error('scepclient is not installed (Debian package `scep`): in CI .ci/run installs it with apt-get; see its output');
  return SCEPCLIENT;
}

function opensslBinary(): string {
  if (!OPENSSL) throw new Error('the openssl command-line tool is not installed (Debian package `openssl`)');
  return OPENSSL;
}

let s: TestServer;
let apple: AppleTestServer;
let base: string;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apple-interop-'));
const caFile = path.join(tmp, 'ca.pem');

beforeAll(async () => {
  apple = await startAppleServer();
  ({ s, base } = apple);
  fs.writeFileSync(caFile, s.m.ca.certPem);
});

afterAll(async () => {
  await apple?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the event loop (the server under test lives in this process). */
function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(new Error(`${cmd} did not run to completion (${err.message}): ${stdout}${stderr}`));
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

function httpsGet(url: string): Promise<{ status: number; contentType?: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca: s.m.ca.certPem }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** A new apple enrollment token and the signed profile served for it over HTTPS. */
async function servedProfile(): Promise<{ tokenId: string; der: Buffer; challenge: string; scepUrl: string }> {
  const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
  const res = await httpsGet(t.body.enroll_url as string);
  expect(res.status).toBe(200);
  expect(res.contentType).toMatch(/^application\/x-apple-aspen-config/);
  const checked = await verifyAttached(res.body, s.m.ca.certPem);
  if (!checked.ok) throw new Error(`the served profile does not verify: ${checked.reason}`);
  const profile = readEnrollmentProfile(checked.content, checked.signerDer);
  if (!profile.challenge) throw new Error('the SCEP payload has no Challenge');
  return { tokenId: t.body.id as string, der: res.body, challenge: profile.challenge, scepUrl: profile.scepUrl };
}

/** scepclient in a fresh directory (it creates key.pem, csr.pem and self.pem there). */
async function scepclient(scepUrl: string, challenge: string, extra: string[] = []): Promise<Run & { dir: string; certFile: string; keyFile: string }> {
  const dir = fs.mkdtempSync(path.join(tmp, 'scepclient-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  const r = await run(
    scepclientBinary(),
    ['-server-url', scepUrl, '-challenge', challenge, '-private-key', keyFile, '-certificate', certFile, '-cn', 'mooring-interop', '-debug', ...extra],
    // Go reads its trust store from SSL_CERT_FILE: our CA, which issued the HTTPS certificate.
    { SSL_CERT_FILE: caFile },
  );
  return { ...r, dir, certFile, keyFile };
}

function explain(r: Run): string {
  return `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

async function issuedRows(): Promise<number> {
  const [{ count }] = await s.m.db('issued_certificates').count<{ count: string }[]>({ count: '*' });
  return Number(count);
}

describe('scepclient (micromdm/scep)', () => {
  scepIt('gets a clientAuth certificate for its own key that chains to our CA and is recorded', async () => {
    const { tokenId, challenge, scepUrl } = await servedProfile();
    expect(scepUrl).toBe(`${base}/scep`);
    const caFingerprint = crypto.createHash('sha256').update(new crypto.X509Certificate(s.m.ca.certPem).raw).digest('hex');
    // -ca-fingerprint: scepclient only encrypts to a GetCACert certificate with this SHA-256.
    const r = await scepclient(scepUrl, challenge, ['-ca-fingerprint', caFingerprint]);
    expect({ code: r.code, log: explain(r) }).toEqual({ code: 0, log: expect.stringContaining('pkiStatus=SUCCESS') });
    expect(fs.existsSync(r.certFile)).toBe(true);

    const verified = await run(opensslBinary(), ['verify', '-CAfile', caFile, '-purpose', 'sslclient', r.certFile]);
    expect({ code: verified.code, out: verified.stdout.trim() }).toEqual({ code: 0, out: `${r.certFile}: OK` });

    const cert = new crypto.X509Certificate(fs.readFileSync(r.certFile));
    expect(cert.checkIssued(new crypto.X509Certificate(s.m.ca.certPem))).toBe(true);
    expect(cert.keyUsage).toEqual([CLIENT_AUTH]);
    expect(cert.ca).toBe(false);
    // For the key scepclient made, not one of ours.
    const own = crypto.createPublicKey(fs.readFileSync(r.keyFile, 'utf8')).export({ type: 'spki', format: 'der' });
    expect(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(own)).toBe(true);

    const sha256 = crypto.createHash('sha256').update(cert.raw).digest('hex');
    const row = await s.m.db('issued_certificates').where({ sha256 }).first();
    expect(row).toMatchObject({ purpose: 'device_identity', enrollment_token_id: tokenId });
    expect(row.revoked_at).toBeNull();
    expect(new crypto.X509Certificate(row.pem).raw.equals(cert.raw)).toBe(true);
  });

  scepIt('renews: run again beside its certificate, it sends a RenewalReq signed by it and gets a new one', async () => {
    const { tokenId, challenge, scepUrl } = await servedProfile();
    const first = await scepclient(scepUrl, challenge);
    expect(first.code).toBe(0);
    const old = new crypto.X509Certificate(fs.readFileSync(first.certFile));
    // No -challenge: only a RenewalReq signed by the identity we issued can succeed.
    const renewed = await run(
      scepclientBinary(),
      ['-server-url', scepUrl, '-private-key', first.keyFile, '-certificate', first.certFile, '-debug'],
      { SSL_CERT_FILE: caFile },
    );
    expect({ code: renewed.code, log: explain(renewed) }).toEqual({ code: 0, log: expect.stringMatching(/signer_cn="Apple device [\s\S]*pkiStatus=SUCCESS/) });
    const fresh = new crypto.X509Certificate(fs.readFileSync(first.certFile));
    expect(fresh.serialNumber).not.toBe(old.serialNumber);
    expect(fresh.checkIssued(new crypto.X509Certificate(s.m.ca.certPem))).toBe(true);
    const sha256 = crypto.createHash('sha256').update(fresh.raw).digest('hex');
    // issueRenewal: the new identity inherits the enrollment token of the one that signed the request.
    expect(await s.m.db('issued_certificates').where({ sha256 }).first()).toMatchObject({ purpose: 'device_identity', enrollment_token_id: tokenId });
  });

  scepIt('is refused (CertRep FAILURE badRequest, exit non-zero, no certificate) with a used challenge', async () => {
    const { challenge, scepUrl } = await servedProfile();
    expect((await scepclient(scepUrl, challenge)).code).toBe(0);
    const before = await issuedRows();
    const again = await scepclient(scepUrl, challenge);
    expect(again.code).not.toBe(0);
    expect(again.stdout).toContain('PKCSReq (19) request failed, failInfo: badRequest');
    expect(fs.existsSync(again.certFile)).toBe(false);
    expect(await issuedRows()).toBe(before);
  });

  scepIt('is refused with a wrong challenge and without one', async () => {
    const { challenge, scepUrl } = await servedProfile();
    const before = await issuedRows();
    const wrong = await scepclient(scepUrl, `${challenge.slice(0, -1)}${challenge.endsWith('A') ? 'B' : 'A'}`);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout).toContain('request failed, failInfo: badRequest');
    expect(fs.existsSync(wrong.certFile)).toBe(false);
    const none = await scepclient(scepUrl, '');
    expect(none.code).not.toBe(0);
    expect(none.stdout).toContain('request failed, failInfo: badRequest');
    expect(await issuedRows()).toBe(before);
    // The right challenge is still unused.
    expect((await scepclient(scepUrl, challenge)).code).toBe(0);
  });
});

describe('openssl cms -verify', () => {
  function dig(plist: PlistDict): { types: string[]; scep?: PlistDict; mdm?: PlistDict } {
    const payloads = (plist.PayloadContent as PlistDict[]) ?? [];
    return {
      types: payloads.map((p) => String(p.PayloadType)),
      scep: payloads.find((p) => p.PayloadType === 'com.apple.security.scep'),
      mdm: payloads.find((p) => p.PayloadType === 'com.apple.mdm'),
    };
  }

  async function cmsVerify(der: Buffer, ca = caFile): Promise<Run & { content?: Buffer }> {
    const dir = fs.mkdtempSync(path.join(tmp, 'cms-'));
    fs.writeFileSync(path.join(dir, 'profile.der'), der);
    const out = path.join(dir, 'content.plist');
    const r = await run(opensslBinary(), ['cms', '-verify', '-inform', 'DER', '-in', path.join(dir, 'profile.der'), '-CAfile', ca, '-out', out]);
    return { ...r, ...(r.code === 0 ? { content: fs.readFileSync(out) } : {}) };
  }

  it('accepts the served profile against our CA; the content is the plist with the SCEP and MDM payloads', async () => {
    const { der, challenge } = await servedProfile();
    const r = await cmsVerify(der);
    expect({ code: r.code, err: r.stderr.trim() }).toEqual({ code: 0, err: 'CMS Verification successful' });
    const checked = await verifyAttached(der, s.m.ca.certPem);
    expect(checked.ok && r.content!.equals(checked.content)).toBe(true);

    const plist = decodePlistDict(r.content!);
    expect(plist.PayloadType).toBe('Configuration');
    const { types, scep, mdm } = dig(plist);
    expect(types).toEqual(expect.arrayContaining(['com.apple.security.scep', 'com.apple.mdm']));
    expect(scep!.PayloadContent).toMatchObject({ URL: `${base}/scep`, Challenge: challenge });
    expect(mdm).toMatchObject({ ServerURL: `${base}/mdm/connect`, CheckInURL: `${base}/mdm/checkin`, IdentityCertificateUUID: scep!.PayloadUUID });
  });

  it('refuses a byte-flipped profile (content or signature) and a profile checked against another CA', async () => {
    const { der } = await servedProfile();
    // One byte of the signed plist: the messageDigest no longer matches.
    const at = der.indexOf(Buffer.from('com.apple.mdm'));
    expect(at).toBeGreaterThan(0);
    const content = Buffer.from(der);
    content[at + 4]! ^= 0x01;
    const flippedContent = await cmsVerify(content);
    expect(flippedContent.code).not.toBe(0);
    expect(flippedContent.stderr).toMatch(/CMS Verification failure[\s\S]*content verify error/);

    // The last byte is the end of the signature value.
    const signature = Buffer.from(der);
    signature[signature.length - 1]! ^= 0x01;
    const flippedSignature = await cmsVerify(signature);
    expect(flippedSignature.code).not.toBe(0);
    expect(flippedSignature.stderr).toMatch(/CMS Verification failure[\s\S]*CMS_SignerInfo_verify:verification failure/);

    const otherCa = path.join(tmp, 'other-ca.pem');
    fs.writeFileSync(otherCa, (await createApnsTestPki()).caPem);
    const untrusted = await cmsVerify(der, otherCa);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/CMS Verification failure[\s\S]*certificate verify error/);
  });
});
