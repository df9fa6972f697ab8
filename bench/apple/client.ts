/**
 * The load client, in a child process of its own: it must not share the server's event loop, and its
 * CPU must not be counted as the server's (the server's CPU is this bench's process, read as a whole).
 * It still competes with the server for the machine's cores, as a device fleet behind a network
 * would not; the report says how much CPU it took.
 *
 * It works in two steps so that only requests are timed:
 * - prepare (untimed): sign Idle reports with each device's identity (`Mdm-Signature`, the simulator's
 *   `mdmSignature`: a fresh detached CMS signature, fresh signingTime) or build SCEP PKCSReq messages
 *   (the simulator's ScepClient: a self-signed certificate, a CSR with the challenge, the envelope to
 *   the CA, the outer SignedData), and keep them as the "prepared" request list;
 * - play (timed): send the prepared list over keep-alive HTTPS (one agent per target port, scheme and
 *   concurrency, reused across rounds), `concurrency` requests at a time, and answer with the round's
 *   wall time and each request's status, latency and answer size. Plain HTTP only for micromdm's
 *   scepserver, which has no TLS.
 * The same prepared list can be played to Mooring and to the floor: same client, same requests.
 * SCEP answers are kept here and checked as a device checks them (`scep-check`, untimed). PKCSReqs can
 * also be built for micromdm's scepserver, the SCEP yardstick (micromdm.ts says what differs).
 */
import { fork, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { encodePlist } from '../../protocols/apple/plist';
import { mdmSignature, SimulatedAppleDevice, type Identity } from '../../test/helpers/apple-device';
import { ScepClient, RSA_2048 } from '../../test/helpers/scep-client';
import { inDerOrder } from './micromdm';

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

export const CONTENT_TYPES = {
  report: 'application/x-apple-aspen-mdm',
  pkiMessage: 'application/x-pki-message',
} as const;

/** Whose SCEP server PKCSReqs are built for. */
export type ScepTarget = 'mooring' | 'micromdm';
export type Scheme = 'https' | 'http';

export interface DeviceCredentials {
  udid: string;
  certPem: string;
  keyPem: string;
}

export interface RequestResult {
  status: number;
  ms: number;
  /** Answer body length. */
  bytes: number;
  contentType?: string;
  error?: string;
}

export interface RoundResult {
  elapsedMs: number;
  results: RequestResult[];
  /** The first non-empty 200 answer of the round (the floor's canned CertRep comes from one). */
  sample?: Buffer;
}

export interface ScepCheck {
  /** Per request of the last round: the device accepted its CertRep and certificate. */
  ok: boolean[];
  success: number;
  failure: number;
  /** SHA-256 (hex) of every certificate the client accepted. */
  issued: string[];
  problems: string[];
  /** micromdm only: the CertRep envelope ciphers seen (Mooring answers in the cipher the request asked for). */
  encryption?: string[];
}

type ToClient =
  | { type: 'init'; caPem: string }
  | { type: 'enroll'; url: string; count: number; concurrency: number }
  | { type: 'sign-idle'; order: number[] }
  | { type: 'scep-build'; caPem: string; challenges: string[]; target: ScepTarget }
  | { type: 'play'; port: number; concurrency: number; timeoutMs: number; scheme: Scheme }
  | { type: 'scep-check' }
  | { type: 'close' };

type FromClient =
  | { type: 'ok'; ms: number; count: number }
  | { type: 'progress'; done: number }
  | { type: 'enrolled'; devices: DeviceCredentials[] }
  | { type: 'round'; round: RoundResult }
  | { type: 'scep-check'; check: ScepCheck }
  | { type: 'failed'; message: string };

/** The main process's handle on the client process. */
export class LoadClient {
  readonly #child: ChildProcess;
  #pending?: { resolve(v: FromClient): void; reject(e: unknown): void };
  #onProgress?: (done: number) => void;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (msg: FromClient) => {
      if (msg.type === 'progress') return void this.#onProgress?.(msg.done);
      const p = this.#pending;
      this.#pending = undefined;
      p?.resolve(msg);
    });
    child.on('exit', (code) => {
      const p = this.#pending;
      this.#pending = undefined;
      p?.reject(new Error(`load client exited with ${code}`));
    });
  }

  /** Starts the client process (tsx's hooks come with the inherited execArgv). */
  static async start(caPem: string): Promise<LoadClient> {
    const child = fork(path.join(__dirname, 'client.ts'), [], {
      serialization: 'advanced',
      env: { ...process.env, MOORING_BENCH_APPLE_CLIENT: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const client = new LoadClient(child);
    await client.#expect({ type: 'init', caPem }, 'ok');
    return client;
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  /**
   * Enrolls `count` simulated iPhones through `url` (an enroll_url), here in the client process so the
   * simulator's own work (profile check, SCEP messages, signing) does not run on the server's thread.
   * The devices are kept for `signIdle`; their credentials are returned.
   */
  async enroll(url: string, count: number, concurrency: number, onProgress: (done: number) => void): Promise<DeviceCredentials[]> {
    this.#onProgress = onProgress;
    try {
      const msg = await this.#expect({ type: 'enroll', url, count, concurrency }, 'enrolled');
      return msg.type === 'enrolled' ? msg.devices : [];
    } finally {
      this.#onProgress = undefined;
    }
  }

  /** Prepares one signed Idle report per listed device (indexes into `devices`); returns the signing time. */
  async signIdle(order: number[]): Promise<number> {
    const msg = await this.#expect({ type: 'sign-idle', order }, 'ok');
    return msg.type === 'ok' ? msg.ms : 0;
  }

  /** Prepares one PKCSReq per challenge for the CA `caPem` of `target`; returns the build time. */
  async buildScep(caPem: string, challenges: string[], target: ScepTarget = 'mooring'): Promise<number> {
    const msg = await this.#expect({ type: 'scep-build', caPem, challenges, target }, 'ok');
    return msg.type === 'ok' ? msg.ms : 0;
  }

  /** Sends the prepared requests to 127.0.0.1:port (HTTPS unless told otherwise). */
  async play(port: number, concurrency: number, opts: { timeoutMs?: number; scheme?: Scheme } = {}): Promise<RoundResult> {
    const { timeoutMs = 30_000, scheme = 'https' } = opts;
    const msg = await this.#expect({ type: 'play', port, concurrency, timeoutMs, scheme }, 'round');
    if (msg.type !== 'round') throw new Error('load client: no round');
    return msg.round;
  }

  /** Checks the answers of the last played SCEP round as devices would. */
  async checkScep(): Promise<ScepCheck> {
    const msg = await this.#expect({ type: 'scep-check' }, 'scep-check');
    if (msg.type !== 'scep-check') throw new Error('load client: no scep check');
    return msg.check;
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    await this.#expect({ type: 'close' }, 'ok').catch(() => undefined);
    if (this.#child.exitCode === null) this.#child.kill();
  }

  async #expect(msg: ToClient, want: FromClient['type']): Promise<FromClient> {
    if (this.#pending) throw new Error('load client: one request at a time');
    const answer = await new Promise<FromClient>((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#child.send(msg);
    });
    if (answer.type === 'failed') throw new Error(`load client: ${answer.message}`);
    if (answer.type !== want) throw new Error(`load client: expected ${want}, got ${answer.type}`);
    return answer;
  }
}

// ---- the client process ----

interface Prepared {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

interface ScepPending {
  client: ScepClient;
  transactionId: string;
  senderNonce: Buffer;
}

const state: {
  caPem: string;
  identities: Array<{ udid: string; identity: Identity }>;
  prepared: Prepared[];
  scep: ScepPending[];
  /** Who the prepared PKCSReqs are for, and that server's CA. */
  scepTarget: ScepTarget;
  scepCaPem: string;
  /** PKCSReqs built for micromdm so far (each gets its own CN). */
  micromdmBuilt: number;
  lastBodies: Buffer[];
  lastStatuses: number[];
  keys?: CryptoKeyPair;
  agents: Map<string, http.Agent>;
} = {
  caPem: '',
  identities: [],
  prepared: [],
  scep: [],
  scepTarget: 'mooring',
  scepCaPem: '',
  micromdmBuilt: 0,
  lastBodies: [],
  lastStatuses: [],
  agents: new Map(),
};

function agentFor(port: number, concurrency: number, scheme: Scheme): http.Agent {
  const key = `${scheme}:${port}:${concurrency}`;
  let a = state.agents.get(key);
  if (!a) {
    const opts = { keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency };
    a = scheme === 'https' ? new https.Agent({ ...opts, ca: state.caPem }) : new http.Agent(opts);
    state.agents.set(key, a);
  }
  return a;
}

function send(agent: http.Agent, port: number, r: Prepared, timeoutMs: number, scheme: Scheme): Promise<{ result: RequestResult; body: Buffer }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const done = (status: number, body: Buffer, extra: Partial<RequestResult> = {}) =>
      resolve({ result: { status, ms: performance.now() - t0, bytes: body.length, ...extra }, body });
    const req = (scheme === 'https' ? https : http).request(
      {
        host: '127.0.0.1',
        port,
        ...(scheme === 'https' ? { servername: 'localhost' } : {}),
        method: r.method,
        path: r.path,
        agent,
        headers: { host: `localhost:${port}`, ...r.headers, 'content-length': String(r.body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => done(0, Buffer.alloc(0), { error: err.message }));
        res.on('end', () => {
          const ct = res.headers['content-type'];
          done(res.statusCode ?? 0, Buffer.concat(chunks), ct ? { contentType: ct } : {});
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => done(0, Buffer.alloc(0), { error: err.message }));
    req.end(r.body);
  });
}

async function play(msg: Extract<ToClient, { type: 'play' }>): Promise<RoundResult> {
  const agent = agentFor(msg.port, msg.concurrency, msg.scheme);
  const list = state.prepared;
  const results: RequestResult[] = new Array(list.length);
  const bodies: Buffer[] = new Array(list.length);
  let next = 0;
  const t0 = performance.now();
  const loop = async () => {
    for (let i = next++; i < list.length; i = next++) {
      const { result, body } = await send(agent, msg.port, list[i]!, msg.timeoutMs, msg.scheme);
      results[i] = result;
      bodies[i] = body;
    }
  };
  await Promise.all(Array.from({ length: Math.min(msg.concurrency, list.length) }, loop));
  const elapsedMs = performance.now() - t0;
  state.lastBodies = bodies;
  state.lastStatuses = results.map((r) => r.status);
  const sample = bodies.find((b, i) => results[i]!.status === 200 && b.length > 0);
  return { elapsedMs, results, ...(sample ? { sample } : {}) };
}

/**
 * Real enrollments with the simulator: one shared RSA key pair for SCEP (`scepKeys`: RSA-2048 generation
 * is the device's cost, not the server's; each device still gets its own certificate) and one shared
 * keep-alive agent.
 */
async function enroll(url: string, count: number, concurrency: number): Promise<DeviceCredentials[]> {
  state.keys ??= (await crypto.webcrypto.subtle.generateKey(RSA_2048, true, ['sign', 'verify'])) as CryptoKeyPair;
  const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  const out: DeviceCredentials[] = new Array(count);
  let next = 0;
  let done = 0;
  try {
    const loop = async () => {
      for (let i = next++; i < count; i = next++) {
        const device = SimulatedAppleDevice.create({ os: 'ios', caPem: state.caPem, agent, scepKeys: state.keys });
        await device.enroll(url);
        if (!device.identity) throw new Error(`device ${device.udid} enrolled without an identity`);
        out[i] = { udid: device.udid, certPem: device.identity.certPem, keyPem: device.identity.keyPem };
        done += 1;
        if (done % 100 === 0) process.send!({ type: 'progress', done } satisfies FromClient);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
  } finally {
    agent.destroy();
  }
  state.identities = out.map((d) => ({ udid: d.udid, identity: { certPem: d.certPem, keyPem: d.keyPem } }));
  return out;
}

function signIdle(order: number[]): void {
  state.prepared = order.map((i) => {
    const d = state.identities[i];
    if (!d) throw new Error(`no device ${i}`);
    const body = Buffer.from(encodePlist({ UDID: d.udid, Status: 'Idle' }), 'utf8');
    return {
      method: 'PUT',
      path: '/mdm/connect',
      headers: { 'content-type': CONTENT_TYPES.report, 'user-agent': 'MDM/1.0', 'mdm-signature': mdmSignature(body, d.identity) },
      body,
    };
  });
  state.scep = [];
}

async function buildScep(caPem: string, challenges: string[], target: ScepTarget): Promise<void> {
  const keys = (state.keys ??= (await crypto.webcrypto.subtle.generateKey(RSA_2048, true, ['sign', 'verify'])) as CryptoKeyPair);
  const signer = crypto.KeyObject.from(keys.privateKey);
  const prepared: Prepared[] = [];
  const pending: ScepPending[] = [];
  for (let i = 0; i < challenges.length; i += 16) {
    const batch = await Promise.all(
      challenges.slice(i, i + 16).map(async (challenge) => {
        // As a device does with the profile's SCEP payload: its Subject, the challenge, AES (GetCACaps says so).
        const client = await ScepClient.create(scepSubject(target), { keys });
        const sent = await client.request({ caCertPem: caPem, challenge, encryption: 'aes256' });
        const der = target === 'micromdm' ? inDerOrder(sent.der, signer) : sent.der;
        return { client, sent: { ...sent, der } };
      }),
    );
    for (const { client, sent } of batch) {
      prepared.push({
        method: 'POST',
        path: '/scep?operation=PKIOperation',
        headers: { 'content-type': CONTENT_TYPES.pkiMessage, 'user-agent': 'MDM/1.0' },
        body: sent.der,
      });
      pending.push({ client, transactionId: sent.transactionId, senderNonce: sent.senderNonce });
    }
  }
  state.prepared = prepared;
  state.scep = pending;
  state.scepTarget = target;
  state.scepCaPem = caPem;
}

/**
 * Mooring's profile gives every device the same Subject, and Mooring issues each request its own
 * certificate. micromdm's file depot keys certificates by subject: a repeated one is revoked and its whole
 * index rewritten on every request (or refused, with -allowrenew above 0). So each micromdm request gets
 * its own CN, as a fleet of distinct devices would send.
 */
function scepSubject(target: ScepTarget): Array<Record<string, string[]>> {
  const cn = target === 'micromdm' ? `Mooring device identity ${++state.micromdmBuilt}` : 'Mooring device identity';
  return [{ O: ['Mooring'] }, { CN: [cn] }];
}

/** Names for the report of the envelope ciphers the simulator's check reports by OID. */
const CIPHER_NAMES: Record<string, string> = {
  '1.3.14.3.2.7': 'DES-CBC',
  '1.2.840.113549.3.7': 'DES-EDE3-CBC',
  '2.16.840.1.101.3.4.1.2': 'AES-128-CBC',
  '2.16.840.1.101.3.4.1.42': 'AES-256-CBC',
};

async function checkScep(): Promise<ScepCheck> {
  const out: ScepCheck = { ok: state.scep.map(() => false), success: 0, failure: 0, issued: [], problems: [] };
  const ciphers = new Set<string>();
  const caDer = Buffer.from(new crypto.X509Certificate(state.scepCaPem).raw);
  for (let i = 0; i < state.scep.length; i++) {
    const p = state.scep[i]!;
    const body = state.lastBodies[i];
    if (state.lastStatuses[i] !== 200 || !body) {
      out.problems.push(`PKIOperation answered ${state.lastStatuses[i]}${body?.length ? `: ${body.subarray(0, 100).toString('latin1').trim()}` : ''}`);
      continue;
    }
    try {
      const expected = { transactionId: p.transactionId, senderNonce: p.senderNonce };
      const rep = await p.client.checkCertRep(body, { ...expected, caCert: caDer });
      if (rep.encryption) ciphers.add(CIPHER_NAMES[rep.encryption] ?? rep.encryption);
      if (rep.status === 'SUCCESS' && rep.certDer) {
        out.success += 1;
        out.ok[i] = true;
        out.issued.push(crypto.createHash('sha256').update(rep.certDer).digest('hex'));
      } else {
        out.failure += 1;
        out.problems.push(`CertRep FAILURE (failInfo ${rep.failInfo ?? 'none'})`);
      }
    } catch (err) {
      out.problems.push(`CertRep refused by the device: ${(err as Error).message}`);
    }
  }
  if (state.scepTarget === 'micromdm') out.encryption = [...ciphers];
  return out;
}

if (process.env.MOORING_BENCH_APPLE_CLIENT === '1' && process.send) {
  // The bench process went away (crash, watchdog): nothing left to serve.
  process.on('disconnect', () => process.exit(0));
  const reply = (m: FromClient) => process.send!(m);
  const timed = async (work: () => void | Promise<void>, count: () => number) => {
    const t0 = performance.now();
    await work();
    reply({ type: 'ok', ms: performance.now() - t0, count: count() });
  };
  process.on('message', (msg: ToClient) => {
    const run = async () => {
      switch (msg.type) {
        case 'init':
          state.caPem = state.scepCaPem = msg.caPem;
          return reply({ type: 'ok', ms: 0, count: 0 });
        case 'enroll':
          return reply({ type: 'enrolled', devices: await enroll(msg.url, msg.count, msg.concurrency) });
        case 'sign-idle':
          return timed(() => signIdle(msg.order), () => state.prepared.length);
        case 'scep-build':
          return timed(() => buildScep(msg.caPem, msg.challenges, msg.target), () => state.prepared.length);
        case 'play':
          return reply({ type: 'round', round: await play(msg) });
        case 'scep-check':
          return reply({ type: 'scep-check', check: await checkScep() });
        case 'close':
          for (const a of state.agents.values()) a.destroy();
          reply({ type: 'ok', ms: 0, count: 0 });
          process.disconnect();
          return;
      }
    };
    run().catch((err: unknown) => reply({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
  });
}
