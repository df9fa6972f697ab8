/**
 * The enrollment profile (.mobileconfig) an Apple device installs to enroll: a SCEP payload that gets
 * the device its identity certificate, the `com.apple.mdm` payload that points it at us and, when the
 * HTTPS certificate is ours rather than publicly trusted, our root certificate. Pure: the caller signs
 * the result (CMS, src/pki/cms.ts) and serves it as application/x-apple-aspen-config.
 * Keys: apple/device-management mdm/profiles/com.apple.mdm.yaml and com.apple.security.scep.yaml.
 */
import crypto from 'node:crypto';
import { encodePlist, type PlistDict } from './plist';

/** Every access right (1 | 2 | 4 | ... | 4096): inspect and install profiles, lock, erase, queries, apps. */
export const ALL_ACCESS_RIGHTS = 8191;

export const SERVER_CAPABILITIES = ['com.apple.mdm.per-user-connections', 'com.apple.mdm.bootstraptoken'] as const;

export interface EnrollmentProfileInput {
  /** The public base URL, e.g. https://mdm.example.com */
  baseUrl: string;
  /** The APNs topic of the push certificate (com.apple.mgmt.External.<uuid>). */
  topic: string;
  /** The one-use SCEP challenge bound to the enrollment token. */
  challenge: string;
  /** DER of the root certificate to install, or undefined when the TLS certificate is publicly trusted. */
  rootCertDer?: Buffer;
  /** Stable across downloads so a re-install replaces the profile instead of adding a second one. */
  identifier?: string;
  organization?: string;
}

export interface EnrollmentProfile {
  plist: string;
  /** The URLs and identifiers inside, for logs and tests. */
  scepUrl: string;
  serverUrl: string;
  checkInUrl: string;
  identifier: string;
}

export function buildEnrollmentProfile(input: EnrollmentProfileInput): EnrollmentProfile {
  const base = input.baseUrl.replace(/\/+$/, '');
  const host = new URL(base).hostname;
  const identifier = input.identifier ?? `mooring.enroll.${host}`;
  const org = input.organization ?? 'Mooring';
  const scepUuid = uuid();
  const scepUrl = `${base}/scep`;
  const serverUrl = `${base}/mdm/connect`;
  const checkInUrl = `${base}/mdm/checkin`;

  const scep: PlistDict = {
    PayloadType: 'com.apple.security.scep',
    PayloadVersion: 1,
    PayloadIdentifier: `${identifier}.scep`,
    PayloadUUID: scepUuid,
    PayloadDisplayName: 'Device identity',
    PayloadDescription: 'Requests the certificate this device identifies itself with to the management server.',
    PayloadContent: {
      URL: scepUrl,
      Name: org,
      Subject: [[['O', org]], [['CN', 'Mooring device identity']]],
      Challenge: input.challenge,
      Keysize: 2048,
      'Key Type': 'RSA',
      'Key Usage': 5, // signing and encryption
      Retries: 3,
      RetryDelay: 10,
    },
  };
  const mdm: PlistDict = {
    PayloadType: 'com.apple.mdm',
    PayloadVersion: 1,
    PayloadIdentifier: `${identifier}.mdm`,
    PayloadUUID: uuid(),
    PayloadDisplayName: 'Device management',
    IdentityCertificateUUID: scepUuid,
    Topic: input.topic,
    ServerURL: serverUrl,
    CheckInURL: checkInUrl,
    SignMessage: true,
    AccessRights: ALL_ACCESS_RIGHTS,
    CheckOutWhenRemoved: true,
    ServerCapabilities: [...SERVER_CAPABILITIES],
  };
  const content: PlistDict[] = [scep, mdm];
  if (input.rootCertDer) {
    content.push({
      PayloadType: 'com.apple.security.root',
      PayloadVersion: 1,
      PayloadIdentifier: `${identifier}.root`,
      PayloadUUID: uuid(),
      PayloadDisplayName: `${org} root certificate`,
      PayloadCertificateFileName: 'mooring-ca.cer',
      PayloadContent: input.rootCertDer,
    });
  }
  const profile: PlistDict = {
    PayloadType: 'Configuration',
    PayloadVersion: 1,
    PayloadIdentifier: identifier,
    PayloadUUID: uuid(),
    PayloadDisplayName: `${org} enrollment`,
    PayloadDescription: `Enrolls this device in ${org} device management at ${host}.`,
    PayloadOrganization: org,
    PayloadScope: 'System',
    PayloadRemovalDisallowed: false,
    PayloadContent: content,
  };
  return { plist: encodePlist(profile), scepUrl, serverUrl, checkInUrl, identifier };
}

const uuid = (): string => crypto.randomUUID().toUpperCase();
