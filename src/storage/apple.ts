/**
 * Apple enrollments: SCEP challenges (one per profile download, bound to an enrollment token), the
 * identity certificates SCEP issues, and the check-in lifecycle of a channel: Authenticate binds the
 * certificate to the channel (pending), TokenUpdate stores the push trifecta (enrolled), CheckOut
 * ends it. Escrowed secrets (UnlockToken, BootstrapToken) are sealed before they reach a row.
 *
 * The binding rule (research notes apple-mdm.md §1.3): a certificate is bound to one device channel at
 * Authenticate; every later message must come with that same certificate, and user channels with the
 * certificate of their device channel. No other rule decides which queue a request may read.
 */
import crypto from 'node:crypto';
import type pg from 'pg';
import { Errors } from '../core/errors';
import type { Command, Device, Enrollment, Json } from '../core/types';
import type { IssuedCertificate } from '../pki/issue';
import type { Sealer } from '../pki/sealed';
import { cancelOpenCommands, takeNextSql } from './commands';
import { identityCertificateRow } from './certificates';
import type { Db } from './db';
import { seenIsDue } from './devices';
import { namedStatement, runNamed } from './prepared';
import { eventRow } from './events';
import { ENROLLMENT_TOKEN_COLUMNS as TOKEN_COLUMNS, usableTokenSql, type EnrollmentToken, type PgTokenStore } from './tokens';

/** How long a profile's SCEP challenge stays good (at most; never past the token's own expiry). */
export const CHALLENGE_TTL_MS = 24 * 3600 * 1000;

export interface AppleChannel {
  enrollment_id: string;
  device_id: string;
  status: Enrollment['status'];
}

export interface AuthenticateInput {
  /** The enrollment id (UDID, or EnrollmentID for User Enrollment). */
  channelKey: string;
  certSha256: string;
  udid?: string;
  userEnrollment: boolean;
  serial?: string;
  model?: string;
  deviceName?: string;
  osVersion?: string;
  imei?: string;
  topic?: string;
  /** Writes what the enrollment rules decided (ownership, user, category, policy) in the same transaction. */
  applyRules(conn: Db, deviceId: string): Promise<void>;
}

export interface TokenUpdateInput {
  channelKey: string;
  /** The device channel's key (the same as channelKey for a device channel). */
  parentKey: string;
  channelType: 'device' | 'user';
  certSha256: string;
  topic: string;
  pushMagic: string;
  token: Buffer;
  unlockToken?: Buffer;
}

export type ScepIssueResult = { ok: true; token: EnrollmentToken; certificate: IssuedCertificate } | { ok: false; reason: string };

/** The channel behind a request ($1 channel key, $2 its device channel's key, $3 the certificate), marked seen. */
const CHANNEL = `
  ch AS (
    SELECT e.id, e.device_id, e.status,
           -- how long ago "last seen" was written, when this request does not write it again
           CASE WHEN ${seenIsDue('e.last_seen_at')} THEN 0
                ELSE (extract(epoch FROM now() - e.last_seen_at) * 1000)::int END AS seen_age_ms
      FROM enrollments e
      JOIN enrollments p ON p.platform = 'apple' AND p.channel_key = $2 AND p.cert_sha256 = $3 AND p.device_id = e.device_id
     WHERE e.platform = 'apple' AND e.channel_key = $1
  ), seen AS (
    UPDATE enrollments SET last_seen_at = now()
     WHERE id = (SELECT id FROM ch) AND ${seenIsDue('last_seen_at')}
  ), dev AS (
    UPDATE devices SET last_seen_at = now()
     WHERE id = (SELECT device_id FROM ch) AND ${seenIsDue('last_seen_at')}
  )`;

const IDENTIFY = `WITH ${CHANNEL} SELECT id AS enrollment_id, device_id, status FROM ch`;

/** An Idle poll in one round trip: who it is, marked seen, and the next command, handed out. */
const IDENTIFY_AND_TAKE = `
  WITH ${CHANNEL}, taken AS (${takeNextSql(`(SELECT id FROM ch WHERE status <> 'unenrolled')`, 'false', '1')})
  SELECT ch.id AS enrollment_id, ch.device_id, ch.status, ch.seen_age_ms, t.id AS command_id, t.type AS command_type, t.payload AS command_payload
    FROM ch LEFT JOIN taken t ON true`;

/**
 * Spends a challenge and one use of its token, records the certificate and an event, and returns the
 * token. The challenge row is updated first, so of two requests racing with one challenge only one gets
 * past it; a token used up by a racing enrollment (seen once its row lock is released) leaves this
 * challenge spent and no certificate. The answer: no row when the challenge was not live when the
 * statement started (unknown, used or expired); a row with `challenge_token_id` and NULL token columns
 * when it was live but nothing was spent (its token cannot enroll, or a racing request spent it).
 */
const SPEND_CHALLENGE = namedStatement('mooring_scep_spend', `
  WITH live AS (
    SELECT enrollment_token_id FROM scep_challenges WHERE challenge_hash = :hash AND used_at IS NULL AND expires_at > now()
  ), spent AS (
    UPDATE scep_challenges c SET used_at = now()
     WHERE c.challenge_hash = :hash AND c.used_at IS NULL AND c.expires_at > now()
       AND EXISTS (SELECT 1 FROM enrollment_tokens t WHERE t.id = c.enrollment_token_id AND t.platform = 'apple' AND ${usableTokenSql('t')})
     RETURNING c.enrollment_token_id, c.category_id
  ), tok AS (
    UPDATE enrollment_tokens t SET uses = t.uses + 1
      FROM spent WHERE t.id = spent.enrollment_token_id AND ${usableTokenSql('t')}
     RETURNING t.*
  ), cert AS (
    INSERT INTO issued_certificates (serial, sha256, subject, purpose, not_before, not_after, pem, enrollment_token_id, category_id)
    SELECT :serial, :sha256, :subject, :purpose, :not_before, :not_after, :pem, tok.id, spent.category_id FROM tok, spent
  ), ev AS (
    INSERT INTO events (type, actor, data)
    SELECT 'apple.identity_issued', 'enrollment_token:' || tok.id, :event::jsonb FROM tok
  )
  SELECT live.enrollment_token_id AS challenge_token_id, ${TOKEN_COLUMNS.map((c) => `tok.${c}`).join(', ')} FROM live LEFT JOIN tok ON true`);

const hashChallenge = (challenge: string) => crypto.createHash('sha256').update(challenge, 'utf8').digest('hex');

/** A SPEND_CHALLENGE row: the token columns are all NULL when nothing was spent. */
type SpendRow = { challenge_token_id: string } & (EnrollmentToken | { id: null });

export class PgAppleStore {
  constructor(
    private readonly db: Db,
    private readonly tokens: PgTokenStore,
    private readonly sealer: Sealer,
    /** Per-request bookkeeping runs on the hand-out pool (asynchronous commit): see createHandoutPool. */
    private readonly handout: pg.Pool,
  ) {}

  // ---- enrollment profile and SCEP ----

  /** Checks the token (no use spent) and makes a one-use SCEP challenge bound to it. */
  async newChallenge(tokenSecret: string, categoryId: string | null = null): Promise<{ challenge: string; token: EnrollmentToken }> {
    const token = await this.tokens.checkEnrollmentToken(tokenSecret, 'apple');
    const challenge = crypto.randomBytes(24).toString('base64url');
    const ttlEnd = Date.now() + CHALLENGE_TTL_MS;
    const expires = token.expires_at && token.expires_at.getTime() < ttlEnd ? token.expires_at : new Date(ttlEnd);
    await this.db('scep_challenges').insert({ challenge_hash: hashChallenge(challenge), enrollment_token_id: token.id, category_id: categoryId, expires_at: expires });
    return { challenge, token };
  }

  /**
   * A PKCSReq: the certificate is made first, then one statement checks the challenge, spends it and
   * one use of its token, and records the certificate and an event: all or nothing, one round trip
   * (this runs once per device enrollment). When nothing is spent the certificate is dropped unseen:
   * it is neither recorded nor returned.
   */
  async issueForChallenge(challenge: string | undefined, issue: () => Promise<IssuedCertificate>): Promise<ScepIssueResult> {
    if (!challenge) return { ok: false, reason: 'no challenge password in the request' };
    const c = await issue();
    const rows = await runNamed<SpendRow>(this.db, SPEND_CHALLENGE, {
      ...identityCertificateRow(c),
      hash: hashChallenge(challenge),
      event: JSON.stringify({ serial: c.serial }),
    });
    if (!rows[0]) return { ok: false, reason: 'unknown, used or expired challenge' };
    const { challenge_token_id: challengeTokenId, ...token } = rows[0];
    if (token.id !== null) return { ok: true, token, certificate: c };
    // Why not: its token can no longer enroll (say which way), or the challenge was used meanwhile.
    try {
      await this.tokens.checkEnrollmentTokenById(challengeTokenId, 'apple');
    } catch (err) {
      return { ok: false, reason: `enrollment token: ${(err as { code?: string }).code ?? 'unusable'}` };
    }
    return { ok: false, reason: 'the challenge was used meanwhile' };
  }

  /** Forgets challenges past their expiry (used or not); the worker calls this every minute. */
  async pruneChallenges(): Promise<number> {
    return this.db('scep_challenges').where('expires_at', '<', this.db.fn.now()).del();
  }

  /** A RenewalReq signed by a live identity of ours: the new certificate inherits its token and device. */
  async issueRenewal(signerSha256: string, issue: () => Promise<IssuedCertificate>): Promise<ScepIssueResult> {
    const current = await this.db('issued_certificates')
      .where({ sha256: signerSha256, purpose: 'device_identity' })
      .whereNull('revoked_at')
      .first('enrollment_token_id', 'device_id', 'enrollment_id');
    if (!current) return { ok: false, reason: 'the renewal is not signed by an identity this server issued' };
    const certificate = await issue();
    await this.db('issued_certificates').insert({
      ...identityCertificateRow(certificate),
      enrollment_token_id: current.enrollment_token_id as string | null,
      device_id: current.device_id,
      enrollment_id: current.enrollment_id,
    });
    const token = current.enrollment_token_id ? await this.tokens.getEnrollmentToken(current.enrollment_token_id as string) : undefined;
    return token ? { ok: true, token, certificate } : { ok: false, reason: 'the enrollment token of this identity is gone' };
  }

  /** Checks a token for a profile download (no use spent). */
  async checkToken(secret: string): Promise<EnrollmentToken> {
    return this.tokens.checkEnrollmentToken(secret, 'apple');
  }

  /**
   * What an identity certificate was issued under: its enrollment token (user, ownership, category)
   * and the category the user chose on the enrollment page, if they were asked.
   */
  async enrollmentOfCertificate(certSha256: string): Promise<{ token?: EnrollmentToken; chosenCategoryId: string | null }> {
    const cert = await this.db('issued_certificates').where({ sha256: certSha256, purpose: 'device_identity' }).first('enrollment_token_id', 'category_id');
    const token = cert?.enrollment_token_id ? await this.tokens.getEnrollmentToken(cert.enrollment_token_id as string) : undefined;
    return { token, chosenCategoryId: (cert?.category_id as string | null | undefined) ?? null };
  }

  // ---- check-in lifecycle ----

  /**
   * Authenticate: the certificate must be one SCEP issued and not bound to any other channel. The
   * device is created or updated as pending, the channel bound to the certificate, its unanswered
   * commands and escrowed secrets dropped (a re-enrollment starts clean).
   */
  async authenticate(input: AuthenticateInput): Promise<{ device: Device; enrollment: Enrollment; reenrolled: boolean }> {
    return this.db.transaction(async (trx) => {
      const cert = await trx('issued_certificates')
        .where({ sha256: input.certSha256, purpose: 'device_identity' })
        .whereNull('revoked_at')
        .first('id', 'enrollment_token_id');
      if (!cert) throw Errors.of('invalid_params', 'the identity certificate was not issued by this server through SCEP');
      // A certificate serves one device: refused if any other device channel holds it.
      const boundElsewhere = await trx('enrollments')
        .where({ cert_sha256: input.certSha256, channel_type: 'device' })
        .whereRaw('NOT (platform = ? AND channel_key = ?)', ['apple', input.channelKey])
        .first('id');
      if (boundElsewhere) throw Errors.of('invalid_params', 'this identity certificate belongs to another device');

      const existing = await trx<Enrollment>('enrollments').where({ platform: 'apple', channel_key: input.channelKey }).first();
      const facts = {
        platform: 'apple',
        status: 'pending',
        mode: input.userEnrollment ? 'user_enrollment' : 'device',
        udid: input.udid ?? null,
        hardware_id: input.udid ? null : input.channelKey,
        serial_number: input.serial ?? null,
        imei: input.imei ?? null,
        model: input.model ?? null,
        manufacturer: 'Apple',
        os_version: input.osVersion ?? null,
        name: input.deviceName ?? null,
        updated_at: trx.fn.now(),
        last_seen_at: trx.fn.now(),
      };
      let device: Device;
      let enrollment: Enrollment;
      // A device known by its UDID (an earlier enrollment whose channel row was removed) is reused too.
      const deviceId = existing?.device_id ?? (input.udid ? ((await trx('devices').where({ platform: 'apple', udid: input.udid }).first('id'))?.id as string | undefined) : undefined);
      if (deviceId) {
        [device] = await trx('devices').where({ id: deviceId }).update(facts).returning('*');
        await cancelOpenCommands(trx, { device_id: deviceId }, 'system:re-enrollment');
        await trx('apple_devices').where({ device_id: deviceId }).del();
      } else {
        [device] = await trx('devices').insert({ ...facts, inventory: '{}' }).returning('*');
      }
      const channel = { status: 'pending', cert_sha256: input.certSha256, push_topic: input.topic ?? null, push_magic: null, push_token: null, push_token_dead_at: null, last_seen_at: trx.fn.now(), updated_at: trx.fn.now() };
      if (existing) {
        [enrollment] = await trx('enrollments').where({ id: existing.id }).update(channel).returning('*');
        // Its user channels wait for their own TokenUpdate again.
        await trx('enrollments').where({ device_id: device!.id, platform: 'apple', channel_type: 'user' }).update({ status: 'pending', updated_at: trx.fn.now() });
      } else {
        [enrollment] = await trx('enrollments')
          .insert({ ...channel, device_id: device!.id, platform: 'apple', channel_key: input.channelKey, channel_type: 'device' })
          .returning('*');
      }
      await trx('issued_certificates').where({ id: cert.id }).update({ device_id: device!.id, enrollment_id: enrollment!.id });
      await input.applyRules(trx, device!.id);
      await trx('events').insert(
        eventRow({ type: 'apple.authenticated', device_id: device!.id, actor: 'device', data: { channel: input.channelKey, enrollment_token_id: cert.enrollment_token_id ?? null } }),
      );
      return { device: device!, enrollment: enrollment!, reenrolled: Boolean(deviceId) };
    });
  }

  /**
   * TokenUpdate: the push trifecta, and the channel becomes enrolled (the first one also the device).
   * A user channel's row is created here, bound through its device channel's certificate.
   */
  async tokenUpdate(input: TokenUpdateInput): Promise<{ channel: AppleChannel; firstTime: boolean } | undefined> {
    return this.db.transaction(async (trx) => {
      const parent = await trx<Enrollment>('enrollments')
        .where({ platform: 'apple', channel_key: input.parentKey, cert_sha256: input.certSha256 })
        .whereNot('status', 'unenrolled')
        .forUpdate()
        .first();
      if (!parent) return undefined;
      const push = {
        push_topic: input.topic,
        push_magic: input.pushMagic,
        push_token: input.token.toString('hex'),
        push_token_dead_at: null,
        status: 'enrolled',
        last_seen_at: trx.fn.now(),
        updated_at: trx.fn.now(),
      };
      let row: Enrollment;
      let firstTime: boolean;
      if (input.channelType === 'device') {
        firstTime = parent.status !== 'enrolled';
        [row] = await trx('enrollments').where({ id: parent.id }).update(push).returning('*');
      } else {
        const existing = await trx<Enrollment>('enrollments').where({ platform: 'apple', channel_key: input.channelKey }).first();
        firstTime = existing?.status !== 'enrolled';
        if (existing && existing.device_id !== parent.device_id) return undefined;
        [row] = existing
          ? await trx('enrollments').where({ id: existing.id }).update({ ...push, cert_sha256: input.certSha256 }).returning('*')
          : await trx('enrollments')
              .insert({ ...push, device_id: parent.device_id, platform: 'apple', channel_key: input.channelKey, channel_type: 'user', cert_sha256: input.certSha256 })
              .returning('*');
      }
      if (input.channelType === 'device' && firstTime) {
        await trx('devices').where({ id: parent.device_id }).update({ status: 'enrolled', enrolled_at: trx.fn.now(), updated_at: trx.fn.now() });
      }
      if (input.unlockToken && input.channelType === 'device') {
        await this.#upsertSecrets(trx, parent.device_id, { unlock_token_sealed: this.sealer.seal(input.unlockToken.toString('base64')), unlock_token_at: trx.fn.now() });
      }
      if (firstTime) {
        await trx('events').insert(
          eventRow({ type: input.channelType === 'device' ? 'device.enrolled' : 'apple.user_channel_enrolled', device_id: parent.device_id, actor: 'device', data: { platform: 'apple', channel: input.channelKey } }),
        );
      }
      return { channel: { enrollment_id: row!.id, device_id: row!.device_id, status: row!.status }, firstTime };
    });
  }

  /** CheckOut (the profile was removed): the channel, and for a device channel the device, is unenrolled. */
  async checkOut(channel: AppleChannel, channelType: 'device' | 'user'): Promise<void> {
    await this.db.transaction(async (trx) => {
      if (channelType === 'device') {
        await trx('enrollments').where({ device_id: channel.device_id, platform: 'apple' }).update({ status: 'unenrolled', updated_at: trx.fn.now() });
        await trx('devices').where({ id: channel.device_id }).update({ status: 'unenrolled', updated_at: trx.fn.now() });
        await cancelOpenCommands(trx, { device_id: channel.device_id }, 'system:unenrollment');
        await trx('apple_devices').where({ device_id: channel.device_id }).del();
      } else {
        await trx('enrollments').where({ id: channel.enrollment_id }).update({ status: 'unenrolled', updated_at: trx.fn.now() });
        await cancelOpenCommands(trx, { enrollment_id: channel.enrollment_id }, 'system:unenrollment');
      }
      await trx('events').insert(eventRow({ type: 'device.unenrolled', device_id: channel.device_id, actor: 'device', data: { platform: 'apple', channel_type: channelType } }));
    });
  }

  /**
   * The channel behind a request, if `certSha256` is the certificate bound to its device channel; marks
   * it seen. One statement on the hand-out pool: this runs on every poll.
   */
  async identify(channelKey: string, parentKey: string, certSha256: string): Promise<AppleChannel | undefined> {
    const { rows } = await this.handout.query<AppleChannel>({ name: 'mooring_apple_identify', text: IDENTIFY, values: [channelKey, parentKey, certSha256] });
    return rows[0];
  }

  /** `identify` plus the hand-out of the next command (NotNow'd ones included: an Idle starts a session). */
  async identifyAndTakeNext(
    channelKey: string,
    parentKey: string,
    certSha256: string,
  ): Promise<{ channel: AppleChannel; command?: Pick<Command, 'id' | 'type' | 'payload'>; seenAgeMs: number } | undefined> {
    const { rows } = await this.handout.query<AppleChannel & { seen_age_ms: number; command_id: string | null; command_type: string; command_payload: string }>({
      name: 'mooring_apple_idle',
      text: IDENTIFY_AND_TAKE,
      values: [channelKey, parentKey, certSha256],
    });
    const row = rows[0];
    if (!row) return undefined;
    const channel = { enrollment_id: row.enrollment_id, device_id: row.device_id, status: row.status };
    const seenAgeMs = row.seen_age_ms;
    return row.command_id ? { channel, seenAgeMs, command: { id: row.command_id, type: row.command_type, payload: row.command_payload } } : { channel, seenAgeMs };
  }

  // ---- escrow and reports ----

  async setBootstrapToken(deviceId: string, token: Buffer | undefined): Promise<void> {
    const sealed = token && token.length > 0 ? this.sealer.seal(token.toString('base64')) : null;
    await this.#upsertSecrets(this.db, deviceId, { bootstrap_token_sealed: sealed, bootstrap_token_at: sealed ? this.db.fn.now() : null });
    await this.db('events').insert(eventRow({ type: sealed ? 'apple.bootstrap_token_escrowed' : 'apple.bootstrap_token_removed', device_id: deviceId, actor: 'device' }));
  }

  async bootstrapToken(deviceId: string): Promise<Buffer | undefined> {
    const row = await this.db('apple_devices').where({ device_id: deviceId }).first('bootstrap_token_sealed');
    return row?.bootstrap_token_sealed ? Buffer.from(this.sealer.open(row.bootstrap_token_sealed as string), 'base64') : undefined;
  }

  async unlockToken(deviceId: string): Promise<Buffer | undefined> {
    const row = await this.db('apple_devices').where({ device_id: deviceId }).first('unlock_token_sealed');
    return row?.unlock_token_sealed ? Buffer.from(this.sealer.open(row.unlock_token_sealed as string), 'base64') : undefined;
  }

  async recordDeclarativeStatus(deviceId: string, status: Json): Promise<void> {
    await this.#upsertSecrets(this.db, deviceId, { ddm_status: JSON.stringify(status) });
  }

  /** What DeviceInformation / SecurityInfo / ProfileList said, merged into the inventory; facts copied to columns. */
  async recordInventory(deviceId: string, inventory: Record<string, Json>, facts: Partial<Pick<Device, 'name' | 'serial_number' | 'model' | 'os_version' | 'imei' | 'supervised'>>): Promise<void> {
    await this.db('devices')
      .where({ id: deviceId })
      .update({ ...facts, inventory: this.db.raw('inventory || ?::jsonb', [JSON.stringify(inventory)]), updated_at: this.db.fn.now() });
  }

  async #upsertSecrets(conn: Db, deviceId: string, values: Record<string, unknown>): Promise<void> {
    await conn('apple_devices')
      .insert({ device_id: deviceId, ...values, updated_at: conn.fn.now() })
      .onConflict('device_id')
      .merge({ ...values, updated_at: conn.fn.now() });
  }
}

