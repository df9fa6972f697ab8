/** How an issued device identity certificate is recorded: one row shape for SCEP and Windows enrollment. */
import type { IssuedCertificate } from '../pki/issue';

/**
 * The `issued_certificates` columns of an identity certificate. Also the named bindings (`:serial`,
 * `:sha256`, ...) of the statements that insert one together with other rows.
 */
export function identityCertificateRow(c: IssuedCertificate) {
  return {
    serial: c.serial,
    sha256: c.sha256,
    subject: c.subject,
    purpose: 'device_identity' as const,
    not_before: c.notBefore,
    not_after: c.notAfter,
    pem: c.pem,
  };
}
