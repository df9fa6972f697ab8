/**
 * The full Android loop with push: a command queued by the admin wakes the DPC through FCM (a real
 * loopback server speaking the FCM HTTP v1 and OAuth2 protocols), the DPC checks in, runs it and
 * reports; an FCM token that FCM calls UNREGISTERED stops being used.
 */
import { AndroidCommands } from '../../protocols/android/commands';
import { PlatformRegistry } from '../../src/core/platforms';
import { FcmProvider } from '../../src/push/fcm';
import { PushProviderRegistry } from '../../src/push/provider';
import type { RunningWorker } from '../../src/worker';
import { SimulatedDpc, listenOnLoopback } from '../helpers/dpc-simulator';
import { FcmMock, fcmErrors, makeServiceAccount } from '../helpers/fcm-mock';
import { eventually } from '../helpers/recording-provider';
import { startTestServer, type TestServer } from '../helpers/server';

let s: TestServer;
let fcm: FcmMock;
let net: { url: string; close(): Promise<void> };
let worker: RunningWorker;

beforeAll(async () => {
  const sa = makeServiceAccount();
  fcm = await FcmMock.start({ account: sa });
  const providers = new PushProviderRegistry().register(new FcmProvider({ serviceAccount: sa.account, fcmUrl: fcm.url, tokenUrl: fcm.tokenUrl }));
  s = await startTestServer({ platforms: new PlatformRegistry().register(new AndroidCommands()), pushProviders: providers, retryDelayMs: 50 });
  net = await listenOnLoopback(s.m.app);
  worker = s.m.startWorker();
});
afterAll(async () => {
  await worker.stop();
  await net.close();
  await s.stop();
  await fcm.close();
});

async function enrolledDpc(fcmToken: string): Promise<SimulatedDpc> {
  const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed' }).expect(201);
  const dpc = new SimulatedDpc(net.url, 'fully_managed', { serial_number: fcmToken, model: 'Galaxy XCover7', manufacturer: 'samsung', api_level: 34, os_version: '14' }, fcmToken);
  expect((await dpc.enroll(t.body.token)).status).toBe(201);
  return dpc;
}

it('wakes the DPC through FCM, which then fetches and runs the command', async () => {
  const dpc = await enrolledDpc('fcm-token-good');
  const cmd = await s.api.post(`/api/v1/devices/${dpc.deviceId}/commands`).send({ type: 'device_info' }).expect(202);
  await eventually(() => fcm.delivered.some((m) => m.body.message?.token === 'fcm-token-good'), 10_000, 'the FCM message');
  const message = fcm.delivered.find((m) => m.body.message?.token === 'fcm-token-good')!;
  expect(message.body.message).toMatchObject({ data: { mooring: 'sync' }, android: { priority: 'HIGH' } });
  expect(JSON.stringify(message.body)).not.toContain(cmd.body.id); // the push carries no command data
  const { commands } = await dpc.checkin();
  await dpc.run(commands);
  const done = await s.api.get(`/api/v1/commands/${cmd.body.id}`).expect(200);
  expect(done.body).toMatchObject({ status: 'acknowledged', result: { model: 'Galaxy XCover7', api_level: 34 } });
});

it('stops pushing to a token FCM calls UNREGISTERED, and takes a new one at check-in', async () => {
  fcm.respond('fcm-token-gone', fcmErrors.unregistered());
  const dpc = await enrolledDpc('fcm-token-gone');
  await s.api.post(`/api/v1/devices/${dpc.deviceId}/commands`).send({ type: 'lock' }).expect(202);
  await eventually(async () => {
    const e = await s.m.db('enrollments').where({ device_id: dpc.deviceId }).first();
    return Boolean(e.push_token_dead_at);
  }, 10_000, 'the dead-token mark');
  dpc.fcmToken = 'fcm-token-new';
  await dpc.checkin();
  const e = await s.m.db('enrollments').where({ device_id: dpc.deviceId }).first();
  expect(e).toMatchObject({ push_token: 'fcm-token-new', push_token_dead_at: null });
});

it('wakes the devices on a policy when it changes, and a revoked token leaves them enrolled', async () => {
  const policy = await s.api.post('/api/v1/policies').send({ name: 'Field', settings: { restrictions: { camera_disabled: false } } }).expect(201);
  const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed', policy_id: policy.body.id }).expect(201);
  const dpc = new SimulatedDpc(net.url, 'fully_managed', { serial_number: 'policy-push-1', model: 'TC58', manufacturer: 'Zebra', api_level: 33, os_version: '13' }, 'fcm-token-policy');
  await dpc.enroll(t.body.token);
  await dpc.checkin();
  await s.api.delete(`/api/v1/enrollment-tokens/${t.body.id}`).expect(200);

  const before = fcm.delivered.filter((m) => m.body.message?.token === 'fcm-token-policy').length;
  await s.api.put(`/api/v1/policies/${policy.body.id}`).send({ settings: { restrictions: { camera_disabled: true } } }).expect(200);
  await eventually(() => fcm.delivered.filter((m) => m.body.message?.token === 'fcm-token-policy').length > before, 10_000, 'the policy push');
  const answer = await dpc.checkin();
  expect(answer.policy).toMatchObject({ version: 2, settings: { restrictions: { camera_disabled: true } } });
});
