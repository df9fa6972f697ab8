/**
 * A simulated iPhone or Mac speaking Apple MDM as a real one does (research notes apple-mdm.md §1.1–1.4,
 * §2.1, §3; message shapes from fixtures/apple): it downloads the enrollment profile and checks its CMS
 * signature and chain itself (pkijs plus Node's X509Certificate, not the server's src/pki/cms.ts), gets
 * its identity over SCEP with its own RSA key (real PKCS#7 messages, helpers/scep-client.ts), signs every
 * check-in and report with an `Mdm-Signature` header, sends Authenticate and TokenUpdate, then answers
 * commands: DeviceInformation (realistic QueryResponses for the asked Queries), SecurityInfo,
 * ProfileList, InstallProfile/RemoveProfile, DeviceLock, EraseDevice (then it stops answering),
 * ClearPasscode, InstalledApplicationList, RestartDevice/ShutDownDevice on macOS; `NotNow` on demand and
 * `Error` (12021, MCMDMErrorDomain) for anything else.
 *
 * Transport: node:https with the test CA as the only trust anchor, keep-alive (a shared `agent` for
 * benchmarks), connecting to 127.0.0.1 for `localhost` URLs with the URL's host as Host and SNI.
 * `Mdm-Signature` is a detached SignedData written by hand in DER and signed with Node's crypto.sign
 * (RSA PKCS#1 v1.5 or ECDSA; SHA-256 or SHA-1): about one RSA signature of CPU per message.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { decodePlist, decodePlistDict, encodePlist, isPlistDict, type PlistDict, type PlistValue } from '../../protocols/apple/plist';
import { ScepClient } from './scep-client';

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

const engine = new pkijs.CryptoEngine({ name: 'apple-device', crypto: crypto.webcrypto as never });

export const CONTENT_TYPES = {
  profile: 'application/x-apple-aspen-config',
  checkin: 'application/x-apple-aspen-mdm-checkin',
  report: 'application/x-apple-aspen-mdm',
  pkiMessage: 'application/x-pki-message',
} as const;

/** The error a real device answers for a command it does not know (mdmb does the same). */
export const UNKNOWN_COMMAND_ERROR = 12021;

export interface Identity {
  certPem: string;
  keyPem: string;
}

export interface DeviceIdentity extends Identity {
  certDer: Buffer;
  /** Lowercase hex SHA-256 of the certificate DER: what the server binds to the enrollment. */
  sha256: string;
}

export interface AppleDeviceOptions {
  os: 'ios' | 'macos';
  udid?: string;
  serial?: string;
  /** PEM of the CA the device trusts: TLS trust anchor and the root the profile signer must chain to. */
  caPem: string;
  /** Digest of the `Mdm-Signature` (older devices and smallstep/pkcs7 use SHA-1). @defaultValue sha256 */
  digest?: 'sha256' | 'sha1';
  /** Answer `NotNow` to a command when this says so. */
  notNow?: (requestType: string, command: PlistDict) => boolean;
  /** A keep-alive agent to share between devices (benchmarks); by default each device has its own. */
  agent?: https.Agent;
  /** Address to connect to, whatever the URL's host. @defaultValue 127.0.0.1 for localhost, else the host */
  connectTo?: string;
  /** An extractable RSA-2048 key pair to use for SCEP instead of generating one (saves ~50 ms a device). */
  scepKeys?: CryptoKeyPair;
  deviceName?: string;
  /** ProductName / model identifier. @defaultValue iPhone15,2 (iOS), Mac14,2 (macOS) */
  productName?: string;
  osVersion?: string;
  buildVersion?: string;
  supervised?: boolean;
}

/** What the device took from the enrollment profile. */
export interface EnrollmentProfile {
  identifier: string;
  uuid: string;
  displayName?: string;
  serverUrl: string;
  /** CheckInURL, or ServerURL when the profile has none. */
  checkInUrl: string;
  topic: string;
  signMessage: boolean;
  accessRights?: number;
  serverCapabilities: string[];
  identityCertificateUuid: string;
  scepUrl: string;
  challenge?: string;
  /** The SCEP Subject: an array of RDNs, each an array of [type, value]. */
  subject: Array<Array<[string, string]>>;
  keysize?: number;
  keyType?: string;
  keyUsage?: number;
  caFingerprint?: Buffer;
  /** DER of each com.apple.security.root / pkcs1 payload. */
  rootCertsDer: Buffer[];
  payloadTypes: string[];
  /** DER of the certificate that signed the profile. */
  signerDer: Buffer;
  /** The whole decoded profile. */
  plist: PlistDict;
}

export type ProfileCheck = { ok: true; content: Buffer; signerDer: Buffer } | { ok: false; reason: string };

export interface HttpAnswer {
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

export interface ServerCommand {
  CommandUUID: string;
  Command: PlistDict;
}

export interface HandledCommand {
  uuid: string;
  requestType: string;
  status: string;
}

export interface SendOptions {
  /** The identity to sign `Mdm-Signature` with; null: no header. @defaultValue the device's identity */
  signWith?: Identity | null;
  /** Sign the body, then send a different one (a trailing newline added, or this function's output). */
  tamper?: boolean | ((body: Buffer) => Buffer);
  /** Extra headers; they override the device's own (including Mdm-Signature). */
  headers?: Record<string, string>;
  method?: string;
}

// ----------------------------------------------------------------------------------------------
// Device facts

const IOS_DEFAULTS = { productName: 'iPhone15,2', modelName: 'iPhone', partNumber: 'MQ0E3LL', osVersion: '17.5', buildVersion: '21F79', capacity: 119.18 };
const MACOS_DEFAULTS = { productName: 'Mac14,2', modelName: 'MacBook Air', partNumber: 'Z15S', osVersion: '14.5', buildVersion: '23F79', capacity: 494.38 };
const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Ken', 'Radia', 'Linus', 'Margaret', 'Dennis'];

const hex = (bytes: number) => crypto.randomBytes(bytes).toString('hex');
const pick = <T>(xs: readonly T[]): T => xs[crypto.randomInt(xs.length)]!;
/** A non-integral number with two decimals, so the plist carries `<real>` as devices send it. */
const real = (min: number, max: number): number => {
  const v = Math.round((min + Math.random() * (max - min)) * 100) / 100;
  return Number.isInteger(v) ? v + 0.01 : v;
};

/** Serial numbers since 2021: 10 random characters without vowels. */
function randomSerial(): string {
  const alphabet = 'BCDFGHJKLMNPQRSTVWXYZ0123456789';
  return Array.from({ length: 10 }, () => alphabet[crypto.randomInt(alphabet.length)]).join('');
}

/** A 15-digit IMEI with a valid Luhn check digit, in the spaced form iOS reports ("35 209510 123456 7"). */
function randomImei(): string {
  const body = `35${String(crypto.randomInt(10 ** 6)).padStart(6, '0')}${String(crypto.randomInt(10 ** 6)).padStart(6, '0')}`;
  let sum = 0;
  for (let i = 0; i < 14; i++) {
    let d = Number(body[i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  const digits = body + String((10 - (sum % 10)) % 10);
  return `${digits.slice(0, 2)} ${digits.slice(2, 8)} ${digits.slice(8, 14)} ${digits.slice(14)}`;
}

function randomMac(prefix: string): string {
  return `${prefix}:${[...crypto.randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

function nextMac(mac: string): string {
  const n = (parseInt(mac.replace(/:/g, ''), 16) + 1) % 2 ** 48;
  return n.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

// ----------------------------------------------------------------------------------------------
// The device

export class SimulatedAppleDevice {
  readonly os: 'ios' | 'macos';
  readonly udid: string;
  readonly serial: string;
  readonly pushMagic = crypto.randomUUID().toUpperCase();
  readonly token = crypto.randomBytes(32);
  /** iOS device channel only: what ClearPasscode must bring back. */
  readonly unlockToken?: Buffer;
  readonly deviceName: string;
  readonly productName: string;
  readonly osVersion: string;
  readonly buildVersion: string;
  readonly imei?: string;
  readonly wifiMac: string;
  readonly bluetoothMac: string;
  supervised: boolean;

  /** Set by `scep()` (or by a caller, e.g. an EC identity issued elsewhere). */
  identity?: DeviceIdentity;
  /** Set by a verified `fetchProfile()`. */
  profile?: EnrollmentProfile;
  /** Profiles installed through InstallProfile (identifier → plist). */
  readonly installedProfiles = new Map<string, PlistDict>();
  /** Every RequestType the device carried out, in order. */
  readonly performed: string[] = [];
  locked = false;
  erased = false;
  checkedOut = false;
  bootstrapToken?: Buffer;

  readonly #opts: AppleDeviceOptions;
  readonly #agent: https.Agent;
  readonly #ownAgent: boolean;
  readonly #facts: Record<string, PlistValue>;

  private constructor(opts: AppleDeviceOptions) {
    this.#opts = opts;
    this.os = opts.os;
    const ios = opts.os === 'ios';
    const d = ios ? IOS_DEFAULTS : MACOS_DEFAULTS;
    this.udid = opts.udid ?? (ios ? `00008120-${hex(8).toUpperCase()}` : crypto.randomUUID().toUpperCase());
    this.serial = opts.serial ?? randomSerial();
    this.productName = opts.productName ?? d.productName;
    this.osVersion = opts.osVersion ?? d.osVersion;
    this.buildVersion = opts.buildVersion ?? d.buildVersion;
    const owner = pick(FIRST_NAMES);
    this.deviceName = opts.deviceName ?? `${owner}’s ${d.modelName}`;
    this.supervised = opts.supervised ?? false;
    if (ios) {
      this.unlockToken = crypto.randomBytes(160);
      this.imei = randomImei();
    }
    this.wifiMac = randomMac(ios ? 'a4:83:e7' : '3c:a6:f6');
    this.bluetoothMac = nextMac(this.wifiMac);
    this.#ownAgent = !opts.agent;
    this.#agent = opts.agent ?? new https.Agent({ keepAlive: true, maxSockets: 4 });
    const host = this.deviceName.replace(/’s /, 's-').replace(/[^A-Za-z0-9-]+/g, '-');
    const capacity = d.capacity;
    this.#facts = {
      UDID: this.udid,
      DeviceName: this.deviceName,
      OSVersion: this.osVersion,
      BuildVersion: this.buildVersion,
      ProductName: this.productName,
      ModelName: d.modelName,
      Model: ios ? d.partNumber : this.productName,
      ModelNumber: ios ? `${d.partNumber}/A` : `${d.partNumber}0006NLL/A`,
      SerialNumber: this.serial,
      DeviceCapacity: capacity,
      AvailableDeviceCapacity: real(capacity * 0.2, capacity * 0.7),
      BatteryLevel: real(0.2, 0.98),
      WiFiMAC: this.wifiMac,
      BluetoothMAC: this.bluetoothMac,
      IsSupervised: this.supervised,
      IsDeviceLocatorServiceEnabled: true,
      IsActivationLockEnabled: ios,
      IsDoNotDisturbInEffect: false,
      EASDeviceIdentifier: hex(14).toUpperCase(),
      ...(ios
        ? {
            IMEI: this.imei!,
            MEID: this.imei!.replace(/ /g, '').slice(0, 14),
            ICCID: `8901 4104 ${String(crypto.randomInt(10 ** 8)).padStart(8, '0').replace(/(....)(....)/, '$1 $2')} ${String(crypto.randomInt(10 ** 4)).padStart(4, '0')}`,
            CellularTechnology: 3,
            ModemFirmwareVersion: '2.60.02',
            CarrierSettingsVersion: '57.0',
            CurrentCarrierNetwork: 'AT&T',
            SIMCarrierNetwork: 'AT&T',
            IsRoaming: false,
            DataRoamingEnabled: false,
            VoiceRoamingEnabled: true,
            IsCloudBackupEnabled: true,
            IsMDMLostModeEnabled: false,
            PersonalHotspotEnabled: false,
            IsMultiUser: false,
            ITunesStoreAccountIsActive: true,
          }
        : {
            LocalHostName: host,
            HostName: `${host}.local`,
            SystemIntegrityProtectionEnabled: true,
            IsAppleSilicon: true,
            ProvisioningUDID: `00008112-${hex(8).toUpperCase()}`,
            SupportsLOMDevice: false,
            IsMultiUser: true,
          }),
    };
  }

  static create(opts: AppleDeviceOptions): SimulatedAppleDevice {
    return new SimulatedAppleDevice(opts);
  }

  /** Closes the device's own keep-alive connections (a shared agent is the caller's). */
  close(): void {
    if (this.#ownAgent) this.#agent.destroy();
  }

  // ------------------------------------------------------------------------------------------
  // Enrollment

  /**
   * GETs the enrollment URL; on a 200 answer checks the CMS signature and that its signer chains to
   * the trusted CA, then reads the profile (kept in `profile`). `verified` is false for any other
   * answer or when the signature, chain or profile is not acceptable (`reason` says why).
   */
  async fetchProfile(enrollUrl: string): Promise<{ status: number; contentType?: string; body: Buffer; verified: boolean; reason?: string }> {
    const res = await this.#request('GET', enrollUrl, {
      headers: { accept: '*/*', 'user-agent': this.os === 'ios' ? 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)' : 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)' },
    });
    const contentType = headerText(res.headers['content-type']);
    const out = { status: res.status, ...(contentType === undefined ? {} : { contentType }), body: res.body };
    if (res.status !== 200) return { ...out, verified: false, reason: `HTTP ${res.status}` };
    const checked = await verifyProfileSignature(res.body, this.#opts.caPem);
    if (!checked.ok) return { ...out, verified: false, reason: checked.reason };
    try {
      this.profile = readEnrollmentProfile(checked.content, checked.signerDer);
    } catch (err) {
      return { ...out, verified: false, reason: (err as Error).message };
    }
    return { ...out, verified: true };
  }

  /** Installs the profile: fetch and verify it, SCEP, Authenticate, TokenUpdate; throws on any refusal. */
  async enroll(enrollUrl: string): Promise<void> {
    const fetched = await this.fetchProfile(enrollUrl);
    if (!fetched.verified) throw new Error(`enrollment profile refused (${fetched.reason}): ${fetched.body.toString('utf8').slice(0, 200)}`);
    if (!fetched.contentType?.startsWith(CONTENT_TYPES.profile)) throw new Error(`enrollment profile served as ${fetched.contentType ?? '(no type)'}`);
    await this.scep();
    this.checkedOut = false;
    for (const message of [this.authenticateMessage(), this.tokenUpdateMessage()]) {
      const res = await this.checkin(message);
      if (res.status !== 200) throw new Error(`${String(message.MessageType)} answered ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`);
    }
  }

  /** Gets the device identity from the profile's SCEP payload (GetCACaps, GetCACert, PKIOperation). */
  async scep(): Promise<DeviceIdentity> {
    const p = this.#requireProfile();
    const op = (operation: string) => {
      const u = new URL(p.scepUrl);
      u.searchParams.set('operation', operation);
      return u;
    };
    const capsRes = await this.#request('GET', op('GetCACaps').toString());
    const caps = capsRes.status === 200 ? capsRes.body.toString('utf8').split(/\r?\n/).map((s) => s.trim()) : [];

    const caRes = await this.#request('GET', op('GetCACert').toString());
    if (caRes.status !== 200) throw new Error(`GetCACert answered ${caRes.status}`);
    const caType = headerText(caRes.headers['content-type']) ?? '';
    let caDer: Buffer;
    if (caType === 'application/x-x509-ca-cert') caDer = caRes.body;
    else if (caType === 'application/x-x509-ca-ra-cert') caDer = raCertificate(caRes.body);
    else throw new Error(`GetCACert answered ${caType || 'no content type'}`);
    const caCert = new crypto.X509Certificate(caDer);
    if (p.caFingerprint) {
      const algo = { 16: 'md5', 20: 'sha1', 32: 'sha256' }[p.caFingerprint.length];
      if (!algo || !crypto.createHash(algo).update(caCert.raw).digest().equals(p.caFingerprint)) throw new Error('the SCEP CA does not match CAFingerprint');
    }

    const subject = p.subject.map((rdn) => Object.fromEntries(rdn.map(([type, value]) => [type, [value]])));
    const client = await ScepClient.create(subject.length > 0 ? subject : this.udid, this.#opts.scepKeys ? { keys: this.#opts.scepKeys } : {});
    const sent = await client.request({
      caCertPem: caCert.toString(),
      ...(p.challenge === undefined ? {} : { challenge: p.challenge }),
      encryption: caps.includes('AES') ? 'aes256' : '3des',
    });
    const pki = op('PKIOperation');
    let res: HttpAnswer;
    if (caps.includes('POSTPKIOperation') || caps.includes('SCEPStandard')) {
      res = await this.#request('POST', pki.toString(), { headers: { 'content-type': CONTENT_TYPES.pkiMessage }, body: sent.der });
    } else {
      pki.searchParams.set('message', sent.der.toString('base64'));
      res = await this.#request('GET', pki.toString());
    }
    if (res.status !== 200) throw new Error(`PKIOperation answered ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
    const type = headerText(res.headers['content-type']);
    if (type !== CONTENT_TYPES.pkiMessage) throw new Error(`PKIOperation answered ${type ?? 'no content type'}`);
    const rep = await client.checkCertRep(res.body, { caCert: Buffer.from(caCert.raw), transactionId: sent.transactionId, senderNonce: sent.senderNonce });
    if (rep.status !== 'SUCCESS') throw new Error(`SCEP refused the request (failInfo ${rep.failInfo ?? 'none'})`);
    const certDer = rep.certDer!;
    this.identity = {
      certDer,
      certPem: new crypto.X509Certificate(certDer).toString(),
      keyPem: client.privateKeyPem,
      sha256: crypto.createHash('sha256').update(certDer).digest('hex'),
    };
    return this.identity;
  }

  // ------------------------------------------------------------------------------------------
  // Check-in messages (shapes from fixtures/apple)

  authenticateMessage(): PlistDict {
    return {
      MessageType: 'Authenticate',
      UDID: this.udid,
      Topic: this.#requireProfile().topic,
      SerialNumber: this.serial,
      BuildVersion: this.buildVersion,
      OSVersion: this.osVersion,
      ProductName: this.productName,
      DeviceName: this.deviceName,
      Model: this.productName,
      ModelName: this.#facts.ModelName as string,
      ...(this.imei ? { IMEI: this.imei, MEID: this.#facts.MEID as string } : {}),
    };
  }

  tokenUpdateMessage(): PlistDict {
    return {
      MessageType: 'TokenUpdate',
      UDID: this.udid,
      Topic: this.#requireProfile().topic,
      PushMagic: this.pushMagic,
      Token: this.token,
      ...(this.unlockToken ? { UnlockToken: this.unlockToken } : {}),
      AwaitingConfiguration: false,
    };
  }

  checkOutMessage(): PlistDict {
    return { MessageType: 'CheckOut', UDID: this.udid, Topic: this.#requireProfile().topic };
  }

  /** The profile was removed: CheckOut (when CheckOutWhenRemoved), after which the device is silent. */
  async checkOut(): Promise<{ status: number; body: Buffer }> {
    const res = await this.checkin(this.checkOutMessage());
    this.checkedOut = true;
    return res;
  }

  /** macOS: escrows a bootstrap token (an empty one deletes it). */
  async setBootstrapToken(token: Buffer = crypto.randomBytes(64)): Promise<{ status: number; body: Buffer }> {
    this.bootstrapToken = token;
    return this.checkin({ MessageType: 'SetBootstrapToken', UDID: this.udid, BootstrapToken: token, AwaitingConfiguration: false });
  }

  /** macOS: asks for the escrowed bootstrap token; `token` is undefined when the server has none. */
  async getBootstrapToken(): Promise<{ status: number; body: Buffer; token?: Buffer }> {
    const res = await this.checkin({ MessageType: 'GetBootstrapToken', UDID: this.udid, AwaitingConfiguration: false });
    if (res.status !== 200 || res.body.length === 0) return res;
    const dict = decodePlistDict(res.body);
    return Buffer.isBuffer(dict.BootstrapToken) ? { ...res, token: dict.BootstrapToken } : res;
  }

  /** A DeclarativeManagement check-in; `data` is sent as JSON `<data>`; a JSON answer is parsed. */
  async declarativeManagement(endpoint: string, data?: unknown): Promise<{ status: number; body: Buffer; json?: unknown }> {
    const res = await this.checkin({
      MessageType: 'DeclarativeManagement',
      UDID: this.udid,
      Endpoint: endpoint,
      ...(data === undefined ? {} : { Data: Buffer.from(JSON.stringify(data)) }),
    });
    if (res.status !== 200 || res.body.length === 0) return res;
    try {
      return { ...res, json: JSON.parse(res.body.toString('utf8')) as unknown };
    } catch {
      return res;
    }
  }

  /** A signed check-in to CheckInURL. */
  async checkin(message: PlistDict): Promise<{ status: number; body: Buffer }> {
    const res = await this.send(this.#requireProfile().checkInUrl, CONTENT_TYPES.checkin, Buffer.from(encodePlist(message), 'utf8'));
    return { status: res.status, body: res.body };
  }

  // ------------------------------------------------------------------------------------------
  // Commands

  /** A signed report to ServerURL; a 200 answer with a body is read as the next command. */
  async report(message: PlistDict): Promise<{ status: number; body: Buffer; command?: ServerCommand }> {
    const res = await this.send(this.#requireProfile().serverUrl, CONTENT_TYPES.report, Buffer.from(encodePlist(message), 'utf8'));
    const out = { status: res.status, body: res.body };
    if (res.status !== 200 || res.body.length === 0) return out;
    const command = readCommand(res.body);
    return command ? { ...out, command } : out;
  }

  idle(): Promise<{ status: number; body: Buffer; command?: ServerCommand }> {
    return this.report({ UDID: this.udid, Status: 'Idle' });
  }

  /**
   * What a push starts: Idle, then answer each command until the server sends an empty body. Returns
   * what was handled. After acknowledging EraseDevice the device is gone: it reads nothing more, and
   * an erased or checked-out device does not connect at all. Throws on a non-200 answer, a body that is
   * not a command, or a command answered earlier in the session coming back (NotNow'd ones may).
   */
  async runSession(opts: { maxCommands?: number } = {}): Promise<HandledCommand[]> {
    const handled: HandledCommand[] = [];
    if (this.erased || this.checkedOut) return handled;
    const done = new Set<string>();
    let res = await this.idle();
    for (;;) {
      if (res.status !== 200) throw new Error(`the server answered ${res.status} to a report: ${res.body.toString('utf8').slice(0, 300)}`);
      if (res.body.length === 0) return handled;
      if (!res.command) throw new Error(`the server answered a report with something that is not a command: ${res.body.toString('utf8').slice(0, 300)}`);
      const { CommandUUID: uuid } = res.command;
      if (done.has(uuid)) throw new Error(`the server handed out command ${uuid} again after it was answered in this session`);
      if (handled.length >= (opts.maxCommands ?? 1000)) throw new Error(`more than ${opts.maxCommands ?? 1000} commands in one session`);
      const answer = this.respond(res.command);
      const status = String(answer.Status);
      handled.push({ uuid, requestType: String(res.command.Command.RequestType ?? ''), status });
      if (status !== 'NotNow') done.add(uuid);
      res = await this.report(answer);
      if (this.erased) {
        if (res.status !== 200) throw new Error(`the server answered ${res.status} to the EraseDevice acknowledgement`);
        return handled;
      }
    }
  }

  /** The report the device sends for a command (also carries out its effect on the device). */
  respond(command: ServerCommand): PlistDict {
    const uuid = command.CommandUUID;
    const c = command.Command;
    const type = typeof c?.RequestType === 'string' ? c.RequestType : '';
    const base = { UDID: this.udid, CommandUUID: uuid };
    const ack = (extra: PlistDict = {}): PlistDict => {
      this.performed.push(type);
      return { ...base, Status: 'Acknowledged', ...extra };
    };
    const error = (code: number, text: string, status = 'Error'): PlistDict => ({
      ...base,
      Status: status,
      ErrorChain: [{ ErrorCode: code, ErrorDomain: 'MCMDMErrorDomain', LocalizedDescription: text, USEnglishDescription: text }],
    });
    if (!type) return error(12001, 'The command is malformed.', 'CommandFormatError');
    if (this.#opts.notNow?.(type, c)) return { ...base, Status: 'NotNow' };

    switch (type) {
      case 'DeviceInformation': {
        const queries = Array.isArray(c.Queries) ? c.Queries.filter((q): q is string => typeof q === 'string') : Object.keys(this.#facts);
        return ack({ QueryResponses: this.queryResponses(queries) });
      }
      case 'SecurityInfo':
        return ack({ SecurityInfo: this.#securityInfo() });
      case 'ProfileList':
        return ack({ ProfileList: this.#profileList(c.ManagedOnly === true) });
      case 'InstallProfile': {
        const payload = c.Payload;
        const plist = Buffer.isBuffer(payload) ? profileContent(payload) : undefined;
        if (!plist || typeof plist.PayloadIdentifier !== 'string') return error(4001, 'The profile is not valid.', 'CommandFormatError');
        this.installedProfiles.set(plist.PayloadIdentifier, plist);
        return ack();
      }
      case 'RemoveProfile': {
        const id = typeof c.Identifier === 'string' ? c.Identifier : '';
        if (!this.installedProfiles.delete(id)) return error(12013, `The profile “${id}” is not managed by MDM.`);
        return ack();
      }
      case 'DeviceLock': {
        if (this.os === 'macos' && !(typeof c.PIN === 'string' && /^\d{6}$/.test(c.PIN))) {
          return error(12064, 'A 6-digit PIN is required to lock this Mac.', 'CommandFormatError');
        }
        this.locked = true;
        return ack(this.os === 'ios' && (c.Message !== undefined || c.PhoneNumber !== undefined) ? { MessageResult: 'Success' } : {});
      }
      case 'EraseDevice': {
        const reply = ack();
        this.erased = true;
        return reply;
      }
      case 'ClearPasscode':
        if (this.os !== 'ios') break;
        if (!Buffer.isBuffer(c.UnlockToken) || !this.unlockToken?.equals(c.UnlockToken)) return error(12056, 'The unlock token is not valid.');
        return ack();
      case 'InstalledApplicationList':
        return ack({ InstalledApplicationList: this.#applications() });
      case 'RestartDevice':
      case 'ShutDownDevice':
        if (this.os === 'macos' || this.supervised) return ack();
        break;
      case 'DeclarativeManagement':
        return ack();
      default:
        break;
    }
    return error(UNKNOWN_COMMAND_ERROR, `Unknown command “${type}”.`);
  }

  /** DeviceInformation answers: exactly the asked queries this device knows (others are left out, as devices do). */
  queryResponses(queries: string[]): PlistDict {
    const out: PlistDict = {};
    for (const q of queries) {
      if (q === 'IsSupervised') out[q] = this.supervised;
      else if (Object.hasOwn(this.#facts, q)) out[q] = this.#facts[q]!;
    }
    return out;
  }

  #securityInfo(): PlistDict {
    if (this.os === 'ios') {
      return {
        HardwareEncryptionCaps: 3,
        PasscodePresent: true,
        PasscodeCompliant: true,
        PasscodeCompliantWithProfiles: true,
        PasscodeLockGracePeriodEnforced: 0,
        ManagementStatus: { EnrolledViaDEP: false, IsUserEnrollment: false, IsActivationLockManageable: this.supervised },
      };
    }
    return {
      FDE_Enabled: true,
      FDE_HasPersonalRecoveryKey: true,
      FDE_HasInstitutionalRecoveryKey: false,
      SystemIntegrityProtectionEnabled: true,
      AuthenticatedRootVolumeEnabled: true,
      IsRecoveryLockEnabled: false,
      RemoteDesktopEnabled: false,
      BootstrapTokenAllowedForAuthentication: 'allowed',
      BootstrapTokenRequiredForKernelExtensionApproval: false,
      BootstrapTokenRequiredForSoftwareUpdate: false,
      FirewallSettings: { FirewallEnabled: true, BlockAllIncoming: false, StealthMode: false },
      SecureBoot: { SecureBootLevel: 'full', ExternalBootLevel: 'not supported' },
      ManagementStatus: { EnrolledViaDEP: false, IsUserEnrollment: false, UserApprovedEnrollment: true, IsActivationLockManageable: false },
    };
  }

  #profileList(managedOnly: boolean): PlistDict[] {
    const summary = (p: PlistDict, managed: boolean): PlistDict => ({
      PayloadIdentifier: String(p.PayloadIdentifier ?? ''),
      PayloadUUID: String(p.PayloadUUID ?? ''),
      PayloadDisplayName: String(p.PayloadDisplayName ?? p.PayloadIdentifier ?? ''),
      PayloadVersion: typeof p.PayloadVersion === 'number' ? p.PayloadVersion : 1,
      ...(typeof p.PayloadOrganization === 'string' ? { PayloadOrganization: p.PayloadOrganization } : {}),
      PayloadRemovalDisallowed: false,
      HasRemovalPasscode: false,
      IsEncrypted: false,
      IsManaged: managed,
      PayloadContent: (Array.isArray(p.PayloadContent) ? p.PayloadContent : []).filter(isPlistDict).map((c) => ({
        PayloadType: String(c.PayloadType ?? ''),
        PayloadIdentifier: String(c.PayloadIdentifier ?? ''),
        PayloadDisplayName: String(c.PayloadDisplayName ?? c.PayloadType ?? ''),
        PayloadVersion: typeof c.PayloadVersion === 'number' ? c.PayloadVersion : 1,
      })),
    });
    const list: PlistDict[] = [];
    if (this.profile) list.push({ ...summary(this.profile.plist, false), SignerCertificates: [this.profile.signerDer] });
    for (const p of this.installedProfiles.values()) list.push(summary(p, true));
    return managedOnly ? list.filter((p) => p.IsManaged === true) : list;
  }

  #applications(): PlistDict[] {
    const app = (Identifier: string, Name: string, ShortVersion: string, BundleSize: number): PlistDict => ({
      Identifier,
      Name,
      ShortVersion,
      Version: ShortVersion,
      BundleSize,
      ...(this.os === 'ios' ? { DynamicSize: Math.round(BundleSize / 4), IsValidated: true, AppStoreVendable: true } : {}),
    });
    return this.os === 'ios'
      ? [app('com.apple.Pages', 'Pages', '14.0', 512_000_000), app('com.microsoft.Office.Outlook', 'Microsoft Outlook', '4.2424.0', 402_000_000)]
      : [app('com.apple.Safari', 'Safari', '17.5', 14_000_000), app('com.microsoft.VSCode', 'Visual Studio Code', '1.90.0', 560_000_000)];
  }

  // ------------------------------------------------------------------------------------------
  // Transport

  /**
   * One request with full control, for negative tests: PUT (or `opts.method`) `body` to `url` with
   * `Mdm-Signature` from `opts.signWith` (default: the device identity; null: none), optionally a
   * tampered body after signing, and any extra headers.
   */
  async send(url: string, contentType: string, body: Buffer, opts: SendOptions = {}): Promise<HttpAnswer> {
    const signer = opts.signWith === undefined ? this.identity : opts.signWith;
    const headers: Record<string, string> = { 'content-type': contentType, 'user-agent': this.os === 'ios' ? 'MDM/1.0' : 'MDM-OSX/1.0 mdmclient/1.0' };
    if (signer) headers['mdm-signature'] = mdmSignature(body, signer, this.#opts.digest ?? 'sha256');
    let sent = body;
    if (opts.tamper) sent = typeof opts.tamper === 'function' ? opts.tamper(body) : Buffer.concat([body, Buffer.from('\n')]);
    return this.#request(opts.method ?? 'PUT', url, { headers: { ...headers, ...lower(opts.headers) }, body: sent });
  }

  /**
   * One HTTPS exchange. A kept-alive connection the server closed while idle (its keep-alive timeout)
   * can fail the next request with ECONNRESET before the server read it; like a device, and as Node's
   * documentation advises, that request is sent once more on a new connection.
   */
  async #request(method: string, url: string, opts: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<HttpAnswer> {
    try {
      return await this.#exchange(method, url, opts);
    } catch (err) {
      if (!(err as { staleConnection?: boolean }).staleConnection) throw err;
      return this.#exchange(method, url, opts);
    }
  }

  #exchange(method: string, url: string, opts: { headers?: Record<string, string>; body?: Buffer }): Promise<HttpAnswer> {
    const u = new URL(url);
    if (u.protocol !== 'https:') return Promise.reject(new Error(`the device only talks HTTPS, not ${url}`));
    const hostname = u.hostname.replace(/^\[|\]$/g, '');
    const connectTo = this.#opts.connectTo ?? (hostname === 'localhost' ? '127.0.0.1' : hostname);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: connectTo,
          port: u.port || 443,
          ...(net.isIP(hostname) ? {} : { servername: hostname }),
          path: `${u.pathname}${u.search}`,
          method,
          headers: { host: u.host, ...(opts.body ? { 'content-length': String(opts.body.length) } : {}), ...opts.headers },
          ca: this.#opts.caPem,
          agent: this.#agent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => reject(Object.assign(err, { staleConnection: req.reusedSocket && err.code === 'ECONNRESET' })));
      req.end(opts.body);
    });
  }

  #requireProfile(): EnrollmentProfile {
    if (!this.profile) throw new Error('the device has no enrollment profile: fetchProfile() or enroll() first');
    return this.profile;
  }
}

function lower(headers: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}

function headerText(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s?.split(';')[0]!.trim().toLowerCase();
}

/** Reads a command plist; undefined when it is not one (no CommandUUID or Command dictionary). */
export function readCommand(body: Buffer): ServerCommand | undefined {
  try {
    const d = decodePlistDict(body);
    if (typeof d.CommandUUID !== 'string' || !isPlistDict(d.Command)) return undefined;
    return { CommandUUID: d.CommandUUID, Command: d.Command };
  } catch {
    return undefined;
  }
}

/** A profile payload as InstallProfile carries it: plain XML, or CMS-signed (read without checking). */
function profileContent(payload: Buffer): PlistDict | undefined {
  let content = payload;
  if (payload[0] === 0x30) {
    try {
      const ci = pkijs.ContentInfo.fromBER(new Uint8Array(payload));
      const sd = new pkijs.SignedData({ schema: ci.content });
      const e = sd.encapContentInfo.eContent;
      if (!e) return undefined;
      content = Buffer.from(e.getValue());
    } catch {
      return undefined;
    }
  }
  try {
    const v = decodePlist(content);
    return isPlistDict(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The RA certificate from a GetCACert CA/RA answer (certs-only SignedData): the one that is not a CA. */
function raCertificate(der: Buffer): Buffer {
  const ci = pkijs.ContentInfo.fromBER(new Uint8Array(der));
  const sd = new pkijs.SignedData({ schema: ci.content });
  const certs = (sd.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate).map((c) => Buffer.from(c.toSchema().toBER(false)));
  const ra = certs.find((c) => !new crypto.X509Certificate(c).ca) ?? certs[0];
  if (!ra) throw new Error('GetCACert answered a CA/RA bundle without certificates');
  return ra;
}

// ----------------------------------------------------------------------------------------------
// Enrollment profile: signature, chain and payloads

const OID_SIGNED_DATA = '1.2.840.113549.1.7.2';
const OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4';
const DIGEST_NAMES: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/**
 * Checks a signed profile as the device does before offering to install it: an attached CMS
 * SignedData whose signature (pkijs; messageDigest checked again by hand) verifies, signed by the
 * trusted CA itself or by a certificate that chains to it through certificates inside the
 * SignedData, every one of them valid now. Never throws.
 */
export async function verifyProfileSignature(der: Buffer, caPem: string, now = new Date()): Promise<ProfileCheck> {
  try {
    const parsed = asn1js.fromBER(new Uint8Array(der));
    if (parsed.offset === -1) return { ok: false, reason: 'not DER' };
    const ci = new pkijs.ContentInfo({ schema: parsed.result });
    if (ci.contentType !== OID_SIGNED_DATA) return { ok: false, reason: `content type ${ci.contentType} is not signedData` };
    const sd = new pkijs.SignedData({ schema: ci.content });
    if (sd.signerInfos.length !== 1) return { ok: false, reason: `${sd.signerInfos.length} signers` };
    const eContent = sd.encapContentInfo.eContent;
    if (!eContent) return { ok: false, reason: 'the profile is not inside the signature' };
    const content = Buffer.from(eContent.getValue());

    let result: pkijs.SignedDataVerifyResult;
    try {
      result = await sd.verify({ signer: 0, checkChain: false, extendedMode: true }, engine);
    } catch (err) {
      return { ok: false, reason: `the signature does not verify: ${(err as { message?: string }).message ?? String(err)}` };
    }
    if (!result.signatureVerified || !result.signerCertificate) return { ok: false, reason: 'the signature does not verify' };

    const signer = sd.signerInfos[0]!;
    if (signer.signedAttrs) {
      const digestName = DIGEST_NAMES[signer.digestAlgorithm.algorithmId];
      if (!digestName) return { ok: false, reason: `unknown digest ${signer.digestAlgorithm.algorithmId}` };
      const md = signer.signedAttrs.attributes.filter((a) => a.type === OID_MESSAGE_DIGEST);
      const value = md[0]?.values[0];
      if (md.length !== 1 || !(value instanceof asn1js.OctetString)) return { ok: false, reason: 'no single messageDigest attribute' };
      if (!Buffer.from(value.getValue()).equals(crypto.createHash(digestName).update(content).digest())) return { ok: false, reason: 'the messageDigest does not match the profile' };
    }

    const signerDer = Buffer.from(result.signerCertificate.toSchema().toBER(false));
    const bag = (sd.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate).map((c) => new crypto.X509Certificate(Buffer.from(c.toSchema().toBER(false))));
    const chain = chainsTo(new crypto.X509Certificate(signerDer), new crypto.X509Certificate(caPem), bag, now);
    if (!chain.ok) return chain;
    return { ok: true, content, signerDer };
  } catch (err) {
    return { ok: false, reason: `unreadable signed profile: ${(err as Error)?.message ?? String(err)}` };
  }
}

function chainsTo(cert: crypto.X509Certificate, anchor: crypto.X509Certificate, bag: crypto.X509Certificate[], now: Date): { ok: true } | { ok: false; reason: string } {
  let current = cert;
  for (let depth = 0; depth < 5; depth++) {
    if (now < new Date(current.validFrom) || now > new Date(current.validTo)) return { ok: false, reason: `certificate ${current.subject} is expired or not yet valid` };
    if (current.raw.equals(anchor.raw)) return { ok: true };
    if (current.checkIssued(anchor) && current.verify(anchor.publicKey)) return { ok: true };
    const next = bag.find((c) => c.ca && !c.raw.equals(current.raw) && current.checkIssued(c) && current.verify(c.publicKey));
    if (!next) return { ok: false, reason: `the signer does not chain to the trusted CA (stuck at ${current.subject.replace(/\n/g, ', ')})` };
    current = next;
  }
  return { ok: false, reason: 'the certificate chain is too long' };
}

/** Reads the enrollment profile's payloads; throws when it is not an MDM enrollment profile a device would install. */
export function readEnrollmentProfile(content: Buffer, signerDer: Buffer): EnrollmentProfile {
  const plist = decodePlistDict(content);
  if (plist.PayloadType !== 'Configuration') throw new Error(`top-level PayloadType is ${String(plist.PayloadType)}`);
  const payloads = Array.isArray(plist.PayloadContent) ? plist.PayloadContent.filter(isPlistDict) : [];
  const mdm = payloads.find((p) => p.PayloadType === 'com.apple.mdm');
  if (!mdm) throw new Error('no com.apple.mdm payload');
  const str = (d: PlistDict, key: string, required = true): string | undefined => {
    const v = d[key];
    if (typeof v === 'string' && v.length > 0) return v;
    if (required) throw new Error(`${String(d.PayloadType)} payload lacks ${key}`);
    return undefined;
  };
  const identityUuid = str(mdm, 'IdentityCertificateUUID')!;
  const scep = payloads.find((p) => p.PayloadType === 'com.apple.security.scep' && p.PayloadUUID === identityUuid);
  if (!scep) throw new Error(`no com.apple.security.scep payload with PayloadUUID ${identityUuid} (IdentityCertificateUUID)`);
  const sc = isPlistDict(scep.PayloadContent) ? scep.PayloadContent : undefined;
  if (!sc) throw new Error('the SCEP payload has no PayloadContent');
  const serverUrl = str(mdm, 'ServerURL')!;
  const checkInUrl = str(mdm, 'CheckInURL', false) ?? serverUrl;
  for (const u of [serverUrl, checkInUrl]) if (!u.startsWith('https://')) throw new Error(`MDM URL ${u} is not https`);
  const topic = str(mdm, 'Topic')!;
  if (!topic.startsWith('com.apple.mgmt.')) throw new Error(`Topic ${topic} does not start with com.apple.mgmt.`);
  const subject = Array.isArray(sc.Subject)
    ? sc.Subject.map((rdn) => (Array.isArray(rdn) ? rdn.filter((pair): pair is [string, string] => Array.isArray(pair) && pair.length === 2 && pair.every((x) => typeof x === 'string')) : []))
    : [];
  const num = (v: PlistValue | undefined) => (typeof v === 'number' ? v : undefined);
  return {
    identifier: str(plist, 'PayloadIdentifier')!,
    uuid: str(plist, 'PayloadUUID')!,
    ...(typeof plist.PayloadDisplayName === 'string' ? { displayName: plist.PayloadDisplayName } : {}),
    serverUrl,
    checkInUrl,
    topic,
    signMessage: mdm.SignMessage === true,
    ...(num(mdm.AccessRights) === undefined ? {} : { accessRights: num(mdm.AccessRights)! }),
    serverCapabilities: Array.isArray(mdm.ServerCapabilities) ? mdm.ServerCapabilities.filter((s): s is string => typeof s === 'string') : [],
    identityCertificateUuid: identityUuid,
    scepUrl: str(sc, 'URL')!,
    ...(typeof sc.Challenge === 'string' ? { challenge: sc.Challenge } : {}),
    subject,
    ...(num(sc.Keysize) === undefined ? {} : { keysize: num(sc.Keysize)! }),
    ...(typeof sc['Key Type'] === 'string' ? { keyType: sc['Key Type'] } : {}),
    ...(num(sc['Key Usage']) === undefined ? {} : { keyUsage: num(sc['Key Usage'])! }),
    ...(Buffer.isBuffer(sc.CAFingerprint) ? { caFingerprint: sc.CAFingerprint } : {}),
    rootCertsDer: payloads
      .filter((p) => (p.PayloadType === 'com.apple.security.root' || p.PayloadType === 'com.apple.security.pkcs1') && Buffer.isBuffer(p.PayloadContent))
      .map((p) => p.PayloadContent as Buffer),
    payloadTypes: payloads.map((p) => String(p.PayloadType)),
    signerDer,
    plist,
  };
}

// ----------------------------------------------------------------------------------------------
// Mdm-Signature: a detached CMS SignedData written in DER, signed natively

interface SignerMaterial {
  certDer: Buffer;
  /** IssuerAndSerialNumber, copied from the certificate. */
  sid: Buffer;
  key: crypto.KeyObject;
  kind: 'rsa' | 'ec';
}

const NULL = Buffer.from([0x05, 0x00]);
const OIDS = {
  data: oid('1.2.840.113549.1.7.1'),
  signedData: oid('1.2.840.113549.1.7.2'),
  contentType: oid('1.2.840.113549.1.9.3'),
  messageDigest: oid(OID_MESSAGE_DIGEST),
  signingTime: oid('1.2.840.113549.1.9.5'),
};
const DIGEST_ALG = { sha256: seq(oid('2.16.840.1.101.3.4.2.1'), NULL), sha1: seq(oid('1.3.14.3.2.26'), NULL) };
/** RSA signers name rsaEncryption (as Apple devices and smallstep/pkcs7 do); ECDSA names the hash. */
const SIGNATURE_ALG = {
  rsa: { sha256: seq(oid('1.2.840.113549.1.1.1'), NULL), sha1: seq(oid('1.2.840.113549.1.1.1'), NULL) },
  ec: { sha256: seq(oid('1.2.840.10045.4.3.2')), sha1: seq(oid('1.2.840.10045.4.1')) },
};
const CONTENT_TYPE_ATTR = attribute(OIDS.contentType, OIDS.data);
const ENCAP_DATA = seq(OIDS.data);
const VERSION_1 = Buffer.from([0x02, 0x01, 0x01]);

/** Parsed certificate and key per identity object (replace `identity`, do not mutate it). */
const signers = new WeakMap<Identity, SignerMaterial>();

function signerMaterial(identity: Identity): SignerMaterial {
  let m = signers.get(identity);
  if (!m) {
    const cert = new crypto.X509Certificate(identity.certPem);
    const key = crypto.createPrivateKey(identity.keyPem);
    const type = key.asymmetricKeyType;
    if (type !== 'rsa' && type !== 'ec') throw new Error(`cannot sign with a ${type} key`);
    m = { certDer: Buffer.from(cert.raw), sid: issuerAndSerial(Buffer.from(cert.raw)), key, kind: type };
    signers.set(identity, m);
  }
  return m;
}

/**
 * The `Mdm-Signature` header value for `body`: base64 of a detached CMS SignedData with one signer
 * (the identity certificate inside), signed attributes contentType, signingTime and messageDigest.
 */
export function mdmSignature(body: Buffer, identity: Identity, digest: 'sha256' | 'sha1' = 'sha256'): string {
  const m = signerMaterial(identity);
  const attrs = [
    CONTENT_TYPE_ATTR,
    attribute(OIDS.signingTime, utcTime(new Date())),
    attribute(OIDS.messageDigest, tlv(0x04, [crypto.createHash(digest).update(body).digest()])),
  ].sort(Buffer.compare); // DER SET OF order
  const signature = crypto.sign(digest, tlv(0x31, attrs), m.key);
  const signerInfo = seq(VERSION_1, m.sid, DIGEST_ALG[digest], tlv(0xa0, attrs), SIGNATURE_ALG[m.kind][digest], tlv(0x04, [signature]));
  const signedData = seq(VERSION_1, tlv(0x31, [DIGEST_ALG[digest]]), ENCAP_DATA, tlv(0xa0, [m.certDer]), tlv(0x31, [signerInfo]));
  return seq(OIDS.signedData, tlv(0xa0, [signedData])).toString('base64');
}

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, parts: Buffer[]): Buffer {
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

function seq(...parts: Buffer[]): Buffer {
  return tlv(0x30, parts);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [];
  const push = (v: number) => {
    const chunk: number[] = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
    out.push(...chunk);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(0x06, [Buffer.from(out)]);
}

function attribute(type: Buffer, value: Buffer): Buffer {
  return seq(type, tlv(0x31, [value]));
}

function utcTime(d: Date): Buffer {
  const iso = d.toISOString();
  const s = iso.slice(2, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z';
  return tlv(0x17, [Buffer.from(s, 'latin1')]);
}

/** One TLV at `pos`: where it starts, where its content starts, where it ends. */
function readTlv(buf: Buffer, pos: number): { start: number; contentStart: number; end: number; tag: number } {
  const tag = buf[pos];
  let len = buf[pos + 1];
  if (tag === undefined || len === undefined) throw new Error('truncated DER');
  let contentStart = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[contentStart + i] ?? 0);
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > buf.length) throw new Error('truncated DER');
  return { start: pos, contentStart, end, tag };
}

/** IssuerAndSerialNumber of a certificate, copied byte for byte from its TBSCertificate. */
function issuerAndSerial(certDer: Buffer): Buffer {
  const certificate = readTlv(certDer, 0);
  const tbs = readTlv(certDer, certificate.contentStart);
  let field = readTlv(certDer, tbs.contentStart);
  if (field.tag === 0xa0) field = readTlv(certDer, field.end); // [0] version
  const serial = field;
  const signatureAlg = readTlv(certDer, serial.end);
  const issuer = readTlv(certDer, signatureAlg.end);
  return seq(certDer.subarray(issuer.start, issuer.end), certDer.subarray(serial.start, serial.end));
}
