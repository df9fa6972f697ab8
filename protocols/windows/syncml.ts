/**
 * OMA-DM 1.2 SyncML codec for the Windows management channel (MS-MDM; research notes windows-mdm.md §2).
 * Pure: no clock, storage or network. `parseSyncMl` reads what a device POSTs, `buildSyncMlReply`
 * writes the server's answer. Correlation is by CmdID: server commands carry the Mooring command UUID
 * as their CmdID and the device echoes it in the `CmdRef` of its Status and Results.
 *
 * See [MS-MDM] §2.2 and OMA-DM 1.2 Representation Protocol (OMA-TS-DM_RepPro-V1_2).
 */
import { escapeXml, isXmlError, parseXml, type XmlElement, type XmlErrorReason } from './xml';

export { escapeXml };

/** Limits applied to every document before it is believed. */
export interface SyncMlLimits {
  /** Largest accepted document, in bytes. */
  maxBytes: number;
  /** Deepest element nesting. A package 1 is 6 deep; 32 leaves room for Atomic/Sequence. */
  maxDepth: number;
}

export const SYNCML_LIMITS: SyncMlLimits = { maxBytes: 4 * 1024 * 1024, maxDepth: 32 };

export type SyncMlErrorCode = 'malformed' | 'forbidden_markup' | 'too_large' | 'too_deep' | 'not_syncml';

/** A document this codec refuses. `code` is stable; the message is for logs, not for the device. */
export class SyncMlError extends Error {
  override readonly name = 'SyncMlError';
  constructor(
    readonly code: SyncMlErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `<Meta>` of an Item, limited to what Windows sends (`syncml:metinf` Type and Format). */
export interface SyncMlMeta {
  type?: string;
  format?: string;
}

/** One `<Item>`: Source/Target are the LocURIs; Data is text (entities decoded). */
export interface SyncMlItem {
  source?: string;
  target?: string;
  meta?: SyncMlMeta;
  data?: string;
}

/** OMA-DM 1.2 Alert codes Windows uses ([MS-MDM] §2.2.7.2). */
export const ALERT = {
  serverInitiated: '1200',
  clientInitiated: '1201',
  nextMessage: '1222',
  sessionAbort: '1223',
  clientEvent: '1224',
  noEndOfData: '1225',
  generic: '1226',
} as const;

/** The generic-alert type a device sends when its user removes the work account. */
export const UNENROLLMENT_ALERT_TYPE = 'com.microsoft:mdm.unenrollment.userrequest';

export type ItemCommandKind = 'Replace' | 'Add' | 'Get' | 'Exec' | 'Delete';

/** A command in a device's SyncBody, discriminated on its element name. */
export type SyncMlCommand =
  | { kind: 'Alert'; cmdId: string; data: string; items: SyncMlItem[] }
  | {
      kind: 'Status';
      cmdId: string;
      msgRef: string;
      cmdRef: string;
      cmd: string;
      data: string;
      targetRef?: string;
      sourceRef?: string;
    }
  | { kind: 'Results'; cmdId: string; msgRef?: string; cmdRef: string; items: SyncMlItem[] }
  | { kind: ItemCommandKind; cmdId: string; items: SyncMlItem[] };

/** `<Cred>` from the SyncHdr (OMA-DM digest or basic). */
export interface SyncMlCred {
  type?: string;
  format?: string;
  data: string;
}

/** One decoded SyncML message. `raw` keeps the bytes as received (for dumps and audits). */
export interface SyncMlMessage {
  verDtd: string;
  verProto: string;
  sessionId: string;
  msgId: string;
  /** SyncHdr Target/LocURI: the server URL the device called. */
  target: string;
  /** SyncHdr Source/LocURI: the DeviceID (the enrollment key). */
  source: string;
  /** SyncHdr Source/LocName (the digest auth name). */
  sourceName?: string;
  cred?: SyncMlCred;
  maxMsgSize?: number;
  body: SyncMlCommand[];
  final: boolean;
  raw: Buffer;
}

// ---------------------------------------------------------------------------------------------
// Bounded XML reading (protocols/windows/xml.ts: no DTD/entities, size and depth limits).

const REASON_CODE: Record<XmlErrorReason, SyncMlErrorCode> = {
  too_large: 'too_large',
  doctype: 'forbidden_markup',
  too_deep: 'too_deep',
  malformed: 'malformed',
};

/**
 * Parses XML into an element tree, refusing DTDs and entity declarations, documents over
 * `limits.maxBytes` and nesting deeper than `limits.maxDepth`. Returns the root element.
 */
export function parseXmlTree(input: Buffer | string, limits: SyncMlLimits = SYNCML_LIMITS): XmlElement {
  try {
    return parseXml(input, limits);
  } catch (err) {
    if (isXmlError(err)) throw new SyncMlError(REASON_CODE[err.reason], err.message, { cause: err });
    throw err;
  }
}

const child = (node: XmlElement | undefined, name: string) => node?.children.find((c) => c.name === name);
const textOf = (node: XmlElement | undefined, ...path: string[]): string | undefined => {
  let at = node;
  for (const name of path) at = child(at, name);
  return at?.text;
};
const required = (node: XmlElement, where: string, ...path: string[]): string => {
  const value = textOf(node, ...path);
  if (value === undefined || value === '') throw new SyncMlError('not_syncml', `${where} has no ${path.join('/')}`);
  return value;
};

// ---------------------------------------------------------------------------------------------
// Decoding

/** Decodes one SyncML message as a device sends it (package 1 or any later package). */
export function parseSyncMl(input: Buffer | string, limits: SyncMlLimits = SYNCML_LIMITS): SyncMlMessage {
  const raw = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const root = parseXmlTree(raw, limits);
  if (root.name !== 'SyncML') throw new SyncMlError('not_syncml', `root element is ${root.name}, not SyncML`);
  const hdr = child(root, 'SyncHdr');
  const body = child(root, 'SyncBody');
  if (!hdr || !body) throw new SyncMlError('not_syncml', 'SyncML needs a SyncHdr and a SyncBody');

  const credNode = child(hdr, 'Cred');
  const maxMsgSize = textOf(hdr, 'Meta', 'MaxMsgSize');
  const sourceName = textOf(hdr, 'Source', 'LocName');
  return {
    verDtd: required(hdr, 'SyncHdr', 'VerDTD'),
    verProto: required(hdr, 'SyncHdr', 'VerProto'),
    sessionId: required(hdr, 'SyncHdr', 'SessionID'),
    msgId: required(hdr, 'SyncHdr', 'MsgID'),
    target: required(hdr, 'SyncHdr', 'Target', 'LocURI'),
    source: required(hdr, 'SyncHdr', 'Source', 'LocURI'),
    ...(sourceName ? { sourceName } : {}),
    ...(credNode ? { cred: readCred(credNode) } : {}),
    ...(maxMsgSize && /^\d+$/.test(maxMsgSize) ? { maxMsgSize: Number(maxMsgSize) } : {}),
    body: body.children.flatMap((node) => {
      const cmd = readCommand(node);
      return cmd ? [cmd] : [];
    }),
    final: body.children.some((c) => c.name === 'Final'),
    raw,
  };
}

function readCred(node: XmlElement): SyncMlCred {
  const type = textOf(node, 'Meta', 'Type');
  const format = textOf(node, 'Meta', 'Format');
  return { ...(type ? { type } : {}), ...(format ? { format } : {}), data: textOf(node, 'Data') ?? '' };
}

/** One SyncBody child as a command, or undefined for elements this server does not act on. */
function readCommand(node: XmlElement): SyncMlCommand | undefined {
  const kind = node.name;
  switch (kind) {
    case 'Alert':
      return { kind, cmdId: required(node, kind, 'CmdID'), data: required(node, kind, 'Data'), items: readItems(node) };
    case 'Status': {
      const targetRef = textOf(node, 'TargetRef');
      const sourceRef = textOf(node, 'SourceRef');
      return {
        kind,
        cmdId: required(node, kind, 'CmdID'),
        msgRef: required(node, kind, 'MsgRef'),
        cmdRef: required(node, kind, 'CmdRef'),
        cmd: required(node, kind, 'Cmd'),
        data: required(node, kind, 'Data'),
        ...(targetRef ? { targetRef } : {}),
        ...(sourceRef ? { sourceRef } : {}),
      };
    }
    case 'Results': {
      const msgRef = textOf(node, 'MsgRef');
      return { kind, cmdId: required(node, kind, 'CmdID'), ...(msgRef ? { msgRef } : {}), cmdRef: required(node, kind, 'CmdRef'), items: readItems(node) };
    }
    case 'Replace':
    case 'Add':
    case 'Get':
    case 'Exec':
    case 'Delete':
      return { kind, cmdId: required(node, kind, 'CmdID'), items: readItems(node) };
    default:
      return undefined;
  }
}

function readItems(node: XmlElement): SyncMlItem[] {
  return node.children
    .filter((c) => c.name === 'Item')
    .map((item) => {
      const source = textOf(item, 'Source', 'LocURI');
      const target = textOf(item, 'Target', 'LocURI');
      const type = textOf(item, 'Meta', 'Type');
      const format = textOf(item, 'Meta', 'Format');
      const data = textOf(item, 'Data');
      return {
        ...(source ? { source } : {}),
        ...(target ? { target } : {}),
        ...(type || format ? { meta: { ...(type ? { type } : {}), ...(format ? { format } : {}) } } : {}),
        ...(data !== undefined ? { data } : {}),
      };
    });
}

/** Whether a command is the generic alert (1226) a device sends when its user unenrolls. */
export function isUnenrollmentAlert(cmd: SyncMlCommand): boolean {
  return cmd.kind === 'Alert' && cmd.data === ALERT.generic && cmd.items.some((i) => i.meta?.type === UNENROLLMENT_ALERT_TYPE);
}

/**
 * Flattens device-sent DevInfo/DevDetail values (package 1 Replace, Results of a Get) into
 * `{ 'DevInfo/Man': 'Contoso', 'DevDetail/Ext/Microsoft/DeviceName': 'PC-1', ... }`.
 * Other LocURIs and items without data are skipped.
 */
export function inventoryFromItems(items: readonly SyncMlItem[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const uri = item.source ?? item.target;
    if (!uri || item.data === undefined) continue;
    const match = /^\.\/(?:Device\/)?(DevInfo|DevDetail)\/(.+)$/.exec(uri);
    if (match) out[`${match[1]}/${match[2]}`] = item.data;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** A Status the server returns for one device command. `msgRef` defaults to the device's MsgID. */
export interface ReplyStatus {
  cmdRef: string;
  cmd: string;
  data: string;
  msgRef?: string;
  targetRef?: string;
  sourceRef?: string;
}

export interface SyncMlReply {
  sessionId: string;
  msgId: string;
  /** The device's MsgID this message answers (MsgRef of the statuses). */
  inReplyTo: string;
  /** The DeviceID (the device's SyncHdr Source). */
  target: string;
  /** The management URL (the device's SyncHdr Target). */
  source: string;
  statuses: readonly ReplyStatus[];
  /** Server commands, already built (each carries its own CmdID). */
  commands: readonly string[];
  final: boolean;
  /** Status of the device's SyncHdr; 200 unless authentication failed (401/407). */
  headerStatus?: string;
}

/** The Status (code `code`) the server owes a device command; OMA-DM never acknowledges a Status. */
export function statusFor(cmd: SyncMlCommand, code: string): ReplyStatus | undefined {
  if (cmd.kind === 'Status') return undefined;
  return { cmdRef: cmd.cmdId, cmd: cmd.kind, data: code };
}

const el = (name: string, value: string) => `<${name}>${escapeXml(value)}</${name}>`;

/**
 * Writes a server message: SyncHdr, then the Status for the device's SyncHdr (CmdRef 0), a Status per
 * device command, the server commands, and `<Final/>`. Status CmdIDs are numbered 1..n; server
 * commands are UUIDs, so the two never collide.
 */
export function buildSyncMlReply(reply: SyncMlReply): string {
  const statuses: ReplyStatus[] = [{ cmdRef: '0', cmd: 'SyncHdr', data: reply.headerStatus ?? '200' }, ...reply.statuses];
  const statusXml = statuses.map(
    (s, i) =>
      `<Status>${el('CmdID', String(i + 1))}${el('MsgRef', s.msgRef ?? reply.inReplyTo)}${el('CmdRef', s.cmdRef)}${el('Cmd', s.cmd)}` +
      `${s.targetRef !== undefined ? el('TargetRef', s.targetRef) : ''}${s.sourceRef !== undefined ? el('SourceRef', s.sourceRef) : ''}${el('Data', s.data)}</Status>`,
  );
  return (
    `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr>${el('VerDTD', '1.2')}${el('VerProto', 'DM/1.2')}${el('SessionID', reply.sessionId)}` +
    `${el('MsgID', reply.msgId)}<Target>${el('LocURI', reply.target)}</Target><Source>${el('LocURI', reply.source)}</Source></SyncHdr>` +
    `<SyncBody>${statusXml.join('')}${reply.commands.join('')}${reply.final ? '<Final/>' : ''}</SyncBody></SyncML>`
  );
}
