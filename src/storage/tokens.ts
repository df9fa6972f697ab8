/** API tokens and enrollment tokens; only digests of the secrets are stored. */
import { Errors } from '../core/errors';
import type { Page, PageRequest } from '../core/pagination';
import { hashSecret, normalizeEnrollmentToken } from '../core/secrets';
import type { EventInput, Platform, Role } from '../core/types';
import type { Db } from './db';
import { eventRow } from './events';
import { newestFirst } from './paging';
import { UUID } from '../core/ids';
import { namedStatement, runNamed } from './prepared';

export interface ApiToken {
  id: string;
  name: string;
  role: Role;
  hint: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

export interface EnrollmentToken {
  id: string;
  platform: Platform;
  hint: string;
  policy_id: string | null;
  ownership: 'corporate' | 'personal' | 'unknown';
  allow_personal_usage: string | null;
  additional_data: string | null;
  user_ref: string | null;
  /** The device category enrollments with this token get. */
  category_id: string | null;
  /** The enrollment page lets the user choose the device's category. */
  category_choice: boolean;
  one_time: boolean;
  max_uses: number | null;
  uses: number;
  expires_at: Date | null;
  revoked_at: Date | null;
  created_by: string | null;
  created_at: Date;
}

const API_TOKEN_COLUMNS: string[] = ['id', 'name', 'role', 'hint', 'created_at', 'last_used_at', 'revoked_at'];
export const ENROLLMENT_TOKEN_COLUMNS: string[] = [
  'id', 'platform', 'hint', 'policy_id', 'ownership', 'allow_personal_usage', 'additional_data', 'user_ref', 'category_id', 'category_choice',
  'one_time', 'max_uses', 'uses', 'expires_at', 'revoked_at', 'created_by', 'created_at',
];

export class PgTokenStore {
  constructor(private readonly db: Db) {}

  // ---- API tokens ----

  async createApiToken(input: { name: string; role: Role; secret: string; hint: string }, event: EventInput): Promise<ApiToken> {
    return this.db.transaction(async (trx) => {
      const [row] = await trx('api_tokens')
        .insert({ name: input.name, role: input.role, token_hash: hashSecret(input.secret), hint: input.hint })
        .returning(API_TOKEN_COLUMNS);
      await trx('events').insert(eventRow({ ...event, data: { ...event.data, api_token_id: row.id, role: input.role } }));
      return row as ApiToken;
    });
  }

  /** The live token with this secret, touching `last_used_at` at most once a minute. */
  async authenticate(secret: string): Promise<ApiToken | undefined> {
    const row = (await this.db('api_tokens')
      .select(API_TOKEN_COLUMNS)
      .where({ token_hash: hashSecret(secret) })
      .whereNull('revoked_at')
      .first()) as ApiToken | undefined;
    if (row && (!row.last_used_at || Date.now() - row.last_used_at.getTime() > 60_000)) {
      await this.db('api_tokens').where({ id: row.id }).update({ last_used_at: this.db.fn.now() });
    }
    return row;
  }

  async hasApiTokens(): Promise<boolean> {
    return Boolean(await this.db('api_tokens').first('id'));
  }

  async listApiTokens(page: PageRequest): Promise<Page<ApiToken>> {
    return newestFirst<ApiToken>(this.db('api_tokens').select(API_TOKEN_COLUMNS), page);
  }

  async revokeApiToken(id: string, actor: string | null): Promise<ApiToken> {
    if (!UUID.test(id)) throw Errors.apiTokenNotFound(id);
    return this.db.transaction(async (trx) => {
      const [row] = await trx('api_tokens').where({ id }).update({ revoked_at: trx.raw('coalesce(revoked_at, now())') }).returning(API_TOKEN_COLUMNS);
      if (!row) throw Errors.apiTokenNotFound(id);
      await trx('events').insert(eventRow({ type: 'api_token.revoked', actor, data: { api_token_id: id } }));
      return row as ApiToken;
    });
  }

  // ---- Enrollment tokens ----

  async createEnrollmentToken(
    input: Omit<EnrollmentToken, 'id' | 'uses' | 'revoked_at' | 'created_at' | 'hint'> & { secret: string; hint: string; token_sealed: string | null },
    event: EventInput,
  ): Promise<EnrollmentToken> {
    const { secret, ...rest } = input;
    return this.db.transaction(async (trx) => {
      const [row] = await trx('enrollment_tokens')
        .insert({ ...rest, token_hash: hashSecret(secret) })
        .returning(ENROLLMENT_TOKEN_COLUMNS);
      await trx('events').insert(eventRow({ ...event, data: { ...event.data, enrollment_token_id: row.id, platform: input.platform } }));
      return row as EnrollmentToken;
    });
  }

  async getEnrollmentToken(id: string): Promise<EnrollmentToken | undefined> {
    if (!UUID.test(id)) return undefined;
    return (await this.db('enrollment_tokens').select(ENROLLMENT_TOKEN_COLUMNS).where({ id }).first()) as EnrollmentToken | undefined;
  }

  async listEnrollmentTokens(filter: { platform?: Platform }, page: PageRequest): Promise<Page<EnrollmentToken>> {
    const q = this.db('enrollment_tokens').select(ENROLLMENT_TOKEN_COLUMNS);
    if (filter.platform) q.where('platform', filter.platform);
    return newestFirst<EnrollmentToken>(q, page);
  }

  /** Revokes a token; enrolled devices are untouched (they hold their own credentials). */
  async revokeEnrollmentToken(id: string, actor: string | null): Promise<EnrollmentToken> {
    if (!UUID.test(id)) throw Errors.enrollmentTokenNotFound(id);
    return this.db.transaction(async (trx) => {
      const [row] = await trx('enrollment_tokens')
        .where({ id })
        .update({ revoked_at: trx.raw('coalesce(revoked_at, now())') })
        .returning(ENROLLMENT_TOKEN_COLUMNS);
      if (!row) throw Errors.enrollmentTokenNotFound(id);
      await trx('events').insert(eventRow({ type: 'enrollment_token.revoked', actor, data: { enrollment_token_id: id } }));
      return row as EnrollmentToken;
    });
  }

  /**
   * Spends one use of an enrollment token for `platform`, atomically: refuses (with a stable code) a
   * token that is unknown, for another platform, revoked, expired or used up.
   */
  async redeemEnrollmentToken(secret: string, platform: Platform, conn: Db = this.db): Promise<EnrollmentToken> {
    const hash = hashSecret(normalizeEnrollmentToken(secret));
    const [row] = await usable(conn, { token_hash: hash }, platform).increment('uses', 1).returning(ENROLLMENT_TOKEN_COLUMNS);
    if (row) return row as EnrollmentToken;
    return refusal(conn, { token_hash: hash }, platform);
  }

  /** `redeemEnrollmentToken` for a token known by id (a SCEP challenge made from it). */
  async redeemEnrollmentTokenById(id: string, platform: Platform, conn: Db = this.db): Promise<EnrollmentToken> {
    const [row] = await usable(conn, { id }, platform).increment('uses', 1).returning(ENROLLMENT_TOKEN_COLUMNS);
    if (row) return row as EnrollmentToken;
    return refusal(conn, { id }, platform);
  }

  /** `checkEnrollmentToken` for a token known by id. */
  async checkEnrollmentTokenById(id: string, platform: Platform): Promise<EnrollmentToken> {
    const row = (await usable(this.db, { id }, platform).first(ENROLLMENT_TOKEN_COLUMNS)) as EnrollmentToken | undefined;
    return row ?? refusal(this.db, { id }, platform);
  }

  /** A usable token of any platform (the terms page serves all three). */
  async checkAnyEnrollmentToken(secret: string): Promise<EnrollmentToken> {
    const hash = hashSecret(normalizeEnrollmentToken(secret));
    const found = (await this.db('enrollment_tokens').where({ token_hash: hash }).first('platform')) as { platform: Platform } | undefined;
    if (!found) throw Errors.of('enrollment_token_not_found', 'this enrollment token is not valid');
    return this.checkEnrollmentToken(secret, found.platform);
  }

  /**
   * The same checks as redeem, without spending a use or locking the row: for steps before the
   * enrollment itself (a policy request, a sign-in page) and for doing slow work before redeeming.
   */
  async checkEnrollmentToken(secret: string, platform: Platform): Promise<EnrollmentToken> {
    const hash = hashSecret(normalizeEnrollmentToken(secret));
    // Every enrollment step asks this (Windows twice per device): a prepared statement.
    const [row] = await runNamed<EnrollmentToken>(this.db, USABLE_BY_HASH, { hash, platform });
    return row ?? refusal(this.db, { token_hash: hash }, platform);
  }
}

type TokenKey = { token_hash: string } | { id: string };

/**
 * When a token can still enroll a device, as SQL over the row `t`: not revoked, not expired, not used
 * up. The one statement of this rule; storage/apple.ts folds it into its SCEP issuance statement.
 */
export function usableTokenSql(t: string): string {
  return `${t}.revoked_at IS NULL AND (${t}.expires_at IS NULL OR ${t}.expires_at > now())` +
    ` AND (${t}.one_time = false OR ${t}.uses = 0) AND (${t}.max_uses IS NULL OR ${t}.uses < ${t}.max_uses)`;
}

/** Tokens with this digest (or id) that can still enroll a device. */
function usable(conn: Db, key: TokenKey, platform: Platform) {
  return conn('enrollment_tokens').where({ ...key, platform }).whereRaw(usableTokenSql('enrollment_tokens'));
}

const USABLE_BY_HASH = namedStatement(
  'mooring_usable_token',
  `SELECT ${ENROLLMENT_TOKEN_COLUMNS.join(', ')} FROM enrollment_tokens t
    WHERE t.token_hash = :hash AND t.platform = :platform AND ${usableTokenSql('t')}`,
);

/** Why a token cannot be used, as a stable code. */
async function refusal(conn: Db, key: TokenKey, platform: Platform): Promise<never> {
  const found = (await conn('enrollment_tokens').where({ ...key, platform }).first()) as EnrollmentToken | undefined;
  if (!found) throw Errors.of('enrollment_token_not_found', 'this enrollment token is not valid');
  if (found.revoked_at) throw Errors.of('token_revoked', 'this enrollment token was revoked');
  if (found.expires_at && found.expires_at <= new Date()) throw Errors.of('token_expired', 'this enrollment token has expired');
  throw Errors.of('token_used_up', 'this enrollment token has been used up');
}

/** The sealed secret of a token, for rebuilding its provisioning payload (Android). */
export async function sealedTokenOf(db: Db, id: string): Promise<string | undefined> {
  if (!UUID.test(id)) return undefined;
  const row = await db('enrollment_tokens').where({ id }).first('token_sealed');
  return row?.token_sealed ?? undefined;
}
