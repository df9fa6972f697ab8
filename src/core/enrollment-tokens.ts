/**
 * What an enrollment token allows, decided once when it is created and again when a device uses it.
 *
 * Android (seeds 000/001, research notes section 3): `allow_personal_usage`
 *   allowed             -> a work profile: BYOD on a personal device, or COPE on a company-owned one
 *   disallowed          -> fully managed (company-owned)
 *   disallowed_userless -> dedicated (company-owned, no user)
 * Tokens expire after 30 days by default; `never` is allowed for fully managed and COPE tokens only,
 * and a dedicated-device token lives at most 90 days.
 */
import { Errors } from './errors';
import type { Ownership, Platform } from './types';

export type PersonalUsage = 'allowed' | 'disallowed' | 'disallowed_userless';
export type AndroidModeName = 'byod_work_profile' | 'cope_work_profile' | 'fully_managed' | 'dedicated';

export const DEFAULT_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
const MAX_DEDICATED_TTL_SECONDS = 90 * 24 * 3600;

export interface TokenTerms {
  platform: Platform;
  ownership?: Ownership;
  allow_personal_usage?: PersonalUsage;
  expires_in?: number | 'never';
}

export interface SettledTerms {
  ownership: Ownership;
  allow_personal_usage: PersonalUsage | null;
  expires_at: Date | null;
}

/** Checks a token request's terms against each other and fills in defaults; refusals name the rule. */
export function settleTokenTerms(t: TokenTerms, now = Date.now()): SettledTerms {
  const ttl = t.expires_in ?? DEFAULT_TOKEN_TTL_SECONDS;
  const expires_at = ttl === 'never' ? null : new Date(now + ttl * 1000);
  if (t.platform !== 'android') {
    if (t.allow_personal_usage) throw invalid('allow_personal_usage', 'allow_personal_usage applies to Android tokens only');
    return { ownership: t.ownership ?? 'unknown', allow_personal_usage: null, expires_at };
  }
  const usage = t.allow_personal_usage ?? 'allowed';
  if (usage !== 'allowed' && t.ownership === 'personal') {
    throw invalid('ownership', `a ${usage} token sets up a company-owned device; personal ownership needs allow_personal_usage "allowed"`);
  }
  const ownership: Ownership = usage === 'allowed' ? (t.ownership ?? 'unknown') : 'corporate';
  const cope = usage === 'allowed' && ownership === 'corporate';
  if (ttl === 'never' && !(usage === 'disallowed' || cope)) {
    throw invalid('expires_in', 'only fully managed and company-owned work profile tokens may never expire');
  }
  if (usage === 'disallowed_userless' && (ttl === 'never' || ttl > MAX_DEDICATED_TTL_SECONDS)) {
    throw invalid('expires_in', 'a dedicated-device token lives at most 90 days');
  }
  return { ownership, allow_personal_usage: usage, expires_at };
}

/** The Android management modes a token lets a DPC set up. */
export function modesAllowed(usage: PersonalUsage | null, ownership: Ownership): AndroidModeName[] {
  switch (usage ?? 'allowed') {
    case 'disallowed':
      return ['fully_managed'];
    case 'disallowed_userless':
      return ['dedicated'];
    default:
      if (ownership === 'personal') return ['byod_work_profile'];
      if (ownership === 'corporate') return ['cope_work_profile'];
      return ['byod_work_profile', 'cope_work_profile'];
  }
}

function invalid(path: string, message: string) {
  return Errors.validation(message, { errors: [{ path: `body.${path}`, message }] });
}
