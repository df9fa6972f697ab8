import fs from 'node:fs';
import path from 'node:path';
import plist from 'plist';
import { PlistError, decodePlist, decodePlistDict, encodePlist, PLIST_DEFAULT_MAX_BYTES } from '../../protocols/apple/plist';
import {
  CheckinError,
  UnknownMessageTypeError,
  channelTypeOf,
  decodeCheckin,
  encodeDeclarativeTokens,
  encodeGetBootstrapTokenResponse,
  enrollmentIdOf,
  resolveEnrollment,
  type CheckinMessage,
} from '../../protocols/apple/checkin';
import { ReportError, decodeReport } from '../../protocols/apple/report';
import { AppleCommands, DEVICE_INFO_QUERIES, appleOsOf } from '../../protocols/apple/commands';
import type { DeviceFacts, Params } from '../../src/core/types';

const FIXTURES = path.join(__dirname, '../../fixtures/apple');
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name));

const IPAD_UDID = '1c111111e2c84a1d1c3f5e0f27b7b2dd8b9f9a0c';
const MAC_UDID = '1C111111-2C3D-5E4F-8A9B-0C1D2E3F4A5B';
const MAC_USER = '2A3B4C5D-6E7F-4081-92A3-B4C5D6E7F809';
const TOPIC = 'com.apple.mgmt.External.e3b8ceac-1f18-4c8e-8a63-dd17d99435d9';
const CMD_ID = '5f3c1b2a-0000-4000-8000-000000000001';

const XML_HEAD =
  '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n';
const body = (obj: Record<string, unknown>) => Buffer.from(plist.build(obj as plist.PlistValue));

describe('decodeCheckin fixtures', () => {
  const cases: [string, Partial<Record<string, unknown>>][] = [
    [
      'Authenticate.1.plist',
      { MessageType: 'Authenticate', UDID: IPAD_UDID, Topic: TOPIC, SerialNumber: 'DLXKM0Z9F196', Model: 'iPad2,5', ProductName: 'iPad2,5', OSVersion: '9.3.5', BuildVersion: '13G36', DeviceName: 'iPad' },
    ],
    ['Authenticate.2.plist', { MessageType: 'Authenticate', UDID: MAC_UDID, Model: 'iMac14,2', OSVersion: '10.12.6', SerialNumber: 'C02LW984F8J2' }],
    ['TokenUpdate.1.plist', { MessageType: 'TokenUpdate', UDID: IPAD_UDID, Topic: TOPIC, PushMagic: '7F3A5B2C-9D1E-4F60-A7B8-C9D0E1F2A3B4', AwaitingConfiguration: false }],
    ['TokenUpdate.2.plist', { MessageType: 'TokenUpdate', UDID: MAC_UDID, Topic: TOPIC, PushMagic: '2D9C1F0A-6B7E-4C3D-9E8F-1A2B3C4D5E6F', UnlockToken: undefined }],
    ['TokenUpdate.user.1.plist', { MessageType: 'TokenUpdate', UDID: MAC_UDID, UserID: MAC_USER, UserShortName: 'ada', UserLongName: 'Ada Lovelace', NotOnConsole: false }],
    ['CheckOut.1.plist', { MessageType: 'CheckOut', UDID: MAC_UDID, Topic: TOPIC }],
  ];
  it.each(cases)('%s', (name, want) => {
    const raw = fixture(name);
    const msg = decodeCheckin(raw);
    for (const [key, w] of Object.entries(want)) {
      const have = (msg as unknown as Record<string, unknown>)[key];
      expect({ key, have }).toEqual({ key, have: w });
    }
    expect(msg.raw).toBe(raw);
    expect(msg.fields.MessageType).toBe(msg.MessageType);
  });

  it('TokenUpdate data fields are Buffers', () => {
    const msg = decodeCheckin(fixture('TokenUpdate.1.plist'));
    if (msg.MessageType !== 'TokenUpdate') throw new Error(`have ${msg.MessageType}, want TokenUpdate`);
    expect(msg.Token.toString()).toBe('token-0123456789abcdef0123456789abcdef');
    expect(Buffer.isBuffer(msg.UnlockToken)).toBe(true);
    expect(msg.UnlockToken!.toString()).toBe('unlock-token-blob-for-clear-passcode');
  });

  it('decodes every other message type with its typed fields', () => {
    const ids = { UDID: MAC_UDID, Topic: TOPIC };
    const check = (obj: Record<string, unknown>) => decodeCheckin(body({ ...ids, ...obj }));
    expect(check({ MessageType: 'UserAuthenticate', UserID: MAC_USER, DigestResponse: 'x' })).toMatchObject({ MessageType: 'UserAuthenticate', DigestResponse: 'x' });
    const set = check({ MessageType: 'SetBootstrapToken', BootstrapToken: Buffer.from('bst'), AwaitingConfiguration: true });
    expect(set).toMatchObject({ MessageType: 'SetBootstrapToken', AwaitingConfiguration: true });
    expect((set as Extract<CheckinMessage, { MessageType: 'SetBootstrapToken' }>).BootstrapToken!.toString()).toBe('bst');
    expect(check({ MessageType: 'GetBootstrapToken', AwaitingConfiguration: false })).toMatchObject({ MessageType: 'GetBootstrapToken', AwaitingConfiguration: false });
    const dm = check({ MessageType: 'DeclarativeManagement', Endpoint: 'status', Data: Buffer.from('{"StatusItems":{}}') });
    expect(dm).toMatchObject({ MessageType: 'DeclarativeManagement', Endpoint: 'status' });
    expect(check({ MessageType: 'GetToken', TokenServiceType: 'com.apple.maid' })).toMatchObject({ MessageType: 'GetToken', TokenServiceType: 'com.apple.maid' });
  });

  it('refuses an unknown or missing MessageType with UnknownMessageTypeError', () => {
    const err = (() => {
      try {
        decodeCheckin(body({ MessageType: 'Bogus', UDID: MAC_UDID }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(UnknownMessageTypeError);
    expect(err).toBeInstanceOf(CheckinError);
    expect((err as UnknownMessageTypeError).messageType).toBe('Bogus');
    expect(() => decodeCheckin(body({ UDID: MAC_UDID }))).toThrow(UnknownMessageTypeError);
  });

  it('refuses missing required fields and wrong types', () => {
    expect(() => decodeCheckin(body({ MessageType: 'TokenUpdate', UDID: MAC_UDID, Topic: TOPIC, PushMagic: 'm' }))).toThrow(
      expect.objectContaining({ reason: 'missing_field' }),
    );
    expect(() => decodeCheckin(body({ MessageType: 'TokenUpdate', UDID: MAC_UDID, Topic: TOPIC, PushMagic: 'm', Token: 'text' }))).toThrow(
      expect.objectContaining({ reason: 'wrong_type' }),
    );
    expect(() => decodeCheckin(body({ MessageType: 'CheckOut', Topic: TOPIC }))).toThrow(expect.objectContaining({ reason: 'no_enrollment_id' }));
    expect(() => decodeCheckin(body({ MessageType: 'GetToken', UDID: MAC_UDID, TokenServiceType: 'com.apple.watch.pairing' }))).toThrow(
      expect.objectContaining({ reason: 'missing_field' }),
    );
  });
});

describe('enrollment ids', () => {
  const cases: [string, Record<string, string>, string, 'device' | 'user'][] = [
    ['iOS device channel', { UDID: IPAD_UDID }, IPAD_UDID, 'device'],
    ['macOS user channel', { UDID: MAC_UDID, UserID: MAC_USER, UserShortName: 'ada' }, `${MAC_UDID}:${MAC_USER}`, 'user'],
    ['Shared iPad user', { UDID: IPAD_UDID, UserID: 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', UserShortName: 'ada@example.com' }, `${IPAD_UDID}:ada@example.com`, 'user'],
    ['User Enrollment device channel', { EnrollmentID: 'E1' }, 'E1', 'device'],
    ['User Enrollment user channel', { EnrollmentID: 'E1', EnrollmentUserID: 'U1' }, 'E1:U1', 'user'],
    ['UDID wins over EnrollmentID', { UDID: MAC_UDID, EnrollmentID: 'E1' }, MAC_UDID, 'device'],
  ];
  it.each(cases)('%s', (_name, keys, wantId, wantChannel) => {
    expect(enrollmentIdOf(keys)).toBe(wantId);
    expect(channelTypeOf(keys)).toBe(wantChannel);
  });

  it('fixtures: device and user channel of one Mac', () => {
    const device = decodeCheckin(fixture('CheckOut.1.plist'));
    const user = decodeCheckin(fixture('TokenUpdate.user.1.plist'));
    expect([enrollmentIdOf(device), channelTypeOf(device)]).toEqual([MAC_UDID, 'device']);
    expect([enrollmentIdOf(user), channelTypeOf(user)]).toEqual([`${MAC_UDID}:${MAC_USER}`, 'user']);
    expect(resolveEnrollment(user).parentId).toBe(MAC_UDID);
  });
});

describe('plist bounds', () => {
  const dict = '<plist version="1.0"><dict><key>MessageType</key><string>CheckOut</string></dict></plist>';
  it('accepts the Apple DOCTYPE', () => {
    expect(decodePlist(XML_HEAD + dict)).toEqual({ MessageType: 'CheckOut' });
    expect(decodePlist(Buffer.from(dict))).toEqual({ MessageType: 'CheckOut' });
  });
  it('refuses entities, other doctypes, oversize, deep nesting, binary and malformed bodies', () => {
    const reason = (input: string | Buffer, limits?: Parameters<typeof decodePlist>[1]) => {
      try {
        decodePlist(input, limits);
      } catch (e) {
        expect(e).toBeInstanceOf(PlistError);
        return (e as PlistError).reason;
      }
      return 'accepted';
    };
    expect(reason('<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY x "boom">]><plist><string>&x;</string></plist>')).toBe('entity');
    expect(reason('<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd" [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + dict)).toBe('entity');
    expect(reason('<!DOCTYPE plist SYSTEM "http://evil.example/x.dtd">' + dict)).toBe('doctype');
    expect(reason(XML_HEAD + dict, { maxBytes: 50 })).toBe('too_large');
    expect(reason(`<plist><string>${'a'.repeat(PLIST_DEFAULT_MAX_BYTES)}</string></plist>`)).toBe('too_large');
    expect(reason(`<plist>${'<array>'.repeat(40)}${'</array>'.repeat(40)}</plist>`)).toBe('too_deep');
    expect(reason(`<plist>${'<array>'.repeat(5)}${'</array>'.repeat(5)}</plist>`, { maxDepth: 4 })).toBe('too_deep');
    expect(reason(Buffer.from('bplist00\x00\x01'))).toBe('binary');
    expect(reason('<notplist/>')).toBe('malformed');
    expect(reason('<plist><dict><key>a</key><string>x</dict></plist>')).toBe('malformed');
    expect(reason('')).toBe('malformed');
    expect(reason('<plist><array/></plist>')).toBe('accepted');
  });
  it('decodeCheckin and decodeReport pass bounds errors through', () => {
    expect(() => decodeCheckin(Buffer.from('<!DOCTYPE x [<!ENTITY a "b">]><plist/>'))).toThrow(PlistError);
    expect(() => decodeReport(Buffer.from('<plist><array/></plist>'))).toThrow(expect.objectContaining({ reason: 'not_a_dict' }));
  });
  it('encodes Buffers as data and round-trips', () => {
    const xml = encodePlist({ A: Buffer.from('hi'), B: [1, true, 'x'] });
    expect(xml).toContain('<data>aGk=</data>');
    expect(xml.startsWith('<?xml')).toBe(true);
    const back = decodePlist(xml) as Record<string, unknown>;
    expect((back.A as Buffer).toString()).toBe('hi');
    expect(back.B).toEqual([1, true, 'x']);
  });
});

describe('flat dictionaries (the Idle fast path) read exactly as the full parser reads them', () => {
  const full = (xml: string) => plist.parse(xml);
  it.each(['Idle.1.plist', 'Idle.userenrollment.1.plist', 'NotNow.1.plist', 'CheckOut.1.plist', 'Authenticate.1.plist', 'Acknowledged.DeviceInformation.1.plist'])('%s', (name) => {
    const raw = fixture(name);
    expect(decodePlistDict(raw)).toEqual(full(raw.toString('utf8')));
  });
  it('on generated flat dictionaries with awkward text', () => {
    const texts = ['', ' padded ', 'line\nbreak', 'Ada’s iPhone', 'a > b', '\t', 'UDID:user', '00008120-001A2B3C4D5E6F70'];
    for (let i = 0; i < 200; i++) {
      const dict: Record<string, string> = {};
      for (let k = 0; k < 1 + (i % 6); k++) dict[`Key${k}.${i % 3}`] = texts[(i + k) % texts.length]!;
      const xml = plist.build(dict);
      expect(decodePlistDict(xml)).toEqual(full(xml));
      expect(decodePlistDict(xml.replace(/\n\s*/g, ''))).toEqual(full(xml.replace(/\n\s*/g, '')));
    }
  });
  it('leaves entities, other DOCTYPEs, repeated keys and non-strings to the full parser', () => {
    const amp = '<?xml version="1.0"?><plist version="1.0"><dict><key>A</key><string>x &amp; y</string></dict></plist>';
    expect(decodePlistDict(amp)).toEqual({ A: 'x & y' });
    const evil = '<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY e "boom">]><plist version="1.0"><dict><key>A</key><string>x</string></dict></plist>';
    expect(() => decodePlistDict(evil)).toThrow(PlistError);
    const repeated = '<plist version="1.0"><dict><key>A</key><string>1</string><key>A</key><string>2</string></dict></plist>';
    expect(decodePlistDict(repeated)).toEqual(full(repeated));
    const mixed = '<plist version="1.0"><dict><key>A</key><string>1</string><key>B</key><true/></dict></plist>';
    expect(decodePlistDict(mixed)).toEqual({ A: '1', B: true });
  });
});

describe('decodeReport fixtures', () => {
  it('Acknowledged.DeviceInformation.1', () => {
    const raw = fixture('Acknowledged.DeviceInformation.1.plist');
    const r = decodeReport(raw);
    expect({ status: r.status, commandUuid: r.commandUuid, udid: r.UDID, id: r.enrollment.id }).toEqual({
      status: 'Acknowledged',
      commandUuid: '0001_DeviceInformation',
      udid: IPAD_UDID,
      id: IPAD_UDID,
    });
    expect(r.fields).toMatchObject({ QueryResponses: { SerialNumber: 'DLXKM0Z9F196', OSVersion: '9.3.5', IsSupervised: false } });
    expect(r.fields.Status).toBeUndefined();
    expect(r.raw).toBe(raw);
  });
  it('Error.1 carries the ErrorChain', () => {
    const r = decodeReport(fixture('Error.1.plist'));
    expect(r.status).toBe('Error');
    expect(r.errorChain).toEqual([
      {
        ErrorCode: 12013,
        ErrorDomain: 'MCMDMErrorDomain',
        LocalizedDescription: 'The profile “com.example.wifi” is not managed by MDM.',
        USEnglishDescription: 'The profile “com.example.wifi” is not managed by MDM.',
      },
    ]);
  });
  const cases: [string, string, string | undefined, string][] = [
    ['CommandFormatError.1.plist', 'CommandFormatError', '0005_Bogus', MAC_UDID],
    ['NotNow.1.plist', 'NotNow', '0002_InstallProfile', `${MAC_UDID}:${MAC_USER}`],
    ['Idle.1.plist', 'Idle', undefined, IPAD_UDID],
    ['Idle.userenrollment.1.plist', 'Idle', undefined, 'B5E4D1F2-0A9C-4C0F-8E6B-3D2A1F0E9C8B'],
  ];
  it.each(cases)('%s', (name, status, uuid, id) => {
    const r = decodeReport(fixture(name));
    expect({ status: r.status, uuid: r.commandUuid, id: r.enrollment.id }).toEqual({ status, uuid, id });
  });
  it('refuses a report without Status, with an unknown Status, or a non-Idle report without CommandUUID', () => {
    const reason = (obj: Record<string, unknown>) => {
      try {
        decodeReport(body(obj));
      } catch (e) {
        expect(e).toBeInstanceOf(ReportError);
        return (e as ReportError).reason;
      }
      return 'accepted';
    };
    expect(reason({ UDID: MAC_UDID, CommandUUID: 'x' })).toBe('missing_status');
    expect(reason({ UDID: MAC_UDID, Status: 'Maybe' })).toBe('unknown_status');
    expect(reason({ UDID: MAC_UDID, Status: 'Acknowledged' })).toBe('missing_command_uuid');
    expect(reason({ Status: 'Idle' })).toBe('bad_enrollment');
  });
});

describe('check-in replies', () => {
  it('GetBootstrapToken: data or empty body', () => {
    expect(encodeGetBootstrapTokenResponse(null).length).toBe(0);
    const back = plist.parse(encodeGetBootstrapTokenResponse(Buffer.from('tok')).toString()) as { BootstrapToken: Buffer };
    expect(back.BootstrapToken.toString()).toBe('tok');
  });
  it('DDM tokens JSON', () => {
    expect(JSON.parse(encodeDeclarativeTokens('abc', new Date('2026-01-02T03:04:05.678Z')).toString())).toEqual({
      SyncTokens: { DeclarationsToken: 'abc', Timestamp: '2026-01-02T03:04:05Z' },
    });
  });
});

// ---- commands ----

const base: DeviceFacts = {
  id: 'dev-1',
  platform: 'apple',
  status: 'enrolled',
  ownership: 'corporate',
  mode: 'device',
  supervised: false,
  model: 'iPhone15,2',
  manufacturer: 'Apple Inc.',
  os_version: '17.4',
  api_level: null,
  udid: IPAD_UDID,
};
const iphone = base;
const supervisedIphone: DeviceFacts = { ...base, supervised: true, mode: 'ade' };
const mac: DeviceFacts = { ...base, model: 'MacBookPro18,3', os_version: '14.4', udid: MAC_UDID };
const byod: DeviceFacts = { ...base, mode: 'user_enrollment', ownership: 'personal', udid: null };

const apple = new AppleCommands();
const UNLOCK = Buffer.from('unlock-token').toString('base64');
const PROFILE = Buffer.from('<?xml version="1.0"?><plist version="1.0"><dict/></plist>').toString('base64');

describe('AppleCommands.build', () => {
  const cases: [string, Params, string, Record<string, unknown>][] = [
    ['lock', { pin: '123456', message: 'Call IT', phone_number: '+1 555 0100' }, 'DeviceLock', { PIN: '123456', Message: 'Call IT', PhoneNumber: '+1 555 0100' }],
    ['lock', {}, 'DeviceLock', {}],
    ['wipe', { pin: '654321', preserve_data_plan: true, obliteration_behavior: 'ObliterateWithWarning' }, 'EraseDevice', { PIN: '654321', PreserveDataPlan: true, ObliterationBehavior: 'ObliterateWithWarning' }],
    ['restart', {}, 'RestartDevice', {}],
    ['device_info', {}, 'DeviceInformation', { Queries: [...DEVICE_INFO_QUERIES] }],
    ['device_info', { queries: ['UDID', 'OSVersion'] }, 'DeviceInformation', { Queries: ['UDID', 'OSVersion'] }],
    ['lost_mode_on', { message: 'Lost', phone_number: '+1 555 0100', footnote: 'Reward' }, 'EnableLostMode', { Message: 'Lost', PhoneNumber: '+1 555 0100', Footnote: 'Reward' }],
    ['lost_mode_off', {}, 'DisableLostMode', {}],
    ['remove_profile', { identifier: 'com.example.wifi' }, 'RemoveProfile', { Identifier: 'com.example.wifi' }],
    ['profile_list', { managed_only: true }, 'ProfileList', { ManagedOnly: true }],
    ['raw', { command: { RequestType: 'SecurityInfo' } }, 'SecurityInfo', {}],
    ['raw', { command: { RequestType: 'Settings', Settings: [{ Item: 'DeviceName', DeviceName: 'Kiosk 1' }] } }, 'Settings', { Settings: [{ Item: 'DeviceName', DeviceName: 'Kiosk 1' }] }],
  ];
  it.each(cases)('%s %j → %s', (type, params, requestType, want) => {
    const xml = apple.build({ id: CMD_ID, type, params }, supervisedIphone);
    expect(xml.startsWith('<?xml')).toBe(true);
    const back = plist.parse(xml) as { CommandUUID: string; Command: Record<string, unknown> };
    expect(back.CommandUUID).toBe(CMD_ID);
    expect(back.Command).toEqual({ RequestType: requestType, ...want });
  });
  it('clear_passcode and install_profile carry data', () => {
    // The UnlockToken is added only at hand-out (routes.ts), so the stored command holds no secret.
    const clear = plist.parse(apple.build({ id: CMD_ID, type: 'clear_passcode', params: {} }, iphone)) as { CommandUUID: string; Command: Record<string, unknown> };
    expect([clear.CommandUUID, clear.Command]).toEqual([CMD_ID, { RequestType: 'ClearPasscode' }]);
    const install = plist.parse(apple.build({ id: CMD_ID, type: 'install_profile', params: { payload: PROFILE } }, iphone)) as { Command: { RequestType: string; Payload: Buffer } };
    expect(install.Command.RequestType).toBe('InstallProfile');
    expect(install.Command.Payload.toString('base64')).toBe(PROFILE);
    const raw = plist.parse(apple.build({ id: CMD_ID, type: 'raw', params: { command: { RequestType: 'X', Blob: { $data: 'aGk=' } } } }, iphone)) as { Command: { Blob: Buffer } };
    expect(raw.Command.Blob.toString()).toBe('hi');
  });
  it('builds each command with its own CommandUUID from one cached encoding', () => {
    const ids = ['0190a6f1-0000-7000-8000-000000000001', '0190a6f1-0000-7000-8000-000000000002'];
    const [a, b] = ids.map((id) => plist.parse(apple.build({ id, type: 'lock', params: { message: 'Call IT' } }, iphone)) as { CommandUUID: string; Command: object });
    expect([a!.CommandUUID, b!.CommandUUID]).toEqual(ids);
    expect(a!.Command).toEqual(b!.Command);
    const other = plist.parse(apple.build({ id: ids[0]!, type: 'lock', params: { message: 'Other' } }, iphone)) as { Command: { Message: string } };
    expect(other.Command.Message).toBe('Other');
  });
  it('refuses to build unusable params', () => {
    expect(() => apple.build({ id: CMD_ID, type: 'clear_passcode', params: { unlock_token: UNLOCK } }, iphone)).toThrow(expect.objectContaining({ code: 'invalid_params' }));
    expect(() => apple.build({ id: CMD_ID, type: 'teleport', params: {} }, iphone)).toThrow();
  });
});

describe('AppleCommands.permit', () => {
  const ok = { allowed: true };
  const mode = { allowed: false, code: 'command_not_permitted', reason: 'management_mode' };
  const unsupported = { allowed: false, code: 'command_not_permitted', reason: 'unsupported' };
  const bad = { allowed: false, code: 'invalid_params', reason: 'invalid_value' };
  const lost = { message: 'Lost' };
  const cases: [string, string, Params, DeviceFacts, object][] = [
    ['iphone', 'lock', {}, iphone, ok],
    ['iphone', 'lock', { pin: '123456' }, iphone, unsupported],
    ['mac', 'lock', { pin: '12' }, mac, bad],
    ['byod iphone', 'lock', {}, byod, ok],
    ['byod mac', 'lock', { pin: '123456' }, { ...mac, mode: 'user_enrollment' }, mode],
    ['mac', 'lock', {}, mac, bad],
    ['iphone', 'wipe', {}, iphone, ok],
    ['iphone', 'wipe', { obliteration_behavior: 'Sometimes' }, iphone, bad],
    ['byod', 'wipe', {}, byod, mode],
    ['iphone', 'restart', {}, iphone, mode],
    ['supervised iphone', 'restart', {}, supervisedIphone, ok],
    ['mac', 'restart', {}, mac, ok],
    ['byod', 'restart', {}, byod, mode],
    ['iphone', 'device_info', {}, iphone, ok],
    ['byod', 'device_info', {}, byod, ok],
    ['iphone', 'lost_mode_on', lost, iphone, mode],
    ['supervised iphone', 'lost_mode_on', lost, supervisedIphone, ok],
    ['supervised iphone', 'lost_mode_on', {}, supervisedIphone, bad],
    ['supervised iphone', 'lost_mode_off', {}, supervisedIphone, ok],
    ['byod', 'lost_mode_on', lost, byod, mode],
    ['byod', 'lost_mode_off', {}, byod, mode],
    ['mac', 'lost_mode_on', lost, { ...mac, supervised: true }, unsupported],
    ['iphone', 'clear_passcode', {}, iphone, ok],
    ['iphone', 'clear_passcode', { unlock_token: UNLOCK }, iphone, bad],
    ['byod', 'clear_passcode', {}, byod, mode],
    ['mac', 'clear_passcode', {}, mac, unsupported],
    ['iphone', 'shutdown', {}, iphone, mode],
    ['supervised iphone', 'shutdown', {}, supervisedIphone, ok],
    ['mac', 'shutdown', {}, mac, ok],
    ['iphone', 'security_info', {}, iphone, ok],
    ['iphone', 'installed_application_list', { managed_apps_only: true }, iphone, ok],
    ['iphone', 'installed_application_list', { managed_apps_only: 'yes' }, iphone, bad],
    ['iphone', 'install_profile', { payload: PROFILE }, iphone, ok],
    ['byod', 'install_profile', { payload: PROFILE }, byod, ok],
    ['iphone', 'install_profile', { payload: 'not base64!' }, iphone, bad],
    ['iphone', 'remove_profile', { identifier: 'com.example.wifi' }, iphone, ok],
    ['iphone', 'remove_profile', {}, iphone, bad],
    ['iphone', 'profile_list', {}, iphone, ok],
    ['iphone', 'raw', { command: { RequestType: 'SecurityInfo' } }, iphone, ok],
    ['iphone', 'raw', { command: { Queries: [] } }, iphone, bad],
    ['iphone', 'raw', { command: { RequestType: 'X', Bad: null } }, iphone, bad],
    ['iphone', 'reset_password', {}, iphone, unsupported],
    ['iphone', 'teleport', {}, iphone, unsupported],
  ];
  it.each(cases)('%s: %s %j', (_who, type, params, device, want) => {
    expect(apple.permit(device, type, params)).toMatchObject(want);
  });
  it('says what lock and wipe really do', () => {
    expect(apple.permit(mac, 'lock', { pin: '123456' })).toEqual({ allowed: true, effect: 'locks the Mac; it unlocks only with the 6-digit PIN' });
    expect(apple.permit(iphone, 'wipe', {})).toMatchObject({ effect: expect.stringContaining('erases') });
  });
  it('appleOsOf', () => {
    expect([appleOsOf(iphone), appleOsOf(mac), appleOsOf({ model: 'iPad2,5' }), appleOsOf({ model: 'iMac14,2' }), appleOsOf({ model: null })]).toEqual([
      'ios',
      'macos',
      'ios',
      'macos',
      'unknown',
    ]);
  });
});

describe('AppleCommands.parseResult', () => {
  it('Acknowledged → acknowledged with JSON-safe fields', () => {
    const r = decodeReport(fixture('Acknowledged.DeviceInformation.1.plist'));
    const out = apple.parseResult(r);
    expect(out).toMatchObject({ status: 'acknowledged', result: { QueryResponses: { SerialNumber: 'DLXKM0Z9F196', AvailableDeviceCapacity: 10.82 } } });
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
    const withData = decodeReport(body({ UDID: MAC_UDID, Status: 'Acknowledged', CommandUUID: 'c', Blob: Buffer.from('hi') }));
    expect(apple.parseResult(withData)).toEqual({ status: 'acknowledged', result: { Blob: 'aGk=' } });
  });
  it('Error and CommandFormatError → error with the ErrorChain', () => {
    expect(apple.parseResult(decodeReport(fixture('Error.1.plist')))).toEqual({
      status: 'error',
      error: {
        status: 'Error',
        error_chain: [
          {
            ErrorCode: 12013,
            ErrorDomain: 'MCMDMErrorDomain',
            LocalizedDescription: 'The profile “com.example.wifi” is not managed by MDM.',
            USEnglishDescription: 'The profile “com.example.wifi” is not managed by MDM.',
          },
        ],
      },
    });
    expect(apple.parseResult(decodeReport(fixture('CommandFormatError.1.plist')))).toMatchObject({
      status: 'error',
      error: { status: 'CommandFormatError', error_chain: [{ ErrorCode: 12021 }] },
    });
  });
  it('NotNow → not_now', () => {
    expect(apple.parseResult(decodeReport(fixture('NotNow.1.plist')))).toEqual({ status: 'not_now' });
  });
});
