/**
 * Apple MDM command reports (the ServerURL): what a device says about the last command and that it
 * is ready for the next. Pure: no I/O.
 *
 * Shape per NanoMDM `mdm/command.go: CommandResults` (research notes apple-mdm.md §1.4): enrollment
 * keys, `Status`, `CommandUUID`, `ErrorChain`, plus command-specific keys (`QueryResponses`, ...).
 * A report without `Status` is refused (`ReportError`, the handler answers 400).
 * See https://developer.apple.com/documentation/devicemanagement/sending-mdm-commands-to-a-device
 */
import { CheckinError, optString, readEnrollmentKeys, resolveEnrollment, type EnrollmentKeys, type ResolvedEnrollment } from './checkin';
import { decodePlistDict, type PlistDict, type PlistLimits } from './plist';

export const REPORT_STATUSES = ['Idle', 'Acknowledged', 'Error', 'CommandFormatError', 'NotNow'] as const;
export type ReportStatus = (typeof REPORT_STATUSES)[number];

/** One entry of `ErrorChain`, outermost error first. */
export interface ErrorChainItem {
  ErrorCode: number;
  ErrorDomain: string;
  LocalizedDescription?: string;
  USEnglishDescription?: string;
}

export interface CommandReport extends EnrollmentKeys {
  status: ReportStatus;
  /** Absent on `Idle`. */
  commandUuid?: string;
  errorChain?: ErrorChainItem[];
  /** Everything else the device sent (e.g. `QueryResponses`, `ProfileList`, `MessageResult`). */
  fields: PlistDict;
  /** The channel the report came on. */
  enrollment: ResolvedEnrollment;
  /** The exact body the device sent. */
  raw: Buffer;
}

export type ReportErrorReason = 'missing_status' | 'unknown_status' | 'missing_command_uuid' | 'bad_error_chain' | 'bad_enrollment';

export class ReportError extends Error {
  constructor(
    readonly reason: ReportErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ReportError';
  }
}

const ENVELOPE_KEYS = new Set(['Status', 'CommandUUID', 'ErrorChain', 'UDID', 'UserID', 'UserShortName', 'UserLongName', 'EnrollmentID', 'EnrollmentUserID']);

function readErrorChain(value: unknown): ErrorChainItem[] {
  if (!Array.isArray(value)) throw new ReportError('bad_error_chain', 'ErrorChain must be an array');
  return value.map((item: unknown, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item) || Buffer.isBuffer(item)) {
      throw new ReportError('bad_error_chain', `ErrorChain[${i}] must be a dictionary`);
    }
    const e = item as Record<string, unknown>;
    const code = typeof e.ErrorCode === 'number' ? e.ErrorCode : typeof e.ErrorCode === 'string' ? Number(e.ErrorCode) : NaN;
    const out: ErrorChainItem = { ErrorCode: Number.isFinite(code) ? code : 0, ErrorDomain: typeof e.ErrorDomain === 'string' ? e.ErrorDomain : '' };
    if (typeof e.LocalizedDescription === 'string') out.LocalizedDescription = e.LocalizedDescription;
    if (typeof e.USEnglishDescription === 'string') out.USEnglishDescription = e.USEnglishDescription;
    return out;
  });
}

/** Decodes a command report. Throws `PlistError` (bounds, syntax) or `ReportError`. */
export function decodeReport(raw: Buffer, limits?: PlistLimits): CommandReport {
  const d = decodePlistDict(raw, limits);
  const status = d.Status;
  if (status === undefined || status === '') throw new ReportError('missing_status', 'the report has no Status');
  if (typeof status !== 'string' || !(REPORT_STATUSES as readonly string[]).includes(status)) {
    throw new ReportError('unknown_status', `unknown report Status ${JSON.stringify(status)}`);
  }
  let keys: EnrollmentKeys;
  let enrollment: ResolvedEnrollment;
  let commandUuid: string | undefined;
  try {
    keys = readEnrollmentKeys(d);
    enrollment = resolveEnrollment(keys);
    commandUuid = optString(d, 'CommandUUID');
  } catch (err) {
    if (err instanceof CheckinError) throw new ReportError('bad_enrollment', err.message, { cause: err });
    throw err;
  }
  if (status !== 'Idle' && !commandUuid) throw new ReportError('missing_command_uuid', `a ${status} report needs CommandUUID`);
  const fields: PlistDict = Object.fromEntries(Object.entries(d).filter(([k]) => !ENVELOPE_KEYS.has(k)));
  const report: CommandReport = { ...keys, status: status as ReportStatus, fields, enrollment, raw };
  if (commandUuid) report.commandUuid = commandUuid;
  if (d.ErrorChain !== undefined) report.errorChain = readErrorChain(d.ErrorChain);
  return report;
}

/** Whether a report names a command (everything but `Idle`). */
export const reportsOnCommand = (r: CommandReport): r is CommandReport & { commandUuid: string } => r.status !== 'Idle' && !!r.commandUuid;
