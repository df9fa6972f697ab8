/**
 * SOAP 1.2 envelope pieces shared by the enrollment codecs: reading the WS-Addressing header and the
 * WS-Security credential Windows sends (UsernameToken for OnPremise, BinarySecurityToken for
 * Federated/Entra; research notes windows-mdm.md sections 1.4 and 1.6), and writing reply envelopes.
 * Everything here reads local names, so prefix spellings do not matter.
 */
import { randomUUID } from 'node:crypto';
import { WindowsFault, faultFromXmlError } from './faults';
import { all, attr, child, escapeXml, isXmlError, optionalText, parseXml, text, type XmlElement, type XmlLimits } from './xml';

export const NS_SOAP = 'http://www.w3.org/2003/05/soap-envelope';
export const NS_ADDRESSING = 'http://www.w3.org/2005/08/addressing';
export const NS_WSSE = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
export const NS_WSU = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd';
export const NS_DIAGNOSTICS = 'http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics';
export const NS_XSI = 'http://www.w3.org/2001/XMLSchema-instance';
export const NS_XSD = 'http://www.w3.org/2001/XMLSchema';
export const ENCODING_BASE64 = `${NS_WSSE}#base64binary`;

/** BinarySecurityToken ValueType of the token our federated STS page hands out (MS-MDE2 §3.2). */
export const VALUE_TYPE_USER_TOKEN = 'http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken';
/** BinarySecurityToken ValueType of an Entra access token (Entra join / Autopilot). */
export const VALUE_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';

/** WS-Addressing header fields; texts are trimmed but otherwise verbatim (RelatesTo must echo MessageID). */
export interface WsAddressing {
  action: string;
  messageId: string;
  to?: string;
}

/** A wsse:BinarySecurityToken; `value` is its base64 text with whitespace removed. */
export interface BinaryToken {
  valueType: string;
  encodingType?: string;
  value: string;
}

/** The credential found in wsse:Security (all absent when there is no Security header). */
export interface SecurityCredentials {
  username?: string;
  password?: string;
  /** e.g. `...username-token-profile-1.0#PasswordText` */
  passwordType?: string;
  binaryToken?: BinaryToken;
}

export interface SoapRequest {
  raw: Buffer;
  envelope: XmlElement;
  body: XmlElement;
  addressing: WsAddressing;
  security: SecurityCredentials;
}

/**
 * Parses a SOAP request body. Throws only `WindowsFault` (MessageFormat): refused XML, a root that
 * is not an Envelope, a missing Body or a missing MessageID.
 */
export function readSoapRequest(input: Buffer | string, limits?: XmlLimits): SoapRequest {
  const raw = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  let envelope: XmlElement;
  try {
    envelope = parseXml(raw, limits);
  } catch (err) {
    if (isXmlError(err)) throw faultFromXmlError(err);
    throw err;
  }
  if (envelope.name !== 'Envelope') throw messageFormat(`expected a SOAP Envelope, got ${envelope.name}`);
  const body = child(envelope, 'Body');
  if (body === undefined) throw messageFormat('SOAP Body missing');
  const header = child(envelope, 'Header');
  const messageId = text(child(header, 'MessageID'));
  if (!messageId) throw messageFormat('WS-Addressing MessageID missing');
  const addressing: WsAddressing = {
    action: text(child(header, 'Action')),
    messageId,
    to: optionalText(child(header, 'To')),
  };
  return { raw, envelope, body, addressing, security: readSecurity(child(header, 'Security')) };
}

/** Reads UsernameToken and/or BinarySecurityToken from a wsse:Security header. */
export function readSecurity(security: XmlElement | undefined): SecurityCredentials {
  const out: SecurityCredentials = {};
  const token = child(security, 'UsernameToken');
  if (token !== undefined) {
    const password = child(token, 'Password');
    out.username = text(child(token, 'Username'));
    out.password = text(password);
    out.passwordType = attr(password, 'Type');
  }
  const bst = all(security, 'BinarySecurityToken')[0];
  if (bst !== undefined) out.binaryToken = readBinaryToken(bst);
  return out;
}

export function readBinaryToken(bst: XmlElement): BinaryToken {
  return {
    valueType: attr(bst, 'ValueType') ?? '',
    encodingType: attr(bst, 'EncodingType'),
    value: bst.text.replace(/\s+/g, ''),
  };
}

/** Strict base64 check for token texts (whitespace already removed). */
export function isBase64(s: string): boolean {
  return s.length > 0 && s.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(s);
}

export function messageFormat(textForLogs: string, cause?: unknown): WindowsFault {
  return new WindowsFault('MessageFormat', textForLogs, undefined, 500, { cause });
}

export interface EnvelopeParts {
  action: string;
  relatesTo: string;
  /** Adds `<ActivityId CorrelationId=...>` (DiscoverResponse does, as fleet `NewSoapResponse`). */
  activityId?: string | true;
  /** Extra namespace declarations on s:Envelope, e.g. `{ u: NS_WSU }`. */
  namespaces?: Record<string, string>;
  /** Header XML appended after RelatesTo. */
  headerExtra?: string;
  /** Declare xsi/xsd on s:Body (policy and discovery responses do). */
  bodySchemaNamespaces?: boolean;
  body: string;
}

/** Writes a SOAP 1.2 reply envelope (no XML declaration, no whitespace between elements). */
export function soapEnvelope(p: EnvelopeParts): string {
  const ns = Object.entries(p.namespaces ?? {})
    .map(([prefix, uri]) => ` xmlns:${prefix}="${escapeXml(uri)}"`)
    .join('');
  const activity = p.activityId === undefined ? '' : activityIdXml(p.activityId === true ? randomUUID() : p.activityId);
  const bodyNs = p.bodySchemaNamespaces ? ` xmlns:xsi="${NS_XSI}" xmlns:xsd="${NS_XSD}"` : '';
  return (
    `<s:Envelope xmlns:s="${NS_SOAP}" xmlns:a="${NS_ADDRESSING}"${ns}>` +
    `<s:Header>` +
    `<a:Action s:mustUnderstand="1">${escapeXml(p.action)}</a:Action>` +
    activity +
    `<a:RelatesTo>${escapeXml(p.relatesTo)}</a:RelatesTo>` +
    (p.headerExtra ?? '') +
    `</s:Header>` +
    `<s:Body${bodyNs}>${p.body}</s:Body>` +
    `</s:Envelope>`
  );
}

function activityIdXml(id: string): string {
  const v = escapeXml(id);
  return `<ActivityId CorrelationId="${v}" xmlns="${NS_DIAGNOSTICS}">${v}</ActivityId>`;
}

/** `<tag>escaped text</tag>`, or `<tag xsi:nil="true"/>` for undefined. */
export function el(tag: string, value: string | number | boolean | undefined): string {
  return value === undefined ? `<${tag} xsi:nil="true"/>` : `<${tag}>${escapeXml(String(value))}</${tag}>`;
}
