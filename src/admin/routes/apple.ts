/**
 * The Apple MDM push certificate: upload (PEM pair or PKCS#12), show its topic and expiry, and make
 * the CSR an admin takes to the vendor-signing step. Uploading a certificate of another topic than
 * the current one is refused unless forced: every enrolled device listens on the old topic.
 */
import { Errors } from '../../core/errors';
import { createPushCsr, readPushCertificate } from '../../pki/push-certificate';
import type { PgPushCertificateStore } from '../../storage/push-certificates';
import { actorOf } from '../auth';
import type { AdminRoutes } from '../route';
import { z } from '../zod';

const DAY = 86_400_000;
const PEM_LIMIT = 64 * 1024;

const PushCertificateUpload = z
  .strictObject({
    certificate: z.string().min(1).max(PEM_LIMIT).optional().openapi({ description: 'the push certificate, PEM (Apple hands it out as a .pem)' }),
    private_key: z.string().min(1).max(PEM_LIMIT).optional().openapi({ description: 'its private key, PEM (PKCS#8 or PKCS#1), unencrypted' }),
    pkcs12: z.string().min(1).max(2 * PEM_LIMIT).optional().openapi({ description: 'instead of the PEM pair: a PKCS#12 (.p12) file, base64' }),
    password: z.string().max(1024).optional().openapi({ description: 'the PKCS#12 password' }),
    force: z.boolean().default(false).openapi({
      description: 'replace a certificate of another topic: every enrolled Apple device stops receiving pushes until it re-enrolls',
    }),
  })
  .superRefine((b, ctx) => {
    const pem = b.certificate !== undefined || b.private_key !== undefined;
    if (pem && b.pkcs12 !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'send either certificate and private_key, or pkcs12, not both' });
    } else if (!pem && b.pkcs12 === undefined) {
      ctx.addIssue({ code: 'custom', message: 'send certificate and private_key (PEM), or pkcs12 (base64) with its password' });
    } else if (pem && !b.certificate) {
      ctx.addIssue({ code: 'custom', path: ['certificate'], message: 'required with private_key' });
    } else if (pem && !b.private_key) {
      ctx.addIssue({ code: 'custom', path: ['private_key'], message: 'required with certificate' });
    }
    if (b.password !== undefined && b.pkcs12 === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: 'password goes with pkcs12' });
  })
  .openapi('PushCertificateUpload');

const PushCertificateSchema = z
  .object({
    topic: z.string().openapi({ example: 'com.apple.mgmt.External.6a0a852b-efaa-4267-94ca-f1a3e6a9e43e' }),
    not_after: z.string().openapi({ format: 'date-time' }),
    expires_in_days: z.number().int().openapi({ description: 'whole days left; negative once expired (renew 30 days ahead)' }),
  })
  .openapi('PushCertificate');

const UploadedSchema = PushCertificateSchema.extend({
  previous_topic: z.string().nullable().openapi({ description: 'the topic of the certificate this one replaced, if any' }),
}).openapi('PushCertificateUploaded');

const CsrRequest = z
  .strictObject({
    common_name: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[\w .,@()-]+$/, 'letters, digits, spaces and . , @ ( ) - _ only')
      .optional()
      .openapi({ description: 'subject CN; default "Mooring MDM push"' }),
    email: z.email().max(128).optional().openapi({ description: 'subject emailAddress' }),
  })
  .optional()
  .openapi('PushCsrRequest');

const CsrSchema = z
  .object({
    csr: z.string().openapi({ description: 'PKCS#10, PEM: have it signed by an MDM vendor certificate, then upload it at identity.apple.com' }),
    private_key: z.string().openapi({ description: 'the new RSA 2048 key, PKCS#8 PEM: keep it, it is uploaded with the certificate Apple returns; Mooring does not store it' }),
  })
  .openapi('PushCsr');

const view = (c: { topic: string; notAfter: Date }, now = Date.now()) => ({
  topic: c.topic,
  not_after: c.notAfter.toISOString(),
  expires_in_days: Math.floor((c.notAfter.getTime() - now) / DAY),
});

export function appleRoutes(routes: AdminRoutes, { pushCertificates }: { pushCertificates: PgPushCertificateStore }): void {
  routes.add({
    method: 'put',
    path: '/apple/push-certificate',
    summary: 'Upload the Apple MDM push certificate (PEM pair or PKCS#12); the topic comes from its subject UID',
    scope: 'tokens:manage',
    body: PushCertificateUpload,
    responses: {
      200: { description: 'the certificate is active; APNs connections switch to it', schema: UploadedSchema },
      409: { description: 'push_topic_mismatch: the current certificate has another topic (send force: true to replace it anyway)' },
      422: { description: 'invalid_params: not a usable MDM push certificate (the detail says why)' },
    },
    async handle({ body, req }) {
      const cert = readPushCertificate(body.pkcs12 !== undefined ? { pkcs12: body.pkcs12, password: body.password } : { certificate: body.certificate!, private_key: body.private_key! });
      const result = await pushCertificates.replace(cert, { force: body.force, actor: actorOf(req) });
      return { status: 200, body: { ...view(result), previous_topic: result.previous?.topic ?? null } };
    },
  });

  routes.add({
    method: 'get',
    path: '/apple/push-certificate',
    summary: 'Show the topic and expiry of the Apple MDM push certificate',
    scope: 'enrollment:read',
    responses: { 200: { description: 'the active certificate', schema: PushCertificateSchema }, 404: { description: 'not_found: none uploaded yet' } },
    async handle() {
      const cert = await pushCertificates.summary();
      if (!cert) throw Errors.notFound('no Apple push certificate has been uploaded: PUT /api/v1/apple/push-certificate');
      return { status: 200, body: view(cert) };
    },
  });

  routes.add({
    method: 'post',
    path: '/apple/push-certificate/csr',
    summary: 'Make a new key and a CSR for an Apple MDM push certificate (the vendor-signing step comes next)',
    scope: 'tokens:manage',
    body: CsrRequest,
    responses: { 200: { description: 'the CSR and its private key (shown only here)', schema: CsrSchema } },
    async handle({ body }) {
      const { csrPem, keyPem } = await createPushCsr({ commonName: body?.common_name, email: body?.email });
      return { status: 200, body: { csr: csrPem, private_key: keyPem }, headers: { 'Cache-Control': 'no-store' } };
    },
  });
}
