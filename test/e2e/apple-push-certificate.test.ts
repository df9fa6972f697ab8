/**
 * The Apple push certificate through the admin API of a real Mooring runtime: upload as PEM and as
 * PKCS#12, the refusal to switch topics without force, expiry, the CSR, roles and bad input; then a
 * command to an Apple enrollment wakes it through the loopback APNs with the uploaded certificate,
 * and an Unregistered answer marks its token dead.
 */
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { PlatformRegistry } from '../../src/core/platforms';
import type { RunningWorker } from '../../src/worker';
import { ApnsMock, createApnsTestPki, toPkcs12, type ApnsTestPki, type TestPushCertificate } from '../helpers/apns-mock';
import { eventually } from '../helpers/recording-provider';
import { startTestServer, type TestServer } from '../helpers/server';
import { TestPlatformCommands } from '../helpers/test-platform';

const URL_PATH = '/api/v1/apple/push-certificate';
const DAY = 86_400_000;

let s: TestServer;
let pki: ApnsTestPki;
let mock: ApnsMock;
let caDir: string;
let cert: TestPushCertificate;

beforeAll(async () => {
  pki = await createApnsTestPki();
  mock = await ApnsMock.start({ pki });
  caDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-apns-ca-'));
  fs.writeFileSync(path.join(caDir, 'ca.pem'), pki.caPem);
  s = await startTestServer({
    env: { MOORING_APNS_URL: mock.url, MOORING_APNS_CA_FILE: path.join(caDir, 'ca.pem') },
    platforms: new PlatformRegistry().register(new TestPlatformCommands('apple')),
    retryDelayMs: 50,
  });
  cert = await pki.pushCertificate({ notAfter: new Date(Date.now() + 365 * DAY) });
});

afterAll(async () => {
  await s?.stop();
  await mock?.close();
  fs.rmSync(caDir, { recursive: true, force: true });
});

describe('push certificate admin API', () => {
  it('GET answers 404 before any upload', async () => {
    const res = await s.api.get(URL_PATH).expect(404);
    expect(res.type).toBe('application/problem+json');
    expect(res.body).toMatchObject({ code: 'not_found', detail: expect.stringMatching(/no Apple push certificate/) });
  });

  it('takes a PEM pair and answers the topic from the certificate UID', async () => {
    const res = await s.api.put(URL_PATH).send({ certificate: cert.certPem, private_key: cert.keyPem }).expect(200);
    expect(res.body).toEqual({ topic: cert.topic, not_after: cert.notAfter.toISOString(), expires_in_days: 364, previous_topic: null });
  });

  it('GET shows the topic and the expiry', async () => {
    const res = await s.api.get(URL_PATH).expect(200);
    expect(res.body).toEqual({ topic: cert.topic, not_after: cert.notAfter.toISOString(), expires_in_days: 364 });
  });

  it('takes a renewal (same topic) as PKCS#12 with a password', async () => {
    const renewed = await pki.pushCertificate({ topic: cert.topic, notAfter: new Date(Date.now() + 20 * DAY) });
    const res = await s.api.put(URL_PATH).send({ pkcs12: toPkcs12(renewed, 'p12 pass', { chain: [pki.caPem] }), password: 'p12 pass' }).expect(200);
    expect(res.body).toMatchObject({ topic: cert.topic, previous_topic: cert.topic, expires_in_days: 19 });
    expect((await s.api.get(URL_PATH).expect(200)).body.expires_in_days).toBe(19);
    cert = renewed;
  });

  it('refuses a certificate of another topic without force: 409 push_topic_mismatch, nothing changes', async () => {
    const other = await pki.pushCertificate();
    const res = await s.api.put(URL_PATH).send({ certificate: other.certPem, private_key: other.keyPem }).expect(409);
    expect(res.type).toBe('application/problem+json');
    expect(res.body).toMatchObject({ code: 'push_topic_mismatch', status: 409, current_topic: cert.topic, uploaded_topic: other.topic });
    expect(res.body.detail).toMatch(/every enrolled Apple device .* would stop receiving pushes/i);
    expect((await s.api.get(URL_PATH).expect(200)).body.topic).toBe(cert.topic);
  });

  it('replaces it with force, and records who did it', async () => {
    const other = await pki.pushCertificate();
    const res = await s.api.put(URL_PATH).send({ certificate: other.certPem, private_key: other.keyPem, force: true }).expect(200);
    expect(res.body).toMatchObject({ topic: other.topic, previous_topic: cert.topic });
    expect((await s.api.get(URL_PATH).expect(200)).body.topic).toBe(other.topic);
    const events = await s.api.get('/api/v1/events').query({ type: 'apple.push_certificate.replaced' }).expect(200);
    expect(events.body.items[0]).toMatchObject({ actor: expect.stringMatching(/^api_token:/), data: { topic: other.topic, previous_topic: cert.topic, topic_changed: true } });
    // and back, so the push tests below use `cert`
    await s.api.put(URL_PATH).send({ certificate: cert.certPem, private_key: cert.keyPem, force: true }).expect(200);
  });

  it('makes a CSR and its key (RSA 2048), not cached', async () => {
    const res = await s.api.post(`${URL_PATH}/csr`).expect(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const csr = new x509.Pkcs10CertificateRequest(res.body.csr);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe('CN=Mooring MDM push');
    const key = crypto.createPrivateKey(res.body.private_key);
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(crypto.createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(Buffer.from(csr.publicKey.rawData))).toBe(true);

    const named = await s.api.post(`${URL_PATH}/csr`).send({ common_name: 'Acme MDM', email: 'mdm@acme.example' }).expect(200);
    expect(new x509.Pkcs10CertificateRequest(named.body.csr).subject).toBe('CN=Acme MDM, E=mdm@acme.example');
  });

  it('needs the admin role to upload or make a CSR; other roles may read', async () => {
    for (const role of ['operator', 'enroller', 'viewer'] as const) {
      const token = await s.token(role);
      const put = await s.api.put(URL_PATH).set('Authorization', `Bearer ${token}`).send({ certificate: cert.certPem, private_key: cert.keyPem }).expect(403);
      expect(put.body.code).toBe('forbidden');
      await s.api.post(`${URL_PATH}/csr`).set('Authorization', `Bearer ${token}`).expect(403);
    }
    await s.api.get(URL_PATH).set('Authorization', `Bearer ${await s.token('viewer')}`).expect(200);
    await s.api.get(URL_PATH).set('Authorization', 'Bearer nope').expect(401);
  });

  it('refuses bad input with problem+json and a stable code', async () => {
    const expectProblem = async (body: unknown, status: number, code: string, detail: RegExp) => {
      const res = await s.api.put(URL_PATH).send(body as object).expect(status);
      expect(res.type).toBe('application/problem+json');
      expect(res.body).toMatchObject({ code, status });
      expect(res.body.detail).toMatch(detail);
    };
    // the shape: 400 validation_failed
    await expectProblem({}, 400, 'validation_failed', /certificate and private_key \(PEM\), or pkcs12/);
    await expectProblem({ certificate: cert.certPem }, 400, 'validation_failed', /body\.private_key: required with certificate/);
    await expectProblem({ certificate: cert.certPem, private_key: cert.keyPem, pkcs12: 'AAAA' }, 400, 'validation_failed', /not both/);
    await expectProblem({ pkcs12: 'AAAA', surprise: 1 }, 400, 'validation_failed', /surprise/);
    await expectProblem({ certificate: cert.certPem, private_key: cert.keyPem, force: 'yes' }, 400, 'validation_failed', /force/);
    // the content: 422 invalid_params saying what is wrong with the certificate
    await expectProblem({ certificate: 'garbage', private_key: 'garbage' }, 422, 'invalid_params', /not a PEM certificate/);
    const stranger = await pki.pushCertificate({ topic: cert.topic });
    await expectProblem({ certificate: cert.certPem, private_key: stranger.keyPem }, 422, 'invalid_params', /does not belong/);
    const app = await pki.pushCertificate({ topic: 'com.example.app' });
    await expectProblem({ certificate: app.certPem, private_key: app.keyPem }, 422, 'invalid_params', /not an MDM one/);
    await expectProblem({ pkcs12: toPkcs12(cert, 'right'), password: 'wrong' }, 422, 'invalid_params', /password is wrong/);
    // not JSON at all
    const res = await s.api.put(URL_PATH).set('Content-Type', 'application/x-pem-file').send(cert.certPem).expect(415);
    expect(res.body.code).toBe('unsupported_media_type');
    await s.api.post(`${URL_PATH}/csr`).send({ common_name: '#"\\' }).expect(400);
    // and the certificate in place is untouched
    expect((await s.api.get(URL_PATH).expect(200)).body.topic).toBe(cert.topic);
  });

  it('is described in the OpenAPI document', async () => {
    const doc = await s.api.get('/api/v1/openapi.json').expect(200);
    const paths = doc.body.paths as Record<string, Record<string, { description?: string; requestBody?: unknown }>>;
    expect(Object.keys(paths['/apple/push-certificate']!)).toEqual(expect.arrayContaining(['put', 'get']));
    expect(paths['/apple/push-certificate']!.put!.requestBody).toBeDefined();
    expect(paths['/apple/push-certificate/csr']!.post!.description).toMatch(/tokens:manage/);
    expect(doc.body.components.schemas.PushCertificateUpload.properties).toHaveProperty('pkcs12');
  });
});

describe('pushes through APNs with the uploaded certificate', () => {
  let worker: RunningWorker;
  beforeAll(() => {
    worker = s.m.startWorker();
  });
  afterAll(() => worker.stop());

  it('a command wakes the device: {"mdm": PushMagic} to its token, with the topic and the push certificate', async () => {
    const token = crypto.randomBytes(32).toString('hex');
    const magic = crypto.randomUUID().toUpperCase();
    const { device } = await s.device({ platform: 'apple' }, { push_token: token, push_magic: magic, push_topic: cert.topic });
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await eventually(() => mock.delivered.some((p) => p.token === token), 10_000, 'the APNs push');
    const push = mock.delivered.find((p) => p.token === token)!;
    expect(push).toMatchObject({ topic: cert.topic, pushType: 'mdm', priority: '10', body: JSON.stringify({ mdm: magic }), clientCertTopic: cert.topic });
  });

  it('Unregistered marks the token dead', async () => {
    const token = crypto.randomBytes(32).toString('hex');
    mock.failFor(token, 410, 'Unregistered');
    const { device } = await s.device({ platform: 'apple' }, { push_token: token, push_magic: 'MAGIC', push_topic: cert.topic });
    await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await eventually(async () => Boolean((await s.m.db('enrollments').where({ device_id: device.id }).first()).push_token_dead_at), 10_000, 'the dead-token mark');
  });
});
