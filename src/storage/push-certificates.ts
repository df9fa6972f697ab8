/**
 * The push certificate of each platform (Apple's MDM push certificate today) in `push_certificates`:
 * at most one active row per platform, the private key sealed (src/pki/sealed.ts), older rows kept
 * inactive as history. Replacing it with a certificate of another topic is refused unless forced:
 * every device enrolled under the old topic would silently stop receiving pushes.
 *
 * `version()` is the active row's id, one indexed lookup: APNs providers on every node compare it to
 * the one they connected with and reconnect when an upload replaced the certificate.
 */
import type { PushCertificate } from '../pki/push-certificate';
import type { Sealer } from '../pki/sealed';
import { Errors } from '../core/errors';
import type { Db } from './db';
import { eventRow } from './events';

export type PushPlatform = 'apple';

export interface StoredPushCertificate extends PushCertificate {
  id: string;
  createdAt: Date;
}

export interface ReplaceResult {
  id: string;
  topic: string;
  notAfter: Date;
  /** The certificate it replaced, if any. */
  previous?: { id: string; topic: string; notAfter: Date };
}

interface Row {
  id: string;
  platform: string;
  active: boolean;
  topic: string;
  certificate_pem: string;
  private_key_sealed: string;
  not_after: Date;
  created_at: Date;
}

export class PgPushCertificateStore {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {}

  /** The active certificate with its key unsealed, or undefined when none was uploaded. */
  async active(platform: PushPlatform = 'apple'): Promise<StoredPushCertificate | undefined> {
    const row = await this.db<Row>('push_certificates')
      .where({ platform, active: true })
      .first('id', 'topic', 'certificate_pem', 'private_key_sealed', 'not_after', 'created_at');
    if (!row) return undefined;
    return {
      id: row.id,
      topic: row.topic,
      certPem: row.certificate_pem,
      keyPem: this.sealer.open(row.private_key_sealed),
      notAfter: new Date(row.not_after),
      createdAt: new Date(row.created_at),
    };
  }

  /** Topic and expiry of the active certificate, without unsealing the key. */
  async summary(platform: PushPlatform = 'apple'): Promise<{ id: string; topic: string; notAfter: Date } | undefined> {
    const row = await this.db<Row>('push_certificates').where({ platform, active: true }).first('id', 'topic', 'not_after');
    return row ? { id: row.id, topic: row.topic, notAfter: new Date(row.not_after) } : undefined;
  }

  /** The active certificate's id (changes on every replacement), or null. */
  async version(platform: PushPlatform = 'apple'): Promise<string | null> {
    const row = await this.db('push_certificates').where({ platform, active: true }).first('id');
    return (row?.id as string | undefined) ?? null;
  }

  /**
   * Makes `cert` the active certificate: the old one is deactivated and the new one inserted in one
   * transaction, with an `apple.push_certificate.replaced` event. Refused with `push_topic_mismatch`
   * when the active certificate has another topic and `force` is not set. Uploads for one platform
   * are serialized by an advisory lock, so two at once cannot both become active.
   */
  async replace(
    cert: PushCertificate,
    opts: { force?: boolean; actor?: string | null; platform?: PushPlatform } = {},
  ): Promise<ReplaceResult> {
    const platform = opts.platform ?? 'apple';
    return this.db.transaction(async (trx) => {
      await trx.raw('SELECT pg_advisory_xact_lock(hashtext(?))', [`push_certificates:${platform}`]);
      const current = await trx<Row>('push_certificates').where({ platform, active: true }).first('id', 'topic', 'not_after');
      if (current && current.topic !== cert.topic && !opts.force) {
        throw Errors.of(
          'push_topic_mismatch',
          `the uploaded certificate is for topic ${cert.topic}, but the current one is for ${current.topic}. ` +
            'Every enrolled Apple device listens on the current topic and would stop receiving pushes until it re-enrolls. ' +
            'Renew the existing certificate at identity.apple.com (same Apple ID, "Renew") instead, or send force: true to replace it anyway.',
          { current_topic: current.topic, uploaded_topic: cert.topic },
        );
      }
      if (current) await trx('push_certificates').where({ id: current.id }).update({ active: false });
      const [row] = (await trx('push_certificates')
        .insert({
          platform,
          topic: cert.topic,
          certificate_pem: cert.certPem,
          private_key_sealed: this.sealer.seal(cert.keyPem),
          not_after: cert.notAfter,
          active: true,
        })
        .returning(['id'])) as Array<{ id: string }>;
      const previous = current ? { id: current.id, topic: current.topic, notAfter: new Date(current.not_after) } : undefined;
      await trx('events').insert(
        eventRow({
          type: `${platform}.push_certificate.replaced`,
          actor: opts.actor ?? null,
          data: {
            id: row!.id,
            topic: cert.topic,
            not_after: cert.notAfter.toISOString(),
            previous_topic: previous?.topic ?? null,
            topic_changed: Boolean(previous && previous.topic !== cert.topic),
          },
        }),
      );
      return { id: row!.id, topic: cert.topic, notAfter: cert.notAfter, previous };
    });
  }
}
