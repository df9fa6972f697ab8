/**
 * A loopback stand-in for Google's side of FCM: the OAuth2 token endpoint (JWT bearer grant, checked
 * against the service account's public key) and the FCM HTTP v1 send endpoint (checks the bearer it
 * issued, records every message, answers from a per-registration-token script). Error bodies follow
 * https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FCM_SCOPE, type ServiceAccount } from '../../src/push/fcm';

export interface TestServiceAccount {
  account: ServiceAccount;
  /** The file contents, as Firebase hands it out. */
  json: string;
  publicKey: crypto.KeyObject;
}

/** A fresh service account with its own RSA key pair. */
export function makeServiceAccount(opts: { projectId?: string; clientEmail?: string; tokenUri?: string } = {}): TestServiceAccount {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const projectId = opts.projectId ?? 'mooring-test';
  const account: ServiceAccount = {
    project_id: projectId,
    client_email: opts.clientEmail ?? `mooring-push@${projectId}.iam.gserviceaccount.com`,
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    private_key_id: crypto.randomBytes(20).toString('hex'),
    token_uri: opts.tokenUri ?? 'https://oauth2.googleapis.com/token',
  };
  const json = JSON.stringify(
    { type: 'service_account', ...account, private_key: account.private_key, client_id: '1234567890', universe_domain: 'googleapis.com' },
    null,
    2,
  );
  return { account, json, publicKey };
}

export interface ScriptedReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Answer only after this long (to provoke client timeouts). */
  delayMs?: number;
}

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';

/** An FCM v1 error answer: canonical status plus the FcmError detail. */
export function fcmError(code: number, status: string, message: string, errorCode?: string, headers?: Record<string, string>): ScriptedReply {
  const details = errorCode ? [{ '@type': FCM_ERROR_TYPE, errorCode }] : [];
  return { status: code, headers, body: { error: { code, message, status, details } } };
}

/** The answers FCM gives for the cases Mooring has to tell apart. */
export const fcmErrors = {
  unregistered: () => fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED'),
  invalidArgument: (message = 'Request contains an invalid argument.') => fcmError(400, 'INVALID_ARGUMENT', message, 'INVALID_ARGUMENT'),
  invalidToken: (): ScriptedReply => ({
    status: 400,
    body: {
      error: {
        code: 400,
        message: 'The registration token is not a valid FCM registration token',
        status: 'INVALID_ARGUMENT',
        details: [
          { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.token', description: 'Invalid registration token' }] },
          { '@type': FCM_ERROR_TYPE, errorCode: 'INVALID_ARGUMENT' },
        ],
      },
    },
  }),
  senderIdMismatch: () => fcmError(403, 'PERMISSION_DENIED', 'SenderId mismatch', 'SENDER_ID_MISMATCH'),
  quotaExceeded: (retryAfter?: string) =>
    fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded for quota metric', 'QUOTA_EXCEEDED', retryAfter ? { 'retry-after': retryAfter } : undefined),
  unavailable: (retryAfter?: string) =>
    fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', 'UNAVAILABLE', retryAfter ? { 'retry-after': retryAfter } : undefined),
  internal: () => fcmError(500, 'INTERNAL', 'Internal error encountered.', 'INTERNAL'),
};

export interface TokenRequest {
  header: Record<string, unknown> | undefined;
  claims: Record<string, unknown> | undefined;
  /** The refusal, if the grant was refused. */
  error?: string;
  accessToken?: string;
}

export interface ReceivedMessage {
  projectId: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: { message?: { token?: string } & Record<string, unknown> } & Record<string, unknown>;
  /** The status the mock answered with. */
  status: number;
}

export interface FcmMockOptions {
  account: TestServiceAccount;
  /** Lifetime of issued access tokens (s); Google's is 3599. */
  expiresIn?: number;
  /** The clock that checks JWT iat/exp (ms); share the provider's fake clock. */
  now?: () => number;
}

export class FcmMock {
  readonly tokenRequests: TokenRequest[] = [];
  readonly received: ReceivedMessage[] = [];
  readonly #issued = new Set<string>();
  readonly #script = new Map<string, ScriptedReply[]>();
  readonly #tokenScript: ScriptedReply[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #serial = 0;

  private constructor(
    private readonly server: http.Server,
    readonly url: string,
    private readonly opts: Required<FcmMockOptions>,
  ) {}

  static async start(opts: FcmMockOptions): Promise<FcmMock> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const mock = new FcmMock(server, `http://127.0.0.1:${port}`, { expiresIn: 3599, now: Date.now, ...opts });
    server.on('request', (req, res) => void mock.#handle(req, res));
    return mock;
  }

  get tokenUrl(): string {
    return `${this.url}/token`;
  }

  /** Messages FCM accepted (200). */
  get delivered(): ReceivedMessage[] {
    return this.received.filter((m) => m.status === 200);
  }

  /** Answers for sends to `registrationToken`, in order; once used up, sends succeed. */
  respond(registrationToken: string, ...replies: ScriptedReply[]): void {
    this.#script.set(registrationToken, [...(this.#script.get(registrationToken) ?? []), ...replies]);
  }

  /** Answers for the next token requests, in order, instead of checking the grant. */
  respondToTokenRequests(...replies: ScriptedReply[]): void {
    this.#tokenScript.push(...replies);
  }

  /** Forget every access token issued so far: sends bearing them get 401. */
  revokeAccessTokens(): void {
    this.#issued.clear();
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
    const path = (req.url ?? '').split('?')[0]!;
    const send = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(path);
    let reply: ScriptedReply;
    if (req.method === 'POST' && path === '/token') reply = this.#token(req, raw);
    else if (req.method === 'POST' && send) reply = this.#send(req, decodeURIComponent(send[1]!), raw);
    else reply = { status: 404, body: { error: { code: 404, message: `no route ${req.method} ${path}`, status: 'NOT_FOUND' } } };
    const answer = () => {
      res.writeHead(reply.status, { 'content-type': 'application/json; charset=UTF-8', ...reply.headers });
      res.end(reply.body === undefined ? '' : typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body));
    };
    if (!reply.delayMs) return answer();
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!res.destroyed) answer();
    }, reply.delayMs);
    this.#timers.add(timer);
  }

  /** The OAuth2 token endpoint: RFC 7523 JWT bearer grant as Google checks it. */
  #token(req: http.IncomingMessage, raw: string): ScriptedReply {
    const entry: TokenRequest = { header: undefined, claims: undefined };
    this.tokenRequests.push(entry);
    const refuse = (error: string, description: string): ScriptedReply => {
      entry.error = `${error}: ${description}`;
      return { status: 400, body: { error, error_description: description } };
    };
    const form = new URLSearchParams(raw);
    const [h, c, sig] = (form.get('assertion') ?? '').split('.');
    entry.header = decodeSegment(h);
    entry.claims = decodeSegment(c);
    const scripted = this.#tokenScript.shift();
    if (scripted) {
      entry.error = 'scripted';
      return scripted;
    }
    if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) return refuse('invalid_request', 'form body expected');
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return refuse('unsupported_grant_type', 'Invalid grant_type');
    const { account, publicKey } = this.opts.account;
    if (!entry.header || !entry.claims || !sig) return refuse('invalid_grant', 'Invalid JWT: malformed');
    if (entry.header.alg !== 'RS256' || entry.header.kid !== account.private_key_id) return refuse('invalid_grant', 'Invalid JWT Signature.');
    if (!crypto.verify('RSA-SHA256', Buffer.from(`${h}.${c}`), publicKey, Buffer.from(sig, 'base64url'))) {
      return refuse('invalid_grant', 'Invalid JWT Signature.');
    }
    const { iss, scope, aud, iat, exp } = entry.claims;
    if (iss !== account.client_email) return refuse('invalid_grant', 'Invalid JWT: unknown issuer');
    if (aud !== this.tokenUrl) return refuse('invalid_grant', `Invalid JWT: aud must be ${this.tokenUrl}`);
    if (scope !== FCM_SCOPE) return refuse('invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
    const nowS = Math.floor(this.opts.now() / 1000);
    if (typeof iat !== 'number' || typeof exp !== 'number' || exp <= nowS || iat > nowS + 60 || exp - iat > 3600) {
      return refuse('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.');
    }
    this.#serial += 1;
    const accessToken = `ya29.mock-${this.#serial}-${crypto.randomBytes(6).toString('hex')}`;
    this.#issued.add(accessToken);
    entry.accessToken = accessToken;
    return { status: 200, body: { access_token: accessToken, expires_in: this.opts.expiresIn, token_type: 'Bearer' } };
  }

  /** The FCM v1 send endpoint. */
  #send(req: http.IncomingMessage, projectId: string, raw: string): ScriptedReply {
    let body: ReceivedMessage['body'];
    try {
      body = JSON.parse(raw) as ReceivedMessage['body'];
    } catch {
      body = {};
    }
    const msg: ReceivedMessage = { projectId, authorization: req.headers.authorization, contentType: req.headers['content-type'], body, status: 0 };
    this.received.push(msg);
    const reply = ((): ScriptedReply => {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!bearer || !this.#issued.has(bearer)) {
        return fcmError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token.');
      }
      if (projectId !== this.opts.account.account.project_id) {
        return fcmError(403, 'PERMISSION_DENIED', `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${projectId}'`);
      }
      const problem = invalidMessage(body);
      if (problem) return fcmError(400, 'INVALID_ARGUMENT', problem);
      const scripted = this.#script.get(body.message!.token!)?.shift();
      if (scripted) return scripted;
      return { status: 200, body: { name: `projects/${projectId}/messages/0:${Date.now()}%${crypto.randomBytes(8).toString('hex')}` } };
    })();
    msg.status = reply.status;
    return reply;
  }
}

/** What FCM would refuse with INVALID_ARGUMENT (the parts Mooring relies on). */
function invalidMessage(body: ReceivedMessage['body']): string | undefined {
  const m = body.message as Record<string, unknown> | undefined;
  if (!m || typeof m !== 'object') return "Invalid JSON payload received. Unknown name \"message\"";
  if (typeof m.token !== 'string' || !m.token) return 'Recipient of the message is not set.';
  const data = m.data as Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(data ?? {})) {
    if (typeof v !== 'string') return `Invalid value at 'message.data[${k}].value' (TYPE_STRING)`;
  }
  return undefined;
}

function decodeSegment(s: string | undefined): Record<string, unknown> | undefined {
  if (!s) return undefined;
  try {
    return JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
