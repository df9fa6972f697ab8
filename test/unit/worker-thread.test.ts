/**
 * The worker thread's supervision, with stand-in entry scripts on real threads: a thread that dies is
 * started again and the death is logged; a thread's counters join the scrape and leave it when the
 * thread stops; a thread that cannot start makes the start fail with its reason. The real entry is
 * driven end to end in test/e2e/worker-thread.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig } from '../../src/config';
import { renderMetrics } from '../../src/metrics';
import { startWorkerThread } from '../../src/worker-thread';
import { eventually } from '../helpers/recording-provider';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-worker-thread-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function captureLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

/** A stand-in entry: counts its starts in a file, throws on the first start after saying ready, reports a counter. */
function crashOnceEntry(): { entry: string; starts(): number } {
  const counter = path.join(dir, 'starts');
  const entry = path.join(dir, 'crash-once.js');
  fs.writeFileSync(
    entry,
    `const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const counter = ${JSON.stringify(counter)};
const starts = Number(fs.existsSync(counter) ? fs.readFileSync(counter, 'utf8') : 0) + 1;
fs.writeFileSync(counter, String(starts));
parentPort.on('message', (msg) => {
  if (msg.type === 'stop') parentPort.close();
  if (msg.type === 'metrics') parentPort.postMessage({ type: 'metrics', id: msg.id, metrics: [
    { name: 'mooring_push_total', help: 'Push attempts', type: 'counter', aggregator: 'sum',
      values: [{ labels: { platform: 'apple', outcome: workerData.databaseUrl }, value: 7 }] },
  ] });
});
parentPort.postMessage({ type: 'ready' });
if (starts === 1) setTimeout(() => { throw new Error('boom in the worker'); }, 20);
`,
  );
  return { entry, starts: () => Number(fs.readFileSync(counter, 'utf8')) };
}

it('starts a thread that died again, logs why, adds its counters to the scrape until it stops', async () => {
  const { entry, starts } = crashOnceEntry();
  const { logger, lines } = captureLogger();
  const running = await startWorkerThread({ config: loadConfig({}), databaseUrl: 'from-the-server', logger, entry, restartDelayMs: 10 });
  try {
    await eventually(() => starts() === 2, 5_000, 'a second start');
    expect(lines.some((l) => l.msg === 'background worker thread failed' && (l.err as { message?: string })?.message === 'boom in the worker')).toBe(true);
    const died = lines.find((l) => String(l.msg).includes('stopped unexpectedly'));
    expect(died).toMatchObject({ level: 50, code: 1 });
    expect(died!.thread_id).toBeGreaterThan(0); // the thread's id from its start, not -1 after its exit
    await eventually(async () => (await renderMetrics()).includes('mooring_push_total{platform="apple",outcome="from-the-server"} 7'), 5_000, "the restarted thread's counter in the scrape");
  } finally {
    await running.stop();
  }
  expect(await renderMetrics()).not.toContain('outcome="from-the-server"');
  expect(starts()).toBe(2);
});

it('fails the start with the reason when the thread cannot start', async () => {
  const entry = path.join(dir, 'cannot-start.js');
  fs.writeFileSync(entry, `throw new Error('no database at that address');\n`);
  const { logger } = captureLogger();
  await expect(startWorkerThread({ config: loadConfig({}), databaseUrl: 'x', logger, entry })).rejects.toThrow('no database at that address');
});
