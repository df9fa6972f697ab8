/**
 * The Windows push provider: WNS raw notifications to the channel URI the MDM client reported
 * (`./Vendor/MSFT/DMClient/Provider/{ProviderID}/Push/ChannelURI`), with a client-credentials OAuth
 * token from login.live.com, no Microsoft SDK.
 *
 * A push is only a wake-up: a tiny `wns/raw` body (`mooring:sync`) that makes DMClient start an OMA-DM
 * session, which then pulls the pending commands. WNS is optional (windows-mdm.md decision 7: polling
 * stays the baseline; new client-credential registrations are being refused by login.live.com), so
 * a refusal here is logged and never blocks the queue.
 *
 * The access token is cached until a minute before it expires, concurrent sends share one token
 * request, and a 401 (or `WWW-Authenticate: ... Token expired`) drops it so the retry fetches a new one.
 *
 * The channel URI comes from the device, so it is checked before the server POSTs to it: https only,
 * and the host must be one of `allowedHostSuffixes` (default `notify.windows.com`, matched on a dot
 * boundary) so a device cannot make Mooring send its bearer token to an arbitrary URL. Redirects are
 * not followed. The channel URI carries the channel's secret token, so it never appears in a reason.
 *
 * See https://learn.microsoft.com/windows/apps/design/shell/tiles-and-notifications/push-request-response-headers
 * and https://learn.microsoft.com/windows/client-management/push-notification-windows-mdm
 */
import { AccessTokenCache, type FreshToken } from './access-token';
import { describeFetchError, parseJson, retryAfterSeconds, snippet } from './http-answers';
import type { PushProvider, PushResult, PushTarget } from './provider';
import { HTTPS_PUSH_MAX_IN_FLIGHT, Slots } from './slots';

export const WNS_SCOPE = 'notify.windows.com';
export const DEFAULT_WNS_TOKEN_URL = 'https://login.live.com/accesstoken.srf';
export const DEFAULT_WNS_HOST_SUFFIXES: readonly string[] = ['notify.windows.com'];
/** The raw payload: DMClient only needs the wake-up, nothing about the device goes to Microsoft. */
export const WNS_PAYLOAD = 'mooring:sync';
/** How long WNS keeps the notification for an offline device (s). */
export const WNS_TTL_SECONDS = 600;
/** The least WNS is left alone after a 406 (channel or service throttled). */
export const WNS_THROTTLE_BACKOFF_MS = 60_000;

/** The only host for which plain http is accepted, and only when it is listed explicitly (tests). */
const LOOPBACK = '127.0.0.1';

export interface WnsProviderOptions {
  /** The package SID from the Store app reservation, `ms-app://S-1-15-2-...`. */
  clientId: string;
  /** The app's client secret from Partner Center. */
  clientSecret: string;
  /** OAuth token endpoint; default https://login.live.com/accesstoken.srf. */
  tokenUrl?: string;
  /**
   * Hosts channel URIs may point at: a channel's host must equal one of these or end with `.` plus one
   * (default `['notify.windows.com']`, which covers `*.notify.windows.com`). Channel URIs must be
   * https, except that `http://127.0.0.1:<port>/...` is accepted when the list explicitly contains
   * `'127.0.0.1'` (loopback test doubles only).
   */
  allowedHostSuffixes?: string[];
  fetch?: typeof fetch;
  /** Clock in ms (token cache, Retry-After dates). */
  now?: () => number;
  /** Sends in flight at once (each is an HTTPS connection of its own); default 256. */
  maxInFlight?: number;
  /** Per-request timeout (token and send); default 15 s. */
  timeoutMs?: number;
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


export class WnsProvider implements PushProvider {
  readonly platform = 'windows' as const;
  readonly #clientId: string;
  readonly #clientSecret: string;
  readonly #tokenUrl: string;
  readonly #suffixes: string[];
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #timeoutMs: number;
  readonly #tokens: AccessTokenCache;
  readonly #slots: Slots;

  constructor(opts: WnsProviderOptions) {
    if (!opts.clientId) throw new Error('WNS needs a client id (the package SID, ms-app://...)');
    if (!opts.clientSecret) throw new Error('WNS needs a client secret');
    this.#clientId = opts.clientId;
    this.#clientSecret = opts.clientSecret;
    this.#tokenUrl = opts.tokenUrl ?? DEFAULT_WNS_TOKEN_URL;
    this.#suffixes = (opts.allowedHostSuffixes ?? [...DEFAULT_WNS_HOST_SUFFIXES])
      .map((s) => s.trim().toLowerCase().replace(/^\.+/, '').replace(/\.+$/, ''))
      .filter(Boolean);
    if (this.#suffixes.length === 0) throw new Error('WNS allowedHostSuffixes is empty');
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
    const refusal = checkChannelUri(target.token, this.#suffixes);
    if (refusal) return { outcome: 'failed', reason: refusal };
    const scrub = (s: string) => scrubChannel(s, target.token);

    let token: string;
    try {
      token = await this.#tokens.get();
    } catch (err) {
      const outcome = err instanceof TokenError ? err.outcome : 'retry';
      return { outcome, reason: scrub((err as Error).message) };
    }
    let res: Response;
    try {
      res = await this.#fetch(target.token, {
        method: 'POST',
        headers: wnsHeaders(token),
        body: WNS_PAYLOAD,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      await res.arrayBuffer();
    } catch (err) {
      return { outcome: 'retry', reason: scrub(`WNS unreachable: ${describeFetchError(err, this.#timeoutMs)}`) };
    }
    if (res.ok) return { outcome: 'sent' };
    const expired = /token expired/i.test(res.headers.get('www-authenticate') ?? '');
    if (res.status === 401 || expired) this.#tokens.drop(token);
    const result = classifyWnsResponse(res.status, res.headers, this.#now());
    if (result.outcome === 'sent') return result;
    // "Token expired" can come with another status than 401: the token is dropped all the same.
    if (expired && result.outcome !== 'retry') return { outcome: 'retry', reason: `${scrub(result.reason)}; access token dropped` };
    return { ...result, reason: scrub(result.reason) };
  }

  async #fetchToken(): Promise<FreshToken> {
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(this.#tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_id: this.#clientId,
          client_secret: this.#clientSecret,
          scope: WNS_SCOPE,
        }).toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw new TokenError(`WNS OAuth token endpoint unreachable: ${describeFetchError(err, this.#timeoutMs)}`, 'retry');
    }
    const body = parseJson(text) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } | undefined;
    if (res.status !== 200) {
      const detail = [body?.error, body?.error_description].filter((x) => typeof x === 'string').join(': ') || snippet(text);
      // 429 and 5xx are the token service's trouble; any other refusal (invalid_client: wrong SID or
      // secret; invalid_request: client-credential flow refused for the app) will not mend itself.
      const outcome = res.status === 429 || res.status >= 500 ? 'retry' : 'failed';
      throw new TokenError(`WNS OAuth token request refused (HTTP ${res.status}${detail ? `, ${detail}` : ''})`, outcome);
    }
    if (typeof body?.access_token !== 'string' || !body.access_token) {
      throw new TokenError('WNS OAuth token endpoint answered without an access_token', 'failed');
    }
    const expiresIn = typeof body.expires_in === 'string' ? Number(body.expires_in) : body.expires_in;
    // login.live.com issues tokens for 24 h; assume an hour if it does not say.
    const lifetimeS = typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600;
    return { value: body.access_token, lifetimeSeconds: lifetimeS };
  }
}

/** The headers of a wake-up: a cached raw notification that lives ten minutes. */
export function wnsHeaders(accessToken: string): Record<string, string> {
  return {
    authorization: `Bearer ${accessToken}`,
    'content-type': 'application/octet-stream',
    'x-wns-type': 'wns/raw',
    'x-wns-cache-policy': 'cache',
    'x-wns-ttl': String(WNS_TTL_SECONDS),
  };
}

/**
 * Why a channel URI must not be POSTed to, or undefined if it may. The reason names the host at most,
 * never the URI (its query is the channel's secret).
 */
export function checkChannelUri(channel: string, allowedHostSuffixes: readonly string[]): string | undefined {
  let url: URL;
  try {
    url = new URL(channel);
  } catch {
    return 'WNS channel URI refused: not an absolute URL';
  }
  const host = url.hostname.toLowerCase();
  const loopbackAllowed = host === LOOPBACK && allowedHostSuffixes.includes(LOOPBACK);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopbackAllowed)) {
    return `WNS channel URI refused: scheme ${url.protocol.replace(/:$/, '')} is not https`;
  }
  if (url.username || url.password) return 'WNS channel URI refused: it carries user credentials';
  if (!allowedHostSuffixes.some((suffix) => host === suffix || host.endsWith(`.${suffix}`))) {
    return `WNS channel URI refused: host ${host} is not under ${allowedHostSuffixes.join(', ')}`;
  }
  return undefined;
}

/**
 * Maps a WNS answer to a push outcome. Reasons name the HTTP status, X-WNS-Status,
 * X-WNS-Error-Description, X-WNS-Msg-ID and Retry-After when present.
 */
export function classifyWnsResponse(httpStatus: number, headers: Headers, nowMs: number): PushResult {
  if (httpStatus >= 200 && httpStatus < 300) return { outcome: 'sent' };
  const wait = retryAfterSeconds(headers.get('retry-after'), nowMs);
  const parts = [`WNS HTTP ${httpStatus}${STATUS_TEXT[httpStatus] ? ` ${STATUS_TEXT[httpStatus]}` : ''}`];
  const wnsStatus = headers.get('x-wns-status');
  const description = headers.get('x-wns-error-description');
  const msgId = headers.get('x-wns-msg-id');
  if (wnsStatus) parts.push(`X-WNS-Status ${wnsStatus}`);
  if (description) parts.push(snippet(description));
  if (msgId) parts.push(`msg ${snippet(msgId)}`);
  if (wait !== undefined) parts.push(`Retry-After ${wait}s`);
  const reason = parts.join('; ');
  const after = wait !== undefined ? { retryAfterMs: wait * 1000 } : {};

  switch (httpStatus) {
    case 401:
      return { outcome: 'retry', reason: `${reason}; access token dropped` };
    case 404: // the channel URI is not valid or not recognised by WNS
    case 410: // the channel expired
      return { outcome: 'dead_token', reason };
    case 406: // this cloud service exceeded its throttle limit
    case 429:
      return { outcome: 'retry', reason, retryAfterMs: Math.max(WNS_THROTTLE_BACKOFF_MS, (wait ?? 0) * 1000) };
  }
  if (httpStatus >= 500) return { outcome: 'retry', reason, ...after };
  if (httpStatus >= 300 && httpStatus < 400) return { outcome: 'failed', reason: `${reason}; redirects are not followed` };
  // 400 (bad headers), 403 (token is for another package than the channel's), 405, 413 (payload too large), ...
  return { outcome: 'failed', reason };
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  410: 'Gone',
  413: 'Request Entity Too Large',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Removes the channel URI (and its query, the secret part) from text bound for logs and events. */
function scrubChannel(text: string, channel: string): string {
  let out = text.split(channel).join('<channel>');
  try {
    const { search } = new URL(channel);
    if (search.length > 1) out = out.split(search).join('?<channel token>');
  } catch {
    // not a URL: nothing more to hide
  }
  return out;
}

