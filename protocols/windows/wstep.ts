/**
 * MS-WSTEP as MS-MDE2 §3.4 uses it: the RequestSecurityToken carrying the device's PKCS#10 and the
 * AdditionalContext items, and the RequestSecurityTokenResponseCollection carrying the base64
 * wap-provisioningdoc. Shapes: research notes windows-mdm.md sections 1.6–1.7 (fleet
 * `pkg/mdm/mdmtest/windows.go` `Enroll()`, oscartbeaumont `mde_enrollment.go`).
 *
 * The codec does not judge context items (a missing DeviceID is the handler's InvalidEnrollmentData
 * fault); it keeps every item, including the repeated MAC entries (13 on one real 25H2 host).
 */
import { NS_ENROLLMENT_PKI, WindowsFault } from './faults';
import {
  ENCODING_BASE64,
  isBase64,
  messageFormat,
  NS_WSSE,
  NS_WSU,
  readBinaryToken,
  readSoapRequest,
  soapEnvelope,
  type SecurityCredentials,
  type WsAddressing,
} from './soap';
import { all, attr, child, escapeXml, text, type XmlLimits } from './xml';

export const NS_WS_TRUST = 'http://docs.oasis-open.org/ws-sx/ws-trust/200512';
export const ACTION_RST = `${NS_ENROLLMENT_PKI}/RST/wstep`;
export const ACTION_RSTRC = `${NS_ENROLLMENT_PKI}/RSTRC/wstep`;
export const TOKEN_TYPE_DEVICE_ENROLLMENT = 'http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken';
export const REQUEST_TYPE_ISSUE = `${NS_WS_TRUST}/Issue`;
export const REQUEST_TYPE_RENEW = `${NS_WS_TRUST}/Renew`;
export const VALUE_TYPE_PKCS10 = `${NS_ENROLLMENT_PKI}#PKCS10`;
/** Arrives on ROBO renewal: a CMS signed by the previous certificate. */
export const VALUE_TYPE_PKCS7 = `${NS_ENROLLMENT_PKI}#PKCS7`;
export const VALUE_TYPE_PROVISION_DOC = 'http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc';

export interface ContextItem {
  name: string;
  value: string;
}

/** A RequestSecurityToken ([MS-MDE2] §3.4.4.1.1.1). */
export interface RequestSecurityToken {
  raw: Buffer;
  messageId: string;
  addressing: WsAddressing;
  security: SecurityCredentials;
  tokenType: string;
  /** `.../ws-trust/200512/Issue`, or `/Renew` for ROBO renewal. */
  requestType: string;
  /** The body BinarySecurityToken's ValueType (PKCS10, or PKCS7 on renewal). */
  csrValueType: string;
  /** DER bytes of the PKCS#10 (or PKCS#7) from the body BinarySecurityToken. */
  csr: Buffer;
  /** AdditionalContext Name → Value; the first value wins for repeated names (see `contextItems`). */
  context: Record<string, string>;
  /** Every ContextItem in document order. */
  contextItems: ContextItem[];
}

export function parseRequestSecurityToken(input: Buffer | string, limits?: XmlLimits): RequestSecurityToken {
  const soap = readSoapRequest(input, limits);
  const rst = child(soap.body, 'RequestSecurityToken');
  if (rst === undefined) throw messageFormat('RequestSecurityToken missing');
  const bst = child(rst, 'BinarySecurityToken');
  if (bst === undefined) throw messageFormat('RequestSecurityToken has no BinarySecurityToken');
  const token = readBinaryToken(bst);
  if (!isBase64(token.value)) {
    throw new WindowsFault('CertificateRequest', 'the certificate request is not base64');
  }
  const contextItems = all(child(rst, 'AdditionalContext'), 'ContextItem').map((item) => ({
    name: attr(item, 'Name') ?? '',
    value: text(child(item, 'Value')),
  }));
  const context = Object.create(null) as Record<string, string>;
  for (const { name, value } of contextItems) {
    if (name !== '' && !(name in context)) context[name] = value;
  }
  return {
    raw: soap.raw,
    messageId: soap.addressing.messageId,
    addressing: soap.addressing,
    security: soap.security,
    tokenType: text(child(rst, 'TokenType')),
    requestType: text(child(rst, 'RequestType')),
    csrValueType: token.valueType,
    csr: Buffer.from(token.value, 'base64'),
    context,
    contextItems,
  };
}

export interface RstrcInput {
  /** The request's MessageID, verbatim. */
  relatesTo: string;
  /** The wap-provisioningdoc XML (see provisioning.ts). */
  provisioningXml: string;
  /** When given, adds the wsse:Security u:Timestamp (now ± 5 minutes, as fleet sends). */
  now?: Date;
}

const FIVE_MINUTES_MS = 5 * 60 * 1000;

/** Second-precision UTC timestamp (`2024-01-02T03:04:05Z`). */
function utc(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The RequestSecurityTokenResponseCollection with the base64 provisioning document (RequestID 0). */
export function buildRequestSecurityTokenResponseCollection(p: RstrcInput): string {
  const security =
    p.now === undefined
      ? ''
      : `<o:Security xmlns:o="${NS_WSSE}" s:mustUnderstand="1">` +
        `<u:Timestamp u:Id="_0"><u:Created>${utc(new Date(p.now.getTime() - FIVE_MINUTES_MS))}</u:Created>` +
        `<u:Expires>${utc(new Date(p.now.getTime() + FIVE_MINUTES_MS))}</u:Expires></u:Timestamp>` +
        `</o:Security>`;
  const doc = Buffer.from(p.provisioningXml, 'utf8').toString('base64');
  const body =
    `<RequestSecurityTokenResponseCollection xmlns="${NS_WS_TRUST}">` +
    `<RequestSecurityTokenResponse>` +
    `<TokenType>${TOKEN_TYPE_DEVICE_ENROLLMENT}</TokenType>` +
    `<DispositionMessage xmlns="${NS_ENROLLMENT_PKI}"/>` +
    `<RequestedSecurityToken>` +
    `<BinarySecurityToken xmlns="${NS_WSSE}" ValueType="${VALUE_TYPE_PROVISION_DOC}" EncodingType="${escapeXml(ENCODING_BASE64)}">${doc}</BinarySecurityToken>` +
    `</RequestedSecurityToken>` +
    `<RequestID xmlns="${NS_ENROLLMENT_PKI}">0</RequestID>` +
    `</RequestSecurityTokenResponse>` +
    `</RequestSecurityTokenResponseCollection>`;
  return soapEnvelope({
    action: ACTION_RSTRC,
    relatesTo: p.relatesTo,
    namespaces: { u: NS_WSU },
    headerExtra: security,
    body,
  });
}
