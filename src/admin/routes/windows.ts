/** Windows enrollment helpers: the EnterpriseEnrollment CNAME check (like Intune's CNAME Validation). */
import { CNAME_STEPS, checkEnrollmentCname } from '../../windows/cname-check';
import type { AdminRoutes } from '../route';
import { z } from '../zod';

const CnameCheckQuery = z.object({
  domain: z.string().min(1).max(254).openapi({ description: 'a UPN suffix users enroll with', example: 'contoso.com' }),
});

const CnameStepSchema = z
  .object({ step: z.enum(CNAME_STEPS), ok: z.boolean(), detail: z.string(), hint: z.string().optional() })
  .openapi('CnameCheckStep');

const CnameReportSchema = z
  .object({ domain: z.string(), name: z.string(), ok: z.boolean(), steps: z.array(CnameStepSchema) })
  .openapi('CnameCheckReport');

export function windowsRoutes(routes: AdminRoutes, { publicUrl }: { publicUrl: URL }): void {
  routes.add({
    method: 'get',
    path: '/windows/cname-check',
    summary: 'Check that EnterpriseEnrollment.<domain> leads Windows devices here: DNS, certificate, Discovery.svc',
    scope: 'enrollment:read',
    query: CnameCheckQuery,
    responses: { 200: { description: 'the report; ok is false when a step failed (each failed step has a hint)', schema: CnameReportSchema } },
    async handle({ query }) {
      // An invalid domain throws InvalidDomainError, a MooringError: rendered as 400 validation_failed.
      return { status: 200, body: await checkEnrollmentCname({ domain: query.domain, expectedHost: publicUrl.hostname }) };
    },
  });
}
