/**
 * Idle polls answered from memory (src/core/idle-cache.ts), on the Redis queue backend where the
 * queue generation is shared: a repeated idle poll with nothing queued skips the database, and every
 * way a queue can gain work (a command queued, a NotNow'd command waiting for the next session, a
 * re-enrollment with a new certificate) is seen at the very next poll.
 */
import { encodePlist } from '../../protocols/apple/plist';
import { CONTENT_TYPES, SimulatedAppleDevice } from '../helpers/apple-device';
import { startAppleServer, type AppleTestServer } from '../helpers/apple-server';
import type { TestServer } from '../helpers/server';

let apple: AppleTestServer;
let s: TestServer;

beforeAll(async () => {
  apple = await startAppleServer({ queue: 'redis' });
  ({ s } = apple);
});
afterAll(() => apple?.close());

async function enrolled(extra: Partial<Parameters<typeof SimulatedAppleDevice.create>[0]> = {}): Promise<{ d: SimulatedAppleDevice; id: string }> {
  const res = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple', max_uses: 5 }).expect(201);
  const d = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem, ...extra });
  await d.enroll(res.body.enroll_url);
  const list = await s.api.get('/api/v1/devices').query({ platform: 'apple', limit: 200 }).expect(200);
  const id = (list.body.items as Array<{ id: string; udid: string }>).find((x) => x.udid === d.udid)!.id;
  return { d, id };
}

it('skips the database for a repeated idle poll with nothing queued, and sees a queued command at once', async () => {
  const { d, id } = await enrolled();
  expect((await d.idle()).body.length).toBe(0); // from the database: nothing queued, remembered
  // A row written behind the command service's back (no generation bump) stays unseen while the
  // remembered answer holds: proof the second poll did not ask the database.
  const enrollment = await s.m.db('enrollments').where({ device_id: id, channel_type: 'device' }).first('id');
  await s.m.db('commands').insert({
    id: '0190f0f0-0000-7000-8000-000000000001',
    device_id: id,
    enrollment_id: enrollment.id,
    platform: 'apple',
    type: 'device_info',
    payload: '<?xml version="1.0"?><plist version="1.0"><dict><key>Command</key><dict><key>RequestType</key><string>DeviceInformation</string></dict><key>CommandUUID</key><string>0190f0f0-0000-7000-8000-000000000001</string></dict></plist>',
  });
  expect((await d.idle()).body.length).toBe(0);
  // A command queued the proper way moves the generation: the next poll asks the database and gets
  // the queue in order (the hidden row first).
  const queued = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'profile_list' }).expect(202);
  const session = await d.runSession();
  expect(session.map((h) => h.uuid)).toEqual(['0190f0f0-0000-7000-8000-000000000001', queued.body.id]);
});

it('hands out a NotNow command at the next idle poll even after an empty poll in between', async () => {
  let refuse = true;
  const { d, id } = await enrolled({ notNow: (type) => type === 'DeviceInformation' && refuse });
  const cmd = await s.api.post(`/api/v1/devices/${id}/commands`).send({ type: 'device_info' }).expect(202);
  // The command is handed out; while it is out (sent, not yet answered), an idle poll finds nothing
  // and remembers that. Then the device says NotNow: the command is waiting again.
  const handed = await d.idle();
  expect(handed.command?.CommandUUID).toBe(cmd.body.id);
  expect((await d.idle()).body.length).toBe(0);
  const notNow = await d.report(d.respond(handed.command!));
  expect(notNow.status).toBe(200);
  expect((await s.api.get(`/api/v1/commands/${cmd.body.id}`).expect(200)).body.status).toBe('not_now');
  refuse = false;
  const again = await d.idle();
  expect(again.command?.CommandUUID).toBe(cmd.body.id);
});

it('does not answer from memory for a certificate the channel is no longer bound to', async () => {
  const { d } = await enrolled();
  expect((await d.idle()).status).toBe(200);
  const oldIdentity = d.identity!;
  // The same device enrolls again (new profile, new SCEP identity): the old certificate is unbound.
  const res = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
  await d.enroll(res.body.enroll_url);
  expect(d.identity!.certPem).not.toBe(oldIdentity.certPem);
  expect((await d.idle()).status).toBe(200);
  const body = Buffer.from(encodePlist({ UDID: d.udid, Status: 'Idle' }), 'utf8');
  const stale = await d.send(d.profile!.serverUrl, CONTENT_TYPES.report, body, { signWith: oldIdentity });
  expect(stale.status).toBe(400);
});
