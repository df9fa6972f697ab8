/**
 * The background worker on its own thread, as `serve` runs it: the thread builds its own pools, queues
 * and APNs connection from the server's settings and delivers a bulk lock's pushes; its push counters
 * show in the server's /metrics; a command its sweep puts back for redelivery reaches a device whose
 * empty idle poll the server had remembered (the queue generation is shared memory); and it stops
 * cleanly.
 */
import { ApnsMock, createApnsTestPki, type ApnsTestPki } from '../helpers/apns-mock';
import { SimulatedAppleDevice } from '../helpers/apple-device';
import { startAppleServer, type AppleTestServer } from '../helpers/apple-server';
import { eventually } from '../helpers/recording-provider';
import type { TestServer } from '../helpers/server';
import type { RunningWorker } from '../../src/worker';

let s: TestServer;
let apple: AppleTestServer;
let pki: ApnsTestPki;
let apns: ApnsMock;
let worker: RunningWorker | undefined;

beforeAll(async () => {
  pki = await createApnsTestPki();
  apns = await ApnsMock.start({ pki });
  // External database, no Redis, one process: the idle cache keeps its generation in this process.
  apple = await startAppleServer({ apns, pki, retryDelayMs: 50, env: { MOORING_IDLE_CACHE: 'local', MOORING_REDELIVER_AFTER: '1' } });
  s = apple.s;
  worker = await s.m.startWorkerThread({ expireEveryMs: 100 });
});

afterAll(async () => {
  await worker?.stop();
  await apple?.close();
  await apns?.close();
});

async function enrolled(): Promise<{ device: SimulatedAppleDevice; id: string }> {
  const device = SimulatedAppleDevice.create({ os: 'ios', caPem: s.m.ca.certPem });
  const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
  await device.enroll(t.body.enroll_url as string);
  const list = await s.api.get('/api/v1/devices').query({ platform: 'apple', limit: 200 }).expect(200);
  const found = (list.body.items as Array<{ id: string; udid: string }>).find((x) => x.udid === device.udid);
  if (!found) throw new Error(`device ${device.udid} not listed`);
  return { device, id: found.id };
}

function pushCount(metrics: string, outcome: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith('mooring_push_total{') && l.includes('platform="apple"') && l.includes(`outcome="${outcome}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

it('delivers a bulk lock from the worker thread, and /metrics counts the thread pushes', async () => {
  const fleet = [await enrolled(), await enrolled(), await enrolled()];
  apns.reset();
  await s.api.post('/api/v1/commands').send({ device_ids: fleet.map((f) => f.id), type: 'lock' }).expect(202);
  await eventually(() => apns.delivered.length >= 3, 15_000, 'one push per device from the worker thread');
  for (const { device } of fleet) {
    const pushes = apns.delivered.filter((p) => p.token === device.token.toString('hex'));
    expect(pushes).toHaveLength(1);
    expect(JSON.parse(pushes[0]!.body)).toEqual({ mdm: device.pushMagic });
    expect(await device.runSession()).toEqual([expect.objectContaining({ requestType: 'DeviceLock', status: 'Acknowledged' })]);
  }
  // The sends happened on the other thread: this thread's own counter never moved.
  const metrics = await s.api.get('/metrics').expect(200);
  expect(pushCount(metrics.text, 'sent')).toBe(3);
  expect(metrics.text).toContain('# TYPE mooring_http_request_duration_seconds histogram');
});

it("hands out a command the thread's sweep put back, though the server remembered the device as idle", async () => {
  const { device, id } = await enrolled();
  await s.api.post('/api/v1/commands').send({ device_ids: [id], type: 'device_info' }).expect(202);
  const first = await device.idle();
  expect(first.command?.Command.RequestType).toBe('DeviceInformation');
  // The device drops the command unanswered; its next poll finds nothing and is remembered as idle.
  expect((await device.idle()).body).toHaveLength(0);
  expect((await device.idle()).body).toHaveLength(0);
  await s.m.db('commands').where({ device_id: id, status: 'sent' }).update({ sent_at: new Date(Date.now() - 60_000) });
  let again: Awaited<ReturnType<SimulatedAppleDevice['idle']>> | undefined;
  await eventually(
    async () => {
      again = await device.idle();
      return again.body.length > 0;
    },
    8_000,
    'the requeued command at the next idle poll (the remembered idle answer lasts 30 s)',
  );
  expect(again!.command).toMatchObject({ CommandUUID: first.command!.CommandUUID, Command: { RequestType: 'DeviceInformation' } });
});

it('stops the thread, after which pushes wait in the queue', async () => {
  await worker!.stop();
  worker = undefined;
  const { id } = await enrolled();
  apns.reset();
  await s.api.post('/api/v1/commands').send({ device_ids: [id], type: 'device_info' }).expect(202);
  await new Promise((r) => setTimeout(r, 500));
  expect(apns.delivered).toHaveLength(0);
  const metrics = await s.api.get('/metrics').expect(200);
  expect(pushCount(metrics.text, 'sent')).toBe(0); // the thread's counters left with it
});
