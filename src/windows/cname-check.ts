/**
 * The Windows enrollment CNAME check (Mooring's counterpart of Intune's "CNAME Validation"). Windows
 * finds its MDM server from the user's UPN suffix: it asks
 * `https://EnterpriseEnrollment.<domain>/EnrollmentServer/Discovery.svc` (MS-MDE2 §3.1), so each UPN
 * domain needs that name pointing at this server, over HTTPS with a certificate that covers the name.
 * The check walks the same path a device does and says, step by step, what works and what to fix:
 *
 *   dns            EnterpriseEnrollment.<domain> resolves (a CNAME, or A records)
 *   cname_target   ...to MOORING_PUBLIC_URL's host
 *   https          a TLS connection to the name on port 443 with a trusted certificate chain
 *   tls_name       the certificate covers the name (SAN)
 *   discovery_get  GET Discovery.svc answers 200
 *   discover_post  a test Discover (SOAP 1.2) answers a DiscoverResponse with an EnrollmentServiceUrl
 *
 * A step whose prerequisite failed is reported as skipped (ok false). `EnterpriseRegistration.<domain>`
 * is Entra device registration, not MDM discovery, and is not checked here.
 */
import crypto from 'node:crypto';
import dns from 'node:dns';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { domainToASCII } from 'node:url';
import { child, escapeXml, parseXml, type XmlElement } from '../../protocols/windows/xml';
import { MooringError } from '../core/errors';

export const CNAME_STEPS = ['dns', 'cname_target', 'https', 'tls_name', 'discovery_get', 'discover_post'] as const;
export type CnameStepName = (typeof CNAME_STEPS)[number];

export interface CnameStep {
  step: CnameStepName;
  ok: boolean;
  detail: string;
  hint?: string;
}

export interface CnameReport {
  /** The domain checked, normalized (lower case, punycode, no trailing dot). */
  domain: string;
  /** `EnterpriseEnrollment.<domain>`. */
  name: string;
  /** true when every step passed. */
  ok: boolean;
  /** One entry per step, in CNAME_STEPS order. */
  steps: CnameStep[];
}

/** What the check needs from DNS; node:dns.promises.Resolver fits. */
export interface CnameResolver {
  resolveCname(name: string): Promise<string[]>;
  resolve4?(name: string): Promise<string[]>;
}

export interface CnameCheckOptions {
  /** A UPN suffix users enroll with, e.g. `contoso.com`. */
  domain: string;
  /** Where the name must point: the host of MOORING_PUBLIC_URL. */
  expectedHost: string;
  /** Default: a node:dns.promises Resolver using this machine's DNS servers. */
  resolver?: CnameResolver;
  fetchOptions?: {
    /** Trust anchors for the HTTPS steps instead of Node's public roots (tests, private CAs). */
    ca?: string | Buffer;
    /** HTTPS port to try; Windows always uses 443. */
    port?: number;
    /** Connect here instead of resolving the name (SNI and Host stay the name); for tests. */
    connectHost?: string;
  };
  /** Limit for each DNS query and each HTTPS exchange. Default 10 s. */
  timeoutMs?: number;
}

/** The domain given to the check is not a usable DNS name. Renders as a 400 validation_failed. */
export class InvalidDomainError extends MooringError {
  constructor(
    readonly domain: string,
    readonly reason: string,
  ) {
    super('validation_failed', `"${domain}" is not a domain name: ${reason}`, { errors: [{ path: 'query.domain', message: reason }] });
    this.name = 'InvalidDomainError';
  }
}

const PREFIX = 'EnterpriseEnrollment.';
const DISCOVERY_PATH = '/EnrollmentServer/Discovery.svc';
const MAX_NAME = 253;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_BODY = 1024 * 1024;
const INTUNE_TARGETS = new Set(['enterpriseenrollment.manage.microsoft.com', 'enterpriseenrollment-s.manage.microsoft.com']);

/**
 * A bare DNS domain, lower case, IDNs as punycode, without the trailing dot; throws
 * InvalidDomainError for anything else (a URL, an e-mail address, an IP, a malformed name).
 */
export function normalizeDomain(input: unknown): string {
  const raw = typeof input === 'string' ? input.trim() : '';
  const bad = (reason: string): never => {
    throw new InvalidDomainError(typeof input === 'string' ? input : String(input), reason);
  };
  if (typeof input !== 'string') bad('expected a string');
  if (raw === '') bad('it is empty');
  if (raw.length > MAX_NAME + 1) bad(`it is longer than ${MAX_NAME} characters`);
  if (raw.includes('@')) bad('give the domain part only (example.com), not an e-mail address');
  if (/[/:?#\\\s]/.test(raw)) bad('give a bare domain such as example.com, without scheme, port, path or spaces');
  const bare = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (net.isIP(bare)) bad('an IP address is not a domain');
  const ascii = domainToASCII(bare).toLowerCase();
  if (ascii === '') bad('it is not a valid domain name');
  if (ascii.length > MAX_NAME) bad(`it is longer than ${MAX_NAME} characters`);
  const labels = ascii.split('.');
  if (labels.length < 2) bad('expected a domain with at least two labels, such as example.com');
  for (const label of labels) {
    if (label === '') bad('it has an empty label (two dots in a row, or a leading dot)');
    if (label.length > 63) bad(`the label "${label.slice(0, 20)}..." is longer than 63 characters`);
    if (!LABEL.test(label)) bad(`the label "${label}" may hold only letters, digits and inner hyphens`);
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) bad('the last label cannot be all digits');
  if (labels[0] === 'enterpriseenrollment') bad(`give the domain itself (${labels.slice(1).join('.')}), not the EnterpriseEnrollment name`);
  if (PREFIX.length + ascii.length > MAX_NAME) bad(`EnterpriseEnrollment.<domain> would be longer than ${MAX_NAME} characters`);
  return ascii;
}

/** Host names compare case-insensitively and without a trailing dot. */
function sameHost(a: string, b: string): boolean {
  return normalizeHost(a) === normalizeHost(b);
}

function normalizeHost(host: string): string {
  return host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

export async function checkEnrollmentCname(opts: CnameCheckOptions): Promise<CnameReport> {
  const domain = normalizeDomain(opts.domain);
  const name = PREFIX + domain;
  const host = name.toLowerCase(); // what we resolve, connect to and send as SNI and Host
  const expected = normalizeHost(opts.expectedHost);
  if (expected === '') throw new Error('checkEnrollmentCname: expectedHost is empty');
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const port = opts.fetchOptions?.port ?? 443;
  const resolver = opts.resolver ?? defaultResolver(timeoutMs);
  const url = `https://${name}${port === 443 ? '' : `:${port}`}${DISCOVERY_PATH}`;
  const steps: CnameStep[] = [];
  const report = (): CnameReport => ({ domain, name, ok: steps.length === CNAME_STEPS.length && steps.every((s) => s.ok), steps });
  const skipRest = (reason: string): CnameReport => {
    for (const step of CNAME_STEPS.slice(steps.length)) steps.push({ step, ok: false, detail: `skipped: ${reason}` });
    return report();
  };
  const createHint = `create a CNAME ${name} → ${expected}`;

  // ---- 1. dns, 2. cname_target ----
  const resolved = await resolveName(resolver, host, timeoutMs);
  if (resolved.kind === 'cname') {
    const target = normalizeHost(resolved.target);
    steps.push({ step: 'dns', ok: true, detail: `${name} is a CNAME for ${target}` });
    const chain = [target];
    // A CNAME to an intermediate name (a load balancer's, say) that is itself a CNAME for our host also works.
    for (let hops = 0; !sameHost(chain[chain.length - 1]!, expected) && hops < 4; hops++) {
      const next = await resolveName(resolver, chain[chain.length - 1]!, timeoutMs);
      if (next.kind !== 'cname' || chain.includes(normalizeHost(next.target))) break;
      chain.push(normalizeHost(next.target));
    }
    if (sameHost(chain[chain.length - 1]!, expected)) {
      steps.push({ step: 'cname_target', ok: true, detail: chain.length === 1 ? `the CNAME points at ${expected}` : `the CNAME reaches ${expected} via ${chain.slice(0, -1).join(' → ')}` });
    } else {
      steps.push({ step: 'cname_target', ok: false, detail: `the CNAME points at ${chain.join(' → ')}, not at ${expected}`, hint: targetHint(name, expected, target) });
      return skipRest('the name does not point at this server');
    }
  } else if (resolved.kind === 'no_cname') {
    // The name exists without a CNAME: A records that reach our addresses work for Windows, anything else does not.
    const own = resolver.resolve4 ? await resolveA(resolver, host, timeoutMs) : undefined;
    if (!own || own.length === 0) {
      steps.push({ step: 'dns', ok: false, detail: `${name} exists in DNS but has no CNAME${own ? ' or A record' : ''}`, hint: createHint });
      return skipRest('no CNAME record');
    }
    const ours = await resolveA(resolver, expected, timeoutMs);
    const same = ours !== undefined && ours.length > 0 && own.every((ip) => ours.includes(ip));
    steps.push({ step: 'dns', ok: same, detail: `${name} has an A record (${own.join(', ')}) but no CNAME`, hint: same ? `a CNAME ${name} → ${expected} keeps working if the server's address changes` : createHint });
    if (!same) return skipRest('no CNAME record');
    steps.push({ step: 'cname_target', ok: true, detail: `no CNAME, but its addresses (${own.join(', ')}) are those of ${expected}` });
  } else if (resolved.kind === 'nxdomain') {
    steps.push({ step: 'dns', ok: false, detail: `${name} does not exist in DNS (NXDOMAIN)`, hint: `${createHint}; a new record can take up to 72 hours to reach every resolver` });
    return skipRest('no DNS record');
  } else {
    steps.push({ step: 'dns', ok: false, detail: `the DNS lookup of ${name} failed: ${resolved.error}`, hint: 'check that this server can reach its DNS servers, then try again' });
    return skipRest('the DNS lookup failed');
  }

  // ---- 3. https, 4. tls_name ----
  const connectHost = opts.fetchOptions?.connectHost ?? host;
  const ca = opts.fetchOptions?.ca;
  const probe = await tlsProbe({ host: connectHost, port, servername: host, ca, timeoutMs });
  if ('error' in probe) {
    steps.push({
      step: 'https',
      ok: false,
      detail: `no TLS connection to ${name}:${port}: ${probe.error}`,
      hint: `Windows connects to https://${name} on port 443; make sure the HTTPS listener of ${expected} (or the proxy in front of it) answers there`,
    });
    return skipRest('no HTTPS connection');
  }
  const issuer = describeName(probe.cert.issuer);
  if (probe.authorized) {
    steps.push({ step: 'https', ok: true, detail: `${probe.protocol ?? 'TLS'} connection to ${name}:${port}; certificate issued by ${issuer}, chain trusted` });
  } else {
    steps.push({
      step: 'https',
      ok: false,
      detail: `TLS connection to ${name}:${port} made, but the certificate (issued by ${issuer}) is not trusted: ${probe.authorizationError}`,
      hint:
        'Windows checks the chain before it enrolls (without it, it falls back to plain HTTP and asks the user); use a certificate from a CA ' +
        "Windows trusts, e.g. a public CA through ACME. Mooring's generated CA is unknown to devices that are not enrolled yet",
    });
  }
  const identityError = tls.checkServerIdentity(host, probe.cert);
  const sans = probe.cert.subjectaltname ? probe.cert.subjectaltname.replace(/DNS:/g, '').replace(/IP Address:/g, '') : 'none';
  if (!identityError) {
    steps.push({ step: 'tls_name', ok: true, detail: `the certificate covers ${name} (names: ${sans})` });
  } else {
    steps.push({
      step: 'tls_name',
      ok: false,
      detail: `the certificate does not cover ${name} (names: ${sans})`,
      hint:
        `the certificate must list ${name} (or *.${domain}) in its subject alternative names; Mooring's generated certificate covers only ` +
        `${expected}, so a deployment needs a certificate for each EnterpriseEnrollment name (the CNAME already points here, so ACME HTTP-01 can issue it)`,
    });
  }
  if (!probe.authorized || identityError) return skipRest('Windows would refuse this certificate');

  // ---- 5. discovery_get ----
  const request = { host: connectHost, port, servername: host, hostHeader: port === 443 ? host : `${host}:${port}`, ca, timeoutMs };
  const get = await httpsExchange({ ...request, method: 'GET', path: DISCOVERY_PATH, headers: { 'User-Agent': 'Mooring CNAME check' } });
  if ('error' in get) {
    steps.push({ step: 'discovery_get', ok: false, detail: `GET ${url} failed: ${get.error}`, hint: `check that ${expected} is reachable and serves ${DISCOVERY_PATH}` });
    return skipRest('GET Discovery.svc failed');
  }
  if (get.status === 200) {
    const body = get.body.length === 0 ? 'empty body' : `${get.body.length}-byte body; Windows expects it empty`;
    steps.push({ step: 'discovery_get', ok: true, detail: `GET ${url} → 200 (${body})` });
  } else if (get.status >= 300 && get.status < 400) {
    steps.push({
      step: 'discovery_get',
      ok: false,
      detail: `GET ${url} → ${get.status} redirect to ${get.headers.location ?? '(no Location)'}`,
      hint: `Windows asks the user before it follows a redirect; serve ${DISCOVERY_PATH} directly under ${name}`,
    });
    return skipRest('GET Discovery.svc did not answer 200');
  } else {
    steps.push({
      step: 'discovery_get',
      ok: false,
      detail: `GET ${url} → ${get.status}`,
      hint: `Windows starts enrollment with this GET and needs a 200; check that Windows enrollment is enabled on ${expected} and that any proxy forwards ${DISCOVERY_PATH}`,
    });
    return skipRest('GET Discovery.svc did not answer 200');
  }

  // ---- 6. discover_post ----
  const messageId = `urn:uuid:${crypto.randomUUID()}`;
  const post = await httpsExchange({
    ...request,
    method: 'POST',
    path: DISCOVERY_PATH,
    headers: { 'Content-Type': 'application/soap+xml; charset=utf-8', 'User-Agent': 'Mooring CNAME check' },
    body: discoverRequest(url, messageId, `user@${domain}`),
  });
  if ('error' in post) {
    steps.push({ step: 'discover_post', ok: false, detail: `POST Discover to ${url} failed: ${post.error}`, hint: `check the server log of ${expected}` });
    return report();
  }
  const answer = xmlOf(post.body);
  const discovered = child(answer, 'Body', 'DiscoverResponse');
  const serviceUrl = firstText(discovered, 'EnrollmentServiceUrl');
  if (post.status === 200 && serviceUrl) {
    const policy = firstText(discovered, 'AuthPolicy');
    if (!/^https:\/\//i.test(serviceUrl)) {
      steps.push({
        step: 'discover_post',
        ok: false,
        detail: `DiscoverResponse names EnrollmentServiceUrl ${serviceUrl}, which is not HTTPS`,
        hint: 'Windows enrolls only over HTTPS; set MOORING_PUBLIC_URL to an https:// URL',
      });
    } else {
      steps.push({ step: 'discover_post', ok: true, detail: `DiscoverResponse${policy ? ` (AuthPolicy ${policy})` : ''} with EnrollmentServiceUrl ${serviceUrl}` });
    }
    return report();
  }
  const fault = firstText(answer, 'Text') ?? firstText(answer, 'faultstring');
  const code = firstText(answer, 'Value');
  steps.push({
    step: 'discover_post',
    ok: false,
    detail:
      post.status === 200
        ? 'POST Discover → 200, but the answer is not a DiscoverResponse with an EnrollmentServiceUrl'
        : `POST Discover → ${post.status}${fault ? `: ${fault}` : ''}${code ? ` (${code})` : ''}`,
    hint: `Windows sends this request right after the GET; check the server log of ${expected} for the POST to ${DISCOVERY_PATH}`,
  });
  return report();
}

/** One line per step (PASS, FAIL or SKIP, the step, what was seen, and the hint), then the verdict. */
export function formatCnameReport(report: CnameReport): string {
  const width = Math.max(...CNAME_STEPS.map((s) => s.length));
  const lines = [`Windows enrollment check for ${report.name}`];
  for (const s of report.steps) {
    const mark = s.ok ? 'PASS' : s.detail.startsWith('skipped:') ? 'SKIP' : 'FAIL';
    lines.push(`${mark}  ${s.step.padEnd(width)}  ${s.detail}${s.hint ? ` (hint: ${s.hint})` : ''}`);
  }
  const passed = report.steps.filter((s) => s.ok).length;
  lines.push(report.ok ? `OK: Windows devices can discover this server through ${report.name}` : `NOT OK: ${passed} of ${report.steps.length} checks passed`);
  return lines.join('\n') + '\n';
}

// ---- DNS ----

type Resolved = { kind: 'cname'; target: string } | { kind: 'no_cname' } | { kind: 'nxdomain' } | { kind: 'error'; error: string };

function defaultResolver(timeoutMs: number): CnameResolver {
  return new dns.promises.Resolver({ timeout: Math.max(500, Math.min(timeoutMs, 5000)), tries: 2 });
}

async function resolveName(resolver: CnameResolver, name: string, timeoutMs: number): Promise<Resolved> {
  try {
    const targets = await withTimeout(resolver.resolveCname(name), timeoutMs, `DNS lookup of ${name}`);
    if (targets.length === 0) return { kind: 'no_cname' };
    return { kind: 'cname', target: targets[0]! };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === dns.NOTFOUND) return { kind: 'nxdomain' };
    if (code === dns.NODATA) return { kind: 'no_cname' };
    return { kind: 'error', error: code ? `${code} (${(err as Error).message})` : (err as Error).message };
  }
}

/** The A records of `name` (following CNAMEs), [] when there are none, undefined when the lookup failed. */
async function resolveA(resolver: CnameResolver, name: string, timeoutMs: number): Promise<string[] | undefined> {
  if (!resolver.resolve4) return undefined;
  if (net.isIPv4(name)) return [name];
  try {
    return await withTimeout(resolver.resolve4(name), timeoutMs, `DNS lookup of ${name}`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === dns.NOTFOUND || code === dns.NODATA ? [] : undefined;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what} timed out after ${ms} ms`), { code: dns.TIMEOUT })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function targetHint(name: string, expected: string, target: string): string {
  if (net.isIP(expected)) return `MOORING_PUBLIC_URL uses the address ${expected}, and a CNAME needs a host name: give MOORING_PUBLIC_URL a DNS name and point ${name} at it`;
  if (INTUNE_TARGETS.has(target)) return `${name} still points at Intune; change the CNAME to ${expected}`;
  return `change the CNAME ${name} to point at ${expected}`;
}

// ---- TLS and HTTPS ----

type TlsProbe =
  | { error: string }
  | { authorized: boolean; authorizationError?: string; cert: tls.PeerCertificate; protocol: string | null };

/** Opens a TLS connection and reports the chain's trust and the certificate, without judging the name. */
function tlsProbe(o: { host: string; port: number; servername: string; ca?: string | Buffer; timeoutMs: number }): Promise<TlsProbe> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (result: TlsProbe): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const socket = tls.connect({
      host: o.host,
      port: o.port,
      servername: o.servername,
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined, // the name is judged separately (tls_name)
      ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => socket.destroy(new Error(`timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    socket.on('error', (err) => done({ error: describeError(err) }));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      if (!cert || Object.keys(cert).length === 0) done({ error: 'the server sent no certificate' });
      else {
        const authorizationError = socket.authorizationError ? String(socket.authorizationError) : undefined;
        done({ authorized: socket.authorized, ...(authorizationError ? { authorizationError } : {}), cert, protocol: socket.getProtocol() });
      }
      socket.end();
    });
  });
}

interface Exchange {
  host: string;
  port: number;
  servername: string;
  hostHeader: string;
  ca?: string | Buffer;
  timeoutMs: number;
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

type ExchangeResult = { error: string } | { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer };

/** One HTTPS request with full certificate verification against `servername`; never rejects. */
function httpsExchange(o: Exchange): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ExchangeResult): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const body = o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
    const req = https.request(
      {
        host: o.host,
        port: o.port,
        servername: o.servername,
        method: o.method,
        path: o.path,
        agent: false,
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        rejectUnauthorized: true,
        headers: { ...o.headers, Host: o.hostHeader, ...(body ? { 'Content-Length': String(body.length) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY) {
            req.destroy(new Error(`the answer is larger than ${MAX_BODY} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', (err) => done({ error: describeError(err) }));
      },
    );
    req.setTimeout(o.timeoutMs, () => req.destroy(new Error(`timed out after ${o.timeoutMs} ms`)));
    req.on('error', (err) => done({ error: describeError(err) }));
    req.end(body);
  });
}

function describeError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}

function describeName(name: tls.Certificate | undefined): string {
  const pick = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
  return pick(name?.CN) ?? pick(name?.O) ?? 'an unnamed issuer';
}

// ---- SOAP ----

/** A Discover request as Windows sends it (MS-MDE2 §3.1.4.1.1.1), SOAP 1.2. */
function discoverRequest(to: string, messageId: string, email: string): string {
  return `<s:Envelope xmlns:a="http://www.w3.org/2005/08/addressing" xmlns:s="http://www.w3.org/2003/05/soap-envelope">
  <s:Header>
    <a:Action s:mustUnderstand="1">http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover</a:Action>
    <a:MessageID>${messageId}</a:MessageID>
    <a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
    <a:To s:mustUnderstand="1">${escapeXml(to)}</a:To>
  </s:Header>
  <s:Body>
    <Discover xmlns="http://schemas.microsoft.com/windows/management/2012/01/enrollment">
      <request xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
        <EmailAddress>${escapeXml(email)}</EmailAddress>
        <RequestVersion>5.0</RequestVersion>
        <DeviceType>CIMClient_Windows</DeviceType>
        <ApplicationVersion>10.0.22621.3155</ApplicationVersion>
        <OSEdition>48</OSEdition>
        <AuthPolicies><AuthPolicy>OnPremise</AuthPolicy><AuthPolicy>Federated</AuthPolicy></AuthPolicies>
      </request>
    </Discover>
  </s:Body>
</s:Envelope>`;
}

/** The answer as an XML tree (our bounded reader), or undefined when it is not XML (an HTML error page, say). */
function xmlOf(body: Buffer): XmlElement | undefined {
  try {
    return parseXml(body);
  } catch {
    return undefined;
  }
}

/** The text of the first element with this local name, depth first, if it has any. */
function firstText(el: XmlElement | undefined, name: string): string | undefined {
  if (!el) return undefined;
  if (el.name === name) return el.text || undefined;
  for (const c of el.children) {
    const found = firstText(c, name);
    if (found !== undefined) return found;
  }
  return undefined;
}
