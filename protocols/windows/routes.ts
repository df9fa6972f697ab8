/**
 * Windows device endpoints. Enrollment (MS-MDE2) over SOAP, reached through the EnterpriseEnrollment
 * CNAME for whatever Host the device used:
 *   GET/POST /EnrollmentServer/Discovery.svc   discovery
 *   POST     /EnrollmentServer/Policy.svc      XCEP certificate policy
 *   POST     /EnrollmentServer/Enrollment.svc  WSTEP: the identity certificate and provisioning document
 *   GET/POST /EnrollmentServer/Auth            the federated sign-in page
 * Management (OMA-DM 1.2 SyncML) with the identity certificate as TLS client certificate:
 *   POST     /ManagementServer/MDM.svc
 * Every enrollment answer is `application/soap+xml; charset=utf-8` with a Content-Length; every
 * refusal is a SOAP fault the device can show (logged in full, generic on the wire).
 */
import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import express, { Router } from 'express';
import type { Logger } from 'pino';
import type { CommandService } from '../../src/core/commands';
import { EnrollmentRefusal, REFUSAL_MESSAGES, type Allowed, type EnrollmentFacts } from '../../src/core/enrollment-policy';
import { isMooringError } from '../../src/core/errors';
import type { PlatformCommands } from '../../src/core/platforms';
import type { IdleCache } from '../../src/core/idle-cache';
import type { Command, Json } from '../../src/core/types';
import { clientCertificate } from '../../src/http/client-cert';
import { answer, mountDevice, type DeviceFrontEnd, type DeviceHandler } from '../../src/http/lanes';
import { readRawBody } from '../../src/http/raw-body';
import { acceptedTerms, acceptsAll, categoryFormHtml, chosenCategory, pageHtml, termsFormHtml } from '../../src/http/enrollment-pages';
import type { CertificateAuthority } from '../../src/pki/ca';
import type { Sealer } from '../../src/pki/sealed';
import { issueClientCertificate, readCsr, verifyClientCertificate } from '../../src/pki/issue';
import type { PgEnrollmentGate } from '../../src/storage/enrollment-gate';
import type { EnrollmentToken } from '../../src/storage/tokens';
import type { ManagedChannel, PgWindowsStore } from '../../src/storage/windows';
import { buildDiscoverResponse, enrollmentVersionFor, parseDiscover } from './discovery';
import { WindowsFault, isWindowsFault, refusalFault } from './faults';
import { buildProvisioningDoc } from './provisioning';
import type { SecurityCredentials } from './soap';
import { SessionChannels } from './sessions';
import { buildSyncMlReply, inventoryFromItems, isUnenrollmentAlert, parseSyncMl, statusFor, type ReplyStatus, type SyncMlMessage } from './syncml';
import { escapeXml } from './xml';
import { buildGetPoliciesResponse, parseGetPolicies } from './xcep';
import { buildRequestSecurityTokenResponseCollection, parseRequestSecurityToken } from './wstep';

const SOAP = 'application/soap+xml; charset=utf-8';
const SYNCML = 'application/vnd.syncml.dm+xml; charset=utf-8';
export const WINDOWS_BODY_LIMIT = 1024 * 1024;
/** Most commands sent in one OMA-DM message. */
const COMMANDS_PER_MESSAGE = 10;

export interface WindowsRoutesDeps {
  windows: PgWindowsStore;
  commands: CommandService;
  platform: PlatformCommands;
  ca: CertificateAuthority;
  publicUrl: URL;
  authPolicy: 'OnPremise' | 'Federated';
  pollMinutes: number;
  /** Validity of the identity certificates issued at enrollment (MOORING_IDENTITY_DAYS). */
  identityDays?: number;
  trustedProxyCertHeader?: string;
  /** WNS package family name: when set, devices without a push channel are asked to open one. */
  wnsPackageFamilyName?: string;
  logger: Logger;
  /** The enrollment rules (restrictions, limits, terms): consulted before a device is enrolled. */
  gate: PgEnrollmentGate;
  /** Seals the federated token the sign-in page hands out. */
  sealer: Sealer;
  /**
   * Remembers channels a hand-out left with nothing queued, so a later message at the same queue
   * generation (the device's Status answer, usually) skips the hand-out (absent: every message asks).
   */
  idle?: IdleCache;
}

const PUSH_NODE = './Vendor/MSFT/DMClient/Provider/Mooring/Push';

/**
 * Asks the device's DMClient for its WNS channel: sets our app's PFN when it has no channel yet, and
 * reads the ChannelURI (Windows renews channels about every 15 days, so every session reads it).
 */
function pushChannelRequest(pfn: string, hasChannel: boolean): string[] {
  return [
    ...(hasChannel ? [] : [`<Replace><CmdID>mooring-wns-pfn</CmdID><Item><Target><LocURI>${PUSH_NODE}/PFN</LocURI></Target>` +
      `<Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>${escapeXml(pfn)}</Data></Item></Replace>`]),
    `<Get><CmdID>mooring-wns-uri</CmdID><Item><Target><LocURI>${PUSH_NODE}/ChannelURI</LocURI></Target></Item></Get>`,
  ];
}

/**
 * The Windows front end: the device endpoints as plain Node handlers, shared by the express router and
 * the lanes ahead of it (src/http/lanes.ts), so a request gets the same answer either way.
 */
export function windowsFrontEnd(deps: WindowsRoutesDeps): DeviceFrontEnd {
  const caDer = Buffer.from(deps.ca.cert.rawData);
  const sessions = new SessionChannels();
  const handlers: Record<string, DeviceHandler> = {
    '/EnrollmentServer/Discovery.svc': discoveryHandler(deps),
    '/EnrollmentServer/Policy.svc': policyHandler(deps),
    '/EnrollmentServer/Enrollment.svc': enrollmentHandler(deps, caDer),
    '/ManagementServer/MDM.svc': managementHandler(deps, sessions),
  };
  const front: DeviceFrontEnd = { router: Router(), lanes: [] };
  for (const [path, handle] of Object.entries(handlers)) mountDevice(front, ['POST'], path, handle);
  const { router } = front;
  router.get('/EnrollmentServer/Discovery.svc', (_req, res) => {
    res.status(200).type('text/html').send('');
  });
  signInPage(router, deps);
  return front;
}

function discoveryHandler(deps: WindowsRoutesDeps): DeviceHandler {
  return soap(deps, async (req, body, ctx) => {
    const discover = parseDiscover(body);
    ctx.relatesTo = discover.messageId;
    const base = baseUrl(req, deps.publicUrl);
    return {
      xml: buildDiscoverResponse({
        relatesTo: discover.messageId,
        authPolicy: deps.authPolicy,
        enrollmentVersion: enrollmentVersionFor(discover.requestVersion),
        policyServiceUrl: `${base}/EnrollmentServer/Policy.svc`,
        enrollmentServiceUrl: `${base}/EnrollmentServer/Enrollment.svc`,
        ...(deps.authPolicy === 'Federated' ? { authenticationServiceUrl: `${base}/EnrollmentServer/Auth` } : {}),
      }),
    };
  });
}

function policyHandler(deps: WindowsRoutesDeps): DeviceHandler {
  return soap(deps, async (_req, body, ctx) => {
    const request = parseGetPolicies(body);
    ctx.relatesTo = request.messageId;
    // The policy step only looks at the token; the enrollment step spends a use of it.
    if (!(await deps.windows.tokenIsUsable(credentialsOf(deps, request.security).code))) throw authenticationFault();
    return { xml: buildGetPoliciesResponse({ relatesTo: request.messageId }) };
  });
}

function enrollmentHandler(deps: WindowsRoutesDeps, caDer: Buffer): DeviceHandler {
  return soap(deps, async (req, body, ctx) => {
    const request = parseRequestSecurityToken(body);
    ctx.relatesTo = request.messageId;
    const deviceId = request.context.DeviceID;
    if (!deviceId) throw new WindowsFault('MessageFormat', 'the request has no DeviceID', { type: 'InvalidEnrollmentData' });
    const csr = await readCsr(request.csr).catch((err: unknown) => {
      throw new WindowsFault('CertificateRequest', 'the certificate request could not be used', undefined, 500, { cause: err });
    });
    const mode = request.context.EnrollmentType === 'Device' ? 'device' : 'user';
    const claims = credentialsOf(deps, request.security);
    const secret = claims.code;
    const facts: EnrollmentFacts = {
      platform: 'windows',
      method: request.security.binaryToken ? 'windows_federated' : 'windows_onpremise',
      os: 'windows',
      osVersion: request.context.OSVersion,
      userRef: request.context.UserPrincipalName ?? claims.user,
      ownershipClaim: 'unknown',
      final: true,
    };
    const { decision, token } = await decideEnrollment(deps, facts, claims, request.context.HWDevID ?? deviceId, baseUrl(req, deps.publicUrl));
    const enrolled = await deps.windows
      .enroll({
        token: secret,
        checkedToken: token,
        decision,
        deviceId,
        hwDevId: request.context.HWDevID,
        mode,
        osVersion: request.context.OSVersion,
        deviceName: request.context.DeviceName,
        userPrincipalName: request.context.UserPrincipalName ?? (request.security.username || undefined),
        issue: () => issueClientCertificate(deps.ca, csr, { commonName: deviceId, days: deps.identityDays }),
      })
      .catch(async (err: unknown) => {
        if (!isMooringError(err) || err.code === 'internal_error') throw err;
        // A token that stopped enrolling since the policy request (see tokenForEnrollment) is reported here.
        await deps.gate.recordTokenRefusal(facts, err);
        throw authenticationFault(err);
      });
    const base = baseUrl(req, deps.publicUrl);
    const provisioningXml = buildProvisioningDoc({
      rootCertDer: caDer,
      identityCertDer: enrolled.certificate.der,
      identityStore: mode === 'device' ? 'System' : 'User',
      managementUrl: `${base}/ManagementServer/MDM.svc`,
      providerId: 'Mooring',
      serverName: 'Mooring',
      clientNonce: crypto.randomBytes(24).toString('base64'),
      serverNonce: crypto.randomBytes(24).toString('base64'),
      pollIntervalMinutes: deps.pollMinutes,
      entDeviceName: request.context.DeviceName,
      entDmId: enrolled.deviceId,
    });
    return { xml: buildRequestSecurityTokenResponseCollection({ relatesTo: request.messageId, provisioningXml, now: new Date() }) };
  });
}

/** The federated sign-in page (`/EnrollmentServer/Auth`): a browser page, so it stays on express. */
function signInPage(router: Router, deps: WindowsRoutesDeps): void {
  // The sign-in page is the one HTML page devices show: no framing, no sniffing, no referrer.
  router.use('/EnrollmentServer/Auth', (_req, res, next) => {
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    next();
  });

  router.get('/EnrollmentServer/Auth', (req, res) => {
    const appru = typeof req.query.appru === 'string' ? req.query.appru : '';
    const hint = typeof req.query.login_hint === 'string' ? req.query.login_hint : '';
    if (!isWindowsAppReturnUrl(appru)) return void res.status(400).type('html').send(pageHtml('Sign-in link not valid', '<p>Open this page from Settings, Accounts, Access work or school.</p>'));
    res.type('html').send(signInForm(appru, hint));
  });

  router.post('/EnrollmentServer/Auth', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    const body = req.body as Record<string, string>;
    const { appru = '', login_hint: hint = '', code = '' } = body;
    if (!isWindowsAppReturnUrl(appru)) return void res.status(400).type('html').send(pageHtml('Sign-in link not valid', '<p>Start again from Settings.</p>'));
    const token = code ? await deps.windows.checkToken(code).catch(() => undefined) : undefined;
    if (!token) {
      return void res.status(401).type('html').send(signInForm(appru, hint, 'That enrollment code is not valid. Check it and try again.'));
    }
    // Terms of use are accepted here, before the device gets its token (once per user, not per device).
    const user = token.user_ref ?? (hint || undefined);
    if (user) {
      const pending = await deps.gate.pendingTerms(user);
      const accepted = acceptedTerms(req.body as Record<string, unknown>);
      if (pending.length && acceptsAll(pending, accepted)) await deps.gate.acceptTerms(user, accepted);
      else if (pending.length) {
        const error = accepted.length ? 'Tick every box to accept all of the terms.' : undefined;
        return void res.type('html').send(pageHtml('Terms of use', termsFormHtml({ action: '/EnrollmentServer/Auth', hidden: { appru, login_hint: hint, code }, terms: pending, error })));
      }
    }
    let category: string | undefined;
    if (token.category_choice) {
      const categories = await deps.gate.categories();
      const chosen = body.category === undefined ? undefined : chosenCategory(body.category, categories);
      if (chosen === undefined) {
        const error = body.category === undefined ? undefined : 'Choose one of the categories.';
        const form = categoryFormHtml({ action: '/EnrollmentServer/Auth', method: 'post', hidden: { appru, login_hint: hint, code }, categories, selected: token.category_id, error });
        return void res.type('html').send(pageHtml('Enroll this device', form));
      }
      category = chosen ?? undefined;
    }
    res.type('html').send(returnToDevice(appru, federatedToken(deps.sealer, { code, user, category })));
  });
}

/** OMA-DM management; a body that cannot be read or parsed gets an empty 400, as SyncML has no fault of its own. */
function managementHandler(deps: WindowsRoutesDeps, sessions: SessionChannels): DeviceHandler {
  return async (req, res) => {
    let message: SyncMlMessage;
    try {
      message = parseSyncMl(await readRawBody(req, WINDOWS_BODY_LIMIT));
    } catch (err) {
      deps.logger.info({ err }, 'unreadable SyncML');
      return answer(res, 400, SYNCML, '');
    }
    const reading = readMessage(message);
    const identified = await identify(deps, sessions, req, message, reading);
    const base = baseUrl(req, deps.publicUrl);
    const reply = identified ? await manage(deps, identified, message, reading, base) : refuse(message, base);
    answer(res, 200, SYNCML, reply);
  };
}

/** What a device's message says, read before anything is looked up. */
interface MessageReading {
  statuses: ReplyStatus[];
  inventory: Record<string, Json>;
  results: Map<string, Record<string, string>>;
  leaving: boolean;
  /** Whether the device answers on any of our commands (a Status with a CmdRef). */
  reports: boolean;
  channelUri?: string;
}

/** A Status on one of our commands (not on the header or a message-level one). */
function isReport(cmd: SyncMlMessage['body'][number]): cmd is Extract<SyncMlMessage['body'][number], { kind: 'Status' }> {
  return cmd.kind === 'Status' && cmd.cmdRef !== '0' && cmd.cmd !== 'SyncHdr';
}

function readMessage(message: SyncMlMessage): MessageReading {
  const reading: MessageReading = { statuses: [], inventory: {}, results: new Map(), leaving: false, reports: false };
  for (const cmd of message.body) {
    const status = statusFor(cmd, '200');
    if (status) reading.statuses.push(status);
    if (isReport(cmd)) reading.reports = true;
    if (cmd.kind === 'Alert' && isUnenrollmentAlert(cmd)) reading.leaving = true;
    if (cmd.kind === 'Replace' || cmd.kind === 'Add') Object.assign(reading.inventory, inventoryFromItems(cmd.items));
    if (cmd.kind === 'Results') {
      reading.channelUri = cmd.items.find((i) => i.source?.endsWith('/Push/ChannelURI'))?.data ?? reading.channelUri;
      const found = inventoryFromItems(cmd.items);
      Object.assign(reading.inventory, found);
      reading.results.set(cmd.cmdRef, found);
    }
  }
  return reading;
}

/**
 * The device behind a management request: its certificate must be ours and bound to this DeviceID.
 * The same round trip records the message's last seen and inventory (only for the channel it names);
 * a later message of the session with nothing to record uses the channel its session found (see
 * sessions.ts).
 */
async function identify(
  deps: WindowsRoutesDeps,
  sessions: SessionChannels,
  req: IncomingMessage,
  message: SyncMlMessage,
  reading: MessageReading,
): Promise<Identified | undefined> {
  const der = clientCertificate(req, deps.trustedProxyCertHeader);
  if (!der) return undefined;
  const verdict = verifyClientCertificate(der, deps.ca.certPem);
  if (!verdict.ok) {
    deps.logger.info({ reason: verdict.reason }, 'management request with an unusable client certificate');
    return undefined;
  }
  const key = { certSha256: verdict.sha256, source: message.source, sessionId: message.sessionId };
  const nothingToRecord = !reading.leaving && Object.keys(reading.inventory).length === 0;
  const remembered = nothingToRecord ? sessions.recall(req.socket, key) : undefined;
  if (remembered) return { channel: remembered, certSha256: verdict.sha256 };
  // What is looked up now replaces what the connection remembered (a refusal or a device leaving: nothing).
  sessions.forget(req.socket);
  // A message that reports on no command and is not leaving (a session's first, usually) gets its
  // commands from the same statement: reports, when there are any, must be applied first.
  const fold = !reading.reports && !reading.leaving;
  // Read before the hand-out, as in nextCommands; only a folded hand-out needs it.
  const generation = fold && deps.idle ? await deps.idle.current() : undefined;
  const found = fold
    ? await deps.windows.identifyRecordAndTake(verdict.sha256, message.source, reading.inventory, COMMANDS_PER_MESSAGE)
    : { channel: await deps.windows.identifyAndRecord(verdict.sha256, message.source, reading.inventory), commands: undefined };
  const channel = found?.channel;
  if (!channel || channel.channel_key !== message.source || channel.status === 'unenrolled') {
    deps.logger.warn({ source: message.source }, 'a client certificate was presented for a device it does not belong to');
    return undefined;
  }
  if (!reading.leaving) sessions.remember(req.socket, key, channel);
  if (found.commands) rememberIfDrained(deps, channel, verdict.sha256, generation, found.commands.length);
  return { channel, certSha256: verdict.sha256, ...(found.commands ? { taken: found.commands } : {}) };
}

/** The device behind a message, and the commands handed out with its identification, if they were. */
interface Identified {
  channel: ManagedChannel;
  certSha256: string;
  taken?: Array<Pick<Command, 'id' | 'payload'>>;
}

/** One OMA-DM message: take in statuses, results and alerts; answer with statuses and the next commands. */
async function manage(
  deps: WindowsRoutesDeps,
  { channel, certSha256, taken }: Identified,
  message: SyncMlMessage,
  reading: MessageReading,
  base: string,
): Promise<string> {
  const { statuses, results, leaving, channelUri } = reading;
  if (channelUri?.startsWith('https://') && channelUri !== channel.push_token) {
    await deps.windows.setPushToken(channel, channelUri);
    channel.push_token = channelUri; // in place: the session's remembered channel has it too
  }
  for (const cmd of message.body) {
    if (!isReport(cmd)) continue;
    // Reports only ever change a command of this very enrollment; any other CmdRef changes nothing.
    const outcome = deps.platform.parseResult({ status: cmd.data, results: results.get(cmd.cmdRef) });
    await deps.commands.report(channel.enrollment_id, cmd.cmdRef, outcome);
  }
  if (leaving) {
    await deps.windows.unenroll(channel);
    return reply(message, base, statuses, []);
  }
  const next = taken ?? (await nextCommands(deps, channel, certSha256));
  // Ask at the start of each session only, so a device that cannot answer is not asked in a loop.
  const askForChannel = deps.wnsPackageFamilyName && message.msgId === '1' ? pushChannelRequest(deps.wnsPackageFamilyName, Boolean(channel.push_token)) : [];
  return reply(message, base, statuses, [...next.map((c) => c.payload), ...askForChannel]);
}

/**
 * The next commands for this message. A hand-out that took fewer than it could left the queue empty:
 * until the queue generation moves (an enqueue, a redelivery), later messages have nothing to take
 * and skip the round trip. The generation is read before the hand-out, so a command queued while it
 * runs either is taken by it or moves the generation.
 */
async function nextCommands(deps: WindowsRoutesDeps, channel: ManagedChannel, certSha256: string): Promise<Command[]> {
  const generation = deps.idle ? await deps.idle.current() : undefined;
  if (deps.idle?.isIdle(idleKey(channel), certSha256, generation)) return [];
  const next = await deps.commands.nextMany(channel.enrollment_id, COMMANDS_PER_MESSAGE);
  rememberIfDrained(deps, channel, certSha256, generation, next.length);
  return next;
}

const idleKey = (channel: ManagedChannel) => `windows:${channel.enrollment_id}`;

/** A hand-out started at `generation` that took fewer than it could left the queue empty. */
function rememberIfDrained(deps: WindowsRoutesDeps, channel: ManagedChannel, certSha256: string, generation: number | undefined, taken: number): void {
  if (taken < COMMANDS_PER_MESSAGE) deps.idle?.remember(idleKey(channel), certSha256, generation);
}

function reply(message: SyncMlMessage, base: string, statuses: ReplyStatus[], commands: string[], headerStatus?: string): string {
  return buildSyncMlReply({
    sessionId: message.sessionId,
    msgId: message.msgId,
    inReplyTo: message.msgId,
    target: message.source,
    source: `${base}/ManagementServer/MDM.svc`,
    statuses,
    commands,
    final: true,
    ...(headerStatus ? { headerStatus } : {}),
  });
}

/** No identity: the header is refused and nothing else is answered or sent. */
function refuse(message: SyncMlMessage, base: string): string {
  return reply(message, base, [], [], '401');
}

/** What a handler learned before it failed: the MessageID a fault should relate to. */
interface SoapContext {
  relatesTo?: string;
}

type SoapHandler = (req: IncomingMessage, body: Buffer, ctx: SoapContext) => Promise<{ xml: string }>;

/** Runs a SOAP handler on the request's body; every failure becomes a fault the device can show, with the detail logged. */
function soap(deps: WindowsRoutesDeps, handler: SoapHandler): DeviceHandler {
  return async (req, res) => {
    const ctx: SoapContext = {};
    try {
      const body = await readRawBody(req, WINDOWS_BODY_LIMIT).catch((err: unknown) => {
        throw new WindowsFault('MessageFormat', 'the request body could not be read', undefined, 500, { cause: err });
      });
      const { xml } = await handler(req, body, ctx);
      answer(res, 200, SOAP, xml);
    } catch (err) {
      const fault = isWindowsFault(err) ? err : new WindowsFault('InternalServiceFault', 'the enrollment server could not complete this request', undefined, 500, { cause: err });
      deps.logger[fault.subcode === 'InternalServiceFault' ? 'error' : 'info']({ err, subcode: fault.subcode }, 'Windows enrollment refused');
      answer(res, fault.httpStatus, SOAP, fault.toXml(ctx.relatesTo ? { relatesTo: ctx.relatesTo } : {}));
    }
  };
}

/** What the sign-in page vouches for: the enrollment code, who signed in, the category they chose. */
interface FederatedClaims {
  code: string;
  user?: string;
  category?: string;
}

/**
 * The federated token the sign-in page hands Windows (which sends it back as the BinarySecurityToken):
 * the claims sealed with the server's key, so a client cannot skip the page (and its terms) or claim
 * another user by making up a token.
 */
function federatedToken(sealer: Sealer, claims: FederatedClaims): string {
  return sealer.seal(JSON.stringify(claims));
}

/**
 * The enrollment token and who presents it: the UsernameToken password and username (OnPremise), or
 * the sealed federated token, base64-encoded by Windows (the BinarySecurityToken's EncodingType).
 * Anything that does not open is an empty secret, which no token matches.
 */
function credentialsOf(deps: Pick<WindowsRoutesDeps, 'sealer'>, security: SecurityCredentials): FederatedClaims {
  if (security.password) return { code: security.password, user: security.username || undefined };
  const value = security.binaryToken?.value;
  if (!value) return { code: '' };
  try {
    const claims = JSON.parse(deps.sealer.open(Buffer.from(value, 'base64').toString('utf8'))) as FederatedClaims;
    return typeof claims.code === 'string' ? claims : { code: '' };
  } catch {
    return { code: '' };
  }
}

/**
 * The enrollment rules for this request: the token's own state first (a refusal there is recorded
 * too), then restrictions, limits and terms. Refusals become the fault Windows shows a message for.
 */
async function decideEnrollment(
  deps: WindowsRoutesDeps,
  facts: EnrollmentFacts,
  claims: FederatedClaims,
  hardwareId: string,
  base: string,
): Promise<{ decision: Allowed; token: EnrollmentToken }> {
  let token: EnrollmentToken;
  try {
    token = await deps.windows.tokenForEnrollment(claims.code);
  } catch (err) {
    await deps.gate.recordTokenRefusal(facts, err);
    throw authenticationFault(err);
  }
  try {
    const decision = await deps.gate.decide(
      {
        ...facts,
        userRef: facts.userRef ?? token.user_ref ?? undefined,
        ownershipClaim: token.ownership,
        categoryId: (token.category_choice ? claims.category : undefined) ?? token.category_id,
        policyId: token.policy_id,
        token: { id: token.id, expired: false, revoked: false, usedUp: false },
      },
      { hardwareId },
    );
    return { decision, token };
  } catch (err) {
    if (!(err instanceof EnrollmentRefusal)) throw err;
    const hint = err.reason === 'terms_not_accepted' ? ` Accept them at ${base}/enroll/terms and try again.` : '';
    throw refusalFault(err.reason, `${REFUSAL_MESSAGES[err.reason]}${hint} (activity ${err.activityId})`, err);
  }
}

function authenticationFault(cause?: unknown): WindowsFault {
  return new WindowsFault('Authentication', 'the email address or enrollment code was not accepted', undefined, 500, { cause });
}

/** The URL the device used (an EnterpriseEnrollment.<domain> name), so every service shares its host. */
function baseUrl(req: IncomingMessage, publicUrl: URL): string {
  const host = req.headers.host;
  return host && /^[A-Za-z0-9.-]+(:\d+)?$/.test(host) ? `https://${host}` : publicUrl.origin;
}

/** Windows' web authentication broker returns to an `ms-app://` URL; nothing else gets a token. */
function isWindowsAppReturnUrl(appru: string): boolean {
  return /^ms-app:\/\/[A-Za-z0-9._~%!$&'()*+,;=:@/-]+$/.test(appru) && appru.length < 2048;
}


function signInForm(appru: string, hint: string, error?: string): string {
  return pageHtml(
    'Enroll this device',
    `${error ? `<p role="alert">${escapeXml(error)}</p>` : ''}` +
      `<form method="post" action="/EnrollmentServer/Auth">` +
      `<p>Signing in as <strong>${escapeXml(hint || 'your work account')}</strong>.</p>` +
      `<label for="code">Enrollment code from your IT department</label> ` +
      `<input id="code" name="code" autocomplete="one-time-code" required autofocus>` +
      `<input type="hidden" name="appru" value="${escapeXml(appru)}"><input type="hidden" name="login_hint" value="${escapeXml(hint)}">` +
      ` <button type="submit">Continue</button></form>`,
  );
}

/** Hands the token back to Windows: a form posting `wresult` to appru (auto-submitted where scripts run). */
function returnToDevice(appru: string, token: string): string {
  return pageHtml(
    'Finishing enrollment',
    `<form id="done" method="post" action="${escapeXml(appru)}"><input type="hidden" name="wresult" value="${Buffer.from(token).toString('base64')}">` +
      `<p>Select Continue to finish setting up this device.</p><button type="submit">Continue</button></form>` +
      `<script>document.getElementById('done').submit()</script>`,
  );
}
