/**
 * Bounds how many pushes are in flight: per APNs connection (apns.ts), per FCM or WNS provider (each
 * request there is an HTTPS connection of its own), and across fan-outs (dispatcher.ts).
 */

/** Requests in flight at once to FCM or WNS (plain HTTPS: one connection per request in flight). */
export const HTTPS_PUSH_MAX_IN_FLIGHT = 256;

/** A counting semaphore: at most `limit` holders, the others wait in order. */
export class Slots {
  #active = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #idle: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async acquire(): Promise<void> {
    if (this.#active < this.limit) {
      this.#active += 1;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) return next(); // the slot passes straight to the next waiter
    this.#active -= 1;
    if (this.#active === 0) for (const done of this.#idle.splice(0)) done();
  }

  /** Runs `fn` holding a slot. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Resolves once nothing holds or waits for a slot. */
  idle(): Promise<void> {
    if (this.#active === 0 && this.#waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}
