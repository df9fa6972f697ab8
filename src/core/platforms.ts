/**
 * How a platform plugs into the shared command queue. Each front end (protocols/apple, windows,
 * android) registers one `PlatformCommands`; the queue itself never knows a wire format.
 */
import { Errors } from './errors';
import type { DeviceFacts, Json, Params, Platform } from './types';

/** Why a platform refuses a command, as a stable word (AMAPI's vocabulary). */
export type RefusalReason = 'management_mode' | 'api_level' | 'unsupported' | 'invalid_value' | 'ownership' | 'no_platform_support';

/**
 * The answer of a permission check. `effect` says what the command will really do (shown to admins);
 * a refusal has a human `detail` and, where it helps a script, a stable `reason`.
 */
export type Permission =
  | { allowed: true; effect?: string }
  | { allowed: false; code: 'command_not_permitted' | 'unknown_command_type' | 'invalid_params'; detail: string; reason?: RefusalReason };

/** What a device said about a command, in neutral terms. */
export type CommandOutcome =
  | { status: 'acknowledged'; result?: Json }
  | { status: 'error'; error: Json; result?: Json }
  | { status: 'not_now' };

export interface PlatformCommands {
  readonly platform: Platform;
  /** Whether the neutral `type` with `params` may run on this device (platform, ownership, mode, supervision). */
  permit(device: DeviceFacts, type: string, params: Params): Permission;
  /** The wire payload for one command; `command.id` is the id the device echoes back in its report. */
  build(command: { id: string; type: string; params: Params }, device: DeviceFacts): string;
  /** Reads a device's report on a command (already decoded by the protocol codec) into an outcome. */
  parseResult(report: unknown): CommandOutcome;
  /** How long this platform's commands wait for delivery unless the admin says otherwise (seconds). */
  readonly defaultTtlSeconds?: number;
}

export class PlatformRegistry {
  readonly #platforms = new Map<Platform, PlatformCommands>();

  register(commands: PlatformCommands): this {
    if (this.#platforms.has(commands.platform)) throw new Error(`platform ${commands.platform} registered twice`);
    this.#platforms.set(commands.platform, commands);
    return this;
  }

  get(platform: Platform): PlatformCommands | undefined {
    return this.#platforms.get(platform);
  }

  /** The permission check for a device, including "this server does not manage that platform yet". */
  permit(device: DeviceFacts, type: string, params: Params): Permission {
    const commands = this.#platforms.get(device.platform);
    if (!commands) {
      return {
        allowed: false,
        code: 'command_not_permitted',
        detail: `this server has no ${device.platform} command support`,
        reason: 'no_platform_support',
      };
    }
    return commands.permit(device, type, params);
  }

  defaultTtlSeconds(platform: Platform): number | undefined {
    return this.#platforms.get(platform)?.defaultTtlSeconds;
  }

  build(device: DeviceFacts, command: { id: string; type: string; params: Params }): string {
    const commands = this.#platforms.get(device.platform);
    if (!commands) throw Errors.of('command_not_permitted', `this server has no ${device.platform} command support`);
    return commands.build(command, device);
  }
}
