/**
 * The one enrollment rule engine all three front ends consult (seed 002, research seeds-digest X-01 to
 * X-10, T4, T5, T16, T18). Pure: the caller loads what the rules need about the user, the device and
 * the deployment (`EnrollmentContext`) and gets back either what to apply or one stable reason code.
 *
 * Rules, in the order a refusal is reported:
 *   token (expired, revoked, used up) -> platform blocked -> DEM with an unsupported method -> OS
 *   version out of range -> manufacturer blocked (Android) -> not pre-approved -> personally owned and
 *   blocked -> device cap reached -> terms not accepted.
 * Terms come last because they are the one refusal the user can clear on the spot.
 *
 * Facts arrive in stages: an Apple profile download knows the token and user but not the device, so
 * rules whose facts are missing are skipped, and the device cap and pre-approval are only decided on
 * `final` facts (the device's own check-in), never guessed early.
 */
import { z } from 'zod';
import type { Ownership, Platform } from './types';

export const RESTRICTION_PLATFORMS = ['ios', 'macos', 'tvos', 'windows', 'android'] as const;
export type RestrictionPlatform = (typeof RESTRICTION_PLATFORMS)[number];

export const ENROLLMENT_METHODS = [
  'apple_profile',
  'apple_user_enrollment',
  'apple_ade',
  'windows_onpremise',
  'windows_federated',
  'android_byod_work_profile',
  'android_cope_work_profile',
  'android_fully_managed',
  'android_dedicated',
] as const;
export type EnrollmentMethod = (typeof ENROLLMENT_METHODS)[number];

export const REFUSAL_REASONS = [
  'platform_blocked',
  'personal_device_blocked',
  'os_version_not_allowed',
  'manufacturer_blocked',
  'device_cap_reached',
  'not_pre_approved',
  'token_expired',
  'token_revoked',
  'token_used_up',
  'terms_not_accepted',
  'dem_not_supported_for_method',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Seed 002 L6985: a user may enroll 1 to 15 devices; 5 by default. DEMs up to 1,000 (L1442). */
export const DEFAULT_DEVICE_LIMIT = 5;
export const MAX_DEVICE_LIMIT = 15;
export const DEM_DEVICE_LIMIT = 1000;
/** A DEM sets up at most 10 personally-owned Android work profiles (seed 002 L1487). */
export const DEM_ANDROID_WORK_PROFILE_LIMIT = 10;
export const MAX_DEMS = 150;
/** Up to 25 restrictions of each kind besides the default (seed 002 L7126, L7257). */
export const MAX_RESTRICTIONS_PER_KIND = 25;
/** Methods a device enrollment manager cannot use (seed 002 L1487-1496). */
const DEM_UNSUPPORTED: ReadonlySet<EnrollmentMethod> = new Set(['apple_ade', 'android_cope_work_profile', 'android_fully_managed']);
/** Enrollments with no user behind them: the default restrictions apply and no device cap. */
const USERLESS_METHODS: ReadonlySet<EnrollmentMethod> = new Set(['android_dedicated']);

// ---- versions ---------------------------------------------------------------------------------------

/** How many numeric parts each platform's version format has (seed 002 L7159-7162). */
export const VERSION_PARTS: Record<RestrictionPlatform, number> = { windows: 4, android: 4, ios: 3, macos: 3, tvos: 3 };

/** `17.4.1` -> [17, 4, 1]; undefined unless it is 1 to `maxParts` dot-separated numbers. */
export function parseVersion(text: string, maxParts = 4): number[] | undefined {
  const parts = text.trim().split('.');
  if (parts.length === 0 || parts.length > maxParts || parts.some((p) => !/^\d{1,9}$/.test(p))) return undefined;
  return parts.map(Number);
}

/** Compares numerically part by part; a missing part counts as 0 (`17.4` == `17.4.0`). */
export function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/**
 * The leading numeric part of what a device reports: Windows sends `10.0.22631.2428`, Apple `17.4.1`,
 * Android `14` (or `14 QPR2`). Anything after the numbers is ignored; undefined if there are none.
 */
export function reportedVersion(text: string | undefined): number[] | undefined {
  const m = text && /^\s*(\d{1,9}(?:\.\d{1,9}){0,3})/.exec(text);
  return m ? m[1]!.split('.').map(Number) : undefined;
}

// ---- restriction settings (validated when an admin saves them) ----------------------------------------

function versionFor(platform: RestrictionPlatform) {
  const parts = VERSION_PARTS[platform];
  return z.string().refine((v) => parseVersion(v, parts) !== undefined, `a version of 1 to ${parts} numbers separated by dots, like ${parts === 4 ? '10.0.22631.2428' : '17.4.1'}`);
}

function platformRule(platform: RestrictionPlatform) {
  const base = {
    allowed: z.boolean().default(true).describe('false blocks the platform'),
    personal_allowed: z.boolean().default(true).describe('false lets only corporate devices enroll'),
    os_min: versionFor(platform).optional(),
    os_max: versionFor(platform).optional(),
  };
  const rule = platform === 'android'
    ? z.strictObject({ ...base, blocked_manufacturers: z.array(z.string().trim().min(1).max(100)).max(100).default([]).describe('matched case-insensitively') })
    : z.strictObject(base);
  return rule.refine((r) => !r.os_min || !r.os_max || compareVersions(parseVersion(r.os_min)!, parseVersion(r.os_max)!) <= 0, 'os_min is above os_max');
}

export const PlatformRestrictionSettingsSchema = z.strictObject({
  platforms: z
    .strictObject({
      ios: platformRule('ios').optional(),
      macos: platformRule('macos').optional(),
      tvos: platformRule('tvos').optional(),
      windows: platformRule('windows').optional(),
      android: platformRule('android').optional(),
    })
    .default({}),
});
export type PlatformRestrictionSettings = z.output<typeof PlatformRestrictionSettingsSchema>;
export type PlatformRule = NonNullable<PlatformRestrictionSettings['platforms'][RestrictionPlatform]> & { blocked_manufacturers?: string[] };

export const DeviceLimitSettingsSchema = z.strictObject({ limit: z.number().int().min(1).max(MAX_DEVICE_LIMIT) });
export type DeviceLimitSettings = z.output<typeof DeviceLimitSettingsSchema>;

export type RestrictionKind = 'platform' | 'device_limit';

export interface Restriction {
  id: string;
  kind: RestrictionKind;
  name: string;
  is_default: boolean;
  priority: number | null;
  assign_all_users: boolean;
  assign_groups: string[];
  assign_users: string[];
  settings: PlatformRestrictionSettings | DeviceLimitSettings;
}

// ---- what the engine is given -------------------------------------------------------------------------

export interface EnrollmentFacts {
  platform: Platform;
  method: EnrollmentMethod;
  /** The OS family, once the device said what it is (unknown at an Apple profile download). */
  os?: RestrictionPlatform;
  osVersion?: string;
  manufacturer?: string;
  model?: string;
  serial?: string;
  imei?: string;
  /** Who enrolls: an email or UPN; undefined for a userless enrollment. */
  userRef?: string;
  /** The ownership the token declares (an admin's statement). */
  ownershipClaim: Ownership;
  /** The token's own state, when this stage still spends or checks it. */
  token?: { id: string; expired: boolean; revoked: boolean; usedUp: boolean };
  /** Category and policy the token carries. */
  categoryId?: string | null;
  policyId?: string | null;
  /** All device facts are known: decide the device cap and pre-approval. */
  final: boolean;
}

export interface EnrollmentUser {
  id: string;
  email: string;
  is_dem: boolean;
  groups: string[];
}

export interface PreapprovedMatch {
  id: string;
  ownership: 'personal' | 'corporate';
  user_id: string | null;
  user_email: string | null;
  device_name: string | null;
  category_id: string | null;
  policy_id: string | null;
}

export interface EnrollmentContext {
  /** The directory entry for `userRef`, if there is one. */
  user?: EnrollmentUser;
  restrictions: Restriction[];
  corporateIdentifier?: { id: string; type: 'imei' | 'serial' };
  preapproved?: PreapprovedMatch;
  preapprovedOnly: boolean;
  /** Devices that count against the user's cap, this device excluded (a re-enrollment is not a new device). */
  userDeviceCount: number;
  /** Devices the user set up as an enrollment manager, this device excluded. */
  demDeviceCount: number;
  /** Terms assigned to the user whose current version the user has not accepted. */
  pendingTerms: Array<{ id: string; version: number; title: string }>;
}

export interface EnrollmentTrace {
  platform_restriction?: { id: string; name: string; priority: number | null };
  device_limit_restriction?: { id: string; name: string; priority: number | null; limit: number };
  ownership_source?: OwnershipSource;
  device_count?: number;
  corporate_identifier_id?: string;
  preapproved_id?: string;
  dem?: boolean;
}

export type OwnershipSource = 'dem' | 'preapproved' | 'corporate_identifier' | 'enrollment_mode' | 'token' | 'default';

export interface Allowed {
  allowed: true;
  ownership: 'corporate' | 'personal';
  ownershipSource: OwnershipSource;
  /** The device's user (null for DEM and userless enrollments). */
  userId: string | null;
  userRef: string | null;
  /** The enrollment manager who set the device up. */
  enrolledBy: string | null;
  countsForCap: boolean;
  categoryId: string | null;
  policyId: string | null;
  deviceName: string | null;
  trace: EnrollmentTrace;
}

export interface Refused {
  allowed: false;
  reason: RefusalReason;
  detail: string;
  trace: EnrollmentTrace;
  /** For terms_not_accepted: what to accept. */
  pendingTerms?: EnrollmentContext['pendingTerms'];
}

export type EnrollmentDecision = Allowed | Refused;

// ---- the rules ----------------------------------------------------------------------------------------

/** The highest-priority restriction of a kind assigned to the user; the default for userless ones. */
export function selectRestriction(restrictions: Restriction[], kind: RestrictionKind, user: EnrollmentUser | undefined, userRef: string | undefined): Restriction | undefined {
  const ofKind = restrictions.filter((r) => r.kind === kind);
  const fallback = ofKind.find((r) => r.is_default);
  if (!userRef) return fallback;
  const email = (user?.email ?? userRef).toLowerCase();
  const groups = new Set(user?.groups ?? []);
  const assigned = ofKind
    .filter((r) => !r.is_default && (r.assign_all_users || r.assign_users.includes(email) || r.assign_groups.some((g) => groups.has(g))))
    .sort((a, b) => (a.priority ?? Infinity) - (b.priority ?? Infinity));
  return assigned[0] ?? fallback;
}

const ALL_APPLE: RestrictionPlatform[] = ['ios', 'macos', 'tvos'];

/** Corporate when any of seed 002's conditions hold (T18), else personal. */
function decideOwnership(f: EnrollmentFacts, ctx: EnrollmentContext, dem: boolean): { ownership: 'corporate' | 'personal'; source: OwnershipSource } {
  if (dem) return { ownership: 'corporate', source: 'dem' };
  if (ctx.preapproved) return { ownership: ctx.preapproved.ownership, source: 'preapproved' };
  if (ctx.corporateIdentifier) return { ownership: 'corporate', source: 'corporate_identifier' };
  if (f.method === 'apple_ade' || f.method === 'android_cope_work_profile' || f.method === 'android_fully_managed' || f.method === 'android_dedicated') {
    return { ownership: 'corporate', source: 'enrollment_mode' };
  }
  if (f.method === 'apple_user_enrollment' || f.method === 'android_byod_work_profile') return { ownership: 'personal', source: 'enrollment_mode' };
  if (f.ownershipClaim === 'corporate') return { ownership: 'corporate', source: 'token' };
  return { ownership: 'personal', source: f.ownershipClaim === 'personal' ? 'token' : 'default' };
}

const PLATFORM_NAMES: Record<RestrictionPlatform, string> = { ios: 'iOS/iPadOS', macos: 'macOS', tvos: 'tvOS', windows: 'Windows', android: 'Android' };

export function evaluateEnrollment(f: EnrollmentFacts, ctx: EnrollmentContext): EnrollmentDecision {
  const trace: EnrollmentTrace = {};
  const refuse = (reason: RefusalReason, detail: string): Refused => ({ allowed: false, reason, detail, trace });

  if (f.token?.revoked) return refuse('token_revoked', 'the enrollment token was revoked');
  if (f.token?.expired) return refuse('token_expired', 'the enrollment token has expired');
  if (f.token?.usedUp) return refuse('token_used_up', 'the enrollment token has no uses left');

  // Who enrolls: the user the enrollment names, else the user a pre-approval of this device names.
  const named = f.userRef ?? ctx.preapproved?.user_email ?? undefined;
  const userless = !named || USERLESS_METHODS.has(f.method);
  const dem = !userless && Boolean(ctx.user?.is_dem);
  const whoRef = userless ? undefined : named;
  const platformRestriction = selectRestriction(ctx.restrictions, 'platform', ctx.user, whoRef);
  if (platformRestriction) trace.platform_restriction = { id: platformRestriction.id, name: platformRestriction.name, priority: platformRestriction.priority };
  const rules = (platformRestriction?.settings as PlatformRestrictionSettings | undefined)?.platforms ?? {};
  const rule: PlatformRule | undefined = f.os ? rules[f.os] : undefined;

  if (f.os ? rule?.allowed === false : f.platform === 'apple' && ALL_APPLE.every((p) => rules[p]?.allowed === false)) {
    return refuse('platform_blocked', `${f.os ? PLATFORM_NAMES[f.os] : 'Apple'} devices can't be enrolled: the platform is blocked by the restriction "${platformRestriction!.name}"`);
  }
  if (dem && DEM_UNSUPPORTED.has(f.method)) {
    return refuse('dem_not_supported_for_method', `a device enrollment manager can't enroll with ${f.method.replace(/_/g, ' ')}`);
  }
  // OS versions are not checked for automated (ADE) enrollments (seed 002 L7166).
  if (rule && f.os && f.method !== 'apple_ade' && (rule.os_min || rule.os_max)) {
    const reported = reportedVersion(f.osVersion);
    if (reported) {
      if (rule.os_min && compareVersions(reported, parseVersion(rule.os_min)!) < 0) {
        return refuse('os_version_not_allowed', `${PLATFORM_NAMES[f.os]} ${f.osVersion} is below the minimum ${rule.os_min}`);
      }
      if (rule.os_max && compareVersions(reported, parseVersion(rule.os_max)!) > 0) {
        return refuse('os_version_not_allowed', `${PLATFORM_NAMES[f.os]} ${f.osVersion} is above the maximum ${rule.os_max}`);
      }
    }
  }
  if (f.os === 'android' && f.manufacturer && rule?.blocked_manufacturers?.some((m) => m.toLowerCase() === f.manufacturer!.trim().toLowerCase())) {
    return refuse('manufacturer_blocked', `devices made by ${f.manufacturer} can't be enrolled`);
  }
  if (ctx.preapproved) trace.preapproved_id = ctx.preapproved.id;
  if (f.final && ctx.preapprovedOnly && !ctx.preapproved) {
    return refuse('not_pre_approved', f.serial ? `serial number ${f.serial} is not on the pre-approved list` : 'only pre-approved devices can enroll, and this one has no serial number to match');
  }

  const owner = decideOwnership(f, ctx, dem);
  trace.ownership_source = owner.source;
  if (ctx.corporateIdentifier) trace.corporate_identifier_id = ctx.corporateIdentifier.id;
  // Personal-device blocking needs the device's own facts (its identifiers), so only on final facts.
  if (f.final && owner.ownership === 'personal' && rule?.personal_allowed === false) {
    return refuse('personal_device_blocked', `personally owned ${PLATFORM_NAMES[f.os!]} devices can't be enrolled; only corporate devices (a corporate identifier, a pre-approved device or a corporate enrollment method)`);
  }

  if (dem) {
    trace.dem = true;
    const cap = f.method === 'android_byod_work_profile' ? DEM_ANDROID_WORK_PROFILE_LIMIT : DEM_DEVICE_LIMIT;
    trace.device_count = ctx.demDeviceCount;
    if (f.final && ctx.demDeviceCount >= cap) return refuse('device_cap_reached', `the enrollment manager has enrolled ${ctx.demDeviceCount} devices, the most allowed (${cap})`);
  } else if (!userless) {
    const limitRestriction = selectRestriction(ctx.restrictions, 'device_limit', ctx.user, whoRef);
    const limit = (limitRestriction?.settings as DeviceLimitSettings | undefined)?.limit ?? DEFAULT_DEVICE_LIMIT;
    if (limitRestriction) trace.device_limit_restriction = { id: limitRestriction.id, name: limitRestriction.name, priority: limitRestriction.priority, limit };
    trace.device_count = ctx.userDeviceCount;
    if (f.final && ctx.userDeviceCount >= limit) {
      return refuse('device_cap_reached', `${whoRef} already has ${ctx.userDeviceCount} enrolled devices, the most allowed (${limit}); remove one or ask for a higher limit`);
    }
  }

  if (!userless && ctx.pendingTerms.length) {
    return { ...refuse('terms_not_accepted', `${whoRef} has not accepted ${ctx.pendingTerms.map((t) => `"${t.title}" (version ${t.version})`).join(', ')}`), pendingTerms: ctx.pendingTerms };
  }

  const pre = ctx.preapproved;
  const userId = dem || userless ? null : (pre?.user_id ?? ctx.user?.id ?? null);
  const userRef = dem || userless ? null : (pre?.user_email ?? ctx.user?.email ?? named ?? null);
  return {
    allowed: true,
    ownership: owner.ownership,
    ownershipSource: owner.source,
    userId,
    userRef,
    enrolledBy: dem ? ctx.user!.id : null,
    countsForCap: !dem && !userless,
    categoryId: pre?.category_id ?? f.categoryId ?? null,
    policyId: pre?.policy_id ?? f.policyId ?? null,
    deviceName: pre?.device_name ?? null,
    trace,
  };
}

/**
 * A refused enrollment, already recorded: each front end renders it in its own protocol's form and
 * shows the activity id so an admin can find the attempt.
 */
export class EnrollmentRefusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    readonly detail: string,
    readonly activityId: string,
    readonly pendingTerms: EnrollmentContext['pendingTerms'] = [],
  ) {
    super(detail);
    this.name = 'EnrollmentRefusal';
  }
}

/** Short, user-facing text for each reason (the detail, with names and numbers, goes to the admin). */
export const REFUSAL_MESSAGES: Record<RefusalReason, string> = {
  platform_blocked: "This kind of device can't be enrolled in your organization.",
  personal_device_blocked: "Personally owned devices can't be enrolled. Ask your IT department to register this device as a company device.",
  os_version_not_allowed: 'This operating system version is not allowed. Update the device or ask your IT department which versions are supported.',
  manufacturer_blocked: "Devices from this manufacturer can't be enrolled in your organization.",
  device_cap_reached: 'You have enrolled the most devices allowed. Remove a device you no longer use, or ask your IT department to raise your limit.',
  not_pre_approved: 'This device is not on your organization\'s list of approved devices.',
  token_expired: 'This enrollment link or code has expired. Ask your IT department for a new one.',
  token_revoked: 'This enrollment link or code was withdrawn. Ask your IT department for a new one.',
  token_used_up: 'This enrollment link or code has already been used. Ask your IT department for a new one.',
  terms_not_accepted: 'You need to accept your organization\'s terms of use before enrolling.',
  dem_not_supported_for_method: "An enrollment manager account can't enroll a device this way.",
};
