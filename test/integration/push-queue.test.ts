/**
 * The push dispatcher contract, run against both BullMQ backends (Postgres always; Redis when
 * REDIS_URL is set or a redis-server binary exists): coalescing per enrollment, delivery through the
 * platform's provider, retry with backoff, dead-token marking, bulk fan-out, and NotNow re-push.
 */
import { PushRetryError, pushBackoff } from '../../src/push/dispatcher';
import { PushProviderRegistry } from '../../src/push/provider';
import type { RunningWorker } from '../../src/worker';
import { QUEUE_BACKENDS } from '../helpers/database';
import { RecordingProvider, eventually } from '../helpers/recording-provider';
import { startTestServer, type TestServer } from '../helpers/server';

describe.each(QUEUE_BACKENDS)('push queue on %s', (backend, url) => {
  if (backend === 'redis' && !url) {
    it.skip('needs REDIS_URL or a redis-server binary (skipped)', () => {});
    return;
  }

  let s: TestServer;
  let provider: RecordingProvider;
  let worker: RunningWorker | undefined;
  const counts = () => s.m.queues.queue('push').getJobCounts('waiting', 'delayed', 'active');

  beforeAll(async () => {
    provider = new RecordingProvider('android');
    s = await startTestServer({ queue: backend, pushProviders: new PushProviderRegistry().register(provider), retryDelayMs: 50 });
  });
  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
  });
  afterAll(() => s.stop());

  it('runs on the configured backend', () => {
    expect(s.m.queues.kind).toBe(backend);
  });

  it('coalesces repeated pushes for one enrollment into one job while it waits', async () => {
    const { enrollment } = await s.device();
    await s.m.dispatcher.push([enrollment.id]);
    await s.m.dispatcher.push([enrollment.id, enrollment.id]);
    await s.m.dispatcher.push([enrollment.id]);
    const c = await counts();
    expect(c.waiting + c.delayed).toBe(1);
    worker = s.m.startWorker();
    await eventually(() => provider.sent.some((t) => t.enrollmentId === enrollment.id), 10_000, 'the push');
    await new Promise((r) => setTimeout(r, 300));
    expect(provider.sent.filter((t) => t.enrollmentId === enrollment.id)).toHaveLength(1);
  });

  it('wakes the device when a command is queued, with its push credentials', async () => {
    worker = s.m.startWorker();
    const { device, enrollment } = await s.device({}, { push_token: 'fcm-token-1', push_topic: 'topic-1' });
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await eventually(() => provider.sent.some((t) => t.enrollmentId === enrollment.id), 10_000, 'the push');
    expect(provider.sent.find((t) => t.enrollmentId === enrollment.id)).toMatchObject({ token: 'fcm-token-1', topic: 'topic-1', deviceId: device.id, platform: 'android' });
  });

  it('retries a transient failure with backoff until it goes through', async () => {
    worker = s.m.startWorker();
    const { enrollment } = await s.device();
    provider.answer({ outcome: 'retry', reason: '503 from provider' }, { outcome: 'retry', reason: 'connection reset' });
    await s.m.dispatcher.push([enrollment.id]);
    await eventually(() => provider.sent.some((t) => t.enrollmentId === enrollment.id), 15_000, 'the third attempt');
    expect(provider.attempts.filter((t) => t.enrollmentId === enrollment.id)).toHaveLength(3);
  });

  it('waits at least as long as the provider\'s Retry-After before trying again', async () => {
    worker = s.m.startWorker();
    const { enrollment } = await s.device();
    provider.answer({ outcome: 'retry', reason: '503 with Retry-After: 1', retryAfterMs: 1000 });
    const started = Date.now();
    await s.m.dispatcher.push([enrollment.id]);
    await eventually(() => provider.sent.some((t) => t.enrollmentId === enrollment.id), 15_000, 'the retried push');
    // The base backoff in these tests is 50 ms; only the Retry-After explains a wait of a second.
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('marks a dead token once and stops pushing to it', async () => {
    worker = s.m.startWorker();
    const { device, enrollment } = await s.device();
    provider.answer({ outcome: 'dead_token', reason: 'Unregistered' });
    await s.m.dispatcher.push([enrollment.id]);
    await eventually(async () => Boolean((await s.m.devices.getEnrollment(enrollment.id))?.push_token_dead_at), 10_000, 'dead-token mark');
    const events = await s.m.events.list({ device_id: device.id, type: 'push.token_dead' }, { limit: 5 });
    expect(events.items).toHaveLength(1);
    expect(events.items[0]!.data).toMatchObject({ enrollment_id: enrollment.id, reason: 'Unregistered' });
    const before = provider.attempts.length;
    await s.m.dispatcher.push([enrollment.id]);
    await eventually(async () => {
      const c = await counts();
      return c.waiting + c.delayed + c.active === 0;
    });
    expect(provider.attempts.length).toBe(before);
  });

  it('fans a large bulk batch out to every enrollment from the worker', async () => {
    worker = s.m.startWorker();
    const targets = await Promise.all(Array.from({ length: 12 }, () => s.device()));
    const result = await s.m.commands.enqueueBulk(targets.map((t) => t.device.id), { type: 'restart' }, 'test');
    const wanted = targets.map((t) => t.enrollment.id);
    const pushedSince = (mark: number) => new Set(provider.sent.slice(mark).map((t) => t.enrollmentId));
    // A batch this small is pushed directly; wait for that, then fan the batch out from the worker.
    await eventually(() => wanted.every((id) => pushedSince(0).has(id)), 15_000, 'the direct pushes');
    const mark = provider.sent.length;
    await s.m.dispatcher.pushBatch(result.batch_id);
    await eventually(() => wanted.every((id) => pushedSince(mark).has(id)), 15_000, 'all fan-out pushes');
  });

  it('fans out only the commands of one committed chunk when given its seq range', async () => {
    worker = s.m.startWorker();
    const targets = await Promise.all(Array.from({ length: 6 }, () => s.device()));
    const result = await s.m.commands.enqueueBulk(targets.map((t) => t.device.id), { type: 'restart' }, 'test');
    await eventually(() => targets.every((t) => provider.sent.some((p) => p.enrollmentId === t.enrollment.id)), 15_000, 'the direct pushes');
    const rows = await s.m.db('commands').where({ batch_id: result.batch_id }).orderBy('seq').select('seq', 'enrollment_id');
    const chunk = rows.slice(2, 5);
    const mark = provider.sent.length;
    await s.m.dispatcher.pushBatch(result.batch_id, { first: String(chunk[0].seq), last: String(chunk.at(-1).seq) });
    await eventually(() => provider.sent.length - mark >= 3, 15_000, 'the chunk\'s pushes');
    await new Promise((r) => setTimeout(r, 200)); // nothing else follows
    expect(new Set(provider.sent.slice(mark).map((p) => p.enrollmentId))).toEqual(new Set(chunk.map((r) => r.enrollment_id)));
    expect(provider.sent.length - mark).toBe(3);
  });

  it('sends a fan-out page straight from the job, and a transient failure there becomes its own retried push', async () => {
    const targets = await Promise.all(Array.from({ length: 6 }, () => s.device()));
    const result = await s.m.commands.enqueueBulk(targets.map((t) => t.device.id), { type: 'restart' }, 'test');
    worker = s.m.startWorker();
    await eventually(() => targets.every((t) => provider.sent.some((p) => p.enrollmentId === t.enrollment.id)), 15_000, 'the direct pushes');
    const mark = provider.attempts.length;
    const sentMark = provider.sent.length;
    provider.answer({ outcome: 'retry', reason: '503 during fan-out' });
    await s.m.dispatcher.pushBatch(result.batch_id);
    await eventually(() => targets.every((t) => provider.sent.slice(sentMark).some((p) => p.enrollmentId === t.enrollment.id)), 15_000, 'every fan-out push, the failed one retried');
    // Six sends from the page, one of them refused, plus its retry: seven attempts, each device reached once.
    expect(provider.attempts.length - mark).toBe(7);
    expect(provider.sent.length - sentMark).toBe(6);
  });

  it('finishes without retrying when no provider serves the platform', async () => {
    worker = s.m.startWorker();
    const { enrollment } = await s.device({ platform: 'windows' });
    await s.m.dispatcher.push([enrollment.id]);
    await eventually(async () => {
      const c = await s.m.queues.queue('push').getJobCounts('waiting', 'delayed', 'active', 'failed');
      return c.waiting + c.delayed + c.active === 0;
    });
    expect(provider.attempts.some((t) => t.enrollmentId === enrollment.id)).toBe(false);
  });

  it('re-pushes after NotNow, and an immediate push overtakes that delayed one', async () => {
    const { device, enrollment } = await s.device();
    const { command } = await s.m.commands.enqueue(device.id, { type: 'device_info' }, 'test');
    await s.m.commands.next(enrollment.id);
    // The push from enqueue is still waiting (no worker); NotNow asks for a later re-push, which joins it.
    await s.m.commands.report(enrollment.id, command.id, { status: 'not_now' });
    let c = await counts();
    expect(c.waiting + c.delayed).toBe(1);
    worker = s.m.startWorker();
    await eventually(() => provider.sent.some((t) => t.enrollmentId === enrollment.id), 10_000, 'first push');
    const sentBefore = provider.sent.filter((t) => t.enrollmentId === enrollment.id).length;
    // A NotNow now schedules a delayed re-push...
    await s.m.commands.next(enrollment.id);
    await s.m.commands.report(enrollment.id, command.id, { status: 'not_now' });
    await eventually(async () => (c = await counts()).delayed === 1, 5000, 'a delayed re-push');
    // ...which a new command's immediate push pulls forward.
    await s.m.commands.enqueue(device.id, { type: 'lock' }, 'test');
    await eventually(() => provider.sent.filter((t) => t.enrollmentId === enrollment.id).length > sentBefore, 10_000, 'the pulled-forward push');
    c = await counts();
    expect(c.delayed).toBe(0);
  });
});

describe('pushBackoff', () => {
  it('doubles from the base with jitter, and never undercuts Retry-After', () => {
    const half = pushBackoff(1000, () => 0.5); // no jitter
    expect([1, 2, 3, 4].map((n) => half(n))).toEqual([1000, 2000, 4000, 8000]);
    const low = pushBackoff(1000, () => 0);
    const high = pushBackoff(1000, () => 0.999);
    expect(low(3)).toBe(2000);
    expect(high(3)).toBeLessThan(6000);
    expect(half(1, 'mooring-push', new PushRetryError('quota', 60_000))).toBe(60_000);
    expect(half(5, 'mooring-push', new PushRetryError('busy', 1000))).toBe(16_000);
  });
});
