/**
 * The admin REST API over HTTP, as a script or admin would drive it: auth and roles, validation and
 * problem+json, pagination, commands single and bulk, cancel, enrollment and API tokens, events.
 */
import http from 'node:http';
import supertest from 'supertest';
import { startTestServer, type TestServer } from '../helpers/server';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ env: { MOORING_ADMIN_BODY_LIMIT: '64kb' } });
});
afterAll(() => s.stop());

const anon = () => supertest(s.m.app);
const as = (token: string) => supertest.agent(s.m.app).set('Authorization', `Bearer ${token}`);

function expectProblem(res: supertest.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, type: expect.stringContaining(code), title: expect.any(String), detail: expect.any(String) });
  expect(JSON.stringify(res.body)).not.toMatch(/\n\s+at /); // never a stack trace
}

describe('authentication and roles', () => {
  it('refuses a request without a token with 401 and a Bearer challenge', async () => {
    const res = await anon().get('/api/v1/devices');
    expectProblem(res, 401, 'unauthorized');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it('refuses an unknown or revoked token', async () => {
    expectProblem(await as('mrg_not-a-real-token').get('/api/v1/devices'), 401, 'unauthorized');
    const viewer = await s.token('viewer');
    const list = await s.api.get('/api/v1/api-tokens').expect(200);
    const id = list.body.items.find((t: { name: string }) => t.name === 'test viewer').id;
    await s.api.delete(`/api/v1/api-tokens/${id}`).expect(200);
    expectProblem(await as(viewer).get('/api/v1/devices'), 401, 'unauthorized');
  });

  it('lets each role do its part and no more', async () => {
    const { device } = await s.device();
    const viewer = await s.token('viewer');
    const operator = await s.token('operator');
    const enroller = await s.token('enroller');
    await as(viewer).get(`/api/v1/devices/${device.id}`).expect(200);
    expectProblem(await as(viewer).post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }), 403, 'forbidden');
    await as(operator).post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    expectProblem(await as(operator).post('/api/v1/enrollment-tokens').send({ platform: 'android' }), 403, 'forbidden');
    await as(enroller).post('/api/v1/enrollment-tokens').send({ platform: 'android' }).expect(201);
    expectProblem(await as(enroller).get('/api/v1/devices'), 403, 'forbidden');
    expectProblem(await as(operator).post('/api/v1/api-tokens').send({ name: 'x', role: 'admin' }), 403, 'forbidden');
  });

  it('serves the OpenAPI document without a token, covering every route', async () => {
    const res = await anon().get('/api/v1/openapi.json').expect(200);
    expect(res.body.openapi).toBe('3.1.0');
    for (const path of ['/devices', '/devices/{id}', '/devices/{id}/commands', '/commands', '/commands/{id}', '/enrollment-tokens', '/events', '/api-tokens']) {
      expect(res.body.paths).toHaveProperty([path]);
    }
    expect(res.body.components.schemas).toHaveProperty('CommandRequest');
    expect(res.body.paths['/devices/{id}/commands'].post.requestBody.content['application/json'].schema).toBeDefined();
  });
});

describe('bad input', () => {
  it('answers malformed JSON with malformed_json', async () => {
    const res = await s.api.post('/api/v1/commands').set('Content-Type', 'application/json').send('{"type": "lock", ');
    expectProblem(res, 400, 'malformed_json');
  });

  it('refuses unknown fields and wrong types, naming each', async () => {
    const { device } = await s.device();
    const res = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock', colour: 'red', priority: 'high' });
    expectProblem(res, 400, 'validation_failed');
    const paths = res.body.errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['body.priority', 'body']));
    expect(res.body.detail).toMatch(/colour/);
  });

  it('refuses an unknown command type and a body that is not JSON', async () => {
    const { device } = await s.device();
    expectProblem(await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'self_destruct' }), 400, 'validation_failed');
    const res = await s.api.post(`/api/v1/devices/${device.id}/commands`).set('Content-Type', 'text/plain').send('type=lock');
    expectProblem(res, 415, 'unsupported_media_type');
  });

  it('answers an oversized body with 413 and writes nothing', async () => {
    const before = await s.m.db('command_batches').count('* as n').first();
    const ids = Array.from({ length: 3000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    expectProblem(await s.api.post('/api/v1/commands').send({ type: 'lock', device_ids: ids }), 413, 'payload_too_large');
    expect(await s.m.db('command_batches').count('* as n').first()).toEqual(before);
  });

  it('answers an invalid cursor, limit or query with validation_failed', async () => {
    expectProblem(await s.api.get('/api/v1/devices?cursor=bogus'), 400, 'validation_failed');
    expectProblem(await s.api.get('/api/v1/devices?limit=0'), 400, 'validation_failed');
    expectProblem(await s.api.get('/api/v1/devices?status=asleep'), 400, 'validation_failed');
  });

  it('answers unknown routes and ids with 404 problems', async () => {
    expectProblem(await s.api.get('/api/v1/nothing-here'), 404, 'not_found');
    expectProblem(await s.api.get('/api/v1/devices/00000000-0000-4000-8000-000000000000'), 404, 'device_not_found');
    expectProblem(await s.api.get('/api/v1/devices/not-a-uuid'), 404, 'device_not_found');
    expectProblem(await s.api.get('/api/v1/commands/00000000-0000-4000-8000-000000000000'), 404, 'command_not_found');
  });
});

describe('devices', () => {
  it('pages through devices with a cursor, newest first, without repeats', async () => {
    const made = [];
    for (let i = 0; i < 5; i++) made.push((await s.device({ platform: 'windows', name: `page-test-${i}` })).device.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: supertest.Response = await s.api.get('/api/v1/devices').query({ platform: 'windows', q: 'page-test', limit: 2, ...(cursor ? { cursor } : {}) }).expect(200);
      seen.push(...res.body.items.map((d: { id: string }) => d.id));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...made].reverse());
  });

  it('shows a device in the contract shape', async () => {
    const { device } = await s.device({ name: 'Ana’s phone', model: 'Pixel 9', user_ref: 'ana@example.com' });
    const res = await s.api.get(`/api/v1/devices/${device.id}`).expect(200);
    expect(Object.keys(res.body)).toEqual(
      expect.arrayContaining(['id', 'platform', 'status', 'ownership', 'mode', 'supervised', 'serial_number', 'udid', 'imei', 'model', 'os_version', 'name', 'user', 'category', 'enrolled_at', 'last_seen_at', 'inventory']),
    );
    expect(res.body).toMatchObject({ name: 'Ana’s phone', model: 'Pixel 9', user: 'ana@example.com', status: 'enrolled' });
  });
});

describe('commands', () => {
  it('queues a command (202), shows it, and lists the device commands newest first', async () => {
    const { device } = await s.device();
    const first = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'device_info' }).expect(202);
    expect(first.body).toMatchObject({ device_id: device.id, type: 'device_info', status: 'queued' });
    expect(first.headers.location).toBe(`/api/v1/commands/${first.body.id}`);
    const second = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock', params: { message: 'Call IT' } }).expect(202);
    await s.api.get(`/api/v1/commands/${first.body.id}`).expect(200).expect((r) => expect(r.body.status).toBe('queued'));
    const list = await s.api.get(`/api/v1/devices/${device.id}/commands`).expect(200);
    expect(list.body.items.map((c: { id: string }) => c.id)).toEqual([second.body.id, first.body.id]);
    expect(list.body.items[0].params).toEqual({ message: 'Call IT' });
  });

  it('refuses a command the platform does not permit with 422 and the reason', async () => {
    const { device } = await s.device({ ownership: 'personal' });
    const res = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lost_mode_on' });
    expectProblem(res, 422, 'command_not_permitted');
    expect(res.body.detail).toMatch(/company-owned/);
  });

  it('says what a command will really do when it differs from its name', async () => {
    const { device } = await s.device({ ownership: 'personal' });
    const res = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'wipe' }).expect(202);
    expect(res.body.effect).toBe('removes the work profile only');
  });

  it('bulk-queues for known devices and lists unknown ones in rejected', async () => {
    const a = await s.device();
    const b = await s.device();
    const unknown = '00000000-0000-4000-8000-00000000dead';
    const res = await s.api.post('/api/v1/commands').send({ type: 'lock', device_ids: [a.device.id, unknown, b.device.id] }).expect(202);
    expect(res.body.accepted.sort()).toEqual([a.device.id, b.device.id].sort());
    expect(res.body.rejected).toEqual([{ device_id: unknown, code: 'device_not_found', detail: expect.any(String) }]);
    const cmds = await s.api.get(`/api/v1/devices/${a.device.id}/commands`).expect(200);
    expect(cmds.body.items[0]).toMatchObject({ type: 'lock', status: 'queued', batch_id: res.body.batch_id });
  });

  it('cancels a queued command, and answers 409 once it was sent', async () => {
    const { device, enrollment } = await s.device();
    const queued = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'restart' }).expect(202);
    const canceled = await s.api.delete(`/api/v1/commands/${queued.body.id}`).expect(200);
    expect(canceled.body).toMatchObject({ status: 'canceled', canceled_at: expect.any(String) });
    const other = await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    await s.m.commands.next(enrollment.id); // the device polls and gets it
    const res = await s.api.delete(`/api/v1/commands/${other.body.id}`);
    expectProblem(res, 409, 'command_not_cancelable');
    expect(res.body.command_status).toBe('sent');
  });

  it('returns the first command for a repeated idempotency key', async () => {
    const { device } = await s.device();
    const body = { type: 'lock', idempotency_key: 'admin-retry-1' };
    const one = await s.api.post(`/api/v1/devices/${device.id}/commands`).send(body).expect(202);
    const two = await s.api.post(`/api/v1/devices/${device.id}/commands`).send(body).expect(202);
    expect(two.body.id).toBe(one.body.id);
    expectProblem(await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'restart', idempotency_key: 'admin-retry-1' }), 409, 'idempotency_conflict');
  });

  it('refuses commands for a device with no live enrollment', async () => {
    const { device } = await s.device({ status: 'unenrolled' }, { status: 'unenrolled' });
    expectProblem(await s.api.post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }), 409, 'device_not_enrolled');
  });
});

describe('enrollment tokens', () => {
  it('creates a token shown once, lists it without the secret, and revokes it', async () => {
    const created = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'apple', one_time: true, expires_in: 3600 }).expect(201);
    expect(created.body).toMatchObject({ platform: 'apple', one_time: true, token: expect.stringMatching(/^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$/) });
    expect(created.body.enroll_url).toBe(`https://localhost:8443/enroll/apple?token=${created.body.token}`);
    expect(new Date(created.body.expires_at).getTime()).toBeGreaterThan(Date.now() + 3500_000);
    const stored = await s.m.db('enrollment_tokens').where({ id: created.body.id }).first();
    expect(JSON.stringify(stored)).not.toContain(created.body.token);

    const list = await s.api.get('/api/v1/enrollment-tokens?platform=apple').expect(200);
    const listed = list.body.items.find((t: { id: string }) => t.id === created.body.id);
    expect(listed).toBeDefined();
    expect(listed.token).toBeUndefined();
    expect(listed.hint).toBe(created.body.token.slice(-4));

    const revoked = await s.api.delete(`/api/v1/enrollment-tokens/${created.body.id}`).expect(200);
    expect(revoked.body.revoked_at).toEqual(expect.any(String));
    await expect(s.m.tokens.redeemEnrollmentToken(created.body.token, 'apple')).rejects.toMatchObject({ code: 'token_revoked' });
  });

  it('redeems a token within its limits and refuses it with a stable code after', async () => {
    const t = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'windows', max_uses: 2 }).expect(201);
    const typed = t.body.token.toLowerCase().replace(/-/g, ' ');
    await s.m.tokens.redeemEnrollmentToken(typed, 'windows');
    await s.m.tokens.redeemEnrollmentToken(t.body.token, 'windows');
    await expect(s.m.tokens.redeemEnrollmentToken(t.body.token, 'windows')).rejects.toMatchObject({ code: 'token_used_up' });
    await expect(s.m.tokens.redeemEnrollmentToken(t.body.token, 'android')).rejects.toMatchObject({ code: 'enrollment_token_not_found' });
    const expired = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', expires_in: 60 }).expect(201);
    await s.m.db('enrollment_tokens').where({ id: expired.body.id }).update({ expires_at: new Date(Date.now() - 1000) });
    await expect(s.m.tokens.redeemEnrollmentToken(expired.body.token, 'android')).rejects.toMatchObject({ code: 'token_expired' });
  });

  it('accepts "never" as an expiry where the rules allow it', async () => {
    const res = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'disallowed', expires_in: 'never' }).expect(201);
    expect(res.body.expires_at).toBeNull();
    expect(res.body.ownership).toBe('corporate');
    const byod = await s.api.post('/api/v1/enrollment-tokens').send({ platform: 'android', allow_personal_usage: 'allowed', ownership: 'personal', expires_in: 'never' });
    expectProblem(byod, 400, 'validation_failed');
    expect(byod.body.errors[0].path).toBe('body.expires_in');
  });
});

describe('API tokens and events', () => {
  it('creates a token whose secret works once shown, and records who did what', async () => {
    const res = await s.api.post('/api/v1/api-tokens').send({ name: 'ci', role: 'operator' }).expect(201);
    expect(res.body.token).toMatch(/^mrg_/);
    const { device } = await s.device();
    const cmd = await as(res.body.token).post(`/api/v1/devices/${device.id}/commands`).send({ type: 'lock' }).expect(202);
    expect(cmd.body.requested_by).toBe(`api_token:${res.body.id}`);
    const events = await s.api.get('/api/v1/events').query({ device_id: device.id }).expect(200);
    expect(events.body.items[0]).toMatchObject({ type: 'command.queued', command_id: cmd.body.id, actor: `api_token:${res.body.id}` });
    const byType = await s.api.get('/api/v1/events').query({ type: 'api_token.created', limit: 1 }).expect(200);
    expect(byType.body.items).toHaveLength(1);
    expect(byType.body.next_cursor).toEqual(expect.any(String));
  });
});

describe('operations endpoints', () => {
  it('answers /healthz, /readyz and /metrics', async () => {
    await anon().get('/healthz').expect(200, { status: 'ok' });
    const ready = await anon().get('/readyz').expect(200);
    expect(ready.body.checks).toMatchObject({ database: 'ok', queue: expect.stringMatching(/^ok/) });
    await anon().get('/api/v1/devices'); // one request so the histogram has a route label
    const metrics = await anon().get('/metrics').expect(200);
    expect(metrics.text).toMatch(/mooring_http_request_duration_seconds_bucket\{[^}]*route="\/api\/v1\/devices"/);
    expect(metrics.text).toMatch(/mooring_queue_jobs\{queue="push",state="waiting"\}/);
  });

  it('echoes a sane X-Request-Id and makes one otherwise', async () => {
    const given = await anon().get('/healthz').set('X-Request-Id', 'abc-123').expect(200);
    expect(given.headers['x-request-id']).toBe('abc-123');
    const made = await anon().get('/healthz').set('X-Request-Id', 'bad id with spaces').expect(200);
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('lets a request in flight finish when the listener closes', async () => {
    const server = http.createServer(s.m.app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const pending = fetch(`http://127.0.0.1:${port}/readyz`);
    await new Promise((r) => setTimeout(r, 5));
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    expect((await pending).status).toBe(200);
    await closed;
  });
});
