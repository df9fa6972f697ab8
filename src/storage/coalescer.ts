/**
 * Folds concurrent one-at-a-time requests into shared batches, so that under load many callers cost
 * one statement (one round trip, one commit) instead of one each.
 *
 * Requests made in the same turn of the event loop leave together, on the next turn, as long as
 * fewer than `maxInFlight` batches are out: an idle system adds no wait beyond that turn. When every
 * slot is busy, new requests gather and leave together as soon as a slot frees. This is group commit,
 * done in the client: a busy database does less work per request exactly when that matters. (Sending
 * on the next turn, not at once, matters: the callers a batch answers usually ask again straight away,
 * and should share the next batch instead of each taking a free slot alone.)
 *
 * A batch never holds the same key twice (a second request for a key already in the forming batch
 * waits for the next one), so the batch function may answer by key.
 */
export interface CoalescerOptions {
  /** Batches out at once; more requests than this wait and are sent together. */
  maxInFlight: number;
  /** Requests per batch at most. */
  maxBatch: number;
}

interface Waiting<K, I, R> {
  key: K;
  input: I;
  resolve: (value: R | undefined) => void;
  reject: (error: unknown) => void;
}

/** Runs one batch; answers per key (a key missing from the map gets `undefined`). */
export type BatchRunner<K, I, R> = (batch: ReadonlyArray<{ key: K; input: I }>) => Promise<Map<K, R>>;

export class Coalescer<K, I, R> {
  private waiting: Array<Waiting<K, I, R>> = [];
  private inFlight = 0;
  private pumpScheduled = false;

  constructor(
    private readonly run: BatchRunner<K, I, R>,
    private readonly opts: CoalescerOptions,
  ) {}

  request(key: K, input: I): Promise<R | undefined> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ key, input, resolve, reject });
      this.schedulePump();
    });
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.waiting.length > 0) {
      const batch = this.takeBatch();
      this.inFlight++;
      this.run(batch).then(
        (answers) => {
          for (const w of batch) w.resolve(answers.get(w.key));
        },
        (error: unknown) => {
          for (const w of batch) w.reject(error);
        },
      ).finally(() => {
        this.inFlight--;
        this.schedulePump();
      });
    }
  }

  /** The oldest waiting requests, one per key, in arrival order; the rest keep their places. */
  private takeBatch(): Array<Waiting<K, I, R>> {
    const batch: Array<Waiting<K, I, R>> = [];
    const keys = new Set<K>();
    const rest: Array<Waiting<K, I, R>> = [];
    for (const w of this.waiting) {
      if (batch.length < this.opts.maxBatch && !keys.has(w.key)) {
        keys.add(w.key);
        batch.push(w);
      } else {
        rest.push(w);
      }
    }
    this.waiting = rest;
    return batch;
  }
}
