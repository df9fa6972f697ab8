/**
 * Android's side of the shared command queue: which neutral commands a DPC can carry out in each
 * management mode, what they really do there, and the JSON the DPC receives.
 *
 * The matrix follows the Android Management API's command rules (research notes, section 3):
 *
 * | command             | BYOD work profile        | COPE work profile | fully managed | dedicated |
 * |---------------------|--------------------------|-------------------|---------------|-----------|
 * | lock                | work profile             | yes               | yes           | yes       |
 * | reset_password      | work challenge           | work challenge    | device        | device    |
 * | restart             | no (management_mode)     | no                | API 24+       | API 24+   |
 * | wipe                | removes the work profile | factory reset     | factory reset | factory reset |
 * | remove_work_profile | = wipe                   | yes (API 26+)     | no            | no        |
 * | relinquish          | no                       | yes (API 26+)     | no            | no        |
 * | lost_mode_on/off    | no                       | yes               | yes           | yes       |
 * | clear_app_data      | API 28+                  | API 28+           | API 28+       | API 28+   |
 */
import type { CommandOutcome, Permission, PlatformCommands } from '../../src/core/platforms';
import type { DeviceFacts, Json, Params } from '../../src/core/types';

export const ANDROID_MODES = ['byod_work_profile', 'cope_work_profile', 'fully_managed', 'dedicated'] as const;
export type AndroidMode = (typeof ANDROID_MODES)[number];

const DEVICE_OWNER: readonly AndroidMode[] = ['fully_managed', 'dedicated'];
const COMPANY_OWNED: readonly AndroidMode[] = ['cope_work_profile', 'fully_managed', 'dedicated'];

/** What the DPC is told to call for each command (DevicePolicyManager method names). */
export type DpcAction =
  | 'lockNow'
  | 'resetPasswordWithToken'
  | 'reboot'
  | 'wipeDevice'
  | 'removeWorkProfile'
  | 'relinquishOwnership'
  | 'startLostMode'
  | 'stopLostMode'
  | 'requestDeviceInfo'
  | 'clearApplicationUserData'
  | 'raw';

/** The command as the DPC receives it in a check-in answer. */
export interface DpcCommand {
  id: string;
  type: string;
  action: DpcAction;
  params: Params;
}

/** Commands wait ten minutes for delivery unless the admin sets another expiry (AMAPI's default). */
export const ANDROID_COMMAND_TTL_SECONDS = 600;

const refuse = (reason: 'management_mode' | 'api_level' | 'unsupported', detail: string): Permission => ({
  allowed: false,
  code: 'command_not_permitted',
  detail,
  reason,
});
const invalid = (detail: string): Permission => ({ allowed: false, code: 'invalid_params', detail, reason: 'invalid_value' });

export class AndroidCommands implements PlatformCommands {
  readonly platform = 'android' as const;
  readonly defaultTtlSeconds = ANDROID_COMMAND_TTL_SECONDS;

  permit(device: DeviceFacts, type: string, params: Params): Permission {
    const mode = device.mode as AndroidMode | null;
    if (!mode || !(ANDROID_MODES as readonly string[]).includes(mode)) {
      return refuse('management_mode', `the device has not reported a management mode yet`);
    }
    const api = device.api_level ?? 0;
    const needsApi = (level: number, what: string) =>
      api && api < level ? refuse('api_level', `${what} needs Android API level ${level} or later; this device runs ${api}`) : undefined;
    const onlyIn = (modes: readonly AndroidMode[], what: string) =>
      modes.includes(mode) ? undefined : refuse('management_mode', `${what} is not possible on a ${mode.replace(/_/g, ' ')} device`);

    switch (type) {
      case 'lock':
        return { allowed: true, ...(mode === 'byod_work_profile' ? { effect: 'locks the work profile (the whole device if it has no separate work challenge)' } : {}) };
      case 'reset_password': {
        if (typeof params.password !== 'string' || params.password.length < 4 || params.password.length > 64) {
          return invalid('reset_password needs params.password, 4 to 64 characters');
        }
        const tooOld = needsApi(26, 'reset_password');
        if (tooOld) return tooOld;
        return { allowed: true, ...(DEVICE_OWNER.includes(mode) ? {} : { effect: 'sets the work profile challenge, not the device PIN' }) };
      }
      case 'restart':
        return onlyIn(DEVICE_OWNER, 'restart') ?? needsApi(24, 'restart') ?? { allowed: true };
      case 'wipe':
        return mode === 'byod_work_profile'
          ? { allowed: true, effect: 'removes the work profile only; the personal side of the device is untouched' }
          : { allowed: true, effect: 'factory resets the device' };
      case 'remove_work_profile':
        if (mode === 'byod_work_profile') return { allowed: true, effect: 'removes the work profile (same as wipe on a personal device)' };
        return onlyIn(['cope_work_profile'], 'remove_work_profile') ?? needsApi(26, 'remove_work_profile') ?? { allowed: true };
      case 'relinquish':
        return (
          onlyIn(['cope_work_profile'], 'relinquish') ??
          needsApi(26, 'relinquish') ?? { allowed: true, effect: 'removes the work profile and all policies, handing the device to the user' }
        );
      case 'lost_mode_on':
      case 'lost_mode_off':
        return onlyIn(COMPANY_OWNED, type) ?? { allowed: true };
      case 'device_info':
        return { allowed: true };
      case 'clear_app_data':
        if (!Array.isArray(params.packages) || params.packages.length === 0 || !params.packages.every((p) => typeof p === 'string' && /^[A-Za-z][\w.]*$/.test(p))) {
          return invalid('clear_app_data needs params.packages, a list of package names');
        }
        return needsApi(28, 'clear_app_data') ?? { allowed: true };
      case 'raw':
        return typeof params.action === 'string' ? { allowed: true } : invalid('raw needs params.action, the DPC action name');
      default:
        return refuse('unsupported', `${type} has no Android equivalent`);
    }
  }

  build(command: { id: string; type: string; params: Params }, device: DeviceFacts): string {
    const wire: DpcCommand = { id: command.id, type: command.type, action: actionFor(command.type, device.mode as AndroidMode), params: command.params };
    return JSON.stringify(wire);
  }

  /** The DPC reports `{ status: "ok" | "error" | "not_now", result?, error? }`. */
  parseResult(report: unknown): CommandOutcome {
    const r = report as { status: string; result?: Json; error?: Json };
    switch (r.status) {
      case 'ok':
        return { status: 'acknowledged', result: r.result ?? null };
      case 'not_now':
        return { status: 'not_now' };
      default:
        return { status: 'error', error: r.error ?? 'the device reported an error without details', result: r.result ?? null };
    }
  }
}

function actionFor(type: string, mode: AndroidMode): DpcAction {
  switch (type) {
    case 'lock':
      return 'lockNow';
    case 'reset_password':
      return 'resetPasswordWithToken';
    case 'restart':
      return 'reboot';
    case 'wipe':
      return mode === 'byod_work_profile' ? 'removeWorkProfile' : 'wipeDevice';
    case 'remove_work_profile':
      return 'removeWorkProfile';
    case 'relinquish':
      return 'relinquishOwnership';
    case 'lost_mode_on':
      return 'startLostMode';
    case 'lost_mode_off':
      return 'stopLostMode';
    case 'device_info':
      return 'requestDeviceInfo';
    case 'clear_app_data':
      return 'clearApplicationUserData';
    default:
      return 'raw';
  }
}
