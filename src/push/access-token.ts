/**
 * An OAuth access token shared by one provider's sends: fetched once, reused until a minute before it
 * expires, fetched once for all concurrent callers, and dropped when the service says it is no good.
 */
export interface FreshToken {
  value: string;
  /** Seconds it lives, from when it was requested. */
  lifetimeSeconds: number;
}

const REFRESH_MARGIN_MS = 60_000;

export class AccessTokenCache {
  #token: { value: string; refreshAt: number } | undefined;
  #pending: Promise<string> | undefined;

  constructor(
    private readonly fetchToken: () => Promise<FreshToken>,
    private readonly now: () => number,
  ) {}

  get(): Promise<string> {
    if (this.#token && this.now() < this.#token.refreshAt) return Promise.resolve(this.#token.value);
    this.#pending ??= this.#refresh().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** Forgets `value` if it is still the cached token (a refused send; a newer token stays). */
  drop(value: string): void {
    if (this.#token?.value === value) this.#token = undefined;
  }

  async #refresh(): Promise<string> {
    const requestedAt = this.now();
    const fresh = await this.fetchToken();
    this.#token = { value: fresh.value, refreshAt: requestedAt + fresh.lifetimeSeconds * 1000 - REFRESH_MARGIN_MS };
    return fresh.value;
  }
}
