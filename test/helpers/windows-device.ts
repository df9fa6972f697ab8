/**
 * A simulated Windows 11 MDM client speaking MS-MDE2 enrollment and OMA-DM management as a real one
 * does (research notes windows-mdm.md sections 1.1–1.8 and 2.1–2.3, fixtures/windows): it discovers
 * the services, asks for the certificate policy, enrolls with a PKCS#10 made from its own RSA-2048 key
 * (Windows subject form `CN=<GUID>!<DeviceID>`, EKU clientAuth, 1.3.6.1.4.1.311.66.1.0 = DeviceID),
 * checks the provisioning document the way the device's configuration manager would, then opens
 * OMA-DM sessions over HTTPS with the issued identity certificate as its TLS client certificate and
 * answers what the server sends.
 *
 * Every request goes over TLS to 127.0.0.1 with the URL's host name as SNI and Host header, so the
 * server sees the host a device would send and the device checks the server certificate against the
 * CA it trusts.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { all, attr, child, escapeXml, parseXml, text, type XmlElement } from '../../protocols/windows/xml';
import { parseSyncMl, type SyncMlCommand, type SyncMlItem, type SyncMlMessage } from '../../protocols/windows/syncml';
import { ensureTlsCertificate } from '../../src/pki/ca';
import type { Mooring } from '../../src/main';

x509.cryptoProvider.set(crypto.webcrypto as never);

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;

const NS = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  addressing: 'http://www.w3.org/2005/08/addressing',
  wsu: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
  wsse: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
  trust: 'http://docs.oasis-open.org/ws-sx/ws-trust/200512',
  authorization: 'http://schemas.xmlsoap.org/ws/2006/12/authorization',
  discovery: 'http://schemas.microsoft.com/windows/management/2012/01/enrollment',
  policy: 'http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy',
  enrollment: 'http://schemas.microsoft.com/windows/pki/2009/01/enrollment',
} as const;
const PASSWORD_TEXT = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText';
const BASE64_BINARY = `${NS.wsse}#base64binary`;
const USER_TOKEN = 'http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken';
const PROVISION_DOC = 'http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc';
export const SOAP_CONTENT_TYPE = 'application/soap+xml; charset=utf-8';
export const SYNCML_CONTENT_TYPE = 'application/vnd.syncml.dm+xml';

/** OnPremise (email + enrollment token as password) or Federated (the token the sign-in page posted back). */
export type WindowsCredential = { password: string; username?: string } | { federated: string };

export interface HttpAnswer {
  status: number;
  contentType?: string;
  contentLength?: string;
  transferEncoding?: string;
  body: string;
}

/** A SOAP 1.2 fault as the device reads it. */
export interface SoapFault {
  code: string;
  /** Subcode local name: MessageFormat, Authentication, CertificateRequest, InvalidSecurity, ... */
  subcode: string;
  reason: string;
  errorType?: string;
}

export interface DiscoverAnswer extends HttpAnswer {
  getStatus: number;
  getBody: string;
  fault?: SoapFault;
  relatesTo?: string;
  messageId: string;
  result?: {
    authPolicy: string;
    enrollmentVersion?: string;
    policyServiceUrl?: string;
    enrollmentServiceUrl: string;
    authenticationServiceUrl?: string;
  };
}

export interface PoliciesAnswer extends HttpAnswer {
  fault?: SoapFault;
  relatesTo?: string;
  minimalKeyLength?: number;
  hashAlgorithmOid?: string;
}

/** What the device took from a successful enrollment's provisioning document. */
export interface Provisioning {
  xml: string;
  rootThumbprint: string;
  identityThumbprint: string;
  identityStore: 'User' | 'System';
  identityCertPem: string;
  managementUrl: string;
  providerId: string;
  clientNonce: string;
  serverNonce: string;
  entDmId?: string;
  upn?: string;
}

export interface EnrollAnswer extends HttpAnswer {
  fault?: SoapFault;
  relatesTo?: string;
  provisioning?: Provisioning;
}

export interface FederatedSignIn {
  pageStatus: number;
  page: string;
  status: number;
  body: string;
  /** The form the STS page hands back: action (should be appru) and its wresult. */
  formAction?: string;
  formMethod?: string;
  wresult?: string;
}

export interface DeviceAnswer {
  status: string;
  results?: SyncMlItem[];
}

export interface SessionExchange {
  request: string;
  status: number;
  contentType?: string;
  body: string;
  reply?: SyncMlMessage;
}

export interface SessionResult {
  exchanges: SessionExchange[];
  /** The server's Status for each of the device's SyncHdrs, in order. */
  headerStatuses: string[];
  /** Every server command received (Exec, Get, Replace, ...), in order. */
  commands: Array<Extract<SyncMlCommand, { items: SyncMlItem[] }>>;
  /** The device's answer to each command. */
  answered: Array<{ cmdId: string; kind: string; status: string; results?: SyncMlItem[] }>;
  /** Statuses the server returned for the device's own commands (Alert, Replace, ...). */
  serverStatuses: Array<Extract<SyncMlCommand, { kind: 'Status' }>>;
}

export interface SessionOptions {
  /** false: no TLS client certificate; an object: someone else's. @defaultValue the device's own identity */
  clientCert?: false | { certPem: string; keyPem: string };
  /** SyncHdr Source/LocURI (and DevInfo/DevId). @defaultValue the DeviceID sent at enrollment */
  source?: string;
  /** Package 1 facts sent in the Replace. */
  devInfo?: Partial<Record<'Man' | 'Mod' | 'DmV' | 'Lang', string>>;
  /** How many messages the device sends at most. @defaultValue 10 */
  maxMessages?: number;
  /** Overrides the answer to a server command. */
  answer?: (cmd: Extract<SyncMlCommand, { items: SyncMlItem[] }>) => DeviceAnswer | undefined;
}

export interface WindowsDeviceOptions {
  /** Where the user pointed the device (the discovery host), e.g. https://localhost:PORT */
  baseUrl: string;
  /** PEM of the CA the device trusts for TLS, and expects as the provisioned root. */
  caPem: string;
  email?: string;
  /** Full: user enrollment (identity in My/User); Device: device enrollment (My/System). */
  enrollmentType?: 'Full' | 'Device';
  deviceName?: string;
  osVersion?: string;
  manufacturer?: string;
  model?: string;
  /** The address to connect to whatever the host name says. @defaultValue 127.0.0.1 */
  connectTo?: string;
}

const upperHex = (bytes: number) => crypto.randomBytes(bytes).toString('hex').toUpperCase();
const sha1Upper = (der: Buffer) => crypto.createHash('sha1').update(der).digest('hex').toUpperCase();

/** DevInfo/DevDetail values the device reports when asked. */
function nodeValue(device: SimulatedWindowsDevice, uri: string): string {
  const leaf = uri.replace(/^\.\/(Device\/)?/, '');
  const table: Record<string, string> = {
    'DevInfo/DevId': device.deviceId,
    'DevInfo/Man': device.manufacturer,
    'DevInfo/Mod': device.model,
    'DevInfo/DmV': '1.3',
    'DevInfo/Lang': 'en-US',
    'DevDetail/SwV': device.osVersion,
    'DevDetail/HwV': '1.0',
    'DevDetail/FwV': '1.22.0',
    'DevDetail/OEM': device.manufacturer,
    'DevDetail/DevTyp': 'Desktop',
    'DevDetail/Ext/Microsoft/DeviceName': device.deviceName,
    'DevDetail/Ext/Microsoft/DNSComputerName': device.deviceName,
    'DevDetail/Ext/Microsoft/OSPlatform': 'Windows 11 Pro',
    'DevDetail/Ext/Microsoft/ProcessorArchitecture': '9',
    'DevDetail/Ext/Microsoft/TotalRAM': '16',
    'DevDetail/Ext/Microsoft/SMBIOSSerialNumber': device.serialNumber,
    'DevDetail/Ext/Microsoft/LocalTime': new Date().toISOString(),
    'Vendor/MSFT/DMClient/HWDevID': device.hwDevId,
  };
  return table[leaf] ?? 'unknown';
}

export class SimulatedWindowsDevice {
  readonly deviceId = upperHex(16);
  readonly hwDevId = upperHex(32);
  readonly csrGuid = crypto.randomUUID().toUpperCase();
  readonly serialNumber = `PF${upperHex(4)}`;
  readonly email: string;
  readonly enrollmentType: 'Full' | 'Device';
  readonly deviceName: string;
  readonly osVersion: string;
  readonly manufacturer: string;
  readonly model: string;
  readonly macs = [0, 1, 2].map(() => [...crypto.randomBytes(6)].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join('-'));

  /** Set by discover(). */
  discovery?: DiscoverAnswer['result'];
  /** Set by a successful enroll(). */
  provisioning?: Provisioning;
  /** What the device carried out (CSP nodes it executed). */
  readonly performed: string[] = [];
  wiped = false;
  rebooting = false;

  #keys?: Promise<CryptoKeyPair>;
  #sessions = 0;

  constructor(readonly opts: WindowsDeviceOptions) {
    this.email = opts.email ?? `user${crypto.randomBytes(3).toString('hex')}@contoso.com`;
    this.enrollmentType = opts.enrollmentType ?? 'Full';
    this.deviceName = opts.deviceName ?? `DESKTOP-${upperHex(3).slice(0, 7)}`;
    this.osVersion = opts.osVersion ?? '10.0.26200.9278';
    this.manufacturer = opts.manufacturer ?? 'Contoso Computers';
    this.model = opts.model ?? 'Surface Laptop 7';
  }

  keys(): Promise<CryptoKeyPair> {
    this.#keys ??= crypto.webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
    return this.#keys;
  }

  async spki(): Promise<Buffer> {
    return Buffer.from(await crypto.webcrypto.subtle.exportKey('spki', (await this.keys()).publicKey));
  }

  async keyPem(): Promise<string> {
    const der = await crypto.webcrypto.subtle.exportKey('pkcs8', (await this.keys()).privateKey);
    return x509.PemConverter.encode(der, 'PRIVATE KEY');
  }

  /** The device's TLS client identity once enrolled. */
  async identity(): Promise<{ certPem: string; keyPem: string }> {
    if (!this.provisioning) throw new Error('the device is not enrolled');
    return { certPem: this.provisioning.identityCertPem, keyPem: await this.keyPem() };
  }

  /** A PKCS#10 as Windows makes it: CN=<GUID>!<DeviceID>, EKU clientAuth, 311.66.1.0 = DeviceID + NUL. */
  async csr(): Promise<Buffer> {
    const req = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=${this.csrGuid}!${this.deviceId}`,
      keys: await this.keys(),
      signingAlgorithm: RSA,
      extensions: [
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.Extension('1.3.6.1.4.1.311.66.1.0', false, Buffer.from(`${this.deviceId}\0`, 'ascii')),
      ],
    });
    return Buffer.from(req.rawData);
  }

  // ------------------------------------------------------------------------------------------
  // Enrollment

  /** GET then POST Discovery.svc on the base URL, as Settings > Access work or school does. */
  async discover(version: '5.0' | '9.0' | string = '9.0'): Promise<DiscoverAnswer> {
    const url = new URL('/EnrollmentServer/Discovery.svc', this.opts.baseUrl).toString();
    const get = await this.request('GET', url);
    const messageId = `urn:uuid:${crypto.randomUUID()}`;
    const xml =
      `<s:Envelope xmlns:a="${NS.addressing}" xmlns:s="${NS.soap}">` +
      `<s:Header>` +
      `<a:Action s:mustUnderstand="1">${NS.discovery}/IDiscoveryService/Discover</a:Action>` +
      `<a:MessageID>${messageId}</a:MessageID>` +
      `<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>` +
      `<a:To s:mustUnderstand="1">${escapeXml(url)}</a:To>` +
      `</s:Header>` +
      `<s:Body>` +
      `<Discover xmlns="${NS.discovery}">` +
      `<request xmlns:i="http://www.w3.org/2001/XMLSchema-instance">` +
      `<EmailAddress>${escapeXml(this.email)}</EmailAddress>` +
      `<RequestVersion>${escapeXml(version)}</RequestVersion>` +
      `<DeviceType>CIMClient_Windows</DeviceType>` +
      `<ApplicationVersion>${escapeXml(this.osVersion)}</ApplicationVersion>` +
      `<OSEdition>48</OSEdition>` +
      `<AuthPolicies><AuthPolicy>OnPremise</AuthPolicy><AuthPolicy>Federated</AuthPolicy></AuthPolicies>` +
      `</request></Discover></s:Body></s:Envelope>`;
    const res = await this.soap(url, xml);
    const answer: DiscoverAnswer = { ...res, getStatus: get.status, getBody: get.body, messageId };
    const env = tryParse(res.body);
    answer.fault = readFault(env);
    answer.relatesTo = text(child(env, 'Header', 'RelatesTo')) || undefined;
    const result = child(env, 'Body', 'DiscoverResponse', 'DiscoverResult');
    if (res.status === 200 && result) {
      const opt = (name: string) => text(child(result, name)) || undefined;
      answer.result = {
        authPolicy: text(child(result, 'AuthPolicy')),
        enrollmentVersion: opt('EnrollmentVersion'),
        policyServiceUrl: opt('EnrollmentPolicyServiceUrl'),
        enrollmentServiceUrl: text(child(result, 'EnrollmentServiceUrl')),
        authenticationServiceUrl: opt('AuthenticationServiceUrl'),
      };
      this.discovery = answer.result;
    }
    return answer;
  }

  /** Drives the federated sign-in page: GET it, fill in `code`, POST it, read the form it hands back. */
  async federatedSignIn(code: string, appru = 'ms-app://windows.immersivecontrolpanel'): Promise<FederatedSignIn> {
    const authUrl = this.discovery?.authenticationServiceUrl;
    if (!authUrl) throw new Error('discovery gave no AuthenticationServiceUrl');
    const pageUrl = new URL(authUrl);
    pageUrl.searchParams.set('appru', appru);
    pageUrl.searchParams.set('login_hint', this.email);
    const page = await this.request('GET', pageUrl.toString(), { headers: { accept: 'text/html' } });
    const out: FederatedSignIn = { pageStatus: page.status, page: page.body, status: 0, body: '' };
    if (page.status !== 200) return out;
    const form = readForm(page.body);
    if (!form) throw new Error(`the sign-in page has no form: ${page.body.slice(0, 300)}`);
    const fields = new URLSearchParams();
    for (const [name, value] of Object.entries(form.fields)) fields.set(name, value);
    if (!fields.has('appru')) fields.set('appru', appru);
    if (!fields.has('login_hint')) fields.set('login_hint', this.email);
    fields.set('code', code);
    const target = new URL(decodeHtml(form.action || pageUrl.pathname), pageUrl).toString();
    const posted = await this.request((form.method || 'POST').toUpperCase(), target, {
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
      body: fields.toString(),
    });
    out.status = posted.status;
    out.body = posted.body;
    const handback = readForm(posted.body);
    if (handback) {
      out.formAction = decodeHtml(handback.action);
      out.formMethod = handback.method;
      out.wresult = handback.fields.wresult;
    }
    return out;
  }

  async getPolicies(credential: WindowsCredential): Promise<PoliciesAnswer> {
    const url = this.discovery?.policyServiceUrl ?? new URL('/EnrollmentServer/Policy.svc', this.opts.baseUrl).toString();
    const messageId = `urn:uuid:${crypto.randomUUID().toUpperCase()}`;
    const xml =
      `<s:Envelope xmlns:s="${NS.soap}" xmlns:a="${NS.addressing}" xmlns:u="${NS.wsu}" xmlns:wsse="${NS.wsse}" xmlns:wst="${NS.trust}" xmlns:ac="${NS.authorization}">` +
      `<s:Header>` +
      `<a:Action s:mustUnderstand="1">${NS.policy}/IPolicy/GetPolicies</a:Action>` +
      `<a:MessageID>${messageId}</a:MessageID>` +
      `<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>` +
      `<a:To s:mustUnderstand="1">${escapeXml(url)}</a:To>` +
      this.securityHeader(credential) +
      `</s:Header>` +
      `<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">` +
      `<GetPolicies xmlns="${NS.policy}">` +
      `<client><lastUpdate xsi:nil="true"/><preferredLanguage xsi:nil="true"/>` +
      `<TPMManufacturer>IBM</TPMManufacturer><TPMFirmwareVersion>8217.4131.22.13878</TPMFirmwareVersion></client>` +
      `<requestFilter xsi:nil="true"/>` +
      `</GetPolicies></s:Body></s:Envelope>`;
    const res = await this.soap(url, xml);
    const env = tryParse(res.body);
    const answer: PoliciesAnswer = { ...res, fault: readFault(env), relatesTo: text(child(env, 'Header', 'RelatesTo')) || undefined };
    const response = child(env, 'Body', 'GetPoliciesResponse');
    if (response) {
      const attributes = child(response, 'response', 'policies', 'policy', 'attributes');
      const keyLength = text(child(attributes, 'privateKeyAttributes', 'minimalKeyLength'));
      if (keyLength) answer.minimalKeyLength = Number(keyLength);
      const ref = text(child(attributes, 'hashAlgorithmOIDReference'));
      const oid = all(child(response, 'oIDs'), 'oID').find((o) => text(child(o, 'oIDReferenceID')) === ref);
      if (oid) answer.hashAlgorithmOid = text(child(oid, 'value'));
    }
    return answer;
  }

  /**
   * Sends the RequestSecurityToken and, on success, checks and installs the provisioning document:
   * throws when the document is one a real device would refuse.
   */
  async enroll(credential: WindowsCredential, opts: { tamperCsr?: boolean; omitDeviceId?: boolean; requestVersion?: string } = {}): Promise<EnrollAnswer> {
    const url = this.discovery?.enrollmentServiceUrl ?? new URL('/EnrollmentServer/Enrollment.svc', this.opts.baseUrl).toString();
    const csr = await this.csr();
    if (opts.tamperCsr) csr[csr.length - 1]! ^= 0x01; // last byte of the signature BIT STRING
    const xml = this.rstXml(url, credential, csr, opts);
    const res = await this.soap(url, xml);
    const env = tryParse(res.body);
    const answer: EnrollAnswer = { ...res, fault: readFault(env), relatesTo: text(child(env, 'Header', 'RelatesTo')) || undefined };
    if (res.status !== 200 || answer.fault) return answer;
    const bst = child(env, 'Body', 'RequestSecurityTokenResponseCollection', 'RequestSecurityTokenResponse', 'RequestedSecurityToken', 'BinarySecurityToken');
    if (!bst) throw new Error(`enrollment answered 200 without a provisioning token: ${res.body.slice(0, 500)}`);
    if (attr(bst, 'ValueType') !== PROVISION_DOC) throw new Error(`provisioning token has ValueType ${attr(bst, 'ValueType')}`);
    const doc = Buffer.from(bst.text.replace(/\s+/g, ''), 'base64').toString('utf8');
    answer.provisioning = await this.install(doc);
    this.provisioning = answer.provisioning;
    return answer;
  }

  /** RequestVersion the RST carries: 5.0 when the server advertised 5.0, else 9.0 (25H2 behaviour). */
  #rstVersion(): string {
    return this.discovery?.enrollmentVersion === '5.0' ? '5.0' : '9.0';
  }

  rstXml(url: string, credential: WindowsCredential, csr: Buffer, opts: { omitDeviceId?: boolean; requestVersion?: string } = {}): string {
    const b64 = csr.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd();
    const version = opts.requestVersion ?? this.#rstVersion();
    const items: Array<[string, string]> = [
      ['UXInitiated', 'true'],
      ['HWDevID', this.hwDevId],
      ['Locale', 'en-US'],
      ['TargetedUserLoggedIn', 'true'],
      ['OSEdition', '48'],
      ['DeviceName', this.deviceName],
      ...this.macs.map((m): [string, string] => ['MAC', m]),
      ...(opts.omitDeviceId ? [] : [['DeviceID', this.deviceId] as [string, string]]),
      ['EnrollmentType', this.enrollmentType],
      ['DeviceType', 'CIMClient_Windows'],
      ['OSVersion', this.osVersion],
      ['ApplicationVersion', this.osVersion],
      ['NotInOobe', 'false'],
      ['Manufacturer', this.manufacturer],
      ['DeviceModel', this.model],
      ['SerialNumber', this.serialNumber],
      ['RequestVersion', version],
      ...(version === '5.0'
        ? ([
            ['AIKPub', crypto.randomBytes(285).toString('base64')],
            ['AIKAttestationClaim', crypto.randomBytes(1218).toString('base64')],
          ] as Array<[string, string]>)
        : ([
            ['AttestationStatus', 'AttestationResultNoAttestation;AttestationStatusHResult=0x80070057'],
            ['AttestationStatusHResult', '0x80070057'],
          ] as Array<[string, string]>)),
    ];
    return (
      `<s:Envelope xmlns:s="${NS.soap}" xmlns:a="${NS.addressing}" xmlns:u="${NS.wsu}" xmlns:wsse="${NS.wsse}" xmlns:wst="${NS.trust}" xmlns:ac="${NS.authorization}">` +
      `<s:Header>` +
      `<a:Action s:mustUnderstand="1">${NS.enrollment}/RST/wstep</a:Action>` +
      `<a:MessageID>urn:uuid:${crypto.randomUUID()}</a:MessageID>` +
      `<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>` +
      `<a:To s:mustUnderstand="1">${escapeXml(url)}</a:To>` +
      this.securityHeader(credential) +
      `</s:Header>` +
      `<s:Body>` +
      `<wst:RequestSecurityToken>` +
      `<wst:TokenType>http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken</wst:TokenType>` +
      `<wst:RequestType>${NS.trust}/Issue</wst:RequestType>` +
      `<wsse:BinarySecurityToken ValueType="${NS.enrollment}#PKCS10" EncodingType="${BASE64_BINARY}">${b64}</wsse:BinarySecurityToken>` +
      `<ac:AdditionalContext xmlns="${NS.authorization}">` +
      items.map(([name, value]) => `<ac:ContextItem Name="${name}"><ac:Value>${escapeXml(value)}</ac:Value></ac:ContextItem>`).join('') +
      `</ac:AdditionalContext>` +
      `</wst:RequestSecurityToken>` +
      `</s:Body></s:Envelope>`
    );
  }

  securityHeader(credential: WindowsCredential): string {
    const inner =
      'federated' in credential
        ? `<wsse:BinarySecurityToken ValueType="${USER_TOKEN}" EncodingType="${BASE64_BINARY}">${escapeXml(credential.federated)}</wsse:BinarySecurityToken>`
        : `<wsse:UsernameToken u:Id="uuid-${crypto.randomUUID()}-4">` +
          `<wsse:Username>${escapeXml(credential.username ?? this.email)}</wsse:Username>` +
          `<wsse:Password wsse:Type="${PASSWORD_TEXT}">${escapeXml(credential.password)}</wsse:Password>` +
          `</wsse:UsernameToken>`;
    return `<wsse:Security s:mustUnderstand="1">${inner}</wsse:Security>`;
  }

  /** Checks the wap-provisioningdoc as the device's configuration manager would and keeps what it needs. */
  async install(doc: string): Promise<Provisioning> {
    const fail = (why: string): never => {
      throw new Error(`provisioning document refused (${why}): ${doc.slice(0, 400)}`);
    };
    const root = parseXml(doc);
    if (root.name !== 'wap-provisioningdoc') fail(`root is ${root.name}`);
    const top = all(root, 'characteristic').map((c) => attr(c, 'type'));
    if (top.join(',') !== 'CertificateStore,APPLICATION,DMClient') fail(`top-level characteristics ${top.join(',')}`);
    const certStore = charOf(root, 'CertificateStore');

    // Root: exactly the CA the device was told to trust, under its SHA-1 thumbprint.
    const caDer = Buffer.from(new x509.X509Certificate(this.opts.caPem).rawData);
    const rootSystem = charOf(charOf(certStore, 'Root'), 'System');
    const rootEntries = all(rootSystem, 'characteristic');
    if (rootEntries.length !== 1) fail(`${rootEntries.length} root certificates`);
    const rootThumbprint = attr(rootEntries[0], 'type') ?? '';
    const rootDer = Buffer.from(parmValue(rootEntries[0], 'EncodedCertificate') ?? '', 'base64');
    if (rootThumbprint !== sha1Upper(caDer)) fail(`root thumbprint ${rootThumbprint} is not the CA's ${sha1Upper(caDer)}`);
    if (!rootDer.equals(caDer)) fail('root EncodedCertificate is not the CA');

    // Identity: My/User (Full) or My/System (Device), our key, issued by the CA, with a PrivateKeyContainer.
    const identityStore = this.enrollmentType === 'Device' ? 'System' : 'User';
    const store = charOf(charOf(certStore, 'My'), identityStore);
    if (!store) fail(`no My/${identityStore}`);
    if (!charOf(store, 'PrivateKeyContainer')) fail('no PrivateKeyContainer');
    const identity = all(store, 'characteristic').find((c) => attr(c, 'type') !== 'PrivateKeyContainer');
    const identityThumbprint = attr(identity, 'type') ?? '';
    const identityDer = Buffer.from(parmValue(identity, 'EncodedCertificate') ?? '', 'base64');
    if (identityDer.length === 0) fail('no identity certificate');
    if (identityThumbprint !== sha1Upper(identityDer)) fail('identity thumbprint does not match its certificate');
    const identityCert = new x509.X509Certificate(identityDer);
    if (!Buffer.from(identityCert.publicKey.rawData).equals(await this.spki())) fail('identity certificate is not for our key');
    const nodeCert = new crypto.X509Certificate(identityDer);
    const nodeCa = new crypto.X509Certificate(caDer);
    if (!nodeCert.checkIssued(nodeCa) || !nodeCert.verify(nodeCa.publicKey)) fail('identity certificate is not signed by the CA');
    if (identityCert.notBefore.getTime() > Date.now() + 60_000) fail('identity certificate is not valid yet');
    const eku = identityCert.getExtension(x509.ExtendedKeyUsageExtension);
    if (!eku?.usages.includes(x509.ExtendedKeyUsage.clientAuth)) fail('identity certificate lacks clientAuth');

    // w7 APPLICATION: the OMA-DM account.
    const app = charOf(root, 'APPLICATION');
    if (parmValue(app, 'APPID') !== 'w7') fail('APPID is not w7');
    const managementUrl = parmValue(app, 'ADDR') ?? fail('no ADDR');
    if (!/^https:\/\//.test(managementUrl)) fail(`ADDR ${managementUrl} is not https`);
    const providerId = parmValue(app, 'PROVIDER-ID') ?? fail('no PROVIDER-ID');
    const appauth = all(app, 'characteristic').filter((c) => attr(c, 'type') === 'APPAUTH');
    const level = (l: string) => appauth.find((c) => parmValue(c, 'AAUTHLEVEL') === l);
    const clientNonce = parmValue(level('CLIENT'), 'AAUTHDATA') ?? '';
    const serverNonce = parmValue(level('APPSRV'), 'AAUTHDATA') ?? '';
    if (!clientNonce || Buffer.from(clientNonce, 'base64').length === 0) fail('APPAUTH CLIENT has no AAUTHDATA nonce');
    if (!serverNonce || Buffer.from(serverNonce, 'base64').length === 0) fail('APPAUTH APPSRV has no AAUTHDATA nonce');
    if (parmValue(level('CLIENT'), 'AAUTHTYPE') !== 'DIGEST') fail('APPAUTH CLIENT is not DIGEST');

    // DMClient provider must be the same id as PROVIDER-ID.
    const provider = charOf(charOf(charOf(root, 'DMClient'), 'Provider'), providerId);
    if (!provider) fail(`DMClient/Provider/${providerId} missing`);
    return {
      xml: doc,
      rootThumbprint,
      identityThumbprint,
      identityStore,
      identityCertPem: identityCert.toString('pem'),
      managementUrl,
      providerId,
      clientNonce,
      serverNonce,
      entDmId: parmValue(provider, 'EntDMID'),
      upn: parmValue(provider, 'UPN'),
    };
  }

  // ------------------------------------------------------------------------------------------
  // Management

  /**
   * One OMA-DM session: package 1 (Alert 1201, Alert 1224, Replace of DevInfo), then the device
   * answers every server command (Exec → 200, Get → 200 + Results) until a reply carries none.
   */
  async session(opts: SessionOptions = {}): Promise<SessionResult> {
    const prov = this.provisioning;
    const url = prov?.managementUrl ?? new URL('/ManagementServer/MDM.svc', this.opts.baseUrl).toString();
    const tlsIdentity = opts.clientCert === false ? undefined : (opts.clientCert ?? (prov ? await this.identity() : undefined));
    const source = opts.source ?? this.deviceId;
    this.#sessions += 1;
    const sessionId = String(this.#sessions);
    const out: SessionResult = { exchanges: [], headerStatuses: [], commands: [], answered: [], serverStatuses: [] };
    const devInfo = { Man: this.manufacturer, Mod: this.model, DmV: '1.3', Lang: 'en-US', ...opts.devInfo };
    const hdr = (msgId: number) =>
      `<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>${sessionId}</SessionID><MsgID>${msgId}</MsgID>` +
      `<Target><LocURI>${escapeXml(url)}</LocURI></Target><Source><LocURI>${escapeXml(source)}</LocURI></Source></SyncHdr>`;
    const target = `${url}${url.includes('?') ? '&' : '?'}mode=Maintenance&Platform=WoA`;

    let msgId = 1;
    let body =
      `<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>` +
      `<Alert><CmdID>3</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft/MDM/LoginStatus</Type></Meta><Data>user</Data></Item></Alert>` +
      `<Replace><CmdID>4</CmdID>` +
      `<Item><Source><LocURI>./DevInfo/DevId</LocURI></Source><Data>${escapeXml(source)}</Data></Item>` +
      (['Man', 'Mod', 'DmV', 'Lang'] as const)
        .map((k) => `<Item><Source><LocURI>./DevInfo/${k}</LocURI></Source><Data>${escapeXml(devInfo[k])}</Data></Item>`)
        .join('') +
      `<Item><Source><LocURI>./Vendor/MSFT/DMClient/HWDevID</LocURI></Source><Data>${this.hwDevId}</Data></Item>` +
      `</Replace>`;
    const max = opts.maxMessages ?? 10;
    for (let sent = 0; sent < max; sent++) {
      const request = `<SyncML xmlns="SYNCML:SYNCML1.2">${hdr(msgId)}<SyncBody>${body}<Final/></SyncBody></SyncML>`;
      const res = await this.request('POST', target, {
        headers: { 'content-type': SYNCML_CONTENT_TYPE, 'user-agent': 'MSFT OMA DM Client/1.2.0.1', 'client-request-id': crypto.randomUUID() },
        body: request,
        tls: tlsIdentity,
      });
      const exchange: SessionExchange = { request, status: res.status, contentType: res.contentType, body: res.body };
      out.exchanges.push(exchange);
      if (res.status !== 200) return out;
      const reply = parseSyncMl(res.body);
      exchange.reply = reply;
      const commands: Array<Extract<SyncMlCommand, { items: SyncMlItem[] }>> = [];
      for (const cmd of reply.body) {
        if (cmd.kind === 'Status') {
          if (cmd.cmd === 'SyncHdr') out.headerStatuses.push(cmd.data);
          else out.serverStatuses.push(cmd);
        } else if (cmd.kind !== 'Results') {
          commands.push(cmd);
        }
      }
      if (commands.length === 0) return out;
      out.commands.push(...commands);
      // Package 3: our SyncHdr status, then a Status (and Results for a Get) per server command.
      let cmdId = 1;
      const parts = [`<Status><CmdID>${cmdId++}</CmdID><MsgRef>${escapeXml(reply.msgId)}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>`];
      const results: string[] = [];
      for (const cmd of commands) {
        const answer = opts.answer?.(cmd) ?? this.#carryOut(cmd);
        out.answered.push({ cmdId: cmd.cmdId, kind: cmd.kind, status: answer.status, ...(answer.results ? { results: answer.results } : {}) });
        parts.push(
          `<Status><CmdID>${cmdId++}</CmdID><MsgRef>${escapeXml(reply.msgId)}</MsgRef><CmdRef>${escapeXml(cmd.cmdId)}</CmdRef><Cmd>${cmd.kind}</Cmd><Data>${escapeXml(answer.status)}</Data></Status>`,
        );
        if (answer.results) {
          results.push(
            `<Results><CmdID>${cmdId++}</CmdID><MsgRef>${escapeXml(reply.msgId)}</MsgRef><CmdRef>${escapeXml(cmd.cmdId)}</CmdRef>` +
              answer.results
                .map(
                  (i) =>
                    `<Item><Source><LocURI>${escapeXml(i.source ?? '')}</LocURI></Source>` +
                    `<Meta><Format xmlns="syncml:metinf">${escapeXml(i.meta?.format ?? 'chr')}</Format></Meta><Data>${escapeXml(i.data ?? '')}</Data></Item>`,
                )
                .join('') +
              `</Results>`,
          );
        }
      }
      body = parts.join('') + results.join('');
      msgId += 1;
    }
    return out;
  }

  /** What this PC does with a server command. */
  #carryOut(cmd: Extract<SyncMlCommand, { items: SyncMlItem[] }>): DeviceAnswer {
    const uris = cmd.items.map((i) => i.target ?? '');
    switch (cmd.kind) {
      case 'Exec':
        for (const uri of uris) {
          this.performed.push(uri);
          if (/\/RemoteWipe\/doWipe/.test(uri)) this.wiped = true;
          else if (/\/Reboot\/RebootNow$/.test(uri)) this.rebooting = true;
          else if (/RemoteLock/.test(uri)) return { status: '405' }; // no RemoteLock CSP on desktop
        }
        return { status: '200' };
      case 'Get':
        return { status: '200', results: uris.map((uri) => ({ source: uri, meta: { format: 'chr' }, data: nodeValue(this, uri) })) };
      default:
        return { status: '200' };
    }
  }

  // ------------------------------------------------------------------------------------------
  // Transport

  /** POSTs a SOAP body (or anything else, for refusals) to a URL on the server. */
  async soap(url: string, xml: string, contentType = SOAP_CONTENT_TYPE): Promise<HttpAnswer> {
    return this.request('POST', url, { headers: { 'content-type': contentType, 'user-agent': 'ENROLLClient' }, body: xml });
  }

  /** One HTTPS request to 127.0.0.1 with the URL's host as SNI and Host header, on a fresh connection. */
  request(
    method: string,
    url: string,
    opts: { headers?: Record<string, string>; body?: string | Buffer; tls?: { certPem: string; keyPem: string } } = {},
  ): Promise<HttpAnswer> {
    const u = new URL(url);
    if (u.protocol !== 'https:') return Promise.reject(new Error(`the device only talks HTTPS, not ${url}`));
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.opts.connectTo ?? '127.0.0.1',
          port: u.port || 443,
          servername: u.hostname,
          path: `${u.pathname}${u.search}`,
          method,
          headers: { host: u.host, ...(body ? { 'content-length': String(body.length) } : {}), ...opts.headers },
          ca: this.opts.caPem,
          ...(opts.tls ? { cert: opts.tls.certPem, key: opts.tls.keyPem } : {}),
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              contentType: res.headers['content-type'],
              contentLength: res.headers['content-length'],
              transferEncoding: res.headers['transfer-encoding'],
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

// ----------------------------------------------------------------------------------------------
// Reading answers

function tryParse(body: string): XmlElement | undefined {
  try {
    return parseXml(body);
  } catch {
    return undefined;
  }
}

/** Reads a SOAP 1.2 fault, if the envelope carries one. */
export function readFault(env: XmlElement | string | undefined): SoapFault | undefined {
  const root = typeof env === 'string' ? tryParse(env) : env;
  const fault = child(root, 'Body', 'Fault');
  if (!fault) return undefined;
  const local = (v: string) => v.replace(/^.*:/, '');
  const errorType = text(child(fault, 'Detail', 'DeviceEnrollmentServiceError', 'ErrorType'));
  return {
    code: local(text(child(fault, 'Code', 'Value'))),
    subcode: local(text(child(fault, 'Code', 'Subcode', 'Value'))),
    reason: text(child(fault, 'Reason', 'Text')),
    ...(errorType ? { errorType } : {}),
  };
}

const charOf = (el: XmlElement | undefined, type: string): XmlElement | undefined => all(el, 'characteristic').find((c) => attr(c, 'type') === type);
const parmValue = (el: XmlElement | undefined, name: string): string | undefined => attr(all(el, 'parm').find((p) => attr(p, 'name') === name), 'value');

function decodeHtml(s: string): string {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCodePoint(Number(d)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

const attrOf = (tag: string, name: string): string | undefined => {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
};

/** The first HTML form: its action, method and the values of its inputs (entity-decoded). */
export function readForm(html: string): { action: string; method: string; fields: Record<string, string> } | undefined {
  const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const fields: Record<string, string> = {};
  for (const input of form[2]!.match(/<input\b[^>]*>/gi) ?? []) {
    const name = attrOf(input, 'name');
    if (name) fields[decodeHtml(name)] = decodeHtml(attrOf(input, 'value') ?? '');
  }
  return { action: attrOf(form[1]!, 'action') ?? '', method: (attrOf(form[1]!, 'method') ?? 'GET').toUpperCase(), fields };
}

// ----------------------------------------------------------------------------------------------
// The server side of the wire, for tests

/**
 * Serves `m.app` over HTTPS on a loopback port as `listen` does (asks for a client certificate but
 * does not require one), with a server certificate from Mooring's CA for localhost and 127.0.0.1.
 */
export async function listenHttps(m: Pick<Mooring, 'ca' | 'app'>): Promise<{ url: string; port: number; caPem: string; close(): Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-windows-tls-'));
  const tls = await ensureTlsCertificate(m.ca, dir, ['localhost', '127.0.0.1']);
  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem, ca: m.ca.certPem, requestCert: true, rejectUnauthorized: false }, m.app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://localhost:${port}`,
    port,
    caPem: m.ca.certPem,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => {
          fs.rmSync(dir, { recursive: true, force: true });
          r();
        });
      }),
  };
}
