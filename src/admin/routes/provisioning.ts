/**
 * Android provisioning payloads for an enrollment token: the provisioning-extras JSON a QR code
 * carries, the QR code itself (PNG, SVG), and the NFC form (java.util.Properties text).
 *   GET /api/v1/enrollment-tokens/{id}/provisioning[.png|.svg|.properties]
 * Optional query: wifi_ssid, wifi_security_type (NONE|WPA|WEP|EAP), wifi_password, wifi_hidden,
 * wifi_eap_method, locale (xx_YY), time_zone, leave_all_system_apps_enabled, use_mobile_data.
 */
import {
  buildProvisioningExtras,
  nfcProperties,
  parseProvisioningOptions,
  qrCapacityWarning,
  qrPayloadText,
  type DpcConfig,
} from '../../../protocols/android/provisioning';
import { qrPng, qrSvg } from '../../../protocols/android/qr';
import { Errors } from '../../core/errors';
import type { Sealer } from '../../pki/sealed';
import { sealedTokenOf, type PgTokenStore } from '../../storage/tokens';
import type { Db } from '../../storage/db';
import type { AdminRoutes, Reply } from '../route';
import { IdParams } from '../schemas';
import { z } from '../zod';

const flag = z.enum(['true', 'false']).transform((v) => v === 'true');
const ProvisioningQuery = z.object({
  wifi_ssid: z.string().min(1).max(64).optional(),
  wifi_security_type: z.string().optional(),
  wifi_password: z.string().max(128).optional(),
  wifi_hidden: flag.optional(),
  wifi_eap_method: z.string().optional(),
  locale: z.string().optional(),
  time_zone: z.string().optional(),
  leave_all_system_apps_enabled: flag.optional(),
  use_mobile_data: flag.optional(),
  skip_encryption: flag.optional(),
});

export interface ProvisioningDeps {
  db: Db;
  tokens: PgTokenStore;
  sealer: Sealer;
  publicUrl: URL;
  /** The validated DPC settings, or why provisioning is not configured. */
  dpc: { ok: true; dpc: DpcConfig } | { ok: false; problems: string[] };
}

const FORMATS = {
  '': { summary: 'The provisioning-extras JSON for a QR code', render: async (text: string, extras: object) => json(extras, text) },
  '.png': { summary: 'The provisioning QR code as PNG', render: async (text: string) => ({ contentType: 'image/png', content: await qrPng(text) }) },
  '.svg': { summary: 'The provisioning QR code as SVG', render: async (text: string) => ({ contentType: 'image/svg+xml', content: await qrSvg(text) }) },
  '.properties': {
    summary: 'The NFC provisioning form (java.util.Properties text)',
    render: async (_text: string, extras: object) => ({ contentType: 'text/plain; charset=utf-8', content: nfcProperties(extras as never) }),
  },
} as const;

function json(extras: object, _text: string) {
  return { contentType: 'application/json', content: JSON.stringify(extras) };
}

export function provisioningRoutes(routes: AdminRoutes, deps: ProvisioningDeps): void {
  for (const [suffix, format] of Object.entries(FORMATS)) {
    routes.add({
      method: 'get',
      path: `/enrollment-tokens/{id}/provisioning${suffix}`,
      summary: format.summary,
      scope: 'enrollment:read',
      params: IdParams,
      query: ProvisioningQuery,
      responses: {
        200: { description: format.summary },
        404: { description: 'enrollment_token_not_found' },
        409: { description: 'not an Android token, or revoked, expired or used up' },
        503: { description: 'not_ready: the DPC is not configured (MOORING_ANDROID_DPC_*)' },
      },
      async handle({ params, query }): Promise<Reply> {
        if (!deps.dpc.ok) throw Errors.of('not_ready', `Android provisioning is not configured: ${deps.dpc.problems.join('; ')}`);
        const { extras, text } = await payloadFor(deps, deps.dpc.dpc, params.id, query);
        const warning = qrCapacityWarning(text);
        if (warning?.level === 'error' && suffix !== '.properties') throw Errors.validation(warning.message);
        return {
          status: 200,
          raw: await format.render(text, extras),
          headers: { 'Cache-Control': 'no-store', ...(warning ? { 'X-Mooring-Warning': warning.message } : {}) },
        };
      },
    });
  }
}

async function payloadFor(deps: ProvisioningDeps, dpc: DpcConfig, id: string, query: z.output<typeof ProvisioningQuery>) {
  const token = await deps.tokens.getEnrollmentToken(id);
  if (!token) throw Errors.enrollmentTokenNotFound(id);
  if (token.platform !== 'android') throw Errors.of('validation_failed', `token ${id} is a ${token.platform} token; provisioning payloads are for Android`);
  if (token.revoked_at) throw Errors.of('token_revoked', 'this enrollment token was revoked');
  if (token.expires_at && token.expires_at <= new Date()) throw Errors.of('token_expired', 'this enrollment token has expired');
  if ((token.one_time && token.uses > 0) || (token.max_uses !== null && token.uses >= token.max_uses)) throw Errors.of('token_used_up', 'this enrollment token has been used up');
  const sealed = await sealedTokenOf(deps.db, id);
  if (!sealed) throw Errors.of('not_ready', 'this token was made before provisioning payloads were kept; create a new one');
  const options = parseProvisioningOptions({
    ...(query.wifi_ssid
      ? {
          wifi: {
            ssid: query.wifi_ssid,
            security_type: query.wifi_security_type ?? 'NONE',
            ...(query.wifi_password !== undefined ? { password: query.wifi_password } : {}),
            ...(query.wifi_hidden !== undefined ? { hidden: query.wifi_hidden } : {}),
            ...(query.wifi_eap_method !== undefined ? { eap_method: query.wifi_eap_method } : {}),
          },
        }
      : {}),
    ...(query.locale !== undefined ? { locale: query.locale } : {}),
    ...(query.time_zone !== undefined ? { time_zone: query.time_zone } : {}),
    ...(query.leave_all_system_apps_enabled !== undefined ? { leave_all_system_apps_enabled: query.leave_all_system_apps_enabled } : {}),
    ...(query.use_mobile_data !== undefined ? { use_mobile_data: query.use_mobile_data } : {}),
    ...(query.skip_encryption !== undefined ? { skip_encryption: query.skip_encryption } : {}),
  });
  const extras = buildProvisioningExtras({
    dpc,
    serverUrl: deps.publicUrl.origin,
    enrollmentToken: deps.sealer.open(sealed),
    options,
    ...(token.additional_data ? { additionalData: token.additional_data } : {}),
  });
  return { extras, text: qrPayloadText(extras) };
}
