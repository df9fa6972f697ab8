/**
 * Secrets that must be shown again later (an Android enrollment token inside its QR code) are sealed
 * with AES-256-GCM under a key kept outside the database: `MOORING_SECRET_KEY` or, by default, a key
 * generated into the certs directory. A database dump alone reveals none of them.
 */
import crypto from 'node:crypto';

const VERSION = 'v1';

export class Sealer {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('the sealing key must be 32 bytes');
    this.#key = key;
  }

  /** `v1.<iv>.<ciphertext>.<tag>`, base64url parts. */
  seal(plaintext: string): string {
    const iv = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [VERSION, iv, body, cipher.getAuthTag()].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
  }

  open(sealed: string): string {
    const [version, iv, body, tag] = sealed.split('.');
    if (version !== VERSION || !iv || body === undefined || !tag) throw new Error('not a sealed value');
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.#key, Buffer.from(iv, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  }
}

/** Reads a key given as 64 hex characters or 43+ base64url characters. */
export function parseSecretKey(text: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-f]{64}$/i.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64url');
  if (key.length !== 32) throw new Error('MOORING_SECRET_KEY must be 32 bytes (64 hex characters or 43 base64url characters)');
  return key;
}
