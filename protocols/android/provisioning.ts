/**
 * Android device-owner provisioning payloads: the "provisioning extras" JSON that Setup Wizard reads
 * from a QR code, the java.util.Properties form of the same data for NFC, and a validator that applies
 * the rules of AOSP ManagedProvisioning's parsers (ExtrasProvisioningDataParser for QR,
 * PropertiesProvisioningDataParser for NFC). Pure: no I/O, no clock, no environment.
 *
 * QR provisioning needs a factory-reset device, so it serves the company-owned modes (fully managed,
 * dedicated, COPE). The mode itself is not in the payload: the DPC learns it from the enrollment
 * token when it enrolls.
 *
 * Key reference: https://developer.android.com/reference/android/app/admin/DevicePolicyManager
 * Research notes: shared/research/android-provisioning.md, sections 1.1 to 1.3 and 6.
 */
import { z } from 'zod';
import { Errors } from '../../src/core/errors';

/**
 * Provisioning extra names, as the QR JSON keys and NFC property names. Each names its constant in
 * https://developer.android.com/reference/android/app/admin/DevicePolicyManager (`DPM#...`).
 */
export const EXTRA = {
  /** `pkg/cls` of the DPC's DeviceAdminReceiver. DPM#EXTRA_PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME */
  COMPONENT_NAME: 'android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME',
  /** URL of the DPC APK. DPM#EXTRA_PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION */
  DOWNLOAD_LOCATION: 'android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION',
  /** URL-safe base64 SHA-256 of a signing certificate. DPM#EXTRA_PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM */
  SIGNATURE_CHECKSUM: 'android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM',
  /** URL-safe base64 SHA-256 of the APK file; wins over the signature checksum. DPM#EXTRA_PROVISIONING_DEVICE_ADMIN_PACKAGE_CHECKSUM */
  PACKAGE_CHECKSUM: 'android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_CHECKSUM',
  /** Wi-Fi network name, unquoted. DPM#EXTRA_PROVISIONING_WIFI_SSID */
  WIFI_SSID: 'android.app.extra.PROVISIONING_WIFI_SSID',
  /** NONE, WPA, WEP or EAP, case-sensitive. DPM#EXTRA_PROVISIONING_WIFI_SECURITY_TYPE */
  WIFI_SECURITY_TYPE: 'android.app.extra.PROVISIONING_WIFI_SECURITY_TYPE',
  /** DPM#EXTRA_PROVISIONING_WIFI_PASSWORD */
  WIFI_PASSWORD: 'android.app.extra.PROVISIONING_WIFI_PASSWORD',
  /** boolean. DPM#EXTRA_PROVISIONING_WIFI_HIDDEN */
  WIFI_HIDDEN: 'android.app.extra.PROVISIONING_WIFI_HIDDEN',
  /** Only with security type EAP (API 29+). DPM#EXTRA_PROVISIONING_WIFI_EAP_METHOD */
  WIFI_EAP_METHOD: 'android.app.extra.PROVISIONING_WIFI_EAP_METHOD',
  /** `xx_YY`. DPM#EXTRA_PROVISIONING_LOCALE */
  LOCALE: 'android.app.extra.PROVISIONING_LOCALE',
  /** IANA time-zone id. DPM#EXTRA_PROVISIONING_TIME_ZONE */
  TIME_ZONE: 'android.app.extra.PROVISIONING_TIME_ZONE',
  /** boolean, default false (non-essential system apps get disabled). DPM#EXTRA_PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED */
  LEAVE_ALL_SYSTEM_APPS_ENABLED: 'android.app.extra.PROVISIONING_LEAVE_ALL_SYSTEM_APPS_ENABLED',
  /** boolean: download the DPC over mobile data. DPM#EXTRA_PROVISIONING_USE_MOBILE_DATA */
  USE_MOBILE_DATA: 'android.app.extra.PROVISIONING_USE_MOBILE_DATA',
  /** boolean. DPM#EXTRA_PROVISIONING_SKIP_ENCRYPTION */
  SKIP_ENCRYPTION: 'android.app.extra.PROVISIONING_SKIP_ENCRYPTION',
  /** Nested object (a PersistableBundle) handed untouched to the DPC. DPM#EXTRA_PROVISIONING_ADMIN_EXTRAS_BUNDLE */
  ADMIN_EXTRAS_BUNDLE: 'android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE',
} as const;

/** Keys of the admin extras bundle that Mooring's DPC reads. Values are always strings. */
export const MOORING_EXTRA = {
  SERVER_URL: 'com.mooring.SERVER_URL',
  ENROLLMENT_TOKEN: 'com.mooring.ENROLLMENT_TOKEN',
  ADDITIONAL_DATA: 'com.mooring.ADDITIONAL_DATA',
} as const;

/** NDEF record MIME type for NFC provisioning (DPM#MIME_TYPE_PROVISIONING_NFC). */
export const NFC_MIME_TYPE = 'application/com.android.managedprovisioning';

export const WIFI_SECURITY_TYPES = ['NONE', 'WPA', 'WEP', 'EAP'] as const;
export const WIFI_EAP_METHODS = ['PEAP', 'TLS', 'TTLS', 'PWD', 'SIM', 'AKA', 'AKA_PRIME'] as const;

/** The environment variable behind each DpcConfig field (named in problems so admins know what to fix). */
export const DPC_ENV = {
  component: 'MOORING_ANDROID_DPC_COMPONENT',
  downloadUrl: 'MOORING_ANDROID_DPC_DOWNLOAD_URL',
  signatureChecksum: 'MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM',
  packageChecksum: 'MOORING_ANDROID_DPC_PACKAGE_CHECKSUM',
} as const;

export const OPENSSL_CHECKSUM_HINT = "openssl dgst -binary -sha256 file | openssl base64 | tr '+/' '-_' | tr -d '='";
const COMPONENT_RE = /^[A-Za-z][\w.]*\/[\w.$]+$/;
const LOCALE_RE = /^[a-z]{2,3}_[A-Z]{2}$/;

// ---- checksums, component, URL ----

export type CheckResult = { ok: true; value: string } | { ok: false; problem: string };

/**
 * A provisioning checksum: URL-safe base64 (padding optional) of a 32-byte SHA-256 digest, the form
 * StoreUtils.stringToByteArray decodes. On success `value` is the canonical form: URL-safe, unpadded.
 */
export function checkChecksum(raw: string): CheckResult {
  const s = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) {
    return { ok: false, problem: `looks like a hex digest; give the URL-safe base64 of the 32-byte SHA-256 (e.g. \`${OPENSSL_CHECKSUM_HINT}\`)` };
  }
  if (/[+/]/.test(s)) return { ok: false, problem: "uses the standard base64 alphabet ('+' or '/'); give the URL-safe form (tr '+/' '-_')" };
  const m = /^([A-Za-z0-9_-]+)(=*)$/.exec(s);
  if (!m || m[2]!.length > 2 || (m[2]!.length > 0 && s.length % 4 !== 0) || m[1]!.length % 4 === 1) {
    return { ok: false, problem: 'is not URL-safe base64' };
  }
  const bytes = Buffer.from(m[1]!, 'base64url').length;
  if (bytes !== 32) {
    const why =
      bytes === 20
        ? 'a SHA-1 digest? Android 10 and later accept SHA-256 only'
        : `the digest was probably mangled on the way (a text-mode pipe adds bytes); recompute it with \`${OPENSSL_CHECKSUM_HINT}\``;
    return { ok: false, problem: `decodes to ${bytes} bytes, not the 32 of a SHA-256 digest (${why})` };
  }
  return { ok: true, value: m[1]! };
}

/** A flattened ComponentName; `pkg/.Cls` is expanded to `pkg/pkg.Cls` (Android 13 reportedly rejects the short form). */
export function checkComponent(raw: string): CheckResult {
  const s = raw.trim();
  if (!COMPONENT_RE.test(s)) return { ok: false, problem: 'must be `package/Class`, e.g. com.example.dpc/com.example.dpc.AdminReceiver' };
  const [pkg, cls] = s.split('/') as [string, string];
  return { ok: true, value: cls.startsWith('.') ? `${pkg}/${pkg}${cls}` : s };
}

/** An absolute http(s) URL. */
export function checkHttpUrl(raw: string): CheckResult {
  const s = raw.trim();
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return { ok: false, problem: 'must be an absolute http(s) URL' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, problem: 'must be an absolute http(s) URL' };
  return { ok: true, value: s };
}

// ---- DPC configuration ----

/** The DPC that provisioning downloads: component, APK URL, and at least one checksum (canonical forms). */
export type DpcConfig = { component: string; downloadUrl: string } & (
  | { signatureChecksum: string; packageChecksum?: string }
  | { signatureChecksum?: string; packageChecksum: string }
);

export interface DpcInput {
  component?: string;
  downloadUrl?: string;
  signatureChecksum?: string;
  packageChecksum?: string;
}

/** Checks the configured DPC (config.androidDpc); every problem names the environment variable to fix. */
export function validateDpc(dpc: DpcInput): { ok: true; dpc: DpcConfig } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  const given = (v: string | undefined): v is string => typeof v === 'string' && v.trim() !== '';
  const check = (field: keyof DpcInput, fn: (s: string) => CheckResult): string | undefined => {
    const v = dpc[field];
    if (!given(v)) return undefined;
    const r = fn(v);
    if (r.ok) return r.value;
    problems.push(`${DPC_ENV[field]} ${r.problem}`);
    return undefined;
  };
  const component = check('component', checkComponent);
  const downloadUrl = check('downloadUrl', checkHttpUrl);
  const signatureChecksum = check('signatureChecksum', checkChecksum);
  const packageChecksum = check('packageChecksum', checkChecksum);
  if (!given(dpc.component)) problems.push(`${DPC_ENV.component} is not set: the DPC's admin receiver, e.g. com.example.dpc/com.example.dpc.AdminReceiver`);
  if (!given(dpc.downloadUrl)) problems.push(`${DPC_ENV.downloadUrl} is not set: the URL devices download the DPC APK from`);
  if (!given(dpc.signatureChecksum) && !given(dpc.packageChecksum)) {
    problems.push(`neither ${DPC_ENV.signatureChecksum} nor ${DPC_ENV.packageChecksum} is set: give at least one (\`${OPENSSL_CHECKSUM_HINT}\`)`);
  }
  if (problems.length > 0 || !component || !downloadUrl) return { ok: false, problems };
  const checksums = signatureChecksum ? { signatureChecksum, ...(packageChecksum ? { packageChecksum } : {}) } : { packageChecksum: packageChecksum! };
  return { ok: true, dpc: { component, downloadUrl, ...checksums } };
}

// ---- options ----

/** An IANA time-zone id; Android looks ids up case-sensitively, so `europe/paris` is refused with the right spelling. */
export function timeZoneProblem(tz: string): string | undefined {
  const notIana = `${JSON.stringify(tz)} is not an IANA time-zone id (e.g. Europe/Paris)`;
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(tz)) return notIana;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en', { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    return notIana;
  }
  if (resolved !== tz && resolved.toLowerCase() === tz.toLowerCase()) return `time-zone ids are case-sensitive: write ${resolved}`;
  return undefined;
}

const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8');

export const WifiOptionsSchema = z
  .strictObject({
    ssid: z.string().min(1).refine((s) => utf8Length(s) <= 32, 'an SSID is at most 32 bytes'),
    security_type: z.enum(WIFI_SECURITY_TYPES, {
      error: 'must be exactly NONE, WPA, WEP or EAP (case-sensitive; use WPA for WPA2/WPA3): Android treats anything else as an open network',
    }),
    password: z.string().min(1).optional(),
    hidden: z.boolean().optional(),
    eap_method: z.enum(WIFI_EAP_METHODS, { error: `must be one of ${WIFI_EAP_METHODS.join(', ')}` }).optional(),
  })
  .superRefine((w, ctx) => {
    if (w.eap_method !== undefined && w.security_type !== 'EAP') {
      ctx.addIssue({ code: 'custom', path: ['eap_method'], message: 'is only used when security_type is EAP' });
    }
    if (w.security_type === 'EAP' && w.eap_method === undefined) {
      ctx.addIssue({ code: 'custom', path: ['eap_method'], message: 'is required when security_type is EAP' });
    }
    if ((w.security_type === 'WPA' || w.security_type === 'WEP') && w.password === undefined) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: `is required when security_type is ${w.security_type}` });
    }
    if (w.security_type === 'WPA' && w.password !== undefined && !/^([\x20-\x7e]{8,63}|[0-9a-fA-F]{64})$/.test(w.password)) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'a WPA passphrase is 8 to 63 printable ASCII characters (or 64 hex digits)' });
    }
    if (w.security_type === 'NONE' && w.password !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'an open network (security_type NONE) takes no password' });
    }
  });

/** What an admin may add to a provisioning payload (all optional; absent keys keep Android's defaults). */
export const ProvisioningOptionsSchema = z.strictObject({
  wifi: WifiOptionsSchema.optional(),
  locale: z.string().regex(LOCALE_RE, 'must be language_COUNTRY with an underscore, e.g. en_US').optional(),
  time_zone: z
    .string()
    .superRefine((tz, ctx) => {
      const problem = timeZoneProblem(tz);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  leave_all_system_apps_enabled: z.boolean().optional(),
  use_mobile_data: z.boolean().optional(),
  skip_encryption: z.boolean().optional(),
});

export type ProvisioningOptions = z.infer<typeof ProvisioningOptionsSchema>;
export type WifiOptions = z.infer<typeof WifiOptionsSchema>;

/** Parses admin input; failures throw `validation_failed` with `errors: [{ path, message }]` like the admin routes. */
export function parseProvisioningOptions(input: unknown): ProvisioningOptions {
  const result = ProvisioningOptionsSchema.safeParse(input ?? {});
  if (result.success) return result.data;
  const errors = result.error.issues.map((i) => ({ path: ['options', ...i.path.map(String)].join('.'), message: i.message }));
  throw Errors.validation(`the provisioning options are not valid: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`, { errors });
}

// ---- building the payload ----

/** A provisioning payload: top-level extras; the admin extras bundle is the only nested object. */
export type ExtraValue = string | number | boolean | Readonly<Record<string, string>>;
export type ProvisioningExtras = Readonly<Record<string, ExtraValue>>;

export interface BuildInput {
  /** The DPC, normally `validateDpc(config.androidDpc).dpc`; checked again here. */
  dpc: DpcConfig;
  /** Base URL the DPC enrolls against. */
  serverUrl: string;
  /** The enrollment token (plaintext) the DPC presents when it enrolls. */
  enrollmentToken: string;
  options?: ProvisioningOptions;
  /** Passed to the DPC as `com.mooring.ADDITIONAL_DATA`; objects are JSON-encoded (bundle values are strings). */
  additionalData?: string | Record<string, unknown>;
}

/**
 * The provisioning extras JSON, keys in a fixed order: DPC, Wi-Fi, locale/time, flags, admin extras.
 * Booleans stay JSON booleans (Setup Wizard maps them to boolean extras; a "true" string reads as the
 * default). The deprecated PROVISIONING_DEVICE_ADMIN_PACKAGE_NAME is never emitted.
 * Throws `validation_failed` for a bad DPC, server URL, token or options.
 */
export function buildProvisioningExtras(input: BuildInput): ProvisioningExtras {
  const dpc = validateDpc(input.dpc);
  if (!dpc.ok) {
    throw Errors.validation(`the Android DPC is not configured: ${dpc.problems.join('; ')}`, { errors: dpc.problems.map((message) => ({ path: 'dpc', message })) });
  }
  const server = checkHttpUrl(input.serverUrl);
  if (!server.ok) throw Errors.validation(`serverUrl ${server.problem}`, { errors: [{ path: 'serverUrl', message: server.problem }] });
  const token = input.enrollmentToken.trim();
  if (token === '') throw Errors.validation('enrollmentToken is empty', { errors: [{ path: 'enrollmentToken', message: 'is empty' }] });
  const options = parseProvisioningOptions(input.options);

  const bundle: Record<string, string> = { [MOORING_EXTRA.SERVER_URL]: server.value, [MOORING_EXTRA.ENROLLMENT_TOKEN]: token };
  const extra = input.additionalData;
  if (extra !== undefined) bundle[MOORING_EXTRA.ADDITIONAL_DATA] = typeof extra === 'string' ? extra : JSON.stringify(extra);

  return withoutUndefined([
    [EXTRA.COMPONENT_NAME, dpc.dpc.component],
    [EXTRA.DOWNLOAD_LOCATION, dpc.dpc.downloadUrl],
    [EXTRA.SIGNATURE_CHECKSUM, dpc.dpc.signatureChecksum],
    [EXTRA.PACKAGE_CHECKSUM, dpc.dpc.packageChecksum],
    ...optionEntries(options),
    [EXTRA.ADMIN_EXTRAS_BUNDLE, bundle],
  ]);
}

type Entry = [string, ExtraValue | undefined];

function optionEntries(options: ProvisioningOptions): Entry[] {
  const wifi = options.wifi;
  return [
    // SSID unquoted, as Headwind, Samsung and VMware publish it (research notes 1.4: verify on hardware).
    [EXTRA.WIFI_SSID, wifi?.ssid],
    [EXTRA.WIFI_SECURITY_TYPE, wifi?.security_type],
    [EXTRA.WIFI_PASSWORD, wifi?.password],
    [EXTRA.WIFI_HIDDEN, wifi?.hidden],
    [EXTRA.WIFI_EAP_METHOD, wifi?.eap_method],
    [EXTRA.LOCALE, options.locale],
    [EXTRA.TIME_ZONE, options.time_zone],
    [EXTRA.LEAVE_ALL_SYSTEM_APPS_ENABLED, options.leave_all_system_apps_enabled],
    [EXTRA.USE_MOBILE_DATA, options.use_mobile_data],
    [EXTRA.SKIP_ENCRYPTION, options.skip_encryption],
  ];
}

function withoutUndefined(entries: Entry[]): ProvisioningExtras {
  const out: Record<string, ExtraValue> = {};
  for (const [key, value] of entries) if (value !== undefined) out[key] = value;
  return out;
}

// ---- QR text and capacity ----

/** The text a provisioning QR code carries: compact JSON. */
export function qrPayloadText(extras: ProvisioningExtras): string {
  return JSON.stringify(extras);
}

/** Byte-mode capacity of the largest QR code (version 40) at error-correction level M (ISO/IEC 18004). */
export const QR_CAPACITY_BYTES_M = 2331;

export interface QrCapacityNotice {
  level: 'warning' | 'error';
  bytes: number;
  limit: number;
  message: string;
}

/** Undefined when the payload fits comfortably; a warning above 80% of capacity; an error when it cannot fit. */
export function qrCapacityWarning(text: string): QrCapacityNotice | undefined {
  const bytes = utf8Length(text);
  const limit = QR_CAPACITY_BYTES_M;
  if (bytes > limit) {
    return { level: 'error', bytes, limit, message: `the provisioning payload is ${bytes} bytes; a QR code at error correction M holds at most ${limit}. Shorten it (drop Wi-Fi extras or additional data)` };
  }
  if (bytes > limit * 0.8) {
    return { level: 'warning', bytes, limit, message: `the provisioning payload is ${bytes} bytes, over 80% of the ${limit} a QR code at error correction M holds; dense codes scan badly, keep it short (under ~1 KB is best)` };
  }
  return undefined;
}

// ---- NFC: java.util.Properties ----

/** Escapes one key or value per java.util.Properties.store (ASCII output: everything else as \uXXXX). */
export function escapeProperty(s: string, isKey: boolean): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    const code = s.charCodeAt(i);
    if (c === ' ') out += isKey || i === 0 ? '\\ ' : ' ';
    else if (c === '\\') out += '\\\\';
    else if (c === '\t') out += '\\t';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\f') out += '\\f';
    else if ('=:#!'.includes(c)) out += `\\${c}`;
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    else out += c;
  }
  return out;
}

function propertiesText(entries: Array<[string, string]>): string {
  return entries.map(([k, v]) => `${escapeProperty(k, true)}=${escapeProperty(v, false)}\n`).join('');
}

/**
 * The NFC form (NDEF record of type {@link NFC_MIME_TYPE}): java.util.Properties text, every value a
 * string. The admin extras bundle is itself Properties text in one value, which
 * PropertiesProvisioningDataParser.deserializeExtrasBundle loads into a bundle of strings.
 */
export function nfcProperties(extras: ProvisioningExtras): string {
  const entries = Object.entries(extras).map(([key, value]): [string, string] => {
    if (typeof value === 'object') return [key, propertiesText(Object.entries(value).map(([k, v]) => [k, String(v)]))];
    return [key, String(value)];
  });
  return propertiesText(entries);
}

// ---- validating any payload ----

type Kind = 'string' | 'boolean' | 'int' | 'long' | 'bundle' | 'parcelable' | 'deprecated' | 'not_qr';

const PREFIX = 'android.app.extra.PROVISIONING_';
/** Every extra the AOSP parsers and the DPM reference know, by how its value must be typed. */
const KINDS = new Map<string, Kind>();
const kinds = (kind: Kind, names: string) => names.split(' ').forEach((n) => KINDS.set(PREFIX + n, kind));
kinds('string', 'DEVICE_ADMIN_COMPONENT_NAME DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION DEVICE_ADMIN_PACKAGE_CHECKSUM DEVICE_ADMIN_SIGNATURE_CHECKSUM');
kinds('string', 'DEVICE_ADMIN_PACKAGE_DOWNLOAD_COOKIE_HEADER DEVICE_ADMIN_PACKAGE_LABEL ORGANIZATION_NAME SUPPORT_URL LOCALE TIME_ZONE');
kinds('string', 'WIFI_SSID WIFI_SECURITY_TYPE WIFI_PASSWORD WIFI_EAP_METHOD WIFI_PHASE2_AUTH WIFI_CA_CERTIFICATE WIFI_USER_CERTIFICATE');
kinds('string', 'WIFI_IDENTITY WIFI_ANONYMOUS_IDENTITY WIFI_DOMAIN WIFI_PROXY_HOST WIFI_PROXY_BYPASS WIFI_PAC_URL');
kinds('boolean', 'WIFI_HIDDEN USE_MOBILE_DATA LEAVE_ALL_SYSTEM_APPS_ENABLED SKIP_ENCRYPTION SKIP_EDUCATION_SCREENS SENSORS_PERMISSION_GRANT_OPT_OUT');
kinds('boolean', 'SKIP_USER_SETUP SKIP_USER_CONSENT KEEP_ACCOUNT_ON_MIGRATION KEEP_SCREEN_ON ALLOW_OFFLINE SHOULD_LAUNCH_RESULT_INTENT');
kinds('int', 'DEVICE_ADMIN_MINIMUM_VERSION_CODE WIFI_PROXY_PORT SUPPORTED_MODES MAIN_COLOR');
kinds('long', 'LOCAL_TIME');
kinds('bundle', 'ADMIN_EXTRAS_BUNDLE');
kinds('parcelable', 'DISCLAIMERS ACCOUNT_TO_MIGRATE DEVICE_ADMIN_PACKAGE_ICON_URI LOGO_URI');
kinds('deprecated', 'DEVICE_ADMIN_PACKAGE_NAME');
kinds('not_qr', 'MODE ALLOWED_PROVISIONING_MODES IMEI SERIAL_NUMBER TRIGGER');

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The type rule of one key; returns a problem or undefined. */
function typeProblem(key: string, kind: Kind, v: unknown): string | undefined {
  switch (kind) {
    case 'string':
      return typeof v === 'string' ? undefined : `${key} must be a string`;
    case 'boolean':
      return typeof v === 'boolean' ? undefined : `${key} must be a JSON boolean (true/false), not ${JSON.stringify(v)}: the device reads anything else as the default`;
    case 'int':
      return Number.isInteger(v) && Math.abs(v as number) <= 2 ** 31 - 1 ? undefined : `${key} must be a JSON integer`;
    case 'long':
      return Number.isSafeInteger(v) ? undefined : `${key} must be a JSON integer (milliseconds)`;
    case 'bundle':
      if (!isObject(v)) return `${key} must be a JSON object`;
      return Object.entries(v).some(([, x]) => typeof x !== 'string') ? `${key} values must all be strings (the NFC form carries only strings)` : undefined;
    case 'parcelable':
      return `${key} is a Parcelable extra and cannot be expressed in QR JSON`;
    case 'deprecated':
      return `${key} is deprecated (profile-owner and NFC-resume only); use PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME`;
    case 'not_qr':
      return `${key} is not read from a provisioning payload (it passes between the OS and the DPC)`;
  }
}

/** Rules on the value of specific keys (once its type is right). */
function valueProblem(key: string, v: unknown, payload: Record<string, unknown>): string | undefined {
  const suffix = key.slice(PREFIX.length);
  const s = typeof v === 'string' ? v : '';
  const via = (r: CheckResult) => (r.ok ? undefined : `${key} ${r.problem}`);
  switch (suffix) {
    case 'DEVICE_ADMIN_COMPONENT_NAME':
      return COMPONENT_RE.test(s) ? undefined : `${key} must be \`package/Class\``;
    case 'DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION':
      return via(checkHttpUrl(s));
    case 'DEVICE_ADMIN_PACKAGE_CHECKSUM':
    case 'DEVICE_ADMIN_SIGNATURE_CHECKSUM':
      return /\s/.test(s) ? `${key} contains whitespace` : via(checkChecksum(s));
    case 'WIFI_SECURITY_TYPE':
      return (WIFI_SECURITY_TYPES as readonly string[]).includes(s) ? undefined : `${key} ${JSON.stringify(s)} must be exactly NONE, WPA, WEP or EAP (case-sensitive): Android treats anything else as an open network`;
    case 'WIFI_EAP_METHOD':
      if (!(WIFI_EAP_METHODS as readonly string[]).includes(s)) return `${key} must be one of ${WIFI_EAP_METHODS.join(', ')}`;
      return payload[EXTRA.WIFI_SECURITY_TYPE] === 'EAP' ? undefined : `${key} is only used when PROVISIONING_WIFI_SECURITY_TYPE is EAP`;
    case 'LOCALE':
      return LOCALE_RE.test(s) ? undefined : `${key} ${JSON.stringify(s)} must be language_COUNTRY with an underscore, e.g. en_US`;
    case 'TIME_ZONE': {
      const p = timeZoneProblem(s);
      return p ? `${key} ${p}` : undefined;
    }
    case 'WIFI_PROXY_PORT':
      return (v as number) >= 1 && (v as number) <= 65535 ? undefined : `${key} must be 1 to 65535`;
    case 'SUPPORTED_MODES':
      return [1, 2, 3, 4].includes(v as number) ? undefined : `${key} must be 1, 2, 3 or 4`;
    default:
      return undefined;
  }
}

/**
 * Checks a provisioning payload against the platform parser's rules (types, checksum length, Wi-Fi
 * security type, locale and component format, boolean types, unknown keys). Empty means no problems.
 */
export function validateExtras(json: unknown): string[] {
  if (!isObject(json)) return ['the payload must be a JSON object'];
  const problems: string[] = [];
  for (const [key, value] of Object.entries(json)) {
    const kind = KINDS.get(key);
    if (kind === undefined && key.startsWith(`${PREFIX}ROLE_HOLDER_`)) continue; // Android 14 role-holder extras: not typed here
    if (kind === undefined) {
      problems.push(key.startsWith('android.app.extra.') ? `${key} is not a known provisioning extra` : `${key} is not an android.app.extra.* key; the provisioning parser ignores it`);
      continue;
    }
    const problem = typeProblem(key, kind, value) ?? valueProblem(key, value, json);
    if (problem) problems.push(problem);
  }
  problems.push(...requiredProblems(json));
  return problems;
}

function requiredProblems(json: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (!(EXTRA.COMPONENT_NAME in json)) problems.push(`${EXTRA.COMPONENT_NAME} is required`);
  if (!(EXTRA.DOWNLOAD_LOCATION in json)) problems.push(`${EXTRA.DOWNLOAD_LOCATION} is required (the device downloads the DPC from it)`);
  else if (!(EXTRA.SIGNATURE_CHECKSUM in json) && !(EXTRA.PACKAGE_CHECKSUM in json)) {
    problems.push(`one of ${EXTRA.SIGNATURE_CHECKSUM} or ${EXTRA.PACKAGE_CHECKSUM} is required with a download location`);
  }
  const wifiKeys = Object.keys(json).filter((k) => k.startsWith(`${PREFIX}WIFI_`) && k !== EXTRA.WIFI_SSID);
  if (wifiKeys.length > 0 && !(EXTRA.WIFI_SSID in json)) problems.push(`${wifiKeys.join(', ')} ignored without ${EXTRA.WIFI_SSID}`);
  return problems;
}
