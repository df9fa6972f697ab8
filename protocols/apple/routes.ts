/**
 * Apple device endpoints (CONTRACTS.md section 1, Apple):
 *   GET      /enroll/apple?token=T   the signed enrollment profile (enrollment.ts)
 *   GET,POST /scep                   SCEP, RFC 8894 (enrollment.ts)
 *   PUT      /mdm/checkin            check-in messages
 *   PUT      /mdm/connect            command reports; the answer is the next command or an empty body
 *   PUT      /mdm                    either, by Content-Type (NanoMDM's one ServerURL)
 *
 * Every MDM request is authenticated by its `Mdm-Signature` (detached CMS over the exact body) or by a
 * client certificate, and that certificate must be the one bound to the channel at Authenticate.
 * Failures answer 400 with a short text, never 401: a 401 makes a device drop its enrollment.
 * Like NanoMDM, both MDM URLs take either kind of message, told apart by Content-Type.
 */
import type { IncomingMessage } from 'node:http';
import { Router } from 'express';
import type { Logger } from 'pino';
import type { CommandService } from '../../src/core/commands';
import { EnrollmentRefusal, REFUSAL_MESSAGES, type RestrictionPlatform } from '../../src/core/enrollment-policy';
import { isMooringError } from '../../src/core/errors';
import type { IdleCache } from '../../src/core/idle-cache';
import type { PlatformCommands } from '../../src/core/platforms';
import type { Command, Json } from '../../src/core/types';
import { clientCertificate } from '../../src/http/client-cert';
import { answer, mountDevice, type DeviceFrontEnd, type DeviceHandler } from '../../src/http/lanes';
import { BodyError, readRawBody } from '../../src/http/raw-body';
import type { CertificateAuthority } from '../../src/pki/ca';
import { verifyDetachedSignature } from '../../src/pki/cms';
import { verifyClientCertificate } from '../../src/pki/issue';
import type { AppleChannel, PgAppleStore } from '../../src/storage/apple';
import type { PgEnrollmentGate } from '../../src/storage/enrollment-gate';
import {
  CheckinError,
  declarativeDataOf,
  decodeCheckin,
  encodeDeclarativeTokens,
  encodeGetBootstrapTokenResponse,
  encodeUserAuthenticateChallenge,
  resolveEnrollment,
  type CheckinMessage,
  type DeclarativeManagementMessage,
} from './checkin';
import { toJson } from './commands';
import { enrollmentRoutes, scepHandler } from './enrollment';
import { decodePlistDict, encodePlist, isPlistDict, isPlistError, type PlistDict } from './plist';
import { decodeReport, ReportError, reportsOnCommand, type CommandReport } from './report';

export const MDM_BODY_LIMIT = 1024 * 1024;
const CHECKIN_TYPE = 'application/x-apple-aspen-mdm-checkin';
const REPORT_TYPE = 'application/x-apple-aspen-mdm';

export interface AppleRoutesDeps {
  apple: PgAppleStore;
  commands: CommandService;
  platform: PlatformCommands;
  ca: CertificateAuthority;
  publicUrl: URL;
  /** The APNs topic of the active push certificate; undefined while none is uploaded. */
  pushTopic(): Promise<string | undefined>;
  rootPayload: boolean;
  userChannels: 'decline' | 'accept';
  identityDays: number;
  trustedProxyCertHeader?: string;
  logger: Logger;
  /** The enrollment rules (restrictions, terms, identifiers...): consulted at profile download and Authenticate. */
  gate: PgEnrollmentGate;
  /** Answers repeated idle polls from memory while nothing was queued (absent: every poll asks the database). */
  idle?: IdleCache;
}

/** The OS family from a product name (`iPhone15,2`, `iPad13,1`, `MacBookPro18,3`, `AppleTV11,1`). */
export function appleOsOf(product: string | undefined): RestrictionPlatform | undefined {
  if (!product) return undefined;
  if (/^(iPhone|iPad|iPod)/i.test(product)) return 'ios';
  if (/^AppleTV/i.test(product)) return 'tvos';
  if (/^(Mac|iMac|VirtualMac)/i.test(product)) return 'macos';
  return undefined;
}

/** A refusal the device gets as `status` with a short text; `reason` goes to the log. */
class MdmRefusal extends Error {
  constructor(
    readonly status: 400 | 403 | 404 | 410,
    readonly reason: string,
    /** What the device is told; a generic status text unless given. */
    readonly text?: string,
  ) {
    super(reason);
  }
}

/**
 * The MDM endpoints as plain Node handlers: they answer every outcome themselves (refusals in text,
 * never 401; an unexpected error as a logged 500), so they run the same behind express or in a lane.
 */
function mdmHandler(deps: AppleRoutesDeps, kind: 'checkin' | 'connect'): DeviceHandler {
  return async (req, res) => {
    try {
      const body = await readRawBody(req, MDM_BODY_LIMIT);
      const type = (req.headers['content-type'] ?? '').toLowerCase();
      const isCheckin = type.startsWith(CHECKIN_TYPE) || (kind === 'checkin' && !type.startsWith(REPORT_TYPE));
      const certSha256 = await authenticate(deps, req, body);
      const reply = isCheckin ? await checkin(deps, body, certSha256) : await connect(deps, body, certSha256);
      if (reply.length === 0) return void res.writeHead(200, { 'content-length': 0 }).end();
      answer(res, 200, reply.json ? 'application/json' : 'application/xml; charset=utf-8', reply.body);
    } catch (err) {
      const refusal = asRefusal(err);
      const path = req.url?.split('?')[0];
      if (refusal) deps.logger.info({ reason: refusal.reason, path, status: refusal.status }, 'Apple MDM request refused');
      else deps.logger.error({ err, path }, 'Apple MDM request failed');
      if (res.headersSent) return void res.destroy();
      const status = refusal?.status ?? 500;
      const text = refusal ? (refusal.text ?? (status === 410 ? 'Gone' : 'Bad Request')) : 'Internal Server Error';
      answer(res, status, 'text/plain; charset=utf-8', text);
    }
  };
}

/** Both MDM URLs take either kind of message; NanoMDM's single ServerURL `/mdm` too, for profiles and simulators written against it. */
const MDM_PATHS = [
  ['/mdm/connect', 'connect'],
  ['/mdm/checkin', 'checkin'],
  ['/mdm', 'connect'],
] as const;

/** The Apple front end: the MDM endpoints and SCEP as lanes ahead of express (devices PUT; POST is accepted as well), and the router. */
export function appleFrontEnd(deps: AppleRoutesDeps): DeviceFrontEnd {
  const front: DeviceFrontEnd = { router: Router(), lanes: [] };
  for (const [path, kind] of MDM_PATHS) mountDevice(front, ['PUT', 'POST'], path, mdmHandler(deps, kind));
  mountDevice(front, ['GET', 'POST'], '/scep', scepHandler(deps));
  enrollmentRoutes(front.router, deps);
  return front;
}

type Reply = { body: Buffer; json?: boolean; length: number };
const EMPTY: Reply = { body: Buffer.alloc(0), length: 0 };
const replyOf = (body: Buffer, json = false): Reply => ({ body, json, length: body.length });

/** The SHA-256 of the device's certificate: from Mdm-Signature, else the TLS or proxy client certificate. */
async function authenticate(deps: AppleRoutesDeps, req: IncomingMessage, body: Buffer): Promise<string> {
  const signature = req.headers['mdm-signature'];
  if (typeof signature === 'string' && signature.length > 0) {
    const verdict = await verifyDetachedSignature(signature, body, { caPem: deps.ca.certPem });
    if (!verdict.ok) throw new MdmRefusal(400, `Mdm-Signature: ${verdict.reason}`);
    return verdict.sha256;
  }
  const der = clientCertificate(req, deps.trustedProxyCertHeader);
  if (!der) throw new MdmRefusal(400, 'no Mdm-Signature and no client certificate');
  const verdict = verifyClientCertificate(der, deps.ca.certPem);
  if (!verdict.ok) throw new MdmRefusal(400, `client certificate: ${verdict.reason}`);
  return verdict.sha256;
}

function asRefusal(err: unknown): MdmRefusal | undefined {
  if (err instanceof MdmRefusal) return err;
  // An enrollment the rules refuse: the device is not enrolled, and the person sees why (never 401).
  if (err instanceof EnrollmentRefusal) return new MdmRefusal(403, `${err.reason}: ${err.detail} (activity ${err.activityId})`, `${REFUSAL_MESSAGES[err.reason]} Activity id: ${err.activityId}`);
  if (err instanceof BodyError) return new MdmRefusal(400, err.message);
  if (isPlistError(err) || err instanceof CheckinError || err instanceof ReportError) return new MdmRefusal(400, err.message);
  if (isMooringError(err) && err.status < 500) return new MdmRefusal(400, err.message);
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Check-in

/** Check-ins that change which certificate or state a channel has: idle answers remembered for it are dropped. */
const LIFECYCLE: ReadonlySet<string> = new Set(['Authenticate', 'TokenUpdate', 'CheckOut', 'UserAuthenticate']);

async function checkin(deps: AppleRoutesDeps, body: Buffer, certSha256: string): Promise<Reply> {
  const msg = decodeCheckin(body); // its errors (CheckinError, PlistError) are 400s, see asRefusal
  const channel = resolveEnrollment(msg);
  const reply = await checkinMessage(deps, msg, channel, certSha256);
  if (LIFECYCLE.has(msg.MessageType)) await deps.idle?.changed(channel.id);
  return reply;
}

async function checkinMessage(deps: AppleRoutesDeps, msg: CheckinMessage, channel: ReturnType<typeof resolveEnrollment>, certSha256: string): Promise<Reply> {
  switch (msg.MessageType) {
    case 'Authenticate': {
      if (channel.channel !== 'device') throw new MdmRefusal(400, 'Authenticate on a user channel');
      const userEnrollment = channel.type === 'UserEnrollmentDevice';
      const { token, chosenCategoryId } = await deps.apple.enrollmentOfCertificate(certSha256);
      const decision = await deps.gate.decide(
        {
          platform: 'apple',
          method: userEnrollment ? 'apple_user_enrollment' : 'apple_profile',
          os: appleOsOf(msg.ProductName ?? msg.Model),
          osVersion: msg.OSVersion,
          manufacturer: 'Apple',
          model: msg.ProductName ?? msg.Model,
          serial: msg.SerialNumber,
          imei: msg.IMEI,
          userRef: token?.user_ref ?? undefined,
          ownershipClaim: token?.ownership ?? 'unknown',
          categoryId: (token?.category_choice ? chosenCategoryId : null) ?? token?.category_id ?? null,
          policyId: token?.policy_id ?? null,
          final: true,
        },
        { udid: msg.UDID, serial: msg.SerialNumber },
      );
      await deps.apple.authenticate({
        channelKey: channel.id,
        certSha256,
        udid: msg.UDID,
        userEnrollment,
        serial: msg.SerialNumber,
        model: msg.ProductName ?? msg.Model,
        deviceName: msg.DeviceName,
        osVersion: msg.OSVersion,
        imei: msg.IMEI,
        topic: msg.Topic,
        applyRules: (conn, deviceId) => deps.gate.apply(deviceId, decision, conn),
      });
      return EMPTY;
    }
    case 'TokenUpdate': {
      const done = await deps.apple.tokenUpdate({
        channelKey: channel.id,
        parentKey: channel.parentId,
        channelType: channel.channel,
        certSha256,
        topic: msg.Topic,
        pushMagic: msg.PushMagic,
        token: msg.Token,
        unlockToken: msg.UnlockToken,
      });
      if (!done) throw new MdmRefusal(400, `TokenUpdate for ${channel.id} with a certificate not bound to it (or not authenticated)`);
      return EMPTY;
    }
    case 'UserAuthenticate': {
      await identified(deps, channel.parentId, channel.parentId, certSha256);
      if (deps.userChannels === 'decline') throw new MdmRefusal(410, 'user channels are declined (MOORING_APPLE_USER_CHANNELS=decline)');
      // No digest authentication: an empty challenge first, then the user is accepted.
      return msg.DigestResponse === undefined ? replyOf(encodeUserAuthenticateChallenge()) : EMPTY;
    }
    default:
      break;
  }
  const known = await identified(deps, channel.id, channel.parentId, certSha256);
  switch (msg.MessageType) {
    case 'CheckOut':
      await deps.apple.checkOut(known, channel.channel);
      return EMPTY;
    case 'SetBootstrapToken':
      await deps.apple.setBootstrapToken(known.device_id, msg.BootstrapToken);
      return EMPTY;
    case 'GetBootstrapToken':
      return replyOf(encodeGetBootstrapTokenResponse(await deps.apple.bootstrapToken(known.device_id)));
    case 'DeclarativeManagement':
      return declarative(deps, known, msg);
    case 'GetToken':
      throw new MdmRefusal(400, `GetToken (${msg.TokenServiceType}) is not offered by this server`);
    default:
      throw new MdmRefusal(400, `unexpected ${(msg as CheckinMessage).MessageType}`);
  }
}

async function identified(deps: AppleRoutesDeps, channelKey: string, parentKey: string, certSha256: string): Promise<AppleChannel> {
  return usable(await deps.apple.identify(channelKey, parentKey, certSha256), channelKey);
}

/** The channel a request may act for: bound to its certificate and not unenrolled. */
function usable<T extends { status: AppleChannel['status'] }>(known: T | undefined, channelKey: string): T {
  if (!known) throw new MdmRefusal(400, `no channel ${channelKey} bound to this certificate`);
  if (known.status === 'unenrolled') throw new MdmRefusal(400, `channel ${channelKey} is unenrolled`);
  return known;
}

/** No declarations are published yet: a stable token for the empty set, empty items, status kept. */
const EMPTY_DECLARATIONS_TOKEN = 'mooring-empty-v1';
const EMPTY_DECLARATIONS_SINCE = new Date('2026-01-01T00:00:00Z');

async function declarative(deps: AppleRoutesDeps, channel: AppleChannel, msg: DeclarativeManagementMessage): Promise<Reply> {
  switch (msg.Endpoint) {
    case 'tokens':
      return replyOf(encodeDeclarativeTokens(EMPTY_DECLARATIONS_TOKEN, EMPTY_DECLARATIONS_SINCE), true);
    case 'declaration-items':
      return replyOf(
        Buffer.from(JSON.stringify({ Declarations: { Activations: [], Configurations: [], Assets: [], Management: [] }, DeclarationsToken: EMPTY_DECLARATIONS_TOKEN })),
        true,
      );
    case 'status': {
      const status = declarativeDataOf(msg);
      if (status === undefined) throw new MdmRefusal(400, 'a status report without Data');
      await deps.apple.recordDeclarativeStatus(channel.device_id, status as Json);
      return EMPTY;
    }
    default:
      throw new MdmRefusal(404, `no declaration at ${msg.Endpoint}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Command reports and hand-out

async function connect(deps: AppleRoutesDeps, body: Buffer, certSha256: string): Promise<Reply> {
  const report = decodeReport(body);
  if (report.status === 'Idle') {
    const key = report.enrollment.id;
    // Nothing queued the last time, same certificate, and no queue has gained work since: nothing now.
    const generation = deps.idle ? await deps.idle.current() : undefined;
    if (deps.idle?.isIdle(key, certSha256, generation)) return EMPTY;
    // The hot path: identity, bookkeeping and hand-out in one statement.
    const idle = await deps.apple.identifyAndTakeNext(key, report.enrollment.parentId, certSha256);
    const channel = usable(idle?.channel, key);
    const command = idle?.command;
    if (!command) {
      if (idle) deps.idle?.remember(key, certSha256, generation, idle.seenAgeMs);
      return EMPTY;
    }
    const payload = await payloadFor(deps, channel, command);
    if (payload) return replyOf(Buffer.from(payload, 'utf8'));
    return handOut(deps, channel, false);
  }
  const channel = await identified(deps, report.enrollment.id, report.enrollment.parentId, certSha256);
  if (reportsOnCommand(report)) {
    const outcome = deps.platform.parseResult(report);
    const { changed } = await deps.commands.report(channel.enrollment_id, report.commandUuid, outcome);
    if (changed && report.status === 'Acknowledged') await recordInventory(deps, channel, report);
  }
  // A command the device put off (NotNow) comes back at its next Idle, the start of a session, and
  // not again within this one: the device re-polls on its own only if NotNow was its last word.
  return handOut(deps, channel, true);
}

async function handOut(deps: AppleRoutesDeps, channel: AppleChannel, skipNotNow: boolean): Promise<Reply> {
  for (;;) {
    const next = await deps.commands.next(channel.enrollment_id, { skipNotNow });
    if (!next) return EMPTY;
    const payload = await payloadFor(deps, channel, next);
    if (payload) return replyOf(Buffer.from(payload, 'utf8'));
  }
}

/**
 * The plist to hand out. ClearPasscode gets the escrowed UnlockToken only now, so it never sits in a
 * command row; without one the command fails here and the next one is handed out instead.
 */
async function payloadFor(deps: AppleRoutesDeps, channel: AppleChannel, command: Pick<Command, 'id' | 'type' | 'payload'>): Promise<string | undefined> {
  if (command.type !== 'clear_passcode') return command.payload;
  const unlockToken = await deps.apple.unlockToken(channel.device_id);
  if (!unlockToken) {
    await deps.commands.report(channel.enrollment_id, command.id, {
      status: 'error',
      error: { status: 'NoUnlockToken', detail: 'the device never escrowed an UnlockToken (TokenUpdate), so its passcode cannot be cleared' },
    });
    return undefined;
  }
  const plist = decodePlistDict(command.payload);
  (plist.Command as PlistDict).UnlockToken = unlockToken;
  return encodePlist(plist);
}

/** DeviceInformation, SecurityInfo and ProfileList answers update the device's inventory. */
async function recordInventory(deps: AppleRoutesDeps, channel: AppleChannel, report: CommandReport): Promise<void> {
  const f = report.fields;
  const inventory: Record<string, Json> = {};
  const facts: Parameters<PgAppleStore['recordInventory']>[2] = {};
  const answers = f.QueryResponses;
  if (isPlistDict(answers)) {
    inventory.device_information = toJson(answers);
    const text = (k: string) => (typeof answers[k] === 'string' && answers[k] ? (answers[k] as string) : undefined);
    if (text('DeviceName')) facts.name = text('DeviceName');
    if (text('SerialNumber')) facts.serial_number = text('SerialNumber');
    if (text('ProductName')) facts.model = text('ProductName');
    if (text('OSVersion')) facts.os_version = text('OSVersion');
    if (text('IMEI')) facts.imei = text('IMEI');
    if (typeof answers.IsSupervised === 'boolean') facts.supervised = answers.IsSupervised;
  }
  if (f.SecurityInfo !== undefined) inventory.security_info = toJson(f.SecurityInfo);
  if (Array.isArray(f.ProfileList)) inventory.profiles = toJson(f.ProfileList);
  if (Object.keys(inventory).length === 0) return;
  await deps.apple.recordInventory(channel.device_id, inventory, facts);
}
