import 'reflect-metadata';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import {
  ACTION_DISCOVER,
  ACTION_DISCOVER_RESPONSE,
  buildDiscoverResponse,
  enrollmentVersionFor,
  isAcceptedRequestVersion,
  parseDiscover,
} from '../../protocols/windows/discovery';
import { buildSoapFault, faultFromXmlError, isWindowsFault, WindowsFault } from '../../protocols/windows/faults';
import { buildProvisioningDoc, thumbprintOf } from '../../protocols/windows/provisioning';
import { VALUE_TYPE_USER_TOKEN } from '../../protocols/windows/soap';
import {
  buildRequestSecurityTokenResponseCollection,
  parseRequestSecurityToken,
  REQUEST_TYPE_ISSUE,
  TOKEN_TYPE_DEVICE_ENROLLMENT,
  VALUE_TYPE_PKCS10,
  VALUE_TYPE_PROVISION_DOC,
} from '../../protocols/windows/wstep';
import { buildGetPoliciesResponse, OID_SHA256, parseGetPolicies } from '../../protocols/windows/xcep';
import { all, attr, child, escapeXml, parseXml, text, XmlError, type XmlElement } from '../../protocols/windows/xml';

const FIXTURES = path.join(__dirname, '../../fixtures/windows');
const fixture = (name: string): Buffer => fs.readFileSync(path.join(FIXTURES, name));

const DEVICE_ID = '7E5A4F0C2B9D4E1A8C3F6B2D9E0A1C4B';
const HW_DEV_ID = '9B2F4C7E1A6D3B8E5F0A2C4D6E8F1B3D5A7C9E0F2B4D6A8C1E3F5B7D9A0C2E4F';

function expectFault(fn: () => unknown, subcode: string): WindowsFault {
  try {
    fn();
  } catch (err) {
    expect(isWindowsFault(err)).toBe(true);
    expect((err as WindowsFault).subcode).toBe(subcode);
    return err as WindowsFault;
  }
  throw new Error(`want a ${subcode} fault, got none`);
}

function xmlReason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof XmlError) return err.reason;
    throw err;
  }
  return 'accepted';
}

/** `characteristic` children of `el`, by type attribute. */
const chars = (el: XmlElement | undefined): XmlElement[] => all(el, 'characteristic');
const charOf = (el: XmlElement | undefined, type: string): XmlElement | undefined => chars(el).find((c) => attr(c, 'type') === type);
const parmOf = (el: XmlElement | undefined, name: string): XmlElement | undefined =>
  all(el, 'parm').find((p) => attr(p, 'name') === name);

describe('xml: parseXml', () => {
  it('reads local names whatever the prefix, and decodes entities once', () => {
    const el = parseXml('<x:Root xmlns:x="urn:x" x:Id="1"><y:Kid>a &amp;amp; b &#65;</y:Kid><Kid/></x:Root>');
    expect(el.name).toBe('Root');
    expect(el.attrs).toEqual({ Id: '1' });
    expect(all(el, 'Kid')).toHaveLength(2);
    expect(text(child(el, 'Kid'))).toBe('a &amp; b A');
    expect(text(child(el, 'Missing', 'Deeper'))).toBe('');
  });

  it.each([
    ['billion laughs', '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>', 'doctype'],
    ['XXE with SYSTEM', '<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>', 'doctype'],
    ['lower-case doctype', '<!doctype foo><foo/>', 'doctype'],
    ['bare ENTITY', '<foo><!ENTITY x "y"></foo>', 'doctype'],
    ['nesting 1000', `${'<a>'.repeat(1000)}${'</a>'.repeat(1000)}`, 'too_deep'],
    ['unclosed tag', '<a><b></a>', 'malformed'],
    ['two roots', '<a/><b/>', 'malformed'],
    ['not XML', 'hello', 'malformed'],
    ['empty', '', 'malformed'],
    ['prototype-polluting name', '<a><constructor>x</constructor></a>', 'malformed'],
  ])('refuses %s', (_name, have, want) => {
    expect(xmlReason(() => parseXml(have))).toBe(want);
  });

  it('refuses bodies over maxBytes, as Buffer and string', () => {
    const big = `<a>${'x'.repeat(2 * 1024 * 1024)}</a>`;
    expect(xmlReason(() => parseXml(big))).toBe('too_large');
    expect(xmlReason(() => parseXml(Buffer.from('<a>12345</a>'), { maxBytes: 8 }))).toBe('too_large');
  });

  it('honours maxDepth and ignores markup inside comments, CDATA and attribute values', () => {
    expect(xmlReason(() => parseXml('<a><b><c/></b></a>', { maxDepth: 2 }))).toBe('too_deep');
    expect(xmlReason(() => parseXml('<a><b><c/></b></a>', { maxDepth: 3 }))).toBe('accepted');
    const tricky = `<a t="x/>y>"><!-- <b><b><b> --><![CDATA[<b><b><b>]]><?pi <b><b>?></a>`;
    expect(xmlReason(() => parseXml(tricky, { maxDepth: 1 }))).toBe('accepted');
  });

  it('escapes the five XML specials', () => {
    expect(escapeXml(`a&b<c>"d"'e'`)).toBe('a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos;');
  });
});

describe('discovery', () => {
  it.each([
    [
      'Discover.1.xml',
      {
        messageId: 'urn:uuid:748132ec-a575-4329-b01b-6171a9cf8478',
        emailAddress: 'oscar@example.com',
        requestVersion: '5.0',
        deviceType: 'CIMClient_Windows',
        applicationVersion: '10.0.22621.3155',
        osEdition: '101',
        authPolicies: ['OnPremise', 'Federated'],
      },
    ],
    [
      'Discover.2.xml',
      {
        messageId: 'urn:uuid: 5f0e9c6a-2d1b-4c3e-9a8f-7b6d5c4e3f21',
        emailAddress: 'user@contoso.com',
        requestVersion: '9.0',
        deviceType: 'CIMClient_Windows',
        applicationVersion: '10.0.26200.9279',
        osEdition: '48',
        authPolicies: ['OnPremise', 'Federated', 'Certificate'],
      },
    ],
  ])('parses %s', (name, want) => {
    const have = parseDiscover(fixture(name));
    expect(have).toEqual(expect.objectContaining(want));
    expect(have.addressing.action).toBe(ACTION_DISCOVER);
    expect(have.addressing.to).toMatch(/^https:\/\/EnterpriseEnrollment\..+\/EnrollmentServer\/Discovery\.svc$/);
    expect(have.raw.equals(fixture(name))).toBe(true);
  });

  it.each([
    ['4.0', true, '4.0'],
    ['5.0', true, '5.0'],
    ['6.0', true, '5.0'],
    ['9.0', true, '5.0'],
    ['10.1', true, '5.0'],
    ['3.0', false, '3.0'],
    ['1.0', false, '3.0'],
    ['', false, '5.0'],
    ['garbage', false, '5.0'],
  ])('RequestVersion %p: accepted=%p, answer %p', (have, accepted, want) => {
    expect(isAcceptedRequestVersion(have)).toBe(accepted);
    expect(enrollmentVersionFor(have)).toBe(want);
  });

  it('ignores unknown extra elements', () => {
    const xml = fixture('Discover.1.xml')
      .toString('utf8')
      .replace('<EmailAddress>', '<FutureField a="1"><Nested>x</Nested></FutureField><EmailAddress>')
      .replace('<a:ReplyTo>', '<x:Extra xmlns:x="urn:x">y</x:Extra><a:ReplyTo>');
    expect(parseDiscover(xml)).toEqual(expect.objectContaining({ emailAddress: 'oscar@example.com', requestVersion: '5.0' }));
  });

  it.each([
    ['not an envelope', '<Discover/>'],
    ['no MessageID', '<s:Envelope xmlns:s="urn:s"><s:Header/><s:Body><Discover><request/></Discover></s:Body></s:Envelope>'],
    ['no Discover', '<s:Envelope xmlns:s="urn:s" xmlns:a="urn:a"><s:Header><a:MessageID>m</a:MessageID></s:Header><s:Body/></s:Envelope>'],
    ['doctype', '<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><s/>'],
  ])('faults MessageFormat on %s', (_name, have) => {
    expectFault(() => parseDiscover(have), 'MessageFormat');
  });

  it('builds a DiscoverResponse that parses back', () => {
    const xml = buildDiscoverResponse({
      relatesTo: 'urn:uuid: 5f0e9c6a-2d1b-4c3e-9a8f-7b6d5c4e3f21',
      authPolicy: 'Federated',
      enrollmentVersion: enrollmentVersionFor('9.0'),
      policyServiceUrl: 'https://mdm.example.com/EnrollmentServer/Policy.svc',
      enrollmentServiceUrl: 'https://mdm.example.com/EnrollmentServer/Enrollment.svc?x=1&y=2',
      authenticationServiceUrl: 'https://mdm.example.com/EnrollmentServer/Auth',
      activityId: '8c6060c4-0000-4000-8000-000000000001',
    });
    expect(xml).toContain('xmlns:s="http://www.w3.org/2003/05/soap-envelope"');
    expect(xml).toContain('Enrollment.svc?x=1&amp;y=2');
    const env = parseXml(xml);
    expect(text(child(env, 'Header', 'Action'))).toBe(ACTION_DISCOVER_RESPONSE);
    expect(text(child(env, 'Header', 'RelatesTo'))).toBe('urn:uuid: 5f0e9c6a-2d1b-4c3e-9a8f-7b6d5c4e3f21');
    expect(attr(child(env, 'Header', 'ActivityId'), 'CorrelationId')).toBe('8c6060c4-0000-4000-8000-000000000001');
    const result = child(env, 'Body', 'DiscoverResponse', 'DiscoverResult');
    expect(Object.fromEntries(result!.children.map((c) => [c.name, c.text]))).toEqual({
      AuthPolicy: 'Federated',
      EnrollmentVersion: '5.0',
      EnrollmentPolicyServiceUrl: 'https://mdm.example.com/EnrollmentServer/Policy.svc',
      EnrollmentServiceUrl: 'https://mdm.example.com/EnrollmentServer/Enrollment.svc?x=1&y=2',
      AuthenticationServiceUrl: 'https://mdm.example.com/EnrollmentServer/Auth',
    });
  });

  it('omits AuthenticationServiceUrl for OnPremise and refuses Federated without one', () => {
    const base = {
      relatesTo: 'm',
      enrollmentVersion: '4.0',
      policyServiceUrl: 'https://p',
      enrollmentServiceUrl: 'https://e',
    };
    expect(buildDiscoverResponse({ ...base, authPolicy: 'OnPremise' })).not.toContain('AuthenticationServiceUrl');
    expect(() => buildDiscoverResponse({ ...base, authPolicy: 'Federated' })).toThrow(/authenticationServiceUrl/);
  });
});

describe('xcep: GetPolicies', () => {
  it('parses GetPolicies.1.xml with its UsernameToken', () => {
    const have = parseGetPolicies(fixture('GetPolicies.1.xml'));
    expect(have).toEqual(
      expect.objectContaining({
        messageId: 'urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0',
        security: {
          username: 'user@contoso.com',
          password: 'p&ssw0rd',
          passwordType: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText',
        },
        preferredLanguage: undefined,
        tpmManufacturer: 'IBM',
      }),
    );
  });

  it('builds a GetPoliciesResponse with key length and SHA-256 OID', () => {
    const env = parseXml(buildGetPoliciesResponse({ relatesTo: 'urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0' }));
    expect(text(child(env, 'Header', 'RelatesTo'))).toBe('urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0');
    const response = child(env, 'Body', 'GetPoliciesResponse');
    const attributes = child(response, 'response', 'policies', 'policy', 'attributes');
    expect(text(child(attributes, 'policySchema'))).toBe('3');
    expect(text(child(attributes, 'privateKeyAttributes', 'minimalKeyLength'))).toBe('2048');
    expect(all(child(attributes, 'privateKeyAttributes', 'cryptoProviders'), 'provider').map((p) => p.text)).toEqual([
      'Microsoft Platform Crypto Provider',
      'Microsoft Software Key Storage Provider',
    ]);
    expect(text(child(attributes, 'hashAlgorithmOIDReference'))).toBe('0');
    const oid = child(response, 'oIDs', 'oID');
    expect(text(child(oid, 'value'))).toBe(OID_SHA256);
    expect(text(child(oid, 'oIDReferenceID'))).toBe('0');
    expect(text(child(oid, 'group'))).toBe('1');
  });
});

describe('wstep: RequestSecurityToken', () => {
  it('parses RequestSecurityToken.1.xml (OnPremise, user enrollment)', async () => {
    const have = parseRequestSecurityToken(fixture('RequestSecurityToken.1.xml'));
    expect(have).toEqual(
      expect.objectContaining({
        messageId: 'urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749',
        tokenType: TOKEN_TYPE_DEVICE_ENROLLMENT,
        requestType: REQUEST_TYPE_ISSUE,
        csrValueType: VALUE_TYPE_PKCS10,
      }),
    );
    expect(have.security.username).toBe('user@contoso.com');
    expect(have.context).toEqual(
      expect.objectContaining({
        DeviceID: DEVICE_ID,
        HWDevID: HW_DEV_ID,
        EnrollmentType: 'Full',
        OSVersion: '10.0.26200.9278',
        DeviceName: 'DESKTOP-H1T20J1',
        MAC: 'A2-19-7D-41-B3-9C',
        RequestVersion: '5.0',
      }),
    );
    expect(have.contextItems.filter((i) => i.name === 'MAC').map((i) => i.value)).toEqual([
      'A2-19-7D-41-B3-9C',
      '00-15-5D-01-6A-02',
      '00-15-5D-01-6A-03',
    ]);
    const csr = new x509.Pkcs10CertificateRequest(have.csr);
    expect(csr.subject).toBe(`CN=1B9C3E7A-5D42-4F8B-A0C6-E2D17B4F9A03!${DEVICE_ID}`);
    expect(await csr.verify()).toBe(true);
  });

  it('parses RequestSecurityToken.federated.1.xml (BinarySecurityToken, device enrollment)', () => {
    const have = parseRequestSecurityToken(fixture('RequestSecurityToken.federated.1.xml'));
    expect(have.security.username).toBeUndefined();
    expect(have.security.binaryToken).toEqual({
      valueType: VALUE_TYPE_USER_TOKEN,
      encodingType: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary',
      value: Buffer.from('mooring-sts:0f8c2a61-5b7e-4d39-9e12-6a4c8b0d3f57:user@contoso.com').toString('base64'),
    });
    expect(have.context).toEqual(
      expect.objectContaining({ EnrollmentType: 'Device', RequestVersion: '9.0', NotInOobe: 'True', SerialNumber: '0000-0012-3456-7890' }),
    );
    expect(have.csr.subarray(0, 2).toString('hex')).toBe('3082');
  });

  it('faults CertificateRequest on a non-base64 CSR and MessageFormat without one', () => {
    const xml = fixture('RequestSecurityToken.1.xml').toString('utf8');
    const bad = xml.replace(/(#PKCS10"[^>]*>)[^<]+</, '$1not*base64<');
    expectFault(() => parseRequestSecurityToken(bad), 'CertificateRequest');
    const none = xml.replace(/<wsse:BinarySecurityToken ValueType="[^"]*#PKCS10"[^>]*>[^<]+<\/wsse:BinarySecurityToken>/, '');
    expectFault(() => parseRequestSecurityToken(none), 'MessageFormat');
  });

  it('builds an RSTRC whose token decodes to the provisioning document', () => {
    const doc = '<?xml version="1.0" encoding="UTF-8"?><wap-provisioningdoc version="1.1"/>';
    const xml = buildRequestSecurityTokenResponseCollection({
      relatesTo: 'urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749',
      provisioningXml: doc,
      now: new Date('2026-01-02T03:04:05.678Z'),
    });
    const env = parseXml(xml);
    expect(text(child(env, 'Header', 'RelatesTo'))).toBe('urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749');
    expect(text(child(env, 'Header', 'Security', 'Timestamp', 'Created'))).toBe('2026-01-02T02:59:05Z');
    expect(text(child(env, 'Header', 'Security', 'Timestamp', 'Expires'))).toBe('2026-01-02T03:09:05Z');
    const rstr = child(env, 'Body', 'RequestSecurityTokenResponseCollection', 'RequestSecurityTokenResponse');
    expect(text(child(rstr, 'TokenType'))).toBe(TOKEN_TYPE_DEVICE_ENROLLMENT);
    expect(text(child(rstr, 'RequestID'))).toBe('0');
    const bst = child(rstr, 'RequestedSecurityToken', 'BinarySecurityToken');
    expect(attr(bst, 'ValueType')).toBe(VALUE_TYPE_PROVISION_DOC);
    expect(attr(bst, 'EncodingType')).toMatch(/#base64binary$/);
    expect(Buffer.from(text(bst), 'base64').toString('utf8')).toBe(doc);
    expect(buildRequestSecurityTokenResponseCollection({ relatesTo: 'm', provisioningXml: doc })).not.toContain('Timestamp');
  });
});

describe('provisioning document', () => {
  const rootCertDer = Buffer.from('root certificate DER bytes');
  const identityCertDer = Buffer.from('identity certificate DER bytes');
  const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('hex').toUpperCase();
  const input = {
    rootCertDer,
    identityCertDer,
    identityStore: 'User' as const,
    managementUrl: 'https://mdm.example.com/ManagementServer/MDM.svc',
    providerId: 'Mooring',
    serverName: 'Mooring',
    clientNonce: Buffer.from('client-nonce-16b').toString('base64'),
    serverNonce: Buffer.from('server-nonce-16b').toString('base64'),
    pollIntervalMinutes: 480,
    entDeviceName: 'DESKTOP-H1T20J1',
    sslClientCertSubject: `CN=${HW_DEV_ID}`,
  };

  it('thumbprintOf is the uppercase SHA-1 of the DER', () => {
    expect(thumbprintOf(rootCertDer)).toBe(sha1(rootCertDer));
    expect(thumbprintOf(rootCertDer)).toMatch(/^[0-9A-F]{40}$/);
  });

  it('has exactly CertificateStore, APPLICATION and DMClient with the right contents', () => {
    const xml = buildProvisioningDoc(input);
    expect(xml).not.toMatch(/\n/);
    expect(xml).toContain('<parm name="BACKCOMPATRETRYDISABLED"/>');
    expect(xml).toContain(`value="Subject=CN%3D${HW_DEV_ID}&amp;Stores=My%5CUser"`);
    expect(xml).not.toContain('ROLE');
    const doc = parseXml(xml);
    expect(doc.name).toBe('wap-provisioningdoc');
    expect(chars(doc).map((c) => attr(c, 'type'))).toEqual(['CertificateStore', 'APPLICATION', 'DMClient']);

    const store = charOf(doc, 'CertificateStore');
    const root = charOf(charOf(charOf(store, 'Root'), 'System'), sha1(rootCertDer));
    expect(attr(parmOf(root, 'EncodedCertificate'), 'value')).toBe(rootCertDer.toString('base64'));
    const my = charOf(charOf(store, 'My'), 'User');
    expect(chars(my).map((c) => attr(c, 'type'))).toEqual([sha1(identityCertDer), 'PrivateKeyContainer']);
    expect(attr(parmOf(charOf(my, sha1(identityCertDer)), 'EncodedCertificate'), 'value')).toBe(identityCertDer.toString('base64'));

    const app = charOf(doc, 'APPLICATION');
    const v = (name: string): string | undefined => attr(parmOf(app, name), 'value');
    expect([v('APPID'), v('PROVIDER-ID'), v('NAME'), v('ADDR')]).toEqual(['w7', 'Mooring', 'Mooring', input.managementUrl]);
    expect(v('DEFAULTENCODING')).toBe('application/vnd.syncml.dm+xml');
    expect(v('SSLCLIENTCERTSEARCHCRITERIA')).toBe(`Subject=CN%3D${HW_DEV_ID}&Stores=My%5CUser`);
    const auth = chars(app).map((c) => Object.fromEntries(all(c, 'parm').map((p) => [attr(p, 'name'), attr(p, 'value')])));
    expect(auth).toEqual([
      expect.objectContaining({ AAUTHLEVEL: 'CLIENT', AAUTHTYPE: 'DIGEST', AAUTHDATA: input.clientNonce }),
      expect.objectContaining({ AAUTHLEVEL: 'APPSRV', AAUTHTYPE: 'DIGEST', AAUTHDATA: input.serverNonce }),
    ]);

    const provider = charOf(charOf(charOf(doc, 'DMClient'), 'Provider'), 'Mooring');
    const pv = (name: string): string | undefined => attr(parmOf(provider, name), 'value');
    expect(pv('EntDeviceName')).toBe('DESKTOP-H1T20J1');
    expect(pv('ManagementServiceAddress')).toBe(input.managementUrl);
    const poll = charOf(provider, 'Poll');
    expect(attr(parmOf(poll, 'IntervalForRemainingScheduledRetries'), 'value')).toBe('480');
    expect(attr(parmOf(poll, 'NumberOfFirstRetries'), 'value')).not.toBe('0');
  });

  it('puts a device enrollment identity under My/System', () => {
    const doc = parseXml(buildProvisioningDoc({ ...input, identityStore: 'System', sslClientCertSubject: undefined }));
    const my = charOf(charOf(doc, 'CertificateStore'), 'My');
    expect(chars(my).map((c) => attr(c, 'type'))).toEqual(['System']);
    expect(parmOf(charOf(doc, 'APPLICATION'), 'SSLCLIENTCERTSEARCHCRITERIA')).toBeUndefined();
  });

  it('escapes values and rejects a bad poll interval', () => {
    expect(buildProvisioningDoc({ ...input, serverName: 'A&B "MDM"' })).toContain('value="A&amp;B &quot;MDM&quot;"');
    expect(() => buildProvisioningDoc({ ...input, pollIntervalMinutes: 0 })).toThrow(RangeError);
  });
});

describe('faults', () => {
  it('renders subcode, reason and DeviceEnrollmentServiceError detail', () => {
    const xml = buildSoapFault({
      relatesTo: 'urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749',
      subcode: 'Authorization',
      detail: { type: 'DeviceCapReached' },
      text: 'device cap reached',
      traceId: 'trace-1',
    });
    const env = parseXml(xml);
    expect(text(child(env, 'Header', 'Action'))).toBe('http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep');
    expect(text(child(env, 'Header', 'RelatesTo'))).toBe('urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749');
    const fault = child(env, 'Body', 'Fault');
    expect(text(child(fault, 'Code', 'Value'))).toBe('s:Receiver');
    expect(text(child(fault, 'Code', 'Subcode', 'Value'))).toBe('s:Authorization');
    expect(text(child(fault, 'Reason', 'Text'))).toBe('device cap reached');
    const detail = child(fault, 'Detail', 'DeviceEnrollmentServiceError');
    expect(detail!.children.map((c) => [c.name, c.text])).toEqual([
      ['ErrorType', 'DeviceCapReached'],
      ['Message', 'device cap reached'],
      ['TraceId', 'trace-1'],
    ]);
    expect(xml).toContain('<DeviceEnrollmentServiceError xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment">');
  });

  it.each([
    ['InternalServiceFault', 'a:InternalServiceFault'],
    ['InvalidSecurity', 'a:InvalidSecurity'],
    ['InvalidSecurityToken', 'a:InvalidSecurity'],
    ['MessageFormat', 's:MessageFormat'],
  ] as const)('writes subcode %s as %s', (subcode, want) => {
    const xml = buildSoapFault({ subcode, text: 'x' });
    expect(text(child(parseXml(xml), 'Body', 'Fault', 'Code', 'Subcode', 'Value'))).toBe(want);
    expect(xml).not.toContain('RelatesTo');
    expect(xml).not.toContain('s:Detail');
    if (want.startsWith('a:')) {
      expect(xml).toContain('xmlns:a="http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher"');
    }
  });

  it('WindowsFault carries subcode, detail, HRESULT and renders itself', () => {
    const f = new WindowsFault('Authorization', 'not allowed', { type: 'InvalidEnrollmentData', message: 'DeviceID missing' });
    expect([f.subcode, f.detail?.type, f.httpStatus, f.hresult]).toEqual(['Authorization', 'InvalidEnrollmentData', 500, 0x80180019]);
    const detail = child(parseXml(f.toXml({ relatesTo: 'm', traceId: 't' })), 'Body', 'Fault', 'Detail', 'DeviceEnrollmentServiceError');
    expect(text(child(detail, 'Message'))).toBe('DeviceID missing');
    expect(new WindowsFault('MessageFormat', 'x').hresult).toBe(0x80180001);
  });

  it('faultFromXmlError maps XML refusals to MessageFormat', () => {
    const f = faultFromXmlError(new XmlError('doctype', 'no'));
    expect([f.subcode, f.httpStatus]).toEqual(['MessageFormat', 500]);
    expect(f.cause).toBeInstanceOf(XmlError);
  });
});
