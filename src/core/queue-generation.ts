/**
 * A number that moves whenever some device's queue may have gained work it did not have: a command
 * queued, a command put back for redelivery, a NotNow'd command waiting for the next session, or a
 * device's enrollment changed. An idle poll that found nothing at generation G can be answered
 * "nothing" again without the database for as long as the generation is still G (src/core/idle-cache.ts).
 *
 * Moved only after the change is committed, so a poll that reads the old number either ran its query
 * before the commit (and its answer was true then) or will see the new number next time.
 */
export interface QueueGeneration {
  /** The current generation. */
  read(): Promise<number>;
  /** Moves the generation on; call after the change has committed. */
  bump(): Promise<void>;
}

/**
 * One process holds every queue change (the embedded default): a counter in memory is the truth. The
 * counter lives in shared memory, so the background worker's thread (src/worker-thread.ts), which puts
 * unreported commands back, moves the same number the server's idle polls read.
 */
export class LocalQueueGeneration implements QueueGeneration {
  /** Hand this to another thread (it is shared, not copied) and build a LocalQueueGeneration on it there. */
  readonly buffer: SharedArrayBuffer;
  readonly #value: BigInt64Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT)) {
    this.buffer = buffer;
    this.#value = new BigInt64Array(buffer, 0, 1);
  }

  read(): Promise<number> {
    return Promise.resolve(Number(Atomics.load(this.#value, 0)));
  }

  bump(): Promise<void> {
    Atomics.add(this.#value, 0, 1n);
    return Promise.resolve();
  }
}
