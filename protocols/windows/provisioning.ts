/**
 * The wap-provisioningdoc returned inside the RSTRC ([MS-MDE2] §2.2.9; research notes windows-mdm.md
 * section 1.8). It carries exactly three top-level characteristics — CertificateStore, APPLICATION
 * (w7, the OMA-DM account) and DMClient — because one extra top-level characteristic made native
 * enrollment fail with event 56 0x83750005 (go-microsoft-dm windows-enrollment-investigation.md).
 *
 * Rules kept here: w7 names are case-sensitive upper case; both APPAUTH levels are present, each with
 * a base64 AAUTHDATA nonce (omitting them gave event 17 0x80070057 / UI 0x80180023 on 26200.9278);
 * CLIENT is DIGEST; BACKCOMPATRETRYDISABLED is valueless; ROLE is omitted; PrivateKeyContainer is
 * present under the identity store (MS note: required). Pure: thumbprints are computed from the DER.
 */
import { createHash } from 'node:crypto';
import { escapeXml } from './xml';

/** Uppercase hex SHA-1 of a DER certificate, the form every CertificateStore path uses. */
export function thumbprintOf(der: Buffer): string {
  return createHash('sha1').update(der).digest('hex').toUpperCase();
}

/** DMClient/Provider/<id>/Poll; defaults are Microsoft's DMClient CSP defaults from the notes. */
export interface PollSchedule {
  numberOfFirstRetries: number;
  intervalForFirstSetOfRetries: number;
  numberOfSecondRetries: number;
  intervalForSecondSetOfRetries: number;
  numberOfRemainingScheduledRetries: number;
  pollOnLogin: boolean;
  allUsersPollOnFirstLogin: boolean;
}

const DEFAULT_POLL: PollSchedule = {
  // DMClient CSP: NumberOfFirstRetries must not be 0 (0 = poll forever at the first interval).
  numberOfFirstRetries: 8,
  intervalForFirstSetOfRetries: 15,
  numberOfSecondRetries: 5,
  intervalForSecondSetOfRetries: 3,
  numberOfRemainingScheduledRetries: 0,
  pollOnLogin: true,
  allUsersPollOnFirstLogin: true,
};

export interface ProvisioningDocInput {
  rootCertDer: Buffer;
  identityCertDer: Buffer;
  /** `User` for EnrollmentType Full, `System` for Device. */
  identityStore: 'User' | 'System';
  /** APPLICATION/ADDR and DMClient ManagementServiceAddress: the OMA-DM endpoint. */
  managementUrl: string;
  /** APPLICATION/PROVIDER-ID and the DMClient/Provider/<id> node; must match each other. */
  providerId: string;
  /** APPLICATION/NAME (user-readable account name). */
  serverName: string;
  /** base64 nonce for APPAUTH CLIENT (server authenticates to the client). */
  clientNonce: string;
  /** base64 nonce for APPAUTH APPSRV (client authenticates to the server). */
  serverNonce: string;
  /** DMClient Poll IntervalForRemainingScheduledRetries, in minutes. */
  pollIntervalMinutes: number;
  entDeviceName?: string;
  /** DMClient EntDMID: the server's device id, echoed back in management sessions. */
  entDmId?: string;
  /** DMClient UPN (Full/user enrollments). */
  upn?: string;
  /** APPAUTH CLIENT AAUTHSECRET (the server's digest secret). */
  clientSecret?: string;
  /** APPAUTH APPSRV AAUTHNAME / AAUTHSECRET (the device's digest user and secret). */
  serverAuthName?: string;
  serverSecret?: string;
  /** Subject DN of the identity certificate; adds SSLCLIENTCERTSEARCHCRITERIA when given. */
  sslClientCertSubject?: string;
  poll?: Partial<PollSchedule>;
}

const parm = (name: string, value?: string | number | boolean, datatype?: 'string' | 'integer' | 'boolean'): string =>
  value === undefined
    ? `<parm name="${name}"/>`
    : `<parm name="${name}" value="${escapeXml(String(value))}"${datatype ? ` datatype="${datatype}"` : ''}/>`;

const characteristic = (type: string, ...content: string[]): string =>
  `<characteristic type="${escapeXml(type)}">${content.join('')}</characteristic>`;

/** A certificate under its thumbprint, as the stores list it. */
const storedCertificate = (der: Buffer): string => characteristic(thumbprintOf(der), parm('EncodedCertificate', der.toString('base64')));

/** The root's entry, made once per CA certificate: every device gets the same. */
const rootEntries = new WeakMap<Buffer, string>();

function rootEntry(der: Buffer): string {
  let entry = rootEntries.get(der);
  if (entry === undefined) rootEntries.set(der, (entry = storedCertificate(der)));
  return entry;
}

function certificateStore(p: ProvisioningDocInput): string {
  const root = rootEntry(p.rootCertDer);
  const identity = storedCertificate(p.identityCertDer);
  return characteristic(
    'CertificateStore',
    characteristic('Root', characteristic('System', root)),
    characteristic('My', characteristic(p.identityStore, identity, characteristic('PrivateKeyContainer'))),
  );
}

function application(p: ProvisioningDocInput): string {
  const search =
    p.sslClientCertSubject === undefined
      ? ''
      : parm('SSLCLIENTCERTSEARCHCRITERIA', `Subject=${encodeURIComponent(p.sslClientCertSubject)}&Stores=My%5C${p.identityStore}`);
  const optional = (name: string, value: string | undefined): string => (value === undefined ? '' : parm(name, value));
  return characteristic(
    'APPLICATION',
    parm('APPID', 'w7'),
    parm('PROVIDER-ID', p.providerId),
    parm('NAME', p.serverName),
    parm('ADDR', p.managementUrl),
    parm('CONNRETRYFREQ', 6),
    parm('INITIALBACKOFFTIME', 30000),
    parm('MAXBACKOFFTIME', 120000),
    parm('BACKCOMPATRETRYDISABLED'),
    parm('DEFAULTENCODING', 'application/vnd.syncml.dm+xml'),
    search,
    characteristic(
      'APPAUTH',
      parm('AAUTHLEVEL', 'CLIENT'),
      parm('AAUTHTYPE', 'DIGEST'),
      optional('AAUTHSECRET', p.clientSecret),
      parm('AAUTHDATA', p.clientNonce),
    ),
    characteristic(
      'APPAUTH',
      parm('AAUTHLEVEL', 'APPSRV'),
      parm('AAUTHTYPE', 'DIGEST'),
      optional('AAUTHNAME', p.serverAuthName),
      optional('AAUTHSECRET', p.serverSecret),
      parm('AAUTHDATA', p.serverNonce),
    ),
  );
}

function dmClient(p: ProvisioningDocInput): string {
  const poll = { ...DEFAULT_POLL, ...p.poll };
  const str = (name: string, value: string | undefined): string => (value === undefined ? '' : parm(name, value, 'string'));
  return characteristic(
    'DMClient',
    characteristic(
      'Provider',
      characteristic(
        p.providerId,
        str('EntDMID', p.entDmId),
        str('UPN', p.upn),
        str('EntDeviceName', p.entDeviceName),
        str('ManagementServiceAddress', p.managementUrl),
        characteristic(
          'Poll',
          parm('NumberOfFirstRetries', poll.numberOfFirstRetries, 'integer'),
          parm('IntervalForFirstSetOfRetries', poll.intervalForFirstSetOfRetries, 'integer'),
          parm('NumberOfSecondRetries', poll.numberOfSecondRetries, 'integer'),
          parm('IntervalForSecondSetOfRetries', poll.intervalForSecondSetOfRetries, 'integer'),
          parm('NumberOfRemainingScheduledRetries', poll.numberOfRemainingScheduledRetries, 'integer'),
          parm('IntervalForRemainingScheduledRetries', p.pollIntervalMinutes, 'integer'),
          parm('PollOnLogin', poll.pollOnLogin, 'boolean'),
          parm('AllUsersPollOnFirstLogin', poll.allUsersPollOnFirstLogin, 'boolean'),
        ),
      ),
    ),
  );
}

/** The wap-provisioningdoc, without newlines (servers strip them before base64; notes section 1.8). */
export function buildProvisioningDoc(p: ProvisioningDocInput): string {
  if (!Number.isInteger(p.pollIntervalMinutes) || p.pollIntervalMinutes < 1) {
    throw new RangeError('pollIntervalMinutes must be a positive integer');
  }
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<wap-provisioningdoc version="1.1">${certificateStore(p)}${application(p)}${dmClient(p)}</wap-provisioningdoc>`
  );
}
