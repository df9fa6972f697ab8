/**
 * The WNS provider against a loopback Microsoft (login.live.com token endpoint + channel URIs):
 * notification shape, access-token caching, response classification, the channel-host allow-list,
 * and delivery through the real push dispatcher and worker.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PushProviderRegistry, type PushTarget } from '../../src/push/provider';
import { checkChannelUri, WnsProvider, type WnsProviderOptions } from '../../src/push/wns';
import type { RunningWorker } from '../../src/worker';
import { eventually } from '../helpers/recording-provider';
import { startTestServer, type TestServer } from '../helpers/server';
import { TEST_CLIENT_SECRET, TEST_PACKAGE_SID, WnsMock, wnsErrors, wnsReply } from '../helpers/wns-mock';

const target = (token: string): PushTarget => ({
  enrollmentId: 'enr-1',
  deviceId: 'dev-1',
  platform: 'windows',
  token,
  topic: null,
  pushMagic: null,
});

describe('WnsProvider against a loopback WNS', () => {
  let clock: number;
  let mockClock: number;
  let mock: WnsMock;
  const provider = (overrides: Partial<WnsProviderOptions> = {}) =>
    new WnsProvider({
      clientId: TEST_PACKAGE_SID,
      clientSecret: TEST_CLIENT_SECRET,
      tokenUrl: mock.tokenUrl,
      allowedHostSuffixes: [mock.host],
      now: () => clock,
      ...overrides,
    });
  /** Sends to a fresh channel of the mock. */
  const sendTo = (p: WnsProvider, name: string) => p.send(target(mock.channel(name)));

  beforeAll(async () => {
    clock = Date.UTC(2026, 0, 15, 12, 0, 0);
    mockClock = clock;
    mock = await WnsMock.start({ expiresIn: 86400, now: () => mockClock });
  });
  afterAll(() => mock.close());

  it('POSTs a cached raw wake-up to the channel URI with the bearer token, and nothing else', async () => {
    await expect(sendTo(provider(), 'ch-ok')).resolves.toEqual({ outcome: 'sent' });
    const n = mock.received.at(-1)!;
    expect(n.status).toBe(200);
    expect(n.channel).toBe('ch-ok');
    expect(n.body).toBe('mooring:sync');
    const grant = mock.tokenRequests.at(-1)!;
    expect(grant.error).toBeUndefined();
    expect(grant.contentType).toBe('application/x-www-form-urlencoded');
    expect(grant.form).toEqual({ grant_type: 'client_credentials', client_id: TEST_PACKAGE_SID, client_secret: TEST_CLIENT_SECRET, scope: 'notify.windows.com' });
    expect(n.headers).toEqual({
      authorization: `Bearer ${grant.accessToken}`,
      'content-type': 'application/octet-stream',
      'x-wns-type': 'wns/raw',
      'x-wns-cache-policy': 'cache',
      'x-wns-ttl': '600',
    });
  });

  it('reuses the access token until a minute before it expires', async () => {
    const p = provider();
    const before = mock.tokenRequests.length;
    await sendTo(p, 'ch-a');
    await sendTo(p, 'ch-b');
    expect(mock.tokenRequests.length - before).toBe(1);
    clock += (86400 - 61) * 1000;
    await sendTo(p, 'ch-c');
    expect(mock.tokenRequests.length - before).toBe(1);
    clock += 2000;
    await expect(sendTo(p, 'ch-d')).resolves.toEqual({ outcome: 'sent' });
    expect(mock.tokenRequests.length - before).toBe(2);
    const bearers = mock.received.slice(-4).map((m) => m.authorization);
    expect(bearers[1]).toBe(bearers[0]);
    expect(bearers[2]).toBe(bearers[0]);
    expect(bearers[3]).not.toBe(bearers[0]);
    mockClock = clock;
  });

  it('shares one token request among concurrent sends', async () => {
    const p = provider();
    const before = mock.tokenRequests.length;
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => sendTo(p, `ch-par-${i}`)));
    expect(results.every((r) => r.outcome === 'sent')).toBe(true);
    expect(mock.tokenRequests.length - before).toBe(1);
  });

  describe('classifies WNS answers', () => {
    it('200 with X-WNS-Status dropped is still sent (WNS accepted it)', async () => {
      mock.respond('ch-dropped', wnsReply(200, 'dropped'));
      await expect(sendTo(provider(), 'ch-dropped')).resolves.toEqual({ outcome: 'sent' });
    });

    it('410 Gone -> dead_token, with the error description and without the channel URI', async () => {
      mock.respond('ch-gone', wnsErrors.gone());
      const r = await sendTo(provider(), 'ch-gone');
      expect(r).toEqual({ outcome: 'dead_token', reason: expect.stringMatching(/^WNS HTTP 410 Gone; The channel expired\.; msg [0-9A-F]+$/) });
      expect(JSON.stringify(r)).not.toContain('ch-gone');
    });

    it('404 -> dead_token', async () => {
      mock.respond('ch-nf', wnsErrors.notFound());
      await expect(sendTo(provider(), 'ch-nf')).resolves.toEqual({ outcome: 'dead_token', reason: expect.stringContaining('HTTP 404 Not Found; The channel URI is not valid') });
    });

    it('406 throttled -> retry after at least a minute, naming X-WNS-Status', async () => {
      mock.respond('ch-throttled', wnsErrors.throttled());
      const r = await sendTo(provider(), 'ch-throttled');
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringContaining('HTTP 406 Not Acceptable; X-WNS-Status channelthrottled'), retryAfterMs: 60_000 });
    });

    it('406 with a longer Retry-After -> that wait', async () => {
      mock.respond('ch-throttled-2', wnsErrors.throttled('120'));
      await expect(sendTo(provider(), 'ch-throttled-2')).resolves.toMatchObject({ outcome: 'retry', retryAfterMs: 120_000 });
    });

    it('503 -> retry, honouring an HTTP-date Retry-After', async () => {
      mock.respond('ch-unavail', wnsErrors.unavailable(new Date(clock + 30_000).toUTCString()));
      const r = await sendTo(provider(), 'ch-unavail');
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/HTTP 503 Service Unavailable.*Retry-After 30s/), retryAfterMs: 30_000 });
    });

    it('500 -> retry without a wait of its own', async () => {
      mock.respond('ch-internal', wnsErrors.internal());
      const r = await sendTo(provider(), 'ch-internal');
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringContaining('HTTP 500') });
    });

    it('a bare 502 from a proxy -> retry', async () => {
      mock.respond('ch-proxy', { status: 502, body: '<html>Bad Gateway</html>', headers: { 'content-type': 'text/html' } });
      await expect(sendTo(provider(), 'ch-proxy')).resolves.toEqual({ outcome: 'retry', reason: 'WNS HTTP 502' });
    });

    it.each([
      ['400', wnsErrors.badRequest, /HTTP 400 Bad Request; One or more headers/],
      ['403', wnsErrors.forbidden, /HTTP 403 Forbidden; The cloud service is not authorized/],
      ['413', wnsErrors.tooLarge, /HTTP 413 Request Entity Too Large; The notification payload exceeds/],
    ])('%s -> failed', async (code, reply, reason) => {
      mock.respond(`ch-${code}`, reply());
      await expect(sendTo(provider(), `ch-${code}`)).resolves.toEqual({ outcome: 'failed', reason: expect.stringMatching(reason) });
    });

    it('401 -> retry, and the cached access token is dropped', async () => {
      const p = provider();
      await sendTo(p, 'ch-before');
      const before = mock.tokenRequests.length;
      mock.revokeAccessTokens();
      const r = await sendTo(p, 'ch-after-revoke');
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/^WNS HTTP 401 Unauthorized; Token expired.*access token dropped$/) });
      expect(mock.tokenRequests.length).toBe(before);
      await expect(sendTo(p, 'ch-after-revoke')).resolves.toEqual({ outcome: 'sent' });
      expect(mock.tokenRequests.length).toBe(before + 1);
    });

    it('a token WNS considers expired before our clock does is dropped too', async () => {
      const p = provider();
      await sendTo(p, 'ch-skew-1');
      const before = mock.tokenRequests.length;
      mockClock += 86400 * 1000;
      await expect(sendTo(p, 'ch-skew-2')).resolves.toMatchObject({ outcome: 'retry' });
      await expect(sendTo(p, 'ch-skew-2')).resolves.toEqual({ outcome: 'sent' });
      expect(mock.tokenRequests.length).toBe(before + 1);
    });

    it('"Token expired" in WWW-Authenticate drops the token whatever the status', async () => {
      const p = provider();
      await sendTo(p, 'ch-wa-1');
      const before = mock.tokenRequests.length;
      mock.respond('ch-wa-2', wnsReply(403, undefined, undefined, { 'www-authenticate': 'Bearer error="invalid_request",error_description="Token expired"' }));
      await expect(sendTo(p, 'ch-wa-2')).resolves.toEqual({ outcome: 'retry', reason: expect.stringContaining('access token dropped') });
      await expect(sendTo(p, 'ch-wa-2')).resolves.toEqual({ outcome: 'sent' });
      expect(mock.tokenRequests.length).toBe(before + 1);
    });

    it('a redirect is not followed -> failed', async () => {
      const before = mock.received.length;
      mock.respond('ch-redirect', { status: 307, headers: { location: mock.channel('ch-redirect-target') } });
      await expect(sendTo(provider(), 'ch-redirect')).resolves.toEqual({ outcome: 'failed', reason: 'WNS HTTP 307; redirects are not followed' });
      expect(mock.received.length).toBe(before + 1);
    });
  });

  it('a timeout -> retry', async () => {
    mock.respond('ch-slow', { status: 200, delayMs: 2000 });
    const r = await sendTo(provider({ timeoutMs: 100 }), 'ch-slow');
    expect(r).toEqual({ outcome: 'retry', reason: 'WNS unreachable: timed out after 100 ms' });
  });

  it('a refused connection -> retry, without the channel URI in the reason', async () => {
    const port = await closedPort();
    const p = provider();
    await sendTo(p, 'ch-warm'); // a cached token, so the send itself is what fails
    const r = await p.send(target(`http://127.0.0.1:${port}/w/?token=secret-channel`));
    expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/^WNS unreachable: .*ECONNREFUSED/) });
    expect(JSON.stringify(r)).not.toContain('secret-channel');
  });

  describe('channel URI allow-list', () => {
    it.each([
      ['http to the default WNS hosts', 'http://db5.notify.windows.com/?token=AwYAAAB', undefined, /scheme http is not https/],
      ['a host outside notify.windows.com', 'https://attacker.example/?token=AwYAAAB', undefined, /host attacker\.example is not under notify\.windows\.com/],
      ['a look-alike suffix', 'https://evilnotify.windows.com/?token=AwYAAAB', undefined, /host evilnotify\.windows\.com is not under/],
      ['a look-alike prefix', 'https://db5.notify.windows.com.attacker.example/?token=AwYAAAB', undefined, /is not under/],
      ['user credentials', 'https://user:pw@db5.notify.windows.com/?token=AwYAAAB', undefined, /user credentials/],
      ['not a URL', 'AwYAAAB-not-a-url', undefined, /not an absolute URL/],
      ['http to a listed host other than 127.0.0.1', 'http://localhost/w/?token=AwYAAAB', ['localhost'], /scheme http is not https/],
      ['http to 127.0.0.1 unless listed', 'http://127.0.0.1/w/?token=AwYAAAB', ['notify.windows.com'], /scheme http is not https/],
      ['a file URL', 'file:///etc/passwd?token=AwYAAAB', ['127.0.0.1'], /scheme file is not https/],
    ])('refuses %s without a request', async (_what, channel, suffixes, reason) => {
      const tokens = mock.tokenRequests.length;
      const sent = mock.received.length;
      const r = await provider({ allowedHostSuffixes: suffixes }).send(target(channel));
      expect(r).toEqual({ outcome: 'failed', reason: expect.stringMatching(reason) });
      expect(JSON.stringify(r)).not.toContain('AwYAAAB');
      expect(mock.tokenRequests.length).toBe(tokens);
      expect(mock.received.length).toBe(sent);
    });

    it('accepts WNS channel hosts (dot boundary, case-insensitive) by default rules', () => {
      const suffixes = ['notify.windows.com'];
      expect(checkChannelUri('https://db5.notify.windows.com/?token=AwYAAAB%2fQ', suffixes)).toBeUndefined();
      expect(checkChannelUri('https://DB5.Notify.Windows.com/?token=x', suffixes)).toBeUndefined();
      expect(checkChannelUri('https://notify.windows.com/?token=x', suffixes)).toBeUndefined();
      expect(checkChannelUri('https://wns2-by3p.notify.windows.com/w/?token=x', suffixes)).toBeUndefined();
    });
  });

  describe('token endpoint', () => {
    it('a wrong secret (invalid_client) -> failed with the reason, and no notification', async () => {
      const before = mock.received.length;
      const r = await provider({ clientSecret: 'wrong' }).send(target(mock.channel('ch-y')));
      expect(r).toEqual({ outcome: 'failed', reason: 'WNS OAuth token request refused (HTTP 400, invalid_client: The client secret is incorrect.)' });
      expect(mock.received.length).toBe(before);
    });

    it('a client-credential flow refused for the app (decision 0018) -> failed', async () => {
      mock.respondToTokenRequests({ status: 400, body: { error: 'invalid_request', error_description: 'client credential flows are no longer supported for new clients' } });
      await expect(sendTo(provider(), 'ch-y')).resolves.toEqual({
        outcome: 'failed',
        reason: 'WNS OAuth token request refused (HTTP 400, invalid_request: client credential flows are no longer supported for new clients)',
      });
    });

    it('a 503 from the token endpoint -> retry', async () => {
      mock.respondToTokenRequests({ status: 503, body: 'Service Unavailable' });
      await expect(sendTo(provider(), 'ch-y')).resolves.toEqual({ outcome: 'retry', reason: 'WNS OAuth token request refused (HTTP 503, Service Unavailable)' });
    });

    it('an answer without access_token -> failed', async () => {
      mock.respondToTokenRequests({ status: 200, body: { token_type: 'bearer' } });
      await expect(sendTo(provider(), 'ch-y')).resolves.toEqual({ outcome: 'failed', reason: 'WNS OAuth token endpoint answered without an access_token' });
    });

    it('an unreachable token endpoint -> retry', async () => {
      const port = await closedPort();
      const r = await provider({ tokenUrl: `http://127.0.0.1:${port}/accesstoken.srf` }).send(target(mock.channel('ch-y')));
      expect(r).toEqual({ outcome: 'retry', reason: expect.stringMatching(/^WNS OAuth token endpoint unreachable: .*ECONNREFUSED/) });
    });

    it('concurrent sends all see one refusal, and the next send asks again', async () => {
      mock.respondToTokenRequests({ status: 400, body: { error: 'invalid_client', error_description: 'The client does not exist.' } });
      const p = provider();
      const before = mock.tokenRequests.length;
      const rs = await Promise.all([sendTo(p, 'ch-1'), sendTo(p, 'ch-2')]);
      expect(rs.map((r) => r.outcome)).toEqual(['failed', 'failed']);
      expect(mock.tokenRequests.length - before).toBe(1);
      await expect(sendTo(p, 'ch-3')).resolves.toEqual({ outcome: 'sent' });
    });
  });

  it('refuses to be built without credentials', () => {
    expect(() => new WnsProvider({ clientId: '', clientSecret: 'x' })).toThrow(/client id/);
    expect(() => new WnsProvider({ clientId: TEST_PACKAGE_SID, clientSecret: '' })).toThrow(/client secret/);
    expect(() => new WnsProvider({ clientId: TEST_PACKAGE_SID, clientSecret: 'x', allowedHostSuffixes: [] })).toThrow(/allowedHostSuffixes/);
  });
});

describe('WNS through the push dispatcher and worker', () => {
  let mock: WnsMock;
  let s: TestServer;
  let worker: RunningWorker;

  beforeAll(async () => {
    mock = await WnsMock.start();
    const wns = new WnsProvider({ clientId: mock.clientId, clientSecret: mock.clientSecret, tokenUrl: mock.tokenUrl, allowedHostSuffixes: [mock.host] });
    s = await startTestServer({ pushProviders: new PushProviderRegistry().register(wns), retryDelayMs: 50 });
    worker = s.m.startWorker();
  });
  afterAll(async () => {
    await worker?.stop();
    await s?.stop();
    await mock?.close();
  });

  it('wakes the device when a command is queued', async () => {
    const { device } = await s.device({ platform: 'windows' }, { push_token: mock.channel('e2e-1') });
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'restart' }).expect(202);
    await eventually(() => mock.delivered.some((m) => m.channel === 'e2e-1'), 10_000, 'the WNS notification for e2e-1');
    const n = mock.delivered.find((m) => m.channel === 'e2e-1')!;
    expect(n.body).toBe('mooring:sync');
    expect(n.headers['x-wns-type']).toBe('wns/raw');
  });

  it('retries through a 503 and then delivers', async () => {
    const { device } = await s.device({ platform: 'windows' }, { push_token: mock.channel('e2e-flaky') });
    mock.respond('e2e-flaky', wnsErrors.unavailable('1'));
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'restart' }).expect(202);
    await eventually(() => mock.delivered.some((m) => m.channel === 'e2e-flaky'), 15_000, 'the retried WNS notification');
    expect(mock.received.filter((m) => m.channel === 'e2e-flaky').map((m) => m.status)).toEqual([503, 200]);
  });

  it('marks a 410 Gone channel dead on the enrollment, without logging the channel URI', async () => {
    const channel = mock.channel('e2e-gone');
    const { device, enrollment } = await s.device({ platform: 'windows' }, { push_token: channel });
    mock.respond('e2e-gone', wnsErrors.gone());
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'restart' }).expect(202);
    await eventually(async () => Boolean((await s.m.devices.getEnrollment(enrollment.id))?.push_token_dead_at), 10_000, 'push_token_dead_at');
    const events = await s.m.events.list({ device_id: device.id, type: 'push.token_dead' }, { limit: 5 });
    expect(events.items).toHaveLength(1);
    expect(events.items[0]!.data).toMatchObject({ enrollment_id: enrollment.id, reason: expect.stringContaining('410 Gone') });
    expect(JSON.stringify(events.items[0]!.data)).not.toContain('e2e-gone');
    expect(mock.received.filter((m) => m.channel === 'e2e-gone')).toHaveLength(1);
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
