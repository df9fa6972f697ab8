/**
 * Lanes (src/http/lanes.ts) over a real loopback HTTP server: the exact method and path go to the lane,
 * everything else to express; both keep the request id and the latency metric; a lane that fails
 * answers 500 without leaking the error.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import pino from 'pino';
import { withLanes } from '../../src/http/lanes';
import { requestLogging } from '../../src/http/logging';
import { httpDuration } from '../../src/metrics';

const logged: Array<Record<string, unknown>> = [];
const logger = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) });
let server: http.Server;
let base: string;

beforeAll(async () => {
  const app = express();
  app.use(requestLogging(logger));
  app.all('/lane', (req, res) => void res.type('text/plain').send(`express ${req.method}`));
  const listener = withLanes(
    app,
    [
      { method: 'PUT', path: '/lane', handle: async (_req, res) => void res.writeHead(200, { 'content-type': 'text/plain' }).end('lane') },
      { method: 'PUT', path: '/broken', handle: async () => Promise.reject(new Error('secret detail')) },
    ],
    logger,
  );
  server = http.createServer(listener);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function count(route: string, status: string): Promise<number> {
  const metric = await httpDuration.get();
  const series = metric.values.find((v) => v.metricName?.endsWith('_count') && v.labels.method === 'PUT' && v.labels.route === route && v.labels.status === status);
  return series?.value ?? 0;
}

it('sends the exact method and path down the lane, whatever the query, and anything else to express', async () => {
  const answers = await Promise.all([
    fetch(`${base}/lane`, { method: 'PUT', body: 'x' }),
    fetch(`${base}/lane?q=1`, { method: 'PUT', body: 'x' }),
    fetch(`${base}/lane/`, { method: 'PUT', body: 'x' }),
    fetch(`${base}/lane`, { method: 'POST', body: 'x' }),
    fetch(`${base}/lane`),
  ]);
  expect(await Promise.all(answers.map((r) => r.text()))).toEqual(['lane', 'lane', 'express PUT', 'express POST', 'express GET']);
});

it('gives lane requests a request id (or echoes a sane one) and a latency sample under the lane path', async () => {
  const before = await count('/lane', '200');
  const fresh = await fetch(`${base}/lane`, { method: 'PUT', body: 'x' });
  expect(fresh.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  const given = await fetch(`${base}/lane`, { method: 'PUT', body: 'x', headers: { 'x-request-id': 'device-42' } });
  expect(given.headers.get('x-request-id')).toBe('device-42');
  const insane = await fetch(`${base}/lane`, { method: 'PUT', body: 'x', headers: { 'x-request-id': 'a b' } });
  expect(insane.headers.get('x-request-id')).not.toBe('a b');
  await Promise.all([fresh, given, insane].map((r) => r.text()));
  expect(await count('/lane', '200')).toBe(before + 3);
  expect(logged).toContainEqual(expect.objectContaining({ msg: 'request', req_id: 'device-42', url: '/lane', status: 200 }));
});

it('answers a failing lane with a plain 500, logs the error and keeps serving', async () => {
  const res = await fetch(`${base}/broken`, { method: 'PUT', body: 'x' });
  expect(res.status).toBe(500);
  expect(await res.text()).toBe('Internal Server Error');
  expect(logged).toContainEqual(expect.objectContaining({ level: 50, msg: 'unhandled error', url: '/broken' }));
  expect(logged).toContainEqual(expect.objectContaining({ level: 50, msg: 'request', url: '/broken', status: 500 }));
  expect(await count('/broken', '500')).toBe(1);
  expect((await fetch(`${base}/lane`, { method: 'PUT', body: 'x' })).status).toBe(200);
});
