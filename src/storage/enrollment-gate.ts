/**
 * The enrollment gate: loads what the rule engine (src/core/enrollment-policy.ts) needs in one
 * statement, records every refusal (who, what, why, when) for the failures report, and writes what an
 * allowed enrollment gets (ownership, user, category, policy, name) onto the device.
 */
import crypto from 'node:crypto';
import {
  EnrollmentRefusal,
  evaluateEnrollment,
  type Allowed,
  type EnrollmentContext,
  type EnrollmentFacts,
  type EnrollmentTrace,
  type Refused,
  type Restriction,
} from '../core/enrollment-policy';
import type pg from 'pg';
import { isMooringError } from '../core/errors';
import type { Db } from './db';
import { eventRow } from './events';
import { namedStatement, runNamed } from './prepared';

/** What identifies the enrolling hardware, so a re-enrollment is not counted as another device. */
export interface DeviceKeys {
  udid?: string | null;
  serial?: string | null;
  imei?: string | null;
  hardwareId?: string | null;
}

/**
 * A device counts against its user's cap (seed 002 L7247-7255): managed, seen in the last 90 days,
 * not pending for over 24 hours, not removed, not shared/userless.
 */
const COUNTS_FOR_CAP = `d.counts_for_cap AND d.status IN ('enrolled', 'pending')
  AND NOT (d.status = 'pending' AND d.created_at < now() - interval '24 hours')
  AND coalesce(d.last_seen_at, d.created_at) > now() - interval '90 days'`;

const NOT_THIS_DEVICE = `NOT (d.platform = $2 AND (
  (d.udid IS NOT NULL AND d.udid = $5) OR (d.serial_number IS NOT NULL AND d.serial_number = $3)
  OR (d.hardware_id IS NOT NULL AND d.hardware_id = $6)))`;

/**
 * The user an email or UPN names, as SQL over the parameter `ref` (the email wins over someone
 * else's UPN). The one statement of this rule: the context, the outcome and the terms page use it.
 */
const userNamed = (ref: string) =>
  `SELECT id, email, is_dem, groups FROM users WHERE email = lower(${ref}) OR lower(upn) = lower(${ref}) ORDER BY email = lower(${ref}) DESC LIMIT 1`;

/** CTEs `found` and `made`: that user, or a directory entry made for a name seen the first time (when `guard`). */
const findOrMakeUser = (ref: string, guard = 'true') => `
  found AS (SELECT id FROM (${userNamed(ref)}) named WHERE ${guard}),
  made AS (INSERT INTO users (email) SELECT lower(${ref}) WHERE ${guard} AND NOT EXISTS (SELECT 1 FROM found)
           ON CONFLICT (email) DO NOTHING RETURNING id)`;

/** Terms `t` assigned to the user in CTE `u` (or to everyone) whose current version `u` has not accepted. */
const PENDING_FOR_U = `(t.assign_all_users OR EXISTS (SELECT 1 FROM u WHERE t.assign_groups && u.groups))
  AND NOT EXISTS (SELECT 1 FROM terms_acceptances a JOIN u ON a.user_id = u.id WHERE a.terms_id = t.id AND a.version = t.version)`;

const CONTEXT = `
  WITH pre AS (
    SELECT p.id, p.ownership, p.user_id, pu.email AS user_email, p.device_name, p.category_id, p.policy_id
      FROM preapproved_devices p LEFT JOIN users pu ON pu.id = p.user_id
     WHERE p.device_platform = $2 AND p.serial_number = $3
  ), u AS (
    -- who enrolls: the user the enrollment names, else the user a pre-approval of this serial names
    (${userNamed('$1::text')})
    UNION ALL SELECT id, email, is_dem, groups FROM users WHERE $1::text IS NULL AND id = (SELECT user_id FROM pre)
  )
  SELECT
    (SELECT row_to_json(u) FROM u) AS "user",
    (SELECT coalesce(json_agg(r), '[]') FROM (
       SELECT id, kind, name, is_default, priority, assign_all_users, assign_groups, assign_users, settings FROM enrollment_restrictions) r) AS restrictions,
    (SELECT row_to_json(c) FROM (
       SELECT id, type FROM corporate_identifiers
        WHERE (type = 'serial' AND value = $3) OR (type = 'imei' AND value = $4)
        ORDER BY type = 'serial' DESC LIMIT 1) c) AS corporate_identifier,
    (SELECT row_to_json(pre) FROM pre) AS preapproved,
    (SELECT preapproved_only FROM enrollment_settings WHERE id = 1) AS preapproved_only,
    (SELECT count(*) FROM devices d
      WHERE (lower(d.user_ref) = lower($1) OR d.user_id = (SELECT id FROM u))
        AND ${COUNTS_FOR_CAP} AND ${NOT_THIS_DEVICE})::int AS user_device_count,
    (SELECT count(*) FROM devices d
      WHERE d.enrolled_by = (SELECT id FROM u) AND d.status IN ('enrolled', 'pending') AND ${NOT_THIS_DEVICE})::int AS dem_device_count,
    (SELECT coalesce(json_agg(t ORDER BY t.title), '[]') FROM (
       SELECT t.id, t.version, t.title FROM terms t
        WHERE ($1::text IS NOT NULL OR EXISTS (SELECT 1 FROM u)) AND ${PENDING_FOR_U}) t) AS pending_terms`;

/**
 * The device columns an allowed enrollment sets, over the parameters of allowedParams (`who` is the
 * CTE of allowedUser). `prior(column)` is what the row holds without the rules: an update's own
 * column, an insert's reported value.
 */
export function allowedDeviceColumns(prior: (column: string) => string): Array<[column: string, value: string]> {
  return [
    ['ownership', ':ownership'],
    ['ownership_source', ':source'],
    ['user_id', '(SELECT id FROM who)'],
    ['user_ref', ':ref::text'],
    ['enrolled_by', ':enrolled_by::uuid'],
    ['counts_for_cap', ':counts::boolean'],
    ['enrollment_trace', ':trace::jsonb'],
    ['category_id', `coalesce(:category_id::uuid, ${prior('category_id')})`],
    ['category', `coalesce((SELECT name FROM device_categories WHERE id = :category_id::uuid), ${prior('category')})`],
    ['policy_id', `coalesce(:policy_id::uuid, ${prior('policy_id')})`],
    ['name', `coalesce(:name::text, ${prior('name')})`],
  ];
}

/**
 * CTEs `found`, `made` and `who`: the device's user. A user named for the first time (an enrollment
 * that counts against a user's devices) gets a directory entry, made only when `guard` holds too.
 */
export function allowedUser(guard = 'true'): string {
  return `${findOrMakeUser(':ref::text', `:need::boolean AND ${guard}`)}, who AS (
    SELECT coalesce(:user_id::uuid, (SELECT id FROM found), (SELECT id FROM made)) AS id
  )`;
}

/**
 * CTEs `ci`, `pre` and `placeholder`: a matching corporate identifier and pre-approval marked enrolled
 * by the device `device` (SQL for its id; nothing is written when it is NULL), and the pre-approval's
 * placeholder removed from the device list (the real device takes its place).
 */
export function allowedMarks(device: string): string {
  return `ci AS (
    UPDATE corporate_identifiers SET device_id = ${device}, enrolled_at = now(), updated_at = now() WHERE id = :ci::uuid AND ${device} IS NOT NULL
  ), pre AS (
    UPDATE preapproved_devices SET device_id = ${device}, enrolled_at = now() WHERE id = :pre::uuid AND ${device} IS NOT NULL RETURNING placeholder_device_id
  ), placeholder AS (
    DELETE FROM devices d USING pre WHERE d.id = pre.placeholder_device_id AND d.id <> ${device} AND d.status = 'pre_approved'
  )`;
}

/** The values of allowedUser, allowedDeviceColumns and allowedMarks for a decision. */
export function allowedParams(d: Allowed): Record<string, unknown> {
  const trace: EnrollmentTrace = d.trace;
  return {
    need: !d.userId && Boolean(d.userRef) && d.countsForCap,
    ref: d.userRef,
    user_id: d.userId,
    ownership: d.ownership,
    source: d.ownershipSource,
    enrolled_by: d.enrolledBy,
    counts: d.countsForCap,
    trace: JSON.stringify(trace),
    category_id: d.categoryId,
    policy_id: d.policyId,
    name: d.deviceName,
    ci: trace.corporate_identifier_id ?? null,
    pre: trace.preapproved_id ?? null,
  };
}

/** What an allowed enrollment gets, in one statement, for a device that is already written. */
const APPLY = namedStatement('mooring_enrollment_apply', `
  WITH ${allowedUser()}, dev AS (
    UPDATE devices SET ${allowedDeviceColumns((column) => column).map(([column, value]) => `${column} = ${value}`).join(', ')}, updated_at = now()
     WHERE id = :id::uuid
  ), ${allowedMarks(':id::uuid')}
  SELECT 1`);

interface ContextRow {
  user: EnrollmentContext['user'] | null;
  restrictions: Restriction[];
  corporate_identifier: EnrollmentContext['corporateIdentifier'] | null;
  preapproved: EnrollmentContext['preapproved'] | null;
  preapproved_only: boolean | null;
  user_device_count: number;
  dem_device_count: number;
  pending_terms: EnrollmentContext['pendingTerms'];
}

/** The terms a user still has to accept, with their text, for the enrollment page. */
export interface PendingTerms {
  id: string;
  version: number;
  title: string;
  summary: string;
  text: string;
}

export class PgEnrollmentGate {
  constructor(
    private readonly db: Db,
    /** Reads the context as a prepared statement (it is planned once): see createHandoutPool. */
    private readonly reads: pg.Pool,
  ) {}

  async context(facts: EnrollmentFacts, keys: DeviceKeys): Promise<EnrollmentContext> {
    const { rows } = await this.reads.query<ContextRow>({
      name: 'mooring_enrollment_context',
      text: CONTEXT,
      values: [facts.userRef ?? null, facts.platform, facts.serial ?? keys.serial ?? null, facts.imei ?? keys.imei ?? null, keys.udid ?? null, keys.hardwareId ?? null],
    });
    const r = rows[0]!;
    return {
      user: r.user ?? undefined,
      restrictions: r.restrictions,
      corporateIdentifier: r.corporate_identifier ?? undefined,
      preapproved: r.preapproved ?? undefined,
      preapprovedOnly: Boolean(r.preapproved_only),
      userDeviceCount: r.user_device_count,
      demDeviceCount: r.dem_device_count,
      pendingTerms: r.pending_terms,
    };
  }

  /** Runs the rules; a refusal is recorded and thrown as an EnrollmentRefusal. */
  async decide(facts: EnrollmentFacts, keys: DeviceKeys = {}): Promise<Allowed> {
    const decision = evaluateEnrollment(facts, await this.context(facts, keys));
    if (decision.allowed) return decision;
    throw await this.#record(facts, decision);
  }

  /**
   * The token checks (storage/tokens.ts) refuse with their own error before the rules run: when it is
   * one of the token reasons (expired, revoked, used up) it goes into the same report. An unknown
   * token is not recorded (anyone can send one).
   */
  async recordTokenRefusal(facts: EnrollmentFacts, err: unknown): Promise<void> {
    const code = isMooringError(err) ? err.code : undefined;
    if (code === 'token_expired' || code === 'token_revoked' || code === 'token_used_up') {
      await this.#record(facts, { allowed: false, reason: code, detail: (err as Error).message, trace: {} });
    }
  }

  async #record(facts: EnrollmentFacts, refused: Refused): Promise<EnrollmentRefusal> {
    const activityId = crypto.randomUUID();
    const recorded = {
      os: facts.os ?? null,
      os_version: facts.osVersion ?? null,
      manufacturer: facts.manufacturer ?? null,
      model: facts.model ?? null,
      serial_number: facts.serial ?? null,
      imei: facts.imei ?? null,
      ownership_claim: facts.ownershipClaim,
    };
    await this.db.transaction(async (trx) => {
      await trx('enrollment_attempts').insert({
        activity_id: activityId,
        platform: facts.platform,
        method: facts.method,
        user_ref: facts.userRef ?? null,
        reason: refused.reason,
        detail: refused.detail,
        facts: JSON.stringify(recorded),
        trace: JSON.stringify(refused.trace),
        enrollment_token_id: facts.token?.id ?? null,
      });
      await trx('events').insert(
        eventRow({
          type: 'enrollment.refused',
          actor: facts.userRef ? `user:${facts.userRef}` : 'device',
          data: { activity_id: activityId, platform: facts.platform, method: facts.method, reason: refused.reason, detail: refused.detail },
        }),
      );
    });
    return new EnrollmentRefusal(refused.reason, refused.detail, activityId, refused.pendingTerms);
  }

  /**
   * Writes what the rules decided onto the enrolled device: a user named for the first time gets a
   * directory entry; a matching corporate identifier and pre-approval are marked enrolled, and the
   * pre-approval's placeholder row leaves the device list (the real device takes its place).
   */
  async apply(deviceId: string, d: Allowed, conn: Db = this.db): Promise<void> {
    await applyAllowed(conn, deviceId, d);
  }

  /** The categories a user may choose from on an enrollment page, by name. */
  async categories(): Promise<Array<{ id: string; name: string; description: string | null }>> {
    return this.db('device_categories').orderByRaw('lower(name)').select('id', 'name', 'description');
  }

  /** Terms the user (an email or UPN) has yet to accept, with their text. */
  async pendingTerms(userRef: string): Promise<PendingTerms[]> {
    const { rows } = await this.db.raw<{ rows: PendingTerms[] }>(
      `WITH u AS (${userNamed(':ref::text')})
       SELECT t.id, t.version, t.title, t.summary, t.text FROM terms t WHERE ${PENDING_FOR_U} ORDER BY t.title`,
      { ref: userRef },
    );
    return rows;
  }

  /**
   * Records that the user accepted these versions (a user accepts once, not per device). A version
   * that is no longer current is not recorded: the page showed old text, so it is shown again.
   */
  async acceptTerms(userRef: string, accepted: Array<{ id: string; version: number }>): Promise<number> {
    if (!accepted.length) return 0;
    return this.db.transaction(async (trx) => {
      const userId = await userIdFor(trx, userRef);
      let recorded = 0;
      for (const a of accepted) {
        const n = await trx.raw<{ rowCount: number }>(
          `INSERT INTO terms_acceptances (terms_id, version, user_id)
           SELECT id, version, ? FROM terms WHERE id = ? AND version = ?
           ON CONFLICT DO NOTHING`,
          [userId, a.id, a.version],
        );
        recorded += n.rowCount;
      }
      if (recorded) {
        await trx('events').insert(eventRow({ type: 'terms.accepted', actor: `user:${userRef.toLowerCase()}`, data: { accepted } }));
      }
      return recorded;
    });
  }
}

/** PgEnrollmentGate.apply on a given connection (a platform store's enrollment transaction). */
export async function applyAllowed(conn: Db, deviceId: string, d: Allowed): Promise<void> {
  await runNamed(conn, APPLY, { ...allowedParams(d), id: deviceId });
}

/** The directory entry an email or UPN names; a name seen for the first time gets one (by email). */
async function userIdFor(conn: Db, ref: string): Promise<string> {
  const { rows } = await conn.raw<{ rows: Array<{ id: string }> }>(
    `WITH ${findOrMakeUser(':ref::text')}
     SELECT id FROM found UNION ALL SELECT id FROM made UNION ALL SELECT id FROM users WHERE email = lower(:ref::text) LIMIT 1`,
    { ref },
  );
  return rows[0]!.id;
}
