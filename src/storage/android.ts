/**
 * Android enrollments: the token exchange (one transaction: the token's use, the device record, its
 * channel, its credential and the audit event), DPC credentials, and check-in bookkeeping.
 */
import { Errors } from '../core/errors';
import { modesAllowed, type AndroidModeName, type PersonalUsage } from '../core/enrollment-tokens';
import type { Policy } from '../core/policies';
import { hashSecret } from '../core/secrets';
import type { Device, Enrollment } from '../core/types';
import type pg from 'pg';
import { cancelOpenCommands } from './commands';
import type { Db } from './db';
import { eventRow } from './events';
import type { EnrollmentToken, PgTokenStore } from './tokens';

export interface AndroidEnrollInput {
  token: string;
  mode: AndroidModeName;
  device: {
    serial_number?: string;
    imei?: string;
    hardware_id?: string;
    model: string;
    manufacturer: string;
    api_level: number;
    os_version: string;
    name?: string;
  };
  fcmToken?: string;
  /** Digest of the new DPC credential (the secret itself goes only to the device). */
  credentialHash: string;
  /** Writes what the enrollment rules decided (ownership, user, category, policy) in the same transaction. */
  applyRules(conn: Db, deviceId: string): Promise<void>;
}

export interface AndroidEnrollResult {
  device: Device;
  enrollment: Enrollment;
  reenrolled: boolean;
}

export interface DpcIdentity {
  device_id: string;
  enrollment_id: string;
}

// One round trip per check-in; losing a last-seen mark in a crash is harmless (the next check-in
// writes it again), so it runs on the asynchronous-commit pool.
const CHECKIN = `
  WITH cred AS (
    SELECT c.device_id, c.enrollment_id FROM device_credentials c JOIN devices d ON d.id = c.device_id
     WHERE c.secret_hash = $1 AND c.retired_at IS NULL AND d.status <> 'unenrolled'
  ), enr AS (
    UPDATE enrollments e
       SET last_seen_at = now(),
           push_token = coalesce($2::text, e.push_token),
           push_token_dead_at = CASE WHEN $2::text IS NULL THEN e.push_token_dead_at END
      FROM cred WHERE e.id = cred.enrollment_id
    RETURNING e.id
  ), dev AS (
    UPDATE devices d
       SET last_seen_at = now(),
           inventory = CASE WHEN $3::jsonb IS NULL THEN d.inventory ELSE d.inventory || $3::jsonb END,
           os_version = coalesce($4::text, d.os_version),
           api_level = coalesce($5::int, d.api_level)
      FROM cred WHERE d.id = cred.device_id
    RETURNING d.id, d.policy_id
  )
  SELECT cred.device_id, cred.enrollment_id, p.id AS policy_id, p.version AS policy_version, p.settings AS policy_settings
    FROM cred JOIN dev ON dev.id = cred.device_id LEFT JOIN policies p ON p.id = dev.policy_id`;

export class PgAndroidStore {
  constructor(
    private readonly db: Db,
    private readonly tokens: PgTokenStore,
    /** Check-in bookkeeping (last seen, status) runs on the hand-out pool: see createHandoutPool. */
    private readonly handout: pg.Pool,
  ) {}

  /**
   * Spends a token use and enrolls the device, or changes nothing. The same hardware (serial, IMEI
   * or hardware id) enrolling again keeps its device record: its old credentials are retired and the
   * commands still waiting for it are canceled (a wipe queued before a reset must not run again).
   */
  /** The token, checked without spending a use (its refusals carry the stable token codes). */
  async checkToken(secret: string): Promise<EnrollmentToken> {
    return this.tokens.checkEnrollmentToken(secret, 'android');
  }

  async enroll(input: AndroidEnrollInput): Promise<AndroidEnrollResult> {
    return this.db.transaction(async (trx) => {
      const token = await this.tokens.redeemEnrollmentToken(input.token, 'android', trx);
      const allowed = modesAllowed(token.allow_personal_usage as PersonalUsage | null, token.ownership);
      if (!allowed.includes(input.mode)) {
        throw Errors.of('mode_not_allowed', `this enrollment token allows ${allowed.join(' or ')}, not ${input.mode}`, { allowed_modes: allowed });
      }
      const facts = {
        platform: 'android',
        status: 'enrolled',
        mode: input.mode,
        serial_number: input.device.serial_number ?? null,
        imei: input.device.imei ?? null,
        hardware_id: input.device.hardware_id ?? null,
        model: input.device.model,
        manufacturer: input.device.manufacturer,
        api_level: input.device.api_level,
        os_version: input.device.os_version,
        name: input.device.name ?? `${input.device.manufacturer} ${input.device.model}`,
        enrolled_at: trx.fn.now(),
        last_seen_at: trx.fn.now(),
        updated_at: trx.fn.now(),
      };
      const existing = await this.#sameHardware(trx, input.device);
      let device: Device;
      let enrollment: Enrollment;
      if (existing) {
        [device] = await trx('devices').where({ id: existing.id }).update(facts).returning('*');
        await trx('device_credentials').where({ device_id: existing.id }).whereNull('retired_at').update({ retired_at: trx.fn.now() });
        await cancelOpenCommands(trx, { device_id: existing.id }, 'system:re-enrollment');
        [enrollment] = await trx('enrollments')
          .where({ device_id: existing.id, channel_type: 'device' })
          .update({ status: 'enrolled', push_token: input.fcmToken ?? null, push_token_dead_at: null, last_seen_at: trx.fn.now(), updated_at: trx.fn.now() })
          .returning('*');
      } else {
        [device] = await trx('devices').insert({ ...facts, inventory: '{}' }).returning('*');
        [enrollment] = await trx('enrollments')
          .insert({ device_id: device!.id, platform: 'android', channel_key: device!.id, status: 'enrolled', push_token: input.fcmToken ?? null, last_seen_at: trx.fn.now() })
          .returning('*');
      }
      await trx('device_credentials').insert({ device_id: device!.id, enrollment_id: enrollment!.id, secret_hash: input.credentialHash });
      // Ownership, user, category and policy come from the enrollment rules; the row is read back with them.
      await input.applyRules(trx, device!.id);
      device = (await trx<Device>('devices').where({ id: device!.id }).first())!;
      await trx('events').insert(
        eventRow({
          type: existing ? 'device.reenrolled' : 'device.enrolled',
          device_id: device!.id,
          actor: `enrollment_token:${token.id}`,
          data: { platform: 'android', mode: input.mode, enrollment_token_id: token.id },
        }),
      );
      return { device: device!, enrollment: enrollment!, reenrolled: Boolean(existing) };
    });
  }

  /** The device and channel a live DPC credential belongs to. */
  async authenticate(secret: string): Promise<DpcIdentity | undefined> {
    return this.db('device_credentials as c')
      .join('devices as d', 'd.id', 'c.device_id')
      .where({ 'c.secret_hash': hashSecret(secret) })
      .whereNull('c.retired_at')
      .whereNot('d.status', 'unenrolled')
      .first('c.device_id', 'c.enrollment_id');
  }

  /**
   * A check-in's bookkeeping in one statement: find the live credential, record last-seen, the FCM
   * token, status and inventory, and read the device's policy. Undefined for an unknown credential.
   */
  async checkin(
    secret: string,
    report: { fcm_token?: string; status?: Record<string, unknown>; inventory?: Record<string, unknown>; os_version?: string; api_level?: number },
  ): Promise<(DpcIdentity & { policy: Pick<Policy, 'id' | 'version' | 'settings'> | undefined }) | undefined> {
    const inventory = report.inventory || report.status ? { ...(report.inventory ?? {}), ...(report.status ? { status: report.status } : {}) } : null;
    const { rows } = await this.handout.query<DpcIdentity & { policy_id: string | null; policy_version: number | null; policy_settings: Policy['settings'] | null }>({
      name: 'mooring_android_checkin',
      text: CHECKIN,
      values: [
        hashSecret(secret),
        report.fcm_token ?? null,
        inventory ? JSON.stringify(inventory) : null,
        report.os_version ?? null,
        report.api_level ?? null,
      ],
    });
    const row = rows[0];
    if (!row) return undefined;
    const policy = row.policy_id ? { id: row.policy_id, version: row.policy_version!, settings: row.policy_settings! } : undefined;
    return { device_id: row.device_id, enrollment_id: row.enrollment_id, policy };
  }

  async policyOf(device: Device): Promise<Policy | undefined> {
    if (!device.policy_id) return undefined;
    return this.db<Policy>('policies').where({ id: device.policy_id }).first();
  }

  #sameHardware(trx: Db, d: AndroidEnrollInput['device']): Promise<{ id: string } | undefined> {
    const keys: Array<[string, string]> = [];
    // Android answers "unknown" when an app may not read the serial; that matches nothing.
    if (d.serial_number && d.serial_number.toLowerCase() !== 'unknown') keys.push(['serial_number', d.serial_number]);
    if (d.imei) keys.push(['imei', d.imei]);
    if (d.hardware_id) keys.push(['hardware_id', d.hardware_id]);
    if (keys.length === 0) return Promise.resolve(undefined);
    return trx('devices')
      .where({ platform: 'android' })
      // A pre-approval's placeholder is not this device's record: the enrolled device replaces it.
      .whereNot('status', 'pre_approved')
      .where((w) => {
        for (const [col, value] of keys) w.orWhere(col, value);
      })
      .orderBy('created_at')
      .first('id');
  }
}
