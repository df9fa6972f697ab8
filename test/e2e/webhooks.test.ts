/**
 * Webhooks from the outbox, to a real HTTP receiver on loopback: every event arrives as signed JSON,
 * a receiver that fails first gets the event again (with backoff), and nothing is sent twice.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RunningWorker } from '../../src/worker';
import { eventually } from '../helpers/recording-provider';
import { startTestServer, type TestServer } from '../helpers/server';

interface Delivery {
  headers: http.IncomingHttpHeaders;
  body: string;
}

const SECRET = 'test-webhook-secret';
let receiver: http.Server;
let deliveries: Delivery[] = [];
let failNext = 0;
let s: TestServer;
let worker: RunningWorker;

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (failNext > 0) {
        failNext -= 1;
        res.writeHead(503).end('try later');
        return;
      }
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  s = await startTestServer({ env: { MOORING_WEBHOOK_URLS: url, MOORING_WEBHOOK_SECRET: SECRET }, retryDelayMs: 50 });
  worker = s.m.startWorker({ relayEveryMs: 50 });
});

afterAll(async () => {
  await worker.stop();
  await s.stop();
  await new Promise((r) => receiver.close(r));
});

const eventsOfType = (type: string) => deliveries.filter((d) => JSON.parse(d.body).type === type);

it('delivers each event once as JSON signed with HMAC-SHA256 of the body', async () => {
  const { device } = await s.device();
  const res = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
  await eventually(() => deliveries.some((d) => JSON.parse(d.body).command_id === res.body.id), 10_000, 'the webhook');
  const delivery = deliveries.find((d) => JSON.parse(d.body).command_id === res.body.id)!;
  const expected = `sha256=${crypto.createHmac('sha256', SECRET).update(delivery.body).digest('hex')}`;
  expect(delivery.headers['x-mooring-signature']).toBe(expected);
  expect(delivery.headers['content-type']).toBe('application/json');
  expect(delivery.headers['x-mooring-event']).toBe('command.queued');
  expect(JSON.parse(delivery.body)).toMatchObject({ type: 'command.queued', device_id: device.id, command_id: res.body.id, data: { type: 'lock' } });
  await new Promise((r) => setTimeout(r, 300));
  expect(deliveries.filter((d) => JSON.parse(d.body).command_id === res.body.id && JSON.parse(d.body).type === 'command.queued')).toHaveLength(1);
});

it('retries a delivery the receiver refused, and marks the outbox row published', async () => {
  failNext = 2;
  const created = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android' }).expect(201);
  await eventually(() => eventsOfType('enrollment_token.created').some((d) => JSON.parse(d.body).data.enrollment_token_id === created.body.id), 15_000, 'the retried webhook');
  expect(failNext).toBe(0);
  const row = await s.m.db('events').where({ type: 'enrollment_token.created' }).whereRaw("data->>'enrollment_token_id' = ?", [created.body.id]).first();
  expect(row.published_at).not.toBeNull();
});

it('keeps events written while the worker is down and sends them when it is back', async () => {
  await worker.stop();
  const { device } = await s.device();
  const res = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'restart' }).expect(202);
  const unpublished = await s.m.db('events').whereNull('published_at').count('* as n').first();
  expect(Number(unpublished?.n)).toBeGreaterThan(0);
  worker = s.m.startWorker({ relayEveryMs: 50 });
  await eventually(() => deliveries.some((d) => JSON.parse(d.body).command_id === res.body.id), 10_000, 'the late webhook');
});
