/**
 * Bearer secrets (API tokens, enrollment tokens) are random, shown once, and stored only as SHA-256
 * digests: they carry 128+ bits of entropy, so a fast hash is enough and lookups stay indexed.
 */
import crypto from 'node:crypto';

export function hashSecret(secret: string): string {
  return crypto.createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** An admin API token: `mrg_` and 43 base64url characters (256 bits). */
export function newApiToken(): string {
  return `mrg_${crypto.randomBytes(32).toString('base64url')}`;
}

// Crockford base32: no I, L, O or U, so a token read aloud or typed on a phone survives.
const TYPEABLE = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * An enrollment token a person may have to type (Windows enrollment password, Android manual entry):
 * 25 base32 characters (125 bits) in groups of five, e.g. `7QX4K-...`.
 */
export function newEnrollmentToken(): string {
  const bytes = crypto.randomBytes(25);
  const chars = [...bytes].map((b) => TYPEABLE[b & 31]).join('');
  return chars.match(/.{5}/g)!.join('-');
}

/** Typed tokens are compared without case and dashes, as people type them. */
export function normalizeEnrollmentToken(input: string): string {
  const clean = input.toUpperCase().replace(/[^0-9A-Z]/g, '');
  return clean.length === 25 ? clean.match(/.{5}/g)!.join('-') : input.trim();
}

/** The last four characters, stored so an admin can tell tokens apart without the secret. */
export function hintOf(secret: string): string {
  return secret.slice(-4);
}
