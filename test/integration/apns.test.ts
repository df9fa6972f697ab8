/**
 * The APNs provider over real HTTP/2 and TLS against the loopback APNs (client certificate required),
 * with the push certificate in Postgres: the push's headers and body, the client certificate,
 * answer classification, the 1,000-in-flight cap under 5,000 concurrent sends, and reconnecting when
 * the certificate is replaced. Also the certificate store itself and the expiry health check.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import http2 from 'node:http2';
import { MooringError } from '../../src/core/errors';
import { readPushCertificate } from '../../src/pki/push-certificate';
import { Sealer } from '../../src/pki/sealed';
import { registry } from '../../src/metrics';
import { ApnsProvider, classifyApnsFailure, pushCertificateHealth, registerApnsCertificateGauge, type ApnsProviderOptions } from '../../src/push/apns';
import type { PushTarget } from '../../src/push/provider';
import { createDb, migrate, type Db } from '../../src/storage/db';
import { PgPushCertificateStore } from '../../src/storage/push-certificates';
import { ApnsMock, createApnsTestPki, type ApnsTestPki, type TestPushCertificate } from '../helpers/apns-mock';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

const DAY = 86_400_000;
const hexToken = () => crypto.randomBytes(32).toString('hex');

let database: TestDatabase;
let db: Db;
let store: PgPushCertificateStore;
let pki: ApnsTestPki;
let mock: ApnsMock;
let cert: TestPushCertificate;
const providers: ApnsProvider[] = [];

const target = (token: string, overrides: Partial<PushTarget> = {}): PushTarget => ({
  enrollmentId: 'enr-1',
  deviceId: 'dev-1',
  platform: 'apple',
  token,
  topic: cert.topic,
  pushMagic: 'F3A4C1E2-0B6D-4E8A-9C57-1D2E3F405A6B',
  ...overrides,
});

function provider(overrides: Partial<ApnsProviderOptions> = {}): ApnsProvider {
  const p = new ApnsProvider({ certificates: store, url: mock.url, ca: [pki.caPem], ...overrides });
  providers.push(p);
  return p;
}

async function upload(c: TestPushCertificate, force = false) {
  return store.replace(readPushCertificate({ certificate: c.certPem, private_key: c.keyPem }), { force, actor: 'test' });
}

beforeAll(async () => {
  database = await createTestDatabase();
  db = createDb(database.url, 5);
  await migrate(db);
  store = new PgPushCertificateStore(db, new Sealer(crypto.randomBytes(32)));
  pki = await createApnsTestPki();
  mock = await ApnsMock.start({ pki });
  cert = await pki.pushCertificate();
});

afterAll(async () => {
  await Promise.all(providers.map((p) => p.close()));
  await mock?.close();
  await db?.destroy();
  await database?.drop();
});

describe('PgPushCertificateStore', () => {
  it('has nothing active at first', async () => {
    await expect(store.active()).resolves.toBeUndefined();
    await expect(store.version()).resolves.toBeNull();
    await expect(pushCertificateHealth(store)).resolves.toEqual({ check: 'missing', usable: false });
  });

  it('stores the first certificate with its key sealed, and records an event', async () => {
    const result = await upload(cert);
    expect(result).toMatchObject({ topic: cert.topic, previous: undefined });
    const active = await store.active();
    expect(active).toMatchObject({ id: result.id, topic: cert.topic });
    expect(crypto.createPrivateKey(active!.keyPem).export({ type: 'pkcs8', format: 'pem' })).toEqual(crypto.createPrivateKey(cert.keyPem).export({ type: 'pkcs8', format: 'pem' }));
    await expect(store.version()).resolves.toBe(result.id);
    const row = await db('push_certificates').where({ id: result.id }).first();
    expect(row.private_key_sealed).toMatch(/^v1\./);
    expect(row.private_key_sealed).not.toContain('PRIVATE KEY');
    const event = await db('events').where({ type: 'apple.push_certificate.replaced' }).orderBy('id', 'desc').first();
    expect(event).toMatchObject({ actor: 'test', data: { id: result.id, topic: cert.topic, previous_topic: null, topic_changed: false } });
  });

  it('replaces it with a renewal of the same topic, keeping the old row inactive', async () => {
    const before = await store.version();
    const renewed = await pki.pushCertificate({ topic: cert.topic });
    const result = await upload(renewed);
    expect(result.previous).toMatchObject({ id: before, topic: cert.topic });
    await expect(store.version()).resolves.toBe(result.id);
    expect(await db('push_certificates').where({ platform: 'apple' }).count<{ count: number }[]>('* as count')).toEqual([{ count: 2 }]);
    expect(await db('push_certificates').where({ platform: 'apple', active: true }).count<{ count: number }[]>('* as count')).toEqual([{ count: 1 }]);
    cert = renewed;
  });

  it('refuses another topic without force (409 push_topic_mismatch) and changes nothing', async () => {
    const before = await store.version();
    const other = await pki.pushCertificate();
    const err = await upload(other).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MooringError);
    expect(err).toMatchObject({ code: 'push_topic_mismatch', status: 409, extra: { current_topic: cert.topic, uploaded_topic: other.topic } });
    expect((err as MooringError).detail).toMatch(/would stop receiving pushes/);
    await expect(store.version()).resolves.toBe(before);
  });

  it('serializes concurrent uploads: exactly one active row afterwards', async () => {
    const renewals = await Promise.all([1, 2, 3, 4].map(() => pki.pushCertificate({ topic: cert.topic })));
    await Promise.all(renewals.map((r) => upload(r)));
    const active = await db('push_certificates').where({ platform: 'apple', active: true });
    expect(active).toHaveLength(1);
    cert = renewals.find((r) => r.topic === active[0].topic && r.certPem.replace(/\s/g, '') === active[0].certificate_pem.replace(/\s/g, ''))!;
    expect(cert).toBeDefined();
  });
});

describe('ApnsProvider against a loopback APNs', () => {
  it('sends {"mdm": PushMagic} with the MDM headers over HTTP/2, presenting the push certificate', async () => {
    const token = hexToken();
    const before = Date.now();
    await expect(provider().send(target(token))).resolves.toEqual({ outcome: 'sent' });
    const push = mock.received.find((p) => p.token === token)!;
    expect(push).toMatchObject({
      method: 'POST',
      path: `/3/device/${token}`,
      topic: cert.topic,
      pushType: 'mdm',
      priority: '10',
      body: '{"mdm":"F3A4C1E2-0B6D-4E8A-9C57-1D2E3F405A6B"}',
      clientCertTopic: cert.topic,
      status: 200,
    });
    expect(push.clientCertSubject).toContain(`UID=${cert.topic}`);
    expect(push.clientCertSubject).toMatch(/CN=APSP:[0-9a-f-]{36}/);
    const expiration = Number(push.expiration) * 1000;
    expect(expiration).toBeGreaterThanOrEqual(before + 7 * DAY - 2000);
    expect(expiration).toBeLessThanOrEqual(Date.now() + 7 * DAY + 1000);
  });

  it('uses the certificate topic when the target has none, and lower-cases the token', async () => {
    const token = hexToken();
    await expect(provider().send(target(token.toUpperCase(), { topic: null }))).resolves.toEqual({ outcome: 'sent' });
    expect(mock.received.find((p) => p.token === token)).toMatchObject({ topic: cert.topic, status: 200 });
  });

  it('the mock refuses a connection without a client certificate', async () => {
    const session = http2.connect(mock.url, { ca: [pki.caPem] });
    const failure = await new Promise<Error>((resolve) => {
      session.on('error', resolve);
      const req = session.request({ ':method': 'POST', ':path': `/3/device/${hexToken()}` });
      req.on('error', resolve);
      req.end('{}');
    });
    session.destroy();
    expect((failure as NodeJS.ErrnoException).code).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    expect(mock.received).not.toContainEqual(expect.objectContaining({ clientCertSubject: '' }));
  });

  it('Unregistered (410) and BadDeviceToken mark the token dead', async () => {
    const p = provider();
    const gone = hexToken();
    mock.failFor(gone, 410, 'Unregistered');
    const r1 = await p.send(target(gone));
    expect(r1).toMatchObject({ outcome: 'dead_token' });
    expect(r1.outcome !== 'sent' && r1.reason).toMatch(/^APNs HTTP 410 Unregistered \(token invalid since \d{4}-/);
    const bad = hexToken();
    mock.failFor(bad, 400, 'BadDeviceToken');
    await expect(p.send(target(bad))).resolves.toEqual({ outcome: 'dead_token', reason: 'APNs HTTP 400 BadDeviceToken' });
    await expect(p.send(target('not-hex'))).resolves.toMatchObject({ outcome: 'dead_token' });
  });

  it('429 and 5xx are retried later; node-apn does not retry them itself', async () => {
    const p = provider();
    const busy = hexToken();
    mock.failFor(busy, 429, 'TooManyRequests', 1);
    await expect(p.send(target(busy))).resolves.toEqual({ outcome: 'retry', reason: 'APNs HTTP 429 TooManyRequests' });
    expect(mock.received.filter((r) => r.token === busy)).toHaveLength(1);
    await expect(p.send(target(busy))).resolves.toEqual({ outcome: 'sent' });
    const down = hexToken();
    mock.failFor(down, 503, 'ServiceUnavailable', 1);
    await expect(p.send(target(down))).resolves.toEqual({ outcome: 'retry', reason: 'APNs HTTP 503 ServiceUnavailable' });
    const broken = hexToken();
    mock.failFor(broken, 500, 'InternalServerError', 1);
    await expect(p.send(target(broken))).resolves.toMatchObject({ outcome: 'retry' });
    expect(mock.received.filter((r) => r.token === down || r.token === broken)).toHaveLength(2);
    // and the connection still works afterwards
    await expect(p.send(target(hexToken()))).resolves.toEqual({ outcome: 'sent' });
  });

  it('DeviceTokenNotForTopic, certificate and topic refusals fail without retrying', async () => {
    const p = provider();
    const cases: Array<[number, string, RegExp]> = [
      [400, 'DeviceTokenNotForTopic', /another topic/],
      [403, 'BadCertificate', /refused the push certificate/],
      [403, 'BadCertificateEnvironment', /other APNs environment/],
      [403, 'Forbidden', /^APNs HTTP 403 Forbidden/],
      [400, 'TopicDisallowed', /may not push to this topic/],
      [400, 'BadExpirationDate', /^APNs HTTP 400 BadExpirationDate$/],
    ];
    for (const [status, reason, text] of cases) {
      const token = hexToken();
      mock.failFor(token, status, reason);
      const result = await p.send(target(token));
      expect(result).toMatchObject({ outcome: 'failed' });
      expect(result.outcome === 'failed' && result.reason).toMatch(new RegExp(`APNs HTTP ${status} ${reason}`));
      expect(result.outcome === 'failed' && result.reason).toMatch(text);
    }
  });

  it('a device enrolled under another topic, and an enrollment without PushMagic, fail before any request', async () => {
    const p = provider();
    const token = hexToken();
    const r = await p.send(target(token, { topic: 'com.apple.mgmt.External.00000000-0000-4000-8000-000000000000' }));
    expect(r).toMatchObject({ outcome: 'failed' });
    expect(r.outcome === 'failed' && r.reason).toMatch(/must re-enroll/);
    await expect(p.send(target(token, { pushMagic: null }))).resolves.toMatchObject({ outcome: 'failed' });
    expect(mock.received.some((x) => x.token === token)).toBe(false);
  });

  it('network failures are retried', async () => {
    const closed = await ApnsMock.start({ pki });
    const url = closed.url;
    await closed.close();
    const r = await provider({ url, timeoutMs: 2000 }).send(target(hexToken()));
    expect(r).toMatchObject({ outcome: 'retry' });
    expect(r.outcome === 'retry' && r.reason).toMatch(/APNs unreachable or no answer/);
  });

  it('a server certificate not from the trusted CA is refused (production trusts the system store)', async () => {
    const r = await provider({ ca: undefined, timeoutMs: 2000 }).send(target(hexToken()));
    expect(r).toMatchObject({ outcome: 'retry' });
  });

  it('5,000 concurrent sends are all delivered with never more than 1,000 in flight on the connection', async () => {
    const p = provider();
    await p.send(target(hexToken())); // connected
    mock.reset();
    mock.holdMs = 40;
    const connectionsBefore = mock.connections;
    try {
      const tokens = Array.from({ length: 5000 }, hexToken);
      const results = await Promise.all(tokens.map((t) => p.send(target(t))));
      expect(results.filter((r) => r.outcome !== 'sent')).toEqual([]);
      expect(new Set(mock.delivered.map((d) => d.token)).size).toBe(5000);
      expect(mock.maxInFlight).toBeLessThanOrEqual(1000);
      expect(mock.maxInFlight).toBeGreaterThanOrEqual(900); // and the cap is used, not a trickle
      expect(mock.connections).toBe(connectionsBefore); // all on the one connection
    } finally {
      mock.holdMs = 0;
    }
  }, 60_000);

  it('a replaced certificate is noticed: the next pushes go over a new connection with the new certificate', async () => {
    const p = provider({ versionCheckMs: 0 });
    await expect(p.send(target(hexToken()))).resolves.toEqual({ outcome: 'sent' });
    const oldSubject = mock.received.at(-1)!.clientCertSubject;
    const connections = mock.connections;

    const other = await pki.pushCertificate();
    await upload(other, true);
    const token = hexToken();
    await expect(p.send(target(token, { topic: other.topic }))).resolves.toEqual({ outcome: 'sent' });
    const push = mock.received.find((r) => r.token === token)!;
    expect(push).toMatchObject({ topic: other.topic, clientCertTopic: other.topic });
    expect(push.clientCertSubject).not.toBe(oldSubject);
    expect(mock.connections).toBe(connections + 1);
    // devices still under the old topic now fail clearly
    const stale = await p.send(target(hexToken(), { topic: cert.topic }));
    expect(stale.outcome === 'failed' && stale.reason).toMatch(/must re-enroll/);
    cert = other;
  });

  it('with the default version check, a provider created before any certificate picks up the upload at once', async () => {
    await db('push_certificates').update({ active: false });
    const p = provider();
    const none = await p.send(target(hexToken()));
    expect(none).toMatchObject({ outcome: 'failed' });
    expect(none.outcome === 'failed' && none.reason).toMatch(/no APNs push certificate/);
    await upload(cert);
    await expect(p.send(target(hexToken()))).resolves.toEqual({ outcome: 'sent' });
  });

  it('close() shuts the connection down', async () => {
    const p = provider();
    await p.send(target(hexToken()));
    await p.close();
    await expect(p.send(target(hexToken()))).resolves.toMatchObject({ outcome: 'retry' });
  });
});

describe('classifyApnsFailure', () => {
  it('maps what node-apn reports', () => {
    expect(classifyApnsFailure({ status: 410, response: { reason: 'ExpiredToken' } })).toMatchObject({ outcome: 'dead_token' });
    expect(classifyApnsFailure({ error: new Error('apn write timeout') })).toEqual({ outcome: 'retry', reason: 'APNs unreachable or no answer: apn write timeout' });
    expect(classifyApnsFailure({ status: 413, response: { reason: 'PayloadTooLarge' } })).toEqual({ outcome: 'failed', reason: 'APNs HTTP 413 PayloadTooLarge' });
    expect(classifyApnsFailure({ status: 400, response: { reason: 'IdleTimeout' } })).toMatchObject({ outcome: 'retry' });
  });
});

describe('certificate health', () => {
  const fixed = (notAfter: Date) => ({ summary: async () => ({ topic: 'com.apple.mgmt.External.x', notAfter }) });
  const now = Date.UTC(2026, 5, 1);

  it('is ok until 30 days before expiry, then warns with the days left, then says expired', async () => {
    await expect(pushCertificateHealth(fixed(new Date(now + 200 * DAY)), now)).resolves.toMatchObject({ check: 'ok', usable: true, daysLeft: 200 });
    await expect(pushCertificateHealth(fixed(new Date(now + 30 * DAY)), now)).resolves.toMatchObject({ check: 'ok' });
    await expect(pushCertificateHealth(fixed(new Date(now + 29 * DAY + 3600_000)), now)).resolves.toMatchObject({ check: 'expires in 29 days', usable: true });
    await expect(pushCertificateHealth(fixed(new Date(now + DAY + 1)), now)).resolves.toMatchObject({ check: 'expires in 1 day' });
    await expect(pushCertificateHealth(fixed(new Date(now - 1)), now)).resolves.toMatchObject({ check: 'expired', usable: false });
  });

  it('exports mooring_apns_certificate_expiry_seconds', async () => {
    registerApnsCertificateGauge(store);
    const text = await registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith(`mooring_apns_certificate_expiry_seconds{topic="${cert.topic}"} `));
    expect(line).toBeDefined();
    const seconds = Number(line!.split(' ')[1]);
    expect(Math.abs(seconds - (cert.notAfter.getTime() - Date.now()) / 1000)).toBeLessThan(60);
    registerApnsCertificateGauge({ summary: async () => undefined });
    expect(await registry.metrics()).not.toMatch(/^mooring_apns_certificate_expiry_seconds[{ ]/m);
  });
});
