/**
 * The Windows enrollment CNAME check against a real DNS server (UDP on loopback, queried by node:dns)
 * and real HTTPS servers whose certificates come from Mooring's own CA code. The HTTPS servers are a
 * stand-in for Mooring's Discovery.svc endpoints: GET answers 200 empty, POST Discover answers a
 * minimal DiscoverResponse.
 */
import dns from 'node:dns';
import fs from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensureTlsCertificate, loadOrCreateCa } from '../../src/pki/ca';
import { CNAME_STEPS, InvalidDomainError, checkEnrollmentCname, formatCnameReport, normalizeDomain, type CnameReport } from '../../src/windows/cname-check';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server';

const EXPECTED = 'mdm.mooring.test';

interface StandIn {
  port: number;
  requests: Array<{ method: string; url: string; host?: string; servername?: string; contentType?: string; body: string }>;
  close(): Promise<void>;
}

/** An HTTPS server on 127.0.0.1 answering like Mooring's Windows discovery endpoints (or with 404). */
/** `postAnswer`: what POST Discovery.svc answers instead of a DiscoverResponse (status and body). */
async function startDiscoveryStandIn(
  tlsMaterial: { certPem: string; keyPem: string },
  opts: { discoveryStatus?: number; postAnswer?: { status: number; type: string; body: string } } = {},
): Promise<StandIn> {
  const requests: StandIn['requests'] = [];
  const server = https.createServer({ cert: tlsMaterial.certPem, key: tlsMaterial.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const socket = req.socket as import('node:tls').TLSSocket;
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        host: req.headers.host,
        servername: (socket as unknown as { servername?: string }).servername,
        contentType: req.headers['content-type'],
        body,
      });
      if (req.url !== '/EnrollmentServer/Discovery.svc' || opts.discoveryStatus) {
        res.writeHead(opts.discoveryStatus ?? 404).end();
        return;
      }
      if (req.method === 'GET') {
        res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': '0' }).end();
        return;
      }
      if (opts.postAnswer) {
        res.writeHead(opts.postAnswer.status, { 'Content-Type': opts.postAnswer.type }).end(opts.postAnswer.body);
        return;
      }
      const messageId = /<a:MessageID>([^<]*)<\/a:MessageID>/.exec(body)?.[1] ?? '';
      res.writeHead(200, { 'Content-Type': 'application/soap+xml; charset=utf-8' }).end(
        `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">` +
          `<s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse</a:Action>` +
          `<a:RelatesTo>${messageId}</a:RelatesTo></s:Header>` +
          `<s:Body><DiscoverResponse xmlns="http://schemas.microsoft.com/windows/management/2012/01/enrollment"><DiscoverResult>` +
          `<AuthPolicy>OnPremise</AuthPolicy><EnrollmentVersion>5.0</EnrollmentVersion>` +
          `<EnrollmentPolicyServiceUrl>https://${EXPECTED}/EnrollmentServer/Policy.svc</EnrollmentPolicyServiceUrl>` +
          `<EnrollmentServiceUrl>https://${EXPECTED}/EnrollmentServer/Enrollment.svc</EnrollmentServiceUrl>` +
          `</DiscoverResult></DiscoverResponse></s:Body></s:Envelope>`,
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function step(report: CnameReport, name: (typeof CNAME_STEPS)[number]) {
  const s = report.steps.find((x) => x.step === name);
  if (!s) throw new Error(`no step ${name} in ${JSON.stringify(report)}`);
  return s;
}

describe('Windows enrollment CNAME check', () => {
  let tmp: string;
  let caPem: string;
  let dnsServer: TestDnsServer;
  let resolver: dns.promises.Resolver;
  let good: StandIn; // certificate covers EnterpriseEnrollment.example.com
  let narrow: StandIn; // certificate covers only mdm.mooring.test
  let missingDiscovery: StandIn; // answers 404
  let faulting: StandIn; // answers the Discover POST with a SOAP fault
  let htmlError: StandIn; // answers the Discover POST with a proxy's HTML error page

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-cname-'));
    const ca = await loadOrCreateCa(path.join(tmp, 'ca'));
    caPem = ca.certPem;
    for (const dir of ['wide', 'narrow']) fs.mkdirSync(path.join(tmp, dir), { mode: 0o700 });
    const wide = await ensureTlsCertificate(ca, path.join(tmp, 'wide'), ['enterpriseenrollment.example.com', EXPECTED]);
    const only = await ensureTlsCertificate(ca, path.join(tmp, 'narrow'), [EXPECTED]);
    good = await startDiscoveryStandIn(wide);
    narrow = await startDiscoveryStandIn(only);
    missingDiscovery = await startDiscoveryStandIn(wide, { discoveryStatus: 404 });
    faulting = await startDiscoveryStandIn(wide, {
      postAnswer: {
        status: 500,
        type: 'application/soap+xml; charset=utf-8',
        body:
          '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>' +
          '<s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>s:InMaintenance</s:Value></s:Subcode></s:Code>' +
          '<s:Reason><s:Text xml:lang="en-US">The server is down for maintenance &amp; back soon</s:Text></s:Reason>' +
          '</s:Fault></s:Body></s:Envelope>',
      },
    });
    htmlError = await startDiscoveryStandIn(wide, { postAnswer: { status: 502, type: 'text/html', body: '<html><body><h1>502 Bad Gateway</h1><hr></body></html>' } });

    dnsServer = await startDnsServer({
      'EnterpriseEnrollment.example.com': { CNAME: EXPECTED },
      [EXPECTED]: { A: ['127.0.0.1'] },
      'enterpriseenrollment.elsewhere.example': { CNAME: 'EnterpriseEnrollment-s.manage.microsoft.com' },
      'enterpriseenrollment.arecord.example': { A: ['192.0.2.10'] },
      'enterpriseenrollment.samehost.example': { A: ['127.0.0.1'] },
      'enterpriseenrollment.viaproxy.example': { CNAME: 'lb.hosting.example' },
      'lb.hosting.example': { CNAME: EXPECTED },
    });
    resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([dnsServer.address]);
  });

  afterAll(async () => {
    await Promise.all([good?.close(), narrow?.close(), missingDiscovery?.close(), faulting?.close(), htmlError?.close(), dnsServer?.close()]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const check = (domain: string, port: number, extra: { ca?: string | null; expectedHost?: string } = {}) =>
    checkEnrollmentCname({
      domain,
      expectedHost: extra.expectedHost ?? EXPECTED,
      resolver,
      fetchOptions: { ...(extra.ca === null ? {} : { ca: extra.ca ?? caPem }), port, connectHost: '127.0.0.1' },
      timeoutMs: 5000,
    });

  it('passes every step for a correct CNAME, a covering certificate and working endpoints', async () => {
    const before = good.requests.length;
    const report = await check('Example.COM.', good.port, { expectedHost: 'MDM.Mooring.Test.' });
    expect(report).toMatchObject({ domain: 'example.com', name: 'EnterpriseEnrollment.example.com', ok: true });
    expect(report.steps.map((s) => s.step)).toEqual([...CNAME_STEPS]);
    for (const s of report.steps) expect(s).toMatchObject({ ok: true });
    expect(step(report, 'dns').detail).toContain('is a CNAME for mdm.mooring.test');
    expect(step(report, 'discover_post').detail).toContain(`EnrollmentServiceUrl https://${EXPECTED}/EnrollmentServer/Enrollment.svc`);

    // What reached the server: SNI and Host are the EnterpriseEnrollment name; the Discover is SOAP 1.2.
    const seen = good.requests.slice(before);
    expect(seen.map((r) => r.method)).toEqual(['GET', 'POST']);
    for (const r of seen) {
      expect(r.url).toBe('/EnrollmentServer/Discovery.svc');
      expect(r.servername).toBe('enterpriseenrollment.example.com');
      expect(r.host).toBe(`enterpriseenrollment.example.com:${good.port}`);
    }
    expect(seen[1]!.contentType).toBe('application/soap+xml; charset=utf-8');
    expect(seen[1]!.body).toContain('<EmailAddress>user@example.com</EmailAddress>');
    expect(seen[1]!.body).toContain('<RequestVersion>5.0</RequestVersion>');
    expect(seen[1]!.body).toContain('IDiscoveryService/Discover</a:Action>');

    const text = formatCnameReport(report);
    expect(text.trimEnd().split('\n')).toHaveLength(CNAME_STEPS.length + 2);
    expect(text).toMatch(/^PASS {2}dns /m);
    expect(text).toMatch(/^OK: /m);
  });

  it('fails dns with a hint when there is no record, and skips the rest', async () => {
    const report = await check('missing.example', good.port);
    expect(report.ok).toBe(false);
    expect(step(report, 'dns')).toMatchObject({ ok: false, detail: expect.stringContaining('NXDOMAIN') });
    expect(step(report, 'dns').hint).toContain(`create a CNAME EnterpriseEnrollment.missing.example → ${EXPECTED}`);
    for (const name of CNAME_STEPS.slice(1)) expect(step(report, name)).toMatchObject({ ok: false, detail: expect.stringMatching(/^skipped: /) });
    const text = formatCnameReport(report);
    expect(text).toMatch(/^FAIL {2}dns .*\(hint: create a CNAME /m);
    expect(text).toMatch(/^SKIP {2}https /m);
    expect(text).toMatch(/^NOT OK: 0 of 6 checks passed$/m);
  });

  it('fails cname_target when the CNAME points elsewhere', async () => {
    const report = await check('elsewhere.example', good.port);
    expect(step(report, 'dns').ok).toBe(true);
    expect(step(report, 'cname_target')).toMatchObject({
      ok: false,
      detail: expect.stringContaining('enterpriseenrollment-s.manage.microsoft.com, not at mdm.mooring.test'),
      hint: expect.stringContaining('still points at Intune'),
    });
    expect(step(report, 'https').detail).toMatch(/^skipped: /);
    expect(report.ok).toBe(false);
  });

  it('says so when the name has an A record but no CNAME', async () => {
    const report = await check('arecord.example', good.port);
    expect(step(report, 'dns')).toMatchObject({ ok: false, detail: expect.stringContaining('has an A record (192.0.2.10) but no CNAME') });
    expect(step(report, 'dns').hint).toContain('create a CNAME EnterpriseEnrollment.arecord.example');

    // A records with this server's own addresses work for Windows: pass, with a hint to prefer a CNAME.
    const same = await check('samehost.example', good.port, { expectedHost: EXPECTED });
    expect(step(same, 'dns')).toMatchObject({ ok: true, detail: expect.stringContaining('but no CNAME') });
    expect(step(same, 'cname_target').ok).toBe(true);
    expect(step(same, 'tls_name').ok).toBe(false); // the stand-in's certificate does not name samehost.example
  });

  it('follows a CNAME through an intermediate name to this server', async () => {
    const report = await check('viaproxy.example', narrow.port);
    expect(step(report, 'cname_target')).toMatchObject({ ok: true, detail: expect.stringContaining('via lb.hosting.example') });
  });

  it('fails tls_name when the certificate does not cover the name', async () => {
    const report = await check('example.com', narrow.port);
    expect(step(report, 'https').ok).toBe(true);
    const tlsName = step(report, 'tls_name');
    expect(tlsName).toMatchObject({ ok: false, detail: expect.stringContaining('does not cover EnterpriseEnrollment.example.com (names: mdm.mooring.test)') });
    expect(tlsName.hint).toContain('must list EnterpriseEnrollment.example.com');
    expect(step(report, 'discovery_get').detail).toMatch(/^skipped: /);
    expect(step(report, 'discover_post').detail).toMatch(/^skipped: /);
    expect(narrow.requests.filter((r) => r.url.startsWith('/EnrollmentServer'))).toHaveLength(0);
  });

  it('fails https when the chain is not trusted, and still judges the name', async () => {
    const report = await check('example.com', good.port, { ca: null }); // Node's public roots only
    expect(step(report, 'https')).toMatchObject({ ok: false, detail: expect.stringContaining('not trusted') });
    expect(step(report, 'tls_name').ok).toBe(true);
    expect(step(report, 'discovery_get').detail).toMatch(/^skipped: /);
  });

  it('fails discovery_get when Discovery.svc answers 404', async () => {
    const report = await check('example.com', missingDiscovery.port);
    expect(step(report, 'tls_name').ok).toBe(true);
    expect(step(report, 'discovery_get')).toMatchObject({ ok: false, detail: expect.stringContaining('→ 404') });
    expect(step(report, 'discovery_get').hint).toBeDefined();
    expect(step(report, 'discover_post').detail).toMatch(/^skipped: /);
    expect(report.ok).toBe(false);
  });

  it("fails discover_post with the fault's reason and code when the POST answers a SOAP fault", async () => {
    const report = await check('example.com', faulting.port);
    expect(step(report, 'discovery_get').ok).toBe(true);
    expect(step(report, 'discover_post')).toMatchObject({ ok: false, detail: 'POST Discover → 500: The server is down for maintenance & back soon (s:Receiver)' });
    expect(report.ok).toBe(false);
  });

  it('fails discover_post without a crash when a proxy answers the POST with an HTML page', async () => {
    const report = await check('example.com', htmlError.port);
    expect(step(report, 'discover_post')).toMatchObject({ ok: false, detail: 'POST Discover → 502' });
  });

  it('fails https when nothing listens on the port', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const report = await check('example.com', port);
    expect(step(report, 'https')).toMatchObject({ ok: false, detail: expect.stringContaining('ECONNREFUSED') });
    expect(step(report, 'tls_name').detail).toMatch(/^skipped: /);
  });

  it('refuses a domain that is not a bare DNS name', async () => {
    for (const bad of ['', 'https://example.com', 'example.com/path', 'user@example.com', 'example', 'a..b.com', '1.2.3.4', '-a.example.com', 'ex_ample.com', 'enterpriseenrollment.example.com', `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.com`]) {
      await expect(checkEnrollmentCname({ domain: bad, expectedHost: EXPECTED, resolver })).rejects.toBeInstanceOf(InvalidDomainError);
    }
    await expect(checkEnrollmentCname({ domain: 'https://example.com', expectedHost: EXPECTED, resolver })).rejects.toMatchObject({ code: 'validation_failed', status: 400 });
    expect(normalizeDomain('Bücher.Example.')).toBe('xn--bcher-kva.example');
  });
});
