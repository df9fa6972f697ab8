import fs from 'node:fs';
import path from 'node:path';
import {
  SyncMlError,
  buildSyncMlReply,
  inventoryFromItems,
  isUnenrollmentAlert,
  parseSyncMl,
  parseXmlTree,
  statusFor,
  type SyncMlCommand,
} from '../../protocols/windows/syncml';
import { DEVICE_INFO_NODES, WindowsCommands, isWindowsMobile } from '../../protocols/windows/commands';
import { SessionChannels, type SessionKey } from '../../protocols/windows/sessions';
import type { ManagedChannel } from '../../src/storage/windows';
import type { DeviceFacts, Params } from '../../src/core/types';

const FIXTURES = path.join(__dirname, '../../fixtures/windows/syncml');
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name));

const DEVICE_ID = '0123456789ABCDEF0123456789ABCDEF';
const SERVER = 'https://mdm.example.test/ManagementServer/MDM.svc';
const EXEC_ID = 'c1a2b3c4-0000-4000-8000-000000000001';
const GET_ID = '7b0f6f1e-0000-4000-8000-000000000002';

const desktop: DeviceFacts = {
  id: 'dev-1',
  platform: 'windows',
  status: 'enrolled',
  ownership: 'corporate',
  mode: 'device',
  supervised: false,
  model: 'XPS 13 9310',
  manufacturer: 'Dell Inc.',
  os_version: '10.0.26200.9278',
  api_level: null,
  udid: DEVICE_ID,
};
const phone: DeviceFacts = { ...desktop, model: 'Lumia 950', os_version: '10.0.15254.603' };

const kinds = (body: SyncMlCommand[]) => body.map((c) => c.kind);

describe('parseSyncMl fixtures', () => {
  it('Package1.1: header, alerts and the DevInfo Replace', () => {
    const msg = parseSyncMl(fixture('Package1.1.xml'));
    expect({ verDtd: msg.verDtd, verProto: msg.verProto, sessionId: msg.sessionId, msgId: msg.msgId }).toEqual({
      verDtd: '1.2',
      verProto: 'DM/1.2',
      sessionId: '1',
      msgId: '1',
    });
    expect(msg.target).toBe(SERVER);
    expect(msg.source).toBe(DEVICE_ID);
    expect(msg.final).toBe(true);
    expect(msg.raw).toEqual(fixture('Package1.1.xml'));
    expect(kinds(msg.body)).toEqual(['Alert', 'Alert', 'Replace']);
    expect(msg.body[0]).toEqual({ kind: 'Alert', cmdId: '2', data: '1201', items: [] });
    expect(msg.body[1]).toEqual({
      kind: 'Alert',
      cmdId: '3',
      data: '1224',
      items: [{ meta: { type: 'com.microsoft/MDM/LoginStatus' }, data: 'user' }],
    });
    const replace = msg.body[2]!;
    if (replace.kind !== 'Replace') throw new Error('want Replace');
    expect(replace.cmdId).toBe('4');
    expect(replace.items).toHaveLength(5);
    expect(replace.items[1]).toEqual({ source: './DevInfo/Man', data: 'Example Manufacturer' });
    expect(msg.body.some(isUnenrollmentAlert)).toBe(false);
  });

  it('Status.1: statuses keyed by our UUIDs and Results of a Get', () => {
    const msg = parseSyncMl(fixture('Status.1.xml'));
    expect(msg.msgId).toBe('2');
    expect(kinds(msg.body)).toEqual(['Status', 'Status', 'Status', 'Results']);
    expect(msg.body[0]).toEqual({ kind: 'Status', cmdId: '1', msgRef: '1', cmdRef: '0', cmd: 'SyncHdr', data: '200' });
    expect(msg.body[1]).toEqual({ kind: 'Status', cmdId: '2', msgRef: '1', cmdRef: EXEC_ID, cmd: 'Exec', data: '200' });
    const results = msg.body[3]!;
    if (results.kind !== 'Results') throw new Error('want Results');
    expect(results.cmdRef).toBe(GET_ID);
    expect(results.msgRef).toBe('1');
    expect(results.items[0]).toEqual({ source: './DevDetail/SwV', meta: { format: 'chr' }, data: '10.0.26200.9278' });
    expect(results.items[1]!.data).toBe('DESKTOP-R&D');
  });

  it('Unenroll.1: the 1226 user-request alert is recognised', () => {
    const msg = parseSyncMl(fixture('Unenroll.1.xml').toString('utf8'));
    expect(msg.sessionId).toBe('2');
    const alert = msg.body.find(isUnenrollmentAlert);
    expect(alert).toEqual({
      kind: 'Alert',
      cmdId: '4',
      data: '1226',
      items: [{ meta: { type: 'com.microsoft:mdm.unenrollment.userrequest', format: 'int' }, data: '1' }],
    });
    expect(msg.body.filter(isUnenrollmentAlert)).toHaveLength(1);
  });

  it('reads Cred, LocName and MaxMsgSize from the header, and ignores unknown body elements', () => {
    const msg = parseSyncMl(
      `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>5</SessionID><MsgID>1</MsgID>` +
        `<Target><LocURI>${SERVER}</LocURI></Target><Source><LocURI>${DEVICE_ID}</LocURI><LocName>dev-auth</LocName></Source>` +
        `<Cred><Meta><Format xmlns="syncml:metinf">b64</Format><Type xmlns="syncml:metinf">syncml:auth-md5</Type></Meta><Data>abc=</Data></Cred>` +
        `<Meta><MaxMsgSize xmlns="syncml:metinf">65536</MaxMsgSize></Meta></SyncHdr>` +
        `<SyncBody><Sync><CmdID>9</CmdID></Sync><Alert><CmdID>2</CmdID><Data>1201</Data></Alert></SyncBody></SyncML>`,
    );
    expect(msg.sourceName).toBe('dev-auth');
    expect(msg.cred).toEqual({ type: 'syncml:auth-md5', format: 'b64', data: 'abc=' });
    expect(msg.maxMsgSize).toBe(65536);
    expect(kinds(msg.body)).toEqual(['Alert']);
    expect(msg.final).toBe(false);
  });
});

describe('inventoryFromItems', () => {
  it('flattens DevInfo and DevDetail values and skips other nodes', () => {
    const pkg = parseSyncMl(fixture('Package1.1.xml')).body[2]!;
    const res = parseSyncMl(fixture('Status.1.xml')).body[3]!;
    if (pkg.kind !== 'Replace' || res.kind !== 'Results') throw new Error('fixture shape');
    expect(inventoryFromItems([...pkg.items, ...res.items, { source: './Vendor/MSFT/DMClient/HWDevID', data: 'x' }])).toEqual({
      'DevInfo/DevId': DEVICE_ID,
      'DevInfo/Man': 'Example Manufacturer',
      'DevInfo/Mod': 'Conformance Device',
      'DevInfo/DmV': '1.3',
      'DevInfo/Lang': 'en-US',
      'DevDetail/SwV': '10.0.26200.9278',
      'DevDetail/Ext/Microsoft/DeviceName': 'DESKTOP-R&D',
    });
  });
});

describe('buildSyncMlReply', () => {
  const commands = new WindowsCommands();
  const reply = (final = true) => {
    const pkg = parseSyncMl(fixture('Package1.1.xml'));
    return buildSyncMlReply({
      sessionId: pkg.sessionId,
      msgId: '1',
      inReplyTo: pkg.msgId,
      target: pkg.source,
      source: pkg.target,
      statuses: pkg.body.flatMap((c) => statusFor(c, '200') ?? []),
      commands: [
        commands.build({ id: GET_ID, type: 'device_info', params: {} }, desktop),
        commands.build({ id: EXEC_ID, type: 'restart', params: {} }, desktop),
      ],
      final,
    });
  };

  it('puts the SyncHdr Status first, then a Status per device command, then our commands and Final', () => {
    const xml = reply();
    expect(xml).not.toContain('CDATA');
    const root = parseXmlTree(xml);
    const hdr = root.children.find((c) => c.name === 'SyncHdr')!;
    const hdrText = (n: string) => hdr.children.find((c) => c.name === n)?.text;
    expect([hdrText('VerDTD'), hdrText('VerProto'), hdrText('SessionID'), hdrText('MsgID')]).toEqual(['1.2', 'DM/1.2', '1', '1']);
    const body = root.children.find((c) => c.name === 'SyncBody')!;
    expect(body.children.map((c) => c.name)).toEqual(['Status', 'Status', 'Status', 'Status', 'Get', 'Exec', 'Final']);
    const field = (i: number, n: string) => body.children[i]!.children.find((c) => c.name === n)?.text;
    expect([0, 1, 2, 3].map((i) => [field(i, 'CmdID'), field(i, 'MsgRef'), field(i, 'CmdRef'), field(i, 'Cmd'), field(i, 'Data')])).toEqual([
      ['1', '1', '0', 'SyncHdr', '200'],
      ['2', '1', '2', 'Alert', '200'],
      ['3', '1', '3', 'Alert', '200'],
      ['4', '1', '4', 'Replace', '200'],
    ]);
    expect(field(4, 'CmdID')).toBe(GET_ID);
    expect(field(5, 'CmdID')).toBe(EXEC_ID);
    const target = root.children[0]!.children.find((c) => c.name === 'Target')!.children[0]!.text;
    expect(target).toBe(DEVICE_ID);
  });

  it('omits Final when asked and escapes text', () => {
    const xml = buildSyncMlReply({
      sessionId: '1',
      msgId: '2',
      inReplyTo: '2',
      target: DEVICE_ID,
      source: 'https://mdm.example.test/MDM.svc?a=1&b=<2>',
      statuses: [{ cmdRef: EXEC_ID, cmd: 'Exec', data: '200', targetRef: './x&y' }],
      commands: [],
      final: false,
    });
    expect(xml).toContain('<LocURI>https://mdm.example.test/MDM.svc?a=1&amp;b=&lt;2&gt;</LocURI>');
    expect(xml).toContain('<TargetRef>./x&amp;y</TargetRef><Data>200</Data>');
    expect(xml).not.toContain('<Final/>');
    expect(reply(false)).not.toContain('<Final/>');
  });

  it('never acknowledges a Status', () => {
    expect(statusFor({ kind: 'Status', cmdId: '1', msgRef: '1', cmdRef: '0', cmd: 'SyncHdr', data: '200' }, '200')).toBeUndefined();
    expect(statusFor({ kind: 'Results', cmdId: '4', cmdRef: GET_ID, items: [] }, '200')).toEqual({ cmdRef: '4', cmd: 'Results', data: '200' });
  });
});

describe('WindowsCommands.permit', () => {
  const commands = new WindowsCommands();

  it.each([
    ['wipe', {}, desktop, true],
    ['wipe', { mode: 'protected' }, desktop, true],
    ['wipe', { mode: 'persist_provisioned_data' }, desktop, true],
    ['wipe', { mode: 'everything' }, desktop, false],
    ['restart', {}, desktop, true],
    ['device_info', {}, desktop, true],
    ['lock', {}, phone, true],
    ['lock', {}, desktop, false],
    ['lost_mode_on', {}, desktop, false],
    ['clear_passcode', {}, desktop, false],
    ['install_profile', {}, desktop, false],
  ] as const)('%s %j → allowed %s', (type, params, device, want) => {
    expect(commands.permit(device, type, params as Params).allowed).toBe(want);
  });

  it('refuses lock on desktop with command_not_permitted/unsupported', () => {
    expect(commands.permit(desktop, 'lock', {})).toEqual({
      allowed: false,
      code: 'command_not_permitted',
      reason: 'unsupported',
      detail: 'desktop Windows has no remote lock in the MDM protocol',
    });
    expect(isWindowsMobile({ model: 'Surface Laptop 5', os_version: '10.0.22631', mode: 'device' })).toBe(false);
    expect(isWindowsMobile({ model: 'RM-1104', os_version: 'Windows 10 Mobile 10.0.15254', mode: 'device' })).toBe(true);
  });

  it('explains what a persist_provisioned_data wipe does, and rejects unknown modes as invalid_params', () => {
    const persist = commands.permit(desktop, 'wipe', { mode: 'persist_provisioned_data' });
    expect(persist.allowed && persist.effect).toMatch(/provisioning packages/);
    expect(commands.permit(desktop, 'wipe', { mode: 'everything' })).toMatchObject({ allowed: false, code: 'invalid_params', reason: 'invalid_value' });
    expect(commands.permit(desktop, 'lost_mode_on', {})).toMatchObject({ code: 'command_not_permitted', reason: 'unsupported' });
  });

  it.each([
    ['<Get><CmdID>1</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>', true],
    ['<Replace><Item><Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Update/AllowAutoUpdate</LocURI></Target><Data>1</Data></Item></Replace>', true],
    ['<Atomic><CmdID>1</CmdID><Get><CmdID>2</CmdID></Get></Atomic>', false],
    ['<Status><CmdID>1</CmdID></Status>', false],
    ['<Get><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item>', false],
    ['<Get><Item><Target><LocURI>/Vendor/MSFT</LocURI></Target></Item></Get>', false],
    ['<Exec><CmdID>1</CmdID></Exec>', false],
    ['<Get><Item><Target><LocURI>./a</LocURI></Target></Item></Get><Get><Item><Target><LocURI>./b</LocURI></Target></Item></Get>', false],
    ['<!DOCTYPE x [<!ENTITY e "x">]><Get><Item><Target><LocURI>&e;</LocURI></Target></Item></Get>', false],
    ['<?xml version="1.0"?><Get><Item><Target><LocURI>./a</LocURI></Target></Item></Get>', false],
    ['', false],
  ])('raw %s → allowed %s', (syncml, want) => {
    const got = commands.permit(desktop, 'raw', { syncml });
    expect(got.allowed).toBe(want);
    if (!got.allowed) expect(got).toMatchObject({ code: 'invalid_params', reason: 'invalid_value' });
  });

  it('refuses raw without params.syncml', () => {
    expect(commands.permit(desktop, 'raw', {})).toMatchObject({ allowed: false, code: 'invalid_params' });
  });
});

describe('WindowsCommands.build', () => {
  const commands = new WindowsCommands();
  const built = (type: string, params: Params = {}, device = desktop) => parseXmlTree(commands.build({ id: EXEC_ID, type, params }, device));
  const targets = (node: ReturnType<typeof parseXmlTree>) =>
    node.children.filter((c) => c.name === 'Item').map((i) => i.children.find((c) => c.name === 'Target')!.children[0]!.text);
  const cmdId = (node: ReturnType<typeof parseXmlTree>) => node.children.filter((c) => c.name === 'CmdID').map((c) => c.text);

  it.each([
    ['wipe', {}, './Device/Vendor/MSFT/RemoteWipe/doWipe', 'chr'],
    ['wipe', { mode: 'protected' }, './Device/Vendor/MSFT/RemoteWipe/doWipeProtected', 'chr'],
    ['wipe', { mode: 'persist_provisioned_data' }, './Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData', 'chr'],
    ['restart', {}, './Device/Vendor/MSFT/Reboot/RebootNow', 'null'],
    ['lock', {}, './Vendor/MSFT/RemoteLock/Lock', 'null'],
  ] as const)('%s %j → Exec %s', (type, params, uri, format) => {
    const node = built(type, params as Params, phone);
    expect(node.name).toBe('Exec');
    expect(cmdId(node)).toEqual([EXEC_ID]);
    expect(targets(node)).toEqual([uri]);
    const meta = node.children.find((c) => c.name === 'Item')!.children.find((c) => c.name === 'Meta')!;
    expect(meta.children.find((c) => c.name === 'Format')!.text).toBe(format);
  });

  it('device_info is one Get with an Item per node', () => {
    const node = built('device_info');
    expect(node.name).toBe('Get');
    expect(cmdId(node)).toEqual([EXEC_ID]);
    expect(targets(node)).toEqual([...DEVICE_INFO_NODES]);
  });

  it('raw keeps the admin command but puts our UUID as its only CmdID', () => {
    const node = built('raw', { syncml: ' <Get><CmdID>42</CmdID><Item><Target><LocURI>./DevDetail/SwV</LocURI></Target></Item></Get>\n' });
    expect(node.name).toBe('Get');
    expect(cmdId(node)).toEqual([EXEC_ID]);
    expect(node.children[0]!.name).toBe('CmdID');
    const without = built('raw', { syncml: '<Replace><Item><Target><LocURI>./x</LocURI></Target><Data>1</Data></Item></Replace>' });
    expect(cmdId(without)).toEqual([EXEC_ID]);
    expect(without.children.map((c) => c.name)).toEqual(['CmdID', 'Item']);
  });
});

describe('WindowsCommands.parseResult', () => {
  const commands = new WindowsCommands();
  it.each([
    [{ status: '200' }, { status: 'acknowledged' }],
    [{ status: '202' }, { status: 'acknowledged' }],
    [{ status: '101' }, { status: 'acknowledged' }],
    [{ status: 200, results: { './DevDetail/SwV': '10.0.26200' } }, { status: 'acknowledged', result: { './DevDetail/SwV': '10.0.26200' } }],
    [{ status: '404' }, { status: 'error', error: { code: 404, detail: 'not found' } }],
    [{ status: '405' }, { status: 'error', error: { code: 405, detail: 'command not allowed' } }],
    [{ status: '406' }, { status: 'error', error: { code: 406, detail: 'optional feature not supported' } }],
    [{ status: '500' }, { status: 'error', error: { code: 500, detail: 'command failed' } }],
    [{ status: '216' }, { status: 'error', error: { code: 216, detail: 'atomic rolled back' } }],
    [{ status: '499' }, { status: 'error', error: { code: 499, detail: 'SyncML status 499' } }],
    [{}, { status: 'error', error: { code: null, detail: 'the device report has no SyncML status code' } }],
  ])('%j → %j', (report, want) => {
    expect(commands.parseResult(report)).toEqual(want);
  });
});

describe('refused input', () => {
  const pkg = fixture('Package1.1.xml').toString('utf8');
  it.each([
    ['malformed', 'malformed', '<SyncML><SyncHdr></SyncML>'],
    ['DOCTYPE', 'forbidden_markup', `<!DOCTYPE SyncML [<!ENTITY x "y">]>${pkg}`],
    ['ENTITY only', 'forbidden_markup', pkg.replace('<SyncBody>', '<SyncBody><!ENTITY x "y">')],
    ['too deep', 'too_deep', `<SyncML>${'<a>'.repeat(40)}${'</a>'.repeat(40)}</SyncML>`],
    ['not SyncML', 'not_syncml', '<Envelope/>'],
    ['no header', 'not_syncml', '<SyncML><SyncBody/></SyncML>'],
    ['Status without CmdRef', 'not_syncml', pkg.replace('<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>', '<Status><CmdID>2</CmdID><MsgRef>1</MsgRef><Cmd>Get</Cmd><Data>200</Data></Status>')],
    ['empty', 'malformed', ''],
  ])('%s → SyncMlError %s', (_name, code, input) => {
    expect(() => parseSyncMl(input)).toThrow(SyncMlError);
    try {
      parseSyncMl(input);
    } catch (err) {
      expect((err as SyncMlError).code).toBe(code);
    }
  });

  it('too large', () => {
    expect(() => parseSyncMl(pkg, { maxBytes: 100, maxDepth: 32 })).toThrow(expect.objectContaining({ code: 'too_large' }));
  });
});

describe('session channels', () => {
  const channel: ManagedChannel = { device_id: 'd', enrollment_id: 'e', channel_key: DEVICE_ID, status: 'enrolled', push_token: null };
  const key: SessionKey = { certSha256: 'sha', source: DEVICE_ID, sessionId: '7' };
  afterEach(() => jest.useRealTimers());

  it('serves the same connection, certificate, device and session only, for a bounded time', () => {
    jest.useFakeTimers();
    const sessions = new SessionChannels();
    const connection = {};
    sessions.remember(connection, key, channel);
    expect(sessions.recall(connection, key)).toBe(channel);
    expect(sessions.recall({}, key)).toBeUndefined();
    for (const other of [{ certSha256: 'other' }, { source: 'ANOTHER' }, { sessionId: '8' }]) {
      expect(sessions.recall(connection, { ...key, ...other })).toBeUndefined();
    }
    jest.advanceTimersByTime(SessionChannels.TTL_MS);
    expect(sessions.recall(connection, key)).toBeUndefined();
  });

  it('forgets a connection\'s channel', () => {
    const sessions = new SessionChannels();
    const connection = {};
    sessions.remember(connection, key, channel);
    sessions.forget(connection);
    expect(sessions.recall(connection, key)).toBeUndefined();
  });
});
