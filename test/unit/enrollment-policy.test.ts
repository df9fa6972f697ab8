/**
 * The enrollment rule engine on its own: restriction selection by priority and assignment, version
 * formats, each refusal reason and its precedence, ownership provenance, DEM rules, staged facts.
 */
import {
  compareVersions,
  DeviceLimitSettingsSchema,
  evaluateEnrollment,
  parseVersion,
  PlatformRestrictionSettingsSchema,
  REFUSAL_MESSAGES,
  REFUSAL_REASONS,
  reportedVersion,
  selectRestriction,
  type EnrollmentContext,
  type EnrollmentFacts,
  type Restriction,
} from '../../src/core/enrollment-policy';
import { refusalFault } from '../../protocols/windows/faults';

const defaults: Restriction[] = [
  { id: 'p0', kind: 'platform', name: 'Default platforms', is_default: true, priority: null, assign_all_users: true, assign_groups: [], assign_users: [], settings: { platforms: {} } },
  { id: 'l0', kind: 'device_limit', name: 'Default limit', is_default: true, priority: null, assign_all_users: true, assign_groups: [], assign_users: [], settings: { limit: 5 } },
];

function ctx(over: Partial<EnrollmentContext> = {}): EnrollmentContext {
  return { restrictions: defaults, preapprovedOnly: false, userDeviceCount: 0, demDeviceCount: 0, pendingTerms: [], ...over };
}

function facts(over: Partial<EnrollmentFacts> = {}): EnrollmentFacts {
  return { platform: 'android', method: 'android_byod_work_profile', os: 'android', osVersion: '14', manufacturer: 'Google', userRef: 'ana@example.com', ownershipClaim: 'unknown', final: true, ...over };
}

function platformRestriction(id: string, priority: number, platforms: Record<string, unknown>, assign: Partial<Restriction> = {}): Restriction {
  return { id, kind: 'platform', name: id, is_default: false, priority, assign_all_users: false, assign_groups: [], assign_users: [], settings: PlatformRestrictionSettingsSchema.parse({ platforms }), ...assign };
}

describe('versions', () => {
  it('parses each platform format and compares numerically, missing parts as zero', () => {
    expect(parseVersion('10.0.22631.2428')).toEqual([10, 0, 22631, 2428]);
    expect(parseVersion('17.4.1', 3)).toEqual([17, 4, 1]);
    expect(parseVersion('17.4.1.2', 3)).toBeUndefined();
    expect(parseVersion('17.x')).toBeUndefined();
    expect(compareVersions([17, 4], [17, 4, 0])).toBe(0);
    expect(compareVersions([17, 10], [17, 9, 9])).toBe(1);
    expect(compareVersions([9], [10])).toBe(-1);
  });

  it('reads what devices report, ignoring trailing words', () => {
    expect(reportedVersion('14 QPR2')).toEqual([14]);
    expect(reportedVersion('10.0.19045.3803')).toEqual([10, 0, 19045, 3803]);
    expect(reportedVersion('beta')).toBeUndefined();
    expect(reportedVersion(undefined)).toBeUndefined();
  });

  it('validates restriction settings in the platform format', () => {
    expect(PlatformRestrictionSettingsSchema.safeParse({ platforms: { ios: { os_min: '17.4.1.9' } } }).success).toBe(false);
    expect(PlatformRestrictionSettingsSchema.safeParse({ platforms: { windows: { os_min: '10.0.22631.2428' } } }).success).toBe(true);
    expect(PlatformRestrictionSettingsSchema.safeParse({ platforms: { android: { os_min: '14', os_max: '12' } } }).success).toBe(false);
    expect(PlatformRestrictionSettingsSchema.safeParse({ platforms: { ios: { blocked_manufacturers: ['Apple'] } } }).success).toBe(false);
    expect(DeviceLimitSettingsSchema.safeParse({ limit: 16 }).success).toBe(false);
    expect(DeviceLimitSettingsSchema.safeParse({ limit: 0 }).success).toBe(false);
  });
});

describe('restriction selection', () => {
  const high = platformRestriction('high', 1, {}, { assign_groups: ['sales'] });
  const low = platformRestriction('low', 5, {}, { assign_all_users: true });
  const unassigned = platformRestriction('unassigned', 0, {});
  const all = [...defaults, low, high, unassigned];

  it('takes the highest-priority restriction assigned to the user', () => {
    expect(selectRestriction(all, 'platform', { id: 'u', email: 'joe@example.com', is_dem: false, groups: ['sales'] }, 'joe@example.com')?.id).toBe('high');
    expect(selectRestriction(all, 'platform', { id: 'u', email: 'amy@example.com', is_dem: false, groups: [] }, 'amy@example.com')?.id).toBe('low');
  });

  it('matches assigned users by email case-insensitively, and never applies an unassigned one', () => {
    const byUser = platformRestriction('by-user', 2, {}, { assign_users: ['kim@example.com'] });
    expect(selectRestriction([...defaults, byUser, unassigned], 'platform', undefined, 'KIM@example.com')?.id).toBe('by-user');
    expect(selectRestriction([...defaults, unassigned], 'platform', undefined, 'kim@example.com')?.id).toBe('p0');
  });

  it('gives userless enrollments the default', () => {
    expect(selectRestriction(all, 'platform', undefined, undefined)?.id).toBe('p0');
  });
});

describe('refusals', () => {
  it('blocks a platform, and an OS version outside the range', () => {
    const r = platformRestriction('r', 1, { android: { os_min: '12', os_max: '14.1' }, windows: { allowed: false } }, { assign_all_users: true });
    const c = ctx({ restrictions: [...defaults, r] });
    expect(evaluateEnrollment(facts({ osVersion: '11' }), c)).toMatchObject({ allowed: false, reason: 'os_version_not_allowed', detail: expect.stringContaining('below the minimum 12') });
    expect(evaluateEnrollment(facts({ osVersion: '14.2' }), c)).toMatchObject({ allowed: false, reason: 'os_version_not_allowed', detail: expect.stringContaining('above the maximum 14.1') });
    expect(evaluateEnrollment(facts({ osVersion: '13' }), c)).toMatchObject({ allowed: true });
    expect(evaluateEnrollment(facts({ platform: 'windows', method: 'windows_onpremise', os: 'windows', osVersion: '10.0.1' }), c)).toMatchObject({ allowed: false, reason: 'platform_blocked' });
  });

  it('does not check OS versions of automated (ADE) enrollments', () => {
    const r = platformRestriction('r', 1, { ios: { os_min: '18.0' } }, { assign_all_users: true });
    const f = facts({ platform: 'apple', os: 'ios', osVersion: '17.1', method: 'apple_ade' });
    expect(evaluateEnrollment(f, ctx({ restrictions: [...defaults, r] })).allowed).toBe(true);
    expect(evaluateEnrollment({ ...f, method: 'apple_profile' }, ctx({ restrictions: [...defaults, r] }))).toMatchObject({ reason: 'os_version_not_allowed' });
  });

  it('blocks Android manufacturers case-insensitively', () => {
    const r = platformRestriction('r', 1, { android: { blocked_manufacturers: ['ACME Phones'] } }, { assign_all_users: true });
    expect(evaluateEnrollment(facts({ manufacturer: 'acme phones ' }), ctx({ restrictions: [...defaults, r] }))).toMatchObject({ reason: 'manufacturer_blocked' });
  });

  it('blocks personal devices unless a corporate identifier, pre-approval or corporate method says otherwise', () => {
    const r = platformRestriction('r', 1, { ios: { personal_allowed: false } }, { assign_all_users: true });
    const f = facts({ platform: 'apple', os: 'ios', method: 'apple_profile', osVersion: '17.4', serial: 'C02XG2JHJGH5' });
    const c = ctx({ restrictions: [...defaults, r] });
    expect(evaluateEnrollment(f, c)).toMatchObject({ allowed: false, reason: 'personal_device_blocked' });
    expect(evaluateEnrollment(f, { ...c, corporateIdentifier: { id: 'ci', type: 'serial' } })).toMatchObject({ allowed: true, ownership: 'corporate', ownershipSource: 'corporate_identifier', trace: { corporate_identifier_id: 'ci' } });
    expect(evaluateEnrollment({ ...f, ownershipClaim: 'corporate' }, c)).toMatchObject({ allowed: true, ownership: 'corporate', ownershipSource: 'token' });
    // Not decided before the device's own facts are known.
    expect(evaluateEnrollment({ ...f, final: false }, c).allowed).toBe(true);
  });

  it('counts devices against the user limit only on final facts, and not for userless enrollments', () => {
    expect(evaluateEnrollment(facts(), ctx({ userDeviceCount: 5 }))).toMatchObject({ allowed: false, reason: 'device_cap_reached', detail: expect.stringContaining('(5)') });
    expect(evaluateEnrollment(facts(), ctx({ userDeviceCount: 4 }))).toMatchObject({ allowed: true, countsForCap: true, trace: { device_count: 4, device_limit_restriction: { id: 'l0', limit: 5 } } });
    expect(evaluateEnrollment(facts({ final: false }), ctx({ userDeviceCount: 9 })).allowed).toBe(true);
    expect(evaluateEnrollment(facts({ method: 'android_dedicated' }), ctx({ userDeviceCount: 9 }))).toMatchObject({ allowed: true, countsForCap: false, userId: null });
    expect(evaluateEnrollment(facts({ userRef: undefined }), ctx({ userDeviceCount: 9 }))).toMatchObject({ allowed: true, countsForCap: false });
  });

  it('lets enrollment managers past the user limit, corporate and userless, but not with COPE, fully managed or ADE', () => {
    const dem = { id: 'dem-1', email: 'dem@example.com', is_dem: true, groups: [] };
    expect(evaluateEnrollment(facts({ method: 'android_fully_managed' }), ctx({ user: dem }))).toMatchObject({ allowed: false, reason: 'dem_not_supported_for_method' });
    expect(evaluateEnrollment(facts({ method: 'android_cope_work_profile' }), ctx({ user: dem }))).toMatchObject({ reason: 'dem_not_supported_for_method' });
    const ok = evaluateEnrollment(facts({ platform: 'windows', method: 'windows_onpremise', os: 'windows', osVersion: '10.0.22631.1' }), ctx({ user: dem, userDeviceCount: 50, demDeviceCount: 999 }));
    expect(ok).toMatchObject({ allowed: true, ownership: 'corporate', ownershipSource: 'dem', userId: null, userRef: null, enrolledBy: 'dem-1', countsForCap: false });
    expect(evaluateEnrollment(facts({ platform: 'windows', method: 'windows_onpremise', os: 'windows' }), ctx({ user: dem, demDeviceCount: 1000 }))).toMatchObject({ reason: 'device_cap_reached' });
    expect(evaluateEnrollment(facts(), ctx({ user: dem, demDeviceCount: 10 }))).toMatchObject({ reason: 'device_cap_reached' });
  });

  it('refuses devices not on the pre-approved list when only those may enroll, and applies a listed one', () => {
    expect(evaluateEnrollment(facts({ serial: 'S-1' }), ctx({ preapprovedOnly: true }))).toMatchObject({ reason: 'not_pre_approved', detail: expect.stringContaining('S-1') });
    const pre = { id: 'pre-1', ownership: 'corporate' as const, user_id: 'u-9', user_email: 'lee@example.com', device_name: 'Lee tablet', category_id: 'cat', policy_id: null };
    expect(evaluateEnrollment(facts({ serial: 'S-1' }), ctx({ preapprovedOnly: true, preapproved: pre }))).toMatchObject({
      allowed: true,
      ownership: 'corporate',
      ownershipSource: 'preapproved',
      userId: 'u-9',
      userRef: 'lee@example.com',
      deviceName: 'Lee tablet',
      categoryId: 'cat',
    });
  });

  it('asks for terms last, listing what to accept', () => {
    const pendingTerms = [{ id: 't1', version: 3, title: 'Acceptable use' }];
    expect(evaluateEnrollment(facts(), ctx({ pendingTerms }))).toMatchObject({ allowed: false, reason: 'terms_not_accepted', pendingTerms, detail: expect.stringContaining('version 3') });
    // A harder refusal wins over terms.
    expect(evaluateEnrollment(facts(), ctx({ pendingTerms, userDeviceCount: 5 }))).toMatchObject({ reason: 'device_cap_reached' });
  });

  it('reports token state first', () => {
    const token = { id: 't', expired: true, revoked: true, usedUp: false };
    expect(evaluateEnrollment(facts({ token }), ctx())).toMatchObject({ reason: 'token_revoked' });
    expect(evaluateEnrollment(facts({ token: { ...token, revoked: false } }), ctx())).toMatchObject({ reason: 'token_expired' });
  });

  it('blocks an Apple profile download only when every Apple platform is blocked', () => {
    const f = facts({ platform: 'apple', os: undefined, method: 'apple_profile', final: false });
    const some = platformRestriction('r', 1, { ios: { allowed: false } }, { assign_all_users: true });
    const every = platformRestriction('r', 1, { ios: { allowed: false }, macos: { allowed: false }, tvos: { allowed: false } }, { assign_all_users: true });
    expect(evaluateEnrollment(f, ctx({ restrictions: [...defaults, some] })).allowed).toBe(true);
    expect(evaluateEnrollment(f, ctx({ restrictions: [...defaults, every] }))).toMatchObject({ reason: 'platform_blocked' });
  });
});

describe('each front end speaks the reason in its own form', () => {
  it('has a user-facing message for every reason', () => {
    for (const reason of REFUSAL_REASONS) expect(REFUSAL_MESSAGES[reason]).toMatch(/\.$/);
  });

  it('maps reasons to MS-MDE2 faults', () => {
    const cap = refusalFault('device_cap_reached', 'too many');
    expect(cap).toMatchObject({ subcode: 'Authorization', detail: { type: 'DeviceCapReached' }, hresult: 0x80180013 });
    expect(cap.toXml()).toContain('DeviceCapReached');
    for (const r of ['platform_blocked', 'os_version_not_allowed', 'manufacturer_blocked'] as const) {
      expect(refusalFault(r, 'x')).toMatchObject({ subcode: 'Authorization', detail: { type: 'DeviceNotSupported' } });
    }
    expect(refusalFault('token_expired', 'x')).toMatchObject({ subcode: 'Authentication', detail: undefined });
    const custom = refusalFault('terms_not_accepted', 'Accept the terms at https://mdm.example.com/enroll/terms');
    expect(custom).toMatchObject({ subcode: 'Authorization', detail: { type: 'CustomServerError' } });
    expect(custom.toXml()).toContain('https://mdm.example.com/enroll/terms');
  });
});
