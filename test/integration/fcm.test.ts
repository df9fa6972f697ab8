/**
 * The FCM HTTP v1 provider against a loopback Google (OAuth2 token endpoint + FCM send endpoint):
 * message shape, access-token caching, error classification, and delivery through the real push
 * dispatcher and worker.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FcmProvider, loadServiceAccount, type FcmProviderOptions, classifyFcmError } from '../../src/push/fcm';
import { PushProviderRegistry, type PushTarget } from '../../src/push/provider';
import type { RunningWorker } from '../../src/worker';
import { FcmMock, fcmErrors, makeServiceAccount, type TestServiceAccount } from '../helpers/fcm-mock';
import { eventually } from '../helpers/recording-provider';
import { startTestServer, type TestServer } from '../helpers/server';

const target = (token: string): PushTarget => ({
  enrollmentId: 'enr-1',
  deviceId: 'dev-1',
  platform: 'android',
  token,
  topic: null,
  pushMagic: null,
});

const WAKE_UP = { data: { mooring: 'sync' }, android: { priority: 'HIGH', ttl: '600s', collapse_key: 'mooring-sync' } };

let sa: TestServiceAccount;
beforeAll(() => {
  sa = makeServiceAccount();
});

describe('FcmProvider against a loopback FCM', () => {
  let clock: number;
  let mock: FcmMock;
  const provider = (overrides: Partial<FcmProviderOptions> = {}) =>
    new FcmProvider({ serviceAccount: sa.account, fcmUrl: mock.url, tokenUrl: mock.tokenUrl, now: () => clock, ...overrides });

  beforeAll(async () => {
    clock = Date.UTC(2026, 0, 15, 12, 0, 0);
    mock = await FcmMock.start({ account: sa, expiresIn: 3599, now: () => clock });
  });
  afterAll(() => mock.close());

  it('sends a data-only HIGH-priority wake-up with the registration token and nothing else', async () => {
    const p = provider();
    await expect(p.send(target('tok-ok'))).resolves.toEqual({ outcome: 'sent' });
    const msg = mock.received.at(-1)!;
    expect(msg.status).toBe(200);
    expect(msg.projectId).toBe('mooring-test');
    expect(msg.contentType).toBe('application/json');
    expect(msg.authorization).toMatch(/^Bearer ya29\.mock-/);
    expect(msg.body).toEqual({ message: { token: 'tok-ok', ...WAKE_UP } });
    const grant = mock.tokenRequests.at(-1)!;
    expect(grant.error).toBeUndefined();
    expect(grant.header).toEqual({ alg: 'RS256', typ: 'JWT', kid: sa.account.private_key_id });
    const iat = Math.floor(clock / 1000);
    expect(grant.claims).toEqual({
      iss: sa.account.client_email,
      scope: 'https://www.googleapis.com/auth/firebase.messaging',
      aud: mock.tokenUrl,
      iat,
      exp: iat + 3600,
    });
  });

  it('keeps at most maxInFlight sends open at once (each is an HTTPS connection of its own)', async () => {
    let open = 0;
    let most = 0;
    const counting: typeof fetch = async (input, init) => {
      const isSend = String(input).includes('/messages:send');
      if (isSend) most = Math.max(most, ++open);
      try {
        return await fetch(input, init);
      } finally {
        if (isSend) open--;
      }
    };
    const p = provider({ maxInFlight: 3, fetch: counting });
    const tokens = Array.from({ length: 9 }, (_, i) => `tok-held-${i}`);
    for (const t of tokens) mock.respond(t, { status: 200, body: {}, delayMs: 50 });
    const results = await Promise.all(tokens.map((t) => p.send(target(t))));
    expect(results).toEqual(tokens.map(() => ({ outcome: 'sent' })));
    expect(most).toBe(3);
  });

  it('reuses the access token until a minute before it expires', async () => {
    const p = provider();
    const before = mock.tokenRequests.length;
    await p.send(target('tok-a'));
    await p.send(target('tok-b'));
    expect(mock.tokenRequests.length - before).toBe(1);
    clock += (3599 - 61) * 1000;
    await p.send(target('tok-c'));
    expect(mock.tokenRequests.length - before).toBe(1);
    clock += 2000;
    await expect(p.send(target('tok-d'))).resolves.toEqual({ outcome: 'sent' });
    expect(mock.tokenRequests.length - before).toBe(2);
    const bearers = mock.received.slice(-4).map((m) => m.authorization);
    expect(bearers[1]).toBe(bearers[0]);
    expect(bearers[2]).toBe(bearers[0]);
    expect(bearers[3]).not.toBe(bearers[0]);
  });

  it('shares one token request among concurrent sends', async () => {
    const p = provider();
    const before = mock.tokenRequests.length;
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => p.send(target(`tok-par-${i}`))));
    expect(results.every((r) => r.outcome === 'sent')).toBe(true);
    expect(mock.tokenRequests.length - before).toBe(1);
  });

  describe('classifies FCM errors', () => {
    const p = () => provider();

    it('UNREGISTERED (404) -> dead_token', async () => {
      mock.respond('tok-unreg', fcmErrors.unregistered());
      const r = await p().send(target('tok-unreg'));
      expect(r).toEqual({ outcome: 'dead_token', reason: expect.stringContaining('UNREGISTERED') });
    });

    it('a bare canonical NOT_FOUND -> dead_token', async () => {
      mock.respond('tok-nf', { status: 404, body: { error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND' } } });
      await expect(p().send(target('tok-nf'))).resolves.toMatchObject({ outcome: 'dead_token' });
    });

    it('INVALID_ARGUMENT (400) -> failed', async () => {
      mock.respond('tok-inval', fcmErrors.invalidArgument('Message payload too large'));
      const r = await p().send(target('tok-inval'));
      expect(r).toEqual({ outcome: 'failed', reason: expect.stringMatching(/INVALID_ARGUMENT.*HTTP 400.*payload too large/) });
    });

    it('INVALID_ARGUMENT "not a valid FCM registration token" -> dead_token', async () => {
      mock.respond('tok-garbage', fcmErrors.invalidToken());
      const r = await p().send(target('tok-garbage'));
      expect(r).toEqual({ outcome: 'dead_token', reason: expect.stringContaining('not a valid FCM registration token') });
    });

    it('SENDER_ID_MISMATCH (403) -> failed', async () => {
      mock.respond('tok-other-project', fcmErrors.senderIdMismatch());
      const r = await p().send(target('tok-other-project'));
      expect(r).toEqual({ outcome: 'failed', reason: expect.stringContaining('SENDER_ID_MISMATCH') });
    });

    it('QUOTA_EXCEEDED (429) with Retry-After -> retry, naming the wait', async () => {
      mock.respond('tok-quota', fcmErrors.quotaExceeded('60'));
      const r = await p().send(target('tok-quota'));
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/QUOTA_EXCEEDED \(HTTP 429\).*Retry-After 60s/), retryAfterMs: 60_000 });
    });

    it('UNAVAILABLE (503) -> retry, honouring an HTTP-date Retry-After', async () => {
      mock.respond('tok-unavail', fcmErrors.unavailable(new Date(clock + 30_000).toUTCString()));
      const r = await p().send(target('tok-unavail'));
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/UNAVAILABLE \(HTTP 503\).*Retry-After 30s/), retryAfterMs: 30_000 });
    });

    it('INTERNAL (500) -> retry', async () => {
      mock.respond('tok-internal', fcmErrors.internal());
      await expect(p().send(target('tok-internal'))).resolves.toMatchObject({ outcome: 'retry', reason: expect.stringContaining('INTERNAL') });
    });

    it('a non-JSON 502 from a proxy -> retry', async () => {
      mock.respond('tok-proxy', { status: 502, body: '<html>Bad Gateway</html>', headers: { 'content-type': 'text/html' } });
      await expect(p().send(target('tok-proxy'))).resolves.toEqual({ outcome: 'retry', reason: expect.stringContaining('HTTP 502') });
    });

    it('401 -> retry, and the cached access token is dropped', async () => {
      const prov = p();
      await prov.send(target('tok-before'));
      const before = mock.tokenRequests.length;
      mock.revokeAccessTokens();
      const r = await prov.send(target('tok-after-revoke'));
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/UNAUTHENTICATED \(HTTP 401\)/) });
      expect(mock.tokenRequests.length).toBe(before);
      await expect(prov.send(target('tok-after-revoke'))).resolves.toEqual({ outcome: 'sent' });
      expect(mock.tokenRequests.length).toBe(before + 1);
    });
  });

  it('a timeout -> retry', async () => {
    mock.respond('tok-slow', { status: 200, body: {}, delayMs: 2000 });
    const r = await provider({ timeoutMs: 100 }).send(target('tok-slow'));
    expect(r).toEqual({ outcome: 'retry', reason: expect.stringContaining('timed out after 100 ms') });
  });

  it('a refused connection -> retry', async () => {
    const port = await closedPort();
    const r = await provider({ fcmUrl: `http://127.0.0.1:${port}`, tokenUrl: `http://127.0.0.1:${port}/token` }).send(target('tok-x'));
    expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/unreachable.*ECONNREFUSED/) });
  });

  describe('token endpoint', () => {
    it('a key Google does not know (invalid_grant) -> failed with the reason', async () => {
      const stranger = makeServiceAccount();
      const forged = { ...sa.account, private_key: stranger.account.private_key };
      const before = mock.received.length;
      const r = await provider({ serviceAccount: forged }).send(target('tok-y'));
      expect(r).toEqual({ outcome: 'failed', reason: 'FCM OAuth token request refused (HTTP 400, invalid_grant: Invalid JWT Signature.)' });
      expect(mock.received.length).toBe(before);
    });

    it('a JWT outside its lifetime (clock skew) -> failed', async () => {
      const r = await provider({ now: () => clock - 2 * 3600_000 }).send(target('tok-y'));
      expect(r).toMatchObject({ outcome: 'failed', reason: expect.stringContaining('invalid_grant: Invalid JWT: Token must be a short-lived token') });
    });

    it('a 503 from the token endpoint -> retry', async () => {
      mock.respondToTokenRequests({ status: 503, body: 'Service Unavailable' });
      const r = await provider().send(target('tok-y'));
      expect(r).toEqual({ outcome: 'retry', reason: 'FCM OAuth token request refused (HTTP 503, Service Unavailable)' });
    });

    it('an answer without access_token -> failed', async () => {
      mock.respondToTokenRequests({ status: 200, body: { token_type: 'Bearer' } });
      await expect(provider().send(target('tok-y'))).resolves.toMatchObject({ outcome: 'failed', reason: expect.stringContaining('without an access_token') });
    });

    it('concurrent sends all see one refusal, and the next send asks again', async () => {
      mock.respondToTokenRequests({ status: 400, body: { error: 'invalid_grant', error_description: 'Account disabled' } });
      const p = provider();
      const before = mock.tokenRequests.length;
      const rs = await Promise.all([p.send(target('tok-1')), p.send(target('tok-2'))]);
      expect(rs.map((r) => r.outcome)).toEqual(['failed', 'failed']);
      expect(mock.tokenRequests.length - before).toBe(1);
      await expect(p.send(target('tok-3'))).resolves.toEqual({ outcome: 'sent' });
    });
  });
});

describe('loadServiceAccount', () => {
  it('reads a Firebase service-account file', () => {
    expect(loadServiceAccount(sa.json)).toEqual(sa.account);
  });

  it('says what is wrong with a file that is not one', () => {
    const full = JSON.parse(sa.json) as Record<string, unknown>;
    const without = (...keys: string[]) => JSON.stringify(Object.fromEntries(Object.entries(full).filter(([k]) => !keys.includes(k))));
    expect(() => loadServiceAccount(without('private_key'))).toThrow('not a service-account JSON: missing private_key');
    expect(() => loadServiceAccount(without('project_id', 'client_email'))).toThrow('not a service-account JSON: missing project_id, client_email');
    expect(() => loadServiceAccount('{"installed":{"client_id":"x"}}')).toThrow(/^not a service-account JSON: missing project_id/);
    expect(() => loadServiceAccount(JSON.stringify({ ...full, type: 'authorized_user' }))).toThrow('not a service-account JSON: type is "authorized_user", expected "service_account"');
    expect(() => loadServiceAccount('not json')).toThrow(/^not a service-account JSON: invalid JSON/);
    expect(() => loadServiceAccount('[]')).toThrow('not a service-account JSON: expected a JSON object');
    expect(() => loadServiceAccount(JSON.stringify({ ...full, private_key: 'MIIE...' }))).toThrow('not a service-account JSON: private_key is not a PEM private key');
  });

  it('accepts a key whose newlines arrived escaped, and defaults token_uri', () => {
    const full = JSON.parse(sa.json) as Record<string, unknown>;
    delete full.token_uri;
    const escaped = JSON.stringify({ ...full, private_key: sa.account.private_key.replace(/\n/g, '\\n') });
    expect(loadServiceAccount(escaped)).toEqual({ ...sa.account, token_uri: 'https://oauth2.googleapis.com/token' });
  });
});

describe('FCM through the push dispatcher and worker', () => {
  let mock: FcmMock;
  let s: TestServer;
  let worker: RunningWorker;

  beforeAll(async () => {
    mock = await FcmMock.start({ account: sa });
    const fcm = new FcmProvider({ serviceAccount: loadServiceAccount(sa.json), fcmUrl: mock.url, tokenUrl: mock.tokenUrl });
    s = await startTestServer({ pushProviders: new PushProviderRegistry().register(fcm), retryDelayMs: 50 });
    worker = s.m.startWorker();
  });
  afterAll(async () => {
    await worker?.stop();
    await s?.stop();
    await mock?.close();
  });

  it('wakes the device when a command is queued', async () => {
    const { device } = await s.device({}, { push_token: 'tok-1' });
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await eventually(() => mock.delivered.some((m) => m.body.message?.token === 'tok-1'), 10_000, 'the FCM message for tok-1');
    expect(mock.delivered.find((m) => m.body.message?.token === 'tok-1')!.body).toEqual({ message: { token: 'tok-1', ...WAKE_UP } });
  });

  it('retries through a 503 and then delivers', async () => {
    const { device } = await s.device({}, { push_token: 'tok-flaky' });
    mock.respond('tok-flaky', fcmErrors.unavailable('1'));
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await eventually(() => mock.delivered.some((m) => m.body.message?.token === 'tok-flaky'), 15_000, 'the retried FCM message');
    expect(mock.received.filter((m) => m.body.message?.token === 'tok-flaky').map((m) => m.status)).toEqual([503, 200]);
  });

  it('marks an UNREGISTERED token dead on the enrollment', async () => {
    const { device, enrollment } = await s.device({}, { push_token: 'tok-gone' });
    mock.respond('tok-gone', fcmErrors.unregistered());
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await eventually(async () => Boolean((await s.m.devices.getEnrollment(enrollment.id))?.push_token_dead_at), 10_000, 'push_token_dead_at');
    const events = await s.m.events.list({ device_id: device.id, type: 'push.token_dead' }, { limit: 5 });
    expect(events.items).toHaveLength(1);
    expect(events.items[0]!.data).toMatchObject({ enrollment_id: enrollment.id, reason: expect.stringContaining('UNREGISTERED') });
    expect(mock.received.filter((m) => m.body.message?.token === 'tok-gone')).toHaveLength(1);
  });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('quota backoff', () => {
  it('asks for at least a minute after QUOTA_EXCEEDED even without Retry-After', () => {
    const body = JSON.stringify({ error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'quota', details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'QUOTA_EXCEEDED' }] } });
    expect(classifyFcmError(429, body, null, Date.now())).toMatchObject({ outcome: 'retry', retryAfterMs: 60_000 });
  });
});
