/**
 * The Apple device simulator on its own (the server routes come separately): its Mdm-Signature against
 * the server's verifier, its profile check against `signAttached`, its CertRep reader against
 * `buildCertRep`, its command answers, and a whole enrollment and sessions against a small loopback
 * server assembled from the server's own codecs (SCEP, check-in and report decoding, CMS).
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { decodeCheckin, type CheckinMessage } from '../../protocols/apple/checkin';
import { decodePlistDict, encodePlist, type PlistDict } from '../../protocols/apple/plist';
import { decodeReport, type CommandReport } from '../../protocols/apple/report';
import { buildCertRep, caCapsText, certRepEncryption, parsePkiMessage, ScepError, type ScepCaKey } from '../../protocols/apple/scep';
import { ensureTlsCertificate, loadOrCreateCa, type CertificateAuthority } from '../../src/pki/ca';
import { signAttached, verifyDetachedSignature } from '../../src/pki/cms';
import { issueClientCertificate, readCsr } from '../../src/pki/issue';
import { CONTENT_TYPES, SimulatedAppleDevice, mdmSignature, readCommand, verifyProfileSignature, type Identity } from '../helpers/apple-device';
import { ScepClient, ScepReplyError } from '../helpers/scep-client';

x509.cryptoProvider.set(crypto.webcrypto as never);

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const TOPIC = `com.apple.mgmt.External.${crypto.randomUUID()}`;
const CHALLENGE = 'challenge-1';
const BODY = Buffer.from(encodePlist({ MessageType: 'Authenticate', UDID: '00008120-0011223344556677', Topic: TOPIC }));

let dir: string;
let ca: CertificateAuthority;
let caKey: ScepCaKey;
let otherDir: string;
let otherCa: CertificateAuthority;

async function identityFrom(authority: CertificateAuthority, alg: typeof RSA | typeof EC): Promise<Identity & { sha256: string }> {
  const keys = (await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys, signingAlgorithm: alg });
  const cert = await issueClientCertificate(authority, csr, { commonName: `device-${crypto.randomUUID()}` });
  const pkcs8 = await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.pem, keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), sha256: cert.sha256 };
}

/** The SignedData inside an Mdm-Signature, for looking at its fields. */
function signedDataOf(b64: string): pkijs.SignedData {
  const ci = pkijs.ContentInfo.fromBER(new Uint8Array(Buffer.from(b64, 'base64')));
  return new pkijs.SignedData({ schema: ci.content });
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apple-device-'));
  otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apple-device-other-'));
  [ca, otherCa] = await Promise.all([loadOrCreateCa(dir), loadOrCreateCa(otherDir)]);
  caKey = { certPem: ca.certPem, privateKeyPem: fs.readFileSync(path.join(dir, 'ca.key'), 'utf8') };
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(otherDir, { recursive: true, force: true });
});

describe('Mdm-Signature', () => {
  let rsa: Identity & { sha256: string };
  let ec: Identity & { sha256: string };
  let foreign: Identity & { sha256: string };
  beforeAll(async () => {
    [rsa, ec, foreign] = await Promise.all([identityFrom(ca, RSA), identityFrom(ca, EC), identityFrom(otherCa, RSA)]);
  });

  it.each([
    ['RSA', 'sha256', '2.16.840.1.101.3.4.2.1'],
    ['RSA', 'sha1', '1.3.14.3.2.26'],
    ['EC P-256', 'sha256', '2.16.840.1.101.3.4.2.1'],
    ['EC P-256', 'sha1', '1.3.14.3.2.26'],
  ] as const)('a %s identity signing with %s is accepted by the server verifier; a tampered body is not', async (kind, digest, digestOid) => {
    const id = kind === 'RSA' ? rsa : ec;
    const sig = mdmSignature(BODY, id, digest);
    await expect(verifyDetachedSignature(sig, BODY, { caPem: ca.certPem })).resolves.toEqual({ ok: true, signerDer: expect.any(Buffer), sha256: id.sha256 });

    const sd = signedDataOf(sig);
    expect(sd.encapContentInfo.eContent).toBeUndefined(); // detached
    expect(sd.signerInfos).toHaveLength(1);
    expect(sd.signerInfos[0]!.digestAlgorithm.algorithmId).toBe(digestOid);
    expect(sd.signerInfos[0]!.signedAttrs!.attributes.map((a) => a.type).sort()).toEqual(['1.2.840.113549.1.9.3', '1.2.840.113549.1.9.4', '1.2.840.113549.1.9.5']);
    expect(sd.certificates).toHaveLength(1);

    const tampered = Buffer.from(BODY.toString().replace('Authenticate', 'Authenticatf'));
    const res = await verifyDetachedSignature(sig, tampered, { caPem: ca.certPem });
    expect(res).toMatchObject({ ok: false, reason: expect.stringMatching(/digest/) });
  });

  it('is refused by the server for an identity from another CA', async () => {
    const res = await verifyDetachedSignature(mdmSignature(BODY, foreign), BODY, { caPem: ca.certPem });
    expect(res).toMatchObject({ ok: false, reason: expect.stringMatching(/not issued by this server/) });
  });

  it('carries the current signingTime', () => {
    const attrs = signedDataOf(mdmSignature(BODY, rsa)).signerInfos[0]!.signedAttrs!.attributes;
    const time = attrs.find((a) => a.type === '1.2.840.113549.1.9.5')!.values[0] as asn1js.UTCTime;
    expect(Math.abs(time.toDate().getTime() - Date.now())).toBeLessThan(5000);
  });
});

describe('enrollment profile verification', () => {
  const profile = Buffer.from(encodePlist({ PayloadType: 'Configuration', PayloadIdentifier: 'com.example.enroll', PayloadUUID: crypto.randomUUID(), PayloadContent: [] }));

  it('accepts a profile signed by the trusted CA, and one signed by a certificate it issued', async () => {
    const byCa = await signAttached(profile, { certPem: ca.certPem, privateKey: ca.keys.privateKey });
    const res = await verifyProfileSignature(byCa, ca.certPem);
    expect(res).toMatchObject({ ok: true });
    expect(res.ok && res.content.equals(profile)).toBe(true);
    expect(res.ok && res.signerDer.equals(Buffer.from(ca.cert.rawData))).toBe(true);

    const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apple-device-tls-'));
    try {
      const tls = await ensureTlsCertificate(ca, tlsDir, ['localhost']);
      const byLeaf = await signAttached(profile, { certPem: tls.certPem, privateKey: tls.keyPem });
      await expect(verifyProfileSignature(byLeaf, ca.certPem)).resolves.toMatchObject({ ok: true });
      // ... but not when the device trusts another CA
      await expect(verifyProfileSignature(byLeaf, otherCa.certPem)).resolves.toMatchObject({ ok: false, reason: expect.stringMatching(/does not chain/) });
    } finally {
      fs.rmSync(tlsDir, { recursive: true, force: true });
    }
  });

  it('refuses a modified profile', async () => {
    const signed = await signAttached(profile, { certPem: ca.certPem, privateKey: ca.keys.privateKey });
    const at = signed.indexOf(Buffer.from('com.example.enroll'));
    expect(at).toBeGreaterThan(0);
    const modified = Buffer.from(signed);
    modified[at]! ^= 0x01;
    await expect(verifyProfileSignature(modified, ca.certPem)).resolves.toMatchObject({ ok: false, reason: expect.stringMatching(/digest|verify/) });

    const badSignature = Buffer.from(signed);
    badSignature[badSignature.length - 3]! ^= 0x01;
    await expect(verifyProfileSignature(badSignature, ca.certPem)).resolves.toMatchObject({ ok: false });
  });

  it('refuses a profile signed by another CA, and things that are not signed profiles', async () => {
    const foreign = await signAttached(profile, { certPem: otherCa.certPem, privateKey: otherCa.keys.privateKey });
    await expect(verifyProfileSignature(foreign, ca.certPem)).resolves.toMatchObject({ ok: false, reason: expect.stringMatching(/does not chain/) });
    await expect(verifyProfileSignature(profile, ca.certPem)).resolves.toMatchObject({ ok: false });
    await expect(verifyProfileSignature(Buffer.alloc(0), ca.certPem)).resolves.toMatchObject({ ok: false });
    await expect(verifyProfileSignature(Buffer.from(ca.cert.rawData), ca.certPem)).resolves.toMatchObject({ ok: false });
  });
});

describe('CertRep reader', () => {
  let client: ScepClient;
  beforeAll(async () => {
    client = await ScepClient.create([{ CN: ['Mooring device'] }, { O: ['Mooring'] }]);
  });

  async function exchange(opts: { status?: 'SUCCESS' | 'FAILURE'; recipientNonce?: Buffer; transactionId?: string; signer?: ScepCaKey } = {}) {
    const sent = await client.request({ caCertPem: ca.certPem, challenge: CHALLENGE, encryption: 'aes256' });
    const req = await parsePkiMessage(sent.der, caKey);
    const issued = await issueClientCertificate(ca, await readCsr(req.csrDer), { commonName: 'device-1' });
    const rep = await buildCertRep({
      ca: opts.signer ?? caKey,
      transactionId: opts.transactionId ?? req.transactionId,
      recipientNonce: opts.recipientNonce ?? req.senderNonce,
      status: opts.status ?? 'SUCCESS',
      ...(opts.status === 'FAILURE' ? { failInfo: 'badRequest' as const } : { issuedCertDer: issued.der }),
      recipientCertDer: req.signerCertDer,
      encryption: certRepEncryption(req.encryption),
    });
    return { sent, issued, rep, expected: { caCert: ca.certPem, transactionId: sent.transactionId, senderNonce: sent.senderNonce } };
  }

  it('takes the issued certificate out of a SUCCESS', async () => {
    const { issued, rep, expected } = await exchange();
    const res = await client.checkCertRep(rep, expected);
    expect(res.status).toBe('SUCCESS');
    expect(res.certDer!.equals(issued.der)).toBe(true);
    expect(new x509.X509Certificate(res.certDer!).subject).toBe('CN=device-1');
  });

  it('reads failInfo from a FAILURE', async () => {
    const { rep, expected } = await exchange({ status: 'FAILURE' });
    await expect(client.checkCertRep(rep, expected)).resolves.toEqual({ status: 'FAILURE', failInfo: 'badRequest' });
  });

  it('refuses a CertRep for another request', async () => {
    const wrongNonce = await exchange({ recipientNonce: crypto.randomBytes(16) });
    await expect(client.checkCertRep(wrongNonce.rep, wrongNonce.expected)).rejects.toThrow(/recipientNonce/);
    const wrongTransaction = await exchange({ transactionId: 'F00D' });
    await expect(client.checkCertRep(wrongTransaction.rep, wrongTransaction.expected)).rejects.toThrow(/transactionID/);
  });

  it('refuses a bad signature or a signer other than the CA', async () => {
    const { rep, expected } = await exchange();
    const bad = Buffer.from(rep);
    bad[bad.length - 3]! ^= 0x01; // the signature is the last field
    await expect(client.checkCertRep(bad, expected)).rejects.toThrow(ScepReplyError);

    const otherKey = { certPem: otherCa.certPem, privateKeyPem: fs.readFileSync(path.join(otherDir, 'ca.key'), 'utf8') };
    const foreign = await exchange({ signer: otherKey });
    await expect(client.checkCertRep(foreign.rep, foreign.expected)).rejects.toThrow(/not signed by the CA/);
    await expect(client.checkCertRep(Buffer.from('garbage'), expected)).rejects.toThrow(/not a CMS SignedData/);
  });
});

describe('command answers', () => {
  const ios = () => SimulatedAppleDevice.create({ os: 'ios', caPem: ca.certPem });
  const mac = () => SimulatedAppleDevice.create({ os: 'macos', caPem: ca.certPem });
  const cmd = (Command: PlistDict) => ({ CommandUUID: crypto.randomUUID(), Command });

  it('answers DeviceInformation with exactly the queried keys, typed as an iPhone sends them', () => {
    const d = ios();
    const queries = ['UDID', 'DeviceName', 'OSVersion', 'BuildVersion', 'ModelName', 'Model', 'ProductName', 'SerialNumber', 'IMEI', 'MEID', 'DeviceCapacity', 'AvailableDeviceCapacity', 'BatteryLevel', 'WiFiMAC', 'BluetoothMAC', 'IsSupervised', 'CellularTechnology', 'IsMDMLostModeEnabled'];
    const c = cmd({ RequestType: 'DeviceInformation', Queries: [...queries, 'NoSuchQuery'] });
    const answer = d.respond(c);
    expect(answer).toMatchObject({ UDID: d.udid, CommandUUID: c.CommandUUID, Status: 'Acknowledged' });
    const xml = encodePlist(answer);
    const r = decodePlistDict(xml).QueryResponses as PlistDict;
    expect(Object.keys(r).sort()).toEqual([...queries].sort());
    expect(r).toMatchObject({ UDID: d.udid, ProductName: 'iPhone15,2', ModelName: 'iPhone', OSVersion: '17.5', BuildVersion: '21F79', SerialNumber: d.serial, IsSupervised: false, CellularTechnology: 3 });
    expect(d.udid).toMatch(/^00008120-[0-9A-F]{16}$/);
    expect(r.SerialNumber).toMatch(/^[A-Z0-9]{10}$/);
    expect(r.IMEI).toMatch(/^\d{2} \d{6} \d{6} \d$/);
    expect(r.WiFiMAC).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    for (const k of ['DeviceCapacity', 'AvailableDeviceCapacity', 'BatteryLevel']) {
      expect(typeof r[k]).toBe('number');
      expect(xml).toMatch(new RegExp(`<key>${k}</key>\\s*<real>`)); // capacities and battery are reals on the wire
    }
    expect(r.BatteryLevel as number).toBeGreaterThan(0);
    expect(r.BatteryLevel as number).toBeLessThan(1);
    expect(r.AvailableDeviceCapacity as number).toBeLessThan(r.DeviceCapacity as number);
    // the report decodes with the server's codec
    expect(decodeReport(Buffer.from(xml))).toMatchObject({ status: 'Acknowledged', commandUuid: c.CommandUUID, UDID: d.udid });
  });

  it('answers a Mac DeviceInformation without the cellular keys', () => {
    const d = mac();
    const r = d.respond(cmd({ RequestType: 'DeviceInformation', Queries: ['UDID', 'IMEI', 'MEID', 'ProductName', 'ModelName', 'OSVersion', 'LocalHostName', 'IsSupervised'] })).QueryResponses as PlistDict;
    expect(Object.keys(r).sort()).toEqual(['IsSupervised', 'LocalHostName', 'ModelName', 'OSVersion', 'ProductName', 'UDID']);
    expect(r).toMatchObject({ ProductName: 'Mac14,2', ModelName: 'MacBook Air', OSVersion: '14.5' });
    expect(d.udid).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
    expect(d.unlockToken).toBeUndefined();
  });

  it('answers an unknown command with Error 12021 in MCMDMErrorDomain', () => {
    const d = ios();
    const answer = d.respond(cmd({ RequestType: 'Bogus' }));
    expect(answer).toMatchObject({
      Status: 'Error',
      ErrorChain: [{ ErrorCode: 12021, ErrorDomain: 'MCMDMErrorDomain', LocalizedDescription: expect.stringContaining('Bogus'), USEnglishDescription: expect.any(String) }],
    });
    expect(decodeReport(Buffer.from(encodePlist(answer))).errorChain).toEqual([expect.objectContaining({ ErrorCode: 12021 })]);
  });

  it('locks a Mac only with a 6-digit PIN; an iPhone with none', () => {
    const m = mac();
    expect(m.respond(cmd({ RequestType: 'DeviceLock' })).Status).toBe('CommandFormatError');
    expect(m.respond(cmd({ RequestType: 'DeviceLock', PIN: '12345' })).Status).toBe('CommandFormatError');
    expect(m.locked).toBe(false);
    expect(m.respond(cmd({ RequestType: 'DeviceLock', PIN: '123456' })).Status).toBe('Acknowledged');
    expect(m.locked).toBe(true);
    const i = ios();
    expect(i.respond(cmd({ RequestType: 'DeviceLock' })).Status).toBe('Acknowledged');
    expect(i.performed).toEqual(['DeviceLock']);
  });

  it('answers NotNow when asked to, SecurityInfo and ClearPasscode with its own unlock token', () => {
    const d = SimulatedAppleDevice.create({ os: 'ios', caPem: ca.certPem, notNow: (t) => t === 'InstallProfile' });
    expect(d.respond(cmd({ RequestType: 'InstallProfile', Payload: Buffer.from('x') })).Status).toBe('NotNow');
    expect(d.respond(cmd({ RequestType: 'SecurityInfo' }))).toMatchObject({ Status: 'Acknowledged', SecurityInfo: { PasscodePresent: true, HardwareEncryptionCaps: 3 } });
    expect(d.respond(cmd({ RequestType: 'ClearPasscode', UnlockToken: d.unlockToken! })).Status).toBe('Acknowledged');
    expect(d.respond(cmd({ RequestType: 'ClearPasscode', UnlockToken: Buffer.from('nope') })).Status).toBe('Error');
    expect(d.respond({ CommandUUID: 'x', Command: {} }).Status).toBe('CommandFormatError');
  });
});

// ------------------------------------------------------------------------------------------------
// A loopback server made of the server's codecs

interface Received {
  path: string;
  contentType?: string;
  signer?: string;
  message?: CheckinMessage | CommandReport;
  status: number;
}

interface Queued {
  uuid: string;
  command: PlistDict;
  status?: string;
}

interface FakeServer {
  url: string;
  received: Received[];
  enqueue(udid: string, command: PlistDict): string;
  queue(udid: string): Queued[];
  close(): Promise<void>;
}

async function fakeServer(): Promise<FakeServer> {
  const tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apple-device-srv-'));
  const tls = await ensureTlsCertificate(ca, tlsDir, ['localhost', '127.0.0.1']);
  const received: Received[] = [];
  const queues = new Map<string, Queued[]>();
  const bound = new Map<string, string>(); // cert sha256 → UDID
  const bootstrap = new Map<string, Buffer>();
  let url = '';

  const profile = (): Buffer => {
    const scepUuid = crypto.randomUUID().toUpperCase();
    const payload = (type: string, id: string, extra: PlistDict, uuid = crypto.randomUUID().toUpperCase()): PlistDict => ({
      PayloadType: type,
      PayloadVersion: 1,
      PayloadIdentifier: `com.example.mooring.${id}`,
      PayloadUUID: uuid,
      ...extra,
    });
    return Buffer.from(
      encodePlist({
        PayloadType: 'Configuration',
        PayloadVersion: 1,
        PayloadIdentifier: 'com.example.mooring.enroll',
        PayloadUUID: crypto.randomUUID().toUpperCase(),
        PayloadDisplayName: 'Mooring enrollment',
        PayloadOrganization: 'Example',
        PayloadContent: [
          payload(
            'com.apple.security.scep',
            'scep',
            { PayloadContent: { URL: `${url}/scep`, Challenge: CHALLENGE, Subject: [[['CN', 'Mooring device']], [['O', 'Example']]], Keysize: 2048, 'Key Type': 'RSA', 'Key Usage': 5 } },
            scepUuid,
          ),
          payload('com.apple.mdm', 'mdm', {
            IdentityCertificateUUID: scepUuid,
            ServerURL: `${url}/mdm/connect`,
            CheckInURL: `${url}/mdm/checkin`,
            Topic: TOPIC,
            SignMessage: true,
            AccessRights: 8191,
            CheckOutWhenRemoved: true,
            ServerCapabilities: ['com.apple.mdm.per-user-connections', 'com.apple.mdm.bootstraptoken'],
          }),
          payload('com.apple.security.root', 'root', { PayloadContent: Buffer.from(ca.cert.rawData) }),
        ],
      }),
    );
  };

  async function handle(method: string, u: URL, headers: Record<string, string | string[] | undefined>, body: Buffer): Promise<{ status: number; type?: string; body?: Buffer | string }> {
    if (u.pathname === '/enroll/apple') {
      const token = u.searchParams.get('token');
      if (token === 'expired') return { status: 403, type: 'text/html; charset=utf-8', body: '<p>This enrollment link has expired.</p>' };
      const signer = token === 'foreign' ? otherCa : ca;
      const signed = await signAttached(profile(), { certPem: signer.certPem, privateKey: signer.keys.privateKey });
      if (token === 'tampered') signed[signed.indexOf(Buffer.from('Mooring enrollment'))]! ^= 0x20;
      return { status: 200, type: CONTENT_TYPES.profile, body: signed };
    }
    if (u.pathname === '/scep') {
      const op = u.searchParams.get('operation');
      if (op === 'GetCACaps') return { status: 200, type: 'text/plain', body: caCapsText() };
      if (op === 'GetCACert') return { status: 200, type: 'application/x-x509-ca-cert', body: Buffer.from(ca.cert.rawData) };
      if (op === 'PKIOperation' && method === 'POST') {
        const req = await parsePkiMessage(body, caKey);
        const ok = req.challengePassword === CHALLENGE;
        const issued = ok ? await issueClientCertificate(ca, await readCsr(req.csrDer), { commonName: `device-${crypto.randomUUID()}` }) : undefined;
        const rep = await buildCertRep({
          ca: caKey,
          transactionId: req.transactionId,
          recipientNonce: req.senderNonce,
          ...(issued ? { status: 'SUCCESS' as const, issuedCertDer: issued.der } : { status: 'FAILURE' as const, failInfo: 'badRequest' as const }),
          recipientCertDer: req.signerCertDer,
          encryption: certRepEncryption(req.encryption),
        });
        return { status: 200, type: CONTENT_TYPES.pkiMessage, body: rep };
      }
      return { status: 400 };
    }
    if (method !== 'PUT' || (u.pathname !== '/mdm/checkin' && u.pathname !== '/mdm/connect')) return { status: 404 };
    const rec: Received = { path: u.pathname, status: 400, ...(typeof headers['content-type'] === 'string' ? { contentType: headers['content-type'] } : {}) };
    received.push(rec);
    const sig = headers['mdm-signature'];
    const verified = typeof sig === 'string' ? await verifyDetachedSignature(sig, body, { caPem: ca.certPem }) : undefined;
    if (!verified?.ok) return { status: 400 };
    rec.signer = verified.sha256;
    if (u.pathname === '/mdm/checkin') {
      const msg = decodeCheckin(body);
      rec.message = msg;
      if (msg.MessageType === 'Authenticate') bound.set(verified.sha256, msg.UDID!);
      if (bound.get(verified.sha256) !== msg.UDID) return { status: 400 };
      rec.status = 200;
      if (msg.MessageType === 'SetBootstrapToken') bootstrap.set(msg.UDID!, msg.BootstrapToken!);
      if (msg.MessageType === 'GetBootstrapToken') {
        const t = bootstrap.get(msg.UDID!);
        return { status: 200, body: t ? encodePlist({ BootstrapToken: t }) : '' };
      }
      if (msg.MessageType === 'DeclarativeManagement' && msg.Endpoint === 'tokens') {
        return { status: 200, type: 'application/json', body: JSON.stringify({ SyncTokens: { DeclarationsToken: 'empty', Timestamp: '2026-01-01T00:00:00Z' } }) };
      }
      return { status: 200 };
    }
    const report = decodeReport(body);
    rec.message = report;
    if (bound.get(verified.sha256) !== report.UDID) return { status: 400 };
    rec.status = 200;
    const q = queues.get(report.UDID!) ?? [];
    const item = q.find((c) => c.uuid === report.commandUuid);
    if (item && report.status !== 'Idle') item.status = report.status;
    // NanoMDM: the first command without a result, or NotNow'd unless the device just said NotNow
    const next = q.find((c) => c.status === undefined || (c.status === 'NotNow' && report.status !== 'NotNow'));
    return next ? { status: 200, body: encodePlist({ CommandUUID: next.uuid, Command: next.command }) } : { status: 200 };
  }

  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req.method ?? 'GET', new URL(req.url ?? '/', url), req.headers, Buffer.concat(chunks)).then(
        (out) => {
          res.writeHead(out.status, out.type ? { 'content-type': out.type } : {});
          res.end(out.body ?? '');
        },
        (err: unknown) => {
          res.writeHead(err instanceof ScepError ? 400 : 500, { 'content-type': 'text/plain' });
          res.end(String(err));
        },
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://localhost:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    enqueue(udid, command) {
      const uuid = crypto.randomUUID().toUpperCase();
      queues.set(udid, [...(queues.get(udid) ?? []), { uuid, command }]);
      return uuid;
    },
    queue: (udid) => queues.get(udid) ?? [],
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => {
          fs.rmSync(tlsDir, { recursive: true, force: true });
          r();
        });
      }),
  };
}

describe('against a loopback server', () => {
  let srv: FakeServer;
  const devices: SimulatedAppleDevice[] = [];
  const device = (opts: Partial<Parameters<typeof SimulatedAppleDevice.create>[0]> & { os: 'ios' | 'macos' }) => {
    const d = SimulatedAppleDevice.create({ caPem: ca.certPem, ...opts });
    devices.push(d);
    return d;
  };
  beforeAll(async () => {
    srv = await fakeServer();
  });
  afterAll(async () => {
    for (const d of devices) d.close();
    await srv.close();
  });
  const from = (d: SimulatedAppleDevice) => srv.received.filter((r) => r.message?.UDID === d.udid);

  it('enrolls an iPhone: verified profile, SCEP identity, signed Authenticate and TokenUpdate', async () => {
    const d = device({ os: 'ios' });
    await d.enroll(`${srv.url}/enroll/apple?token=good`);
    expect(d.profile).toMatchObject({
      serverUrl: `${srv.url}/mdm/connect`,
      checkInUrl: `${srv.url}/mdm/checkin`,
      topic: TOPIC,
      scepUrl: `${srv.url}/scep`,
      challenge: CHALLENGE,
      signMessage: true,
      accessRights: 8191,
      subject: [[['CN', 'Mooring device']], [['O', 'Example']]],
      payloadTypes: ['com.apple.security.scep', 'com.apple.mdm', 'com.apple.security.root'],
    });
    expect(d.profile!.rootCertsDer[0]!.equals(Buffer.from(ca.cert.rawData))).toBe(true);

    const cert = new x509.X509Certificate(d.identity!.certDer);
    expect(cert.issuer).toBe(ca.cert.subject);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toContain('1.3.6.1.5.5.7.3.2');
    expect(crypto.createPrivateKey(d.identity!.keyPem).asymmetricKeyDetails?.modulusLength).toBe(2048);

    const msgs = from(d);
    expect(msgs.map((m) => [m.path, m.contentType, m.message && 'MessageType' in m.message ? m.message.MessageType : undefined, m.status])).toEqual([
      ['/mdm/checkin', CONTENT_TYPES.checkin, 'Authenticate', 200],
      ['/mdm/checkin', CONTENT_TYPES.checkin, 'TokenUpdate', 200],
    ]);
    expect(msgs.every((m) => m.signer === d.identity!.sha256)).toBe(true);
    expect(msgs[0]!.message).toMatchObject({ Topic: TOPIC, SerialNumber: d.serial, OSVersion: '17.5', BuildVersion: '21F79', ProductName: 'iPhone15,2', Model: 'iPhone15,2', ModelName: 'iPhone', DeviceName: d.deviceName, IMEI: d.imei });
    const tu = msgs[1]!.message as Extract<CheckinMessage, { MessageType: 'TokenUpdate' }>;
    expect(tu.PushMagic).toBe(d.pushMagic);
    expect(tu.Token.equals(d.token)).toBe(true);
    expect(tu.Token).toHaveLength(32);
    expect(tu.UnlockToken!.equals(d.unlockToken!)).toBe(true);
    expect(tu.AwaitingConfiguration).toBe(false);
  });

  it('runs a session: answers each command until the empty body, NotNow on demand', async () => {
    const d = device({ os: 'ios', notNow: (t) => t === 'InstallProfile' });
    await d.enroll(`${srv.url}/enroll/apple?token=good`);
    const install = srv.enqueue(d.udid, { RequestType: 'InstallProfile', Payload: Buffer.from(encodePlist({ PayloadType: 'Configuration', PayloadIdentifier: 'com.example.wifi' })) });
    const info = srv.enqueue(d.udid, { RequestType: 'DeviceInformation', Queries: ['DeviceName', 'SerialNumber'] });
    const list = srv.enqueue(d.udid, { RequestType: 'ProfileList' });
    const bogus = srv.enqueue(d.udid, { RequestType: 'Bogus' });
    const handled = await d.runSession();
    expect(handled).toEqual([
      { uuid: install, requestType: 'InstallProfile', status: 'NotNow' },
      { uuid: info, requestType: 'DeviceInformation', status: 'Acknowledged' },
      { uuid: install, requestType: 'InstallProfile', status: 'NotNow' }, // NanoMDM hands it back after another status
      { uuid: list, requestType: 'ProfileList', status: 'Acknowledged' },
      { uuid: install, requestType: 'InstallProfile', status: 'NotNow' },
      { uuid: bogus, requestType: 'Bogus', status: 'Error' },
      { uuid: install, requestType: 'InstallProfile', status: 'NotNow' },
    ]);
    const connects = from(d).filter((r) => r.path === '/mdm/connect');
    expect(connects.every((r) => r.contentType === CONTENT_TYPES.report && r.signer === d.identity!.sha256)).toBe(true);
    const reports = connects.map((r) => r.message as CommandReport);
    expect(reports).toHaveLength(8);
    expect(reports[0]).toMatchObject({ status: 'Idle' });
    expect(reports.find((r) => r.commandUuid === info)!.fields.QueryResponses).toEqual({ DeviceName: d.deviceName, SerialNumber: d.serial });
    const profiles = reports.find((r) => r.commandUuid === list)!.fields.ProfileList as PlistDict[];
    expect(profiles.map((p) => p.PayloadIdentifier)).toEqual(['com.example.mooring.enroll']);
    expect(profiles[0]!.PayloadContent).toEqual(expect.arrayContaining([expect.objectContaining({ PayloadType: 'com.apple.mdm' })]));
  });

  it('acknowledges EraseDevice and then stops answering', async () => {
    const d = device({ os: 'ios' });
    await d.enroll(`${srv.url}/enroll/apple?token=good`);
    const erase = srv.enqueue(d.udid, { RequestType: 'EraseDevice' });
    srv.enqueue(d.udid, { RequestType: 'DeviceInformation', Queries: ['UDID'] });
    expect(await d.runSession()).toEqual([{ uuid: erase, requestType: 'EraseDevice', status: 'Acknowledged' }]);
    expect(d.erased).toBe(true);
    const count = srv.received.length;
    expect(await d.runSession()).toEqual([]);
    expect(srv.received.length).toBe(count);
    expect(srv.queue(d.udid).map((c) => c.status)).toEqual(['Acknowledged', undefined]);
  });

  it('enrolls a Mac signing with SHA-1, escrows a bootstrap token and asks for DDM tokens', async () => {
    const d = device({ os: 'macos', digest: 'sha1' });
    await d.enroll(`${srv.url}/enroll/apple?token=good`);
    expect(from(d)[0]!.message).toMatchObject({ MessageType: 'Authenticate', ProductName: 'Mac14,2', OSVersion: '14.5', BuildVersion: '23F79' });
    expect((from(d)[1]!.message as Extract<CheckinMessage, { MessageType: 'TokenUpdate' }>).UnlockToken).toBeUndefined();
    expect(signedDataOf(mdmSignature(BODY, d.identity!, 'sha1')).signerInfos[0]!.digestAlgorithm.algorithmId).toBe('1.3.14.3.2.26');

    expect(await d.getBootstrapToken()).toEqual({ status: 200, body: Buffer.alloc(0) });
    expect((await d.setBootstrapToken()).status).toBe(200);
    expect((await d.getBootstrapToken()).token!.equals(d.bootstrapToken!)).toBe(true);
    expect(await d.declarativeManagement('tokens')).toMatchObject({ status: 200, json: { SyncTokens: { DeclarationsToken: 'empty' } } });
    expect((await d.declarativeManagement('status', { StatusItems: { device: { identifier: { udid: d.udid } } }, Errors: [] })).status).toBe(200);
    srv.enqueue(d.udid, { RequestType: 'DeviceLock', PIN: '123456' });
    expect((await d.runSession()).map((h) => h.status)).toEqual(['Acknowledged']);
    expect(d.locked).toBe(true);
    expect((await d.checkOut()).status).toBe(200);
    expect(await d.runSession()).toEqual([]);
  });

  it('sends what negative tests need: tampered bodies, other identities, no signature', async () => {
    const [a, b] = [device({ os: 'ios' }), device({ os: 'ios' })];
    await Promise.all([a.enroll(`${srv.url}/enroll/apple?token=good`), b.enroll(`${srv.url}/enroll/apple?token=good`)]);
    const idle = Buffer.from(encodePlist({ UDID: a.udid, Status: 'Idle' }));
    const url = a.profile!.serverUrl;
    expect((await a.send(url, CONTENT_TYPES.report, idle)).status).toBe(200);
    expect((await a.send(url, CONTENT_TYPES.report, idle, { tamper: true })).status).toBe(400);
    expect((await a.send(url, CONTENT_TYPES.report, idle, { tamper: (body) => Buffer.from(body.toString().replace('Idle', 'Idle ')) })).status).toBe(400);
    expect((await a.send(url, CONTENT_TYPES.report, idle, { signWith: b.identity! })).status).toBe(400);
    expect((await a.send(url, CONTENT_TYPES.report, idle, { signWith: null })).status).toBe(400);
    expect((await a.send(url, CONTENT_TYPES.report, idle, { headers: { 'Mdm-Signature': 'not base64!' } })).status).toBe(400);
    const replayed = await a.idle();
    expect(replayed).toEqual({ status: 200, body: Buffer.alloc(0) });
  });

  it('refuses profiles that are refused, unsigned by its CA or modified', async () => {
    const d = device({ os: 'ios' });
    const expired = await d.fetchProfile(`${srv.url}/enroll/apple?token=expired`);
    expect(expired).toMatchObject({ status: 403, contentType: 'text/html', verified: false });
    expect(expired.body.toString()).toContain('expired');
    await expect(d.enroll(`${srv.url}/enroll/apple?token=expired`)).rejects.toThrow(/HTTP 403/);
    await expect(d.fetchProfile(`${srv.url}/enroll/apple?token=foreign`)).resolves.toMatchObject({ status: 200, verified: false, reason: expect.stringMatching(/does not chain/) });
    await expect(d.fetchProfile(`${srv.url}/enroll/apple?token=tampered`)).resolves.toMatchObject({ status: 200, verified: false });
    await expect(d.enroll(`${srv.url}/enroll/apple?token=foreign`)).rejects.toThrow(/refused/);
    expect(d.profile).toBeUndefined();
    expect(d.identity).toBeUndefined();
  });

  it('will not talk to a server whose TLS certificate its CA did not issue', async () => {
    const d = device({ os: 'ios', caPem: otherCa.certPem });
    await expect(d.fetchProfile(`${srv.url}/enroll/apple?token=good`)).rejects.toThrow(/certificate/i);
  });

  it('shares a keep-alive agent and a SCEP key between devices when given', async () => {
    const agent = new https.Agent({ keepAlive: true });
    try {
      const scepKeys = (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
      const many = Array.from({ length: 3 }, () => device({ os: 'ios', agent, scepKeys }));
      await Promise.all(many.map((d) => d.enroll(`${srv.url}/enroll/apple?token=good`)));
      expect(new Set(many.map((d) => d.identity!.sha256)).size).toBe(3);
      for (const d of many) expect(await d.runSession()).toEqual([]);
    } finally {
      agent.destroy();
    }
  });

  it('reads command plists', () => {
    expect(readCommand(Buffer.from(encodePlist({ CommandUUID: 'u', Command: { RequestType: 'ProfileList' } })))).toEqual({ CommandUUID: 'u', Command: { RequestType: 'ProfileList' } });
    expect(readCommand(Buffer.from(encodePlist({ Command: { RequestType: 'ProfileList' } })))).toBeUndefined();
    expect(readCommand(Buffer.from('garbage'))).toBeUndefined();
  });
});
