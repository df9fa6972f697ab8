/**
 * The Coalescer folds concurrent requests into shared batches (group commit in the client). These
 * tests drive it with a batch function whose completion the test controls.
 */
import { Coalescer } from '../../src/storage/coalescer';

interface Call {
  keys: string[];
  finish: (answers?: Map<string, string>) => void;
  fail: (error: Error) => void;
}

/** A batch runner that records each batch and answers only when the test says so. */
function controlledRunner() {
  const calls: Call[] = [];
  const run = (batch: ReadonlyArray<{ key: string; input: number }>) =>
    new Promise<Map<string, string>>((resolve, reject) => {
      const keys = batch.map((b) => b.key);
      calls.push({
        keys,
        finish: (answers) => resolve(answers ?? new Map(batch.map((b) => [b.key, `${b.key}:${b.input}`]))),
        fail: reject,
      });
    });
  return { calls, run };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
/** Lets a finished batch free its slot and the coalescer send what waits (a few turns). */
const settle = async () => {
  for (let i = 0; i < 3; i++) await turn();
};

describe('Coalescer', () => {
  it('sends requests made in one turn as one batch, on the next turn', async () => {
    const { calls, run } = controlledRunner();
    const c = new Coalescer(run, { maxInFlight: 2, maxBatch: 10 });
    const answers = [c.request('a', 1), c.request('b', 2), c.request('c', 3)];
    expect(calls).toHaveLength(0);
    await turn();
    expect(calls.map((x) => x.keys)).toEqual([['a', 'b', 'c']]);
    calls[0]!.finish();
    await expect(Promise.all(answers)).resolves.toEqual(['a:1', 'b:2', 'c:3']);
  });

  it('gathers requests while every slot is busy and sends them together when one frees', async () => {
    const { calls, run } = controlledRunner();
    const c = new Coalescer(run, { maxInFlight: 1, maxBatch: 10 });
    const first = c.request('a', 1);
    await turn();
    const later = [c.request('b', 1), c.request('c', 1)];
    await turn();
    const more = c.request('d', 1);
    await turn();
    expect(calls.map((x) => x.keys)).toEqual([['a']]); // the only slot is busy
    calls[0]!.finish();
    await first;
    await settle();
    expect(calls.map((x) => x.keys)).toEqual([['a'], ['b', 'c', 'd']]);
    calls[1]!.finish();
    await expect(Promise.all([...later, more])).resolves.toEqual(['b:1', 'c:1', 'd:1']);
  });

  it('never puts one key in a batch twice; the second request waits for the next batch', async () => {
    const { calls, run } = controlledRunner();
    const c = new Coalescer(run, { maxInFlight: 1, maxBatch: 10 });
    const one = c.request('a', 1);
    const two = c.request('a', 2);
    const other = c.request('b', 1);
    await turn();
    expect(calls.map((x) => x.keys)).toEqual([['a', 'b']]);
    calls[0]!.finish();
    await expect(one).resolves.toBe('a:1');
    await expect(other).resolves.toBe('b:1');
    await settle();
    expect(calls[1]!.keys).toEqual(['a']);
    calls[1]!.finish();
    await expect(two).resolves.toBe('a:2');
  });

  it('keeps batches to maxBatch and runs up to maxInFlight of them at once', async () => {
    const { calls, run } = controlledRunner();
    const c = new Coalescer(run, { maxInFlight: 2, maxBatch: 3 });
    const all = Array.from({ length: 8 }, (_, i) => c.request(`k${i}`, i));
    await turn();
    expect(calls.map((x) => x.keys)).toEqual([['k0', 'k1', 'k2'], ['k3', 'k4', 'k5']]);
    calls[1]!.finish();
    await settle();
    expect(calls[2]!.keys).toEqual(['k6', 'k7']);
    calls[0]!.finish();
    calls[2]!.finish();
    await expect(Promise.all(all)).resolves.toHaveLength(8);
  });

  it('answers undefined for a key the batch left out, and fails only the failed batch\'s requests', async () => {
    const { calls, run } = controlledRunner();
    const c = new Coalescer(run, { maxInFlight: 2, maxBatch: 2 });
    const [a, b, x] = [c.request('a', 1), c.request('b', 1), c.request('x', 1)];
    await turn();
    calls[0]!.finish(new Map([['a', 'only a']]));
    calls[1]!.fail(new Error('statement failed'));
    await expect(a).resolves.toBe('only a');
    await expect(b).resolves.toBeUndefined();
    await expect(x).rejects.toThrow('statement failed');
    // The failure freed its slot: the coalescer still works.
    const after = c.request('y', 5);
    await settle();
    calls[2]!.finish();
    await expect(after).resolves.toBe('y:5');
  });
});
