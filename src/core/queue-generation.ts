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

/** One process holds every queue change (the embedded default): a counter in memory is the truth. */
export class LocalQueueGeneration implements QueueGeneration {
  #value = 0;

  read(): Promise<number> {
    return Promise.resolve(this.#value);
  }

  bump(): Promise<void> {
    this.#value += 1;
    return Promise.resolve();
  }
}
