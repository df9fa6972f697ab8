/**
 * MS-MDE2 §3.1 discovery: the `Discover` request Windows POSTs to
 * `/EnrollmentServer/Discovery.svc` and the `DiscoverResponse` pointing it at the policy, enrollment
 * and (Federated) authentication services. Shapes: research notes windows-mdm.md sections 1.1–1.2.
 *
 * The codec does not judge the RequestVersion: Fleet's exact-match allow-list broke every fresh
 * Win11 25H2 enrollment when devices started sending 9.0 (fleetdm/fleet#49329). Handlers use
 * `isAcceptedRequestVersion` (any version >= 4.0) and `enrollmentVersionFor`.
 */
import { messageFormat, readSoapRequest, soapEnvelope, type WsAddressing } from './soap';
import { all, child, escapeXml, optionalText, text, type XmlLimits } from './xml';

export const NS_DISCOVERY = 'http://schemas.microsoft.com/windows/management/2012/01/enrollment';
export const ACTION_DISCOVER = `${NS_DISCOVERY}/IDiscoveryService/Discover`;
export const ACTION_DISCOVER_RESPONSE = `${NS_DISCOVERY}/IDiscoveryService/DiscoverResponse`;

/** A Discover request ([MS-MDE2] §3.1.4.1.1.1). */
export interface DiscoverRequest {
  raw: Buffer;
  messageId: string;
  addressing: WsAddressing;
  /** May be empty (programmatic enrollment sends none). */
  emailAddress: string;
  /** Verbatim, e.g. "5.0", "6.0", "9.0". */
  requestVersion: string;
  deviceType?: string;
  applicationVersion?: string;
  /** PRODUCT_* number as text (4 Enterprise, 48 Pro, 101 Home, ...). */
  osEdition?: string;
  /** Federated | Certificate | OnPremise, in the order sent. */
  authPolicies: string[];
}

export function parseDiscover(input: Buffer | string, limits?: XmlLimits): DiscoverRequest {
  const soap = readSoapRequest(input, limits);
  const request = child(soap.body, 'Discover', 'request');
  if (request === undefined) throw messageFormat('Discover/request missing');
  return {
    raw: soap.raw,
    messageId: soap.addressing.messageId,
    addressing: soap.addressing,
    emailAddress: text(child(request, 'EmailAddress')),
    requestVersion: text(child(request, 'RequestVersion')),
    deviceType: optionalText(child(request, 'DeviceType')),
    applicationVersion: optionalText(child(request, 'ApplicationVersion')),
    osEdition: optionalText(child(request, 'OSEdition')),
    authPolicies: all(child(request, 'AuthPolicies'), 'AuthPolicy')
      .map((p) => p.text)
      .filter((p) => p !== ''),
  };
}

/** Lowest RequestVersion accepted (fleet's fix for fleetdm/fleet#49329 accepts anything >= 4.0). */
export const MIN_REQUEST_VERSION = 4.0;
/** Highest EnrollmentVersion advertised (Mattrax answers 5.0; 5.0 makes the RST carry AIKPub/AIKAttestationClaim). */
export const MAX_ENROLLMENT_VERSION = 5.0;
/** Lowest EnrollmentVersion the MS-MDE2 schema enumerates. */
const MIN_ENROLLMENT_VERSION = 3.0;

function versionNumber(v: string): number | undefined {
  const m = /^\s*(\d+)(?:\.(\d+))?/.exec(v);
  if (m === null) return undefined;
  return Number(`${m[1]}.${m[2] ?? '0'}`);
}

/** True for any RequestVersion >= 4.0, including 9.0 and versions not yet seen; an empty one counts as unknown (false). */
export function isAcceptedRequestVersion(requestVersion: string): boolean {
  const n = versionNumber(requestVersion);
  return n !== undefined && n >= MIN_REQUEST_VERSION;
}

/**
 * The EnrollmentVersion to answer: the requested version capped at 5.0 (never above what the device
 * asked for, never above what we implement), floored at the schema's 3.0; "5.0" when unreadable.
 */
export function enrollmentVersionFor(requestVersion: string): string {
  const n = versionNumber(requestVersion);
  const v = n === undefined ? MAX_ENROLLMENT_VERSION : Math.max(MIN_ENROLLMENT_VERSION, Math.min(n, MAX_ENROLLMENT_VERSION));
  return v.toFixed(1);
}

export interface DiscoverResponseInput {
  /** The request's MessageID, verbatim. */
  relatesTo: string;
  authPolicy: 'OnPremise' | 'Federated';
  enrollmentVersion: string;
  policyServiceUrl: string;
  enrollmentServiceUrl: string;
  /** Required when authPolicy is Federated. */
  authenticationServiceUrl?: string;
  /** @defaultValue a random UUID */
  activityId?: string;
}

/** A DiscoverResponse ([MS-MDE2] §3.1.4.1.1.2) as the notes' section 1.2 shows it. */
export function buildDiscoverResponse(p: DiscoverResponseInput): string {
  if (p.authPolicy === 'Federated' && !p.authenticationServiceUrl) {
    throw new Error('a Federated DiscoverResponse needs authenticationServiceUrl');
  }
  const auth = p.authenticationServiceUrl
    ? `<AuthenticationServiceUrl>${escapeXml(p.authenticationServiceUrl)}</AuthenticationServiceUrl>`
    : '';
  const body =
    `<DiscoverResponse xmlns="${NS_DISCOVERY}"><DiscoverResult>` +
    `<AuthPolicy>${p.authPolicy}</AuthPolicy>` +
    `<EnrollmentVersion>${escapeXml(p.enrollmentVersion)}</EnrollmentVersion>` +
    `<EnrollmentPolicyServiceUrl>${escapeXml(p.policyServiceUrl)}</EnrollmentPolicyServiceUrl>` +
    `<EnrollmentServiceUrl>${escapeXml(p.enrollmentServiceUrl)}</EnrollmentServiceUrl>` +
    auth +
    `</DiscoverResult></DiscoverResponse>`;
  return soapEnvelope({
    action: ACTION_DISCOVER_RESPONSE,
    relatesTo: p.relatesTo,
    activityId: p.activityId ?? true,
    bodySchemaNamespaces: true,
    body,
  });
}
