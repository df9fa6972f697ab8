import fs from 'node:fs';
import path from 'node:path';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { MooringError } from '../../src/core/errors';
import {
  EXTRA,
  MOORING_EXTRA,
  ProvisioningOptionsSchema,
  QR_CAPACITY_BYTES_M,
  buildProvisioningExtras,
  escapeProperty,
  nfcProperties,
  parseProvisioningOptions,
  qrCapacityWarning,
  qrPayloadText,
  validateDpc,
  validateExtras,
  type DpcConfig,
  type ProvisioningExtras,
} from '../../protocols/android/provisioning';
import { qrPng, qrSvg } from '../../protocols/android/qr';

const FIXTURES = path.join(__dirname, '../../fixtures/android');
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

// Vectors from the research notes (android-provisioning.md section 6).
const TESTDPC_SIG = 'gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w='; // AOSP README, padded
const AMAPI_SIG = 'I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg'; // AMAPI, unpadded
const BAD_35 = 'MS4_Pz8gP0VDPy0_P2I_Pz4NClE_Pz80Pz8rPz9zfD8_DQo'; // android-testdpc#170
const BAD_HEX = '0F935A953B2D6708B3B15DD70DF778DF550012A56978E17EBB91DF3B1C66349F'; // android-testdpc#99

const DPC: DpcConfig = {
  component: 'com.mooring.dpc/com.mooring.dpc.AdminReceiver',
  downloadUrl: 'https://mdm.example.com/dpc/mooring-dpc.apk',
  signatureChecksum: AMAPI_SIG,
};
const build = (over: Partial<Parameters<typeof buildProvisioningExtras>[0]> = {}) =>
  buildProvisioningExtras({ dpc: DPC, serverUrl: 'https://mdm.example.com', enrollmentToken: 'ABCDE-FGHJK-MNPQR-STVWX-YZ012', ...over });

/** java.util.Properties.load, written from its javadoc (independent of the encoder under test). */
function loadProperties(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const natural = text.split(/\r\n|\r|\n/);
  const ws = (c: string | undefined) => c === ' ' || c === '\t' || c === '\f';
  const oddBackslashes = (l: string) => (/\\*$/.exec(l)![0].length % 2) === 1;
  for (let i = 0; i < natural.length; i++) {
    let line = natural[i]!.replace(/^[ \t\f]+/, '');
    if (line === '' || line[0] === '#' || line[0] === '!') continue;
    while (oddBackslashes(line) && i + 1 < natural.length) line = line.slice(0, -1) + natural[++i]!.replace(/^[ \t\f]+/, '');
    let k = 0;
    while (k < line.length && !(line[k] === '=' || line[k] === ':' || ws(line[k]))) k += line[k] === '\\' ? 2 : 1;
    let v = k;
    while (ws(line[v])) v++;
    if (line[v] === '=' || line[v] === ':') v++;
    while (ws(line[v])) v++;
    out.set(unescapeProperty(line.slice(0, k)), unescapeProperty(line.slice(v)));
  }
  return out;
}

function unescapeProperty(s: string): string {
  const controls: Record<string, string> = { t: '\t', n: '\n', r: '\r', f: '\f' };
  return s.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, e: string) => (e[0] === 'u' ? String.fromCharCode(parseInt(e.slice(1), 16)) : (controls[e] ?? e)));
}

describe('validateDpc', () => {
  it.each([
    ['AOSP TestDPC (padded)', { ...DPC, signatureChecksum: TESTDPC_SIG }, { signatureChecksum: TESTDPC_SIG.replace(/=+$/, '') }],
    ['AMAPI (unpadded)', DPC, { signatureChecksum: AMAPI_SIG }],
    ['package checksum only', { component: DPC.component, downloadUrl: DPC.downloadUrl, packageChecksum: AMAPI_SIG }, { packageChecksum: AMAPI_SIG }],
    [
      'short component, expanded',
      { ...DPC, component: 'com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver' },
      { component: 'com.google.android.apps.work.clouddpc/com.google.android.apps.work.clouddpc.receivers.CloudDeviceAdminReceiver' },
    ],
    ['http URL, surrounding whitespace', { ...DPC, downloadUrl: ' http://10.0.0.2:8080/dpc.apk ', signatureChecksum: `${AMAPI_SIG}\n` }, { downloadUrl: 'http://10.0.0.2:8080/dpc.apk' }],
  ])('accepts %s', (_name, have, want) => {
    const got = validateDpc(have);
    expect(got).toEqual({ ok: true, dpc: expect.objectContaining(want) });
    if (got.ok) for (const v of Object.values(got.dpc)) expect(v).not.toMatch(/[=\s]/);
  });

  it.each([
    ['a hex digest', { ...DPC, signatureChecksum: BAD_HEX }, /^MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM looks like a hex digest; give the URL-safe base64 of the 32-byte SHA-256 \(e\.g\. `openssl dgst -binary -sha256 file \| openssl base64 \| tr '\+\/' '-_' \| tr -d '='`\)$/],
    ['a 35-byte digest', { ...DPC, signatureChecksum: BAD_35 }, /^MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM decodes to 35 bytes, not the 32 of a SHA-256 digest/],
    ['a SHA-1 digest', { ...DPC, packageChecksum: Buffer.alloc(20, 7).toString('base64url') }, /^MOORING_ANDROID_DPC_PACKAGE_CHECKSUM decodes to 20 bytes.*SHA-1/],
    ['standard base64', { ...DPC, signatureChecksum: Buffer.alloc(32, 0xfb).toString('base64') }, /^MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM uses the standard base64 alphabet/],
    ['bad padding', { ...DPC, signatureChecksum: `${AMAPI_SIG}==` }, /^MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM is not URL-safe base64$/],
    ['a component without a class', { ...DPC, component: 'com.mooring.dpc' }, /^MOORING_ANDROID_DPC_COMPONENT must be `package\/Class`/],
    ['a relative URL', { ...DPC, downloadUrl: '/dpc.apk' }, /^MOORING_ANDROID_DPC_DOWNLOAD_URL must be an absolute http\(s\) URL$/],
    ['an ftp URL', { ...DPC, downloadUrl: 'ftp://example.com/dpc.apk' }, /^MOORING_ANDROID_DPC_DOWNLOAD_URL must be an absolute http\(s\) URL$/],
  ])('refuses %s with a specific message', (_name, have, want) => {
    const got = validateDpc(have);
    expect(got.ok).toBe(false);
    if (!got.ok) expect(got.problems).toEqual([expect.stringMatching(want)]);
  });

  it('names every missing environment variable (empty strings count as missing)', () => {
    const got = validateDpc({ component: '', downloadUrl: '  ' });
    expect(got.ok).toBe(false);
    if (got.ok) return;
    expect(got.problems).toHaveLength(3);
    expect(got.problems[0]).toMatch(/^MOORING_ANDROID_DPC_COMPONENT is not set/);
    expect(got.problems[1]).toMatch(/^MOORING_ANDROID_DPC_DOWNLOAD_URL is not set/);
    expect(got.problems[2]).toMatch(/MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM nor MOORING_ANDROID_DPC_PACKAGE_CHECKSUM/);
  });
});

describe('ProvisioningOptionsSchema', () => {
  const issues = (input: unknown) => {
    const r = ProvisioningOptionsSchema.safeParse(input);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it.each([
    [{}],
    [{ wifi: { ssid: 'Office', security_type: 'WPA', password: 'hunter22', hidden: true } }],
    [{ wifi: { ssid: 'Guest', security_type: 'NONE' } }],
    [{ wifi: { ssid: 'Lab', security_type: 'WPA', password: 'a'.repeat(64) } }],
    [{ wifi: { ssid: 'Old', security_type: 'WEP', password: 'abcde' } }],
    [{ wifi: { ssid: 'Corp', security_type: 'EAP', eap_method: 'PEAP' } }],
    [{ locale: 'en_US' }],
    [{ locale: 'fil_PH' }],
    [{ time_zone: 'Europe/Paris' }],
    [{ time_zone: 'UTC' }],
    [{ time_zone: 'America/Argentina/Buenos_Aires' }],
    [{ leave_all_system_apps_enabled: true, use_mobile_data: false, skip_encryption: true }],
  ])('accepts %j', (input) => {
    expect(issues(input)).toEqual([]);
  });

  it.each([
    ['WPA2 (exact match only)', { wifi: { ssid: 'Office', security_type: 'WPA2', password: 'x' } }, /^wifi\.security_type: must be exactly NONE, WPA, WEP or EAP \(case-sensitive/],
    ['wpa (case)', { wifi: { ssid: 'Office', security_type: 'wpa', password: 'x' } }, /^wifi\.security_type: must be exactly/],
    ['an EAP method without EAP', { wifi: { ssid: 'Office', security_type: 'WPA', password: 'hunter22', eap_method: 'PEAP' } }, /^wifi\.eap_method: is only used when security_type is EAP$/],
    ['EAP without a method', { wifi: { ssid: 'Corp', security_type: 'EAP' } }, /^wifi\.eap_method: is required/],
    ['WPA without a password', { wifi: { ssid: 'Office', security_type: 'WPA' } }, /^wifi\.password: is required/],
    ['a 7-character WPA passphrase', { wifi: { ssid: 'Office', security_type: 'WPA', password: 'hunter2' } }, /^wifi\.password: a WPA passphrase is 8 to 63/],
    ['a password on an open network', { wifi: { ssid: 'Guest', security_type: 'NONE', password: 'hunter22' } }, /^wifi\.password: an open network/],
    ['a 33-byte SSID', { wifi: { ssid: 'x'.repeat(33), security_type: 'NONE' } }, /^wifi\.ssid: an SSID is at most 32 bytes$/],
    ['locale en-US', { locale: 'en-US' }, /^locale: must be language_COUNTRY/],
    ['locale english', { locale: 'english' }, /^locale: must be language_COUNTRY/],
    ['locale en_us', { locale: 'en_us' }, /^locale: must be language_COUNTRY/],
    ['an unknown time zone', { time_zone: 'Mars/Olympus_Mons' }, /^time_zone: "Mars\/Olympus_Mons" is not an IANA time-zone id/],
    ['an offset', { time_zone: '+01:00' }, /^time_zone: "\+01:00" is not an IANA time-zone id/],
    ['a wrongly cased zone', { time_zone: 'europe/paris' }, /^time_zone: time-zone ids are case-sensitive: write Europe\/Paris$/],
    ['a boolean as a string', { use_mobile_data: 'true' }, /^use_mobile_data: /],
    ['an unknown option', { skip_everything: true }, /skip_everything/],
  ])('refuses %s', (_name, input, want) => {
    expect(issues(input)).toEqual([expect.stringMatching(want)]);
  });

  it('turns refusals into validation_failed with one error per issue', () => {
    let err: unknown;
    try {
      parseProvisioningOptions({ locale: 'en-US', wifi: { ssid: 'Office', security_type: 'WPA2', password: 'x' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MooringError);
    expect(err).toMatchObject({ code: 'validation_failed', status: 400, extra: { errors: [{ path: 'options.wifi.security_type' }, { path: 'options.locale' }] } });
  });
});

describe('buildProvisioningExtras', () => {
  const full = () =>
    build({
      dpc: { ...DPC, signatureChecksum: TESTDPC_SIG, packageChecksum: AMAPI_SIG },
      options: {
        wifi: { ssid: 'Office', security_type: 'WPA', password: 'hunter22', hidden: false },
        locale: 'en_US',
        time_zone: 'Europe/Paris',
        leave_all_system_apps_enabled: true,
        use_mobile_data: false,
        skip_encryption: false,
      },
      additionalData: { site: 'paris-1', floor: 3 },
    });

  it('emits the golden payload, keys in a stable order', () => {
    expect(qrPayloadText(full())).toBe(JSON.stringify(JSON.parse(fixture('provisioning.mooring.1.json'))));
  });

  it('passes its own validator', () => {
    expect(validateExtras(build())).toEqual([]);
    expect(validateExtras(full())).toEqual([]);
    expect(validateExtras(JSON.parse(qrPayloadText(full())))).toEqual([]);
  });

  it('keeps booleans boolean and bundle values strings, and never emits PACKAGE_NAME', () => {
    const extras = full();
    for (const key of [EXTRA.WIFI_HIDDEN, EXTRA.LEAVE_ALL_SYSTEM_APPS_ENABLED, EXTRA.USE_MOBILE_DATA, EXTRA.SKIP_ENCRYPTION]) {
      expect(typeof extras[key]).toBe('boolean');
    }
    expect(extras[EXTRA.ADMIN_EXTRAS_BUNDLE]).toEqual({
      [MOORING_EXTRA.SERVER_URL]: 'https://mdm.example.com',
      [MOORING_EXTRA.ENROLLMENT_TOKEN]: 'ABCDE-FGHJK-MNPQR-STVWX-YZ012',
      [MOORING_EXTRA.ADDITIONAL_DATA]: '{"site":"paris-1","floor":3}',
    });
    expect(Object.keys(extras).some((k) => k.endsWith('PACKAGE_NAME'))).toBe(false);
  });

  it('emits only what was asked for, with checksums canonical', () => {
    expect(build({ dpc: { ...DPC, signatureChecksum: TESTDPC_SIG, component: 'com.mooring.dpc/.AdminReceiver' } })).toEqual({
      [EXTRA.COMPONENT_NAME]: 'com.mooring.dpc/com.mooring.dpc.AdminReceiver',
      [EXTRA.DOWNLOAD_LOCATION]: DPC.downloadUrl,
      [EXTRA.SIGNATURE_CHECKSUM]: 'gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w',
      [EXTRA.ADMIN_EXTRAS_BUNDLE]: { [MOORING_EXTRA.SERVER_URL]: 'https://mdm.example.com', [MOORING_EXTRA.ENROLLMENT_TOKEN]: 'ABCDE-FGHJK-MNPQR-STVWX-YZ012' },
    });
  });

  it.each([
    ['a bad DPC', { dpc: { ...DPC, signatureChecksum: BAD_HEX } }, /MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM looks like a hex digest/],
    ['a relative server URL', { serverUrl: 'mdm.example.com' }, /serverUrl must be an absolute/],
    ['an empty token', { enrollmentToken: ' ' }, /enrollmentToken is empty/],
    ['bad options', { options: { wifi: { ssid: 'x', security_type: 'WPA2' } } as never }, /wifi\.security_type/],
  ])('refuses %s with validation_failed', (_name, over, want) => {
    expect(() => build(over)).toThrow(expect.objectContaining({ code: 'validation_failed', detail: expect.stringMatching(want) }));
  });
});

describe('validateExtras', () => {
  it.each([
    ['provisioning.aosp-testdpc.1.json', []],
    ['provisioning.amapi.1.json', []],
    ['provisioning.mooring.1.json', []],
    ['provisioning.bad-hex-checksum.1.json', [/PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM looks like a hex digest/]],
    ['provisioning.bad-35-byte-checksum.1.json', [/PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM decodes to 35 bytes/]],
  ])('%s', (name, want) => {
    expect(validateExtras(JSON.parse(fixture(name)))).toEqual(want.map((re) => expect.stringMatching(re)));
  });

  const base = JSON.parse(fixture('provisioning.aosp-testdpc.1.json')) as Record<string, unknown>;
  const p = (suffix: string) => `android.app.extra.PROVISIONING_${suffix}`;
  it.each([
    ['a string boolean', { [p('SKIP_ENCRYPTION')]: 'true' }, /SKIP_ENCRYPTION must be a JSON boolean/],
    ['WPA2', { [p('WIFI_SSID')]: 'Office', [p('WIFI_SECURITY_TYPE')]: 'WPA2' }, /WIFI_SECURITY_TYPE "WPA2" must be exactly NONE, WPA, WEP or EAP/],
    ['an EAP method without EAP', { [p('WIFI_SSID')]: 'Office', [p('WIFI_SECURITY_TYPE')]: 'WPA', [p('WIFI_EAP_METHOD')]: 'TLS' }, /WIFI_EAP_METHOD is only used/],
    ['Wi-Fi keys without an SSID', { [p('WIFI_PASSWORD')]: 'x' }, /WIFI_PASSWORD ignored without/],
    ['locale en-US', { [p('LOCALE')]: 'en-US' }, /LOCALE "en-US" must be language_COUNTRY/],
    ['an unknown time zone', { [p('TIME_ZONE')]: 'Europe/Atlantis' }, /TIME_ZONE "Europe\/Atlantis" is not an IANA/],
    ['a bad component', { [p('DEVICE_ADMIN_COMPONENT_NAME')]: 'com.afwsamples.testdpc' }, /COMPONENT_NAME must be `package\/Class`/],
    ['a component object', { [p('DEVICE_ADMIN_COMPONENT_NAME')]: { pkg: 'x' } }, /COMPONENT_NAME must be a string/],
    ['a checksum with a newline', { [p('DEVICE_ADMIN_SIGNATURE_CHECKSUM')]: `${TESTDPC_SIG}\n` }, /SIGNATURE_CHECKSUM contains whitespace/],
    ['the deprecated package name', { [p('DEVICE_ADMIN_PACKAGE_NAME')]: 'com.afwsamples.testdpc' }, /PACKAGE_NAME is deprecated/],
    ['an unknown extra', { [p('MAKE_IT_SO')]: true }, /PROVISIONING_MAKE_IT_SO is not a known provisioning extra/],
    ['a non-android key', { 'com.example.FOO': 'x' }, /com\.example\.FOO is not an android\.app\.extra\.\* key/],
    ['PROVISIONING_MODE', { [p('MODE')]: 1 }, /PROVISIONING_MODE is not read from a provisioning payload/],
    ['a non-string bundle value', { [p('ADMIN_EXTRAS_BUNDLE')]: { n: 1 } }, /ADMIN_EXTRAS_BUNDLE values must all be strings/],
    ['a string port', { [p('WIFI_SSID')]: 'x', [p('WIFI_PROXY_PORT')]: '8080' }, /WIFI_PROXY_PORT must be a JSON integer/],
    ['port 0', { [p('WIFI_SSID')]: 'x', [p('WIFI_PROXY_PORT')]: 0 }, /WIFI_PROXY_PORT must be 1 to 65535/],
    ['supported modes 5', { [p('SUPPORTED_MODES')]: 5 }, /SUPPORTED_MODES must be 1, 2, 3 or 4/],
    ['a fractional local time', { [p('LOCAL_TIME')]: 1.5 }, /LOCAL_TIME must be a JSON integer/],
  ])('reports %s', (_name, add, want) => {
    expect(validateExtras({ ...base, ...add })).toEqual([expect.stringMatching(want)]);
  });

  it('reports missing required keys and non-objects', () => {
    expect(validateExtras([])).toEqual(['the payload must be a JSON object']);
    expect(validateExtras({})).toEqual([expect.stringMatching(/COMPONENT_NAME is required/), expect.stringMatching(/DOWNLOAD_LOCATION is required/)]);
    const { [p('DEVICE_ADMIN_SIGNATURE_CHECKSUM')]: _, ...noChecksum } = base;
    expect(validateExtras(noChecksum)).toEqual([expect.stringMatching(/one of .*SIGNATURE_CHECKSUM or .*PACKAGE_CHECKSUM is required/)]);
  });

  it('leaves typed extras of the AOSP parser tests alone', () => {
    const add = { [p('LOCAL_TIME')]: 1456939524713, [p('LOCALE')]: 'en_GB', [p('TIME_ZONE')]: 'GMT', [p('DEVICE_ADMIN_MINIMUM_VERSION_CODE')]: 17689 };
    expect(validateExtras({ ...base, ...add, [p('WIFI_SSID')]: 'x', [p('WIFI_PROXY_PORT')]: 7689, [p('SUPPORTED_MODES')]: 3 })).toEqual([]);
  });
});

describe('QR codes', () => {
  const decode = (png: Buffer) => {
    const img = PNG.sync.read(png);
    return jsQR(new Uint8ClampedArray(img.data.buffer, img.data.byteOffset, img.data.length), img.width, img.height, { inversionAttempts: 'dontInvert' })?.data;
  };

  it.each([
    ['minimal', qrPayloadText(build())],
    ['with Wi-Fi and locale', qrPayloadText(build({ options: { wifi: { ssid: 'Office', security_type: 'WPA', password: 'hunter22' }, locale: 'en_US' } }))],
    ['AOSP TestDPC', JSON.stringify(JSON.parse(fixture('provisioning.aosp-testdpc.1.json')))],
    ['near capacity', qrPayloadText(build({ additionalData: 'x'.repeat(1400) }))],
  ])('PNG (%s) decodes back to the same JSON text', async (_name, text) => {
    const png = await qrPng(text);
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    const { width, height } = PNG.sync.read(png);
    expect(width).toBe(height);
    expect(Math.abs(width - 512)).toBeLessThan(80);
    expect(decode(png)).toBe(text);
  });

  it('SVG is an svg document', async () => {
    const svg = await qrSvg(qrPayloadText(build()));
    expect(svg).toContain('<svg');
    expect(svg).toContain('viewBox');
  });

  it('warns near the capacity limit and refuses past it', async () => {
    const limit = QR_CAPACITY_BYTES_M;
    expect(limit).toBe(2331);
    expect(qrCapacityWarning(qrPayloadText(build()))).toBeUndefined();
    expect(qrCapacityWarning('x'.repeat(Math.floor(limit * 0.8)))).toBeUndefined();
    expect(qrCapacityWarning('x'.repeat(Math.floor(limit * 0.8) + 1))).toMatchObject({ level: 'warning', bytes: 1865, limit });
    expect(qrCapacityWarning('x'.repeat(limit))).toMatchObject({ level: 'warning' });
    expect(qrCapacityWarning('é'.repeat(1166))).toMatchObject({ level: 'error', bytes: 2332, message: expect.stringMatching(/2332 bytes.*at most 2331/) });
    await expect(qrPng('x'.repeat(limit + 1))).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(qrSvg('x'.repeat(limit + 1))).rejects.toMatchObject({ code: 'validation_failed' });
  });
});

describe('nfcProperties', () => {
  const extras: ProvisioningExtras = {
    [EXTRA.COMPONENT_NAME]: 'com.mooring.dpc/com.mooring.dpc.AdminReceiver',
    [EXTRA.WIFI_SSID]: ' Café #1: a=b!',
    [EXTRA.WIFI_HIDDEN]: true,
    [EXTRA.SKIP_ENCRYPTION]: false,
    [EXTRA.ADMIN_EXTRAS_BUNDLE]: { 'com.mooring.SERVER_URL': 'https://mdm.example.com:8443/a b', 'com.mooring.ADDITIONAL_DATA': '{"k":"v\\n😀"}\nline2' },
  };

  it('matches the golden form', () => {
    expect(nfcProperties(build({ dpc: { ...DPC, signatureChecksum: TESTDPC_SIG }, options: { wifi: { ssid: 'Office', security_type: 'WPA', password: 'hunter22', hidden: false }, locale: 'en_US' } }))).toBe(
      fixture('provisioning.mooring.1.properties'),
    );
  });

  it('round-trips the key set, with every value a string and the bundle as nested Properties', () => {
    const text = nfcProperties(extras);
    expect(text).toMatch(/^[\x20-\x7e\n]*$/);
    const props = loadProperties(text);
    expect([...props.keys()]).toEqual(Object.keys(extras));
    expect(props.get(EXTRA.WIFI_SSID)).toBe(' Café #1: a=b!');
    expect(props.get(EXTRA.WIFI_HIDDEN)).toBe('true');
    expect(props.get(EXTRA.SKIP_ENCRYPTION)).toBe('false');
    expect(Object.fromEntries(loadProperties(props.get(EXTRA.ADMIN_EXTRAS_BUNDLE)!))).toEqual(extras[EXTRA.ADMIN_EXTRAS_BUNDLE]);
  });

  it.each([
    ['a b=c', true, 'a\\ b\\=c'],
    [' lead and inner space', false, '\\ lead and inner space'],
    ['#!:=\\', false, '\\#\\!\\:\\=\\\\'],
    ['tab\there\r\n\f', false, 'tab\\there\\r\\n\\f'],
    ['é€😀', false, '\\u00E9\\u20AC\\uD83D\\uDE00'],
    ['\u0001~\u007f', false, '\\u0001~\\u007F'],
  ])('escapes %j (key: %s) per java.util.Properties', (have, isKey, want) => {
    expect(escapeProperty(have, isKey)).toBe(want);
    expect(unescapeProperty(want)).toBe(have);
  });
});
