/**
 * Enrollment governance over the admin API: restrictions and their priorities, enrollment settings,
 * corporate identifiers (manual and CSV import with review of duplicates), pre-approved device imports
 * (users, placeholders in the device list), and the enrollment reports in JSON and CSV.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import supertest from 'supertest';
import { parseCsv } from '../../src/core/csv';
import { startTestServer, type TestServer } from '../helpers/server';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.stop());

const as = (token: string) => supertest.agent(s.m.app).set('Authorization', `Bearer ${token}`);
const fixture = (name: string) => fs.readFileSync(path.join(__dirname, '../../fixtures/governance', name));
const db = () => s.m.db;
const postCsv = (url: string, body: string | Buffer) => s.api.post(url).set('Content-Type', 'text/csv').send(Buffer.isBuffer(body) ? body : Buffer.from(body));

function expectProblem(res: supertest.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, detail: expect.any(String) });
}

async function count(table: string, where: Record<string, unknown> = {}): Promise<number> {
  const [row] = await db()(table).where(where).count<Array<{ count: string }>>('* as count');
  return Number(row!.count);
}

async function eventsOf(type: string): Promise<Array<{ data: Record<string, unknown> }>> {
  return db()('events').where({ type }).orderBy('id').select('data');
}

/** Parses a CSV download into header and rows (the report writer's own format, read back). */
function readCsv(text: string): { header: string[]; rows: string[][] } {
  const parsed = parseCsv(text);
  if ('error' in parsed) throw new Error(parsed.error.detail);
  const [header, ...rows] = parsed.rows.map((r) => r.fields);
  return { header: header!, rows };
}

// ---- restrictions -------------------------------------------------------------------------------------

describe('enrollment restrictions', () => {
  const platformOrder = async () => {
    const res = await s.api.get('/api/v1/enrollment-restrictions?kind=platform').expect(200);
    return res.body.items.map((r: { name: string; priority: number | null; is_default: boolean }) => [r.name, r.priority, r.is_default]);
  };
  const ids: Record<string, string> = {};

  it('starts with one default of each kind, which applies to everyone and comes last', async () => {
    const res = await s.api.get('/api/v1/enrollment-restrictions').expect(200);
    expect(res.body.items).toHaveLength(2);
    expect(res.body.items.map((r: { kind: string }) => r.kind)).toEqual(['platform', 'device_limit']);
    for (const r of res.body.items) expect(r).toMatchObject({ is_default: true, priority: null, assign_all_users: true, name: 'All users and all devices' });
    expect(res.body.items[1].settings).toEqual({ limit: 5 });
    const only = await s.api.get('/api/v1/enrollment-restrictions?kind=device_limit').expect(200);
    expect(only.body.items).toHaveLength(1);
    expect(only.body.items[0].kind).toBe('device_limit');
    expectProblem(await s.api.get('/api/v1/enrollment-restrictions?kind=colour'), 400, 'validation_failed');
  });

  it('puts new restrictions just above the default, and a taken priority moves the others down', async () => {
    for (const name of ['A', 'B', 'C']) {
      const res = await s.api
        .post('/api/v1/enrollment-restrictions')
        .send({ kind: 'platform', name, assign_users: ['Jane.Doe@Example.com'], assign_groups: ['Sales'], settings: { platforms: { ios: { os_min: '16.0' } } } })
        .expect(201);
      ids[name] = res.body.id;
      expect(res.headers.location).toBe(`/api/v1/enrollment-restrictions/${res.body.id}`);
      expect(res.body).toMatchObject({ kind: 'platform', name, is_default: false, assign_all_users: false, assign_users: ['jane.doe@example.com'], assign_groups: ['Sales'] });
      expect(res.body.settings).toEqual({ platforms: { ios: { allowed: true, personal_allowed: true, os_min: '16.0' } } });
    }
    expect(await platformOrder()).toEqual([
      ['A', 1, false],
      ['B', 2, false],
      ['C', 3, false],
      ['All users and all devices', null, true],
    ]);

    const top = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'Top', priority: 1, assign_all_users: true, settings: {} }).expect(201);
    ids.Top = top.body.id;
    expect(top.body.priority).toBe(1);
    expect(top.body.settings).toEqual({ platforms: {} });
    expect(await platformOrder()).toEqual([
      ['Top', 1, false],
      ['A', 2, false],
      ['B', 3, false],
      ['C', 4, false],
      ['All users and all devices', null, true],
    ]);

    // A priority past the end means just above the default.
    const far = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'Far', priority: 20, settings: {} }).expect(201);
    ids.Far = far.body.id;
    expect(far.body.priority).toBe(5);
    const created = await eventsOf('restriction.created');
    expect(created.map((e) => e.data.name)).toEqual(['A', 'B', 'C', 'Top', 'Far']);
    expect(created[3]!.data).toMatchObject({ restriction_id: ids.Top, kind: 'platform', priority: 1 });
  });

  it('shows one restriction, and 404s an unknown id', async () => {
    const res = await s.api.get(`/api/v1/enrollment-restrictions/${ids.B}`).expect(200);
    expect(res.body).toMatchObject({ id: ids.B, name: 'B', priority: 3 });
    expectProblem(await s.api.get(`/api/v1/enrollment-restrictions/${crypto.randomUUID()}`), 404, 'restriction_not_found');
    expectProblem(await s.api.get('/api/v1/enrollment-restrictions/not-a-uuid'), 404, 'restriction_not_found');
  });

  it('re-orders on a priority change and keeps priorities 1..n', async () => {
    const res = await s.api.patch(`/api/v1/enrollment-restrictions/${ids.C}`).send({ priority: 2, name: 'C moved', assign_users: ['X@Example.com'] }).expect(200);
    expect(res.body).toMatchObject({ name: 'C moved', priority: 2, assign_users: ['x@example.com'], assign_groups: ['Sales'] });
    expect(await platformOrder()).toEqual([
      ['Top', 1, false],
      ['C moved', 2, false],
      ['A', 3, false],
      ['B', 4, false],
      ['Far', 5, false],
      ['All users and all devices', null, true],
    ]);
    await s.api.patch(`/api/v1/enrollment-restrictions/${ids.Top}`).send({ priority: 99 }).expect(200);
    expect((await platformOrder()).map((r: unknown[]) => r[0])).toEqual(['C moved', 'A', 'B', 'Far', 'Top', 'All users and all devices']);
    const rows = await db()('enrollment_restrictions').where({ kind: 'platform', is_default: false }).orderBy('priority').pluck('priority');
    expect(rows).toEqual([1, 2, 3, 4, 5]);
    expect((await eventsOf('restriction.updated')).at(-1)!.data).toMatchObject({ restriction_id: ids.Top, priority: 5, changed: ['priority'] });
  });

  it('changes settings, validated against the kind', async () => {
    const res = await s.api
      .patch(`/api/v1/enrollment-restrictions/${ids.A}`)
      .send({ settings: { platforms: { android: { allowed: true, personal_allowed: false, os_min: '12', os_max: '14.1', blocked_manufacturers: ['Acme'] }, windows: { allowed: false } } } })
      .expect(200);
    expect(res.body.settings.platforms.android).toEqual({ allowed: true, personal_allowed: false, os_min: '12', os_max: '14.1', blocked_manufacturers: ['Acme'] });
    expect(res.body.settings.platforms.windows).toEqual({ allowed: false, personal_allowed: true });
    const stored = await db()('enrollment_restrictions').where({ id: ids.A }).first('settings');
    expect(stored.settings.platforms.windows.allowed).toBe(false);

    const limit = await s.api.patch(`/api/v1/enrollment-restrictions/${ids.A}`).send({ settings: { limit: 3 } });
    expectProblem(limit, 400, 'validation_failed');
    expect(limit.body.errors.map((e: { path: string }) => e.path)).toContain('body.settings');
    expectProblem(await s.api.patch(`/api/v1/enrollment-restrictions/${ids.A}`).send({}), 400, 'validation_failed');
    expectProblem(await s.api.patch(`/api/v1/enrollment-restrictions/${ids.A}`).send({ colour: 'red' }), 400, 'validation_failed');
  });

  it('refuses invalid settings with validation_failed naming the field', async () => {
    const badFormat = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'bad', settings: { platforms: { ios: { os_min: '17.4.1.2' } } } });
    expectProblem(badFormat, 400, 'validation_failed');
    expect(badFormat.body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ path: 'body.settings.platforms.ios.os_min' })]));

    const notVersion = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'bad', settings: { platforms: { windows: { os_min: 'ten' } } } });
    expectProblem(notVersion, 400, 'validation_failed');
    expect(notVersion.body.errors[0].path).toBe('body.settings.platforms.windows.os_min');

    const inverted = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'bad', settings: { platforms: { macos: { os_min: '15.0', os_max: '14.6' } } } });
    expectProblem(inverted, 400, 'validation_failed');
    expect(inverted.body.errors).toEqual([expect.objectContaining({ path: 'body.settings.platforms.macos', message: 'os_min is above os_max' })]);

    const patched = await s.api.patch(`/api/v1/enrollment-restrictions/${ids.B}`).send({ settings: { platforms: { android: { os_min: '14', os_max: '13' } } } });
    expectProblem(patched, 400, 'validation_failed');
    expect(patched.body.errors[0]).toMatchObject({ path: 'body.settings.platforms.android', message: 'os_min is above os_max' });

    expectProblem(await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'device_limit', name: 'bad', settings: { limit: 16 } }), 400, 'validation_failed');
    expectProblem(await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'bad', settings: { platforms: { blackberry: {} } } }), 400, 'validation_failed');
    expectProblem(await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'terms', name: 'bad', settings: {} }), 400, 'validation_failed');
    expectProblem(await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'bad', assign_users: ['not an email'], settings: {} }), 400, 'validation_failed');
    expect(await count('enrollment_restrictions', { name: 'bad' })).toBe(0);
  });

  it('deletes a restriction and closes the gap', async () => {
    await s.api.delete(`/api/v1/enrollment-restrictions/${ids.A}`).expect(204);
    expect(await platformOrder()).toEqual([
      ['C moved', 1, false],
      ['B', 2, false],
      ['Far', 3, false],
      ['Top', 4, false],
      ['All users and all devices', null, true],
    ]);
    expectProblem(await s.api.delete(`/api/v1/enrollment-restrictions/${ids.A}`), 404, 'restriction_not_found');
    expect((await eventsOf('restriction.deleted'))[0]!.data).toMatchObject({ restriction_id: ids.A, name: 'A', priority: 2 });
  });

  it("keeps the default's place and assignment, but lets its name and settings change", async () => {
    const list = await s.api.get('/api/v1/enrollment-restrictions?kind=device_limit').expect(200);
    const def = list.body.items.find((r: { is_default: boolean }) => r.is_default);
    expectProblem(await s.api.delete(`/api/v1/enrollment-restrictions/${def.id}`), 409, 'default_restriction_locked');
    expectProblem(await s.api.patch(`/api/v1/enrollment-restrictions/${def.id}`).send({ priority: 1 }), 409, 'default_restriction_locked');
    const assign = await s.api.patch(`/api/v1/enrollment-restrictions/${def.id}`).send({ assign_all_users: false, name: 'nope' });
    expectProblem(assign, 409, 'default_restriction_locked');
    expect(assign.body.fields).toEqual(['assign_all_users']);
    expectProblem(await s.api.patch(`/api/v1/enrollment-restrictions/${def.id}`).send({ assign_groups: ['Sales'] }), 409, 'default_restriction_locked');

    const res = await s.api.patch(`/api/v1/enrollment-restrictions/${def.id}`).send({ name: 'Everyone else', settings: { limit: 10 }, assign_all_users: true }).expect(200);
    expect(res.body).toMatchObject({ name: 'Everyone else', settings: { limit: 10 }, is_default: true, priority: null, assign_all_users: true });
    const row = await db()('enrollment_restrictions').where({ id: def.id }).first();
    expect(row).toMatchObject({ name: 'Everyone else', settings: { limit: 10 }, priority: null, is_default: true });
    expectProblem(await s.api.patch(`/api/v1/enrollment-restrictions/${def.id}`).send({ settings: { limit: 0 } }), 400, 'validation_failed');
  });

  it('refuses the 26th restriction of a kind', async () => {
    for (let i = 1; i <= 25; i++) {
      const res = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'device_limit', name: `Limit ${i}`, assign_groups: [`g${i}`], settings: { limit: 1 + (i % 15) } });
      expect(res.status).toBe(201);
      expect(res.body.priority).toBe(i);
    }
    const res = await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'device_limit', name: 'Limit 26', settings: { limit: 2 } });
    expectProblem(res, 409, 'restriction_limit_reached');
    expect(await count('enrollment_restrictions', { kind: 'device_limit' })).toBe(26); // 25 and the default
    // The other kind still has room.
    await s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'Still room', settings: {} }).expect(201);
  });

  it('keeps priorities contiguous when restrictions are created side by side', async () => {
    const res = await Promise.all(
      Array.from({ length: 6 }, (_, i) => s.api.post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: `Parallel ${i}`, priority: 1 + (i % 3), settings: {} })),
    );
    expect(res.map((r) => r.status)).toEqual([201, 201, 201, 201, 201, 201]);
    const priorities = await db()('enrollment_restrictions').where({ kind: 'platform', is_default: false }).orderBy('priority').pluck('priority');
    expect(priorities).toEqual(Array.from({ length: priorities.length }, (_, i) => i + 1));
    expect(priorities).toHaveLength(11);
  });

  it('needs governance:write to change restrictions and enrollment:read to read them', async () => {
    const viewer = await s.token('viewer');
    const enroller = await s.token('enroller');
    const operator = await s.token('operator');
    await as(viewer).get('/api/v1/enrollment-restrictions').expect(200);
    expectProblem(await as(viewer).post('/api/v1/enrollment-restrictions').send({ kind: 'platform', name: 'x', settings: {} }), 403, 'forbidden');
    expectProblem(await as(enroller).patch(`/api/v1/enrollment-restrictions/${ids.B}`).send({ name: 'x' }), 403, 'forbidden');
    expectProblem(await as(operator).get('/api/v1/enrollment-restrictions'), 403, 'forbidden');
  });
});

// ---- settings -----------------------------------------------------------------------------------------

describe('enrollment settings', () => {
  it('toggles pre-approved-only enrollment', async () => {
    const before = await s.api.get('/api/v1/enrollment-settings').expect(200);
    expect(before.body).toEqual({ preapproved_only: false, updated_at: expect.any(String) });
    const on = await s.api.put('/api/v1/enrollment-settings').send({ preapproved_only: true }).expect(200);
    expect(on.body.preapproved_only).toBe(true);
    expect((await s.api.get('/api/v1/enrollment-settings').expect(200)).body.preapproved_only).toBe(true);
    expect((await db()('enrollment_settings').where({ id: 1 }).first()).preapproved_only).toBe(true);
    await s.api.put('/api/v1/enrollment-settings').send({ preapproved_only: false }).expect(200);
    expect((await db()('enrollment_settings').where({ id: 1 }).first()).preapproved_only).toBe(false);
    expect((await eventsOf('enrollment_settings.updated')).map((e) => e.data.preapproved_only)).toEqual([true, false]);
    expectProblem(await s.api.put('/api/v1/enrollment-settings').send({ preapproved_only: 'yes' }), 400, 'validation_failed');
    expectProblem(await s.api.put('/api/v1/enrollment-settings').send({}), 400, 'validation_failed');
    expectProblem(await as(await s.token('enroller')).put('/api/v1/enrollment-settings').send({ preapproved_only: true }), 403, 'forbidden');
  });
});

// ---- corporate identifiers ----------------------------------------------------------------------------

describe('corporate identifiers', () => {
  afterAll(() => db()('corporate_identifiers').del());

  it('adds one identifier, checking its format', async () => {
    const res = await s.api.post('/api/v1/corporate-identifiers').send({ type: 'imei', identifier: ' 353280111234572 ', details: 'Scanner 1' }).expect(201);
    expect(res.body).toMatchObject({ type: 'imei', identifier: '353280111234572', details: 'Scanner 1', status: 'not_contacted', device_id: null, enrolled_at: null });
    const serial = await s.api.post('/api/v1/corporate-identifiers').send({ type: 'serial', identifier: 'C02XG2JHJGH5' }).expect(201);
    expect(serial.body.details).toBeNull();

    const badImei = await s.api.post('/api/v1/corporate-identifiers').send({ type: 'imei', identifier: '35328011123' });
    expectProblem(badImei, 400, 'validation_failed');
    expect(badImei.body.errors[0].path).toBe('body.identifier');
    const dotted = await s.api.post('/api/v1/corporate-identifiers').send({ type: 'serial', identifier: 'F9FZK1.ABCDE' });
    expectProblem(dotted, 400, 'validation_failed');
    expect(dotted.body.detail).toMatch(/dot/);
    expectProblem(await s.api.post('/api/v1/corporate-identifiers').send({ type: 'serial', identifier: 'ABC123', details: 'x'.repeat(129) }), 400, 'validation_failed');
    expectProblem(await s.api.post('/api/v1/corporate-identifiers').send({ type: 'meid', identifier: 'ABC123' }), 400, 'validation_failed');
    expectProblem(await s.api.post('/api/v1/corporate-identifiers').send({ type: 'imei', identifier: '353280111234572', details: 'again' }), 409, 'corporate_identifier_exists');
    expect(await count('corporate_identifiers')).toBe(2);
    expect((await eventsOf('corporate_identifier.created')).map((e) => e.data.identifier)).toEqual(['353280111234572', 'C02XG2JHJGH5']);
  });

  it('lists with status, type and search filters', async () => {
    const { device } = await s.device({ platform: 'apple', ownership: 'corporate', serial_number: 'C02XG2JHJGH5' });
    await db()('corporate_identifiers').where({ value: 'C02XG2JHJGH5' }).update({ device_id: device.id, enrolled_at: new Date() });

    const all = await s.api.get('/api/v1/corporate-identifiers').expect(200);
    expect(all.body.items).toHaveLength(2);
    const enrolled = await s.api.get('/api/v1/corporate-identifiers?status=enrolled').expect(200);
    expect(enrolled.body.items).toEqual([expect.objectContaining({ identifier: 'C02XG2JHJGH5', status: 'enrolled', device_id: device.id, enrolled_at: expect.any(String) })]);
    const waiting = await s.api.get('/api/v1/corporate-identifiers?status=not_contacted').expect(200);
    expect(waiting.body.items.map((c: { identifier: string }) => c.identifier)).toEqual(['353280111234572']);
    expect((await s.api.get('/api/v1/corporate-identifiers?type=serial').expect(200)).body.items).toHaveLength(1);
    expect((await s.api.get('/api/v1/corporate-identifiers?q=scanner').expect(200)).body.items.map((c: { identifier: string }) => c.identifier)).toEqual(['353280111234572']);
    const page = await s.api.get('/api/v1/corporate-identifiers?limit=1').expect(200);
    expect(page.body.next_cursor).toEqual(expect.any(String));
    const next = await s.api.get(`/api/v1/corporate-identifiers?limit=1&cursor=${page.body.next_cursor}`).expect(200);
    expect(next.body.items[0].id).not.toBe(page.body.items[0].id);
    expectProblem(await s.api.get('/api/v1/corporate-identifiers?status=lost'), 400, 'validation_failed');
  });

  it("deletes an identifier without changing the ownership of the device that enrolled with it", async () => {
    const enrolled = (await s.api.get('/api/v1/corporate-identifiers?status=enrolled').expect(200)).body.items[0];
    await s.api.delete(`/api/v1/corporate-identifiers/${enrolled.id}`).expect(204);
    const device = await db()('devices').where({ id: enrolled.device_id }).first();
    expect(device.ownership).toBe('corporate');
    expect((await s.api.get('/api/v1/corporate-identifiers').expect(200)).body.items.map((c: { identifier: string }) => c.identifier)).toEqual(['353280111234572']);
    expectProblem(await s.api.delete(`/api/v1/corporate-identifiers/${enrolled.id}`), 404, 'corporate_identifier_not_found');
    expect((await eventsOf('corporate_identifier.deleted'))[0]!.data).toMatchObject({ corporate_identifier_id: enrolled.id, identifier: 'C02XG2JHJGH5' });
  });
});

describe('corporate identifier import', () => {
  beforeEach(() => db()('corporate_identifiers').del());

  it('imports an Intune file, and a second time finds every row unchanged', async () => {
    const res = await postCsv('/api/v1/corporate-identifiers/import?type=imei', fixture('corporate-imei.valid.csv')).expect(200);
    expect(res.body).toEqual({ type: 'imei', imported: 12, overwritten: 0, unchanged: 0, skipped: 0, dry_run: false, warnings: [] });
    expect(await count('corporate_identifiers', { type: 'imei' })).toBe(12);
    const row = await db()('corporate_identifiers').where({ value: '013263007197568' }).first();
    expect(row.details).toBe('Rugged tablet, "Cold store" 2');
    expect((await db()('corporate_identifiers').where({ value: '353328112767163' }).first()).details).toBeNull();

    const again = await postCsv('/api/v1/corporate-identifiers/import?type=imei', fixture('corporate-imei.valid.csv')).expect(200);
    expect(again.body).toMatchObject({ imported: 0, overwritten: 0, unchanged: 12, skipped: 0 });
    expect((await eventsOf('corporate_identifiers.imported')).at(-1)!.data).toMatchObject({ type: 'imei', imported: 0, unchanged: 12 });
  });

  it('refuses a file with errors, listing each row, and writes nothing', async () => {
    const res = await postCsv('/api/v1/corporate-identifiers/import?type=serial', fixture('corporate-serial.errors.csv'));
    expectProblem(res, 422, 'import_invalid');
    expect(res.body.errors.map((e: { row: number; code: string }) => [e.row, e.code])).toEqual([
      [1, 'header_not_allowed'],
      [3, 'serial_has_dot'],
      [4, 'details_too_long'],
      [7, 'too_many_columns'],
      [10, 'missing_identifier'],
      [11, 'invalid_serial'],
    ]);
    expect(res.body.warnings).toEqual([expect.objectContaining({ row: 8, code: 'duplicate_in_file' })]);
    expect(await count('corporate_identifiers')).toBe(0);

    const utf16 = await postCsv('/api/v1/corporate-identifiers/import?type=imei', fixture('corporate-imei.utf16.csv'));
    expectProblem(utf16, 422, 'import_invalid');
    expect(utf16.body.errors).toEqual([expect.objectContaining({ row: null, code: 'wrong_encoding' })]);
    // Serial numbers in an IMEI import are not IMEIs.
    const wrongType = await postCsv('/api/v1/corporate-identifiers/import?type=imei', fixture('corporate-serial.valid.csv'));
    expectProblem(wrongType, 422, 'import_invalid');
    expect(wrongType.body.errors).toHaveLength(10);
    expect(await count('corporate_identifiers')).toBe(0);
  });

  it('asks for review of duplicates, then overwrites the chosen ones and skips the rest', async () => {
    await postCsv('/api/v1/corporate-identifiers/import?type=serial', fixture('corporate-serial.valid.csv')).expect(200);
    expect(await count('corporate_identifiers', { type: 'serial' })).toBe(10);
    const file = ['C02XG2JHJGH5,MacBook Pro 16 - Finance', 'F9FZK1ABCDEF,iPad Air - Lobby', 'H4YT2LMNP0QR,iPhone 15 - spare', 'NEW0000001,New laptop', 'NEW0000002,', 'G6TZ8QWEHG7F,Now with details'].join('\n');

    const review = await postCsv('/api/v1/corporate-identifiers/import?type=serial', file);
    expectProblem(review, 409, 'import_needs_review');
    expect(review.body.duplicates).toEqual([
      { identifier: 'F9FZK1ABCDEF', row: 2, existing_details: 'iPad Air - Reception', new_details: 'iPad Air - Lobby' },
      { identifier: 'H4YT2LMNP0QR', row: 3, existing_details: 'iPhone 15 - On-call', new_details: 'iPhone 15 - spare' },
      { identifier: 'G6TZ8QWEHG7F', row: 6, existing_details: null, new_details: 'Now with details' },
    ]);
    expect(await count('corporate_identifiers', { type: 'serial' })).toBe(10);

    const dry = await postCsv('/api/v1/corporate-identifiers/import?type=serial&overwrite=all&dry_run=true', file).expect(200);
    expect(dry.body).toMatchObject({ imported: 2, overwritten: 3, unchanged: 1, skipped: 0, dry_run: true });
    expect(await count('corporate_identifiers', { type: 'serial' })).toBe(10);
    expect((await db()('corporate_identifiers').where({ value: 'F9FZK1ABCDEF' }).first()).details).toBe('iPad Air - Reception');

    const res = await postCsv('/api/v1/corporate-identifiers/import?type=serial&overwrite=F9FZK1ABCDEF', file).expect(200);
    expect(res.body).toEqual({ type: 'serial', imported: 2, overwritten: 1, unchanged: 1, skipped: 2, dry_run: false, warnings: [] });
    expect(await count('corporate_identifiers', { type: 'serial' })).toBe(12);
    const details = Object.fromEntries(
      (await db()('corporate_identifiers').whereIn('value', ['F9FZK1ABCDEF', 'H4YT2LMNP0QR', 'G6TZ8QWEHG7F', 'NEW0000001', 'NEW0000002']).select('value', 'details')).map((r) => [r.value, r.details]),
    );
    expect(details).toEqual({ F9FZK1ABCDEF: 'iPad Air - Lobby', H4YT2LMNP0QR: 'iPhone 15 - On-call', G6TZ8QWEHG7F: null, NEW0000001: 'New laptop', NEW0000002: null });

    const all = await postCsv('/api/v1/corporate-identifiers/import?type=serial&overwrite=all', file).expect(200);
    expect(all.body).toMatchObject({ imported: 0, overwritten: 2, unchanged: 4, skipped: 0 });
    expect((await db()('corporate_identifiers').where({ value: 'G6TZ8QWEHG7F' }).first()).details).toBe('Now with details');
  });

  it('imports 5,000 rows at once and refuses 5,001', async () => {
    const rows = (n: number) => Array.from({ length: n }, (_, i) => `35${String(i).padStart(13, '0')},Handset ${i}`).join('\r\n');
    const started = Date.now();
    const res = await postCsv('/api/v1/corporate-identifiers/import?type=imei', rows(5000)).expect(200);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.body).toMatchObject({ imported: 5000, overwritten: 0, unchanged: 0, skipped: 0 });
    expect(await count('corporate_identifiers', { type: 'imei' })).toBe(5000);
    expect((await db()('corporate_identifiers').where({ value: '350000000004999' }).first()).details).toBe('Handset 4999');

    const tooMany = await postCsv('/api/v1/corporate-identifiers/import?type=serial', Array.from({ length: 5001 }, (_, i) => `SER${i}`).join('\n'));
    expectProblem(tooMany, 422, 'import_invalid');
    expect(tooMany.body.errors).toEqual([expect.objectContaining({ row: null, code: 'too_many_rows' })]);
    expect(await count('corporate_identifiers', { type: 'serial' })).toBe(0);
  });

  it('takes only a text/csv body, and needs the identifier type', async () => {
    expectProblem(await s.api.post('/api/v1/corporate-identifiers/import?type=imei').send({ rows: ['353280111234572'] }), 415, 'unsupported_media_type');
    expectProblem(await s.api.post('/api/v1/corporate-identifiers/import?type=imei').set('Content-Type', 'text/plain').send('353280111234572'), 415, 'unsupported_media_type');
    expectProblem(await postCsv('/api/v1/corporate-identifiers/import', '353280111234572\n'), 400, 'validation_failed');
    expectProblem(await s.api.post('/api/v1/corporate-identifiers').set('Content-Type', 'text/csv').send('imei,353280111234572'), 415, 'unsupported_media_type');
    const empty = await postCsv('/api/v1/corporate-identifiers/import?type=imei', '');
    expectProblem(empty, 422, 'import_invalid');
    expectProblem(await as(await s.token('viewer')).post('/api/v1/corporate-identifiers/import?type=imei').set('Content-Type', 'text/csv').send('353280111234572'), 403, 'forbidden');
    expect(await count('corporate_identifiers')).toBe(0);
  });
});

// ---- pre-approved devices -----------------------------------------------------------------------------

describe('pre-approved device import', () => {
  const HEADER = 'Name,SAMAccountName,Email,Mobile,Ownership,Serial number,Device name,Platform';
  const placeholders = () => db()('devices').where({ status: 'pre_approved' }).orderBy('serial_number');

  it('dry-runs a file with errors: every row problem, nothing written', async () => {
    const res = await postCsv('/api/v1/preapproved-devices/import?dry_run=true', fixture('preapproved.errors.csv')).expect(200);
    expect(res.body.valid).toBe(false);
    expect(res.body.preview).toBeNull();
    expect(res.body.errors.map((e: { row: number; code: string }) => [e.row, e.code])).toEqual([
      [3, 'invalid_email'],
      [4, 'invalid_ownership'],
      [5, 'invalid_platform'],
      [7, 'missing_value'],
      [8, 'duplicate_serial'],
      [9, 'invalid_mobile'],
      [11, 'invalid_sam_account_name'],
      [11, 'invalid_serial'],
      [11, 'invalid_platform'],
      [13, 'missing_value'],
      [14, 'too_many_columns'],
    ]);
    expect(res.body.warnings.map((w: { code: string }) => w.code).sort()).toEqual(['password_ignored', 'unknown_column']);

    const commit = await postCsv('/api/v1/preapproved-devices/import', fixture('preapproved.errors.csv'));
    expectProblem(commit, 422, 'import_invalid');
    expect(commit.body.errors).toHaveLength(11);
    expect(await count('users')).toBe(0);
    expect(await count('preapproved_devices')).toBe(0);
    expect(await placeholders()).toHaveLength(0);
  });

  it('dry-runs a valid file with a preview of what it would do', async () => {
    const res = await postCsv('/api/v1/preapproved-devices/import?dry_run=true', fixture('preapproved.valid.csv')).expect(200);
    expect(res.body).toMatchObject({ valid: true, errors: [], preview: { users_created: 5, users_replaced: 0, users_skipped: 0, preapprovals_replaced: 0 } });
    expect(res.body.preview.devices).toHaveLength(6);
    expect(res.body.preview.devices[5]).toEqual({ row: 7, platform: 'ios', serial_number: 'DMPXK2ZBJF8J', device_name: "Alice's iPad", ownership: 'corporate', user: 'alice.moreau@example.com' });
    expect(res.body.preview.users.find((u: { email: string }) => u.email === 'alice.moreau@example.com')).toEqual({ email: 'alice.moreau@example.com', name: 'Alice Moreau-Grant', action: 'create' });
    expect(res.body.columns).toMatchObject({ Email: 'email', 'Serial number': 'serial_number' });
    expect(await count('users')).toBe(0);
    expect(await count('preapproved_devices')).toBe(0);
  });

  it('imports users and pre_approved devices that show in the device list', async () => {
    const res = await postCsv('/api/v1/preapproved-devices/import', fixture('preapproved.valid.csv')).expect(201);
    expect(res.body).toMatchObject({ import_id: expect.any(String), devices: 6, users_created: 5, users_replaced: 0, users_skipped: 0, preapprovals_replaced: 0 });
    expect(res.body.warnings).toEqual([expect.objectContaining({ code: 'password_ignored' })]);

    // The last row wins for a repeated email.
    const alice = await db()('users').where({ email: 'alice.moreau@example.com' }).first();
    expect(alice).toMatchObject({ name: 'Alice Moreau-Grant', mobile: '+447700900456', sam_account_name: 'amgrant' });
    expect(await count('users')).toBe(5);

    const list = await s.api.get('/api/v1/devices?status=pre_approved&limit=50').expect(200);
    expect(list.body.items).toHaveLength(6);
    const bySerial = Object.fromEntries(list.body.items.map((d: { serial_number: string }) => [d.serial_number, d]));
    expect(bySerial.DMPXK2ZBJF8J).toMatchObject({ platform: 'apple', status: 'pre_approved', ownership: 'corporate', name: "Alice's iPad", user: 'alice.moreau@example.com', user_id: alice.id, ownership_source: 'preapproved' });
    expect(bySerial.R58N1234ABC).toMatchObject({ platform: 'android', ownership: 'personal', name: "Bilal's Galaxy S23", user: 'bilal.khan@example.com' });
    expect(bySerial.G6TZ8QWEHG7F).toMatchObject({ platform: 'apple', name: null, user: 'wei.chen@example.com' });
    expect((await db()('devices').where({ serial_number: 'ZY22H3K9LM' }).first()).counts_for_cap).toBe(false);

    const pre = await s.api.get('/api/v1/preapproved-devices').expect(200);
    expect(pre.body.items).toHaveLength(6);
    const ipad = pre.body.items.find((p: { serial_number: string }) => p.serial_number === 'DMPXK2ZBJF8J');
    expect(ipad).toMatchObject({ platform: 'ios', ownership: 'corporate', user: 'alice.moreau@example.com', status: 'pending', device_id: null, placeholder_device_id: bySerial.DMPXK2ZBJF8J.id, import_id: res.body.import_id });
    expect((await db()('preapproved_devices').where({ serial_number: 'ZY22H3K9LM' }).first()).device_platform).toBe('android');
    expect((await eventsOf('preapproved_devices.imported'))[0]!.data).toMatchObject({ import_id: res.body.import_id, devices: 6, users_created: 5 });
  });

  it('skips or replaces existing users', async () => {
    await db()('users').insert({ email: 'farah.haddad@example.org', name: 'Old Name', mobile: '+15550100', sam_account_name: 'fhaddad' });
    const skip = await postCsv('/api/v1/preapproved-devices/import', fixture('preapproved.aliases.csv')).expect(201);
    expect(skip.body).toMatchObject({ devices: 3, users_created: 2, users_replaced: 0, users_skipped: 1 });
    expect(await db()('users').where({ email: 'farah.haddad@example.org' }).first()).toMatchObject({ name: 'Old Name', mobile: '+15550100' });

    // Importing the same serial numbers again replaces their (not yet enrolled) pre-approvals.
    const replace = await postCsv('/api/v1/preapproved-devices/import?existing_users=replace', fixture('preapproved.aliases.csv')).expect(201);
    expect(replace.body).toMatchObject({ devices: 3, users_created: 0, users_replaced: 3, users_skipped: 0, preapprovals_replaced: 3 });
    // The file has no Mobile or SAMAccountName column: those details are kept.
    expect(await db()('users').where({ email: 'farah.haddad@example.org' }).first()).toMatchObject({ name: 'Farah Haddad', mobile: '+15550100', sam_account_name: 'fhaddad' });
    expect(await count('devices', { serial_number: 'FVFDN4KXQ05P' })).toBe(1);
    expect(await db()('preapproved_devices').where({ serial_number: 'FVFDN4KXQ05P' }).first()).toMatchObject({ import_id: replace.body.import_id });
    expect(await placeholders()).toHaveLength(9);

    // A Mobile column with an empty cell does replace the mobile number.
    const file = `${HEADER}\nFarah H.,,farah.haddad@example.org,,corporate,FVFDN4KXQ05P,,macos\n`;
    await postCsv('/api/v1/preapproved-devices/import?existing_users=replace', file).expect(201);
    expect(await db()('users').where({ email: 'farah.haddad@example.org' }).first()).toMatchObject({ name: 'Farah H.', mobile: null, sam_account_name: null });
  });

  it('writes nothing when one row is bad, or a serial already enrolled', async () => {
    const before = { users: await count('users'), pre: await count('preapproved_devices'), devices: await count('devices') };
    const oneBad = [HEADER, 'New One,,new.one@example.net,,corporate,NEWSER001,,ios', 'New Two,,new.two@example,,corporate,NEWSER002,,ios', 'New Three,,new.three@example.net,,corporate,NEWSER003,,android'].join('\n');
    const res = await postCsv('/api/v1/preapproved-devices/import', oneBad);
    expectProblem(res, 422, 'import_invalid');
    expect(res.body.errors).toEqual([expect.objectContaining({ row: 3, code: 'invalid_email' })]);

    // The iPad's pre-approval enrolled: it can't be pre-approved again.
    const { device } = await s.device({ platform: 'apple', serial_number: 'DMPXK2ZBJF8J' });
    await db()('preapproved_devices').where({ serial_number: 'DMPXK2ZBJF8J' }).update({ device_id: device.id, enrolled_at: new Date() });
    const enrolled = [HEADER, 'New One,,new.one@example.net,,corporate,NEWSER001,,ios', 'Alice Moreau,,alice.moreau@example.com,,corporate,DMPXK2ZBJF8J,,macos'].join('\n');
    const dry = await postCsv('/api/v1/preapproved-devices/import?dry_run=true', enrolled).expect(200);
    expect(dry.body).toMatchObject({ valid: false, preview: null, errors: [expect.objectContaining({ row: 3, code: 'already_enrolled' })] });
    const commit = await postCsv('/api/v1/preapproved-devices/import', enrolled);
    expectProblem(commit, 422, 'import_invalid');
    expect(commit.body.errors).toEqual([expect.objectContaining({ row: 3, code: 'already_enrolled' })]);

    expect({ users: await count('users'), pre: await count('preapproved_devices'), devices: await count('devices') }).toEqual({ ...before, devices: before.devices + 1 });
    expect(await db()('users').where({ email: 'new.one@example.net' }).first()).toBeUndefined();
    const pending = await s.api.get('/api/v1/preapproved-devices?status=enrolled').expect(200);
    expect(pending.body.items).toEqual([expect.objectContaining({ serial_number: 'DMPXK2ZBJF8J', status: 'enrolled', device_id: device.id })]);
    expect((await s.api.get('/api/v1/preapproved-devices?status=pending&limit=500').expect(200)).body.items).toHaveLength(8);
  });

  it('sets a category and policy, and 404s unknown ones', async () => {
    const [category] = await db()('device_categories').insert({ name: 'Warehouse' }).returning('id');
    const policy = await s.api.post('/api/v1/policies').send({ name: 'Kiosk' }).expect(201);
    const file = `${HEADER}\nKim Lee,,kim.lee@example.com,,corporate,CATSER001,Scanner,android\n`;
    expectProblem(await postCsv(`/api/v1/preapproved-devices/import?category_id=${crypto.randomUUID()}`, file), 404, 'category_not_found');
    expectProblem(await postCsv(`/api/v1/preapproved-devices/import?policy_id=${crypto.randomUUID()}`, file), 404, 'policy_not_found');
    expectProblem(await postCsv('/api/v1/preapproved-devices/import?existing_users=merge', file), 400, 'validation_failed');
    expect(await db()('preapproved_devices').where({ serial_number: 'CATSER001' }).first()).toBeUndefined();

    await postCsv(`/api/v1/preapproved-devices/import?category_id=${category.id}&policy_id=${policy.body.id}`, file).expect(201);
    expect(await db()('devices').where({ serial_number: 'CATSER001' }).first()).toMatchObject({ status: 'pre_approved', category_id: category.id, category: 'Warehouse', policy_id: policy.body.id });
    expect(await db()('preapproved_devices').where({ serial_number: 'CATSER001' }).first()).toMatchObject({ category_id: category.id, policy_id: policy.body.id });
  });

  it('deletes a pre-approval with its placeholder', async () => {
    const pre = await db()('preapproved_devices').where({ serial_number: 'CATSER001' }).first();
    await s.api.delete(`/api/v1/preapproved-devices/${pre.id}`).expect(204);
    expect(await db()('devices').where({ id: pre.placeholder_device_id }).first()).toBeUndefined();
    expectProblem(await s.api.delete(`/api/v1/preapproved-devices/${pre.id}`), 404, 'preapproved_device_not_found');
    expect((await eventsOf('preapproved_device.deleted'))[0]!.data).toMatchObject({ preapproved_device_id: pre.id, serial_number: 'CATSER001', placeholder_deleted: true });

    // An enrolled one: the real device stays.
    const enrolled = await db()('preapproved_devices').where({ serial_number: 'DMPXK2ZBJF8J' }).first();
    await s.api.delete(`/api/v1/preapproved-devices/${enrolled.id}`).expect(204);
    expect(await db()('devices').where({ id: enrolled.device_id }).first()).toMatchObject({ status: 'enrolled' });
  });

  it('imports 5,000 devices in one go', async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `User ${i % 2500},,bulk${i % 2500}@example.com,,corporate,BULK${String(i).padStart(5, '0')},Device ${i},${i % 2 ? 'android' : 'ios'}`);
    const started = Date.now();
    const res = await postCsv('/api/v1/preapproved-devices/import', [HEADER, ...lines].join('\n')).expect(201);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.body).toMatchObject({ devices: 5000, users_created: 2500 });
    expect(await db()('preapproved_devices').where('serial_number', 'like', 'BULK%').count<Array<{ n: number }>>('* as n')).toEqual([{ n: 5000 }]);
    const placeholder = await db()('devices').where({ serial_number: 'BULK04999', status: 'pre_approved' }).first();
    expect(placeholder).toMatchObject({ platform: 'android', name: 'Device 4999', user_ref: 'bulk2499@example.com' });
    expect(await db()('preapproved_devices').where({ serial_number: 'BULK04999' }).first()).toMatchObject({ placeholder_device_id: placeholder.id, platform: 'android' });
    await db()('preapproved_devices').where('serial_number', 'like', 'BULK%').del();
    await db()('devices').where('serial_number', 'like', 'BULK%').del();
  });

  it('takes only text/csv', async () => {
    expectProblem(await s.api.post('/api/v1/preapproved-devices/import').send({ devices: [] }), 415, 'unsupported_media_type');
  });
});

// ---- reports ------------------------------------------------------------------------------------------

describe('reports', () => {
  const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);
  const daysAgo = (d: number) => new Date(Date.now() - d * 86_400_000);

  describe('enrollment failures', () => {
    const attempts = [
      { at: daysAgo(3), platform: 'apple', method: 'apple_profile', user: 'ann@example.com', reason: 'platform_blocked', facts: { os: 'ios', os_version: '17.4', serial_number: 'APL1', model: 'iPhone15,2' } },
      { at: daysAgo(2), platform: 'android', method: 'android_byod_work_profile', user: 'Bob@Example.com', reason: 'device_cap_reached', facts: { os: 'android', manufacturer: 'Google', model: 'Pixel 8' } },
      { at: daysAgo(1), platform: 'android', method: 'android_fully_managed', user: null, reason: 'manufacturer_blocked', facts: { manufacturer: '=cmd|calc', model: 'X1' } },
      { at: minutesAgo(30), platform: 'windows', method: 'windows_onpremise', user: 'bob@example.com', reason: 'device_cap_reached', facts: { os: 'windows', os_version: '10.0.22631.2428' } },
      { at: minutesAgo(5), platform: 'apple', method: 'apple_ade', user: 'ann@example.com', reason: 'device_cap_reached', facts: {} },
    ];
    const activity: string[] = [];

    beforeAll(async () => {
      for (const a of attempts) {
        const id = crypto.randomUUID();
        activity.push(id);
        await db()('enrollment_attempts').insert({
          activity_id: id,
          platform: a.platform,
          method: a.method,
          user_ref: a.user,
          reason: a.reason,
          detail: `refused: ${a.reason}`,
          facts: JSON.stringify(a.facts),
          created_at: a.at,
        });
      }
    });

    it('summarises reasons over the filter and lists attempts newest first', async () => {
      const res = await s.api.get('/api/v1/reports/enrollment-failures').expect(200);
      expect(res.body.summary).toEqual([
        { reason: 'device_cap_reached', count: 3 },
        { reason: 'manufacturer_blocked', count: 1 },
        { reason: 'platform_blocked', count: 1 },
      ]);
      expect(res.body.items.map((i: { activity_id: string }) => i.activity_id)).toEqual([...activity].reverse());
      expect(res.body.items[4]).toEqual({
        activity_id: activity[0],
        created_at: attempts[0]!.at.toISOString(),
        platform: 'apple',
        method: 'apple_profile',
        user: 'ann@example.com',
        reason: 'platform_blocked',
        detail: 'refused: platform_blocked',
        os: 'ios',
        os_version: '17.4',
        serial_number: 'APL1',
        manufacturer: null,
        model: 'iPhone15,2',
      });
      expect(res.body.next_cursor).toBeNull();
    });

    it('filters by reason, platform, user and time, and pages without changing the summary', async () => {
      const cap = await s.api.get('/api/v1/reports/enrollment-failures?reason=device_cap_reached').expect(200);
      expect(cap.body.summary).toEqual([{ reason: 'device_cap_reached', count: 3 }]);
      expect(cap.body.items.map((i: { platform: string }) => i.platform)).toEqual(['apple', 'windows', 'android']);
      const bob = await s.api.get('/api/v1/reports/enrollment-failures?user=BOB@example.com').expect(200);
      expect(bob.body.items.map((i: { activity_id: string }) => i.activity_id)).toEqual([activity[3], activity[1]]);
      const android = await s.api.get('/api/v1/reports/enrollment-failures?platform=android').expect(200);
      expect(android.body.summary).toEqual([
        { reason: 'device_cap_reached', count: 1 },
        { reason: 'manufacturer_blocked', count: 1 },
      ]);
      const recent = await s.api.get(`/api/v1/reports/enrollment-failures?since=${encodeURIComponent(minutesAgo(60).toISOString())}`).expect(200);
      expect(recent.body.items.map((i: { activity_id: string }) => i.activity_id)).toEqual([activity[4], activity[3]]);
      const older = await s.api.get(`/api/v1/reports/enrollment-failures?until=${encodeURIComponent(daysAgo(1.5).toISOString())}`).expect(200);
      expect(older.body.items.map((i: { activity_id: string }) => i.activity_id)).toEqual([activity[1], activity[0]]);

      const first = await s.api.get('/api/v1/reports/enrollment-failures?limit=2').expect(200);
      expect(first.body.items).toHaveLength(2);
      expect(first.body.summary.reduce((n: number, r: { count: number }) => n + r.count, 0)).toBe(5);
      const second = await s.api.get(`/api/v1/reports/enrollment-failures?limit=2&cursor=${first.body.next_cursor}`).expect(200);
      const third = await s.api.get(`/api/v1/reports/enrollment-failures?limit=2&cursor=${second.body.next_cursor}`).expect(200);
      expect([...first.body.items, ...second.body.items, ...third.body.items].map((i: { activity_id: string }) => i.activity_id)).toEqual([...activity].reverse());
      expect(third.body.next_cursor).toBeNull();

      expectProblem(await s.api.get('/api/v1/reports/enrollment-failures?reason=bored'), 400, 'validation_failed');
      expectProblem(await s.api.get('/api/v1/reports/enrollment-failures?since=yesterday'), 400, 'validation_failed');
    });

    it('downloads the items as CSV', async () => {
      const res = await s.api.get('/api/v1/reports/enrollment-failures?format=csv&platform=android').expect(200);
      expect(res.headers['content-type']).toMatch(/^text\/csv/);
      expect(res.headers['content-disposition']).toMatch(/^attachment; filename="enrollment-failures-.*\.csv"$/);
      const { header, rows } = readCsv(res.text);
      expect(header).toEqual(['activity_id', 'created_at', 'platform', 'method', 'user', 'reason', 'detail', 'os', 'os_version', 'serial_number', 'manufacturer', 'model']);
      expect(rows).toEqual([
        [activity[2], attempts[2]!.at.toISOString(), 'android', 'android_fully_managed', '', 'manufacturer_blocked', 'refused: manufacturer_blocked', '', '', '', "'=cmd|calc", 'X1'],
        [activity[1], attempts[1]!.at.toISOString(), 'android', 'android_byod_work_profile', 'Bob@Example.com', 'device_cap_reached', 'refused: device_cap_reached', 'android', '', '', 'Google', 'Pixel 8'],
      ]);

      const accept = await s.api.get('/api/v1/reports/enrollment-failures?limit=1').set('Accept', 'text/csv').expect(200);
      expect(accept.headers['content-type']).toMatch(/^text\/csv/);
      expect(readCsv(accept.text).rows).toHaveLength(5); // a download holds every matching row
      expect(accept.text).not.toMatch(/summary/);
      const json = await s.api.get('/api/v1/reports/enrollment-failures?format=json').set('Accept', 'text/csv').expect(200);
      expect(json.body.summary).toBeDefined();
    });
  });

  it('lists enrollments pending for more than 30 minutes', async () => {
    const { device: stuck } = await s.device({ status: 'pending', name: 'Stuck phone', serial_number: 'STUCK1', user_ref: 'ann@example.com', created_at: minutesAgo(31) });
    const { device: day } = await s.device({ status: 'pending', serial_number: 'STUCK2', created_at: minutesAgo(24 * 60) });
    await s.device({ status: 'pending', serial_number: 'FRESH1', created_at: minutesAgo(5) });
    await s.device({ status: 'enrolled', serial_number: 'DONE1', created_at: minutesAgo(120) });

    const res = await s.api.get('/api/v1/reports/incomplete-enrollments').expect(200);
    expect(res.body.items.map((d: { id: string }) => d.id)).toEqual([stuck.id, day.id]);
    expect(res.body.items[0]).toEqual({ id: stuck.id, platform: 'android', name: 'Stuck phone', serial_number: 'STUCK1', user: 'ann@example.com', created_at: stuck.created_at.toISOString(), minutes_pending: 31 });
    expect(res.body.items[1].minutes_pending).toBe(1440);
    const hour = await s.api.get('/api/v1/reports/incomplete-enrollments?older_than_minutes=60').expect(200);
    expect(hour.body.items.map((d: { id: string }) => d.id)).toEqual([day.id]);
    const fresh = await s.api.get('/api/v1/reports/incomplete-enrollments?older_than_minutes=1').expect(200);
    expect(fresh.body.items.map((d: { serial_number: string }) => d.serial_number)).toEqual(['FRESH1', 'STUCK1', 'STUCK2']);

    const csv = await s.api.get('/api/v1/reports/incomplete-enrollments?format=csv').expect(200);
    expect(csv.headers['content-disposition']).toMatch(/^attachment; filename="incomplete-enrollments-/);
    const { header, rows } = readCsv(csv.text);
    expect(header).toEqual(['id', 'platform', 'name', 'serial_number', 'user', 'created_at', 'minutes_pending']);
    expect(rows[0]).toEqual([stuck.id, 'android', 'Stuck phone', 'STUCK1', 'ann@example.com', stuck.created_at.toISOString(), '31']);
    expectProblem(await s.api.get('/api/v1/reports/incomplete-enrollments?older_than_minutes=0'), 400, 'validation_failed');
  });

  it('lists enrolled devices not seen for N days', async () => {
    // Devices made earlier in this file have not checked in: give them a recent check-in.
    await db()('devices').update({ last_seen_at: new Date() });
    const { device: old } = await s.device({ name: 'Old laptop', serial_number: 'OLD1', user_ref: 'bob@example.com', last_seen_at: daysAgo(40) });
    const { device: recent } = await s.device({ serial_number: 'RECENT1', last_seen_at: daysAgo(10) });
    const { device: never } = await s.device({ serial_number: 'NEVER1', last_seen_at: null });
    await s.device({ status: 'unenrolled', serial_number: 'GONE1', last_seen_at: daysAgo(400) });

    const res = await s.api.get('/api/v1/reports/stale-devices').expect(200);
    expect(res.body.items.map((d: { id: string }) => d.id)).toEqual([never.id, old.id]);
    expect(res.body.items[1]).toEqual({ id: old.id, platform: 'android', name: 'Old laptop', serial_number: 'OLD1', user: 'bob@example.com', last_seen_at: old.last_seen_at!.toISOString(), days_since_seen: 40 });
    expect(res.body.items[0]).toMatchObject({ serial_number: 'NEVER1', last_seen_at: null, days_since_seen: null });
    const week = await s.api.get('/api/v1/reports/stale-devices?days=7').expect(200);
    expect(week.body.items.map((d: { id: string }) => d.id)).toEqual([never.id, recent.id, old.id]);
    expect(week.body.items[1].days_since_seen).toBe(10);
    const csv = await s.api.get('/api/v1/reports/stale-devices?days=30').set('Accept', 'text/csv').expect(200);
    const { header, rows } = readCsv(csv.text);
    expect(header).toEqual(['id', 'platform', 'name', 'serial_number', 'user', 'last_seen_at', 'days_since_seen']);
    expect(rows).toEqual([
      [never.id, 'android', '', 'NEVER1', '', '', ''],
      [old.id, 'android', 'Old laptop', 'OLD1', 'bob@example.com', old.last_seen_at!.toISOString(), '40'],
    ]);
    expectProblem(await s.api.get('/api/v1/reports/stale-devices?days=0'), 400, 'validation_failed');
    expectProblem(await s.api.get('/api/v1/reports/stale-devices?days=3651'), 400, 'validation_failed');
    await as(await s.token('viewer')).get('/api/v1/reports/stale-devices').expect(200);
  });
});

describe('OpenAPI', () => {
  it('documents the governance routes, the CSV bodies and that an unassigned restriction never applies', async () => {
    const res = await supertest(s.m.app).get('/api/v1/openapi.json').expect(200);
    for (const p of [
      '/enrollment-restrictions',
      '/enrollment-restrictions/{id}',
      '/enrollment-settings',
      '/corporate-identifiers',
      '/corporate-identifiers/import',
      '/corporate-identifiers/{id}',
      '/preapproved-devices',
      '/preapproved-devices/import',
      '/preapproved-devices/{id}',
      '/reports/enrollment-failures',
      '/reports/incomplete-enrollments',
      '/reports/stale-devices',
    ]) {
      expect(res.body.paths).toHaveProperty([p]);
    }
    expect(res.body.paths['/corporate-identifiers/import'].post.requestBody.content).toHaveProperty(['text/csv']);
    expect(JSON.stringify(res.body.components.schemas.EnrollmentRestrictionRequest)).toMatch(/unassigned restriction never applies/);
    expect(res.body.paths['/enrollment-restrictions/{id}']).toHaveProperty('patch');
  });
});
