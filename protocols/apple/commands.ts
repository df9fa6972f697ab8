/**
 * Apple's side of the shared command queue: which neutral commands an Apple device may run in its
 * management mode, and the command plist it receives (`{CommandUUID, Command: {RequestType, ...}}`,
 * research notes apple-mdm.md §3; schemas in apple/device-management mdm/commands/*.yaml).
 *
 * | command           | RequestType        | params                                         | refused when                                  |
 * |-------------------|--------------------|------------------------------------------------|-----------------------------------------------|
 * | lock              | DeviceLock         | pin (6 digits, macOS), message, phone_number   | user enrollment on macOS; a pin on iOS        |
 * | wipe              | EraseDevice        | pin, preserve_data_plan, obliteration_behavior | user enrollment                               |
 * | restart           | RestartDevice      | notify_user (macOS)                            | not supervised and not macOS; user enrollment |
 * | device_info       | DeviceInformation  | queries (optional list)                        | —                                             |
 * | lost_mode_on/off  | Enable/DisableLostMode | message or phone_number, footnote          | not supervised; macOS; user enrollment        |
 * | clear_passcode    | ClearPasscode      | none: the escrowed UnlockToken is added at hand-out | macOS; user enrollment                   |
 * | install_profile   | InstallProfile     | payload (base64 .mobileconfig)                 | —                                             |
 * | remove_profile    | RemoveProfile      | identifier                                     | —                                             |
 * | profile_list      | ProfileList        | managed_only                                   | —                                             |
 * | security_info     | SecurityInfo       | —                                              | —                                             |
 * | installed_application_list | InstalledApplicationList | managed_apps_only                | —                                             |
 * | shutdown          | ShutDownDevice     | —                                              | not supervised and not macOS; user enrollment |
 * | raw               | command.RequestType| command (a dict with RequestType)              | —                                             |
 *
 * `raw` values are JSON, so strings stay `<string>`: a value `{"$data": "<base64>"}` becomes `<data>`.
 */
import type { CommandOutcome, Permission, PlatformCommands, RefusalReason } from '../../src/core/platforms';
import { Errors } from '../../src/core/errors';
import type { DeviceFacts, Json, Params } from '../../src/core/types';
import { encodePlist, type PlistDict, type PlistValue } from './plist';
import type { CommandReport } from './report';

export const APPLE_MODES = ['device', 'user_enrollment', 'ade'] as const;
export type AppleMode = (typeof APPLE_MODES)[number];

export const OBLITERATION_BEHAVIORS = ['Default', 'DoNotObliterate', 'ObliterateWithWarning', 'Always'] as const;

/** What device_info asks for: keys every iOS and macOS version answers (DeviceInformation "Queries"). */
export const DEVICE_INFO_QUERIES = [
  'UDID',
  'DeviceName',
  'OSVersion',
  'BuildVersion',
  'ModelName',
  'Model',
  'ProductName',
  'SerialNumber',
  'DeviceCapacity',
  'AvailableDeviceCapacity',
  'BatteryLevel',
  'IMEI',
  'MEID',
  'WiFiMAC',
  'BluetoothMAC',
  'IsSupervised',
  'IsDeviceLocatorServiceEnabled',
  'IsActivationLockEnabled',
  'IsCloudBackupEnabled',
  'IsMDMLostModeEnabled',
  'LocalHostName',
  'HostName',
] as const;

/** Command plists are small; a larger raw command is refused. */
const RAW_MAX_BYTES = 64 * 1024;
/** A .mobileconfig is rarely over a megabyte; 4 MiB of base64 leaves room for embedded certificates. */
const PROFILE_MAX_BASE64 = 4 * 1024 * 1024;

const UUID_PLACEHOLDER = 'MOORING-COMMAND-UUID-PLACEHOLDER';
/** Distinct (type, params) plists kept encoded; large ones (profiles) are encoded each time. */
const TEMPLATE_CACHE_SIZE = 64;
const TEMPLATE_MAX_BYTES = 64 * 1024;

export type AppleOs = 'ios' | 'macos' | 'unknown';

/** iOS family (iPhone, iPad, iPod, Apple TV, Watch, Vision) vs macOS, from the model the device reported. */
export function appleOsOf(device: Pick<DeviceFacts, 'model'>): AppleOs {
  const model = device.model ?? '';
  if (/^(iPhone|iPad|iPod|AppleTV|Watch|RealityDevice)/i.test(model)) return 'ios';
  if (/^(Mac|iMac|VirtualMac)/i.test(model)) return 'macos';
  return 'unknown';
}

const refuse = (reason: RefusalReason, detail: string): Permission => ({ allowed: false, code: 'command_not_permitted', detail, reason });
const invalid = (detail: string): Permission => ({ allowed: false, code: 'invalid_params', detail, reason: 'invalid_value' });

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const isBase64 = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && s.length % 4 === 0 && BASE64.test(s);
const optText = (p: Params, key: string, max = 1024): string | undefined | Permission => {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length > max) return invalid(`params.${key} must be text of at most ${max} characters`);
  return v;
};
const isRefusal = (v: unknown): v is Permission => typeof v === 'object' && v !== null && 'allowed' in v;

/** `Command` dict for one neutral command, or why the params are not usable. */
type Built = { command: PlistDict } | { refusal: Permission };

/** Drops unset keys so the plist carries only what the admin gave. */
function dict(entries: Record<string, PlistValue | undefined>): PlistDict {
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined)) as PlistDict;
}

/** JSON from the admin API → plist value; `{"$data": base64}` is data, null is refused. */
function jsonToPlist(value: Json, path: string): PlistValue {
  if (value === null) throw new Error(`${path} is null; plists have no null`);
  if (Array.isArray(value)) return value.map((v, i) => jsonToPlist(v, `${path}[${i}]`));
  if (typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$data') {
      if (!isBase64(value.$data)) throw new Error(`${path}.$data must be base64`);
      return Buffer.from(value.$data, 'base64');
    }
    return Object.fromEntries(keys.map((k) => [k, jsonToPlist(value[k]!, `${path}.${k}`)]));
  }
  return value;
}

function commandFor(type: string, p: Params): Built {
  const texts = (...keys: [string, string, number?][]) => {
    const out: Record<string, string | undefined> = {};
    for (const [param, key, max] of keys) {
      const v = optText(p, param, max);
      if (isRefusal(v)) return v;
      out[key] = v;
    }
    return out;
  };
  switch (type) {
    case 'lock': {
      if (p.pin !== undefined && !(typeof p.pin === 'string' && /^\d{6}$/.test(p.pin))) return { refusal: invalid('params.pin must be 6 digits') };
      const t = texts(['message', 'Message'], ['phone_number', 'PhoneNumber', 64]);
      if (isRefusal(t)) return { refusal: t };
      return { command: dict({ RequestType: 'DeviceLock', PIN: p.pin as string | undefined, ...t }) };
    }
    case 'wipe': {
      if (p.pin !== undefined && !(typeof p.pin === 'string' && /^\d{6}$/.test(p.pin))) return { refusal: invalid('params.pin must be 6 digits') };
      if (p.preserve_data_plan !== undefined && typeof p.preserve_data_plan !== 'boolean') return { refusal: invalid('params.preserve_data_plan must be true or false') };
      const ob = p.obliteration_behavior;
      if (ob !== undefined && !(OBLITERATION_BEHAVIORS as readonly Json[]).includes(ob)) {
        return { refusal: invalid(`params.obliteration_behavior must be one of ${OBLITERATION_BEHAVIORS.join(', ')}`) };
      }
      return {
        command: dict({ RequestType: 'EraseDevice', PIN: p.pin as string | undefined, PreserveDataPlan: p.preserve_data_plan as boolean | undefined, ObliterationBehavior: ob as string | undefined }),
      };
    }
    case 'restart':
      if (p.notify_user !== undefined && typeof p.notify_user !== 'boolean') return { refusal: invalid('params.notify_user must be true or false') };
      return { command: dict({ RequestType: 'RestartDevice', NotifyUser: p.notify_user as boolean | undefined }) };
    case 'device_info': {
      const q = p.queries;
      if (q !== undefined && !(Array.isArray(q) && q.length > 0 && q.length <= 200 && q.every((s) => typeof s === 'string' && /^[A-Za-z][\w.]*$/.test(s)))) {
        return { refusal: invalid('params.queries must be a list of DeviceInformation query names') };
      }
      return { command: { RequestType: 'DeviceInformation', Queries: (q as string[] | undefined) ?? [...DEVICE_INFO_QUERIES] } };
    }
    case 'lost_mode_on': {
      const t = texts(['message', 'Message'], ['phone_number', 'PhoneNumber', 64], ['footnote', 'Footnote']);
      if (isRefusal(t)) return { refusal: t };
      if (!t.Message && !t.PhoneNumber) return { refusal: invalid('lost_mode_on needs params.message or params.phone_number') };
      return { command: dict({ RequestType: 'EnableLostMode', ...t }) };
    }
    case 'lost_mode_off':
      return { command: { RequestType: 'DisableLostMode' } };
    case 'clear_passcode':
      // The UnlockToken is a secret: it stays sealed in apple_devices and joins the plist only when the
      // command is handed to the device (routes.ts), never in the stored command.
      if (Object.keys(p).length > 0) return { refusal: invalid('clear_passcode takes no params; the server adds the UnlockToken the device escrowed') };
      return { command: { RequestType: 'ClearPasscode' } };
    case 'install_profile':
      if (!isBase64(p.payload) || p.payload.length > PROFILE_MAX_BASE64) return { refusal: invalid('install_profile needs params.payload, a base64 .mobileconfig of at most 3 MiB') };
      return { command: { RequestType: 'InstallProfile', Payload: Buffer.from(p.payload, 'base64') } };
    case 'remove_profile':
      if (typeof p.identifier !== 'string' || p.identifier.length === 0 || p.identifier.length > 256) {
        return { refusal: invalid('remove_profile needs params.identifier, the profile PayloadIdentifier') };
      }
      return { command: { RequestType: 'RemoveProfile', Identifier: p.identifier } };
    case 'security_info':
      return { command: { RequestType: 'SecurityInfo' } };
    case 'installed_application_list':
      if (p.managed_apps_only !== undefined && typeof p.managed_apps_only !== 'boolean') return { refusal: invalid('params.managed_apps_only must be true or false') };
      return { command: dict({ RequestType: 'InstalledApplicationList', ManagedAppsOnly: p.managed_apps_only as boolean | undefined }) };
    case 'shutdown':
      return { command: { RequestType: 'ShutDownDevice' } };
    case 'profile_list':
      if (p.managed_only !== undefined && typeof p.managed_only !== 'boolean') return { refusal: invalid('params.managed_only must be true or false') };
      return { command: dict({ RequestType: 'ProfileList', ManagedOnly: p.managed_only as boolean | undefined }) };
    case 'raw': {
      const c = p.command;
      if (typeof c !== 'object' || c === null || Array.isArray(c) || typeof c.RequestType !== 'string' || !/^[A-Za-z]\w*$/.test(c.RequestType)) {
        return { refusal: invalid('raw needs params.command, a dictionary with a RequestType') };
      }
      if (JSON.stringify(c).length > RAW_MAX_BYTES) return { refusal: invalid(`params.command is over ${RAW_MAX_BYTES} bytes`) };
      try {
        return { command: jsonToPlist(c, 'params.command') as PlistDict };
      } catch (err) {
        return { refusal: invalid((err as Error).message) };
      }
    }
    default:
      return { refusal: refuse('unsupported', `${type} has no Apple equivalent`) };
  }
}

/** Mode and supervision rules; `undefined` when the device may run the command. */
function modeRefusal(device: DeviceFacts, type: string, p: Params): Permission | undefined {
  const ue = device.mode === 'user_enrollment';
  const os = appleOsOf(device);
  switch (type) {
    case 'lock':
      // DeviceLock's PIN is the Find My PIN of a Mac; an iPhone unlocks with its own passcode.
      if (p.pin !== undefined && os === 'ios') return refuse('unsupported', 'a lock PIN exists only on macOS; an iOS device unlocks with its own passcode');
      if (p.pin === undefined && os === 'macos') return invalid('locking a Mac needs params.pin, the 6-digit PIN that will unlock it');
      return ue && os !== 'ios' ? refuse('management_mode', 'lock is not possible on a User Enrollment Mac') : undefined;
    case 'wipe':
      return ue ? refuse('management_mode', `${type} is not possible on a User Enrollment (personal) device`) : undefined;
    case 'restart':
    case 'shutdown':
      if (ue) return refuse('management_mode', `${type} is not possible on a User Enrollment (personal) device`);
      return device.supervised || os === 'macos' ? undefined : refuse('management_mode', `${type} needs a supervised iOS device or a Mac`);
    case 'lost_mode_on':
    case 'lost_mode_off':
      if (ue) return refuse('management_mode', 'lost mode is not possible on a User Enrollment (personal) device');
      if (os === 'macos') return refuse('unsupported', 'lost mode exists on iOS and iPadOS only');
      return device.supervised ? undefined : refuse('management_mode', 'lost mode needs a supervised device');
    case 'clear_passcode':
      if (ue) return refuse('management_mode', 'clear_passcode is not possible on a User Enrollment (personal) device');
      return os === 'macos' ? refuse('unsupported', 'clear_passcode exists on iOS and iPadOS only') : undefined;
    default:
      return undefined;
  }
}

function effectOf(device: DeviceFacts, type: string, p: Params): string | undefined {
  const os = appleOsOf(device);
  switch (type) {
    case 'lock':
      return os === 'macos'
        ? p.pin
          ? 'locks the Mac; it unlocks only with the 6-digit PIN'
          : 'locks the Mac'
        : 'locks the screen; the user unlocks with the device passcode';
    case 'wipe':
      return 'erases all content and settings of the device';
    case 'clear_passcode':
      return 'removes the device passcode';
    case 'device_info':
      return device.mode === 'user_enrollment' ? 'a User Enrollment device answers only the queries Apple allows for personal devices' : undefined;
    default:
      return undefined;
  }
}

export class AppleCommands implements PlatformCommands {
  readonly platform = 'apple' as const;

  permit(device: DeviceFacts, type: string, params: Params): Permission {
    const built = commandFor(type, params);
    if ('refusal' in built && built.refusal.allowed === false && built.refusal.code === 'command_not_permitted') return built.refusal;
    const mode = modeRefusal(device, type, params);
    if (mode) return mode;
    if ('refusal' in built) return built.refusal;
    const effect = effectOf(device, type, params);
    return effect ? { allowed: true, effect } : { allowed: true };
  }

  /** Encoded plists by command type and params, with a placeholder where the CommandUUID goes. */
  readonly #templates = new Map<string, [before: string, after: string]>();

  /**
   * The full command plist as XML text; throws `invalid_params` when the params cannot be built. A
   * bulk command builds the same plist for every device but its CommandUUID, so the encoding is done
   * once per (type, params) and the id (a UUID: nothing to escape) is put in its place.
   */
  build(command: { id: string; type: string; params: Params }, _device: DeviceFacts): string {
    const key = `${command.type}\u0000${JSON.stringify(command.params)}`;
    let template = this.#templates.get(key);
    if (!template) {
      const built = commandFor(command.type, command.params);
      if ('refusal' in built) {
        const detail = built.refusal.allowed ? 'refused' : built.refusal.detail;
        throw Errors.of('invalid_params', `apple cannot build ${command.type}: ${detail}`);
      }
      const encoded = encodePlist({ CommandUUID: UUID_PLACEHOLDER, Command: built.command });
      const at = encoded.indexOf(UUID_PLACEHOLDER);
      template = [encoded.slice(0, at), encoded.slice(at + UUID_PLACEHOLDER.length)];
      if (encoded.length <= TEMPLATE_MAX_BYTES) {
        if (this.#templates.size >= TEMPLATE_CACHE_SIZE) this.#templates.delete(this.#templates.keys().next().value!);
        this.#templates.set(key, template);
      }
    }
    if (!/^[\w-]+$/.test(command.id)) throw Errors.of('invalid_params', `command id ${JSON.stringify(command.id)} is not a UUID`);
    return template[0] + command.id + template[1];
  }

  /** Reads a decoded `CommandReport` (report.ts). */
  parseResult(report: unknown): CommandOutcome {
    const r = report as CommandReport;
    switch (r.status) {
      case 'Acknowledged':
        return { status: 'acknowledged', result: toJson(r.fields) };
      case 'NotNow':
        return { status: 'not_now' };
      case 'Error':
      case 'CommandFormatError': {
        const error: Json = { status: r.status, error_chain: toJson(r.errorChain ?? []) };
        return Object.keys(r.fields).length > 0 ? { status: 'error', error, result: toJson(r.fields) } : { status: 'error', error };
      }
      default:
        return { status: 'error', error: { status: String(r.status), detail: 'the device sent a report that is not about a command' } };
    }
  }
}

/** Plist values → JSON: Buffers become base64, dates ISO 8601 text, non-finite numbers null. */
export function toJson(value: unknown): Json {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value).filter(([k]) => k !== 'raw').map(([k, v]) => [k, toJson(v)]));
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  return String(value);
}
