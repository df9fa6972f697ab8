/**
 * Windows enrollments: the WSTEP exchange (one transaction: the token's use, the device, its OMA-DM
 * channel bound to the identity certificate, the certificate record, the event), and the lookups the
 * management endpoint needs.
 */
import type { Device, Enrollment, Json } from '../core/types';
import type { IssuedCertificate } from '../pki/issue';
import { cancelOpenCommands, takeNextSql } from './commands';
import type pg from 'pg';
import { seenIsDue } from './devices';
import { namedStatement, runNamed } from './prepared';
import { identityCertificateRow } from './certificates';
import type { Db } from './db';
import { eventRow } from './events';
import { hashSecret, normalizeEnrollmentToken } from '../core/secrets';
import { usableTokenSql, type EnrollmentToken, type PgTokenStore } from './tokens';
import { allowedDeviceColumns, allowedMarks, allowedParams, allowedUser, applyAllowed } from './enrollment-gate';
import type { Allowed } from '../core/enrollment-policy';

export interface WindowsEnrollInput {
  token: string;
  /** AdditionalContext DeviceID: the channel key Windows uses for this enrollment. */
  deviceId: string;
  hwDevId?: string;
  mode: 'device' | 'user';
  osVersion?: string;
  deviceName?: string;
  userPrincipalName?: string;
  /** The token as the caller already checked it (the enrollment rules needed it): not read again. */
  checkedToken?: EnrollmentToken;
  /** What the enrollment rules decided: written with the enrollment. */
  decision: Allowed;
  /** Issues the identity certificate once the token checks out (inside the transaction). */
  issue(): Promise<IssuedCertificate>;
}

export interface ManagedChannel {
  device_id: string;
  enrollment_id: string;
  /** The DeviceID the channel was enrolled with (the SyncML Source LocURI). */
  channel_key: string;
  status: Enrollment['status'];
  /** The WNS channel URI, once the device reported one and while WNS has not called it dead. */
  push_token: string | null;
}

/** What a first enrollment's device holds before the rules' outcome: what the device reported. */
const REPORTED: Record<string, string> = { category_id: 'NULL', category: 'NULL', policy_id: 'tok.policy_id', name: ':device_name::text' };
const DEVICE_COLUMNS = allowedDeviceColumns((column) => REPORTED[column] ?? 'NULL');

/**
 * A first enrollment in one statement: one use of the token (the token rule from storage/tokens.ts),
 * the device with what the enrollment rules decided (storage/enrollment-gate.ts), its channel bound to
 * the certificate, the certificate record and the event. No row, and no write, when the token can no
 * longer enroll or the DeviceID already has a channel (a re-enrollment).
 */
const ENROLL_NEW = namedStatement('mooring_windows_enroll', `
  WITH tok AS (
    UPDATE enrollment_tokens t SET uses = t.uses + 1
     WHERE t.token_hash = :hash AND t.platform = 'windows' AND ${usableTokenSql('t')}
       AND NOT EXISTS (SELECT 1 FROM enrollments WHERE platform = 'windows' AND channel_key = :channel)
     RETURNING t.id, t.policy_id
  ), ${allowedUser('EXISTS (SELECT 1 FROM tok)')}, dev AS (
    INSERT INTO devices (platform, status, mode, hardware_id, os_version, enrolled_at, last_seen_at, inventory, ${DEVICE_COLUMNS.map(([column]) => column).join(', ')})
    SELECT 'windows', 'enrolled', :mode, :hw, :os, now(), now(), '{}', ${DEVICE_COLUMNS.map(([, value]) => value).join(', ')} FROM tok
    RETURNING id
  ), enr AS (
    INSERT INTO enrollments (device_id, platform, channel_key, channel_type, status, cert_sha256, last_seen_at)
    SELECT dev.id, 'windows', :channel, 'device', 'enrolled', :sha256, now() FROM dev
    RETURNING id, device_id
  ), cert AS (
    INSERT INTO issued_certificates (serial, sha256, subject, purpose, device_id, enrollment_id, not_before, not_after, pem)
    SELECT :serial, :sha256, :subject, :purpose, enr.device_id, enr.id, :not_before, :not_after, :pem FROM enr
  ), ev AS (
    INSERT INTO events (type, device_id, actor, data)
    SELECT 'device.enrolled', enr.device_id, 'enrollment_token:' || tok.id,
           jsonb_build_object('platform', 'windows', 'mode', :mode::text, 'enrollment_token_id', tok.id)
      FROM enr, tok
  ), ${allowedMarks('(SELECT id FROM dev)')}
  SELECT enr.device_id, enr.id AS enrollment_id FROM enr`);

/**
 * A management message in one round trip: the channel an identity certificate is bound to ($1), and,
 * when the message comes from that very channel ($2, the SyncML Source) and it is not unenrolled, the
 * session's bookkeeping. Only what is news is written: last seen when older than its resolution, and
 * the inventory ($3, with the facts $4-$6 copied onto the device) when it holds something the row does
 * not (a session's first message repeats DevInfo every time). A message that changes no row commits
 * without a write. Runs on the hand-out pool (asynchronous commit: a lost last-seen mark is written
 * again at the next session).
 */
const RECORD_MESSAGE = `
  WITH ch AS (
    SELECT device_id, id AS enrollment_id, channel_key, status, CASE WHEN push_token_dead_at IS NULL THEN push_token END AS push_token
      FROM enrollments WHERE platform = 'windows' AND cert_sha256 = $1 LIMIT 1
  ), mine AS (
    SELECT * FROM ch WHERE channel_key = $2 AND status <> 'unenrolled'
  ), enr AS (
    UPDATE enrollments SET last_seen_at = now() WHERE id = (SELECT enrollment_id FROM mine) AND ${seenIsDue('last_seen_at')}
  ), dev AS (
    UPDATE devices d
       SET last_seen_at = now(),
           inventory = CASE WHEN $3::jsonb IS NULL THEN d.inventory ELSE d.inventory || $3::jsonb END,
           model = coalesce($4::text, d.model),
           manufacturer = coalesce($5::text, d.manufacturer),
           os_version = coalesce($6::text, d.os_version)
     WHERE d.id = (SELECT device_id FROM mine)
       AND (${seenIsDue('d.last_seen_at')} OR ($3::jsonb IS NOT NULL AND NOT coalesce(d.inventory @> $3::jsonb, false)))
  )`;

const IDENTIFY_AND_RECORD = `${RECORD_MESSAGE} SELECT * FROM ch`;

/**
 * IDENTIFY_AND_RECORD and the channel's next commands ($7 at most), handed out in the same round trip:
 * only for the channel the message comes from, not unenrolled (the hand-out rule of storage/commands.ts).
 * One row per command taken, in delivery order, or one row with no command.
 */
const IDENTIFY_RECORD_AND_TAKE = `${RECORD_MESSAGE}, taken AS (
    ${takeNextSql('(SELECT enrollment_id FROM mine)', 'false', '$7')}
  )
  SELECT ch.*, t.id AS command_id, t.payload AS command_payload
    FROM ch LEFT JOIN taken t ON true
   ORDER BY t.priority DESC, t.seq`;

/**
 * Tokens a policy request found usable, by digest, for the enrollment request that follows it (a
 * device sends both within seconds). Bounded: only usable tokens get in, the oldest leave first.
 */
class RecentTokens {
  static readonly TTL_MS = 60_000;
  static readonly MAX = 1000;
  readonly #byHash = new Map<string, { token: EnrollmentToken; until: number }>();

  remember(secret: string, token: EnrollmentToken): void {
    const hash = digestOf(secret);
    this.#byHash.delete(hash); // re-inserted last: the map's order is the eviction order
    this.#byHash.set(hash, { token, until: Date.now() + RecentTokens.TTL_MS });
    if (this.#byHash.size > RecentTokens.MAX) this.#byHash.delete(this.#byHash.keys().next().value!);
  }

  get(secret: string): EnrollmentToken | undefined {
    const hash = digestOf(secret);
    const entry = this.#byHash.get(hash);
    if (entry && entry.until > Date.now()) return entry.token;
    if (entry) this.#byHash.delete(hash);
    return undefined;
  }
}

function digestOf(secret: string): string {
  return hashSecret(normalizeEnrollmentToken(secret));
}

export class PgWindowsStore {
  readonly #recent = new RecentTokens();

  constructor(
    private readonly db: Db,
    private readonly tokens: PgTokenStore,
    /** Session bookkeeping runs on the hand-out pool: see createHandoutPool. */
    private readonly handout: pg.Pool,
  ) {}

  /**
   * Checks a token without spending a use or locking it (policy requests); a usable one is remembered
   * for the enrollment request that follows (see tokenForEnrollment).
   */
  async tokenIsUsable(secret: string): Promise<boolean> {
    try {
      this.#recent.remember(secret, await this.checkToken(secret));
      return true;
    } catch {
      return false;
    }
  }

  /** The token, checked without spending a use (its refusals carry the stable token codes). */
  async checkToken(secret: string): Promise<EnrollmentToken> {
    return this.tokens.checkEnrollmentToken(secret, 'windows');
  }

  /**
   * The token of an enrollment request: as its policy request found it moments ago, else checked now.
   * Only its fixed fields (id, ownership, user, category, policy) are used from it; whether it can
   * still enroll (revoked, expired, used up since) is decided again by the statement spending the use.
   */
  async tokenForEnrollment(secret: string): Promise<EnrollmentToken> {
    return this.#recent.get(secret) ?? this.checkToken(secret);
  }

  async enroll(input: WindowsEnrollInput): Promise<{ deviceId: string; enrollmentId: string; certificate: IssuedCertificate; reenrolled: boolean }> {
    // The certificate is made before any write, so the token's row is locked only for the writes:
    // concurrent enrollments with one token do not queue behind each other's signing.
    const token = input.checkedToken ?? (await this.tokens.checkEnrollmentToken(input.token, 'windows'));
    const certificate = await input.issue();
    // A device seen for the first time (the usual case) is one statement; a re-enrollment, a token
    // that changed meanwhile or a race on the same DeviceID take the transaction below.
    const first = await this.#enrollNew(input, certificate);
    if (first) return { ...first, certificate, reenrolled: false };
    const done = await this.#enrollInTransaction(input, token, certificate);
    return { deviceId: done.device.id, enrollmentId: done.enrollment.id, certificate, reenrolled: done.reenrolled };
  }

  async #enrollNew(input: WindowsEnrollInput, c: IssuedCertificate): Promise<{ deviceId: string; enrollmentId: string } | undefined> {
    try {
      const rows = await runNamed<{ device_id: string; enrollment_id: string }>(this.db, ENROLL_NEW, {
        hash: digestOf(input.token),
        channel: input.deviceId,
        mode: input.mode,
        hw: input.hwDevId ?? input.deviceId,
        os: input.osVersion ?? null,
        device_name: input.deviceName ?? null,
        ...identityCertificateRow(c),
        ...allowedParams(input.decision),
      });
      return rows[0] ? { deviceId: rows[0].device_id, enrollmentId: rows[0].enrollment_id } : undefined;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') return undefined; // the same DeviceID enrolled at this moment
      throw err;
    }
  }

  async #enrollInTransaction(input: WindowsEnrollInput, token: EnrollmentToken, certificate: IssuedCertificate): Promise<{ device: Device; enrollment: Enrollment; reenrolled: boolean }> {
    return this.db.transaction(async (trx) => {
      const facts = {
        platform: 'windows',
        status: 'enrolled',
        ownership: token.ownership,
        mode: input.mode,
        udid: null,
        hardware_id: input.hwDevId ?? input.deviceId,
        os_version: input.osVersion ?? null,
        name: input.deviceName ?? null,
        user_ref: input.userPrincipalName ?? token.user_ref,
        policy_id: token.policy_id,
        enrolled_at: trx.fn.now(),
        last_seen_at: trx.fn.now(),
        updated_at: trx.fn.now(),
      };
      const channel = await trx<Enrollment>('enrollments').where({ platform: 'windows', channel_key: input.deviceId }).first();
      let device: Device;
      let enrollment: Enrollment;
      if (channel) {
        [device] = await trx('devices').where({ id: channel.device_id }).update(facts).returning('*');
        [enrollment] = await trx('enrollments')
          .where({ id: channel.id })
          .update({ status: 'enrolled', cert_sha256: certificate.sha256, last_seen_at: trx.fn.now(), updated_at: trx.fn.now() })
          .returning('*');
        await cancelOpenCommands(trx, { enrollment_id: channel.id }, 'system:re-enrollment');
      } else {
        [device] = await trx('devices').insert({ ...facts, inventory: '{}' }).returning('*');
        [enrollment] = await trx('enrollments')
          .insert({ device_id: device!.id, platform: 'windows', channel_key: input.deviceId, channel_type: 'device', status: 'enrolled', cert_sha256: certificate.sha256 })
          .returning('*');
      }
      await trx('issued_certificates').insert({ ...identityCertificateRow(certificate), device_id: device!.id, enrollment_id: enrollment!.id });
      await applyAllowed(trx, device!.id, input.decision);
      // Spent last, so its row is locked for the shortest time; a token used up meanwhile rolls all back.
      await this.tokens.redeemEnrollmentToken(input.token, 'windows', trx);
      await trx('events').insert(
        eventRow({
          type: channel ? 'device.reenrolled' : 'device.enrolled',
          device_id: device!.id,
          actor: `enrollment_token:${token.id}`,
          data: { platform: 'windows', mode: input.mode, enrollment_token_id: token.id },
        }),
      );
      return { device: device!, enrollment: enrollment!, reenrolled: Boolean(channel) };
    });
  }

  /**
   * The channel an identity certificate is bound to (and only that one), with the message's
   * bookkeeping written when the message comes from that channel (see IDENTIFY_AND_RECORD). The caller
   * still compares the channel with the message's Source and status: a mismatch wrote nothing.
   */
  async identifyAndRecord(sha256: string, source: string, inventory: Record<string, Json> | undefined): Promise<ManagedChannel | undefined> {
    const values = messageValues(sha256, source, inventory);
    const { rows } = await this.handout.query<ManagedChannel>({ name: 'mooring_windows_message', text: IDENTIFY_AND_RECORD, values });
    return rows[0];
  }

  /**
   * identifyAndRecord, and up to `limit` of the channel's commands handed out in the same statement
   * (for a message that reports on no command: reports must be applied before a hand-out).
   */
  async identifyRecordAndTake(
    sha256: string,
    source: string,
    inventory: Record<string, Json> | undefined,
    limit: number,
  ): Promise<{ channel: ManagedChannel; commands: Array<{ id: string; payload: string }> } | undefined> {
    type Row = ManagedChannel & { command_id: string | null; command_payload: string | null };
    const { rows } = await this.handout.query<Row>({ name: 'mooring_windows_message_take', text: IDENTIFY_RECORD_AND_TAKE, values: [...messageValues(sha256, source, inventory), limit] });
    if (!rows[0]) return undefined;
    const { command_id: _id, command_payload: _payload, ...channel } = rows[0];
    const commands = rows.flatMap((r) => (r.command_id ? [{ id: r.command_id, payload: r.command_payload! }] : []));
    return { channel, commands };
  }

  /** The WNS channel URI the device reported (it changes; the newest wins and revives a dead mark). */
  async setPushToken(channel: ManagedChannel, channelUri: string): Promise<void> {
    await this.db('enrollments').where({ id: channel.enrollment_id }).update({ push_token: channelUri, push_token_dead_at: null, updated_at: this.db.fn.now() });
  }

  /** The device asked to leave management (generic alert 1226): it is unenrolled, its queue dropped. */
  async unenroll(channel: ManagedChannel): Promise<void> {
    await this.db.transaction(async (trx) => {
      await trx('enrollments').where({ id: channel.enrollment_id }).update({ status: 'unenrolled', updated_at: trx.fn.now() });
      await trx('devices').where({ id: channel.device_id }).update({ status: 'unenrolled', updated_at: trx.fn.now() });
      await cancelOpenCommands(trx, { enrollment_id: channel.enrollment_id }, 'system:unenrollment');
      await trx('events').insert(eventRow({ type: 'device.unenrolled', device_id: channel.device_id, actor: 'device', data: { platform: 'windows' } }));
    });
  }
}

/** IDENTIFY_AND_RECORD's parameters $1-$6: the certificate, the Source, the inventory and its facts. */
function messageValues(sha256: string, source: string, inventory: Record<string, Json> | undefined): Array<string | null> {
  const reported = inventory && Object.keys(inventory).length ? inventory : undefined;
  const facts = reported ? pickFacts(reported) : {};
  return [sha256, source, reported ? JSON.stringify(reported) : null, facts.model ?? null, facts.manufacturer ?? null, facts.os_version ?? null];
}

/** Device facts that DevInfo/DevDetail report, copied onto the device row. */
function pickFacts(inv: Record<string, Json>): { model?: string; manufacturer?: string; os_version?: string } {
  const out: { model?: string; manufacturer?: string; os_version?: string } = {};
  const str = (k: string) => (typeof inv[k] === 'string' ? (inv[k] as string) : undefined);
  // Keys as inventoryFromItems writes them: the LocURI without its leading "./".
  const model = str('DevInfo/Mod');
  const manufacturer = str('DevInfo/Man');
  const os = str('DevDetail/SwV');
  if (model) out.model = model;
  if (manufacturer) out.manufacturer = manufacturer;
  if (os) out.os_version = os;
  return out;
}
