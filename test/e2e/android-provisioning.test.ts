/**
 * Provisioning payloads from the admin API, read the way a phone's setup wizard reads them: the QR
 * PNG is decoded back to JSON, and the token inside it enrolls a simulated DPC.
 */
import { PNG } from 'pngjs';
import jsQR from 'jsqr';
import { AndroidCommands } from '../../protocols/android/commands';
import { validateExtras } from '../../protocols/android/provisioning';
import { PlatformRegistry } from '../../src/core/platforms';
import { SimulatedDpc, listenOnLoopback } from '../helpers/dpc-simulator';
import { startTestServer, type TestServer } from '../helpers/server';

const DPC_ENV = {
  MOORING_ANDROID_DPC_COMPONENT: 'com.afwsamples.testdpc/com.afwsamples.testdpc.DeviceAdminReceiver',
  MOORING_ANDROID_DPC_DOWNLOAD_URL: 'https://dpc.example.com/testdpc.apk',
  MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM: 'gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w=',
  MOORING_PUBLIC_URL: 'https://mdm.example.com',
};
const BUNDLE = 'android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE';

let s: TestServer;
let net: { url: string; close(): Promise<void> };
beforeAll(async () => {
  s = await startTestServer({ env: DPC_ENV, platforms: new PlatformRegistry().register(new AndroidCommands()) });
  net = await listenOnLoopback(s.m.app);
});
afterAll(async () => {
  await net.close();
  await s.stop();
});

const newToken = (extra: Record<string, unknown> = {}) =>
  s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed', ...extra }).expect(201);

function decodeQr(png: Buffer): string {
  const image = PNG.sync.read(png);
  const code = jsQR(new Uint8ClampedArray(image.data), image.width, image.height);
  if (!code) throw new Error('no QR code found in the PNG');
  return code.data;
}

it('answers the provisioning extras a setup wizard accepts, carrying the token and server', async () => {
  const t = await newToken({ additional_data: 'site=berlin' });
  const res = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning`).expect(200);
  expect(validateExtras(res.body)).toEqual([]);
  expect(res.body).toMatchObject({
    'android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME': DPC_ENV.MOORING_ANDROID_DPC_COMPONENT,
    'android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION': DPC_ENV.MOORING_ANDROID_DPC_DOWNLOAD_URL,
    'android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM': 'gJD2YwtOiWJHkSMkkIfLRlj-quNqG1fb6v100QmzM9w',
  });
  expect(res.body[BUNDLE]).toEqual({
    'com.mooring.SERVER_URL': 'https://mdm.example.com',
    'com.mooring.ENROLLMENT_TOKEN': t.body.token,
    'com.mooring.ADDITIONAL_DATA': 'site=berlin',
  });
});

it('draws a QR code that decodes to the same payload, whose token enrolls a DPC', async () => {
  const t = await newToken();
  const json = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning`).query({ locale: 'de_DE', time_zone: 'Europe/Berlin' }).expect(200);
  const png = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning.png`).query({ locale: 'de_DE', time_zone: 'Europe/Berlin' }).buffer(true).expect(200);
  expect(png.headers['content-type']).toBe('image/png');
  const scanned = JSON.parse(decodeQr(png.body as Buffer));
  expect(scanned).toEqual(json.body);
  expect(scanned['android.app.extra.PROVISIONING_LOCALE']).toBe('de_DE');

  const dpc = new SimulatedDpc(net.url, 'fully_managed', { serial_number: 'QR-1', model: 'Pixel 8', manufacturer: 'Google', api_level: 34, os_version: '14' });
  const enrolled = await dpc.enroll(scanned[BUNDLE]['com.mooring.ENROLLMENT_TOKEN']);
  expect(enrolled.status).toBe(201);
});

it('serves SVG and the NFC properties form, and Wi-Fi settings typed as the parser reads them', async () => {
  const t = await newToken();
  const svg = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning.svg`).expect(200);
  expect(svg.headers['content-type']).toMatch(/^image\/svg\+xml/);
  expect(String(svg.body ?? svg.text)).toContain('<svg');
  const nfc = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning.properties`).expect(200);
  expect(nfc.text).toMatch(/^android\.app\.extra\.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME=/m);
  const wifi = await s.api
    .get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning`)
    .query({ wifi_ssid: 'Corp', wifi_security_type: 'WPA', wifi_password: 'correct horse', wifi_hidden: 'true', use_mobile_data: 'false' })
    .expect(200);
  expect(wifi.body).toMatchObject({
    'android.app.extra.PROVISIONING_WIFI_SSID': 'Corp',
    'android.app.extra.PROVISIONING_WIFI_SECURITY_TYPE': 'WPA',
    'android.app.extra.PROVISIONING_WIFI_HIDDEN': true,
    'android.app.extra.PROVISIONING_USE_MOBILE_DATA': false,
  });
});

it('refuses bad options, other platforms and dead tokens with stable codes', async () => {
  const t = await newToken();
  const wpa2 = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning`).query({ wifi_ssid: 'Corp', wifi_security_type: 'WPA2', wifi_password: 'x'.repeat(10) });
  expect(wpa2.status).toBe(400);
  expect(wpa2.body.code).toBe('validation_failed');
  const badLocale = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning`).query({ locale: 'en-US' });
  expect(badLocale.body.code).toBe('validation_failed');
  const apple = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple' }).expect(201);
  expect((await s.api.get(`/api/v1/enrollment-tokens/${apple.body.id}/provisioning`)).status).toBe(400);
  await s.api.delete(`/api/v1/enrollment-tokens/${t.body.id}`).expect(200);
  const revoked = await s.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning.png`);
  expect(revoked.status).toBe(403);
  expect(revoked.body.code).toBe('token_revoked');
});

it('keeps the token sealed at rest', async () => {
  const t = await newToken();
  const row = await s.m.db('enrollment_tokens').where({ id: t.body.id }).first();
  expect(row.token_sealed).toMatch(/^v1\./);
  expect(JSON.stringify(row)).not.toContain(t.body.token);
});

describe('without a DPC configured', () => {
  it('answers 503 not_ready naming the settings to make', async () => {
    const bare = await startTestServer({ platforms: new PlatformRegistry().register(new AndroidCommands()) });
    try {
      const t = await bare.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed' }).expect(201);
      const res = await bare.api.get(`/api/v1/enrollment-tokens/${t.body.id}/provisioning`);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ code: 'not_ready', detail: expect.stringContaining('MOORING_ANDROID_DPC_COMPONENT') });
    } finally {
      await bare.stop();
    }
  });

  it('refuses to start with a half or wrong DPC configuration', async () => {
    await expect(
      startTestServer({ env: { MOORING_ANDROID_DPC_COMPONENT: 'com.example/com.example.Admin', MOORING_ANDROID_DPC_SIGNATURE_CHECKSUM: '0F935A953B2D6708B3B15DD70DF778DF550012A56978E17EBB91DF3B1C66349F' } }),
    ).rejects.toThrow(/hex digest|DOWNLOAD_URL/);
  });
});
