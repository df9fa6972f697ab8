/**
 * SOAP 1.2 faults of the Windows enrollment services ([MS-MDE2] §2.2.10; research notes windows-mdm.md
 * section 1.9). Handlers throw `WindowsFault`; the transport renders it once with `toXml()` (lesson L7).
 *
 * Wire shape: `s:Code/s:Value` is `s:Receiver` (Microsoft's sample and go-microsoft-dm
 * `mdmprotocol/soap/fault.go` use it for every subcode), the subcode is `s:<Name>` for the five
 * MS-MDE2 subcodes and `a:<Name>` in the WCF dispatcher namespace for InternalServiceFault and
 * InvalidSecurity, and the optional detail is `DeviceEnrollmentServiceError` with `ErrorType`,
 * `Message`, `TraceId` in the enrollment namespace: the Windows client reads it with the XPath
 * `//s:Fault//s:Detail//e:DeviceEnrollmentServiceError//e:ErrorType`, so the casing matters.
 * Reason text reaches logs and, for CustomServerError, the user: keep it generic.
 */
import { randomUUID } from 'node:crypto';
import type { RefusalReason } from '../../src/core/enrollment-policy';
import { escapeXml, type XmlError } from './xml';

const NS_SOAP = 'http://www.w3.org/2003/05/soap-envelope';
const NS_ADDRESSING = 'http://www.w3.org/2005/08/addressing';
const NS_DIAGNOSTICS = 'http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics';
const NS_DISPATCHER = 'http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher';
export const NS_ENROLLMENT_PKI = 'http://schemas.microsoft.com/windows/pki/2009/01/enrollment';

/** The reply action Microsoft's fault samples carry whatever the request was. */
export const ACTION_FAULT_DEFAULT = 'http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep';

/** MS-MDE2 §2.2.10 subcodes. `InvalidSecurityToken` is accepted as an alias of `InvalidSecurity`. */
export type FaultSubcode =
  | 'MessageFormat'
  | 'Authentication'
  | 'Authorization'
  | 'CertificateRequest'
  | 'EnrollmentServer'
  | 'InternalServiceFault'
  | 'InvalidSecurity'
  | 'InvalidSecurityToken';

/** The HRESULT the Windows client reports for each subcode. */
export const SUBCODE_HRESULT: Record<FaultSubcode, number> = {
  MessageFormat: 0x80180001,
  Authentication: 0x80180002,
  Authorization: 0x80180003,
  CertificateRequest: 0x80180004,
  EnrollmentServer: 0x80180005,
  InternalServiceFault: 0x80180006,
  InvalidSecurity: 0x80180007,
  InvalidSecurityToken: 0x80180007,
};

/** MS-MDE2 §2.2.10 `DeviceEnrollmentServiceError/ErrorType` values. */
export type FaultErrorType =
  | 'DeviceCapReached'
  | 'DeviceNotSupported'
  | 'NotSupported'
  | 'NotEligibleToRenew'
  | 'InMaintenance'
  | 'UserLicense'
  | 'InvalidEnrollmentData'
  | 'CustomServerError';

export const ERROR_TYPE_HRESULT: Record<FaultErrorType, number> = {
  DeviceCapReached: 0x80180013,
  DeviceNotSupported: 0x80180014,
  NotSupported: 0x80180015,
  NotEligibleToRenew: 0x80180016,
  InMaintenance: 0x80180017,
  UserLicense: 0x80180018,
  InvalidEnrollmentData: 0x80180019,
  CustomServerError: 0x80180032,
};

export interface FaultDetail {
  type: FaultErrorType;
  /** Defaults to the fault text. */
  message?: string;
}

export interface SoapFaultInput {
  /** The request's MessageID, echoed verbatim; omitted when the request could not be read. */
  relatesTo?: string;
  /** Reply action of the failing operation. @defaultValue ACTION_FAULT_DEFAULT */
  action?: string;
  subcode: FaultSubcode;
  detail?: FaultDetail;
  /** The s:Reason text. */
  text: string;
  /** Written as ActivityId and TraceId. @defaultValue a random UUID */
  traceId?: string;
  /** SOAP 1.2 fault code. @defaultValue 'Receiver' (what Microsoft's samples send) */
  code?: 'Receiver' | 'Sender';
}

function wireSubcode(subcode: FaultSubcode): string {
  switch (subcode) {
    case 'MessageFormat':
    case 'Authentication':
    case 'Authorization':
    case 'CertificateRequest':
    case 'EnrollmentServer':
      return `<s:Value>s:${subcode}</s:Value>`;
    case 'InternalServiceFault':
      return `<s:Value xmlns:a="${NS_DISPATCHER}">a:InternalServiceFault</s:Value>`;
    case 'InvalidSecurity':
    case 'InvalidSecurityToken':
      return `<s:Value xmlns:a="${NS_DISPATCHER}">a:InvalidSecurity</s:Value>`;
    default: {
      const never: never = subcode;
      throw new Error(`unknown fault subcode ${String(never)}`);
    }
  }
}

/** Renders a SOAP 1.2 fault envelope. */
export function buildSoapFault(input: SoapFaultInput): string {
  const trace = escapeXml(input.traceId ?? randomUUID());
  const action = escapeXml(input.action ?? ACTION_FAULT_DEFAULT);
  const relates = input.relatesTo === undefined ? '' : `<a:RelatesTo>${escapeXml(input.relatesTo)}</a:RelatesTo>`;
  const detail = input.detail
    ? `<s:Detail><DeviceEnrollmentServiceError xmlns="${NS_ENROLLMENT_PKI}">` +
      `<ErrorType>${input.detail.type}</ErrorType>` +
      `<Message>${escapeXml(input.detail.message ?? input.text)}</Message>` +
      `<TraceId>${trace}</TraceId>` +
      `</DeviceEnrollmentServiceError></s:Detail>`
    : '';
  return (
    `<s:Envelope xmlns:s="${NS_SOAP}" xmlns:a="${NS_ADDRESSING}">` +
    `<s:Header>` +
    `<a:Action s:mustUnderstand="1">${action}</a:Action>` +
    `<ActivityId CorrelationId="${trace}" xmlns="${NS_DIAGNOSTICS}">${trace}</ActivityId>` +
    relates +
    `</s:Header>` +
    `<s:Body><s:Fault>` +
    `<s:Code><s:Value>s:${input.code ?? 'Receiver'}</s:Value><s:Subcode>${wireSubcode(input.subcode)}</s:Subcode></s:Code>` +
    `<s:Reason><s:Text xml:lang="en-US">${escapeXml(input.text)}</s:Text></s:Reason>` +
    detail +
    `</s:Fault></s:Body></s:Envelope>`
  );
}

/**
 * A refusal a Windows enrollment handler can throw from anywhere; the transport answers it with
 * `toXml()` and `httpStatus` (go-microsoft-dm answers faults with 500, fleet with 200; both reach the
 * enrollment UI). `cause` is for logs only and never reaches the wire.
 */
export class WindowsFault extends Error {
  readonly hresult: number;

  constructor(
    readonly subcode: FaultSubcode,
    readonly text: string,
    readonly detail?: FaultDetail,
    readonly httpStatus: number = 500,
    options?: { cause?: unknown },
  ) {
    super(text, options);
    this.name = 'WindowsFault';
    this.hresult = detail ? ERROR_TYPE_HRESULT[detail.type] : SUBCODE_HRESULT[subcode];
  }

  toXml(ctx: { relatesTo?: string; action?: string; traceId?: string } = {}): string {
    return buildSoapFault({ ...ctx, subcode: this.subcode, detail: this.detail, text: this.text });
  }
}

export function isWindowsFault(err: unknown): err is WindowsFault {
  return err instanceof WindowsFault;
}

/**
 * Maps a refused XML body to a MessageFormat fault. Status stays 500: Windows reports a bare 4xx as
 * an HTTP error (0x80190190 = HTTP 400 at discovery, fleetdm/fleet#34993) instead of reading the fault.
 */
export function faultFromXmlError(err: XmlError): WindowsFault {
  return new WindowsFault('MessageFormat', `the request could not be read (${err.reason})`, undefined, 500, { cause: err });
}

/**
 * An enrollment the rules refused, as the fault Windows turns into the right message (MS-MDE2
 * 3.1.4.1.5): too many devices -> DeviceCapReached; platform, version or maker -> DeviceNotSupported;
 * token -> Authentication; the rest a custom message the enrollment screen shows as written.
 */
export function refusalFault(reason: RefusalReason, message: string, cause?: unknown): WindowsFault {
  switch (reason) {
    case 'device_cap_reached':
      return new WindowsFault('Authorization', message, { type: 'DeviceCapReached' }, 500, { cause });
    case 'platform_blocked':
    case 'os_version_not_allowed':
    case 'manufacturer_blocked':
      return new WindowsFault('Authorization', message, { type: 'DeviceNotSupported' }, 500, { cause });
    case 'token_expired':
    case 'token_revoked':
    case 'token_used_up':
      return new WindowsFault('Authentication', message, undefined, 500, { cause });
    default:
      return new WindowsFault('Authorization', message, { type: 'CustomServerError' }, 500, { cause });
  }
}
