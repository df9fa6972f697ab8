/**
 * A push provider for the dispatcher contract: it records every target it is asked to wake and
 * answers from a script (sent by default), standing in for the platform provider the worker calls.
 */
import type { Platform } from '../../src/core/types';
import type { PushProvider, PushResult, PushTarget } from '../../src/push/provider';

export class RecordingProvider implements PushProvider {
  readonly sent: PushTarget[] = [];
  readonly attempts: PushTarget[] = [];
  #script: PushResult[] = [];

  constructor(readonly platform: Platform = 'android') {}

  /** The next answers, in order; after them every send succeeds. */
  answer(...results: PushResult[]): void {
    this.#script.push(...results);
  }

  async send(target: PushTarget): Promise<PushResult> {
    this.attempts.push(target);
    const result = this.#script.shift() ?? { outcome: 'sent' };
    if (result.outcome === 'sent') this.sent.push(target);
    return result;
  }
}

/** Polls `check` until it returns true (or throws after `ms`). */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
