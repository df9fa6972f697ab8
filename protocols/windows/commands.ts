/**
 * Windows's side of the shared command queue: which neutral commands map to a CSP node, and the
 * SyncML command fragment that goes into the next management session. Each fragment's CmdID is
 * the Mooring command UUID; the device echoes it in the CmdRef of its Status (and Results).
 *
 * | command     | SyncML                                                                           |
 * |-------------|----------------------------------------------------------------------------------|
 * | wipe        | Exec ./Device/Vendor/MSFT/RemoteWipe/{doWipe,doWipeProtected,doWipePersistProvisionedData} |
 * | restart     | Exec ./Device/Vendor/MSFT/Reboot/RebootNow                                      |
 * | device_info | one Get with DevInfo and DevDetail items                                        |
 * | lock        | Exec ./Vendor/MSFT/RemoteLock/Lock (Windows 10 Mobile only)                     |
 * | raw         | the admin's own Exec/Get/Replace/Add/Delete, CmdID replaced                     |
 *
 * CSP paths: RemoteWipe, Reboot and RemoteLock CSP pages on learn.microsoft.com (research notes §2.5).
 */
import type { CommandOutcome, Permission, PlatformCommands } from '../../src/core/platforms';
import type { DeviceFacts, Json, Params } from '../../src/core/types';
import { SyncMlError, escapeXml, parseXmlTree } from './syncml';

export const WIPE_MODES = {
  wipe: 'doWipe',
  protected: 'doWipeProtected',
  persist_provisioned_data: 'doWipePersistProvisionedData',
} as const;
export type WipeMode = keyof typeof WIPE_MODES;

const WIPE_EFFECTS: Record<WipeMode, string> = {
  wipe: 'resets the PC and removes all apps, settings and user data (Reset this PC, remove everything)',
  protected: 'resets the PC and removes everything, retrying until it succeeds; the PC may be left unable to boot',
  persist_provisioned_data: 'resets the PC but keeps provisioning packages, so the PC re-applies them and enrolls again',
};

export const REBOOT_NOW = './Device/Vendor/MSFT/Reboot/RebootNow';
export const REMOTE_LOCK = './Vendor/MSFT/RemoteLock/Lock';
export const REMOTE_WIPE = './Device/Vendor/MSFT/RemoteWipe';

/** What device_info reads: nodes every desktop SKU answers, so one missing node does not fail the Get. */
export const DEVICE_INFO_NODES = [
  './DevInfo/DevId',
  './DevInfo/Man',
  './DevInfo/Mod',
  './DevInfo/DmV',
  './DevInfo/Lang',
  './DevDetail/SwV',
  './DevDetail/HwV',
  './DevDetail/FwV',
  './DevDetail/OEM',
  './DevDetail/DevTyp',
  './DevDetail/Ext/Microsoft/DeviceName',
  './DevDetail/Ext/Microsoft/DNSComputerName',
  './DevDetail/Ext/Microsoft/OSPlatform',
  './DevDetail/Ext/Microsoft/ProcessorArchitecture',
  './DevDetail/Ext/Microsoft/TotalRAM',
  './DevDetail/Ext/Microsoft/SMBIOSSerialNumber',
  './DevDetail/Ext/Microsoft/LocalTime',
] as const;

const RAW_COMMANDS = ['Exec', 'Get', 'Replace', 'Add', 'Delete'] as const;
const RAW_MAX_BYTES = 64 * 1024;

const refuse = (reason: 'unsupported', detail: string): Permission => ({ allowed: false, code: 'command_not_permitted', detail, reason });
const invalid = (detail: string): Permission => ({ allowed: false, code: 'invalid_params', detail, reason: 'invalid_value' });

/**
 * Whether a device is Windows 10 Mobile (the only edition with a RemoteLock CSP). Rule: the model or
 * OS version the device reported names a phone (`Phone`, `Mobile`, `Lumia`); anything else is a PC.
 */
export function isWindowsMobile(device: Pick<DeviceFacts, 'model' | 'os_version' | 'mode'>): boolean {
  const hint = /\b(phone|mobile|lumia)\b/i;
  return device.mode === 'mobile' || hint.test(device.model ?? '') || hint.test(device.os_version ?? '');
}

export class WindowsCommands implements PlatformCommands {
  readonly platform = 'windows' as const;
  /** Windows commands use the server's default expiry. */
  readonly defaultTtlSeconds = undefined;

  permit(device: DeviceFacts, type: string, params: Params): Permission {
    switch (type) {
      case 'wipe': {
        const mode = params.mode ?? 'wipe';
        if (typeof mode !== 'string' || !Object.hasOwn(WIPE_MODES, mode)) {
          return invalid(`wipe params.mode must be one of ${Object.keys(WIPE_MODES).join(', ')}`);
        }
        return { allowed: true, effect: WIPE_EFFECTS[mode as WipeMode] };
      }
      case 'restart':
        return { allowed: true, effect: 'the signed-in user sees a warning and the PC restarts about five minutes later' };
      case 'device_info':
        return { allowed: true };
      case 'lock':
        return isWindowsMobile(device) ? { allowed: true } : refuse('unsupported', 'desktop Windows has no remote lock in the MDM protocol');
      case 'raw': {
        const problem = rawProblem(params.syncml);
        return problem ? invalid(problem) : { allowed: true };
      }
      default:
        return refuse('unsupported', `${type} has no Windows MDM equivalent`);
    }
  }

  build(command: { id: string; type: string; params: Params }, _device: DeviceFacts): string {
    const id = escapeXml(command.id);
    switch (command.type) {
      case 'wipe': {
        const mode = (command.params.mode ?? 'wipe') as WipeMode;
        return exec(id, `${REMOTE_WIPE}/${WIPE_MODES[mode] ?? WIPE_MODES.wipe}`, 'chr');
      }
      case 'restart':
        return exec(id, REBOOT_NOW, 'null');
      case 'lock':
        return exec(id, REMOTE_LOCK, 'null');
      case 'device_info':
        return `<Get><CmdID>${id}</CmdID>${DEVICE_INFO_NODES.map((uri) => `<Item><Target><LocURI>${uri}</LocURI></Target></Item>`).join('')}</Get>`;
      case 'raw':
        return withCmdId(String(command.params.syncml), id);
      default:
        throw new Error(`windows cannot build ${command.type}`);
    }
  }

  /**
   * Reads the Status the device returned for our CmdID (and any Results items, keyed by LocURI).
   * Codes ([MS-MDM] / OMA-DM RepPro §10): 200 OK, 202 accepted for processing (e.g. an MSI install),
   * 101 in progress → acknowledged; 4xx/5xx and the "did not run" 2xx codes (214 cancelled,
   * 215 not executed, 216 rolled back) → error carrying the code.
   */
  parseResult(report: unknown): CommandOutcome {
    const r = (report ?? {}) as { status?: unknown; results?: Record<string, string> };
    const code = typeof r.status === 'number' ? String(r.status) : r.status;
    const result: Json | undefined = r.results && Object.keys(r.results).length > 0 ? r.results : undefined;
    const withResult = result === undefined ? {} : { result };
    if (typeof code !== 'string' || !/^\d{3}$/.test(code)) {
      return { status: 'error', error: { code: null, detail: 'the device report has no SyncML status code' }, ...withResult };
    }
    if (ACKNOWLEDGED.has(code)) return { status: 'acknowledged', ...withResult };
    return { status: 'error', error: { code: Number(code), detail: STATUS_TEXT[code] ?? `SyncML status ${code}` }, ...withResult };
  }
}

const ACKNOWLEDGED = new Set(['101', '200', '202', '204']);

/** Meanings of the status codes Windows returns (OMA-DM RepPro §10, fleet `syncml.go`). */
export const STATUS_TEXT: Readonly<Record<string, string>> = {
  '101': 'in progress',
  '200': 'OK',
  '202': 'accepted for processing',
  '204': 'no content',
  '214': 'operation cancelled',
  '215': 'not executed',
  '216': 'atomic rolled back',
  '400': 'bad request',
  '401': 'invalid credentials',
  '403': 'forbidden',
  '404': 'not found',
  '405': 'command not allowed',
  '406': 'optional feature not supported',
  '407': 'missing credentials',
  '415': 'unsupported media type or format',
  '418': 'already exists',
  '425': 'permission denied',
  '500': 'command failed',
  '507': 'atomic failed',
  '516': 'atomic roll back failed',
};

function exec(id: string, uri: string, format: 'chr' | 'null'): string {
  return (
    `<Exec><CmdID>${id}</CmdID><Item><Target><LocURI>${uri}</LocURI></Target>` +
    `<Meta><Format xmlns="syncml:metinf">${format}</Format><Type xmlns="syncml:metinf">text/plain</Type></Meta><Data></Data></Item></Exec>`
  );
}

/** Why `syncml` is not one well-formed Exec/Get/Replace/Add/Delete with targeted items, or undefined. */
export function rawProblem(syncml: Json | undefined): string | undefined {
  if (typeof syncml !== 'string' || syncml.trim() === '') return 'raw needs params.syncml, one SyncML command element';
  if (/<\?/.test(syncml)) return 'params.syncml must be a bare command element, without an XML declaration';
  let root;
  try {
    root = parseXmlTree(syncml, { maxBytes: RAW_MAX_BYTES, maxDepth: 12 });
  } catch (err) {
    return `params.syncml is not accepted: ${err instanceof SyncMlError ? err.message : 'not well-formed XML'}`;
  }
  const opening = /^\s*<([A-Za-z]+)[\s/>]/.exec(syncml)?.[1];
  if (!(RAW_COMMANDS as readonly string[]).includes(root.name) || opening !== root.name) {
    return `params.syncml must be one of ${RAW_COMMANDS.join(', ')} (without a namespace prefix), not ${opening ?? root.name}`;
  }
  const items = root.children.filter((c) => c.name === 'Item');
  if (items.length === 0) return `params.syncml ${root.name} has no Item`;
  for (const item of items) {
    const uri = item.children.find((c) => c.name === 'Target')?.children.find((c) => c.name === 'LocURI')?.text;
    if (!uri) return 'every Item in params.syncml needs Target/LocURI';
    if (uri.startsWith('/')) return `LocURI ${uri} must not start with "/" (use ./Device/... or ./User/...)`;
  }
  if (root.children.filter((c) => c.name === 'CmdID').length > 1) return 'params.syncml has more than one CmdID';
  return undefined;
}

/** The admin's command with its CmdID (if any) removed and ours put first, as the DTD orders it. */
function withCmdId(syncml: string, id: string): string {
  const trimmed = syncml.trim().replace(/<CmdID\s*\/>|<CmdID>[^<]*<\/CmdID>/, '');
  return trimmed.replace(/^(<[A-Za-z]+(?:\s[^>]*)?>)/, `$1<CmdID>${id}</CmdID>`);
}
