/**
 * Android end to end: an admin makes a policy and a token per management mode, a simulated DPC
 * enrolls over HTTP with it, checks in, applies the policy, receives commands and reports them; the
 * admin API shows what happened. Refusals: bad tokens, wrong mode, another device's credential.
 */
import { AndroidCommands } from '../../protocols/android/commands';
import { PlatformRegistry } from '../../src/core/platforms';
import { SimulatedDpc, listenOnLoopback, type Mode } from '../helpers/dpc-simulator';
import { startTestServer, type TestServer } from '../helpers/server';

let s: TestServer;
let net: { url: string; close(): Promise<void> };
let policyId: string;
let serial = 0;

beforeAll(async () => {
  s = await startTestServer({ platforms: new PlatformRegistry().register(new AndroidCommands()) });
  net = await listenOnLoopback(s.m.app);
  const policy = await s.api
    .post('/api/v1/policies')
    .send({ name: 'Standard', settings: { password: { quality: 'numeric', min_length: 6 }, restrictions: { camera_disabled: true } } })
    .expect(201);
  policyId = policy.body.id;
});
afterAll(async () => {
  await net.close();
  await s.stop();
});

const TOKEN_FOR: Record<Mode, Record<string, unknown>> = {
  byod_work_profile: { allow_personal_usage: 'allowed', ownership: 'personal' },
  cope_work_profile: { allow_personal_usage: 'allowed', ownership: 'corporate' },
  fully_managed: { allow_personal_usage: 'disallowed' },
  dedicated: { allow_personal_usage: 'disallowed_userless' },
};

async function token(extra: Record<string, unknown>): Promise<string> {
  const res = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', policy_id: policyId, ...extra }).expect(201);
  return res.body.token;
}

function dpc(mode: Mode, facts: Partial<SimulatedDpc['facts']> = {}): SimulatedDpc {
  serial += 1;
  return new SimulatedDpc(net.url, mode, { serial_number: `R58N${1000 + serial}`, model: 'Pixel 8', manufacturer: 'Google', api_level: 34, os_version: '14', ...facts });
}

const sendCommand = (deviceId: string, body: Record<string, unknown>) => s.api.post(`/api/v1/devices/${deviceId}/commands`).send(body);

describe.each(Object.keys(TOKEN_FOR) as Mode[])('%s', (mode) => {
  it('enrolls, takes the policy, carries out a lock and shows it to the admin', async () => {
    const device = dpc(mode);
    const enrolled = await device.enroll(await token(TOKEN_FOR[mode]));
    expect(enrolled.status).toBe(201);
    expect(enrolled.body.credential).toMatch(/^mrd_/);
    const shown = await s.api.get(`/api/v1/devices/${device.deviceId}`).expect(200);
    expect(shown.body).toMatchObject({ platform: 'android', status: 'enrolled', mode, ownership: mode === 'byod_work_profile' ? 'personal' : 'corporate', policy_id: policyId, api_level: 34 });

    const first = await device.checkin();
    expect(first.policy).toMatchObject({ id: policyId, version: 1, settings: { restrictions: { camera_disabled: true } } });
    expect(first.commands).toEqual([]);

    const lock = await sendCommand(device.deviceId!, { type: 'lock' }).expect(202);
    // Commands wait ten minutes for delivery unless the admin says otherwise.
    const ttl = new Date(lock.body.expires_at).getTime() - new Date(lock.body.created_at).getTime();
    expect(Math.round(ttl / 1000)).toBe(600);
    const next = await device.checkin();
    expect(next.commands).toEqual([{ id: lock.body.id, type: 'lock', action: 'lockNow', params: {} }]);
    expect(next.policy).toEqual({ id: policyId, version: 1 }); // already applied: no settings resent
    await device.run(next.commands);
    expect(device.locked).toBe(true);
    const done = await s.api.get(`/api/v1/commands/${lock.body.id}`).expect(200);
    expect(done.body).toMatchObject({ status: 'acknowledged', completed_at: expect.any(String) });
  });
});

describe('mode-aware commands', () => {
  it('turns wipe on a personal work profile into removing the profile, and says so', async () => {
    const device = dpc('byod_work_profile');
    await device.enroll(await token(TOKEN_FOR.byod_work_profile));
    const wipe = await sendCommand(device.deviceId!, { type: 'wipe' }).expect(202);
    expect(wipe.body.effect).toMatch(/work profile only/);
    const { commands } = await device.checkin();
    expect(commands[0]).toMatchObject({ type: 'wipe', action: 'removeWorkProfile' });
    await device.run(commands);
    expect(device.workProfile).toBe(false);
  });

  it('refuses restart and lost mode on a personal work profile with reason management_mode', async () => {
    const device = dpc('byod_work_profile');
    await device.enroll(await token(TOKEN_FOR.byod_work_profile));
    for (const type of ['restart', 'lost_mode_on', 'relinquish']) {
      const res = await sendCommand(device.deviceId!, { type });
      expect(res.status).toBe(422);
      expect(res.body).toMatchObject({ code: 'command_not_permitted', reason: 'management_mode' });
    }
  });

  it('refuses what the API level cannot do with reason api_level', async () => {
    const device = dpc('fully_managed', { api_level: 23, os_version: '6.0' });
    await device.enroll(await token(TOKEN_FOR.fully_managed));
    const res = await sendCommand(device.deviceId!, { type: 'clear_app_data', params: { packages: ['com.example.mail'] } });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ code: 'command_not_permitted', reason: 'api_level' });
    const reboot = await sendCommand(device.deviceId!, { type: 'restart' }); // DevicePolicyManager.reboot needs API 24
    expect(reboot.status).toBe(422);
    expect(reboot.body).toMatchObject({ code: 'command_not_permitted', reason: 'api_level' });
    expect((await s.api.get(`/api/v1/devices/${device.deviceId}/commands`).expect(200)).body.items).toHaveLength(0);
    await sendCommand(device.deviceId!, { type: 'lock' }).expect(202); // what the device can do still goes
  });

  it('lets a company-owned work profile be relinquished', async () => {
    const device = dpc('cope_work_profile');
    await device.enroll(await token(TOKEN_FOR.cope_work_profile));
    const res = await sendCommand(device.deviceId!, { type: 'relinquish' }).expect(202);
    expect(res.body.effect).toMatch(/handing the device to the user/);
    const { commands } = await device.checkin();
    expect(commands[0]!.action).toBe('relinquishOwnership');
  });
});

describe('enrollment refusals', () => {
  it('refuses a token used for a mode it does not allow, and keeps the use', async () => {
    const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed', one_time: true }).expect(201);
    const wrong = await dpc('byod_work_profile').enroll(t.body.token);
    expect(wrong.status).toBe(403);
    expect(wrong.body).toMatchObject({ code: 'mode_not_allowed', allowed_modes: ['fully_managed'] });
    const right = await dpc('fully_managed').enroll(t.body.token);
    expect(right.status).toBe(201); // the refused attempt did not spend the one-time use
  });

  it('refuses expired, revoked and used-up tokens with their codes', async () => {
    const used = await token({ ...TOKEN_FOR.fully_managed, one_time: true });
    expect((await dpc('fully_managed').enroll(used)).status).toBe(201);
    expect((await dpc('fully_managed').enroll(used)).body).toMatchObject({ code: 'token_used_up' });

    const revoked = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed' }).expect(201);
    await s.api.delete(`/api/v1/enrollment-tokens/${revoked.body.id}`).expect(200);
    expect((await dpc('fully_managed').enroll(revoked.body.token)).body).toMatchObject({ code: 'token_revoked' });

    const expired = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed' }).expect(201);
    await s.m.db('enrollment_tokens').where({ id: expired.body.id }).update({ expires_at: new Date(Date.now() - 1000) });
    const res = await dpc('fully_managed').enroll(expired.body.token);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 'token_expired' });

    expect((await dpc('fully_managed').enroll('AAAAA-BBBBB-CCCCC-DDDDD-EEEEE')).body).toMatchObject({ code: 'enrollment_token_not_found' });
  });

  it('answers malformed and oversized bodies with a JSON error and a code', async () => {
    const bad = await fetch(`${net.url}/android/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"token":' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'malformed_json' });
    const unknownMode = await dpc('fully_managed').raw('/android/v1/enroll', { token: 'x', mode: 'kiosk', device: {} });
    expect(unknownMode.status).toBe(400);
    expect(unknownMode.body).toMatchObject({ code: 'validation_failed' });
    const huge = await fetch(`${net.url}/android/v1/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'x'.repeat(400_000) }) });
    expect(huge.status).toBe(413);
  });
});

describe('credentials', () => {
  it('never hands one device another device\'s commands, nor takes its results', async () => {
    const t = await token(TOKEN_FOR.fully_managed);
    const a = dpc('fully_managed');
    const b = dpc('fully_managed');
    await a.enroll(t);
    await b.enroll(t);
    const lock = await sendCommand(a.deviceId!, { type: 'lock' }).expect(202);
    expect((await b.checkin()).commands).toEqual([]);
    const forged = await b.report(lock.body.id, { status: 'ok' });
    expect(forged.status).toBe(404);
    expect(forged.body).toMatchObject({ code: 'command_not_found' });
    expect((await s.api.get(`/api/v1/commands/${lock.body.id}`)).body.status).toBe('queued');
    expect((await a.checkin()).commands.map((c) => c.id)).toEqual([lock.body.id]);
  });

  it('refuses a check-in without a valid credential', async () => {
    const res = await dpc('fully_managed').raw('/android/v1/checkin', {}, 'mrd_forged');
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ code: 'unauthorized' });
  });

  it('treats a replayed result as a no-op', async () => {
    const device = dpc('fully_managed');
    await device.enroll(await token(TOKEN_FOR.fully_managed));
    const cmd = await sendCommand(device.deviceId!, { type: 'device_info' }).expect(202);
    await device.checkin();
    const first = await device.report(cmd.body.id, { status: 'ok', result: { battery: 0.5 } });
    expect(first.body).toMatchObject({ changed: true, status: 'acknowledged' });
    const replay = await device.report(cmd.body.id, { status: 'error', error: 'late' });
    expect(replay.body).toMatchObject({ changed: false, status: 'acknowledged' });
    expect((await s.api.get(`/api/v1/commands/${cmd.body.id}`)).body.result).toEqual({ battery: 0.5 });
  });

  it('re-enrolling the same hardware keeps the device, retires the old credential and drops stale commands', async () => {
    const t = await token(TOKEN_FOR.fully_managed);
    const first = dpc('fully_managed');
    await first.enroll(t);
    const wipe = await sendCommand(first.deviceId!, { type: 'wipe' }).expect(202);
    const again = new SimulatedDpc(net.url, 'fully_managed', first.facts);
    const res = await again.enroll(t);
    expect(res.body).toMatchObject({ device_id: first.deviceId, reenrolled: true });
    expect((await first.raw('/android/v1/checkin', {})).status).toBe(401);
    expect((await s.api.get(`/api/v1/commands/${wipe.body.id}`)).body.status).toBe('canceled');
    expect((await again.checkin()).commands).toEqual([]);
  });
});

describe('policy changes and long poll', () => {
  it('delivers a changed policy at the next check-in', async () => {
    const own = await s.api.post('/api/v1/policies').send({ name: 'Kiosk', settings: { kiosk_app: 'com.example.kiosk' } }).expect(201);
    const device = dpc('dedicated');
    await device.enroll(await token({ ...TOKEN_FOR.dedicated, policy_id: own.body.id }));
    await device.checkin();
    expect(device.policyVersion).toBe(1);
    await s.api.put(`/api/v1/policies/${own.body.id}`).send({ settings: { kiosk_app: 'com.example.kiosk2' } }).expect(200);
    const answer = await device.checkin();
    expect(answer.policy).toMatchObject({ version: 2, settings: { kiosk_app: 'com.example.kiosk2' } });
  });

  it('holds a long-polling check-in until a command is queued', async () => {
    const device = dpc('fully_managed');
    await device.enroll(await token(TOKEN_FOR.fully_managed));
    const started = Date.now();
    const polling = device.checkin({ wait: 20 });
    await new Promise((r) => setTimeout(r, 500));
    const cmd = await sendCommand(device.deviceId!, { type: 'restart' }).expect(202);
    const answer = await polling;
    expect(answer.commands.map((c) => c.id)).toEqual([cmd.body.id]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
