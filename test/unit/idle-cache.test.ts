/**
 * The idle-poll cache: a remembered "nothing queued" holds only for the same channel, certificate and
 * queue generation, and only within the last-seen resolution; a change moves the shared generation.
 */
import { IdleCache } from '../../src/core/idle-cache';
import { LocalQueueGeneration } from '../../src/core/queue-generation';

function setup(maxEntries = 10) {
  let now = 1_000_000;
  const generation = new LocalQueueGeneration();
  const cache = new IdleCache(generation, { ttlMs: 30_000, maxEntries, now: () => now });
  return { cache, generation, advance: (ms: number) => (now += ms) };
}

describe('IdleCache', () => {
  it('answers from memory only for the same certificate, at the same generation, within the ttl', async () => {
    const { cache, generation, advance } = setup();
    const g = await cache.current();
    expect(cache.isIdle('UDID-1', 'cert-a', g)).toBe(false);
    cache.remember('UDID-1', 'cert-a', g);
    expect(cache.isIdle('UDID-1', 'cert-a', g)).toBe(true);
    expect(cache.isIdle('UDID-2', 'cert-a', g)).toBe(false);
    // Another certificate for the channel (a re-enrollment, or someone else's): ask the database.
    expect(cache.isIdle('UDID-1', 'cert-b', g)).toBe(false);
    expect(cache.isIdle('UDID-1', 'cert-a', g)).toBe(false); // and the entry is gone

    cache.remember('UDID-1', 'cert-a', g);
    await generation.bump(); // a command was queued somewhere
    expect(cache.isIdle('UDID-1', 'cert-a', await cache.current())).toBe(false);

    const g2 = await cache.current();
    cache.remember('UDID-1', 'cert-a', g2);
    advance(29_999);
    expect(cache.isIdle('UDID-1', 'cert-a', g2)).toBe(true);
    advance(1);
    expect(cache.isIdle('UDID-1', 'cert-a', g2)).toBe(false); // last seen must be written again

    // Last seen was written 20 s before this lookup: the entry lasts the 10 s left.
    cache.remember('UDID-1', 'cert-a', g2, 20_000);
    advance(9_999);
    expect(cache.isIdle('UDID-1', 'cert-a', g2)).toBe(true);
    advance(1);
    expect(cache.isIdle('UDID-1', 'cert-a', g2)).toBe(false);
  });

  it('a lookup that started before a change cannot hide it', async () => {
    const { cache, generation } = setup();
    const before = await cache.current(); // the poll reads the generation, then queries
    await generation.bump(); // meanwhile a command is queued and committed
    cache.remember('UDID-1', 'cert-a', before); // the query had found nothing
    expect(cache.isIdle('UDID-1', 'cert-a', await cache.current())).toBe(false);
  });

  it('forgets a channel that changed here and moves the generation for other processes', async () => {
    const { cache, generation } = setup();
    const g = await cache.current();
    cache.remember('UDID-1', 'cert-a', g);
    cache.remember('UDID-2', 'cert-b', g);
    await cache.changed('UDID-1');
    expect(await generation.read()).toBe(g! + 1);
    expect(cache.size).toBe(1);
    expect(cache.isIdle('UDID-2', 'cert-b', await cache.current())).toBe(false);
  });

  it('stays within its bound', async () => {
    const { cache } = setup(3);
    const g = await cache.current();
    for (let i = 0; i < 7; i++) cache.remember(`UDID-${i}`, 'c', g);
    expect(cache.size).toBeLessThanOrEqual(3);
    expect(cache.isIdle('UDID-6', 'c', g)).toBe(true);
  });

  it('asks the database when the generation cannot be read, and remembers nothing then', async () => {
    const failing = { read: () => Promise.reject(new Error('redis down')), bump: () => Promise.resolve() };
    const cache = new IdleCache(failing, { ttlMs: 30_000, maxEntries: 10 });
    const g = await cache.current();
    expect(g).toBeUndefined();
    cache.remember('UDID-1', 'cert-a', g);
    expect(cache.size).toBe(0);
    expect(cache.isIdle('UDID-1', 'cert-a', g)).toBe(false);
  });
});

describe('LocalQueueGeneration', () => {
  it('is one number for every instance built on its buffer (the worker thread builds one on the server\'s)', async () => {
    const server = new LocalQueueGeneration();
    const worker = new LocalQueueGeneration(server.buffer);
    await worker.bump();
    await worker.bump();
    expect(await server.read()).toBe(2);
    await server.bump();
    expect(await worker.read()).toBe(3);
    expect(await new LocalQueueGeneration().read()).toBe(0);
  });
});
