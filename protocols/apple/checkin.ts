/**
 * Apple MDM check-in messages (the CheckInURL): decode into a union on `MessageType`, name the
 * enrollment channel, and encode the few replies that carry a body. Pure: no I/O.
 *
 * Decoding follows NanoMDM (research notes apple-mdm.md §1.2, micromdm/nanomdm:mdm/checkin.go): read
 * `MessageType`, then the typed fields of that message; an unknown type is `UnknownMessageTypeError`
 * (the handler answers 400). Every message keeps its `raw` body for audit and webhooks.
 * See https://developer.apple.com/documentation/devicemanagement/check-in
 */
import { decodePlistDict, encodePlist, type PlistDict, type PlistLimits } from './plist';

export const CHECKIN_MESSAGE_TYPES = [
  'Authenticate',
  'TokenUpdate',
  'CheckOut',
  'UserAuthenticate',
  'SetBootstrapToken',
  'GetBootstrapToken',
  'DeclarativeManagement',
  'GetToken',
] as const;
export type CheckinMessageType = (typeof CHECKIN_MESSAGE_TYPES)[number];

/** The keys that name the enrollment channel; check-ins and command reports both carry them. */
export interface EnrollmentKeys {
  /** Device UDID (device enrollment, ADE, macOS user channels). */
  UDID?: string;
  /** macOS / Shared iPad user channel: the local user's GUID. */
  UserID?: string;
  UserShortName?: string;
  UserLongName?: string;
  /** User Enrollment (BYOD): the per-enrollment device id, instead of the UDID. */
  EnrollmentID?: string;
  /** User Enrollment user channel. */
  EnrollmentUserID?: string;
}

interface CheckinBase extends EnrollmentKeys {
  /** The push topic (`com.apple.mgmt.External.<uuid>`). */
  Topic?: string;
  /** Every key of the message as decoded, including ones not typed here. */
  fields: PlistDict;
  /** The exact body the device sent. */
  raw: Buffer;
}

/** https://developer.apple.com/documentation/devicemanagement/authenticate */
export interface AuthenticateMessage extends CheckinBase {
  MessageType: 'Authenticate';
  Topic: string;
  SerialNumber?: string;
  Model?: string;
  ModelName?: string;
  ProductName?: string;
  DeviceName?: string;
  OSVersion?: string;
  BuildVersion?: string;
  IMEI?: string;
  MEID?: string;
}

/** https://developer.apple.com/documentation/devicemanagement/token-update */
export interface TokenUpdateMessage extends CheckinBase {
  MessageType: 'TokenUpdate';
  Topic: string;
  Token: Buffer;
  PushMagic: string;
  /** iOS device channel only: what `ClearPasscode` needs. */
  UnlockToken?: Buffer;
  /** ADE with await_device_configured: the device waits for `DeviceConfigured`. */
  AwaitingConfiguration?: boolean;
  NotOnConsole?: boolean;
}

/** https://developer.apple.com/documentation/devicemanagement/check-out */
export interface CheckOutMessage extends CheckinBase {
  MessageType: 'CheckOut';
}

/** https://developer.apple.com/documentation/devicemanagement/user-authenticate */
export interface UserAuthenticateMessage extends CheckinBase {
  MessageType: 'UserAuthenticate';
  DigestResponse?: string;
}

/** https://developer.apple.com/documentation/devicemanagement/set-bootstrap-token; an empty token deletes it. */
export interface SetBootstrapTokenMessage extends CheckinBase {
  MessageType: 'SetBootstrapToken';
  BootstrapToken?: Buffer;
  AwaitingConfiguration?: boolean;
}

/** https://developer.apple.com/documentation/devicemanagement/get-bootstrap-token */
export interface GetBootstrapTokenMessage extends CheckinBase {
  MessageType: 'GetBootstrapToken';
  AwaitingConfiguration?: boolean;
}

/** https://developer.apple.com/documentation/devicemanagement/declarative-management-checkin */
export interface DeclarativeManagementMessage extends CheckinBase {
  MessageType: 'DeclarativeManagement';
  /** `tokens`, `declaration-items`, `status` or `declaration/<type>/<identifier>`. */
  Endpoint: string;
  /** JSON the device sends (status reports). */
  Data?: Buffer;
}

/** https://developer.apple.com/documentation/devicemanagement/get-token */
export interface GetTokenMessage extends CheckinBase {
  MessageType: 'GetToken';
  /** `com.apple.maid`, `com.apple.watch.pairing`. */
  TokenServiceType: string;
  TokenParameters?: PlistDict;
}

export type CheckinMessage =
  | AuthenticateMessage
  | TokenUpdateMessage
  | CheckOutMessage
  | UserAuthenticateMessage
  | SetBootstrapTokenMessage
  | GetBootstrapTokenMessage
  | DeclarativeManagementMessage
  | GetTokenMessage;

export type CheckinErrorReason = 'unknown_message_type' | 'missing_field' | 'wrong_type' | 'no_enrollment_id';

/** A well-formed plist that is not a usable check-in. Bounds and syntax problems are `PlistError`. */
export class CheckinError extends Error {
  constructor(
    readonly reason: CheckinErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'CheckinError';
  }
}

export class UnknownMessageTypeError extends CheckinError {
  constructor(readonly messageType: string | undefined) {
    super('unknown_message_type', messageType === undefined ? 'the check-in has no MessageType' : `unknown check-in MessageType ${JSON.stringify(messageType)}`);
    this.name = 'UnknownMessageTypeError';
  }
}

// ---- typed field readers (shared with report.ts) ----

export function optString(d: PlistDict, key: string): string | undefined {
  const v = d[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new CheckinError('wrong_type', `${key} must be a string`);
  return v;
}
export function optData(d: PlistDict, key: string): Buffer | undefined {
  const v = d[key];
  if (v === undefined) return undefined;
  if (!Buffer.isBuffer(v)) throw new CheckinError('wrong_type', `${key} must be data`);
  return v;
}
export function optBool(d: PlistDict, key: string): boolean | undefined {
  const v = d[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new CheckinError('wrong_type', `${key} must be a boolean`);
  return v;
}
function optDict(d: PlistDict, key: string): PlistDict | undefined {
  const v = d[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Buffer.isBuffer(v) || v instanceof Date) {
    throw new CheckinError('wrong_type', `${key} must be a dictionary`);
  }
  return v as PlistDict;
}
function required<T>(value: T | undefined, key: string, type: string): T {
  if (value === undefined || value === '') throw new CheckinError('missing_field', `${type} needs ${key}`);
  return value;
}

/** Only present keys are set, so `toEqual` comparisons and spreads stay clean. */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export function readEnrollmentKeys(d: PlistDict): EnrollmentKeys {
  const keys = defined<EnrollmentKeys>({
    UDID: optString(d, 'UDID'),
    UserID: optString(d, 'UserID'),
    UserShortName: optString(d, 'UserShortName'),
    UserLongName: optString(d, 'UserLongName'),
    EnrollmentID: optString(d, 'EnrollmentID'),
    EnrollmentUserID: optString(d, 'EnrollmentUserID'),
  });
  if (!keys.UDID && !keys.EnrollmentID) throw new CheckinError('no_enrollment_id', 'the message has neither UDID nor EnrollmentID');
  return keys;
}

/** Decodes a check-in body. Throws `PlistError` (bounds, syntax), `UnknownMessageTypeError` or `CheckinError`. */
export function decodeCheckin(raw: Buffer, limits?: PlistLimits): CheckinMessage {
  const d = decodePlistDict(raw, limits);
  const type = d.MessageType;
  if (typeof type !== 'string' || !(CHECKIN_MESSAGE_TYPES as readonly string[]).includes(type)) {
    throw new UnknownMessageTypeError(typeof type === 'string' ? type : undefined);
  }
  const t = type as CheckinMessageType;
  const base = { ...readEnrollmentKeys(d), ...defined({ Topic: optString(d, 'Topic') }), fields: d, raw };
  switch (t) {
    case 'Authenticate':
      return {
        ...base,
        MessageType: t,
        Topic: required(base.Topic, 'Topic', t),
        ...defined({
          SerialNumber: optString(d, 'SerialNumber'),
          Model: optString(d, 'Model'),
          ModelName: optString(d, 'ModelName'),
          ProductName: optString(d, 'ProductName'),
          DeviceName: optString(d, 'DeviceName'),
          OSVersion: optString(d, 'OSVersion'),
          BuildVersion: optString(d, 'BuildVersion'),
          IMEI: optString(d, 'IMEI'),
          MEID: optString(d, 'MEID'),
        }),
      };
    case 'TokenUpdate':
      return {
        ...base,
        MessageType: t,
        Topic: required(base.Topic, 'Topic', t),
        Token: required(optData(d, 'Token'), 'Token', t),
        PushMagic: required(optString(d, 'PushMagic'), 'PushMagic', t),
        ...defined({ UnlockToken: optData(d, 'UnlockToken'), AwaitingConfiguration: optBool(d, 'AwaitingConfiguration'), NotOnConsole: optBool(d, 'NotOnConsole') }),
      };
    case 'CheckOut':
      return { ...base, MessageType: t };
    case 'UserAuthenticate':
      return { ...base, MessageType: t, ...defined({ DigestResponse: optString(d, 'DigestResponse') }) };
    case 'SetBootstrapToken':
      return { ...base, MessageType: t, ...defined({ BootstrapToken: optData(d, 'BootstrapToken'), AwaitingConfiguration: optBool(d, 'AwaitingConfiguration') }) };
    case 'GetBootstrapToken':
      return { ...base, MessageType: t, ...defined({ AwaitingConfiguration: optBool(d, 'AwaitingConfiguration') }) };
    case 'DeclarativeManagement':
      return { ...base, MessageType: t, Endpoint: required(optString(d, 'Endpoint'), 'Endpoint', t), ...defined({ Data: optData(d, 'Data') }) };
    case 'GetToken': {
      const msg: GetTokenMessage = {
        ...base,
        MessageType: t,
        TokenServiceType: required(optString(d, 'TokenServiceType'), 'TokenServiceType', t),
        ...defined({ TokenParameters: optDict(d, 'TokenParameters') }),
      };
      if (msg.TokenServiceType === 'com.apple.watch.pairing' && !msg.TokenParameters) {
        throw new CheckinError('missing_field', 'GetToken for com.apple.watch.pairing needs TokenParameters');
      }
      return msg;
    }
    default: {
      const never: never = t;
      throw new UnknownMessageTypeError(never);
    }
  }
}

// ---- enrollment channels ----

/** Shared iPad sends this UserID for a Managed Apple ID user; the channel is then named by UserShortName. */
export const SHARED_IPAD_USER_ID = 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF';

export type EnrollmentType = 'Device' | 'User' | 'SharediPadUser' | 'UserEnrollmentDevice' | 'UserEnrollmentUser';

export interface ResolvedEnrollment {
  /** The channel's id: its queue and push token key. */
  id: string;
  type: EnrollmentType;
  channel: 'device' | 'user';
  /** The device channel's id (the same as `id` on a device channel). */
  parentId: string;
}

/**
 * NanoMDM's normalization (mdm/type.go `Resolved`; research notes §1.2): UDID wins over EnrollmentID;
 * `UDID:UserID` for a user channel, `UDID:UserShortName` for a Shared iPad user,
 * `EnrollmentID:EnrollmentUserID` for a User Enrollment user channel.
 */
export function resolveEnrollment(keys: EnrollmentKeys): ResolvedEnrollment {
  if (keys.UDID) {
    const udid = keys.UDID;
    if (!keys.UserID) return { id: udid, type: 'Device', channel: 'device', parentId: udid };
    if (keys.UserID.toUpperCase() === SHARED_IPAD_USER_ID && keys.UserShortName) {
      return { id: `${udid}:${keys.UserShortName}`, type: 'SharediPadUser', channel: 'user', parentId: udid };
    }
    return { id: `${udid}:${keys.UserID}`, type: 'User', channel: 'user', parentId: udid };
  }
  if (keys.EnrollmentID) {
    const eid = keys.EnrollmentID;
    if (!keys.EnrollmentUserID) return { id: eid, type: 'UserEnrollmentDevice', channel: 'device', parentId: eid };
    return { id: `${eid}:${keys.EnrollmentUserID}`, type: 'UserEnrollmentUser', channel: 'user', parentId: eid };
  }
  throw new CheckinError('no_enrollment_id', 'the message has neither UDID nor EnrollmentID');
}

export const enrollmentIdOf = (msg: EnrollmentKeys): string => resolveEnrollment(msg).id;
export const channelTypeOf = (msg: EnrollmentKeys): 'device' | 'user' => resolveEnrollment(msg).channel;

// ---- replies with a body ----

/** The GetBootstrapToken reply: `{BootstrapToken: <data>}`, or an empty body when none is escrowed. */
export function encodeGetBootstrapTokenResponse(token: Buffer | null | undefined): Buffer {
  if (!token || token.length === 0) return Buffer.alloc(0);
  return Buffer.from(encodePlist({ BootstrapToken: token }), 'utf8');
}

/** The GetToken reply: `{TokenData: <data>}`. */
export function encodeGetTokenResponse(tokenData: Buffer): Buffer {
  return Buffer.from(encodePlist({ TokenData: tokenData }), 'utf8');
}

/** The UserAuthenticate first-round reply that asks for no digest (NanoMDM `-ua-zl-dc`). */
export function encodeUserAuthenticateChallenge(): Buffer {
  return Buffer.from(encodePlist({ DigestChallenge: '' }), 'utf8');
}

/**
 * The DDM `tokens` endpoint answer (JSON, not a plist): `{"SyncTokens":{"DeclarationsToken","Timestamp"}}`.
 * `timestamp` is written as ISO 8601 without milliseconds, as Apple's examples show.
 */
export function encodeDeclarativeTokens(declarationsToken: string, timestamp: Date): Buffer {
  const Timestamp = timestamp.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return Buffer.from(JSON.stringify({ SyncTokens: { DeclarationsToken: declarationsToken, Timestamp } }), 'utf8');
}

/** The JSON a DeclarativeManagement check-in carries in `Data` (status reports), or undefined. */
export function declarativeDataOf(msg: DeclarativeManagementMessage): unknown {
  if (!msg.Data || msg.Data.length === 0) return undefined;
  try {
    return JSON.parse(msg.Data.toString('utf8'));
  } catch {
    throw new CheckinError('wrong_type', 'DeclarativeManagement Data is not JSON');
  }
}
