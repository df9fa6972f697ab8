/**
 * The Android push provider: FCM HTTP v1 with a service-account OAuth2 token, no Google SDK.
 *
 * A push is only a wake-up: a data-only, HIGH-priority message with a collapse key and no device data;
 * the DPC then pulls its pending commands over HTTPS. The access token (RS256 JWT bearer grant,
 * RFC 7523) is cached until a minute before it expires, and concurrent sends share one token request.
 *
 * See https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send and
 * https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { AccessTokenCache, type FreshToken } from './access-token';
import { describeFetchError, parseJson, retryAfterSeconds, snippet } from './http-answers';
import type { PushProvider, PushResult, PushTarget } from './provider';
import { HTTPS_PUSH_MAX_IN_FLIGHT, Slots } from './slots';

/** The OAuth2 scope FCM sends need. */
export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
export const DEFAULT_FCM_URL = 'https://fcm.googleapis.com';
export const DEFAULT_TOKEN_URL = 'https://oauth2.googleapis.com/token';

/** The fields of a Firebase service-account JSON file that a send needs. */
export interface ServiceAccount {
  project_id: string;
  client_email: string;
  /** PKCS#8 PEM. */
  private_key: string;
  private_key_id: string;
  token_uri: string;
}

export interface FcmProviderOptions {
  serviceAccount: ServiceAccount;
  /** FCM base URL; default https://fcm.googleapis.com. */
  fcmUrl?: string;
  /** OAuth2 token endpoint; overrides `serviceAccount.token_uri`. */
  tokenUrl?: string;
  fetch?: typeof fetch;
  /** Clock in ms (JWT iat/exp, token cache, Retry-After dates). */
  now?: () => number;
  /** Sends in flight at once (each is an HTTPS connection of its own); default 256. */
  maxInFlight?: number;
  /** Per-request timeout (token and send); default 15 s as in firebase-admin. */
  timeoutMs?: number;
}

const REQUIRED = ['project_id', 'client_email', 'private_key', 'private_key_id'] as const;

/** Parses and checks a service-account JSON document; throws `not a service-account JSON: ...`. */
export function loadServiceAccount(json: string): ServiceAccount {
  const bad = (why: string) => new Error(`not a service-account JSON: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw bad(`invalid JSON (${(err as Error).message})`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad('expected a JSON object');
  const o = doc as Record<string, unknown>;
  if (o.type !== undefined && o.type !== 'service_account') throw bad(`type is ${JSON.stringify(o.type)}, expected "service_account"`);
  const missing = REQUIRED.filter((k) => typeof o[k] !== 'string' || !(o[k] as string).trim());
  if (missing.length) throw bad(`missing ${missing.join(', ')}`);
  if (o.token_uri !== undefined && typeof o.token_uri !== 'string') throw bad('token_uri is not a string');
  // A key pasted through an environment variable or a shell often arrives with literal "\n".
  const pem = (o.private_key as string).includes('\n') ? (o.private_key as string) : (o.private_key as string).replace(/\\n/g, '\n');
  try {
    crypto.createPrivateKey(pem);
  } catch {
    throw bad('private_key is not a PEM private key');
  }
  return {
    project_id: o.project_id as string,
    client_email: o.client_email as string,
    private_key: pem,
    private_key_id: o.private_key_id as string,
    token_uri: (o.token_uri as string | undefined) ?? DEFAULT_TOKEN_URL,
  };
}

/** Reads and checks a service-account file; errors name the file. */
export function loadServiceAccountFile(file: string): ServiceAccount {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the FCM service account ${file}: ${(err as Error).message}`);
  }
  try {
    return loadServiceAccount(text);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

/** A token-endpoint failure, carrying whether retrying can help. */
class TokenError extends Error {
  constructor(
    message: string,
    readonly outcome: 'retry' | 'failed',
  ) {
    super(message);
  }
}


export class FcmProvider implements PushProvider {
  readonly platform = 'android' as const;
  readonly #account: ServiceAccount;
  readonly #key: crypto.KeyObject;
  readonly #sendUrl: string;
  readonly #tokenUrl: string;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #timeoutMs: number;
  readonly #tokens: AccessTokenCache;
  readonly #slots: Slots;

  constructor(opts: FcmProviderOptions) {
    this.#account = opts.serviceAccount;
    this.#key = crypto.createPrivateKey(opts.serviceAccount.private_key);
    const base = (opts.fcmUrl ?? DEFAULT_FCM_URL).replace(/\/+$/, '');
    this.#sendUrl = `${base}/v1/projects/${encodeURIComponent(opts.serviceAccount.project_id)}/messages:send`;
    this.#tokenUrl = opts.tokenUrl ?? opts.serviceAccount.token_uri ?? DEFAULT_TOKEN_URL;
    this.#fetch = opts.fetch ?? ((input, init) => fetch(input, init));
    this.#now = opts.now ?? Date.now;
    this.#tokens = new AccessTokenCache(() => this.#fetchToken(), this.#now);
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
    this.#slots = new Slots(opts.maxInFlight ?? HTTPS_PUSH_MAX_IN_FLIGHT);
  }

  send(target: PushTarget): Promise<PushResult> {
    return this.#slots.run(() => this.#send(target));
  }

  async #send(target: PushTarget): Promise<PushResult> {
    let token: string;
    try {
      token = await this.#tokens.get();
    } catch (err) {
      const outcome = err instanceof TokenError ? err.outcome : 'retry';
      return { outcome, reason: (err as Error).message };
    }
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(this.#sendUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(fcmMessage(target)),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      return { outcome: 'retry', reason: `FCM unreachable: ${describeFetchError(err, this.#timeoutMs)}` };
    }
    if (res.ok) return { outcome: 'sent' };
    if (res.status === 401) this.#tokens.drop(token);
    return classifyFcmError(res.status, text, res.headers.get('retry-after'), this.#now());
  }

  async #fetchToken(): Promise<FreshToken> {
    const issuedAt = this.#now();
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(this.#tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: this.#assertion(issuedAt) }).toString(),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw new TokenError(`FCM OAuth token endpoint unreachable: ${describeFetchError(err, this.#timeoutMs)}`, 'retry');
    }
    const body = parseJson(text) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } | undefined;
    if (!res.ok) {
      const detail = [body?.error, body?.error_description].filter((x) => typeof x === 'string').join(': ') || snippet(text);
      // 429 and 5xx are the token service's trouble; any other refusal (invalid_grant: bad key, revoked
      // account, clock skew) will not mend itself.
      const outcome = res.status === 429 || res.status >= 500 ? 'retry' : 'failed';
      throw new TokenError(`FCM OAuth token request refused (HTTP ${res.status}${detail ? `, ${detail}` : ''})`, outcome);
    }
    if (typeof body?.access_token !== 'string' || !body.access_token) {
      throw new TokenError('FCM OAuth token endpoint answered without an access_token', 'failed');
    }
    const lifetimeS = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 3600;
    return { value: body.access_token, lifetimeSeconds: lifetimeS };
  }

  /** The RS256 JWT bearer assertion (RFC 7523) for the service account. */
  #assertion(nowMs: number): string {
    const iat = Math.floor(nowMs / 1000);
    const header = { alg: 'RS256', typ: 'JWT', kid: this.#account.private_key_id };
    const claims = { iss: this.#account.client_email, scope: FCM_SCOPE, aud: this.#tokenUrl, iat, exp: iat + 3600 };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = crypto.sign('RSA-SHA256', Buffer.from(signingInput), this.#key);
    return `${signingInput}.${signature.toString('base64url')}`;
  }
}

/** The wake-up message: data values must be strings; nothing about the device goes to Google. */
export function fcmMessage(target: PushTarget): object {
  return {
    message: {
      token: target.token,
      data: { mooring: 'sync' },
      android: { priority: 'HIGH', ttl: '600s', collapse_key: 'mooring-sync' },
    },
  };
}

interface FcmErrorBody {
  error?: { code?: unknown; message?: unknown; status?: unknown; details?: unknown };
}

const INVALID_TOKEN_MESSAGE = /not a valid FCM registration token/i;

/**
 * Maps an FCM error answer to a push outcome: `details[].errorCode` first, then the canonical
 * `status`, then the HTTP status. Reasons name the code, HTTP status, FCM's message and Retry-After.
 */
export function classifyFcmError(httpStatus: number, text: string, retryAfter: string | null, nowMs: number): PushResult {
  const err = (parseJson(text) as FcmErrorBody | undefined)?.error;
  const details = Array.isArray(err?.details) ? (err.details as Array<Record<string, unknown>>) : [];
  const errorCode = details.find((d) => d && typeof d.errorCode === 'string')?.errorCode as string | undefined;
  const status = typeof err?.status === 'string' ? err.status : undefined;
  const message = typeof err?.message === 'string' ? err.message : snippet(text);
  const code = errorCode ?? status ?? `HTTP_${httpStatus}`;
  const wait = retryAfterSeconds(retryAfter, nowMs);
  const reason = `FCM ${code} (HTTP ${httpStatus})${message ? `: ${message}` : ''}${wait !== undefined ? `; Retry-After ${wait}s` : ''}`;

  if (httpStatus === 401) return { outcome: 'retry', reason: `${reason}; access token dropped` };
  switch (code) {
    case 'UNREGISTERED':
    case 'NOT_FOUND':
      return { outcome: 'dead_token', reason };
    case 'INVALID_ARGUMENT':
      return { outcome: INVALID_TOKEN_MESSAGE.test(message) ? 'dead_token' : 'failed', reason };
    case 'SENDER_ID_MISMATCH':
    case 'PERMISSION_DENIED':
      return { outcome: 'failed', reason };
    case 'QUOTA_EXCEEDED':
    case 'RESOURCE_EXHAUSTED':
      // Google: back off for at least a minute when the project's quota is spent.
      return { outcome: 'retry', reason, retryAfterMs: Math.max(60_000, (wait ?? 0) * 1000) };
    case 'UNAVAILABLE':
    case 'INTERNAL':
      return { outcome: 'retry', reason, ...(wait !== undefined ? { retryAfterMs: wait * 1000 } : {}) };
  }
  if (httpStatus === 429 || httpStatus >= 500) return { outcome: 'retry', reason, ...(wait !== undefined ? { retryAfterMs: wait * 1000 } : {}) };
  return { outcome: 'failed', reason };
}

function b64url(s: string): string {
  return Buffer.from(s).toString('base64url');
}
