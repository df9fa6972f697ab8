/**
 * A bulk batch's fan-out, driven through the worker's job processor with in-memory stand-ins for the
 * enrollment store and a provider: across several pages every channel is sent to exactly once, the
 * stream never has more than its bound in flight, and transient failures become one retried push.
 */
import { PushProviderRegistry, type PushResult, type PushTarget } from '../../src/push/provider';
import { FANOUT_CONCURRENCY, pushProcessor, type PushDispatcher } from '../../src/push/dispatcher';
import type { Enrollment } from '../../src/core/types';

function fakeEnrollment(i: number): Enrollment {
  const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  return { id, device_id: id, platform: 'apple', status: 'enrolled', push_token: `token-${i}`, push_topic: 'com.apple.mgmt.test', push_magic: `magic-${i}`, push_token_dead_at: null } as unknown as Enrollment;
}

function setup(channels: number, answer: (t: PushTarget) => PushResult = () => ({ outcome: 'sent' })) {
  const all = Array.from({ length: channels }, (_, i) => fakeEnrollment(i));
  const sent: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const pagesRead: number[] = [];
  const provider = {
    platform: 'apple' as const,
    async send(t: PushTarget): Promise<PushResult> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, Math.random() * 3));
      inFlight--;
      sent.push(t.enrollmentId);
      return answer(t);
    },
  };
  const retried: string[][] = [];
  const process = pushProcessor({
    providers: new PushProviderRegistry().register(provider),
    enrollments: {
      getEnrollment: async (id) => all.find((e) => e.id === id),
      markPushTokenDead: async () => true,
      // A channel's command has seq i + 1; a chunk's job names a seq range.
      channelsOfBatch: async (_batch, after, limit, range) => {
        const from = after === null ? 0 : all.findIndex((e) => e.id === after) + 1;
        pagesRead.push(from);
        const inRange = (i: number) => !range || (i + 1 >= Number(range.first) && i + 1 <= Number(range.last));
        return all
          .map((e, i) => ({ e, i }))
          .slice(from)
          .filter(({ i }) => inRange(i))
          .slice(0, limit)
          .map(({ e }) => e);
      },
    },
    dispatcher: { push: async (ids: string[]) => void retried.push(ids) } as unknown as PushDispatcher,
    log: { warn: () => undefined },
  });
  return {
    all,
    sent,
    retried,
    pagesRead,
    maxInFlight: () => maxInFlight,
    run: (range?: { first_seq: string; last_seq: string }) => process({ name: 'fanout', data: { batch_id: 'b', ...range } }),
  };
}

describe('bulk fan-out', () => {
  it('sends to every channel of a multi-page batch exactly once, with a bounded number in flight', async () => {
    const f = setup(2_500);
    const summary = await f.run();
    expect(summary).toBe('fanned out sent 2500');
    expect(f.sent).toHaveLength(2_500);
    expect(new Set(f.sent).size).toBe(2_500);
    expect(f.pagesRead).toEqual([0, 1000, 2000, 2500]); // three pages, then the empty one that ends it
    expect(f.maxInFlight()).toBeLessThanOrEqual(FANOUT_CONCURRENCY);
    expect(f.maxInFlight()).toBeGreaterThan(FANOUT_CONCURRENCY * 0.8); // a continuous stream, not one send at a time
  });

  it('collects transient failures from every page into one retried push', async () => {
    const f = setup(1_500, (t) => (t.enrollmentId.endsWith('7') ? { outcome: 'retry', reason: '503' } : { outcome: 'sent' }));
    const summary = await f.run();
    const failing = f.all.filter((e) => e.id.endsWith('7')).map((e) => e.id);
    expect(summary).toBe(`fanned out sent ${1_500 - failing.length}, retry ${failing.length}`);
    expect(f.retried).toHaveLength(1);
    expect(new Set(f.retried[0])).toEqual(new Set(failing));
  });

  it('sends only to the channels of one committed chunk when the job names its seq range', async () => {
    const f = setup(3_000);
    const summary = await f.run({ first_seq: '1001', last_seq: '2500' });
    expect(summary).toBe('fanned out sent 1500');
    expect(new Set(f.sent)).toEqual(new Set(f.all.slice(1000, 2500).map((e) => e.id)));
  });

  it('keeps the chunks of one bulk request, fanned out side by side, under one bound together', async () => {
    const f = setup(3_000);
    const chunks = [
      { first_seq: '1', last_seq: '1000' },
      { first_seq: '1001', last_seq: '2000' },
      { first_seq: '2001', last_seq: '3000' },
    ];
    const summaries = await Promise.all(chunks.map((c) => f.run(c)));
    expect(summaries).toEqual(['fanned out sent 1000', 'fanned out sent 1000', 'fanned out sent 1000']);
    expect(new Set(f.sent).size).toBe(3_000);
    expect(f.maxInFlight()).toBeLessThanOrEqual(FANOUT_CONCURRENCY);
    expect(f.maxInFlight()).toBeGreaterThan(FANOUT_CONCURRENCY * 0.8);
  });

  it('ends at once for an empty batch', async () => {
    const f = setup(0);
    await expect(f.run()).resolves.toBe('fanned out nothing');
    expect(f.sent).toHaveLength(0);
  });
});
