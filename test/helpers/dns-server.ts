/**
 * A tiny authoritative DNS server over UDP on 127.0.0.1, for tests that resolve through a real
 * resolver (node:dns's c-ares, pointed here with `resolver.setServers(['127.0.0.1:PORT'])`).
 * It answers CNAME and A queries from a record map, follows CNAME chains inside the map for A
 * queries (as a recursive server would), says NXDOMAIN for names not in the map and NODATA
 * (NOERROR, no answers) for a known name without a record of the asked type. EDNS and other
 * additional records in queries are ignored; answers carry none.
 */
import dgram from 'node:dgram';
import net from 'node:net';

export interface DnsRecords {
  CNAME?: string;
  A?: string[];
}

/** Names (any case, trailing dot optional) to their records. */
export type DnsRecordMap = Record<string, DnsRecords>;

export interface DnsQueryLog {
  name: string;
  type: string;
}

export interface TestDnsServer {
  port: number;
  /** `127.0.0.1:PORT`, for `resolver.setServers([...])`. */
  address: string;
  /** The live record map: tests may change it between queries. */
  records: DnsRecordMap;
  /** Every query answered, in order. */
  queries: DnsQueryLog[];
  close(): Promise<void>;
}

const TYPE = { A: 1, CNAME: 5 } as const;
const TYPE_NAMES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 255: 'ANY' };
const CLASS_IN = 1;
const RCODE = { NOERROR: 0, FORMERR: 1, NXDOMAIN: 3, NOTIMP: 4 } as const;
const TTL = 300;

export async function startDnsServer(records: DnsRecordMap): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4');
  const server: TestDnsServer = {
    port: 0,
    address: '',
    records,
    queries: [],
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
  socket.on('message', (msg, rinfo) => {
    const reply = answer(msg, server);
    if (reply) socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  server.port = socket.address().port;
  server.address = `127.0.0.1:${server.port}`;
  return server;
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function lookup(map: DnsRecordMap, name: string): DnsRecords | undefined {
  const wanted = normalize(name);
  for (const [key, value] of Object.entries(map)) if (normalize(key) === wanted) return value;
  return undefined;
}

/** The reply to one query message, or undefined for something that is not a query at all. */
function answer(msg: Buffer, server: TestDnsServer): Buffer | undefined {
  if (msg.length < 12) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response, not a query
  const opcode = (flags >> 11) & 0xf;
  const rd = flags & 0x0100;
  const qdcount = msg.readUInt16BE(4);

  const header = (rcode: number, qd: number, an: number): Buffer => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(id, 0);
    // QR, the query's opcode, AA, the query's RD, RA, rcode.
    h.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | rcode, 2);
    h.writeUInt16BE(qd, 4);
    h.writeUInt16BE(an, 6);
    return h; // NSCOUNT and ARCOUNT stay 0
  };

  if (opcode !== 0) return header(RCODE.NOTIMP, 0, 0);
  if (qdcount !== 1) return header(RCODE.FORMERR, 0, 0);
  const parsed = readName(msg, 12);
  if (!parsed || parsed.end + 4 > msg.length) return header(RCODE.FORMERR, 0, 0);
  const qtype = msg.readUInt16BE(parsed.end);
  const qclass = msg.readUInt16BE(parsed.end + 2);
  // The question, byte for byte (keeps the asker's letter case, which some resolvers check).
  const question = msg.subarray(12, parsed.end + 4);
  server.queries.push({ name: parsed.name, type: TYPE_NAMES[qtype] ?? String(qtype) });

  const found = lookup(server.records, parsed.name);
  if (!found) return Buffer.concat([header(RCODE.NXDOMAIN, 1, 0), question]);
  if (qclass !== CLASS_IN) return Buffer.concat([header(RCODE.NOERROR, 1, 0), question]);

  const answers: Buffer[] = [];
  // The first answer's owner is the question name: a compression pointer to offset 12.
  let owner: Buffer = Buffer.from([0xc0, 0x0c]);
  let current: DnsRecords | undefined = found;
  const seen = new Set<string>();
  for (let hops = 0; current && hops < 8; hops++) {
    if (current.CNAME !== undefined) {
      answers.push(record(owner, TYPE.CNAME, encodeName(current.CNAME)));
      if (qtype === TYPE.CNAME) break; // a CNAME query gets the one record
      const target = normalize(current.CNAME);
      if (seen.has(target)) break;
      seen.add(target);
      owner = encodeName(current.CNAME);
      current = lookup(server.records, target);
      continue;
    }
    if (qtype === TYPE.A) for (const ip of current.A ?? []) answers.push(record(owner, TYPE.A, ipv4(ip)));
    break;
  }
  return Buffer.concat([header(RCODE.NOERROR, 1, answers.length), question, ...answers]);
}

function record(owner: Buffer, type: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(CLASS_IN, 2);
  fixed.writeUInt32BE(TTL, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

/** A name in wire form, uncompressed: length-prefixed labels and the root's zero byte. */
function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'ascii');
    if (bytes.length > 63) throw new Error(`DNS label longer than 63 bytes: ${label}`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function ipv4(ip: string): Buffer {
  if (!net.isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
  return Buffer.from(ip.split('.').map(Number));
}

/** Reads a (possibly compressed) name at `offset`; `end` is just past it in the message. */
function readName(msg: Buffer, offset: number): { name: string; end: number } | undefined {
  const labels: string[] = [];
  let pos = offset;
  let end: number | undefined;
  for (let jumps = 0; jumps < 16; ) {
    if (pos >= msg.length) return undefined;
    const len = msg[pos]!;
    if (len === 0) return { name: labels.join('.'), end: end ?? pos + 1 };
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= msg.length) return undefined;
      end ??= pos + 2;
      pos = ((len & 0x3f) << 8) | msg[pos + 1]!;
      jumps++;
      continue;
    }
    if (len > 63 || pos + 1 + len > msg.length) return undefined;
    labels.push(msg.toString('ascii', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return undefined;
}
