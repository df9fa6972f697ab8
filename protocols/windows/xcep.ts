/**
 * MS-XCEP GetPolicies as MS-MDE2 §3.3 uses it: the device asks which key and hash to use for its CSR.
 * Only minimalKeyLength, hashAlgorithmOIDReference (with its OID) and cryptoProviders are consumed
 * by Windows (research notes windows-mdm.md sections 1.4–1.5; shape from fleet `NewGetPoliciesResponse`).
 */
import { el, messageFormat, NS_WSU, readSoapRequest, soapEnvelope, type SecurityCredentials, type WsAddressing } from './soap';
import { child, optionalText, type XmlLimits } from './xml';

export const NS_POLICY = 'http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy';
export const ACTION_GET_POLICIES = `${NS_POLICY}/IPolicy/GetPolicies`;
export const ACTION_GET_POLICIES_RESPONSE = `${NS_POLICY}/IPolicy/GetPoliciesResponse`;

/** SHA-256 (szOID_NIST_sha256). */
export const OID_SHA256 = '2.16.840.1.101.3.4.2.1';

/** A GetPolicies request (MS-XCEP §3.1.4.1.1.1). */
export interface GetPoliciesRequest {
  raw: Buffer;
  messageId: string;
  addressing: WsAddressing;
  security: SecurityCredentials;
  /** `client/preferredLanguage`, when not nil. */
  preferredLanguage?: string;
  tpmManufacturer?: string;
  tpmFirmwareVersion?: string;
}

export function parseGetPolicies(input: Buffer | string, limits?: XmlLimits): GetPoliciesRequest {
  const soap = readSoapRequest(input, limits);
  const getPolicies = child(soap.body, 'GetPolicies');
  if (getPolicies === undefined) throw messageFormat('GetPolicies missing');
  const client = child(getPolicies, 'client');
  return {
    raw: soap.raw,
    messageId: soap.addressing.messageId,
    addressing: soap.addressing,
    security: soap.security,
    preferredLanguage: optionalText(child(client, 'preferredLanguage')),
    tpmManufacturer: optionalText(child(client, 'TPMManufacturer')),
    tpmFirmwareVersion: optionalText(child(client, 'TPMFirmwareVersion')),
  };
}

export interface GetPoliciesResponseInput {
  /** The request's MessageID, verbatim. */
  relatesTo: string;
  /** @defaultValue 2048 */
  minimalKeyLength?: number;
  /** @defaultValue OID_SHA256 */
  hashAlgorithmOid?: string;
  /** @defaultValue 'szOID_NIST_sha256' when the OID is SHA-256 */
  hashAlgorithmName?: string;
  /** attributes/commonName. @defaultValue 'MooringAttributes' */
  commonName?: string;
  /** Issued certificate lifetime advertised. @defaultValue 1 year */
  validityPeriodSeconds?: number;
  /** @defaultValue 180 days */
  renewalPeriodSeconds?: number;
  /** Key storage providers in preference order; the Platform (TPM) provider first gets a TPM-backed key when available. */
  cryptoProviders?: string[];
}

const DEFAULT_PROVIDERS = ['Microsoft Platform Crypto Provider', 'Microsoft Software Key Storage Provider'];

/** The body every device gets (no policy option set), made once. */
let defaultBody: string | undefined;

/** A GetPoliciesResponse with one policy (policySchema 3, as MS-MDE2 §3.3.4.1.1.2 requires). */
export function buildGetPoliciesResponse(p: GetPoliciesResponseInput): string {
  const { relatesTo, ...policy } = p;
  const body = Object.keys(policy).length ? policiesBody(policy) : (defaultBody ??= policiesBody(policy));
  return soapEnvelope({
    action: ACTION_GET_POLICIES_RESPONSE,
    relatesTo,
    namespaces: { u: NS_WSU },
    bodySchemaNamespaces: true,
    body,
  });
}

function policiesBody(p: Omit<GetPoliciesResponseInput, 'relatesTo'>): string {
  const oid = p.hashAlgorithmOid ?? OID_SHA256;
  const oidName = p.hashAlgorithmName ?? (oid === OID_SHA256 ? 'szOID_NIST_sha256' : undefined);
  const providers = (p.cryptoProviders ?? DEFAULT_PROVIDERS).map((x) => el('provider', x)).join('');
  const attributes =
    `<attributes>` +
    el('commonName', p.commonName ?? 'MooringAttributes') +
    el('policySchema', 3) +
    `<certificateValidity>` +
    el('validityPeriodSeconds', p.validityPeriodSeconds ?? 31536000) +
    el('renewalPeriodSeconds', p.renewalPeriodSeconds ?? 15552000) +
    `</certificateValidity>` +
    `<permission>${el('enroll', true)}${el('autoEnroll', false)}</permission>` +
    `<privateKeyAttributes>` +
    el('minimalKeyLength', p.minimalKeyLength ?? 2048) +
    ['keySpec', 'keyUsageProperty', 'permissions', 'algorithmOIDReference'].map((t) => el(t, undefined)).join('') +
    `<cryptoProviders>${providers}</cryptoProviders>` +
    `</privateKeyAttributes>` +
    `<revision>${el('majorRevision', 101)}${el('minorRevision', 0)}</revision>` +
    ['supersededPolicies', 'privateKeyFlags', 'subjectNameFlags', 'enrollmentFlags', 'generalFlags'].map((t) => el(t, undefined)).join('') +
    el('hashAlgorithmOIDReference', 0) +
    ['rARequirements', 'keyArchivalAttributes', 'extensions'].map((t) => el(t, undefined)).join('') +
    `</attributes>`;
  return (
    `<GetPoliciesResponse xmlns="${NS_POLICY}">` +
    `<response>` +
    `<policyID/>` +
    ['policyFriendlyName', 'nextUpdateHours', 'policiesNotChanged'].map((t) => el(t, undefined)).join('') +
    `<policies><policy>${el('policyOIDReference', 0)}${el('cAs', undefined)}${attributes}</policy></policies>` +
    `</response>` +
    el('cAs', undefined) +
    `<oIDs><oID>${el('value', oid)}${el('group', 1)}${el('oIDReferenceID', 0)}${el('defaultName', oidName)}</oID></oIDs>` +
    `</GetPoliciesResponse>`
  );
}
