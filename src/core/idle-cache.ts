/**
 * "This channel had nothing queued": remembered per channel after an idle poll found nothing, so the
 * next idle poll of that channel, with the same identity certificate, at the same queue generation
 * (src/core/queue-generation.ts) and within the last-seen resolution, is answered without a database
 * round trip. The device's signature is still checked on every poll; only the lookup is skipped.
 *
 * An entry lasts until the channel's last-seen time is due to be written again (`ttlMs`, the resolution
 * of `last_seen_at`, after it was last written), so last-seen times stay as fresh as without the cache.
 */
import type { QueueGeneration } from './queue-generation';

interface Entry {
  certSha256: string;
  generation: number;
  at: number;
}

export class IdleCache {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly generation: QueueGeneration,
    private readonly opts: { ttlMs: number; maxEntries: number; now?: () => number },
  ) {}

  /**
   * The generation to check against and, after a fruitless lookup, to remember with. Undefined when
   * it cannot be read (Redis down): the poll then asks the database, as without the cache.
   */
  async current(): Promise<number | undefined> {
    try {
      return await this.generation.read();
    } catch {
      return undefined;
    }
  }

  /** True when this channel, with this certificate, had nothing queued at `generation`, recently. */
  isIdle(channelKey: string, certSha256: string, generation: number | undefined): boolean {
    if (generation === undefined) return false;
    const e = this.#entries.get(channelKey);
    if (!e) return false;
    if (e.certSha256 === certSha256 && e.generation === generation && this.#now() - e.at < this.opts.ttlMs) return true;
    this.#entries.delete(channelKey);
    return false;
  }

  /**
   * Records that a lookup started at `generation` found nothing queued for this channel. `ageMs`: how
   * long ago the channel's last-seen time was written (the entry expires when it is due again).
   */
  remember(channelKey: string, certSha256: string, generation: number | undefined, ageMs = 0): void {
    if (generation === undefined) return;
    // Past the bound, start over: entries are cheap to rebuild (one lookup each) and this keeps memory flat.
    if (this.#entries.size >= this.opts.maxEntries) this.#entries.clear();
    this.#entries.set(channelKey, { certSha256, generation, at: this.#now() - Math.max(0, ageMs) });
  }

  /** A change this process made: forget the channel here, and move the shared generation for the others. */
  async changed(channelKey: string): Promise<void> {
    this.#entries.delete(channelKey);
    await this.generation.bump();
  }

  get size(): number {
    return this.#entries.size;
  }

  #now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
