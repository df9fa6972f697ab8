/**
 * A small admin API client for the CLI: bearer auth, JSON in and out, problem+json turned into an
 * ApiError whose message reads well after `mooring: `, and network failures turned into hints.
 */

/** One entry of a validation problem's `errors` array. */
export interface FieldError {
  path: string;
  message: string;
}

/** A problem+json answer (or any non-2xx answer) from the admin API. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly errors: FieldError[] = [],
    readonly problem: Record<string, unknown> = {},
  ) {
    super(formatProblem(code, detail, errors));
    this.name = 'ApiError';
  }
}

/** `<detail> (<code>)`, then one indented line per validation error. */
export function formatProblem(code: string, detail: string, errors: FieldError[]): string {
  let summary = detail;
  if (errors.length > 0) {
    // Validation details repeat the errors after a colon; they are listed one per line below instead.
    const cut = summary.indexOf(`: ${errors[0]!.path}`);
    if (cut > 0) summary = summary.slice(0, cut);
  }
  return [`${summary} (${code})`, ...errors.map((e) => `  ${e.path}: ${e.message}`)].join('\n');
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface ApiClientOptions {
  /** Where Mooring's plain HTTP listener is, e.g. http://localhost:8080 (an `/api/v1` suffix is fine too). */
  url: string;
  token: string;
  userAgent?: string;
  fetch?: typeof fetch;
}

export class ApiClient {
  readonly baseUrl: string;
  readonly #token: string;
  readonly #userAgent: string;
  readonly #fetch: typeof fetch;

  constructor(opts: ApiClientOptions) {
    this.baseUrl = normalizeBaseUrl(opts.url);
    this.#token = opts.token;
    this.#userAgent = opts.userAgent ?? 'mooring-cli';
    this.#fetch = opts.fetch ?? fetch;
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, { body });
  }

  /** Uploads a CSV file (the import endpoints take `text/csv`). */
  postCsv<T>(path: string, query: Query, csv: Buffer): Promise<T> {
    return this.request<T>('POST', path, { query, csv });
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  /** Every item of a paginated list, following `next_cursor` until it is null. */
  async all<T>(path: string, query: Query = {}): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.get<Page<T>>(path, { ...query, cursor });
      items.push(...page.items);
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    return items;
  }

  async request<T>(method: string, path: string, opts: { query?: Query; body?: unknown; csv?: Buffer } = {}): Promise<T> {
    const url = new URL(`${this.baseUrl}/api/v1${path}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#token}`,
      Accept: 'application/json, application/problem+json',
      'User-Agent': this.#userAgent,
    };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    if (opts.csv !== undefined) headers['Content-Type'] = 'text/csv';
    const body = opts.csv ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));

    let res: Response;
    try {
      res = await this.#fetch(url, { method, headers, body });
    } catch (err) {
      throw connectionError(err, this.baseUrl);
    }
    const text = await res.text();
    const json = parseJson(text);
    if (res.ok) {
      if (json === undefined && text !== '') throw new Error(`unexpected answer from ${url.origin}: HTTP ${res.status} is not JSON; is ${this.baseUrl} a Mooring server?`);
      return json as T;
    }
    throw problemError(res, json, this.baseUrl);
  }
}

/** Trims trailing slashes and an `/api/v1` suffix, and refuses anything that is not an http(s) URL. */
export function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`the server URL ${JSON.stringify(raw)} (--url or MOORING_URL) is not a URL; expected e.g. http://localhost:8080`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`the server URL (--url or MOORING_URL) must start with http:// or https://, got ${JSON.stringify(raw)}`);
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '').replace(/\/api\/v1$/, '');
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function problemError(res: Response, json: unknown, baseUrl: string): ApiError {
  const p = (json && typeof json === 'object' ? json : {}) as Record<string, unknown>;
  const code = typeof p.code === 'string' ? p.code : `http_${res.status}`;
  let detail = typeof p.detail === 'string' ? p.detail : `HTTP ${res.status} ${res.statusText}`.trim();
  if (json === undefined) detail += ` from ${baseUrl}; is that a Mooring server?`;
  if (code === 'unauthorized') detail += '; check --token or MOORING_TOKEN (create one with `mooring token create --role operator`)';
  const errors = Array.isArray(p.errors)
    ? p.errors.map((e: { path?: unknown; message?: unknown }) => ({ path: String(e?.path ?? ''), message: String(e?.message ?? '') }))
    : [];
  return new ApiError(res.status, code, detail, errors, p);
}

/** fetch() failures carry the socket error as `cause`; say what it means and what to check. */
function connectionError(err: unknown, baseUrl: string): Error {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return new Error(`cannot connect to ${baseUrl} (connection refused): is \`mooring serve\` running at ${baseUrl}? Set --url or MOORING_URL`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new Error(`cannot resolve the host of ${baseUrl} (${code}); check --url or MOORING_URL`);
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new Error(`timed out connecting to ${baseUrl}; is \`mooring serve\` running there and reachable?`);
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return new Error(`the connection to ${baseUrl} was closed unexpectedly; is that Mooring's plain HTTP port (default 8080)?`);
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return new Error(
        `the TLS certificate of ${baseUrl} is not trusted (${code}); trust Mooring's CA with NODE_EXTRA_CA_CERTS=<certs dir>/ca.crt, or use the plain HTTP port (http://localhost:8080 on the server)`,
      );
    default: {
      const why = cause?.message ?? (err as Error).message;
      return new Error(`cannot reach ${baseUrl}: ${why}${code ? ` (${code})` : ''}`);
    }
  }
}
