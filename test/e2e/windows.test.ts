/**
 * Windows end to end: an admin makes a Windows enrollment token, a simulated Windows 11 PC discovers
 * the services, gets the certificate policy and enrolls over HTTPS (OnPremise, and Federated through
 * the sign-in page on a second server), then opens OMA-DM sessions with its identity certificate:
 * DevInfo reaches the inventory, wipe and device_info are delivered with the command id as CmdID and
 * acknowledged from the device's Status. Refusals: bad and expired tokens, malformed and hostile XML,
 * a CSR that does not verify, management without a certificate or with another device's identity.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import https from 'node:https';
import * as x509 from '@peculiar/x509';
import { WindowsCommands } from '../../protocols/windows/commands';
import { parseSyncMl } from '../../protocols/windows/syncml';
import { PlatformRegistry } from '../../src/core/platforms';
import { listenHttps, readFault, SimulatedWindowsDevice, SOAP_CONTENT_TYPE, SYNCML_CONTENT_TYPE } from '../helpers/windows-device';
import { startTestServer, type TestServer } from '../helpers/server';

const platforms = () => new PlatformRegistry().register(new WindowsCommands());
const sha1Upper = (der: Buffer) => crypto.createHash('sha1').update(der).digest('hex').toUpperCase();
const caDer = (pem: string) => Buffer.from(new x509.X509Certificate(pem).rawData);

interface Net {
  url: string;
  caPem: string;
  close(): Promise<void>;
}

let s: TestServer;
let net: Net;

beforeAll(async () => {
  s = await startTestServer({ platforms: platforms() });
  net = await listenHttps(s.m);
});
afterAll(async () => {
  await net?.close();
  await s?.stop();
});

async function windowsToken(server: TestServer = s, extra: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
  const res = await server.api.post('/api/v1/enrollment-tokens').send({ platform: 'windows', ...extra }).expect(201);
  return { id: res.body.id, token: res.body.token };
}

function pc(opts: Partial<ConstructorParameters<typeof SimulatedWindowsDevice>[0]> = {}, on: Net = net): SimulatedWindowsDevice {
  return new SimulatedWindowsDevice({ baseUrl: on.url, caPem: on.caPem, ...opts });
}

/** A PC enrolled OnPremise with a fresh token (on the main server unless told); returns it and its Mooring device id. */
async function enrolledPc(
  opts: Partial<ConstructorParameters<typeof SimulatedWindowsDevice>[0]> = {},
  on: { server: TestServer; net: Net } = { server: s, net },
): Promise<{ device: SimulatedWindowsDevice; id: string }> {
  const { token } = await windowsToken(on.server);
  const device = pc(opts, on.net);
  expect((await device.discover('9.0')).status).toBe(200);
  expect((await device.getPolicies({ password: token })).status).toBe(200);
  const enrolled = await device.enroll({ password: token });
  expect(enrolled.fault).toBeUndefined();
  expect(enrolled.status).toBe(200);
  const id = await adminIdOf(device, on.server);
  return { device, id };
}

async function adminIdOf(device: SimulatedWindowsDevice, server: TestServer = s): Promise<string> {
  const list = await server.api.get('/api/v1/devices').query({ platform: 'windows', q: device.hwDevId }).expect(200);
  expect(list.body.items).toHaveLength(1);
  return list.body.items[0].id;
}

const sendCommand = (deviceId: string, body: Record<string, unknown>, server: TestServer = s) => server.api.post(`/api/v1/devices/${deviceId}/commands`).send(body);

/** One OMA-DM session posted message by message over one kept-alive TLS connection. */
async function keptAliveSession(device: SimulatedWindowsDevice, sessionId: string, on: Net = net) {
  const identity = await device.identity();
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: on.caPem, cert: identity.certPem, key: identity.keyPem });
  const url = new URL(device.provisioning!.managementUrl);
  const post = (msgId: number, body: string) =>
    new Promise<{ reused: boolean; header: string | undefined; commands: string[] }>((resolve, reject) => {
      const xml =
        `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>${sessionId}</SessionID><MsgID>${msgId}</MsgID>` +
        `<Target><LocURI>${url.href}</LocURI></Target><Source><LocURI>${device.deviceId}</LocURI></Source></SyncHdr><SyncBody>${body}<Final/></SyncBody></SyncML>`;
      const req = https.request(
        { host: '127.0.0.1', servername: 'localhost', port: url.port, path: url.pathname, method: 'POST', agent, headers: { host: url.host, 'content-type': SYNCML_CONTENT_TYPE } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const reply = parseSyncMl(Buffer.concat(chunks).toString('utf8'));
            const header = reply.body.find((c) => c.kind === 'Status' && c.cmd === 'SyncHdr');
            resolve({ reused: req.reusedSocket, header: header?.kind === 'Status' ? header.data : undefined, commands: reply.body.filter((c) => c.kind === 'Exec' || c.kind === 'Get').map((c) => c.cmdId) });
          });
        },
      );
      req.on('error', reject);
      req.end(xml);
    });
  return { post, close: () => agent.destroy() };
}
const statusOf = (commandId: string, code = '200') => `<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>${commandId}</CmdRef><Cmd>Exec</Cmd><Data>${code}</Data></Status>`;

function expectSoapAnswer(res: { status: number; contentType?: string; contentLength?: string; transferEncoding?: string }, status: number) {
  expect(res.status).toBe(status);
  expect(res.contentType).toBe(SOAP_CONTENT_TYPE);
  expect(Number(res.contentLength)).toBeGreaterThan(0);
  expect(res.transferEncoding).toBeUndefined();
}

describe('OnPremise enrollment and management', () => {
  it('discovers (5.0 and 9.0), gets the policy, enrolls and appears in the admin API', async () => {
    const { token } = await windowsToken();
    const device = pc();

    const old = await device.discover('5.0');
    expect(old.getStatus).toBe(200);
    expect(old.getBody).toBe('');
    expectSoapAnswer(old, 200);
    expect(old.relatesTo).toBe(old.messageId);
    expect(old.result).toEqual({
      authPolicy: 'OnPremise',
      enrollmentVersion: '5.0',
      policyServiceUrl: `${net.url}/EnrollmentServer/Policy.svc`,
      enrollmentServiceUrl: `${net.url}/EnrollmentServer/Enrollment.svc`,
    });
    const current = await device.discover('9.0'); // Windows 11 25H2 sends 9.0: never refused
    expectSoapAnswer(current, 200);
    expect(current.result).toMatchObject({ authPolicy: 'OnPremise', enrollmentServiceUrl: `${net.url}/EnrollmentServer/Enrollment.svc` });

    const policy = await device.getPolicies({ password: token });
    expectSoapAnswer(policy, 200);
    expect(policy.fault).toBeUndefined();
    expect(policy.minimalKeyLength).toBe(2048);
    expect(policy.hashAlgorithmOid).toBe('2.16.840.1.101.3.4.2.1');

    const enrolled = await device.enroll({ password: token });
    expectSoapAnswer(enrolled, 200);
    const prov = enrolled.provisioning!;
    expect(prov.rootThumbprint).toBe(sha1Upper(caDer(s.m.ca.certPem)));
    expect(prov.identityStore).toBe('User');
    expect(prov.managementUrl).toBe(`${net.url}/ManagementServer/MDM.svc`);
    expect(prov.clientNonce).not.toBe(prov.serverNonce);

    const id = await adminIdOf(device);
    const shown = await s.api.get(`/api/v1/devices/${id}`).expect(200);
    expect(shown.body).toMatchObject({ platform: 'windows', status: 'enrolled', hardware_id: device.hwDevId, name: device.deviceName, os_version: device.osVersion });
    if (prov.entDmId) expect(prov.entDmId).toBe(id);
  });

  it('takes DevInfo from the first session into the inventory and the device record', async () => {
    const { device, id } = await enrolledPc({ manufacturer: 'Fabrikam', model: 'Fabrikam Book 14' });
    const first = await device.session();
    expect(first.exchanges).toHaveLength(1);
    expect(first.exchanges[0]!.contentType).toMatch(/^application\/vnd\.syncml\.dm\+xml/);
    expect(first.headerStatuses).toEqual(['200']);
    expect(first.commands).toEqual([]);
    expect(first.serverStatuses.map((st) => [st.cmdRef, st.cmd, st.data])).toEqual([
      ['2', 'Alert', '200'],
      ['3', 'Alert', '200'],
      ['4', 'Replace', '200'],
    ]);
    expect(first.exchanges[0]!.reply!.target).toBe(device.deviceId);

    const shown = await s.api.get(`/api/v1/devices/${id}`).expect(200);
    expect(JSON.stringify(shown.body.inventory)).toContain('Fabrikam Book 14');
    expect(shown.body).toMatchObject({ model: 'Fabrikam Book 14', manufacturer: 'Fabrikam' });
    expect(shown.body.last_seen_at).toEqual(expect.any(String));

    // Sessions moments apart: the same DevInfo again writes nothing new, a changed one is taken at once.
    await device.session();
    const same = await s.api.get(`/api/v1/devices/${id}`).expect(200);
    expect(same.body.last_seen_at).toBe(shown.body.last_seen_at); // within its 30 s resolution: not written
    await device.session({ devInfo: { Mod: 'Fabrikam Book 16' } });
    const changed = await s.api.get(`/api/v1/devices/${id}`).expect(200);
    expect(changed.body.model).toBe('Fabrikam Book 16');
    expect(JSON.stringify(changed.body.inventory)).toContain('Fabrikam Book 16');
  });

  it('delivers a wipe as Exec RemoteWipe/doWipe with the command id as CmdID and acknowledges it from the Status', async () => {
    const { device, id } = await enrolledPc();
    await device.session();
    const wipe = await sendCommand(id, { type: 'wipe' }).expect(202);
    const session = await device.session();
    expect(session.commands).toHaveLength(1);
    expect(session.commands[0]).toMatchObject({ kind: 'Exec', cmdId: wipe.body.id, items: [{ target: './Device/Vendor/MSFT/RemoteWipe/doWipe' }] });
    expect(session.answered).toEqual([{ cmdId: wipe.body.id, kind: 'Exec', status: '200' }]);
    expect(device.wiped).toBe(true);
    expect(session.exchanges).toHaveLength(2); // the reply to the device's Status carries nothing more
    expect(session.headerStatuses).toEqual(['200', '200']);
    const done = await s.api.get(`/api/v1/commands/${wipe.body.id}`).expect(200);
    expect(done.body).toMatchObject({ status: 'acknowledged', completed_at: expect.any(String) });
    expect((await device.session()).commands).toEqual([]); // delivered once
  });

  it('reads device_info with a Get and stores the Results', async () => {
    const { device, id } = await enrolledPc({ osVersion: '10.0.26100.4061' });
    const info = await sendCommand(id, { type: 'device_info' }).expect(202);
    const session = await device.session();
    const get = session.commands.find((c) => c.cmdId === info.body.id);
    expect(get?.kind).toBe('Get');
    expect(get!.items.map((i) => i.target)).toEqual(expect.arrayContaining(['./DevDetail/SwV', './DevInfo/Mod', './DevDetail/Ext/Microsoft/DeviceName']));
    expect(session.answered[0]).toMatchObject({ cmdId: info.body.id, kind: 'Get', status: '200' });
    const done = await s.api.get(`/api/v1/commands/${info.body.id}`).expect(200);
    expect(done.body.status).toBe('acknowledged');
    expect(JSON.stringify(done.body.result)).toContain('10.0.26100.4061');
    expect(JSON.stringify(done.body.result)).toContain(device.deviceName);
    const shown = await s.api.get(`/api/v1/devices/${id}`).expect(200);
    expect(JSON.stringify(shown.body.inventory)).toContain('10.0.26100.4061');
  });

  it('records a device error status on the command', async () => {
    const { device, id } = await enrolledPc();
    const restart = await sendCommand(id, { type: 'restart' }).expect(202);
    const session = await device.session({ answer: (c) => (c.kind === 'Exec' ? { status: '500' } : undefined) });
    expect(session.commands[0]).toMatchObject({ kind: 'Exec', cmdId: restart.body.id, items: [{ target: './Device/Vendor/MSFT/Reboot/RebootNow' }] });
    const done = await s.api.get(`/api/v1/commands/${restart.body.id}`).expect(200);
    expect(done.body).toMatchObject({ status: 'error', error: expect.objectContaining({ code: 500 }) });
  });

  it('refuses lock on a desktop PC with command_not_permitted', async () => {
    const { id } = await enrolledPc();
    const res = await sendCommand(id, { type: 'lock' });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'command_not_permitted' });
    expect((await s.api.get(`/api/v1/devices/${id}/commands`).expect(200)).body.items).toHaveLength(0);
  });
});

describe('Federated enrollment through the sign-in page', () => {
  let fed: TestServer;
  let fedNet: Net;
  beforeAll(async () => {
    fed = await startTestServer({ platforms: platforms(), env: { MOORING_WINDOWS_AUTH_POLICY: 'Federated' } });
    fedNet = await listenHttps(fed.m);
  });
  afterAll(async () => {
    await fedNet?.close();
    await fed?.stop();
  });

  it('hands the token back to appru, and enrolls a device with it as the BinarySecurityToken', async () => {
    const { token } = await windowsToken(fed);
    const device = pc({ enrollmentType: 'Device' }, fedNet);
    const discovered = await device.discover('9.0');
    expect(discovered.result).toMatchObject({ authPolicy: 'Federated', authenticationServiceUrl: `${fedNet.url}/EnrollmentServer/Auth` });

    const wrong = await device.federatedSignIn('AAAAA-BBBBB-CCCCC-DDDDD-EEEEE');
    expect(wrong.pageStatus).toBe(200);
    expect(wrong.status).toBeGreaterThanOrEqual(400);
    expect(wrong.wresult).toBeUndefined();

    const appru = 'ms-app://windows.immersivecontrolpanel';
    const signIn = await device.federatedSignIn(token, appru);
    expect(signIn.status).toBe(200);
    expect(signIn.formMethod).toBe('POST');
    expect(signIn.formAction).toBe(appru);
    expect(signIn.wresult).toEqual(expect.any(String));

    const policy = await device.getPolicies({ federated: signIn.wresult! });
    expectSoapAnswer(policy, 200);
    const enrolled = await device.enroll({ federated: signIn.wresult! });
    expectSoapAnswer(enrolled, 200);
    expect(enrolled.provisioning!.identityStore).toBe('System');
    expect(enrolled.provisioning!.rootThumbprint).toBe(sha1Upper(caDer(fed.m.ca.certPem)));

    const id = await adminIdOf(device, fed);
    expect((await fed.api.get(`/api/v1/devices/${id}`).expect(200)).body).toMatchObject({ platform: 'windows', status: 'enrolled' });
    const info = await sendCommand(id, { type: 'device_info' }, fed).expect(202);
    const session = await device.session();
    expect(session.commands.map((c) => c.cmdId)).toEqual([info.body.id]);
    expect((await fed.api.get(`/api/v1/commands/${info.body.id}`).expect(200)).body.status).toBe('acknowledged');
  });

  it('refuses a forged federated token and a return URL that is not a Windows app', async () => {
    const device = pc({}, fedNet);
    await device.discover('9.0');
    const forged = await device.getPolicies({ federated: Buffer.from('mooring-sts:forged:user@contoso.com').toString('base64') });
    expectSoapAnswer(forged, 500);
    expect(forged.fault).toMatchObject({ subcode: 'Authentication' });
    const evil = await device.request('GET', `${fedNet.url}/EnrollmentServer/Auth?appru=${encodeURIComponent('https://evil.example/steal')}&login_hint=a@b.c`);
    expect(evil.status).toBeGreaterThanOrEqual(400);
    expect(evil.body).not.toMatch(/evil\.example/);
  });
});

describe('enrollment refusals', () => {
  it('answers a wrong password with an Authentication fault (HTTP 500, SOAP)', async () => {
    const device = pc();
    await device.discover('9.0');
    const policy = await device.getPolicies({ password: 'AAAAA-BBBBB-CCCCC-DDDDD-EEEEE' });
    expectSoapAnswer(policy, 500);
    expect(policy.fault).toMatchObject({ code: 'Receiver', subcode: 'Authentication' });
    const enroll = await device.enroll({ password: 'not-a-token' });
    expectSoapAnswer(enroll, 500);
    expect(enroll.fault).toMatchObject({ subcode: 'Authentication' });
    expect(enroll.body).not.toMatch(/not-a-token/);
    expect((await s.api.get('/api/v1/devices').query({ platform: 'windows', q: device.hwDevId }).expect(200)).body.items).toHaveLength(0);
  });

  it('refuses an expired token at policy and enrollment', async () => {
    const { id, token } = await windowsToken();
    await s.m.db('enrollment_tokens').where({ id }).update({ expires_at: new Date(Date.now() - 1000) });
    const device = pc();
    await device.discover('9.0');
    const policy = await device.getPolicies({ password: token });
    expectSoapAnswer(policy, 500);
    expect(policy.fault?.subcode).toBe('Authentication');
    const enroll = await device.enroll({ password: token });
    expectSoapAnswer(enroll, 500);
    expect(enroll.fault?.subcode).toBe('Authentication');
  });

  // With a trailing slash the request misses its lane (src/http/lanes.ts) and is served through express: same answer.
  it.each(['Discovery.svc', 'Policy.svc', 'Enrollment.svc'])('answers malformed SOAP to %s with a MessageFormat fault, in its lane and behind express', async (svc) => {
    const device = pc();
    for (const url of [`${net.url}/EnrollmentServer/${svc}`, `${net.url}/EnrollmentServer/${svc}/`]) {
      for (const body of ['<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>', 'not xml at all', '']) {
        const res = await device.soap(url, body);
        expectSoapAnswer(res, 500);
        expect(readFault(res.body)).toMatchObject({ subcode: 'MessageFormat' });
      }
    }
  });

  it('answers an oversized body with a MessageFormat fault, not a generic HTTP error', async () => {
    const res = await pc().soap(`${net.url}/EnrollmentServer/Discovery.svc`, `<x>${'a'.repeat(1_100_000)}</x>`);
    expectSoapAnswer(res, 500);
    expect(readFault(res.body)).toMatchObject({ subcode: 'MessageFormat' });
  });

  it('records a first enrollment whole (device, channel, certificate, event, one token use), and a second one of the same PC as a re-enrollment', async () => {
    const { id: tokenId, token } = await windowsToken(s, { max_uses: 2 });
    const device = pc();
    await device.discover('9.0');
    expect((await device.enroll({ password: token })).status).toBe(200);
    const id = await adminIdOf(device);
    const enrollment = await s.m.db('enrollments').where({ device_id: id }).first('id', 'cert_sha256', 'status');
    const certs = await s.m.db('issued_certificates').where({ device_id: id }).select('sha256', 'enrollment_id');
    expect(certs).toEqual([{ sha256: enrollment.cert_sha256, enrollment_id: enrollment.id }]);
    expect(enrollment.status).toBe('enrolled');
    expect((await s.m.db('enrollment_tokens').where({ id: tokenId }).first('uses')).uses).toBe(1);
    const events = await s.api.get('/api/v1/events').query({ device_id: id }).expect(200);
    expect(events.body.items.map((e: { type: string }) => e.type)).toContain('device.enrolled');

    expect((await device.enroll({ password: token })).status).toBe(200);
    expect(await adminIdOf(device)).toBe(id);
    const again = await s.api.get('/api/v1/events').query({ device_id: id, type: 'device.reenrolled' }).expect(200);
    expect(again.body.items).toHaveLength(1);
    expect((await s.m.db('enrollment_tokens').where({ id: tokenId }).first('uses')).uses).toBe(2);
    expect(await s.m.db('issued_certificates').where({ device_id: id }).select('id')).toHaveLength(2);
  });

  it('refuses a CSR whose signature does not verify, without spending a one-time token', async () => {
    const { token } = await windowsToken(s, { one_time: true });
    const device = pc();
    await device.discover('9.0');
    const bad = await device.enroll({ password: token }, { tamperCsr: true });
    expectSoapAnswer(bad, 500);
    expect(bad.fault?.subcode).toBe('CertificateRequest');
    expect(bad.provisioning).toBeUndefined();
    const good = await device.enroll({ password: token });
    expect(good.status).toBe(200);
    expect(good.provisioning).toBeDefined();
  });

  it('refuses an RST without a DeviceID as InvalidEnrollmentData', async () => {
    const { token } = await windowsToken();
    const device = pc();
    await device.discover('9.0');
    const res = await device.enroll({ password: token }, { omitDeviceId: true });
    expectSoapAnswer(res, 500);
    expect(res.fault?.errorType).toBe('InvalidEnrollmentData');
  });

  it('answers XXE and entity-expansion payloads with a MessageFormat fault and keeps serving', async () => {
    const { token } = await windowsToken();
    const device = pc();
    await device.discover('9.0');
    const url = `${net.url}/EnrollmentServer/Enrollment.svc`;
    const rst = device.rstXml(url, { password: token }, await device.csr());
    const hostile = [
      `<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>${rst.replace(device.deviceName, '&xxe;')}`,
      `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>${rst.replace(device.deviceName, '&lol2;')}`,
      `${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}`,
    ];
    for (const body of hostile) {
      const res = await device.soap(url, body);
      expectSoapAnswer(res, 500);
      expect(readFault(res.body)?.subcode).toBe('MessageFormat');
      expect(res.body).not.toMatch(/root:/);
    }
    const huge = await device.soap(url, `<s:Envelope>${'x'.repeat(2 * 1024 * 1024)}</s:Envelope>`);
    expect(huge.status).toBeGreaterThanOrEqual(400);
    expect((await device.discover('9.0')).status).toBe(200);
    expect((await device.enroll({ password: token })).status).toBe(200); // the token was never spent
  });

  it('refuses at enrollment a token revoked after the policy request, spends nothing and reports it', async () => {
    const { id, token } = await windowsToken();
    const device = pc();
    await device.discover('9.0');
    expect((await device.getPolicies({ password: token })).status).toBe(200);
    await s.api.delete(`/api/v1/enrollment-tokens/${id}`).expect(200);
    const enroll = await device.enroll({ password: token });
    expectSoapAnswer(enroll, 500);
    expect(enroll.fault?.subcode).toBe('Authentication');
    expect((await s.api.get('/api/v1/devices').query({ platform: 'windows', q: device.hwDevId }).expect(200)).body.items).toEqual([]);
    expect((await s.m.db('enrollment_tokens').where({ id }).first('uses')).uses).toBe(0);
    const failures = await s.api.get('/api/v1/reports/enrollment-failures').query({ reason: 'token_revoked', platform: 'windows' }).expect(200);
    expect(failures.body.items[0]).toMatchObject({ reason: 'token_revoked', platform: 'windows', method: 'windows_onpremise' });
  });
});

describe('enrollment rules outcome', () => {
  it('gives a first enrollment and a re-enrollment the same ownership, user, category and policy', async () => {
    const email = `rules-${crypto.randomUUID()}@example.com`;
    const policy = (await s.api.post('/api/v1/policies').send({ name: `Rules ${crypto.randomUUID()}`, settings: {} }).expect(201)).body;
    const category = (await s.api.post('/api/v1/device-categories').send({ name: `Desks ${crypto.randomUUID()}` }).expect(201)).body;
    const { token } = await windowsToken(s, { max_uses: 2, ownership: 'corporate', policy_id: policy.id, category_id: category.id });
    const device = pc({ email });
    await device.discover('9.0');
    const columns = ['ownership', 'ownership_source', 'user_id', 'user_ref', 'enrolled_by', 'counts_for_cap', 'category_id', 'category', 'policy_id', 'name', 'enrollment_trace'];
    const rowOf = async () => s.m.db('devices').where({ id: await adminIdOf(device) }).first(columns);

    expect((await device.enroll({ password: token })).status).toBe(200); // the one-statement path
    const first = await rowOf();
    const user = await s.m.db('users').where({ email }).first('id');
    expect(first).toMatchObject({
      ownership: 'corporate',
      ownership_source: 'token',
      user_id: user.id,
      user_ref: email,
      enrolled_by: null,
      counts_for_cap: true,
      category_id: category.id,
      category: category.name,
      policy_id: policy.id,
      name: device.deviceName,
    });
    expect((await device.enroll({ password: token })).status).toBe(200); // the re-enrollment transaction
    expect(await rowOf()).toEqual(first);
  });
});

describe('management identity', () => {
  it('sends no commands to a session without a client certificate', async () => {
    const { device, id } = await enrolledPc();
    const wipe = await sendCommand(id, { type: 'wipe' }).expect(202);
    const anonymous = await device.session({ clientCert: false });
    expect(anonymous.commands).toEqual([]);
    const status = anonymous.exchanges[0]!.status;
    if (status === 200) expect(anonymous.headerStatuses[0]).toMatch(/^40[137]$/);
    else expect(status).toBeGreaterThanOrEqual(400);
    expect((await s.api.get(`/api/v1/commands/${wipe.body.id}`).expect(200)).body.status).toBe('queued');
  });

  it('does not let one enrolled device take another device\'s commands with its own certificate', async () => {
    const a = await enrolledPc();
    const b = await enrolledPc();
    const wipe = await sendCommand(a.id, { type: 'wipe' }).expect(202);
    const bOwn = await sendCommand(b.id, { type: 'restart' }).expect(202);
    const forged = await b.device.session({ source: a.device.deviceId, devInfo: { Mod: 'Forged Model' } });
    expect(forged.commands).toEqual([]);
    // Nothing the forged message said was recorded, on either device.
    for (const { id } of [a, b]) expect((await s.api.get(`/api/v1/devices/${id}`).expect(200)).body.model).not.toBe('Forged Model');
    expect(forged.exchanges.map((e) => e.body).join('')).not.toContain(wipe.body.id);
    if (forged.exchanges[0]!.status === 200) expect(forged.headerStatuses[0]).toMatch(/^40[137]$/);
    expect((await s.api.get(`/api/v1/commands/${wipe.body.id}`).expect(200)).body.status).toBe('queued');
    // A refused message takes nothing from the certificate's own queue either.
    expect((await s.api.get(`/api/v1/commands/${bOwn.body.id}`).expect(200)).body.status).toBe('queued');
    const own = await a.device.session();
    expect(own.commands.map((c) => c.cmdId)).toEqual([wipe.body.id]);
  });

  it('refuses a self-made certificate for the right DeviceID', async () => {
    const { device, id } = await enrolledPc();
    const wipe = await sendCommand(id, { type: 'wipe' }).expect(202);
    const self = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: `CN=${device.deviceId}`,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      keys: await device.keys(),
      signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
    });
    const forged = await device.session({ clientCert: { certPem: self.toString('pem'), keyPem: await device.keyPem() } });
    expect(forged.commands).toEqual([]);
    expect((await s.api.get(`/api/v1/commands/${wipe.body.id}`).expect(200)).body.status).toBe('queued');
  });

  it('answers unreadable or oversized SyncML with an empty 400, in its lane and behind express, without a crash', async () => {
    const { device } = await enrolledPc();
    const identity = await device.identity();
    const url = device.provisioning!.managementUrl;
    const bodies = ['<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr>', '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><SyncML>&e;</SyncML>', `<SyncML>${'a'.repeat(1_100_000)}</SyncML>`];
    for (const target of [url, url.replace('MDM.svc', 'MDM.svc/')]) {
      for (const body of bodies) {
        const res = await device.request('POST', target, { headers: { 'content-type': SYNCML_CONTENT_TYPE }, body, tls: identity });
        expect([res.status, res.body.length]).toEqual([400, 0]);
      }
    }
    expect((await device.session()).headerStatuses).toEqual(['200']);
  });

  it('answers a session on one kept-alive connection, and refuses it at once after the device left', async () => {
    const { device, id } = await enrolledPc();
    const wipe = await sendCommand(id, { type: 'wipe' }).expect(202);
    const session = await keptAliveSession(device, 'kept-alive');
    try {
      const first = await session.post(1, '<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>');
      expect(first).toMatchObject({ header: '200', commands: [wipe.body.id] });
      // A Status only: nothing to record, answered from the session's channel.
      const second = await session.post(2, statusOf(wipe.body.id));
      expect(second).toMatchObject({ reused: true, header: '200', commands: [] });
      expect((await s.api.get(`/api/v1/commands/${wipe.body.id}`).expect(200)).body.status).toBe('acknowledged');
      const leaving =
        `<Alert><CmdID>1</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type>` +
        `<Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>`;
      expect(await session.post(3, leaving)).toMatchObject({ reused: true, header: '200' });
      expect((await s.api.get(`/api/v1/devices/${id}`).expect(200)).body.status).toBe('unenrolled');
      // The same session goes on: the channel it started with is not used any more.
      expect(await session.post(4, '<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>')).toMatchObject({ reused: true, header: '401' });
    } finally {
      session.close();
    }
  });

});

describe('hand-outs skipped while the queue has not moved (queue generation in Redis)', () => {
  let idle: TestServer;
  let idleNet: Net;
  beforeAll(async () => {
    idle = await startTestServer({ platforms: platforms(), queue: 'redis' });
    idleNet = await listenHttps(idle.m);
  });
  afterAll(async () => {
    await idleNet?.close();
    await idle?.stop();
  });

  it('skips the hand-out after one that drained the queue, until a command is queued', async () => {
    const { device, id } = await enrolledPc({}, { server: idle, net: idleNet });
    const restart = await sendCommand(id, { type: 'restart' }, idle).expect(202);
    const handOuts = jest.spyOn(idle.m.commands, 'nextMany');
    const session = await keptAliveSession(device, 'drained', idleNet);
    try {
      // The first message reports on nothing: its commands come with its identification, in one statement.
      expect(await session.post(1, '<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>')).toMatchObject({ header: '200', commands: [restart.body.id] });
      expect(handOuts).toHaveBeenCalledTimes(0);
      // That hand-out took fewer than it could: the queue is empty and nothing has moved since.
      expect(await session.post(2, statusOf(restart.body.id))).toMatchObject({ header: '200', commands: [] });
      expect(handOuts).toHaveBeenCalledTimes(0);
      expect((await idle.api.get(`/api/v1/commands/${restart.body.id}`).expect(200)).body.status).toBe('acknowledged');
      // A command queued mid-session moves the generation: the next message asks again and gets it.
      const wipe = await sendCommand(id, { type: 'wipe' }, idle).expect(202);
      expect(await session.post(3, statusOf(restart.body.id))).toMatchObject({ header: '200', commands: [wipe.body.id] });
      expect(handOuts).toHaveBeenCalledTimes(1);
    } finally {
      handOuts.mockRestore();
      session.close();
    }
  });
});

describe('WNS push channel', () => {
  let wns: TestServer;
  let wnsNet: Net;
  beforeAll(async () => {
    wns = await startTestServer({ platforms: platforms(), env: { MOORING_WNS_PFN: 'Mooring.Agent_8wekyb3d8bbwe' } });
    wnsNet = await listenHttps(wns.m);
  });
  afterAll(async () => {
    await wnsNet?.close();
    await wns?.stop();
  });

  it('asks a device for its push channel at each session start, and keeps the ChannelURI it reports', async () => {
    const { token } = await windowsToken(wns);
    const device = pc({}, wnsNet);
    await device.discover('5.0');
    await device.getPolicies({ password: token });
    expect((await device.enroll({ password: token })).status).toBe(200);
    const channel = 'https://db5p.notify.windows.com/?token=AwYAAAD-example';
    const first = await device.session({
      answer: (cmd) =>
        cmd.kind === 'Get' && cmd.items.some((i) => i.target?.endsWith('/Push/ChannelURI'))
          ? { status: '200', results: [{ source: './Vendor/MSFT/DMClient/Provider/Mooring/Push/ChannelURI', data: channel }] }
          : undefined,
    });
    const asked = first.commands.filter((c) => c.cmdId.startsWith('mooring-wns'));
    expect(asked.map((c) => c.kind)).toEqual(['Replace', 'Get']);
    const enrollment = await wns.m.db('enrollments').where({ channel_key: device.deviceId }).first();
    expect(enrollment.push_token).toBe(channel);
    // Later sessions only read the (renewable) channel again.
    const second = await device.session();
    expect(second.commands.filter((c) => c.cmdId.startsWith('mooring-wns')).map((c) => c.kind)).toEqual(['Get']);
  });
});
