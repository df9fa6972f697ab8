/**
 * The Apple push provider: APNs over HTTP/2 with the MDM push certificate as TLS client certificate,
 * through @parse/node-apn. A push is only a wake-up: the body is exactly `{"mdm":"<PushMagic>"}` with
 * `apns-push-type: mdm`, the topic, priority 10 and a 7-day expiration (without one APNs drops the
 * push when the device is offline); the device then polls /mdm/connect for its commands.
 *
 * One node-apn Provider (one HTTP/2 connection) serves the active push certificate's topic. Every
 * send compares the certificate's version (its row id, checked at most once per `versionCheckMs`)
 * with the one the connection was opened with; after an upload a new connection is opened and the old
 * one is closed once its pushes in flight have finished. At most `maxInFlight` (1,000) pushes are
 * in flight per connection, whatever the dispatcher's concurrency: 20,000 streams opened at once make
 * the connection fail every one of them (NGHTTP2_ENHANCE_YOUR_CALM).
 *
 * node-apn is assembled from its parts (lib/client, lib/config, lib/provider) so that its own
 * certificate check is left out: it insists on the app-push environment extensions
 * (1.2.840.113635.100.6.3.1/.2) matching the host it connects to, which says nothing about an MDM
 * push certificate and refuses any test double's host. readPushCertificate already checked the
 * topic, the key and the expiry. node-apn's internal retries are off (connectionRetryLimit 0): the
 * dispatcher retries with backoff.
 *
 * See https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import { Notification } from '@parse/node-apn';
import client from 'prom-client';
import { registry } from '../metrics';
import { Slots } from './slots';
import type { PushProvider, PushResult, PushTarget } from './provider';

export const DEFAULT_APNS_URL = 'https://api.push.apple.com';
/** How long APNs keeps a push for an offline device. */
export const APNS_EXPIRATION_SECONDS = 7 * 24 * 3600;
/** Pushes in flight per HTTP/2 connection. */
export const APNS_MAX_IN_FLIGHT = 1000;
/** The expiry warning starts this many days ahead. */
export const APNS_EXPIRY_WARNING_DAYS = 30;

/** The active push certificate as the provider needs it (PgPushCertificateStore fits). */
export interface PushCertificateSource {
  /** The active certificate with its key, or undefined when none was uploaded. */
  active(): Promise<{ id: string; topic: string; certPem: string; keyPem: string; notAfter: Date } | undefined>;
  /** Changes whenever the active certificate does; null when there is none. */
  version(): Promise<string | null>;
}

export interface ApnsProviderOptions {
  certificates: PushCertificateSource;
  /** APNs base URL (`MOORING_APNS_URL`); default https://api.push.apple.com. */
  url?: string;
  /**
   * Extra CA certificates (PEM) to trust for the APNs server, on top of Node's root store (a
   * TLS-inspecting egress proxy; the mock in tests). Unset: the root store only.
   */
  ca?: string[];
  /** Pushes in flight per connection; default 1,000. */
  maxInFlight?: number;
  /** How often the certificate version is looked up at most (ms); default 1,000. */
  versionCheckMs?: number;
  /** Per-push timeout (ms); default 10,000. */
  timeoutMs?: number;
  /** Clock in ms (expiration header, version checks, certificate expiry). */
  now?: () => number;
}

// ---- node-apn, assembled without its certificate check (see the header) ----

interface ApnFailure {
  device?: string;
  status?: number;
  response?: { reason?: string; timestamp?: number | string };
  error?: Error;
}
interface ApnProvider {
  send(note: Notification, token: string): Promise<{ sent: unknown[]; failed: ApnFailure[] }>;
  shutdown(callback?: () => void): void;
}
type ApnProviderCtor = new (options: Record<string, unknown>) => ApnProvider;

const quiet = Object.assign((_msg: unknown) => undefined, { enabled: false });

const ApnProviderClass: ApnProviderCtor = (() => {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const credentials = require('@parse/node-apn/lib/credentials')({ logger: quiet });
  const config = require('@parse/node-apn/lib/config')({
    logger: quiet,
    // The PEMs go to TLS as they are: no parsing, no environment-extension check.
    prepareCertificate: (c: { cert: string; key: string }) => ({ cert: c.cert, key: c.key }),
    prepareToken: credentials.token,
    prepareCA: credentials.ca,
  });
  const Client = require('@parse/node-apn/lib/client')({ logger: quiet, config, http2 });
  return require('@parse/node-apn/lib/provider')({ logger: quiet, Client });
  /* eslint-enable @typescript-eslint/no-require-imports */
})();

interface Connection {
  version: string;
  /** Set once a newer certificate took over (or the provider closed): no new pushes start on it. */
  retired: boolean;
  topic: string;
  notAfter: Date;
  provider: ApnProvider;
  slots: Slots;
}

export class ApnsProvider implements PushProvider {
  readonly platform = 'apple' as const;
  readonly #certificates: PushCertificateSource;
  readonly #address: string;
  readonly #port: number;
  readonly #ca?: string[];
  readonly #maxInFlight: number;
  readonly #versionCheckMs: number;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  #conn: Connection | undefined;
  /** When the version was last looked up (ms), and the lookup under way. */
  #checkedAt = -Infinity;
  #checking: Promise<Connection | undefined> | undefined;
  #closed = false;

  constructor(opts: ApnsProviderOptions) {
    const url = new URL(opts.url ?? DEFAULT_APNS_URL);
    if (url.protocol !== 'https:') throw new Error(`the APNs URL must be https (got ${url.protocol})`);
    this.#certificates = opts.certificates;
    this.#address = url.hostname;
    this.#port = url.port ? Number(url.port) : 443;
    this.#ca = opts.ca?.length ? [...tls.rootCertificates, ...opts.ca] : undefined;
    this.#maxInFlight = opts.maxInFlight ?? APNS_MAX_IN_FLIGHT;
    this.#versionCheckMs = opts.versionCheckMs ?? 1000;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#now = opts.now ?? Date.now;
  }

  async send(target: PushTarget): Promise<PushResult> {
    if (!target.pushMagic) return { outcome: 'failed', reason: 'no PushMagic for this enrollment (no TokenUpdate yet)' };
    if (!/^[0-9a-f]+$/i.test(target.token)) return { outcome: 'dead_token', reason: 'the device token is not hex' };
    // A connection retired (certificate replaced) while this push waited for a slot is not used: look again.
    for (let attempt = 0; ; attempt++) {
      const picked = await this.#pick(target);
      if (!('provider' in picked)) return picked;
      const conn = picked;
      await conn.slots.acquire();
      if (conn.retired && attempt < 3) {
        conn.slots.release();
        continue;
      }
      try {
        const { failed } = await conn.provider.send(this.#notification(conn.topic, target.pushMagic), target.token.toLowerCase());
        return failed.length === 0 ? { outcome: 'sent' } : classifyApnsFailure(failed[0]!);
      } catch (err) {
        return { outcome: 'retry', reason: `APNs send failed: ${(err as Error).message}` };
      } finally {
        conn.slots.release();
      }
    }
  }

  /** The connection to push `target` over, or why there is none. */
  async #pick(target: PushTarget): Promise<Connection | PushResult> {
    if (this.#closed) return { outcome: 'retry', reason: 'the APNs provider is closed' };
    let conn: Connection | undefined;
    try {
      conn = await this.#connection();
      // A device enrolled under a certificate uploaded since the last look: look again before refusing.
      if (conn && target.topic && target.topic !== conn.topic) conn = await this.#connection(true);
    } catch (err) {
      return { outcome: 'retry', reason: `cannot read the APNs push certificate: ${(err as Error).message}` };
    }
    if (!conn) return { outcome: 'failed', reason: 'no APNs push certificate: upload one with PUT /api/v1/apple/push-certificate' };
    if (conn.notAfter.getTime() <= this.#now()) {
      return { outcome: 'failed', reason: `the APNs push certificate expired on ${conn.notAfter.toISOString()}; renew it and upload the new one` };
    }
    if (target.topic && target.topic !== conn.topic) {
      return { outcome: 'failed', reason: `the device enrolled under topic ${target.topic} but the push certificate is for ${conn.topic}; it must re-enroll` };
    }
    return conn;
  }

  /** `{"mdm": PushMagic}`, push type mdm, priority 10, kept 7 days for an offline device. */
  #notification(topic: string, pushMagic: string): Notification {
    const note = new Notification();
    note.mdm = pushMagic;
    note.pushType = 'mdm';
    note.topic = topic;
    note.priority = 10;
    note.expiry = Math.floor(this.#now() / 1000) + APNS_EXPIRATION_SECONDS;
    return note;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn) await retire(conn);
  }

  /** The connection for the active certificate, reopened when the certificate changed. */
  #connection(recheck = false): Promise<Connection | undefined> {
    if (this.#closed) return Promise.reject(new Error('the APNs provider is closed'));
    // Only a connection is cached: while there is no certificate, every send looks (an upload helps at once).
    if (!recheck && this.#conn && this.#now() - this.#checkedAt < this.#versionCheckMs) return Promise.resolve(this.#conn);
    this.#checking ??= this.#refresh().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #refresh(): Promise<Connection | undefined> {
    const version = await this.#certificates.version();
    if (version === this.#conn?.version || (version === null && !this.#conn)) {
      this.#checkedAt = this.#now();
      return this.#conn;
    }
    const cert = version === null ? undefined : await this.#certificates.active();
    const old = this.#conn;
    this.#conn = cert && !this.#closed ? this.#open(cert) : undefined;
    this.#checkedAt = this.#now();
    if (old) void retire(old);
    return this.#conn;
  }

  #open(cert: { id: string; topic: string; certPem: string; keyPem: string; notAfter: Date }): Connection {
    const provider = new ApnProviderClass({
      cert: cert.certPem,
      key: cert.keyPem,
      ...(this.#ca ? { ca: this.#ca } : {}),
      address: this.#address,
      port: this.#port,
      connectionRetryLimit: 0,
      requestTimeout: this.#timeoutMs,
    });
    return { version: cert.id, retired: false, topic: cert.topic, notAfter: cert.notAfter, provider, slots: new Slots(this.#maxInFlight) };
  }
}

const SHUTDOWN_WAIT_MS = 2000;

/**
 * Closes a connection once the pushes it has in flight (or waiting for it) are done. node-apn never
 * calls back when its session was destroyed before it connected (APNs unreachable), so the wait is
 * capped; by then its timers are cleared and the session is gone, nothing is left open.
 */
async function retire(conn: Connection): Promise<void> {
  conn.retired = true;
  await conn.slots.idle();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise<void>((resolve) => conn.provider.shutdown(resolve)),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WAIT_MS))),
  ]);
  clearTimeout(timer);
}

/** Maps one node-apn failure (an APNs refusal, or a stream/connection error) to a push outcome. */
export function classifyApnsFailure(f: ApnFailure): PushResult {
  const reason = f.response?.reason;
  if (f.status === undefined || !reason) {
    // No APNs answer to read: a timeout, a reset, a TLS or connection failure, an empty 5xx body.
    const message = f.error?.message ?? (f.status ? `HTTP ${f.status}` : 'unknown error');
    return { outcome: 'retry', reason: `APNs unreachable or no answer: ${message}` };
  }
  const text = `APNs HTTP ${f.status} ${reason}`;
  if (f.status === 410 || reason === 'Unregistered' || reason === 'ExpiredToken') {
    const since = typeof f.response?.timestamp === 'number' ? ` (token invalid since ${new Date(f.response.timestamp).toISOString()})` : '';
    return { outcome: 'dead_token', reason: `${text}${since}` };
  }
  if (reason === 'BadDeviceToken') return { outcome: 'dead_token', reason: text };
  if (f.status === 429 || f.status >= 500 || reason === 'IdleTimeout') return { outcome: 'retry', reason: text };
  const hint = FAILURE_HINTS[reason];
  return { outcome: 'failed', reason: hint ? `${text}: ${hint}` : text };
}

const FAILURE_HINTS: Record<string, string> = {
  DeviceTokenNotForTopic: 'the device token belongs to another topic (the device enrolled under another push certificate)',
  TopicDisallowed: 'the push certificate may not push to this topic',
  BadTopic: 'the topic is not valid',
  MissingTopic: 'the topic is missing',
  BadCertificate: 'APNs refused the push certificate',
  BadCertificateEnvironment: 'the push certificate is for the other APNs environment (production or sandbox)',
  Forbidden: 'APNs refused the push certificate or the request',
  ExpiredProviderToken: 'the provider token expired',
  InvalidProviderToken: 'the provider token is not valid',
};

// ---- certificate health: /readyz and metrics ----

export interface PushCertificateHealth {
  /** `ok`, `missing`, `expires in N days` (within 30 days) or `expired`. */
  check: string;
  /** false only when there is no usable certificate (missing or expired). */
  usable: boolean;
  topic?: string;
  notAfter?: Date;
  daysLeft?: number;
}

/** The certificate's state for /readyz; a warning starts 30 days before it expires. */
export async function pushCertificateHealth(
  store: { summary(): Promise<{ topic: string; notAfter: Date } | undefined> },
  now: number = Date.now(),
): Promise<PushCertificateHealth> {
  const cert = await store.summary();
  if (!cert) return { check: 'missing', usable: false };
  const msLeft = cert.notAfter.getTime() - now;
  const daysLeft = Math.floor(msLeft / 86_400_000);
  const base = { topic: cert.topic, notAfter: cert.notAfter, daysLeft };
  if (msLeft <= 0) return { check: 'expired', usable: false, ...base };
  if (daysLeft < APNS_EXPIRY_WARNING_DAYS) return { check: `expires in ${daysLeft} day${daysLeft === 1 ? '' : 's'}`, usable: true, ...base };
  return { check: 'ok', usable: true, ...base };
}

/**
 * `mooring_apns_certificate_expiry_seconds{topic}`: seconds until the push certificate expires
 * (negative once it has), read at scrape time; absent while no certificate is uploaded.
 */
export function registerApnsCertificateGauge(store: { summary(): Promise<{ topic: string; notAfter: Date } | undefined> }): void {
  registry.removeSingleMetric('mooring_apns_certificate_expiry_seconds');
  new client.Gauge({
    name: 'mooring_apns_certificate_expiry_seconds',
    help: 'Seconds until the APNs push certificate expires (negative when expired), by topic; absent when none is uploaded',
    labelNames: ['topic'] as const,
    registers: [registry],
    async collect() {
      try {
        const cert = await store.summary();
        this.reset();
        if (cert) this.set({ topic: cert.topic }, Math.round((cert.notAfter.getTime() - Date.now()) / 1000));
      } catch {
        // an unreachable database shows up in /readyz; a scrape should still answer
      }
    },
  });
}
