/**
 * A push provider wakes one device channel: APNs for Apple (`{"mdm": PushMagic}`), WNS for Windows,
 * FCM for Android. Providers live in src/push/<name>.ts and register by platform; the dispatcher picks
 * one per job and acts on the outcome.
 */
import type { Platform } from '../core/types';

export interface PushTarget {
  enrollmentId: string;
  deviceId: string;
  platform: Platform;
  token: string;
  topic: string | null;
  pushMagic: string | null;
}

export type PushResult =
  | { outcome: 'sent' }
  /** The token will never work again (APNs 410 Unregistered, FCM UNREGISTERED): stop using it. */
  | { outcome: 'dead_token'; reason: string }
  /** Worth trying again later (network, 429, 5xx); `retryAfterMs` when the service said when. */
  | { outcome: 'retry'; reason: string; retryAfterMs?: number }
  /** Will not work however often retried (bad topic, bad credentials): record and stop. */
  | { outcome: 'failed'; reason: string };

export interface PushProvider {
  readonly platform: Platform;
  send(target: PushTarget): Promise<PushResult>;
  close?(): Promise<void>;
}

export class PushProviderRegistry {
  readonly #providers = new Map<Platform, PushProvider>();

  register(provider: PushProvider): this {
    this.#providers.set(provider.platform, provider);
    return this;
  }

  get(platform: Platform): PushProvider | undefined {
    return this.#providers.get(platform);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#providers.values()].map((p) => p.close?.()));
  }
}
