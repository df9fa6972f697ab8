/**
 * A loopback stand-in for Apple's side of APNs: HTTP/2 over TLS that REQUIRES a client certificate
 * signed by the test CA (as APNs requires the push certificate), speaking the provider API:
 * `POST /3/device/<hex token>` with apns-topic, apns-push-type, apns-expiration, apns-priority and a
 * JSON body; 200 with an `apns-id`, or `{"reason": ..., "timestamp": ...}` with the status Apple uses.
 * It records every push (with the subject of the client certificate that sent it) and how many were
 * in flight at once. Also the test PKI: a CA, the mock's server certificate, and push certificates
 * shaped like Apple's (`UID=com.apple.mgmt.External.<uuid>, CN=APSP:<uuid>, C=US`).
 *
 * See https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
 * and https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import * as x509 from '@peculiar/x509';
import forge from 'node-forge';

x509.cryptoProvider.set(crypto.webcrypto as never);

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const DAY = 86_400_000;
type KeyPair = crypto.webcrypto.CryptoKeyPair;

export interface TestPushCertificate {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  topic: string;
  notAfter: Date;
}

export interface ApnsTestPki {
  caPem: string;
  /** The mock's TLS certificate (127.0.0.1 and localhost), signed by the CA. */
  server: { certPem: string; keyPem: string };
  /**
   * A push certificate signed by the CA: subject `UID=<topic>, CN=APSP:<uuid>, C=US`, EKU clientAuth.
   * `topic` defaults to com.apple.mgmt.External.<uuid>; `publicKeyPem` certifies an existing key (a CSR's).
   */
  pushCertificate(opts?: { topic?: string; uuid?: string; notBefore?: Date; notAfter?: Date; publicKeyPem?: string }): Promise<TestPushCertificate>;
}

async function newKeys(): Promise<KeyPair> {
  return (await crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as KeyPair;
}

async function pkcs8Pem(key: crypto.webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

const serial = () => crypto.randomBytes(8).toString('hex').replace(/^[89a-f]/, '1');

/** A fresh test CA with a server certificate for the mock. */
export async function createApnsTestPki(): Promise<ApnsTestPki> {
  const caKeys = await newKeys();
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=Test Apple Application Integration CA ${crypto.randomBytes(3).toString('hex')}, O=Mooring tests`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3650 * DAY),
    keys: caKeys,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const serverKeys = await newKeys();
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=api.push.apple.com',
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * DAY),
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'ip', value: '127.0.0.1' },
        { type: 'dns', value: 'localhost' },
      ]),
    ],
  });
  return {
    caPem: ca.toString('pem'),
    server: { certPem: server.toString('pem'), keyPem: await pkcs8Pem(serverKeys.privateKey) },
    async pushCertificate(opts = {}) {
      const uuid = opts.uuid ?? crypto.randomUUID();
      const topic = opts.topic ?? `com.apple.mgmt.External.${uuid}`;
      let keyPem: string | undefined;
      let publicKey: crypto.webcrypto.CryptoKey;
      if (opts.publicKeyPem) {
        const spki = crypto.createPublicKey(opts.publicKeyPem).export({ type: 'spki', format: 'der' });
        publicKey = await crypto.webcrypto.subtle.importKey('spki', spki, RSA, true, ['verify']);
      } else {
        const keys = await newKeys();
        publicKey = keys.publicKey;
        keyPem = await pkcs8Pem(keys.privateKey);
      }
      const notAfter = opts.notAfter ?? new Date(Date.now() + 365 * DAY);
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: new x509.Name([{ '0.9.2342.19200300.100.1.1': [topic] }, { CN: [`APSP:${uuid}`] }, { C: ['US'] }]),
        issuer: ca.subject,
        notBefore: opts.notBefore ?? new Date(Date.now() - 60_000),
        notAfter,
        publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: RSA,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        ],
      });
      return { certPem: cert.toString('pem'), keyPem: keyPem ?? '', topic, notAfter: cert.notAfter };
    },
  };
}

/** A PKCS#12 file (base64) holding the certificate, its key and optionally the CA, as Keychain exports it. */
export function toPkcs12(cert: { certPem: string; keyPem: string }, password: string, opts: { chain?: string[]; algorithm?: '3des' | 'aes256' } = {}): string {
  const key = forge.pki.privateKeyFromPem(cert.keyPem);
  const certs = [forge.pki.certificateFromPem(cert.certPem), ...(opts.chain ?? []).map((p) => forge.pki.certificateFromPem(p))];
  const asn1 = forge.pkcs12.toPkcs12Asn1(key, certs, password, { algorithm: opts.algorithm ?? '3des', friendlyName: 'APSP push' });
  return forge.util.encode64(forge.asn1.toDer(asn1).getBytes());
}

export interface ReceivedPush {
  token: string;
  method: string;
  path: string;
  topic: string | undefined;
  pushType: string | undefined;
  expiration: string | undefined;
  priority: string | undefined;
  /** The raw body. */
  body: string;
  /** Subject of the client certificate the connection presented, e.g. `UID=com.apple.mgmt...., CN=APSP:..., C=US`. */
  clientCertSubject: string;
  /** The UID (topic) of that client certificate. */
  clientCertTopic: string | undefined;
  /** What the mock answered. */
  status: number;
  reason?: string;
  apnsId: string;
}

interface Failure {
  status: number;
  reason: string;
  /** How many more pushes get this answer (Infinity: until cleared). */
  left: number;
}

export interface ApnsMockOptions {
  pki: ApnsTestPki;
  /** Hold every answer this long (ms), so pushes pile up in flight. */
  holdMs?: number;
}

const PUSH_TYPES = ['alert', 'background', 'location', 'voip', 'complication', 'fileprovider', 'mdm', 'liveactivity', 'pushtotalk', 'widgets'];

export class ApnsMock {
  readonly received: ReceivedPush[] = [];
  /** Pushes received and not yet answered, now and at most. */
  inFlight = 0;
  maxInFlight = 0;
  /** TLS connections that completed the handshake (each presented a client certificate). */
  connections = 0;
  holdMs: number;
  readonly #failures = new Map<string, Failure>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();

  private constructor(
    private readonly server: http2.Http2SecureServer,
    readonly url: string,
    opts: ApnsMockOptions,
  ) {
    this.holdMs = opts.holdMs ?? 0;
  }

  static async start(opts: ApnsMockOptions): Promise<ApnsMock> {
    const server = http2.createSecureServer({
      cert: opts.pki.server.certPem,
      key: opts.pki.server.keyPem,
      ca: [opts.pki.caPem],
      requestCert: true,
      rejectUnauthorized: true, // no client certificate, or one from another CA: no connection
      allowHTTP1: false,
      maxSessionMemory: 200,
      settings: { maxConcurrentStreams: 100_000 }, // the client must keep itself to 1,000
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const mock = new ApnsMock(server, `https://127.0.0.1:${port}`, opts);
    server.on('session', (session) => {
      mock.connections += 1;
      mock.#sessions.add(session);
      session.on('close', () => mock.#sessions.delete(session));
      session.on('error', () => undefined);
    });
    server.on('stream', (stream, headers) => void mock.#handle(stream, headers));
    return mock;
  }

  /** Pushes APNs accepted (200). */
  get delivered(): ReceivedPush[] {
    return this.received.filter((p) => p.status === 200);
  }

  /** Pushes to `token` get `status` and `{reason}` (`times` times, default until cleared). */
  failFor(token: string, status: number, reason: string, times = Infinity): void {
    this.#failures.set(token.toLowerCase(), { status, reason, left: times });
  }

  clearFailures(): void {
    this.#failures.clear();
  }

  reset(): void {
    this.received.length = 0;
    this.maxInFlight = 0;
    this.clearFailures();
  }

  async close(): Promise<void> {
    for (const s of this.#sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async #handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => undefined);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const chunks: Buffer[] = [];
      for await (const c of stream) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks).toString('utf8');
      const peer = (stream.session?.socket as TLSSocket | undefined)?.getPeerCertificate();
      const subject = (peer?.subject ?? {}) as unknown as Record<string, string | string[]>;
      const method = String(headers[':method']);
      const path = String(headers[':path']);
      const token = /^\/3\/device\/([^/?]*)$/.exec(path)?.[1] ?? '';
      const one = (name: string) => (typeof headers[name] === 'string' ? (headers[name] as string) : undefined);
      const requested = one('apns-id');
      const push: ReceivedPush = {
        token,
        method,
        path,
        topic: one('apns-topic'),
        pushType: one('apns-push-type'),
        expiration: one('apns-expiration'),
        priority: one('apns-priority'),
        body,
        clientCertSubject: Object.entries(subject)
          .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
          .join(', '),
        clientCertTopic: typeof subject.UID === 'string' ? subject.UID : undefined,
        status: 0,
        apnsId: requested && /^[0-9a-f-]{36}$/i.test(requested) ? requested : crypto.randomUUID().toUpperCase(),
      };
      this.received.push(push);
      const refusal = this.#check(push);
      if (this.holdMs > 0) await new Promise((r) => setTimeout(r, this.holdMs));
      push.status = refusal?.status ?? 200;
      push.reason = refusal?.reason;
      if (stream.destroyed) return;
      if (!refusal) {
        stream.respond({ ':status': 200, 'apns-id': push.apnsId });
        stream.end();
        return;
      }
      const answer: Record<string, unknown> = { reason: refusal.reason };
      if (refusal.status === 410) answer.timestamp = Date.now();
      stream.respond({ ':status': refusal.status, 'apns-id': push.apnsId, 'content-type': 'application/json' });
      stream.end(JSON.stringify(answer));
    } finally {
      this.inFlight -= 1;
    }
  }

  /** What APNs would refuse about this push, in the order it checks; then the script. */
  #check(p: ReceivedPush): { status: number; reason: string } | undefined {
    if (p.method !== 'POST') return { status: 405, reason: 'MethodNotAllowed' };
    if (!/^\/3\/device\//.test(p.path)) return { status: 404, reason: 'BadPath' };
    if (!p.token) return { status: 400, reason: 'MissingDeviceToken' };
    if (!/^[0-9a-f]{64,200}$/i.test(p.token)) return { status: 400, reason: 'BadDeviceToken' };
    if (p.topic !== undefined && p.topic !== p.clientCertTopic) return { status: 400, reason: 'TopicDisallowed' };
    if (p.pushType !== undefined && !PUSH_TYPES.includes(p.pushType)) return { status: 400, reason: 'InvalidPushType' };
    if (p.expiration !== undefined && !/^\d+$/.test(p.expiration)) return { status: 400, reason: 'BadExpirationDate' };
    if (p.priority !== undefined && !['1', '5', '10'].includes(p.priority)) return { status: 400, reason: 'BadPriority' };
    if (p.body.length === 0) return { status: 400, reason: 'PayloadEmpty' };
    if (Buffer.byteLength(p.body) > 4096) return { status: 413, reason: 'PayloadTooLarge' };
    const scripted = this.#failures.get(p.token.toLowerCase());
    if (scripted && scripted.left > 0) {
      scripted.left -= 1;
      return { status: scripted.status, reason: scripted.reason };
    }
    return undefined;
  }
}
