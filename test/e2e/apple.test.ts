/**
 * The Apple loop over real HTTPS: simulated devices fetch and verify the signed profile, get their
 * identity by SCEP, Authenticate and TokenUpdate with Mdm-Signature; the admin locks them all in one
 * bulk request; a loopback APNs (HTTP/2, client certificate required) receives one push per device;
 * the devices poll, acknowledge, and the admin API shows every command acknowledged.
 */
import crypto from 'node:crypto';
import https from 'node:https';
import { decodePlistDict, encodePlist } from '../../protocols/apple/plist';
import type { RunningWorker } from '../../src/worker';
import { ApnsMock, createApnsTestPki, type ApnsTestPki } from '../helpers/apns-mock';
import { CONTENT_TYPES, SimulatedAppleDevice } from '../helpers/apple-device';
import { eventually } from '../helpers/recording-provider';
import { ScepClient } from '../helpers/scep-client';
import { startAppleServer, type AppleTestServer } from '../helpers/apple-server';
import type { TestServer } from '../helpers/server';

let s: TestServer;
let apple: AppleTestServer;
let pki: ApnsTestPki;
let apns: ApnsMock;
let worker: RunningWorker;
let base: string;
let topic: string;

beforeAll(async () => {
  pki = await createApnsTestPki();
  apns = await ApnsMock.start({ pki });
  apple = await startAppleServer({ apns, pki, retryDelayMs: 50, env: { MOORING_NOT_NOW_RETRY: '1' } });
  ({ s, base, topic } = apple);
  worker = s.m.startWorker();
});

afterAll(async () => {
  await worker?.stop();
  await apple?.close();
  await apns?.close();
});

async function enrollUrl(body: Record<string, unknown> = {}): Promise<string> {
  const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple', ...body }).expect(201);
  expect(t.body.enroll_url).toMatch(new RegExp(`^${base}/enroll/apple\\?token=`));
  return t.body.enroll_url as string;
}

async function enrolled(osName: 'ios' | 'macos' = 'ios', extra: Partial<Parameters<typeof SimulatedAppleDevice.create>[0]> = {}): Promise<SimulatedAppleDevice> {
  const device = SimulatedAppleDevice.create({ os: osName, caPem: s.m.ca.certPem, ...extra });
  await device.enroll(await enrollUrl());
  return device;
}

async function deviceIdOf(d: SimulatedAppleDevice): Promise<string> {
  const list = await s.api.get('/api/v1/devices').query({ platform: 'apple', limit: 200 }).expect(200);
  const found = (list.body.items as Array<{ id: string; udid: string }>).find((x) => x.udid === d.udid);
  if (!found) throw new Error(`device ${d.udid} not listed`);
  return found.id;
}

it('enrolls 20 devices, locks them all in one bulk request, pushes once each, and sees every lock acknowledged', async () => {
  const devices: SimulatedAppleDevice[] = [];
  for (let i = 0; i < 20; i++) devices.push(await enrolled('ios'));
  const first = devices[0]!;
  expect(first.profile).toMatchObject({ topic, serverUrl: `${base}/mdm/connect`, checkInUrl: `${base}/mdm/checkin` });

  const ids = await Promise.all(devices.map(deviceIdOf));
  const shown = await s.api.get(`/api/v1/devices/${ids[0]}`).expect(200);
  expect(shown.body).toMatchObject({ platform: 'apple', status: 'enrolled', udid: first.udid, serial_number: first.serial, model: first.productName });

  apns.reset();
  const bulk = await s.api.post('/api/v1/commands').send({ device_ids: ids, type: 'lock', params: { message: 'Call IT' } }).expect(202);
  await eventually(() => apns.delivered.length >= 20, 15_000, 'one APNs push per device');
  for (const d of devices) {
    const pushes = apns.delivered.filter((p) => p.token === d.token.toString('hex'));
    expect(pushes).toHaveLength(1);
    expect(pushes[0]).toMatchObject({ topic, pushType: 'mdm', priority: '10', clientCertTopic: topic });
    expect(JSON.parse(pushes[0]!.body)).toEqual({ mdm: d.pushMagic });
  }

  const sessions = await Promise.all(devices.map((d) => d.runSession()));
  for (const handled of sessions) expect(handled).toEqual([expect.objectContaining({ requestType: 'DeviceLock', status: 'Acknowledged' })]);
  expect(bulk.body.accepted).toHaveLength(20);
  const batchId = bulk.body.batch_id;
  const commands = await Promise.all(ids.map((id) => s.api.get(`/api/v1/devices/${id}/commands`).expect(200)));
  for (const c of commands) expect(c.body.items).toEqual([expect.objectContaining({ type: 'lock', status: 'acknowledged' })]);
  expect(batchId).toBeTruthy();
}, 120_000);

it('hands out DeviceInformation and records the inventory the device reports', async () => {
  const d = await enrolled('ios');
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'device_info' }).expect(202);
  expect(await d.runSession()).toEqual([expect.objectContaining({ requestType: 'DeviceInformation', status: 'Acknowledged' })]);
  const done = await s.api.get(`/api/v1/commands/${cmd.body.id}`).expect(200);
  expect(done.body.status).toBe('acknowledged');
  expect(done.body.result.QueryResponses).toMatchObject({ UDID: d.udid, SerialNumber: d.serial });
  const device = await s.api.get(`/api/v1/devices/${id}`).expect(200);
  expect(device.body).toMatchObject({ name: d.deviceName, os_version: d.osVersion });
  expect(device.body.inventory.device_information).toMatchObject({ SerialNumber: d.serial });
});

it('NotNow keeps the command, hands out the next one, and pushes again later', async () => {
  let refuse = true;
  const d = await enrolled('macos', { notNow: (type) => type === 'ProfileList' && refuse });
  const id = await deviceIdOf(d);
  const list = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'profile_list' }).expect(202);
  const info = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'device_info' }).expect(202);
  const first = await d.runSession();
  // The NotNow'd command is not handed out again in the same session, only at the next Idle.
  expect(first.map((h) => [h.requestType, h.status])).toEqual([
    ['ProfileList', 'NotNow'],
    ['DeviceInformation', 'Acknowledged'],
  ]);
  expect((await s.api.get(`/api/v1/commands/${list.body.id}`)).body.status).toBe('not_now');
  expect((await s.api.get(`/api/v1/commands/${info.body.id}`)).body.status).toBe('acknowledged');
  const token = d.token.toString('hex');
  const before = apns.delivered.filter((p) => p.token === token).length;
  await eventually(() => apns.delivered.filter((p) => p.token === token).length > before, 15_000, 'the re-push after NotNow');
  refuse = false;
  expect((await d.runSession()).map((h) => [h.requestType, h.status])).toEqual([['ProfileList', 'Acknowledged']]);
  const done = await s.api.get(`/api/v1/commands/${list.body.id}`).expect(200);
  expect(done.body.status).toBe('acknowledged');
  expect(done.body.result.ProfileList).toEqual(expect.arrayContaining([expect.objectContaining({ PayloadIdentifier: expect.any(String) })]));
}, 60_000);

it('applies a replayed report once', async () => {
  const d = await enrolled('ios');
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'device_info' }).expect(202);
  const handed = await d.idle();
  expect(handed.command?.CommandUUID).toBe(cmd.body.id);
  const answer = d.respond(handed.command!);
  expect((await d.report(answer)).status).toBe(200);
  const afterFirst = await s.api.get(`/api/v1/commands/${cmd.body.id}`).expect(200);
  const replay = await d.report(answer);
  expect(replay.status).toBe(200);
  expect(replay.body.length).toBe(0);
  const afterReplay = await s.api.get(`/api/v1/commands/${cmd.body.id}`).expect(200);
  expect(afterReplay.body).toEqual(afterFirst.body);
  const events = await s.api.get('/api/v1/events').query({ device_id: id, type: 'command.acknowledged' }).expect(200);
  expect(events.body.items).toHaveLength(1);
});

it("refuses a request signed with another device's certificate (400) and delivers it nothing", async () => {
  const victim = await enrolled('ios');
  const thief = await enrolled('ios');
  const id = await deviceIdOf(victim);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'wipe' }).expect(202);
  const body = Buffer.from(encodePlist({ UDID: victim.udid, Status: 'Idle' }));
  const res = await thief.send(victim.profile!.serverUrl, CONTENT_TYPES.report, body);
  expect(res.status).toBe(400);
  expect(res.body.toString()).not.toContain('EraseDevice');
  expect((await s.api.get(`/api/v1/commands/${cmd.body.id}`)).body.status).toBe('queued');
  // Nor may the thief re-bind the victim's UDID to its own certificate.
  const auth = Buffer.from(encodePlist({ ...victim.authenticateMessage() }));
  expect((await thief.send(victim.profile!.checkInUrl, CONTENT_TYPES.checkin, auth)).status).toBe(400);
  expect((await victim.runSession()).map((h) => h.requestType)).toEqual(['EraseDevice']);
});

it('refuses a tampered body (400), an unsigned one (400), and never answers 401', async () => {
  const d = await enrolled('ios');
  const body = Buffer.from(encodePlist({ UDID: d.udid, Status: 'Idle' }));
  const tampered = await d.send(d.profile!.serverUrl, CONTENT_TYPES.report, body, { tamper: true });
  expect(tampered.status).toBe(400);
  const unsigned = await d.send(d.profile!.serverUrl, CONTENT_TYPES.report, body, { signWith: null });
  expect(unsigned.status).toBe(400);
  for (const garbage of [Buffer.from('not a plist'), crypto.randomBytes(512), Buffer.from('<?xml version="1.0"?><plist><dict><key>MessageType</key><string>Teleport</string><key>UDID</key><string>x</string></dict></plist>')]) {
    const res = await d.send(d.profile!.checkInUrl, CONTENT_TYPES.checkin, garbage);
    expect(res.status).toBe(400);
    expect(res.body.toString()).not.toMatch(/at .*\.ts|Error:/);
  }
  const huge = await d.send(d.profile!.serverUrl, CONTENT_TYPES.report, Buffer.alloc(2 * 1024 * 1024, 0x41));
  expect(huge.status).toBe(400);
  const scep = `${d.profile!.scepUrl}?operation=PKIOperation`;
  expect((await d.send(scep, CONTENT_TYPES.pkiMessage, Buffer.alloc(512 * 1024, 0x30), { signWith: null, method: 'POST' })).status).toBe(400);
  expect((await d.send(scep, CONTENT_TYPES.pkiMessage, crypto.randomBytes(900), { signWith: null, method: 'POST' })).status).toBe(400);
});

it('refuses the profile for an expired, revoked or used-up token with a 403 page', async () => {
  const d = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem });
  const expired = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple', expires_in: 3600 }).expect(201);
  await s.m.db('enrollment_tokens').where({ id: expired.body.id }).update({ expires_at: new Date(Date.now() - 1000) });
  const res = await d.fetchProfile(expired.body.enroll_url);
  expect(res.status).toBe(403);
  expect(res.contentType).toMatch(/text\/html/);
  expect(res.body.toString()).toContain('expired');

  const revoked = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
  await s.api.delete(`/api/v1/enrollment-tokens/${revoked.body.id}`).expect(200);
  expect((await d.fetchProfile(revoked.body.enroll_url)).status).toBe(403);

  const once = await enrollUrl({ one_time: true });
  await d.enroll(once);
  const again = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem });
  expect((await again.fetchProfile(once)).status).toBe(403);
});

it('escrows the bootstrap token sealed at rest and answers the empty declaration set', async () => {
  const mac = await enrolled('macos');
  const token = crypto.randomBytes(48);
  expect((await mac.setBootstrapToken(token)).status).toBe(200);
  expect((await mac.getBootstrapToken()).token?.equals(token)).toBe(true);
  const stored = await s.m.db('apple_devices').where({ device_id: await deviceIdOf(mac) }).first('bootstrap_token_sealed');
  expect(stored.bootstrap_token_sealed).not.toContain(token.toString('base64'));

  const tokens = await mac.declarativeManagement('tokens');
  expect(tokens.json).toMatchObject({ SyncTokens: { DeclarationsToken: expect.any(String), Timestamp: expect.any(String) } });
  const items = await mac.declarativeManagement('declaration-items');
  expect(items.json).toMatchObject({ Declarations: { Activations: [], Configurations: [], Assets: [], Management: [] } });
  expect((await mac.declarativeManagement('status', { StatusItems: {}, Errors: [] })).status).toBe(200);

  const user = await mac.checkin({ MessageType: 'UserAuthenticate', UDID: mac.udid, UserID: crypto.randomUUID().toUpperCase(), UserShortName: 'ada', UserLongName: 'Ada' });
  expect(user.status).toBe(410);
  const getToken = await mac.checkin({ MessageType: 'GetToken', UDID: mac.udid, TokenServiceType: 'com.apple.maid' });
  expect(getToken.status).toBe(400);
});

it('CheckOut unenrolls the device and cancels its queue', async () => {
  const d = await enrolled('ios');
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'device_info' }).expect(202);
  expect((await d.checkOut()).status).toBe(200);
  expect((await s.api.get(`/api/v1/devices/${id}`)).body.status).toBe('unenrolled');
  expect((await s.api.get(`/api/v1/commands/${cmd.body.id}`)).body.status).toBe('canceled');
  expect((await d.idle()).status).toBe(400);
});

it('escrows the UnlockToken sealed and adds it to ClearPasscode only at hand-out', async () => {
  const d = await enrolled('ios');
  expect(d.unlockToken).toBeDefined();
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'clear_passcode' }).expect(202);
  const row = await s.m.db('commands').where({ id: cmd.body.id }).first('payload');
  expect(row.payload).not.toContain('UnlockToken');
  const handed = await d.idle();
  expect(handed.command?.Command).toMatchObject({ RequestType: 'ClearPasscode' });
  expect(Buffer.isBuffer(handed.command?.Command.UnlockToken) && (handed.command!.Command.UnlockToken as Buffer).equals(d.unlockToken!)).toBe(true);
});

it('takes check-ins and reports on /mdm too, told apart by Content-Type (NanoMDM-style ServerURL)', async () => {
  const d = await enrolled('ios');
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'security_info' }).expect(202);
  const tokenUpdate = await d.send(`${base}/mdm`, CONTENT_TYPES.checkin, Buffer.from(encodePlist(d.tokenUpdateMessage())));
  expect(tokenUpdate.status).toBe(200);
  const idle = await d.send(`${base}/mdm`, CONTENT_TYPES.report, Buffer.from(encodePlist({ UDID: d.udid, Status: 'Idle' })));
  expect(idle.status).toBe(200);
  expect(idle.body.toString()).toContain(cmd.body.id);
  expect(idle.body.toString()).toContain('SecurityInfo');
});

it('answers the same behind express as in its lane: the path with a trailing slash misses the lane', async () => {
  const d = await enrolled('ios');
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'security_info' }).expect(202);
  const idle = Buffer.from(encodePlist({ UDID: d.udid, Status: 'Idle' }));
  const viaRouter = await d.send(`${d.profile!.serverUrl}/`, CONTENT_TYPES.report, idle);
  expect(viaRouter.status).toBe(200);
  expect(viaRouter.headers['content-type']).toBe('application/xml; charset=utf-8');
  expect(viaRouter.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(viaRouter.body.toString()).toContain(cmd.body.id);
  for (const url of [d.profile!.serverUrl, `${d.profile!.serverUrl}/`]) {
    const tampered = await d.send(url, CONTENT_TYPES.report, idle, { tamper: true });
    expect([tampered.status, tampered.headers['content-type'], tampered.body.toString()]).toEqual([400, 'text/plain; charset=utf-8', 'Bad Request']);
    const empty = await d.send(url, CONTENT_TYPES.report, idle, { signWith: null, headers: { 'x-request-id': 'probe-1' } });
    expect([empty.status, empty.headers['x-request-id']]).toEqual([400, 'probe-1']);
  }
});

it('answers SCEP the same in its lane as behind express (`/scep/` misses the lane)', async () => {
  for (const query of ['operation=GetCACaps', 'operation=GetCACert', 'operation=Nope', 'operation=PKIOperation']) {
    const [lane, router] = await Promise.all([s.api.get(`/scep?${query}`).responseType('blob'), s.api.get(`/scep/?${query}`).responseType('blob')]);
    expect([lane.status, lane.headers['content-type'], lane.headers['content-length']]).toEqual([router.status, router.headers['content-type'], router.headers['content-length']]);
    expect(lane.body).toEqual(router.body);
    expect(Buffer.isBuffer(lane.body) && lane.body.length > 0).toBe(true);
    expect(lane.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  }
  const caps = await s.api.get('/scep?operation=GetCACaps').expect(200);
  expect(caps.headers['content-type']).toBe('text/plain; charset=utf-8');
  expect(caps.text.split('\n')).toEqual(expect.arrayContaining(['POSTPKIOperation', 'SHA-256', 'AES', 'SCEPStandard', 'Renewal']));
  expect((await s.api.get('/scep?operation=GetCACert').expect(200)).headers['content-type']).toBe('application/x-x509-ca-cert');
});

it('also accepts the identity as a TLS client certificate (SignMessage off), and through a trusted proxy header only when configured', async () => {
  const d = await enrolled('ios');
  const id = await deviceIdOf(d);
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'profile_list' }).expect(202);
  const body = Buffer.from(encodePlist({ UDID: d.udid, Status: 'Idle' }));
  const viaTls = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const url = new URL(d.profile!.serverUrl);
    const req = https.request(
      { host: '127.0.0.1', servername: 'localhost', port: url.port, path: url.pathname, method: 'PUT', ca: s.m.ca.certPem, cert: d.identity!.certPem, key: d.identity!.keyPem, headers: { 'content-type': CONTENT_TYPES.report } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  expect(viaTls.status).toBe(200);
  expect(viaTls.text).toContain(cmd.body.id);
  // Over plain HTTP a certificate header is ignored unless MOORING_TRUSTED_PROXY_CERT_HEADER names it.
  const header = `:${d.identity!.certDer.toString('base64')}:`;
  const unproxied = await s.api.put('/mdm/connect').set('content-type', CONTENT_TYPES.report).set('client-cert', header).send(body);
  expect(unproxied.status).toBe(400);
});

it('issues one certificate for a challenge sent twice at once, and spends one token use', async () => {
  const url = await enrollUrl({ max_uses: 5 });
  const d = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem });
  expect((await d.fetchProfile(url)).verified).toBe(true);
  const challenge = d.profile!.challenge!;
  const clients = await Promise.all([ScepClient.create('a'), ScepClient.create('b')]);
  const messages = await Promise.all(clients.map((c) => c.request({ caCertPem: s.m.ca.certPem, challenge, encryption: 'aes256' })));
  const scepUrl = `${d.profile!.scepUrl}?operation=PKIOperation`;
  const answers = await Promise.all(messages.map((m) => d.send(scepUrl, CONTENT_TYPES.pkiMessage, m.der, { signWith: null, method: 'POST' })));
  const results = await Promise.all(answers.map((a, i) => clients[i]!.checkCertRep(a.body, { caCert: s.m.ca.certPem, transactionId: messages[i]!.transactionId, senderNonce: messages[i]!.senderNonce })));
  expect(results.map((r) => r.status).sort()).toEqual(['FAILURE', 'SUCCESS']);
  expect(results.find((r) => r.status === 'FAILURE')!.failInfo).toBe('badRequest');
  const token = await s.m.db('enrollment_tokens').whereNotNull('max_uses').orderBy('created_at', 'desc').first('id', 'uses');
  expect(token.uses).toBe(1);
  const certs = await s.m.db('issued_certificates').where({ enrollment_token_id: token.id }).select('id');
  expect(certs).toHaveLength(1);
});

it('refuses an unknown challenge, a used one and one whose token was revoked (badRequest), and records nothing for them', async () => {
  const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple', max_uses: 5 }).expect(201);
  const d = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem });
  const challengeOf = async () => {
    expect((await d.fetchProfile(t.body.enroll_url as string)).verified).toBe(true);
    return d.profile!.challenge!;
  };
  const ask = async (challenge: string) => {
    const client = await ScepClient.create('device');
    const m = await client.request({ caCertPem: s.m.ca.certPem, challenge, encryption: 'aes256' });
    const answer = await d.send(`${d.profile!.scepUrl}?operation=PKIOperation`, CONTENT_TYPES.pkiMessage, m.der, { signWith: null, method: 'POST' });
    return client.checkCertRep(answer.body, { caCert: s.m.ca.certPem, transactionId: m.transactionId, senderNonce: m.senderNonce });
  };
  const recorded = async () => {
    const [certs] = await s.m.db('issued_certificates').count<{ count: string }[]>({ count: '*' });
    const [events] = await s.m.db('events').where({ type: 'apple.identity_issued' }).count<{ count: string }[]>({ count: '*' });
    const token = await s.m.db('enrollment_tokens').where({ id: t.body.id }).first('uses');
    return { certs: Number(certs!.count), events: Number(events!.count), uses: token.uses as number };
  };
  const refused = { status: 'FAILURE', failInfo: 'badRequest' };

  const first = await challengeOf();
  const before = await recorded();
  expect(await ask(crypto.randomBytes(24).toString('base64url'))).toMatchObject(refused);
  expect(await recorded()).toEqual(before);

  expect(await ask(first)).toMatchObject({ status: 'SUCCESS' });
  const afterOne = await recorded();
  expect(afterOne).toEqual({ certs: before.certs + 1, events: before.events + 1, uses: before.uses + 1 });
  expect(await ask(first)).toMatchObject(refused);
  expect(await recorded()).toEqual(afterOne);

  const second = await challengeOf();
  await s.api.delete(`/api/v1/enrollment-tokens/${t.body.id}`).expect(200);
  expect(await ask(second)).toMatchObject(refused);
  expect(await recorded()).toEqual(afterOne);
  const hash = crypto.createHash('sha256').update(second).digest('hex');
  expect(await s.m.db('scep_challenges').where({ challenge_hash: hash }).first('used_at')).toEqual({ used_at: null });
});

it('forgets expired SCEP challenges in the worker sweep, and a profile download no longer enrolls after its challenge expired', async () => {
  const url = await enrollUrl();
  const d = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem });
  expect((await d.fetchProfile(url)).verified).toBe(true);
  const hash = crypto.createHash('sha256').update(d.profile!.challenge!).digest('hex');
  await s.m.db('scep_challenges').where({ challenge_hash: hash }).update({ expires_at: new Date(Date.now() - 1000) });
  await expect(d.scep()).rejects.toThrow(/badRequest|FAILURE/);
  const sweeper = s.m.startWorker({ expireEveryMs: 50 });
  try {
    await eventually(async () => !(await s.m.db('scep_challenges').where({ challenge_hash: hash }).first()), 10_000, 'the expired challenge pruned');
  } finally {
    await sweeper.stop();
  }
});

it('with user channels accepted, a macOS user gets its own channel (UDID:UserID) bound through the device', async () => {
  const accepting = await startAppleServer({ env: { MOORING_APPLE_USER_CHANNELS: 'accept' } });
  try {
    const t = await accepting.s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
    const mac = SimulatedAppleDevice.create({ os: 'macos', caPem: accepting.s.m.ca.certPem });
    await mac.enroll(t.body.enroll_url);
    const user = { UDID: mac.udid, UserID: crypto.randomUUID().toUpperCase(), UserShortName: 'ada', UserLongName: 'Ada Lovelace' };
    const first = await mac.checkin({ MessageType: 'UserAuthenticate', ...user });
    expect(first.status).toBe(200);
    expect(decodePlistDict(first.body)).toEqual({ DigestChallenge: '' });
    expect((await mac.checkin({ MessageType: 'UserAuthenticate', ...user, DigestResponse: '' })).status).toBe(200);
    const tokenUpdate = { MessageType: 'TokenUpdate', ...user, Topic: accepting.topic, PushMagic: 'user-magic', Token: crypto.randomBytes(32) };
    expect((await mac.checkin(tokenUpdate)).status).toBe(200);
    const channel = await accepting.s.m.db('enrollments').where({ channel_key: `${mac.udid}:${user.UserID}` }).first('channel_type', 'status', 'push_magic');
    expect(channel).toEqual({ channel_type: 'user', status: 'enrolled', push_magic: 'user-magic' });
    const idle = await mac.report({ ...user, Status: 'Idle' });
    expect([idle.status, idle.body.length]).toEqual([200, 0]);
    // Another device's certificate cannot speak for this user channel.
    const other = SimulatedAppleDevice.create({ os: 'macos', caPem: accepting.s.m.ca.certPem });
    const t2 = await accepting.s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
    await other.enroll(t2.body.enroll_url);
    expect((await other.report({ ...user, Status: 'Idle' })).status).toBe(400);
  } finally {
    await accepting.close();
  }
});
