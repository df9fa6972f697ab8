/**
 * Enrollment governance, directory side, over HTTP: users and device enrollment managers (the cap of
 * 150), device categories (rename and delete as devices see them), an admin's change of a device's
 * category and ownership, terms with their versions, and the acceptance report in JSON and CSV.
 */
import supertest from 'supertest';
import { MAX_DEMS } from '../../src/core/enrollment-policy';
import { startTestServer, type TestServer } from '../helpers/server';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.stop());

const anon = () => supertest(s.m.app);
const as = (token: string) => supertest.agent(s.m.app).set('Authorization', `Bearer ${token}`);
const MISSING = '00000000-0000-4000-8000-000000000000';
let seq = 0;
/** An email no other test uses. */
const unique = (prefix: string) => `${prefix}-${++seq}-${Date.now()}@example.com`;

function expectProblem(res: supertest.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, code, type: expect.stringContaining(code), title: expect.any(String), detail: expect.any(String) });
}

/** The paths of a validation_failed problem's errors. */
function errorPaths(res: supertest.Response): string[] {
  expectProblem(res, 400, 'validation_failed');
  return res.body.errors.map((e: { path: string }) => e.path);
}

async function lastEvent(type: string, key: string, value: string): Promise<{ type: string; actor: string | null; device_id: string | null; data: Record<string, unknown> }> {
  const row = await s.m.db('events').where({ type }).whereRaw('data->>? = ?', [key, value]).orderBy('id', 'desc').first();
  expect(row).toBeDefined();
  return row;
}

async function createUser(body: Record<string, unknown>): Promise<{ id: string; email: string } & Record<string, unknown>> {
  const res = await s.api.post('/api/v1/users').send(body);
  expect(res.status).toBe(201);
  return res.body;
}

describe('users', () => {
  it('creates, shows, changes and deletes a user, with an event for each change', async () => {
    const email = unique('Alice.Moreau');
    const created = await s.api
      .post('/api/v1/users')
      .send({ email, name: 'Alice Moreau', upn: 'alice@corp.example.com', sam_account_name: 'CORP\\amoreau', mobile: '+33 6 12 34 56 78', groups: ['Sales', 'Paris', 'Sales'] })
      .expect(201);
    expect(created.headers.location).toBe(`/api/v1/users/${created.body.id}`);
    expect(created.body).toEqual({
      id: expect.any(String),
      email: email.toLowerCase(),
      name: 'Alice Moreau',
      upn: 'alice@corp.example.com',
      sam_account_name: 'CORP\\amoreau',
      mobile: '+33 6 12 34 56 78',
      groups: ['Sales', 'Paris'],
      is_dem: false,
      device_count: 0,
      dem_device_count: null,
      created_at: expect.any(String),
      updated_at: expect.any(String),
    });
    const id = created.body.id as string;
    const stored = await s.m.db('users').where({ id }).first();
    expect(stored.email).toBe(email.toLowerCase());
    expect(await lastEvent('user.created', 'user_id', id)).toMatchObject({ actor: expect.stringMatching(/^api_token:/), data: { email: email.toLowerCase(), is_dem: false } });

    // Devices: enrolled and enrolling ones count, an unenrolled one does not.
    await s.device({ user_id: id, status: 'enrolled' });
    await s.device({ user_id: id, status: 'pending' });
    await s.device({ user_id: id, status: 'unenrolled' });
    const shown = await s.api.get(`/api/v1/users/${id}`).expect(200);
    expect(shown.body).toMatchObject({ id, email: email.toLowerCase(), device_count: 2 });

    const changed = await s.api.patch(`/api/v1/users/${id}`).send({ name: 'Alice Moreau-Durand', mobile: null, groups: ['Legal'] }).expect(200);
    expect(changed.body).toMatchObject({ id, name: 'Alice Moreau-Durand', mobile: null, groups: ['Legal'], upn: 'alice@corp.example.com', device_count: 2 });
    expect(new Date(changed.body.updated_at).getTime()).toBeGreaterThanOrEqual(new Date(created.body.updated_at).getTime());
    expect((await lastEvent('user.updated', 'user_id', id)).data).toMatchObject({ changed: expect.arrayContaining(['name', 'mobile', 'groups']) });

    await s.api.delete(`/api/v1/users/${id}`).expect(204);
    expectProblem(await s.api.get(`/api/v1/users/${id}`), 404, 'user_not_found');
    expectProblem(await s.api.delete(`/api/v1/users/${id}`), 404, 'user_not_found');
    expect(await lastEvent('user.deleted', 'user_id', id)).toMatchObject({ data: { email: email.toLowerCase() } });
    // Their devices stay, without a user.
    expect(await s.m.db('devices').where({ user_id: id }).count('* as n').first()).toEqual({ n: 0 });
  });

  it('lists users by email, filtered by text and by enrollment manager, a page at a time', async () => {
    const tag = `lst${Date.now()}`;
    const made = [];
    for (const [i, name] of ['Carol', 'Bob', 'Dave', 'Anna'].entries()) {
      made.push(await createUser({ email: `${tag}-${name.toLowerCase()}@example.com`, name: `${name} ${tag}`, is_dem: i % 2 === 0 }));
    }
    const emails = made.map((u) => u.email).sort();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: supertest.Response = await s.api.get('/api/v1/users').query({ q: tag, limit: 3, ...(cursor ? { cursor } : {}) }).expect(200);
      expect(res.body.items.length).toBeLessThanOrEqual(3);
      seen.push(...res.body.items.map((u: { email: string }) => u.email));
      cursor = res.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(emails);

    const dems = await s.api.get('/api/v1/users').query({ q: tag, is_dem: 'true' }).expect(200);
    expect(dems.body.items.map((u: { name: string }) => u.name)).toEqual([`Carol ${tag}`, `Dave ${tag}`]);
    expect(dems.body.items.every((u: { dem_device_count: number | null }) => u.dem_device_count === 0)).toBe(true);
    const others = await s.api.get('/api/v1/users').query({ q: tag.toUpperCase(), is_dem: 'false' }).expect(200);
    expect(others.body.items.map((u: { name: string }) => u.name)).toEqual([`Anna ${tag}`, `Bob ${tag}`]);
    // The text matches the name and the UPN too, and % is a character, not a wildcard.
    await s.api.patch(`/api/v1/users/${made[0]!.id}`).send({ upn: `carol.upn.${tag}@corp.example.com` }).expect(200);
    expect((await s.api.get('/api/v1/users').query({ q: `carol.upn.${tag}` }).expect(200)).body.items.map((u: { id: string }) => u.id)).toEqual([made[0]!.id]);
    expect((await s.api.get('/api/v1/users').query({ q: `${tag}%` }).expect(200)).body.items).toEqual([]);

    expect(errorPaths(await s.api.get('/api/v1/users').query({ is_dem: 'yes' }))).toContain('query.is_dem');
    expectProblem(await s.api.get('/api/v1/users').query({ cursor: 'bogus' }), 400, 'validation_failed');
  });

  it('refuses invalid users, naming each problem', async () => {
    expect(errorPaths(await s.api.post('/api/v1/users').send({ email: 'not-an-email' }))).toEqual(['body.email']);
    expect(errorPaths(await s.api.post('/api/v1/users').send({ name: 'No Email' }))).toEqual(['body.email']);
    const unknownField = await s.api.post('/api/v1/users').send({ email: unique('x'), department: 'Sales' });
    expect(errorPaths(unknownField)).toEqual(['body']);
    expect(unknownField.body.detail).toMatch(/department/);
    const groups = Array.from({ length: 51 }, (_, i) => `g${i}`);
    expect(errorPaths(await s.api.post('/api/v1/users').send({ email: unique('x'), groups }))).toEqual(['body.groups']);
    const longGroup = await s.api.post('/api/v1/users').send({ email: unique('x'), groups: ['ok', 'g'.repeat(101)] });
    expect(errorPaths(longGroup)).toEqual(['body.groups.1']);
    expect(longGroup.body.errors[0].message).toBe('must be at most 100 characters');
    expect(errorPaths(await s.api.post('/api/v1/users').send({ email: unique('x'), groups: [''] }))).toEqual(['body.groups.0']);
    expect(errorPaths(await s.api.post('/api/v1/users').send({ email: unique('x'), is_dem: 'yes' }))).toEqual(['body.is_dem']);

    const user = await createUser({ email: unique('valid') });
    const empty = await s.api.patch(`/api/v1/users/${user.id}`).send({});
    expectProblem(empty, 400, 'validation_failed');
    expect(empty.body.detail).toMatch(/at least one field/);
    expect(errorPaths(await s.api.patch(`/api/v1/users/${user.id}`).send({ email: 'nope' }))).toEqual(['body.email']);
    expectProblem(await s.api.patch(`/api/v1/users/${MISSING}`).send({ name: 'x' }), 404, 'user_not_found');
    expectProblem(await s.api.get('/api/v1/users/not-a-uuid'), 404, 'user_not_found');
    expect(await s.m.db('users').where('email', 'like', 'x-%').count('* as n').first()).toEqual({ n: 0 });
  });

  it('refuses a second user with the same email in any case, on create and on change', async () => {
    const email = unique('dup');
    await createUser({ email });
    expectProblem(await s.api.post('/api/v1/users').send({ email: email.toUpperCase() }), 409, 'user_exists');
    const other = await createUser({ email: unique('other') });
    const res = await s.api.patch(`/api/v1/users/${other.id}`).send({ email: email.toUpperCase() });
    expectProblem(res, 409, 'user_exists');
    expect((await s.api.get(`/api/v1/users/${other.id}`).expect(200)).body.email).toBe(other.email);
  });

  it('counts the devices an enrollment manager enrolled', async () => {
    const dem = await createUser({ email: unique('dem'), is_dem: true });
    expect(dem).toMatchObject({ is_dem: true, dem_device_count: 0 });
    for (let i = 0; i < 3; i++) await s.device({ enrolled_by: dem.id, ownership_source: 'dem' });
    expect((await s.api.get(`/api/v1/users/${dem.id}`).expect(200)).body).toMatchObject({ is_dem: true, dem_device_count: 3, device_count: 0 });
    const demoted = await s.api.patch(`/api/v1/users/${dem.id}`).send({ is_dem: false }).expect(200);
    expect(demoted.body).toMatchObject({ is_dem: false, dem_device_count: null });
    expect((await lastEvent('user.updated', 'user_id', dem.id)).data).toMatchObject({ is_dem: false });
  });
});

describe('the cap of 150 device enrollment managers', () => {
  const BULK = 'bulk-dem-';
  afterAll(async () => {
    await s.m.db('users').where('email', 'like', `${BULK}%`).del();
  });

  it('refuses the 151st, on create and on promotion, and lets one in when another steps down', async () => {
    await s.m.db('users').where({ is_dem: true }).update({ is_dem: false });
    await s.m.db('users').insert(Array.from({ length: MAX_DEMS - 1 }, (_, i) => ({ email: `${BULK}${i}@example.com`, is_dem: true })));
    const last = await createUser({ email: unique('dem-150'), is_dem: true }); // the 150th, through the API
    expect(last.is_dem).toBe(true);
    expect((await s.api.get('/api/v1/users').query({ is_dem: 'true', limit: 500 }).expect(200)).body.items).toHaveLength(MAX_DEMS);

    const tooMany = await s.api.post('/api/v1/users').send({ email: unique('dem-151'), is_dem: true });
    expectProblem(tooMany, 409, 'dem_limit_reached');
    expect(tooMany.body.detail).toMatch(/150/);
    expect(await s.m.db('users').where('email', 'like', 'dem-151-%').first()).toBeUndefined();

    const plain = await createUser({ email: unique('plain') });
    expectProblem(await s.api.patch(`/api/v1/users/${plain.id}`).send({ is_dem: true }), 409, 'dem_limit_reached');
    expect((await s.api.get(`/api/v1/users/${plain.id}`).expect(200)).body.is_dem).toBe(false);
    // A DEM already counted can still be edited, is_dem included.
    await s.api.patch(`/api/v1/users/${last.id}`).send({ is_dem: true, name: 'Still a DEM' }).expect(200);

    await s.api.patch(`/api/v1/users/${last.id}`).send({ is_dem: false }).expect(200);
    const promoted = await s.api.patch(`/api/v1/users/${plain.id}`).send({ is_dem: true }).expect(200);
    expect(promoted.body.is_dem).toBe(true);
    expect(await s.m.db('users').where({ is_dem: true }).count('* as n').first()).toEqual({ n: MAX_DEMS });
  });

  it('lets only one of several simultaneous promotions take the last place', async () => {
    await s.m.db('users').where({ is_dem: true }).whereNot('email', 'like', `${BULK}%`).update({ is_dem: false });
    expect(await s.m.db('users').where({ is_dem: true }).count('* as n').first()).toEqual({ n: MAX_DEMS - 1 });
    const candidates = [];
    for (let i = 0; i < 4; i++) candidates.push(await createUser({ email: unique('race') }));
    const results = await Promise.all(candidates.map((u) => s.api.patch(`/api/v1/users/${u.id}`).send({ is_dem: true })));
    expect(results.map((r) => r.status).sort()).toEqual([200, 409, 409, 409]);
    expect(await s.m.db('users').where({ is_dem: true }).count('* as n').first()).toEqual({ n: MAX_DEMS });
  });
});

describe('device categories', () => {
  it('creates, lists, shows, renames and deletes categories, with device counts and events', async () => {
    const created = await s.api.post('/api/v1/device-categories').send({ name: '  Sales  ', description: 'Field sales phones' }).expect(201);
    expect(created.body).toEqual({ id: expect.any(String), name: 'Sales', description: 'Field sales phones', device_count: 0, created_at: expect.any(String), updated_at: expect.any(String) });
    expect(created.headers.location).toBe(`/api/v1/device-categories/${created.body.id}`);
    const hr = await s.api.post('/api/v1/device-categories').send({ name: 'HR' }).expect(201);
    expect(hr.body.description).toBeNull();
    expect(await lastEvent('category.created', 'category_id', created.body.id)).toMatchObject({ actor: expect.stringMatching(/^api_token:/), data: { name: 'Sales' } });

    await s.device({ category_id: created.body.id, category: 'Sales' });
    const list = await s.api.get('/api/v1/device-categories').expect(200);
    const names = list.body.items.map((c: { name: string }) => c.name);
    expect(names).toEqual([...names].sort((a: string, b: string) => a.toLowerCase().localeCompare(b.toLowerCase())));
    expect(list.body.items.find((c: { id: string }) => c.id === created.body.id)).toMatchObject({ name: 'Sales', device_count: 1 });

    const shown = await s.api.get(`/api/v1/device-categories/${hr.body.id}`).expect(200);
    expect(shown.body).toMatchObject({ name: 'HR', device_count: 0 });
    const described = await s.api.patch(`/api/v1/device-categories/${hr.body.id}`).send({ description: 'People team' }).expect(200);
    expect(described.body).toMatchObject({ name: 'HR', description: 'People team' });
    expect((await lastEvent('category.updated', 'category_id', hr.body.id)).data).toMatchObject({ name: 'HR' });

    await s.api.delete(`/api/v1/device-categories/${hr.body.id}`).expect(204);
    expectProblem(await s.api.get(`/api/v1/device-categories/${hr.body.id}`), 404, 'category_not_found');
    expectProblem(await s.api.delete(`/api/v1/device-categories/${hr.body.id}`), 404, 'category_not_found');
    expectProblem(await s.api.patch(`/api/v1/device-categories/${MISSING}`).send({ name: 'x' }), 404, 'category_not_found');
    expect(await lastEvent('category.deleted', 'category_id', hr.body.id)).toMatchObject({ data: { name: 'HR', devices_unassigned: 0 } });
  });

  it('refuses a name already taken in any case, on create and on rename', async () => {
    await s.api.post('/api/v1/device-categories').send({ name: 'Warehouse' }).expect(201);
    expectProblem(await s.api.post('/api/v1/device-categories').send({ name: 'WAREHOUSE' }), 409, 'category_exists');
    const other = await s.api.post('/api/v1/device-categories').send({ name: 'Kiosks' }).expect(201);
    expectProblem(await s.api.patch(`/api/v1/device-categories/${other.body.id}`).send({ name: 'warehouse' }), 409, 'category_exists');
    // A change of case of its own name is a rename, not a clash.
    expect((await s.api.patch(`/api/v1/device-categories/${other.body.id}`).send({ name: 'KIOSKS' }).expect(200)).body.name).toBe('KIOSKS');
  });

  it('refuses invalid categories', async () => {
    expect(errorPaths(await s.api.post('/api/v1/device-categories').send({ name: '   ' }))).toEqual(['body.name']);
    expect(errorPaths(await s.api.post('/api/v1/device-categories').send({ name: 'n'.repeat(101) }))).toEqual(['body.name']);
    expect(errorPaths(await s.api.post('/api/v1/device-categories').send({ name: 'Long', description: 'd'.repeat(501) }))).toEqual(['body.description']);
    expect(errorPaths(await s.api.post('/api/v1/device-categories').send({ name: 'Colour', colour: 'red' }))).toEqual(['body']);
    const c = await s.api.post('/api/v1/device-categories').send({ name: 'Valid' }).expect(201);
    expectProblem(await s.api.patch(`/api/v1/device-categories/${c.body.id}`).send({}), 400, 'validation_failed');
  });

  it('renames the category on its devices, and leaves them unassigned when it is deleted', async () => {
    const cat = await s.api.post('/api/v1/device-categories').send({ name: 'Accounting' }).expect(201);
    const { device } = await s.device();
    await s.api.patch(`/api/v1/devices/${device.id}`).send({ category_id: cat.body.id }).expect(200);
    const other = (await s.device()).device;
    await s.api.patch(`/api/v1/devices/${other.id}`).send({ category_id: cat.body.id }).expect(200);

    await s.api.patch(`/api/v1/device-categories/${cat.body.id}`).send({ name: 'Finance' }).expect(200);
    expect((await s.api.get(`/api/v1/devices/${device.id}`).expect(200)).body).toMatchObject({ category: 'Finance', category_id: cat.body.id });
    expect((await lastEvent('category.updated', 'category_id', cat.body.id)).data).toMatchObject({ name: 'Finance', previous_name: 'Accounting', devices_renamed: 2 });

    await s.api.delete(`/api/v1/device-categories/${cat.body.id}`).expect(204);
    const after = await s.api.get(`/api/v1/devices/${device.id}`).expect(200);
    expect(after.body).toMatchObject({ id: device.id, status: 'enrolled', category: null, category_id: null });
    expect((await s.api.get(`/api/v1/devices/${other.id}`).expect(200)).body.category).toBeNull();
    expect(await lastEvent('category.deleted', 'category_id', cat.body.id)).toMatchObject({ data: { name: 'Finance', devices_unassigned: 2 } });
  });
});

describe("an admin's change to a device", () => {
  it('sets and clears the category, and sets ownership as the admin decided', async () => {
    const cat = await s.api.post('/api/v1/device-categories').send({ name: 'Field tablets' }).expect(201);
    const { device } = await s.device({ ownership: 'corporate', ownership_source: 'token' });

    const both = await s.api.patch(`/api/v1/devices/${device.id}`).send({ category_id: cat.body.id, ownership: 'personal' }).expect(200);
    expect(both.body).toMatchObject({ id: device.id, category: 'Field tablets', category_id: cat.body.id, ownership: 'personal', ownership_source: 'admin', status: 'enrolled' });
    const stored = await s.m.db('devices').where({ id: device.id }).first();
    expect(stored).toMatchObject({ category: 'Field tablets', category_id: cat.body.id, ownership: 'personal', ownership_source: 'admin' });
    const catEvent = await s.m.db('events').where({ type: 'device.category_changed', device_id: device.id }).orderBy('id', 'desc').first();
    expect(catEvent).toMatchObject({ actor: expect.stringMatching(/^api_token:/), data: { from: { id: null, name: null }, to: { id: cat.body.id, name: 'Field tablets' } } });
    const ownEvent = await s.m.db('events').where({ type: 'device.ownership_changed', device_id: device.id }).orderBy('id', 'desc').first();
    expect(ownEvent).toMatchObject({ data: { from: 'corporate', to: 'personal', previous_source: 'token', source: 'admin' } });

    const back = await s.api.patch(`/api/v1/devices/${device.id}`).send({ ownership: 'corporate' }).expect(200);
    expect(back.body).toMatchObject({ ownership: 'corporate', ownership_source: 'admin', category: 'Field tablets' });
    const cleared = await s.api.patch(`/api/v1/devices/${device.id}`).send({ category_id: null }).expect(200);
    expect(cleared.body).toMatchObject({ category: null, category_id: null, ownership: 'corporate' });
    expect(await s.m.db('events').where({ type: 'device.category_changed', device_id: device.id }).count('* as n').first()).toEqual({ n: 2 });
  });

  it('refuses unknown devices and categories and invalid changes, changing nothing', async () => {
    const { device } = await s.device({ ownership: 'corporate' });
    expectProblem(await s.api.patch(`/api/v1/devices/${device.id}`).send({ category_id: MISSING, ownership: 'personal' }), 404, 'category_not_found');
    expect(await s.m.db('devices').where({ id: device.id }).first()).toMatchObject({ ownership: 'corporate', category_id: null });
    expectProblem(await s.api.patch(`/api/v1/devices/${MISSING}`).send({ ownership: 'personal' }), 404, 'device_not_found');
    expectProblem(await s.api.patch('/api/v1/devices/not-a-uuid').send({ ownership: 'personal' }), 404, 'device_not_found');
    const empty = await s.api.patch(`/api/v1/devices/${device.id}`).send({});
    expectProblem(empty, 400, 'validation_failed');
    expect(empty.body.detail).toMatch(/category_id, ownership or both/);
    expect(errorPaths(await s.api.patch(`/api/v1/devices/${device.id}`).send({ ownership: 'unknown' }))).toEqual(['body.ownership']);
    expect(errorPaths(await s.api.patch(`/api/v1/devices/${device.id}`).send({ category_id: 'sales' }))).toEqual(['body.category_id']);
    const unknownField = await s.api.patch(`/api/v1/devices/${device.id}`).send({ name: 'renamed' });
    expect(new Set(errorPaths(unknownField))).toEqual(new Set(['body']));
    expect(unknownField.body.detail).toMatch(/"name"/);
    expect(await s.m.db('devices').where({ id: device.id }).first()).toMatchObject({ ownership: 'corporate', category_id: null, name: device.name });
  });
});

describe('terms', () => {
  const terms = {
    name: 'Contoso BYOD terms',
    description: 'For personal devices',
    title: 'Contoso Company Terms',
    summary: 'By enrolling your device, you agree to Contoso company policies and terms.',
    text: 'I acknowledge that by enrolling my device, Contoso administrators will have certain types of control.',
  };

  it('creates terms at version 1 and changes them, bumping the version only when users must accept again', async () => {
    const created = await s.api.post('/api/v1/terms').send(terms).expect(201);
    expect(created.body).toEqual({ id: expect.any(String), ...terms, version: 1, assign_all_users: true, assign_groups: [], created_at: expect.any(String), updated_at: expect.any(String) });
    const id = created.body.id as string;
    expect(created.headers.location).toBe(`/api/v1/terms/${id}`);
    expect(await s.m.db('terms_versions').where({ terms_id: id }).select('version', 'title', 'text')).toEqual([{ version: 1, title: terms.title, text: terms.text }]);
    expect(await lastEvent('terms.created', 'terms_id', id)).toMatchObject({ actor: expect.stringMatching(/^api_token:/), data: { version: 1 } });

    expect((await s.api.get(`/api/v1/terms/${id}`).expect(200)).body).toMatchObject({ ...terms, version: 1 });
    expect((await s.api.get('/api/v1/terms').expect(200)).body.items.map((t: { id: string }) => t.id)).toContain(id);

    // A typo fix keeps the version, and the stored version 1 text follows.
    const fixed = await s.api.patch(`/api/v1/terms/${id}`).send({ text: `${terms.text} Typo fixed.` }).expect(200);
    expect(fixed.body).toMatchObject({ version: 1, text: `${terms.text} Typo fixed.` });
    expect(await s.m.db('terms_versions').where({ terms_id: id }).select('version', 'text')).toEqual([{ version: 1, text: `${terms.text} Typo fixed.` }]);
    expect((await lastEvent('terms.updated', 'terms_id', id)).data).toMatchObject({ version: 1, reacceptance_required: false, changed: ['text'] });

    const bumped = await s.api.patch(`/api/v1/terms/${id}`).send({ text: 'New meaning.', require_reacceptance: true }).expect(200);
    expect(bumped.body).toMatchObject({ version: 2, text: 'New meaning.', title: terms.title });
    expect(await s.m.db('terms_versions').where({ terms_id: id }).orderBy('version').select('version', 'text')).toEqual([
      { version: 1, text: `${terms.text} Typo fixed.` },
      { version: 2, text: 'New meaning.' },
    ]);
    expect((await lastEvent('terms.updated', 'terms_id', id)).data).toMatchObject({ version: 2, reacceptance_required: true });

    // Re-acceptance alone bumps too; an assignment change does not.
    expect((await s.api.patch(`/api/v1/terms/${id}`).send({ require_reacceptance: true }).expect(200)).body.version).toBe(3);
    const assigned = await s.api.patch(`/api/v1/terms/${id}`).send({ assign_all_users: false, assign_groups: ['BYOD'], require_reacceptance: false }).expect(200);
    expect(assigned.body).toMatchObject({ version: 3, assign_all_users: false, assign_groups: ['BYOD'] });
    expect(await s.m.db('terms_versions').where({ terms_id: id }).count('* as n').first()).toEqual({ n: 3 });

    await s.api.delete(`/api/v1/terms/${id}`).expect(204);
    expectProblem(await s.api.get(`/api/v1/terms/${id}`), 404, 'terms_not_found');
    expectProblem(await s.api.delete(`/api/v1/terms/${id}`), 404, 'terms_not_found');
    expectProblem(await s.api.patch(`/api/v1/terms/${id}`).send({ name: 'x' }), 404, 'terms_not_found');
    expect(await s.m.db('terms_versions').where({ terms_id: id }).count('* as n').first()).toEqual({ n: 0 });
    expect(await lastEvent('terms.deleted', 'terms_id', id)).toMatchObject({ data: { version: 3 } });
  });

  it('refuses invalid terms', async () => {
    const { title: _title, ...noTitle } = terms;
    expect(errorPaths(await s.api.post('/api/v1/terms').send(noTitle))).toEqual(['body.title']);
    expect(errorPaths(await s.api.post('/api/v1/terms').send({ ...terms, name: '' }))).toEqual(['body.name']);
    expect(errorPaths(await s.api.post('/api/v1/terms').send({ ...terms, summary: 's'.repeat(2001) }))).toEqual(['body.summary']);
    expect(errorPaths(await s.api.post('/api/v1/terms').send({ ...terms, description: 'd'.repeat(1001) }))).toEqual(['body.description']);
    expect(errorPaths(await s.api.post('/api/v1/terms').send({ ...terms, assign_groups: 'Sales' }))).toEqual(['body.assign_groups']);
    expect(errorPaths(await s.api.post('/api/v1/terms').send({ ...terms, version: 7 }))).toEqual(['body']);
    const created = await s.api.post('/api/v1/terms').send(terms).expect(201);
    expectProblem(await s.api.patch(`/api/v1/terms/${created.body.id}`).send({}), 400, 'validation_failed');
    expect(errorPaths(await s.api.patch(`/api/v1/terms/${created.body.id}`).send({ require_reacceptance: 'yes' }))).toEqual(['body.require_reacceptance']);
    expectProblem(await s.api.get('/api/v1/terms/not-a-uuid'), 404, 'terms_not_found');
  });
});

describe('the acceptance report', () => {
  it('lists assigned users and anyone who accepted, with the version each accepted, in JSON and CSV', async () => {
    const tag = `rep${Date.now()}`;
    const group = `Legal-${tag}`;
    const ann = await createUser({ email: `${tag}-ann@example.com`, name: 'Ann Accepted', upn: `ann@${tag}.example.com`, groups: [group] });
    const ben = await createUser({ email: `${tag}-ben@example.com`, name: 'Ben, "Never" Accepted', groups: [group, 'Other'] });
    const cid = await createUser({ email: `${tag}-cid@example.com`, name: 'Cid Moved', groups: ['Elsewhere'] });
    await createUser({ email: `${tag}-dee@example.com`, name: 'Dee Unassigned', groups: ['Elsewhere'] });
    const created = await s.api
      .post('/api/v1/terms')
      .send({ name: 'Legal terms', title: 'Legal', summary: 'Summary', text: 'Text', assign_all_users: false, assign_groups: [group] })
      .expect(201);
    const id = created.body.id as string;
    const annAt = new Date('2024-03-01T10:00:00.000Z');
    const cidAt = new Date('2024-03-02T11:30:00.000Z');
    await s.m.db('terms_acceptances').insert([
      { terms_id: id, version: 1, user_id: ann.id, accepted_at: annAt },
      { terms_id: id, version: 1, user_id: cid.id, accepted_at: cidAt },
    ]);

    const report = await s.api.get(`/api/v1/terms/${id}/acceptances`).expect(200);
    expect(report.headers['content-type']).toMatch(/^application\/json/);
    expect(report.body).toEqual({
      terms_id: id,
      version: 1,
      items: [
        { user_id: ann.id, email: ann.email, name: 'Ann Accepted', upn: `ann@${tag}.example.com`, accepted_version: 1, accepted_at: annAt.toISOString(), accepted_latest: true },
        { user_id: ben.id, email: ben.email, name: 'Ben, "Never" Accepted', upn: null, accepted_version: null, accepted_at: null, accepted_latest: false },
        { user_id: cid.id, email: cid.email, name: 'Cid Moved', upn: null, accepted_version: 1, accepted_at: cidAt.toISOString(), accepted_latest: true },
      ],
    });

    // A new version: nobody has accepted the latest until they accept again.
    await s.api.patch(`/api/v1/terms/${id}`).send({ text: 'Changed meaning', require_reacceptance: true }).expect(200);
    const afterBump = await s.api.get(`/api/v1/terms/${id}/acceptances`).expect(200);
    expect(afterBump.body.version).toBe(2);
    expect(afterBump.body.items.map((a: { accepted_version: number | null; accepted_latest: boolean }) => [a.accepted_version, a.accepted_latest])).toEqual([
      [1, false],
      [null, false],
      [1, false],
    ]);
    const annAt2 = new Date('2024-04-01T09:15:00.000Z');
    await s.m.db('terms_acceptances').insert({ terms_id: id, version: 2, user_id: ann.id, accepted_at: annAt2 });
    const reaccepted = await s.api.get(`/api/v1/terms/${id}/acceptances`).expect(200);
    expect(reaccepted.body.items[0]).toMatchObject({ user_id: ann.id, accepted_version: 2, accepted_at: annAt2.toISOString(), accepted_latest: true });

    const csv = await s.api.get(`/api/v1/terms/${id}/acceptances`).query({ format: 'csv' }).expect(200);
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(csv.headers['content-disposition']).toBe(`attachment; filename="terms-${id}-acceptances.csv"`);
    expect(csv.text.split('\r\n')).toEqual([
      'User name,Email,UPN,Accepted version,Accepted time,Accepted latest',
      `Ann Accepted,${ann.email},ann@${tag}.example.com,2,${annAt2.toISOString()},true`,
      `"Ben, ""Never"" Accepted",${ben.email},,,,false`,
      `Cid Moved,${cid.email},,1,${cidAt.toISOString()},false`,
      '',
    ]);
    const byAccept = await s.api.get(`/api/v1/terms/${id}/acceptances`).set('Accept', 'text/csv').expect(200);
    expect(byAccept.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(byAccept.text).toBe(csv.text);

    expectProblem(await s.api.get(`/api/v1/terms/${MISSING}/acceptances`), 404, 'terms_not_found');
    expectProblem(await s.api.get(`/api/v1/terms/${MISSING}/acceptances`).query({ format: 'csv' }), 404, 'terms_not_found');
    expect(errorPaths(await s.api.get(`/api/v1/terms/${id}/acceptances`).query({ format: 'xlsx' }))).toEqual(['query.format']);
  });

  it('covers every user for terms assigned to all users', async () => {
    const user = await createUser({ email: unique('everyone') });
    const created = await s.api.post('/api/v1/terms').send({ name: 'All', title: 'All', summary: 'S', text: 'T' }).expect(201);
    const report = await s.api.get(`/api/v1/terms/${created.body.id}/acceptances`).expect(200);
    const total = await s.m.db('users').count('* as n').first();
    expect(report.body.items).toHaveLength(Number(total!.n));
    expect(report.body.items.find((a: { user_id: string }) => a.user_id === user.id)).toMatchObject({ accepted_version: null, accepted_latest: false });
    const emails = report.body.items.map((a: { email: string }) => a.email);
    expect(emails).toEqual([...emails].sort());
  });
});

describe('roles', () => {
  it('lets a viewer read users, categories and terms, but change none of them', async () => {
    const viewer = as(await s.token('viewer'));
    const user = await createUser({ email: unique('seen') });
    const cat = await s.api.post('/api/v1/device-categories').send({ name: `Seen ${Date.now()}` }).expect(201);
    const terms = await s.api.post('/api/v1/terms').send({ name: 'Seen', title: 'Seen', summary: 'S', text: 'T' }).expect(201);
    const { device } = await s.device();

    await viewer.get('/api/v1/users').expect(200);
    await viewer.get(`/api/v1/users/${user.id}`).expect(200);
    await viewer.get('/api/v1/device-categories').expect(200);
    await viewer.get(`/api/v1/device-categories/${cat.body.id}`).expect(200);
    await viewer.get('/api/v1/terms').expect(200);
    await viewer.get(`/api/v1/terms/${terms.body.id}`).expect(200);
    await viewer.get(`/api/v1/terms/${terms.body.id}/acceptances`).expect(200);
    await viewer.get(`/api/v1/terms/${terms.body.id}/acceptances?format=csv`).expect(200);

    for (const res of [
      await viewer.post('/api/v1/users').send({ email: unique('nope') }),
      await viewer.patch(`/api/v1/users/${user.id}`).send({ is_dem: true }),
      await viewer.delete(`/api/v1/users/${user.id}`),
      await viewer.post('/api/v1/device-categories').send({ name: 'Nope' }),
      await viewer.patch(`/api/v1/device-categories/${cat.body.id}`).send({ name: 'Nope' }),
      await viewer.delete(`/api/v1/device-categories/${cat.body.id}`),
      await viewer.patch(`/api/v1/devices/${device.id}`).send({ ownership: 'personal' }),
      await viewer.post('/api/v1/terms').send({ name: 'Nope', title: 'N', summary: 'S', text: 'T' }),
      await viewer.patch(`/api/v1/terms/${terms.body.id}`).send({ require_reacceptance: true }),
      await viewer.delete(`/api/v1/terms/${terms.body.id}`),
    ]) {
      expectProblem(res, 403, 'forbidden');
      expect(res.body.required_scope).toBe('governance:write');
    }
    // An operator manages devices but not their ownership or category.
    expectProblem(await as(await s.token('operator')).patch(`/api/v1/devices/${device.id}`).send({ ownership: 'personal' }), 403, 'forbidden');
    expect(await s.m.db('devices').where({ id: device.id }).first()).toMatchObject({ ownership: 'corporate', ownership_source: null });
    expect((await s.api.get(`/api/v1/terms/${terms.body.id}`).expect(200)).body.version).toBe(1);
    expectProblem(await anon().get('/api/v1/users'), 401, 'unauthorized');
  });
});

describe('the OpenAPI document', () => {
  it('describes every directory endpoint with its schemas', async () => {
    const res = await anon().get('/api/v1/openapi.json').expect(200);
    const paths = res.body.paths;
    expect(Object.keys(paths['/users'])).toEqual(expect.arrayContaining(['get', 'post']));
    expect(Object.keys(paths['/users/{id}'])).toEqual(expect.arrayContaining(['get', 'patch', 'delete']));
    expect(Object.keys(paths['/device-categories'])).toEqual(expect.arrayContaining(['get', 'post']));
    expect(Object.keys(paths['/device-categories/{id}'])).toEqual(expect.arrayContaining(['get', 'patch', 'delete']));
    expect(Object.keys(paths['/devices/{id}'])).toEqual(expect.arrayContaining(['get', 'patch']));
    expect(Object.keys(paths['/terms'])).toEqual(expect.arrayContaining(['get', 'post']));
    expect(Object.keys(paths['/terms/{id}'])).toEqual(expect.arrayContaining(['get', 'patch', 'delete']));
    expect(Object.keys(paths['/terms/{id}/acceptances'])).toEqual(['get']);
    for (const name of ['User', 'UserRequest', 'UserChange', 'UserPage', 'DeviceCategory', 'DeviceCategoryList', 'DeviceChange', 'Terms', 'TermsRequest', 'TermsChange', 'TermsAcceptanceReport']) {
      expect(res.body.components.schemas).toHaveProperty([name]);
    }
    expect(paths['/users'].get.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['q', 'is_dem', 'limit', 'cursor']));
    expect(paths['/terms/{id}'].patch.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/TermsChange' });
    expect(paths['/users/{id}'].patch.description).toMatch(/governance:write/);
  });
});
