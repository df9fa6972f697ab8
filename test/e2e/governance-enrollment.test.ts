/**
 * Enrollment governance through the real enrollment paths: a simulated Windows PC (MS-MDE2 SOAP over
 * HTTPS, OnPremise and Federated), a simulated Android DPC (JSON over HTTP) and a simulated iPhone
 * (signed profile, SCEP, signed check-ins over HTTPS) meet device limits, enrollment managers,
 * platform, OS version and manufacturer restrictions, terms of use, pre-approval and corporate
 * identifiers. Each test checks three things: the answer exactly as the device (or the person at it)
 * sees it, the refusal recorded for the failures report, and the device record after a success.
 *
 * Restrictions are created per test and assigned to that test's own user (unique emails), terms are
 * scoped to a per-test directory group, and the one deployment-wide switch (preapproved_only) is
 * restored in a finally, so tests do not see each other's rules.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import supertest from 'supertest';
import { AndroidCommands } from '../../protocols/android/commands';
import { WindowsCommands } from '../../protocols/windows/commands';
import { REFUSAL_MESSAGES } from '../../src/core/enrollment-policy';
import { PlatformRegistry } from '../../src/core/platforms';
import { escapeHtml } from '../../src/http/enrollment-pages';
import { CONTENT_TYPES, SimulatedAppleDevice } from '../helpers/apple-device';
import { startAppleServer, type AppleTestServer } from '../helpers/apple-server';
import { SimulatedDpc, listenOnLoopback, type Mode } from '../helpers/dpc-simulator';
import { startTestServer, type TestServer } from '../helpers/server';
import { listenHttps, readForm, SimulatedWindowsDevice, SOAP_CONTENT_TYPE, type EnrollAnswer } from '../helpers/windows-device';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ACTIVITY = /\(activity ([0-9a-f-]{36})\)/;
let seq = 0;
/** An email (and name stem) no other test uses. */
const unique = (prefix: string) => `${prefix}-${++seq}-${crypto.randomBytes(3).toString('hex')}@contoso.example`;

interface Net {
  url: string;
  caPem: string;
  close(): Promise<void>;
}

interface Failure {
  activity_id: string;
  created_at: string;
  platform: string;
  method: string;
  user: string | null;
  reason: string;
  detail: string;
  os: string | null;
  os_version: string | null;
  serial_number: string | null;
  manufacturer: string | null;
  model: string | null;
}

/** The user's refused enrollments from the failures report, newest first. */
async function failuresOf(s: TestServer, user: string): Promise<Failure[]> {
  const res = await s.api.get('/api/v1/reports/enrollment-failures').query({ user }).expect(200);
  return res.body.items;
}

/** The one report entry with this activity id (the id the device was shown). */
async function failure(s: TestServer, user: string, activityId: string): Promise<Failure> {
  const found = (await failuresOf(s, user)).filter((f) => f.activity_id === activityId);
  expect(found).toHaveLength(1);
  return found[0]!;
}

async function restriction(s: TestServer, body: Record<string, unknown>): Promise<string> {
  const res = await s.api.post('/api/v1/enrollment-restrictions').send({ name: `test ${++seq}`, ...body });
  expect(res.status).toBe(201);
  return res.body.id;
}

async function createUser(s: TestServer, body: Record<string, unknown>): Promise<{ id: string; email: string }> {
  const res = await s.api.post('/api/v1/users').send(body);
  expect(res.status).toBe(201);
  return res.body;
}

async function userIdByEmail(s: TestServer, email: string): Promise<string> {
  const res = await s.api.get('/api/v1/users').query({ q: email }).expect(200);
  const found = (res.body.items as Array<{ id: string; email: string }>).filter((u) => u.email === email.toLowerCase());
  expect(found).toHaveLength(1);
  return found[0]!.id;
}

/** Terms assigned to one directory group only, so only that test's user is asked. */
async function termsFor(s: TestServer, group: string): Promise<{ id: string; version: number; title: string; summary: string; text: string }> {
  const n = ++seq;
  const res = await s.api
    .post('/api/v1/terms')
    .send({
      name: `Acceptable use ${n}`,
      title: `Contoso acceptable use ${n}`,
      summary: `Company data on this device may be wiped (${n}).`,
      text: `1. The device stays encrypted.\n2. IT may erase company data. <script>alert(${n})</script>`,
      assign_all_users: false,
      assign_groups: [group],
    });
  expect(res.status).toBe(201);
  expect(res.body.version).toBe(1);
  return res.body;
}

async function acceptances(s: TestServer, termsId: string): Promise<Array<{ user_id: string; version: number }>> {
  return s.m.db('terms_acceptances').where({ terms_id: termsId }).select('user_id', 'version');
}

// =====================================================================================================
// Windows
// =====================================================================================================

describe('Windows', () => {
  const winPlatforms = () => new PlatformRegistry().register(new WindowsCommands());
  let s: TestServer;
  let net: Net;
  beforeAll(async () => {
    s = await startTestServer({ platforms: winPlatforms() });
    net = await listenHttps(s.m);
  });
  afterAll(async () => {
    await net?.close();
    await s?.stop();
  });

  async function windowsToken(server: TestServer, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await server.api.post('/api/v1/enrollment-tokens').send({ platform: 'windows', ...extra }).expect(201);
    return res.body.token;
  }

  function pc(opts: Partial<ConstructorParameters<typeof SimulatedWindowsDevice>[0]> = {}, on: Net = net): SimulatedWindowsDevice {
    return new SimulatedWindowsDevice({ baseUrl: on.url, caPem: on.caPem, ...opts });
  }

  /** Discovery, policy and enrollment OnPremise: the email as user name, the token as password. */
  async function enrollOnPremise(device: SimulatedWindowsDevice, token: string): Promise<EnrollAnswer> {
    expect((await device.discover('9.0')).status).toBe(200);
    const policy = await device.getPolicies({ password: token });
    expect(policy.status).toBe(200); // the policy step only looks at the token
    return device.enroll({ password: token });
  }

  function expectEnrolled(answer: EnrollAnswer): void {
    expect(answer.fault).toBeUndefined();
    expect(answer.status).toBe(200);
    expect(answer.provisioning).toBeDefined();
  }

  /** A refusal as the PC reads it: HTTP 500, SOAP, s:Receiver / s:Authorization, the ErrorType, the message. Returns the activity id. */
  function expectRefusal(answer: EnrollAnswer, errorType: string, reason: keyof typeof REFUSAL_MESSAGES): string {
    expect(answer.status).toBe(500);
    expect(answer.contentType).toBe(SOAP_CONTENT_TYPE);
    expect(answer.provisioning).toBeUndefined();
    expect(answer.fault).toMatchObject({ code: 'Receiver', subcode: 'Authorization', errorType });
    expect(answer.fault!.reason.startsWith(REFUSAL_MESSAGES[reason])).toBe(true);
    // The detail (counts, restriction names) stays in the report; the PC gets the user message and the id.
    expect(answer.body).toContain(`<ErrorType>${errorType}</ErrorType>`);
    const id = ACTIVITY.exec(answer.fault!.reason)?.[1];
    expect(id).toMatch(UUID);
    return id!;
  }

  async function deviceOf(device: SimulatedWindowsDevice, server: TestServer = s): Promise<Record<string, unknown>> {
    const list = await server.api.get('/api/v1/devices').query({ platform: 'windows', q: device.hwDevId }).expect(200);
    expect(list.body.items).toHaveLength(1);
    return (await server.api.get(`/api/v1/devices/${list.body.items[0].id}`).expect(200)).body;
  }

  it('refuses the third device of a user limited to 2 with DeviceCapReached, and still re-enrolls one of the first two', async () => {
    const email = unique('cap');
    const limitId = await restriction(s, { kind: 'device_limit', assign_users: [email], settings: { limit: 2 } });
    const token = await windowsToken(s);
    const [first, second, third] = [pc({ email }), pc({ email }), pc({ email })];

    expectEnrolled(await enrollOnPremise(first!, token));
    expectEnrolled(await enrollOnPremise(second!, token));
    const refused = await enrollOnPremise(third!, token);
    const activityId = expectRefusal(refused, 'DeviceCapReached', 'device_cap_reached');
    expect(refused.fault!.reason).toBe(`${REFUSAL_MESSAGES.device_cap_reached} (activity ${activityId})`);

    // Recorded with the detail an admin needs.
    const recorded = await failure(s, email, activityId);
    expect(recorded).toMatchObject({ platform: 'windows', method: 'windows_onpremise', user: email, reason: 'device_cap_reached', os: 'windows', os_version: third!.osVersion });
    expect(recorded.detail).toBe(`${email} already has 2 enrolled devices, the most allowed (2); remove one or ask for a higher limit`);
    const attempt = await s.m.db('enrollment_attempts').where({ activity_id: activityId }).first();
    expect(attempt.trace).toMatchObject({ device_limit_restriction: { id: limitId, limit: 2 }, device_count: 2 });
    const event = await s.m.db('events').where({ type: 'enrollment.refused' }).whereRaw(`data->>'activity_id' = ?`, [activityId]).first();
    expect(event.data).toMatchObject({ reason: 'device_cap_reached', platform: 'windows', method: 'windows_onpremise' });
    // The refused PC is not in the device list.
    expect((await s.api.get('/api/v1/devices').query({ platform: 'windows', q: third!.hwDevId }).expect(200)).body.items).toEqual([]);

    // A re-enrollment of the first PC (same DeviceID and HWDevID) is not a new device.
    const again = await first!.enroll({ password: token });
    expectEnrolled(again);

    const userId = await userIdByEmail(s, email);
    for (const d of [first!, second!]) {
      const shown = await deviceOf(d);
      expect(shown).toMatchObject({
        status: 'enrolled',
        hardware_id: d.hwDevId,
        user: email,
        user_id: userId,
        enrolled_by: null,
        ownership: 'personal',
        ownership_source: 'default',
      });
      expect(shown.enrollment_trace).toMatchObject({ device_limit_restriction: { id: limitId, limit: 2 } });
    }
    expect((await s.api.get('/api/v1/devices').query({ platform: 'windows', q: email }).expect(200)).body.items).toHaveLength(2);
    // Only the third PC was refused.
    expect((await failuresOf(s, email)).map((f) => f.reason)).toEqual(['device_cap_reached']);
  });

  it('lets a device enrollment manager limited to 1 enroll 3 corporate devices that belong to no user', async () => {
    const email = unique('dem');
    const dem = await createUser(s, { email, name: 'Enrollment Manager', is_dem: true });
    await restriction(s, { kind: 'device_limit', assign_users: [email], settings: { limit: 1 } });
    const token = await windowsToken(s);

    const pcs = [pc({ email }), pc({ email }), pc({ email })];
    for (const d of pcs) expectEnrolled(await enrollOnPremise(d, token));

    for (const d of pcs) {
      const shown = await deviceOf(d);
      expect(shown).toMatchObject({ status: 'enrolled', ownership: 'corporate', ownership_source: 'dem', user: null, user_id: null, enrolled_by: dem.id });
      expect(shown.enrollment_trace).toMatchObject({ dem: true, ownership_source: 'dem' });
    }
    expect(await failuresOf(s, email)).toEqual([]);
    const shownUser = await s.api.get(`/api/v1/users/${dem.id}`).expect(200);
    expect(shownUser.body).toMatchObject({ is_dem: true, dem_device_count: 3, device_count: 0 });
  });

  it('answers a blocked platform and an OS below the minimum with DeviceNotSupported, and reports both', async () => {
    const blockedUser = unique('winblocked');
    const oldOsUser = unique('winold');
    await restriction(s, { kind: 'platform', assign_users: [blockedUser], settings: { platforms: { windows: { allowed: false } } } });
    const minId = await restriction(s, { kind: 'platform', assign_users: [oldOsUser], settings: { platforms: { windows: { os_min: '10.0.22000.0' } } } });
    const token = await windowsToken(s);

    const blocked = pc({ email: blockedUser });
    const blockedId = expectRefusal(await enrollOnPremise(blocked, token), 'DeviceNotSupported', 'platform_blocked');
    const win10 = pc({ email: oldOsUser, osVersion: '10.0.19045.4170' });
    const oldId = expectRefusal(await enrollOnPremise(win10, token), 'DeviceNotSupported', 'os_version_not_allowed');
    // The same user on Windows 11 is let in.
    const win11 = pc({ email: oldOsUser, osVersion: '10.0.22631.4169' });
    expectEnrolled(await enrollOnPremise(win11, token));
    expect((await deviceOf(win11)).enrollment_trace).toMatchObject({ platform_restriction: { id: minId } });

    for (const d of [blocked, win10]) {
      expect((await s.api.get('/api/v1/devices').query({ platform: 'windows', q: d.hwDevId }).expect(200)).body.items).toEqual([]);
    }
    expect(await failure(s, blockedUser, blockedId)).toMatchObject({ reason: 'platform_blocked', platform: 'windows', method: 'windows_onpremise', user: blockedUser, os: 'windows' });
    const old = await failure(s, oldOsUser, oldId);
    expect(old).toMatchObject({ reason: 'os_version_not_allowed', platform: 'windows', user: oldOsUser, os: 'windows', os_version: '10.0.19045.4170' });
    expect(old.detail).toBe('Windows 10.0.19045.4170 is below the minimum 10.0.22000.0');

    const report = await s.api.get('/api/v1/reports/enrollment-failures').query({ platform: 'windows' }).expect(200);
    const ids = (report.body.items as Failure[]).map((f) => [f.activity_id, f.reason]);
    expect(ids).toEqual(expect.arrayContaining([[blockedId, 'platform_blocked'], [oldId, 'os_version_not_allowed']]));
    const summary = Object.fromEntries((report.body.summary as Array<{ reason: string; count: number }>).map((r) => [r.reason, r.count]));
    expect(summary.platform_blocked).toBeGreaterThanOrEqual(1);
    expect(summary.os_version_not_allowed).toBeGreaterThanOrEqual(1);
    const byReason = await s.api.get('/api/v1/reports/enrollment-failures').query({ reason: 'os_version_not_allowed' }).expect(200);
    expect((byReason.body.items as Failure[]).map((f) => f.activity_id)).toContain(oldId);
    expect((byReason.body.items as Failure[]).every((f) => f.reason === 'os_version_not_allowed')).toBe(true);
  });

  describe('Federated sign-in with terms of use', () => {
    let fed: TestServer;
    let fedNet: Net;
    beforeAll(async () => {
      fed = await startTestServer({ platforms: winPlatforms(), env: { MOORING_WINDOWS_AUTH_POLICY: 'Federated' } });
      fedNet = await listenHttps(fed.m);
    });
    afterAll(async () => {
      await fedNet?.close();
      await fed?.stop();
    });

    const appru = 'ms-app://windows.immersivecontrolpanel';
    const postForm = (device: SimulatedWindowsDevice, fields: URLSearchParams) =>
      device.request('POST', `${fedNet.url}/EnrollmentServer/Auth`, { headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' }, body: fields.toString() });

    it('shows the terms after the code, hands the token back only once they are ticked, and does not ask the same user again', async () => {
      const group = `fed-${++seq}`;
      const email = unique('fed');
      const user = await createUser(fed, { email, groups: [group] });
      const terms = await termsFor(fed, group);
      const token = await windowsToken(fed, { user: email });

      const device = pc({ email, enrollmentType: 'Device' }, fedNet);
      expect((await device.discover('9.0')).result).toMatchObject({ authPolicy: 'Federated' });
      const signIn = await device.federatedSignIn(token, appru);
      // The code was right: the page now shows the terms instead of handing back a token.
      expect(signIn.pageStatus).toBe(200);
      expect(signIn.status).toBe(200);
      expect(signIn.wresult).toBeUndefined();
      expect(signIn.body).toContain(`<h1>Terms of use</h1>`);
      expect(signIn.body).toContain(escapeHtml(terms.title));
      expect(signIn.body).toContain(escapeHtml(terms.summary));
      expect(signIn.body).toContain(escapeHtml(terms.text));
      expect(signIn.body).not.toContain('<script>alert');
      const form = readForm(signIn.body)!;
      expect(form.action).toBe('/EnrollmentServer/Auth');
      expect(form.method).toBe('POST');
      expect(form.fields).toMatchObject({ appru, login_hint: email, code: token, accept: `${terms.id}:1` });

      // Posting without ticking the box: the form again, nothing recorded, no token.
      const unticked = new URLSearchParams({ appru: form.fields.appru!, login_hint: form.fields.login_hint!, code: form.fields.code! });
      const again = await postForm(device, unticked);
      expect(again.status).toBe(200);
      expect(readForm(again.body)?.action).toBe('/EnrollmentServer/Auth');
      expect(readForm(again.body)?.fields.wresult).toBeUndefined();
      expect(again.body).toContain(escapeHtml(terms.title));
      expect(await acceptances(fed, terms.id)).toEqual([]);

      // Ticked: the token goes back to the device, as the form Windows' broker posts to appru.
      const ticked = new URLSearchParams(unticked);
      ticked.set('accept', `${terms.id}:1`);
      const accepted = await postForm(device, ticked);
      expect(accepted.status).toBe(200);
      const handback = readForm(accepted.body)!;
      expect(handback.action).toBe(appru);
      expect(handback.method).toBe('POST');
      // The federated token is sealed by the server: not the bare code, and not readable by the client.
      expect(Buffer.from(handback.fields.wresult!, 'base64').toString('utf8')).toMatch(/^v1\./);
      expect(Buffer.from(handback.fields.wresult!, 'base64').toString('utf8')).not.toContain(token);
      expect(await acceptances(fed, terms.id)).toEqual([{ user_id: user.id, version: 1 }]);
      const report = await fed.api.get(`/api/v1/terms/${terms.id}/acceptances`).expect(200);
      expect(report.body.items).toEqual([expect.objectContaining({ user_id: user.id, email, accepted_version: 1, accepted_latest: true })]);

      expect((await device.getPolicies({ federated: handback.fields.wresult! })).status).toBe(200);
      const enrolled = await device.enroll({ federated: handback.fields.wresult! });
      expect(enrolled.fault).toBeUndefined();
      expect(enrolled.status).toBe(200);
      expect(enrolled.provisioning!.identityStore).toBe('System');
      const shown = await deviceOf(device, fed);
      expect(shown).toMatchObject({ status: 'enrolled', platform: 'windows', hardware_id: device.hwDevId });

      // A second PC of the same user: straight through the sign-in page.
      const second = pc({ email }, fedNet);
      await second.discover('9.0');
      const direct = await second.federatedSignIn(token, appru);
      expect(direct.status).toBe(200);
      expect(direct.formAction).toBe(appru);
      expect(direct.body).not.toContain(escapeHtml(terms.title));
      expect(direct.wresult).toEqual(expect.any(String));
      const secondEnrolled = await second.enroll({ federated: direct.wresult! });
      expect(secondEnrolled.fault).toBeUndefined();
      expect(secondEnrolled.status).toBe(200);
      expect(await acceptances(fed, terms.id)).toHaveLength(1);
      expect(await failuresOf(fed, email)).toEqual([]);
    });

    it('asks for a device category on the sign-in page when the token lets the user choose, and applies it', async () => {
      const email = unique('fedcat');
      const lab = (await fed.api.post('/api/v1/device-categories').send({ name: `Lab ${++seq}`, description: 'test benches' }).expect(201)).body;
      const kiosk = (await fed.api.post('/api/v1/device-categories').send({ name: `Kiosk ${seq}` }).expect(201)).body;
      const token = await windowsToken(fed, { user: email, category_choice: true, category_id: kiosk.id });
      const device = pc({ email }, fedNet);
      await device.discover('9.0');
      const signIn = await device.federatedSignIn(token, appru);
      expect(signIn.wresult).toBeUndefined();
      expect(signIn.body).toContain('<legend>What is this device used for?</legend>');
      expect(signIn.body).toContain(escapeHtml(lab.name));
      // The token's own category is preselected.
      expect(signIn.body).toMatch(new RegExp(`value="${kiosk.id}" checked`));
      const form = readForm(signIn.body)!;
      const bogus = await postForm(device, new URLSearchParams({ ...form.fields, category: crypto.randomUUID() }));
      expect(bogus.body).toContain('Choose one of the categories.');
      const chosen = await postForm(device, new URLSearchParams({ ...form.fields, category: lab.id }));
      const wresult = readForm(chosen.body)!.fields.wresult!;
      const enrolled = await device.enroll({ federated: wresult });
      expect(enrolled.status).toBe(200);
      expect(await deviceOf(device, fed)).toMatchObject({ category: lab.name, category_id: lab.id, user: email });
    });

    // A federated RST carries no UsernameToken: the user comes from the token, or from the sign-in
    // page (sealed into the federated token it hands out).
    it('gives a federated device the user its token names', async () => {
      const email = unique('fedowner');
      const token = await windowsToken(fed, { user: email });
      const device = pc({ email }, fedNet);
      await device.discover('9.0');
      const signIn = await device.federatedSignIn(token, appru);
      expect(signIn.wresult).toBeDefined();
      const enrolled = await device.enroll({ federated: signIn.wresult! });
      expect(enrolled.status).toBe(200);
      const shown = await deviceOf(device, fed);
      expect(shown).toMatchObject({ status: 'enrolled', user: email });
      expect(shown.user_id).toBe(await userIdByEmail(fed, email));
    });

    // The terms cannot be skipped: a made-up federated token (the bare code, base64) is not one the
    // sign-in page issued, and terms that changed after sign-in are checked again at enrollment.
    it('refuses a federated enrollment that skipped the sign-in page, or whose terms changed after it', async () => {
      const group = `fedskip-${++seq}`;
      const email = unique('fedskip');
      await createUser(fed, { email, groups: [group] });
      const terms = await termsFor(fed, group);
      const token = await windowsToken(fed, { user: email });
      const device = pc({ email }, fedNet);
      await device.discover('9.0');
      const forged = await device.enroll({ federated: Buffer.from(token).toString('base64') });
      expect(forged.status).toBe(500);
      expect(forged.fault).toMatchObject({ subcode: 'Authentication' });
      expect(await acceptances(fed, terms.id)).toEqual([]);

      // Accept on the page, then the admin raises the version before the device enrolls.
      const signIn = await device.federatedSignIn(token, appru);
      const form = readForm(signIn.body)!;
      const accepted = await postForm(device, new URLSearchParams({ ...form.fields, accept: `${terms.id}:1` }));
      const wresult = readForm(accepted.body)!.fields.wresult!;
      await fed.api.patch(`/api/v1/terms/${terms.id}`).send({ require_reacceptance: true }).expect(200);
      const enrolled = await device.enroll({ federated: wresult });
      expect(enrolled.status).toBe(500);
      expect(enrolled.fault).toMatchObject({ subcode: 'Authorization', errorType: 'CustomServerError' });
      expect(enrolled.fault!.reason).toContain(REFUSAL_MESSAGES.terms_not_accepted);
      expect((await failuresOf(fed, email)).map((f) => f.reason)).toEqual(['terms_not_accepted']);
    });
  });
});

// =====================================================================================================
// Android
// =====================================================================================================

describe('Android', () => {
  let s: TestServer;
  let net: { url: string; close(): Promise<void> };
  let serial = 0;
  beforeAll(async () => {
    s = await startTestServer({ platforms: new PlatformRegistry().register(new AndroidCommands()) });
    net = await listenOnLoopback(s.m.app);
  });
  afterAll(async () => {
    await net?.close();
    await s?.stop();
  });

  async function androidToken(extra: Record<string, unknown> = {}): Promise<string> {
    const res = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'allowed', ownership: 'personal', ...extra }).expect(201);
    return res.body.token;
  }

  function dpc(facts: Partial<SimulatedDpc['facts']> = {}, mode: Mode = 'byod_work_profile'): SimulatedDpc {
    serial += 1;
    return new SimulatedDpc(net.url, mode, { serial_number: `R5CT${crypto.randomBytes(3).toString('hex').toUpperCase()}${serial}`, model: 'Pixel 8', manufacturer: 'Google', api_level: 34, os_version: '14', ...facts });
  }

  /** A refusal as the DPC reads it: 403 problem+json with the reason as `code` and the activity id. */
  async function expectRefused(device: SimulatedDpc, token: string, code: string): Promise<Record<string, unknown>> {
    const res = await fetch(`${net.url}/android/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, mode: device.mode, device: device.facts, fcm_token: device.fcmToken }),
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 403, code, detail: REFUSAL_MESSAGES[code as keyof typeof REFUSAL_MESSAGES] });
    expect(body.activity_id).toEqual(expect.stringMatching(UUID));
    expect(body.credential).toBeUndefined();
    expect((await s.api.get('/api/v1/devices').query({ platform: 'android', q: device.facts.serial_number }).expect(200)).body.items).toEqual([]);
    return body;
  }

  it('refuses an Android version below the minimum and a blocked manufacturer (whatever its case), and lets the rest in', async () => {
    const email = unique('droid');
    const ruleId = await restriction(s, { kind: 'platform', assign_users: [email], settings: { platforms: { android: { os_min: '12', blocked_manufacturers: ['Acme Mobile'] } } } });
    const token = await androidToken({ user: email });

    const old = dpc({ os_version: '11', api_level: 30 });
    const oldAnswer = await expectRefused(old, token, 'os_version_not_allowed');
    const oldRecord = await failure(s, email, oldAnswer.activity_id as string);
    expect(oldRecord).toMatchObject({
      platform: 'android',
      method: 'android_byod_work_profile',
      reason: 'os_version_not_allowed',
      detail: 'Android 11 is below the minimum 12',
      os: 'android',
      os_version: '11',
      serial_number: old.facts.serial_number,
      manufacturer: 'Google',
      model: 'Pixel 8',
    });

    const acme = dpc({ manufacturer: 'ACME mobile', model: 'Rocket 5' });
    const acmeAnswer = await expectRefused(acme, token, 'manufacturer_blocked');
    expect(await failure(s, email, acmeAnswer.activity_id as string)).toMatchObject({ reason: 'manufacturer_blocked', manufacturer: 'ACME mobile', detail: "devices made by ACME mobile can't be enrolled" });

    // Android 12 and another maker are fine.
    const ok = dpc({ os_version: '12', api_level: 31 });
    const enrolled = await ok.enroll(token);
    expect(enrolled.status).toBe(201);
    const shown = await s.api.get(`/api/v1/devices/${ok.deviceId}`).expect(200);
    expect(shown.body).toMatchObject({ status: 'enrolled', user: email, user_id: await userIdByEmail(s, email), ownership: 'personal', ownership_source: 'enrollment_mode' });
    expect(shown.body.enrollment_trace).toMatchObject({ platform_restriction: { id: ruleId } });
    expect((await failuresOf(s, email)).map((f) => f.reason).sort()).toEqual(['manufacturer_blocked', 'os_version_not_allowed']);
  });

  it('refuses a fully managed device for an enrollment manager, and records a revoked token as a refusal', async () => {
    const email = unique('androiddem');
    await createUser(s, { email, is_dem: true });
    const managed = await androidToken({ allow_personal_usage: 'disallowed', ownership: undefined, user: email });
    const refused = await expectRefused(dpc({}, 'fully_managed'), managed, 'dem_not_supported_for_method');
    expect(await s.m.db('enrollment_attempts').where({ activity_id: refused.activity_id }).first()).toMatchObject({
      reason: 'dem_not_supported_for_method',
      method: 'android_fully_managed',
      user_ref: email,
    });
    // The same manager may set up a personal work profile: corporate, no user, counted as theirs.
    const byod = await androidToken({ user: email });
    const device = dpc();
    expect((await device.enroll(byod)).status).toBe(201);
    expect((await s.api.get(`/api/v1/devices/${device.deviceId}`).expect(200)).body).toMatchObject({ ownership: 'corporate', ownership_source: 'dem', user: null });

    const created = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', user: email }).expect(201);
    await s.api.delete(`/api/v1/enrollment-tokens/${created.body.id}`).expect(200);
    const res = await fetch(`${net.url}/android/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: created.body.token, mode: 'byod_work_profile', device: dpc().facts }),
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'token_revoked' });
    const failures = await s.api.get('/api/v1/reports/enrollment-failures').query({ reason: 'token_revoked', platform: 'android' }).expect(200);
    expect(failures.body.items[0]).toMatchObject({ reason: 'token_revoked', method: 'android_byod_work_profile', platform: 'android' });
  });

  it("gives an enrolled device its token's category, and leaves it unassigned when the category is deleted", async () => {
    const category = (await s.api.post('/api/v1/device-categories').send({ name: `Warehouse ${++seq}` }).expect(201)).body;
    const token = await androidToken({ category_id: category.id });
    const device = dpc();
    expect((await device.enroll(token)).status).toBe(201);
    expect((await s.api.get(`/api/v1/devices/${device.deviceId}`).expect(200)).body).toMatchObject({ category: category.name, category_id: category.id, ownership: 'personal', ownership_source: 'enrollment_mode' });
    // Deleting the category leaves the device enrolled and unassigned.
    await s.api.delete(`/api/v1/device-categories/${category.id}`).expect(204);
    expect((await s.api.get(`/api/v1/devices/${device.deviceId}`).expect(200)).body).toMatchObject({ status: 'enrolled', category: null, category_id: null });
  });

  it('sends a user who has not accepted the terms to the terms page, then enrolls the device', async () => {
    const group = `droid-terms-${++seq}`;
    const email = unique('droidterms');
    const user = await createUser(s, { email, groups: [group] });
    const terms = await termsFor(s, group);
    const token = await androidToken({ user: email });
    const device = dpc();

    const refused = await expectRefused(device, token, 'terms_not_accepted');
    const termsUrl = new URL(refused.terms_url as string);
    expect(refused.terms_url).toBe(new URL(`/enroll/terms?token=${encodeURIComponent(token)}`, s.config.publicUrl).toString());
    expect(await failure(s, email, refused.activity_id as string)).toMatchObject({ reason: 'terms_not_accepted', platform: 'android', user: email });

    // The person opens the link: the terms, with a box to tick.
    const browser = supertest(s.m.app);
    const page = await browser.get(`${termsUrl.pathname}${termsUrl.search}`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.text).toContain(escapeHtml(terms.title));
    expect(page.text).toContain(escapeHtml(terms.summary));
    const form = readForm(page.text)!;
    expect(form).toMatchObject({ action: '/enroll/terms', method: 'POST' });
    expect(form.fields).toEqual({ token, accept: `${terms.id}:1` });

    // Not ticked: the page again with a message, and the device is still refused.
    const unticked = await browser.post('/enroll/terms').type('form').send({ token });
    expect(unticked.status).toBe(200);
    expect(unticked.text).toContain('role="alert"');
    expect(unticked.text).toContain(escapeHtml(terms.title));
    expect(await acceptances(s, terms.id)).toEqual([]);
    await expectRefused(device, token, 'terms_not_accepted');

    const accepted = await browser.post('/enroll/terms').type('form').send({ token, accept: `${terms.id}:1` });
    expect(accepted.status).toBe(200);
    expect(accepted.text).toContain('Terms accepted');
    expect(await acceptances(s, terms.id)).toEqual([{ user_id: user.id, version: 1 }]);

    const enrolled = await device.enroll(token);
    expect(enrolled.status).toBe(201);
    const shown = await s.api.get(`/api/v1/devices/${device.deviceId}`).expect(200);
    expect(shown.body).toMatchObject({ status: 'enrolled', user: email, user_id: user.id });
    // The link now says there is nothing left to accept.
    expect((await browser.get(`${termsUrl.pathname}${termsUrl.search}`).expect(200)).text).toContain('Terms accepted');
  });

  it('with pre-approved devices only, refuses an unknown serial and gives a listed one the user, ownership and name from the file', async () => {
    const email = unique('preapproved');
    const listed = `S1${crypto.randomBytes(4).toString('hex').toUpperCase()}`;
    const csv =
      'Name,Email,Ownership,Serial number,Platform,Device name\r\n' +
      `Pat Lee,${email},Corporate,${listed},Android,Pat's Pixel 8\r\n`;
    const imported = await s.api.post('/api/v1/preapproved-devices/import').set('Content-Type', 'text/csv').send(Buffer.from(csv));
    expect(imported.status).toBe(201);
    expect(imported.body).toMatchObject({ devices: 1, users_created: 1 });
    const pre = (await s.api.get('/api/v1/preapproved-devices').expect(200)).body.items.find((p: { serial_number: string }) => p.serial_number === listed);
    expect(pre).toMatchObject({ platform: 'android', ownership: 'corporate', user: email, device_name: "Pat's Pixel 8", status: 'pending', placeholder_device_id: expect.stringMatching(UUID) });
    const placeholder = await s.api.get(`/api/v1/devices/${pre.placeholder_device_id}`).expect(200);
    expect(placeholder.body).toMatchObject({ status: 'pre_approved', serial_number: listed });

    await s.api.put('/api/v1/enrollment-settings').send({ preapproved_only: true }).expect(200);
    try {
      const token = await androidToken(); // a BYOD token naming no user
      const unknown = dpc({ serial_number: `S9${crypto.randomBytes(4).toString('hex').toUpperCase()}` });
      const refused = await expectRefused(unknown, token, 'not_pre_approved');
      const recorded = await s.m.db('enrollment_attempts').where({ activity_id: refused.activity_id }).first();
      expect(recorded).toMatchObject({ reason: 'not_pre_approved', platform: 'android', method: 'android_byod_work_profile', user_ref: null, detail: `serial number ${unknown.facts.serial_number} is not on the pre-approved list` });
      const report = await s.api.get('/api/v1/reports/enrollment-failures').query({ reason: 'not_pre_approved' }).expect(200);
      expect((report.body.items as Failure[]).find((f) => f.activity_id === refused.activity_id)).toMatchObject({ serial_number: unknown.facts.serial_number, user: null });

      // The listed serial enrolls with a token that names no user: the pre-approval's user, ownership
      // and name apply, and the enrolled device takes the place of the placeholder.
      const device = dpc({ serial_number: listed, model: 'Pixel 8' });
      const enrolled = await device.enroll(token);
      expect(enrolled.status).toBe(201);
      const shown = await s.api.get(`/api/v1/devices/${device.deviceId}`).expect(200);
      expect(shown.body).toMatchObject({
        status: 'enrolled',
        serial_number: listed,
        name: "Pat's Pixel 8",
        ownership: 'corporate',
        ownership_source: 'preapproved',
        user: email,
        user_id: pre.user_id,
      });
      // The placeholder left the device list; the real device took its place.
      await s.api.get(`/api/v1/devices/${pre.placeholder_device_id}`).expect(404);
      const list = await s.api.get('/api/v1/devices').query({ platform: 'android', q: listed }).expect(200);
      expect(list.body.items.map((d: { id: string; status: string }) => [d.id, d.status])).toEqual([[device.deviceId, 'enrolled']]);
      const after = (await s.api.get('/api/v1/preapproved-devices').query({ status: 'enrolled' }).expect(200)).body.items.find((p: { id: string }) => p.id === pre.id);
      expect(after).toMatchObject({ status: 'enrolled', device_id: device.deviceId });
    } finally {
      await s.api.put('/api/v1/enrollment-settings').send({ preapproved_only: false }).expect(200);
    }
  });
});

// =====================================================================================================
// Apple
// =====================================================================================================

describe('Apple', () => {
  let apple: AppleTestServer;
  let s: TestServer;
  let base: string;
  beforeAll(async () => {
    apple = await startAppleServer();
    ({ s, base } = apple);
  });
  afterAll(async () => {
    await apple?.close();
  });

  async function enrollUrl(extra: Record<string, unknown> = {}): Promise<{ url: string; token: string }> {
    const res = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple', ...extra }).expect(201);
    return { url: res.body.enroll_url, token: res.body.token };
  }

  const iphone = (extra: Partial<Parameters<typeof SimulatedAppleDevice.create>[0]> = {}) => SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem, ...extra });

  async function appleDevices(udid: string): Promise<Array<Record<string, unknown>>> {
    return (await s.api.get('/api/v1/devices').query({ platform: 'apple', q: udid }).expect(200)).body.items;
  }

  it('refuses a personal iPhone at Authenticate with 403 and the activity id, and enrolls one whose serial is a corporate identifier', async () => {
    const email = unique('ios');
    await restriction(s, { kind: 'platform', assign_users: [email], settings: { platforms: { ios: { personal_allowed: false } } } });
    const { url } = await enrollUrl({ user: email });

    const personal = iphone({ osVersion: '17.5.1', productName: 'iPhone15,2' });
    try {
      // The profile download cannot tell a personal device yet; the check-in can.
      const fetched = await personal.fetchProfile(url);
      expect(fetched.verified).toBe(true);
      await personal.scep();
      const auth = await personal.checkin(personal.authenticateMessage());
      expect(auth.status).toBe(403);
      const text = auth.body.toString('utf8');
      const activityId = /Activity id: ([0-9a-f-]{36})$/.exec(text)?.[1];
      expect(activityId).toMatch(UUID);
      expect(text).toBe(`${REFUSAL_MESSAGES.personal_device_blocked} Activity id: ${activityId}`);
      expect(await failure(s, email, activityId!)).toMatchObject({
        platform: 'apple',
        method: 'apple_profile',
        reason: 'personal_device_blocked',
        user: email,
        os: 'ios',
        os_version: '17.5.1',
        serial_number: personal.serial,
        manufacturer: 'Apple',
        model: 'iPhone15,2',
      });
      // Not enrolled: no enrolled device with its UDID, and its next check-in is not accepted either.
      expect((await appleDevices(personal.udid)).filter((d) => d.status === 'enrolled')).toEqual([]);
      expect((await personal.checkin(personal.tokenUpdateMessage())).status).not.toBe(200);
    } finally {
      personal.close();
    }

    const owned = iphone();
    try {
      const added = await s.api.post('/api/v1/corporate-identifiers').send({ type: 'serial', identifier: owned.serial, details: 'Sales iPhone 12' }).expect(201);
      expect(added.body).toMatchObject({ status: 'not_contacted', device_id: null });
      await owned.enroll(url);
      const [listed] = await appleDevices(owned.udid);
      expect(listed).toBeDefined();
      const shown = await s.api.get(`/api/v1/devices/${listed!.id}`).expect(200);
      expect(shown.body).toMatchObject({ status: 'enrolled', serial_number: owned.serial, ownership: 'corporate', ownership_source: 'corporate_identifier', user: email });
      expect(shown.body.enrollment_trace).toMatchObject({ corporate_identifier_id: added.body.id });
      const identifiers = await s.api.get('/api/v1/corporate-identifiers').query({ q: owned.serial }).expect(200);
      expect(identifiers.body.items).toEqual([expect.objectContaining({ id: added.body.id, identifier: owned.serial, status: 'enrolled', device_id: listed!.id, enrolled_at: expect.any(String) })]);
      expect((await failuresOf(s, email)).map((f) => f.reason)).toEqual(['personal_device_blocked']);
    } finally {
      owned.close();
    }
  });

  it('shows the terms instead of the profile, and hands out the profile once they are accepted', async () => {
    const group = `apple-terms-${++seq}`;
    const email = unique('iosterms');
    const user = await createUser(s, { email, groups: [group] });
    const terms = await termsFor(s, group);
    const { url, token } = await enrollUrl({ user: email });
    const device = iphone();
    try {
      const fetched = await device.fetchProfile(url);
      expect(fetched.status).toBe(200);
      expect(fetched.contentType).toMatch(/^text\/html/);
      expect(fetched.verified).toBe(false); // not a profile
      const html = fetched.body.toString('utf8');
      expect(html).toContain(escapeHtml(terms.title));
      expect(html).toContain(escapeHtml(terms.summary));
      const form = readForm(html)!;
      expect(form).toMatchObject({ action: '/enroll/apple', method: 'POST' });
      expect(form.fields).toEqual({ token, accept: `${terms.id}:1` });

      const browser = supertest(s.m.app);
      const unticked = await browser.post('/enroll/apple').type('form').send({ token });
      expect(unticked.status).toBe(200);
      expect(unticked.text).toContain('role="alert"');
      expect(unticked.text).toContain(escapeHtml(terms.title));
      expect(await acceptances(s, terms.id)).toEqual([]);

      const accepted = await browser.post('/enroll/apple').type('form').send({ token, accept: `${terms.id}:1` });
      expect(accepted.status).toBe(303);
      expect(accepted.headers.location).toBe(`/enroll/apple?token=${encodeURIComponent(token)}`);
      expect(await acceptances(s, terms.id)).toEqual([{ user_id: user.id, version: 1 }]);

      const profileUrl = new URL(accepted.headers.location!, base).toString();
      const profile = await device.fetchProfile(profileUrl);
      expect(profile.status).toBe(200);
      expect(profile.contentType).toBe(CONTENT_TYPES.profile);
      expect(profile.verified).toBe(true);
      await device.enroll(profileUrl);
      const [listed] = await appleDevices(device.udid);
      const shown = await s.api.get(`/api/v1/devices/${listed!.id}`).expect(200);
      expect(shown.body).toMatchObject({ status: 'enrolled', user: email, user_id: user.id });
      const refusals = await failuresOf(s, email);
      expect(refusals.every((f) => f.reason === 'terms_not_accepted' && f.method === 'apple_profile')).toBe(true);
    } finally {
      device.close();
    }
  });

  it('asks for a device category before the profile when the token lets the user choose, and the device gets it at Authenticate', async () => {
    const finance = (await s.api.post('/api/v1/device-categories').send({ name: `Finance ${++seq}` }).expect(201)).body;
    const { url, token } = await enrollUrl({ category_choice: true });
    const device = iphone();
    try {
      const page = await device.fetchProfile(url);
      expect(page.status).toBe(200);
      expect(page.contentType).toMatch(/^text\/html/);
      const form = readForm(page.body.toString('utf8'))!;
      expect(form).toMatchObject({ action: '/enroll/apple', method: 'GET' });
      expect(page.body.toString('utf8')).toContain(escapeHtml(finance.name));
      const profileUrl = new URL(`/enroll/apple?token=${encodeURIComponent(token)}&category=${finance.id}`, base).toString();
      await device.enroll(profileUrl);
      const [listed] = await appleDevices(device.udid);
      const shown = await s.api.get(`/api/v1/devices/${listed!.id}`).expect(200);
      expect(shown.body).toMatchObject({ status: 'enrolled', category: finance.name, category_id: finance.id });
      // "No category" is a choice too.
      const none = iphone();
      try {
        await none.enroll(new URL(`/enroll/apple?token=${encodeURIComponent(token)}&category=`, base).toString());
        const [other] = await appleDevices(none.udid);
        expect((await s.api.get(`/api/v1/devices/${other!.id}`).expect(200)).body).toMatchObject({ status: 'enrolled', category: null, category_id: null });
      } finally {
        none.close();
      }
    } finally {
      device.close();
    }
  });

  it('answers a profile download for a user with every Apple platform blocked with a 403 page', async () => {
    const email = unique('noapple');
    await restriction(s, { kind: 'platform', assign_users: [email], settings: { platforms: { ios: { allowed: false }, macos: { allowed: false }, tvos: { allowed: false } } } });
    const { url } = await enrollUrl({ user: email });
    const device = iphone();
    try {
      const fetched = await device.fetchProfile(url);
      expect(fetched.status).toBe(403);
      expect(fetched.contentType).toMatch(/^text\/html/);
      expect(fetched.verified).toBe(false);
      expect(device.profile).toBeUndefined();
      const html = fetched.body.toString('utf8');
      expect(html).toContain('<h1>This device cannot be enrolled</h1>');
      expect(html).toContain(escapeHtml(REFUSAL_MESSAGES.platform_blocked));
      const activityId = /<code>([0-9a-f-]{36})<\/code>/.exec(html)?.[1];
      expect(activityId).toMatch(UUID);
      const recorded = await failure(s, email, activityId!);
      expect(recorded).toMatchObject({ platform: 'apple', method: 'apple_profile', reason: 'platform_blocked', user: email });
      expect(recorded.detail).toMatch(/^Apple devices can't be enrolled: the platform is blocked by the restriction "test \d+"$/);

      // Someone else, under the default restriction, still gets the profile.
      const other = await device.fetchProfile((await enrollUrl({ user: unique('yesapple') })).url);
      expect(other.status).toBe(200);
      expect(other.verified).toBe(true);
    } finally {
      device.close();
    }
  });
});
