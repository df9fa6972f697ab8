/**
 * A platform plug-in for exercising the shared queue before the real front ends exist. It follows the
 * CONTRACTS.md rules that every platform shares (wipe on a personal device removes only managed data,
 * lost mode needs a company-owned device) and speaks a JSON wire format, so tests can read what a
 * device would receive.
 */
import type { CommandOutcome, PlatformCommands, Permission } from '../../src/core/platforms';
import type { DeviceFacts, Params, Platform } from '../../src/core/types';

export class TestPlatformCommands implements PlatformCommands {
  constructor(readonly platform: Platform = 'android') {}

  permit(device: DeviceFacts, type: string, params: Params): Permission {
    switch (type) {
      case 'lock':
      case 'restart':
      case 'device_info':
        return { allowed: true };
      case 'wipe':
        return device.ownership === 'personal' ? { allowed: true, effect: 'removes the work profile only' } : { allowed: true };
      case 'lost_mode_on':
      case 'lost_mode_off':
        return device.ownership === 'corporate'
          ? { allowed: true }
          : { allowed: false, code: 'command_not_permitted', detail: 'lost mode needs a company-owned device', reason: 'ownership' };
      case 'raw':
        return typeof params.command === 'string'
          ? { allowed: true }
          : { allowed: false, code: 'invalid_params', detail: 'raw needs params.command (a string)', reason: 'invalid_value' };
      default:
        return { allowed: false, code: 'command_not_permitted', detail: `${type} is not supported on ${this.platform}`, reason: 'unsupported' };
    }
  }

  build(command: { id: string; type: string; params: Params }): string {
    return JSON.stringify({ command_id: command.id, type: command.type, params: command.params });
  }

  parseResult(report: unknown): CommandOutcome {
    const r = report as { status: string; result?: never; error?: never };
    if (r.status === 'ok') return { status: 'acknowledged', result: r.result };
    if (r.status === 'not_now') return { status: 'not_now' };
    return { status: 'error', error: r.error ?? 'unknown error' };
  }
}
