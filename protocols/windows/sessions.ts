/**
 * The channel behind an OMA-DM session, remembered on its connection for the session's later
 * messages, so a message with nothing to record (a Status answer, the usual second message) costs no
 * round trip to identify its device.
 *
 * What is remembered is keyed by the certificate (its SHA-256, checked on every message as before),
 * the SyncML Source and the SessionID: another certificate, device or session on the same connection
 * (a proxy's) is looked up again. The tradeoff: for at most TTL_MS within one session, a change made
 * elsewhere (an admin removing the device, a re-enrollment replacing the certificate) is not seen;
 * the device leaving by itself (alert 1226) forgets the channel at once. Last seen is not written for
 * remembered messages: the session's first message already marked it.
 */
import type { ManagedChannel } from '../../src/storage/windows';

/** What a remembered channel is valid for: this certificate, this device, this session. */
export interface SessionKey {
  certSha256: string;
  source: string;
  sessionId: string;
}

interface Remembered {
  key: SessionKey;
  channel: ManagedChannel;
  until: number;
}

export class SessionChannels {
  static readonly TTL_MS = 30_000;
  // One entry per connection (its latest session), dropped with the connection.
  readonly #byConnection = new WeakMap<object, Remembered>();

  remember(connection: object, key: SessionKey, channel: ManagedChannel): void {
    this.#byConnection.set(connection, { key, channel, until: Date.now() + SessionChannels.TTL_MS });
  }

  recall(connection: object, key: SessionKey): ManagedChannel | undefined {
    const entry = this.#byConnection.get(connection);
    if (!entry || entry.until <= Date.now()) return undefined;
    const k = entry.key;
    return k.certSha256 === key.certSha256 && k.source === key.source && k.sessionId === key.sessionId ? entry.channel : undefined;
  }

  forget(connection: object): void {
    this.#byConnection.delete(connection);
  }
}
