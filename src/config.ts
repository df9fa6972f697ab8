/**
 * The one documented defaults module. Every setting Mooring reads comes through `loadConfig`, and this
 * is the only file that looks at `process.env` (the README's configuration table mirrors `SETTINGS`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
const seconds = z.coerce.number().int().positive();
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const urlList = z
  .string()
  .optional()
  .transform((v) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean))
  .pipe(z.array(z.url()));

/** Each environment variable with its default and meaning; order is the README table's order. */
export const SETTINGS = {
  MOORING_PUBLIC_URL: {
    schema: z.url().default('https://localhost:8443'),
    doc: 'Base URL devices use; goes into profiles, discovery responses and QR payloads.',
  },
  MOORING_HTTPS_PORT: { schema: port.default(8443), doc: 'HTTPS listener (asks for, but does not require, a client certificate).' },
  MOORING_HTTP_PORT: { schema: port.default(8080), doc: 'Plain HTTP listener (health, metrics, and device traffic behind a TLS-terminating proxy).' },
  MOORING_BIND: { schema: z.string().default('0.0.0.0'), doc: 'Address both listeners bind to.' },
  MOORING_DATA_DIR: { schema: z.string().default('./data'), doc: 'Embedded database and other local state.' },
  MOORING_CERTS_DIR: { schema: z.string().default('./certs'), doc: 'CA, TLS and signing material generated on first start.' },
  DATABASE_URL: { schema: optionalString, doc: 'External Postgres (13+). Unset: embedded Postgres under MOORING_DATA_DIR.' },
  REDIS_URL: { schema: optionalString, doc: 'External Redis (6.2+) for the queues. Unset: BullMQ on the Postgres database.' },
  MOORING_EMBEDDED_PG_PORT: { schema: port.default(5488), doc: 'Port of the embedded Postgres (127.0.0.1 only); 0 picks a free one.' },
  MOORING_ADMIN_TOKEN: { schema: optionalString, doc: 'Bootstrap admin API token. Unset: one is generated and printed on first start.' },
  MOORING_TRUSTED_PROXY_CERT_HEADER: {
    schema: optionalString,
    doc: 'Header carrying the client certificate from a trusted proxy (RFC 9440 `Client-Cert` or URL-escaped PEM).',
  },
  MOORING_CA_CERT: {
    schema: optionalString,
    doc: 'PEM file of an existing CA certificate to issue device identities with (with MOORING_CA_KEY). Unset: a CA is generated in MOORING_CERTS_DIR.',
  },
  MOORING_CA_KEY: { schema: optionalString, doc: 'PEM file (PKCS#8 or PKCS#1, RSA) of the private key of MOORING_CA_CERT.' },
  MOORING_IDENTITY_DAYS: {
    schema: z.coerce.number().int().min(1).max(825).default(365),
    doc: 'Validity in days of device identity certificates (Apple SCEP, Windows enrollment).',
  },
  MOORING_APPLE_ROOT_PAYLOAD: {
    schema: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
    doc: "Put the CA certificate in Apple enrollment profiles so devices trust the HTTPS server; `false` when devices see a publicly trusted certificate.",
  },
  MOORING_APPLE_USER_CHANNELS: {
    schema: z.enum(['decline', 'accept']).default('decline'),
    doc: 'macOS user channels: `decline` answers UserAuthenticate with 410 (device channel only); `accept` manages users too.',
  },
  MOORING_IDLE_CACHE: {
    schema: z.enum(['auto', 'local', 'off']).default('auto'),
    doc: "Answer a device's repeated idle poll from memory while nothing was queued for it. `auto`: on with Redis (the queue generation is shared there) and in embedded mode, off with an external database and no Redis; `local`: also on with an external database and no Redis, for exactly one `mooring serve` process running its own worker; `off`: every poll asks the database.",
  },
  MOORING_APNS_URL: { schema: z.url().default('https://api.push.apple.com'), doc: 'APNs base URL (a local mock in tests).' },
  MOORING_APNS_CA_FILE: {
    schema: optionalString,
    doc: 'PEM file of extra CAs to trust for the APNs connection (a TLS-inspecting egress proxy; a mock in tests). Unset: the system store.',
  },
  MOORING_FCM_URL: { schema: z.url().default('https://fcm.googleapis.com'), doc: 'FCM base URL (a local mock in tests).' },
  MOORING_FCM_TOKEN_URL: {
    schema: z.url().default('https://oauth2.googleapis.com/token'),
    doc: 'OAuth2 token endpoint for the FCM service account (a local mock in tests).',
  },
  MOORING_FCM_SERVICE_ACCOUNT: {
    schema: optionalString,
    doc: 'Path of the Firebase service-account JSON file. Unset: no FCM push (DPCs long-poll or check in on their own).',
  },
  MOORING_ANDROID_DPC_COMPONENT: {
    schema: optionalString,
    doc: 'Android DPC admin receiver, `package/fully.qualified.Receiver`. Needed for provisioning QR codes.',
  },
  MOORING_ANDROID_DPC_DOWNLOAD_URL: { schema: optionalString, doc: 'HTTPS URL of the DPC APK that provisioning downloads.' },
  MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM: {
    schema: optionalString,
    doc: 'URL-safe base64 SHA-256 of the DPC signing certificate (stable across releases).',
  },
  MOORING_ANDROID_DPC_PACKAGE_CHECKSUM: {
    schema: optionalString,
    doc: 'URL-safe base64 SHA-256 of the APK file itself (changes with every build); either checksum will do.',
  },
  MOORING_WINDOWS_AUTH_POLICY: {
    schema: z.enum(['OnPremise', 'Federated']).default('OnPremise'),
    doc: 'How Windows users prove themselves: `OnPremise` (email + enrollment token as password) or `Federated` (a sign-in page).',
  },
  MOORING_WINDOWS_POLL_MINUTES: {
    schema: z.coerce.number().int().min(1).max(1440).default(15),
    doc: 'How often an enrolled Windows device opens an OMA-DM session on its own (DMClient poll schedule).',
  },
  MOORING_WNS_PFN: {
    schema: optionalString,
    doc: 'Package family name of the WNS app registration; with it, enrolled Windows devices are asked for a push channel.',
  },
  MOORING_WNS_CLIENT_ID: { schema: optionalString, doc: 'WNS package SID (`ms-app://...`) for the OAuth client-credentials grant.' },
  MOORING_WNS_CLIENT_SECRET: { schema: optionalString, doc: 'WNS client secret. With the client id, Windows devices are woken by WNS push.' },
  MOORING_WNS_TOKEN_URL: {
    schema: z.url().default('https://login.live.com/accesstoken.srf'),
    doc: 'WNS OAuth token endpoint (a local mock in tests).',
  },
  MOORING_SECRET_KEY: {
    schema: optionalString,
    doc: 'Key (64 hex characters) sealing secrets kept for later display. Unset: generated in `certs/secret.key`.',
  },
  MOORING_WEBHOOK_URLS: { schema: urlList, doc: 'Comma-separated URLs that receive every event as a signed JSON POST.' },
  MOORING_WEBHOOK_SECRET: { schema: optionalString, doc: 'HMAC-SHA256 key for `X-Mooring-Signature`. Unset: generated under MOORING_CERTS_DIR.' },
  MOORING_COMMAND_TTL: { schema: seconds.default(30 * 24 * 3600), doc: 'Seconds a queued command lives before it expires, unless the request sets `expires_in`.' },
  MOORING_REDELIVER_AFTER: {
    schema: seconds.default(15 * 60),
    doc: 'Seconds after which a command that was sent but never reported goes back in the queue (the worker checks every minute).',
  },
  MOORING_NOT_NOW_RETRY: { schema: seconds.default(5 * 60), doc: 'Seconds before a re-push after a device answers NotNow.' },
  MOORING_ADMIN_BODY_LIMIT: { schema: z.string().default('8mb'), doc: 'Largest admin API request body (a 100,000-device bulk command is about 4 MB).' },
  MOORING_DB_POOL_MAX: { schema: z.coerce.number().int().min(2).default(20), doc: 'Most Postgres connections one process opens for requests.' },
  MOORING_WORKER_THREAD: {
    schema: z.enum(['true', 'false']).default('true').transform((v) => v === 'true'),
    doc: "Where `serve` runs the background worker when it runs one (embedded mode, `--worker`): `true` on a thread of its own, so a push fan-out to thousands of devices neither waits for nor holds up device and admin requests, and uses a second CPU core; `false` on the request thread. `mooring worker` is a process of its own either way.",
  },
  MOORING_LOG_LEVEL: {
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    doc: 'pino log level.',
  },
} as const;

type Settings = typeof SETTINGS;
type Env = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export interface Config {
  publicUrl: URL;
  httpsPort: number;
  httpPort: number;
  bind: string;
  dataDir: string;
  certsDir: string;
  databaseUrl?: string;
  redisUrl?: string;
  embeddedPgPort: number;
  adminToken?: string;
  trustedProxyCertHeader?: string;
  /** An existing CA to use instead of generating one (both files, or neither). */
  caFiles?: { certFile: string; keyFile: string };
  identityDays: number;
  apple: { rootPayload: boolean; userChannels: 'decline' | 'accept' };
  idleCache: 'auto' | 'local' | 'off';
  apnsUrl: string;
  apnsCaFile?: string;
  fcmUrl: string;
  fcmTokenUrl: string;
  fcmServiceAccountFile?: string;
  androidDpc: { component?: string; downloadUrl?: string; signatureChecksum?: string; packageChecksum?: string };
  secretKey?: string;
  windows: { authPolicy: 'OnPremise' | 'Federated'; pollMinutes: number };
  wns: { pfn?: string; clientId?: string; clientSecret?: string; tokenUrl: string };
  webhookUrls: string[];
  webhookSecret?: string;
  commandTtlSeconds: number;
  redeliverAfterSeconds: number;
  notNowRetrySeconds: number;
  adminBodyLimit: string;
  dbPoolMax: number;
  workerThread: boolean;
  logLevel: Env['MOORING_LOG_LEVEL'];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the configuration from `env` (default: `process.env`, after loading `./.env` if present).
 * Throws a ConfigError naming every bad variable, so a typo fails at start and not at first use.
 */
export function loadConfig(env: NodeJS.ProcessEnv = readProcessEnv()): Config {
  const parsed: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, { schema }] of Object.entries(SETTINGS)) {
    const result = (schema as z.ZodType).safeParse(env[name] === '' ? undefined : env[name]);
    if (result.success) parsed[name] = result.data;
    else problems.push(`${name}: ${result.error.issues.map((i) => i.message).join('; ')} (got ${JSON.stringify(env[name])})`);
  }
  const e = parsed as Env;
  if (Boolean(e.MOORING_CA_CERT) !== Boolean(e.MOORING_CA_KEY)) problems.push('MOORING_CA_CERT and MOORING_CA_KEY go together: set both or neither');
  if (problems.length) throw new ConfigError(problems);
  return {
    publicUrl: new URL(e.MOORING_PUBLIC_URL),
    httpsPort: e.MOORING_HTTPS_PORT,
    httpPort: e.MOORING_HTTP_PORT,
    bind: e.MOORING_BIND,
    dataDir: path.resolve(e.MOORING_DATA_DIR),
    certsDir: path.resolve(e.MOORING_CERTS_DIR),
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    embeddedPgPort: e.MOORING_EMBEDDED_PG_PORT,
    adminToken: e.MOORING_ADMIN_TOKEN,
    trustedProxyCertHeader: e.MOORING_TRUSTED_PROXY_CERT_HEADER?.toLowerCase(),
    caFiles: e.MOORING_CA_CERT && e.MOORING_CA_KEY ? { certFile: path.resolve(e.MOORING_CA_CERT), keyFile: path.resolve(e.MOORING_CA_KEY) } : undefined,
    identityDays: e.MOORING_IDENTITY_DAYS,
    apple: { rootPayload: e.MOORING_APPLE_ROOT_PAYLOAD, userChannels: e.MOORING_APPLE_USER_CHANNELS },
    idleCache: e.MOORING_IDLE_CACHE,
    apnsUrl: e.MOORING_APNS_URL,
    apnsCaFile: e.MOORING_APNS_CA_FILE ? path.resolve(e.MOORING_APNS_CA_FILE) : undefined,
    fcmUrl: e.MOORING_FCM_URL,
    fcmTokenUrl: e.MOORING_FCM_TOKEN_URL,
    fcmServiceAccountFile: e.MOORING_FCM_SERVICE_ACCOUNT,
    androidDpc: {
      component: e.MOORING_ANDROID_DPC_COMPONENT,
      downloadUrl: e.MOORING_ANDROID_DPC_DOWNLOAD_URL,
      signatureChecksum: e.MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM,
      packageChecksum: e.MOORING_ANDROID_DPC_PACKAGE_CHECKSUM,
    },
    secretKey: e.MOORING_SECRET_KEY,
    windows: { authPolicy: e.MOORING_WINDOWS_AUTH_POLICY, pollMinutes: e.MOORING_WINDOWS_POLL_MINUTES },
    wns: { pfn: e.MOORING_WNS_PFN, clientId: e.MOORING_WNS_CLIENT_ID, clientSecret: e.MOORING_WNS_CLIENT_SECRET, tokenUrl: e.MOORING_WNS_TOKEN_URL },
    webhookUrls: e.MOORING_WEBHOOK_URLS,
    webhookSecret: e.MOORING_WEBHOOK_SECRET,
    commandTtlSeconds: e.MOORING_COMMAND_TTL,
    redeliverAfterSeconds: e.MOORING_REDELIVER_AFTER,
    notNowRetrySeconds: e.MOORING_NOT_NOW_RETRY,
    adminBodyLimit: e.MOORING_ADMIN_BODY_LIMIT,
    dbPoolMax: e.MOORING_DB_POOL_MAX,
    workerThread: e.MOORING_WORKER_THREAD,
    logLevel: e.MOORING_LOG_LEVEL,
  };
}

function readProcessEnv(): NodeJS.ProcessEnv {
  // A .env file in the working directory fills in what the environment leaves unset.
  if (fs.existsSync('.env')) process.loadEnvFile('.env');
  return process.env;
}

/** The CLI reads a few client-side variables (where the admin API is, which token to use). */
export function readClientEnv(env: NodeJS.ProcessEnv = process.env): { url?: string; token?: string } {
  return { url: env.MOORING_URL, token: env.MOORING_TOKEN ?? env.MOORING_ADMIN_TOKEN };
}
