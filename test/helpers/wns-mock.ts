/**
 * A loopback stand-in for Microsoft's side of WNS: the login.live.com token endpoint
 * (`/accesstoken.srf`, client-credentials grant checked against the package SID and secret) and a
 * notification endpoint at `/w/?token=<channel>` playing the channel URIs (checks the bearer it issued
 * and the WNS headers, records every notification, answers from a per-channel script). Answers follow
 * https://learn.microsoft.com/windows/apps/design/shell/tiles-and-notifications/push-request-response-headers
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const TEST_PACKAGE_SID = 'ms-app://S-1-15-2-2972962901-2322836549-3722629029-1345238579-3987825745-2155616079-650196962';
export const TEST_CLIENT_SECRET = 'not-a-real-secret+/=&;';

export interface ScriptedReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Answer only after this long (to provoke client timeouts). */
  delayMs?: number;
}

/** A WNS notification answer with the X-WNS-* response headers. */
export function wnsReply(status: number, wnsStatus?: string, description?: string, headers: Record<string, string> = {}): ScriptedReply {
  return {
    status,
    headers: {
      'x-wns-msg-id': crypto.randomBytes(8).toString('hex').toUpperCase(),
      'x-wns-debug-trace': 'DB5SCH101',
      ...(wnsStatus ? { 'x-wns-status': wnsStatus } : {}),
      ...(description ? { 'x-wns-error-description': description } : {}),
      ...headers,
    },
  };
}

/** The answers WNS gives for the cases Mooring has to tell apart. */
export const wnsErrors = {
  gone: () => wnsReply(410, undefined, 'The channel expired.'),
  notFound: () => wnsReply(404, undefined, 'The channel URI is not valid or is not recognized by WNS.'),
  badRequest: () => wnsReply(400, undefined, 'One or more headers were specified incorrectly.'),
  forbidden: () => wnsReply(403, undefined, 'The cloud service is not authorized to send a notification to this URI.'),
  tooLarge: () => wnsReply(413, undefined, 'The notification payload exceeds the 5000 byte size limit.'),
  throttled: (retryAfter?: string) => wnsReply(406, 'channelthrottled', 'This cloud service exceeded its throttle limit.', retryAfter ? { 'retry-after': retryAfter } : {}),
  internal: () => wnsReply(500, undefined, 'An internal failure caused notification delivery to fail.'),
  unavailable: (retryAfter?: string) => wnsReply(503, undefined, 'The server is currently unavailable.', retryAfter ? { 'retry-after': retryAfter } : {}),
};

export interface TokenRequest {
  contentType: string | undefined;
  form: Record<string, string>;
  /** The refusal, if the grant was refused. */
  error?: string;
  accessToken?: string;
}

export interface ReceivedNotification {
  /** The `token` query parameter of the channel URI. */
  channel: string;
  authorization: string | undefined;
  /** Request headers, lower-case names (Content-Length, Host and the like left out). */
  headers: Record<string, string>;
  body: string;
  /** The status the mock answered with. */
  status: number;
}

export interface WnsMockOptions {
  clientId?: string;
  clientSecret?: string;
  /** Lifetime of issued access tokens (s); login.live.com's is 86400. */
  expiresIn?: number;
  /** The clock that expires issued tokens (ms). */
  now?: () => number;
}

const RECORDED_HEADERS = ['authorization', 'content-type', 'x-wns-type', 'x-wns-cache-policy', 'x-wns-ttl', 'x-wns-tag', 'x-wns-requestforstatus'];
const WNS_TYPES = ['wns/raw', 'wns/toast', 'wns/tile', 'wns/badge'];

export class WnsMock {
  readonly tokenRequests: TokenRequest[] = [];
  readonly received: ReceivedNotification[] = [];
  /** Issued access tokens and when they expire (ms on the mock's clock). */
  readonly #issued = new Map<string, number>();
  readonly #script = new Map<string, ScriptedReply[]>();
  readonly #tokenScript: ScriptedReply[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #serial = 0;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    private readonly opts: Required<WnsMockOptions>,
  ) {}

  static async start(opts: WnsMockOptions = {}): Promise<WnsMock> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const mock = new WnsMock(server, `http://127.0.0.1:${port}`, {
      clientId: TEST_PACKAGE_SID,
      clientSecret: TEST_CLIENT_SECRET,
      expiresIn: 86400,
      now: Date.now,
      ...opts,
    });
    server.on('request', (req, res) => void mock.#handle(req, res));
    return mock;
  }

  /** The host channel URIs point at, for `allowedHostSuffixes`. */
  get host(): string {
    return '127.0.0.1';
  }

  get tokenUrl(): string {
    return `${this.url}/accesstoken.srf`;
  }

  get clientId(): string {
    return this.opts.clientId;
  }

  get clientSecret(): string {
    return this.opts.clientSecret;
  }

  /** The channel URI a device would report for `name`. */
  channel(name: string): string {
    return `${this.url}/w/?token=${encodeURIComponent(name)}`;
  }

  /** Notifications WNS accepted (200). */
  get delivered(): ReceivedNotification[] {
    return this.received.filter((m) => m.status === 200);
  }

  /** Answers for notifications to channel `name`, in order; once used up, notifications are accepted. */
  respond(name: string, ...replies: ScriptedReply[]): void {
    this.#script.set(name, [...(this.#script.get(name) ?? []), ...replies]);
  }

  /** Answers for the next token requests, in order, instead of checking the grant. */
  respondToTokenRequests(...replies: ScriptedReply[]): void {
    this.#tokenScript.push(...replies);
  }

  /** Expire every access token issued so far: notifications bearing them get 401 "Token expired". */
  revokeAccessTokens(): void {
    for (const token of this.#issued.keys()) this.#issued.set(token, -Infinity);
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', this.url);
    let reply: ScriptedReply;
    if (req.method === 'POST' && url.pathname === '/accesstoken.srf') reply = this.#token(req, raw);
    else if (req.method === 'POST' && (url.pathname === '/w/' || url.pathname === '/w')) reply = this.#notify(req, url, raw);
    else if (url.pathname === '/w/' || url.pathname === '/w') reply = wnsReply(405, undefined, 'Only POST is supported.');
    else reply = { status: 404, body: `no route ${req.method} ${url.pathname}` };
    const answer = () => {
      const json = reply.body !== undefined && typeof reply.body !== 'string';
      res.writeHead(reply.status, { ...(json ? { 'content-type': 'application/json' } : {}), ...reply.headers });
      res.end(reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body));
    };
    if (!reply.delayMs) return answer();
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!res.destroyed) answer();
    }, reply.delayMs);
    this.#timers.add(timer);
  }

  /** login.live.com/accesstoken.srf: the client-credentials grant for a Store package. */
  #token(req: http.IncomingMessage, raw: string): ScriptedReply {
    const form = Object.fromEntries(new URLSearchParams(raw));
    const entry: TokenRequest = { contentType: req.headers['content-type'], form };
    this.tokenRequests.push(entry);
    const refuse = (error: string, description: string): ScriptedReply => {
      entry.error = `${error}: ${description}`;
      return { status: 400, headers: { 'cache-control': 'no-store' }, body: { error, error_description: description } };
    };
    const scripted = this.#tokenScript.shift();
    if (scripted) {
      entry.error = 'scripted';
      return scripted;
    }
    if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) return refuse('invalid_request', 'The request is not properly formatted.');
    if (form.grant_type !== 'client_credentials') return refuse('unsupported_grant_type', 'The provided value for the input parameter \'grant_type\' is not valid.');
    if (form.client_id !== this.opts.clientId) return refuse('invalid_client', 'The client does not exist.');
    if (form.client_secret !== this.opts.clientSecret) return refuse('invalid_client', 'The client secret is incorrect.');
    if (form.scope !== 'notify.windows.com') return refuse('invalid_scope', 'The provided request must include a \'scope\' input parameter.');
    this.#serial += 1;
    const accessToken = `EgAcAQMAAAAALYAAY/mock-${this.#serial}-${crypto.randomBytes(6).toString('base64')}`;
    this.#issued.set(accessToken, this.opts.now() + this.opts.expiresIn * 1000);
    entry.accessToken = accessToken;
    return { status: 200, headers: { 'cache-control': 'no-store' }, body: { access_token: accessToken, token_type: 'bearer', expires_in: this.opts.expiresIn } };
  }

  /** A channel URI: checks the bearer and the headers WNS insists on, then the script. */
  #notify(req: http.IncomingMessage, url: URL, raw: string): ScriptedReply {
    const headers: Record<string, string> = {};
    for (const name of RECORDED_HEADERS) {
      const v = req.headers[name];
      if (typeof v === 'string') headers[name] = v;
    }
    const channel = url.searchParams.get('token') ?? '';
    const msg: ReceivedNotification = { channel, authorization: req.headers.authorization, headers, body: raw, status: 0 };
    this.received.push(msg);
    const reply = ((): ScriptedReply => {
      if (!channel) return wnsErrors.notFound();
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const expiresAt = bearer ? this.#issued.get(bearer) : undefined;
      if (expiresAt === undefined) {
        return wnsReply(401, undefined, 'The cloud service did not present a valid authentication ticket.', { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      if (this.opts.now() >= expiresAt) {
        return wnsReply(401, undefined, 'Token expired', { 'www-authenticate': 'Bearer error="invalid_request",error_description="Token expired"' });
      }
      const type = headers['x-wns-type'];
      if (!type || !WNS_TYPES.includes(type)) return wnsReply(400, undefined, 'X-WNS-Type is missing or invalid.');
      if (type === 'wns/raw' && headers['content-type'] !== 'application/octet-stream') {
        return wnsReply(400, undefined, 'Content-Type must be application/octet-stream for raw notifications.');
      }
      const policy = headers['x-wns-cache-policy'];
      if (policy !== undefined && policy !== 'cache' && policy !== 'no-cache') return wnsReply(400, undefined, 'X-WNS-Cache-Policy is invalid.');
      const ttl = headers['x-wns-ttl'];
      if (ttl !== undefined && !/^\d+$/.test(ttl)) return wnsReply(400, undefined, 'X-WNS-TTL is invalid.');
      if (raw.length === 0) return wnsReply(400, undefined, 'The notification payload is empty.');
      if (Buffer.byteLength(raw) > 5000) return wnsErrors.tooLarge();
      const scripted = this.#script.get(channel)?.shift();
      if (scripted) return scripted;
      return wnsReply(200, 'received', undefined, { 'x-wns-deviceconnectionstatus': 'connected' });
    })();
    msg.status = reply.status;
    return reply;
  }
}
