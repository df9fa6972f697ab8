/**
 * How an Apple device gets in: `GET /enroll/apple?token=T` hands out the signed enrollment profile with
 * a fresh one-use SCEP challenge bound to T; `/scep` (RFC 8894) turns that challenge and the device's
 * own key into its identity certificate. Refusals are a short human-readable page (profile) or a
 * CertRep FAILURE with failInfo (SCEP), never a stack trace.
 */
import express, { type Response, type Router } from 'express';
import { EnrollmentRefusal, type EnrollmentFacts } from '../../src/core/enrollment-policy';
import { acceptedTerms, acceptsAll, categoryFormHtml, chosenCategory, escapeHtml, refusalHtml, sendPage, termsFormHtml } from '../../src/http/enrollment-pages';
import type { PendingTerms } from '../../src/storage/enrollment-gate';
import type { EnrollmentToken } from '../../src/storage/tokens';
import type { ServerResponse } from 'node:http';
import { isMooringError } from '../../src/core/errors';
import { answer, type DeviceHandler } from '../../src/http/lanes';
import { readRawBody } from '../../src/http/raw-body';
import { signAttached } from '../../src/pki/cms';
import { issueClientCertificate, readCsr, verifyClientCertificate } from '../../src/pki/issue';
import type { AppleRoutesDeps } from './routes';
import { buildEnrollmentProfile } from './profile';
import { buildCertRep, caCapsText, caCertResponse, certRepEncryption, parsePkiMessage, ScepError, type ScepFailInfo, type ScepRequest } from './scep';

export const SCEP_BODY_LIMIT = 256 * 1024;
const PKI_MESSAGE = 'application/x-pki-message';

const REFUSALS: Record<string, { title: string; text: string }> = {
  token_expired: { title: 'This enrollment link has expired', text: 'Ask your administrator for a new enrollment link.' },
  token_revoked: { title: 'This enrollment link was withdrawn', text: 'Ask your administrator for a new enrollment link.' },
  token_used_up: { title: 'This enrollment link has already been used', text: 'Each link enrolls a limited number of devices. Ask your administrator for a new one.' },
  enrollment_token_not_found: { title: 'This enrollment link is not valid', text: 'Check that you opened the whole link, or ask your administrator for a new one.' },
};

export function enrollmentRoutes(router: Router, deps: AppleRoutesDeps): void {
  const caDer = Buffer.from(deps.ca.cert.rawData);

  router.get('/enroll/apple', async (req, res) => {
    const token = typeof req.query.token === 'string' ? req.query.token : '';
    if (!token) return void page(res, 400, 'No enrollment token', 'Open the enrollment link exactly as your administrator sent it.');
    const topic = await deps.pushTopic();
    if (!topic) {
      deps.logger.warn('an Apple enrollment profile was asked for, but no APNs push certificate is uploaded');
      return void page(res, 503, 'Apple enrollment is not set up yet', 'The server has no Apple push certificate. Your administrator must upload one first.');
    }
    let challenge: string;
    let checked: EnrollmentToken | undefined;
    try {
      checked = await deps.apple.checkToken(token);
      // What the rules can decide before the device says what it is: platform, terms, the token.
      await deps.gate.decide(profileFacts(checked));
      let categoryId: string | null = null;
      if (checked.category_choice) {
        const categories = await deps.gate.categories();
        const chosen = req.query.category === undefined ? undefined : chosenCategory(req.query.category, categories);
        if (chosen === undefined) {
          const error = req.query.category === undefined ? undefined : 'Choose one of the categories.';
          const form = categoryFormHtml({ action: '/enroll/apple', method: 'get', hidden: { token }, categories, selected: checked.category_id, error });
          return void sendPage(res, 200, 'Enroll this device', form);
        }
        categoryId = chosen;
      }
      ({ challenge } = await deps.apple.newChallenge(token, categoryId));
    } catch (err) {
      if (err instanceof EnrollmentRefusal && err.reason === 'terms_not_accepted') {
        return void termsPage(res, token, await deps.gate.pendingTerms(checked!.user_ref!));
      }
      if (err instanceof EnrollmentRefusal) {
        deps.logger.info({ reason: err.reason, activityId: err.activityId }, 'Apple enrollment profile refused');
        return void sendPage(res, 403, 'This device cannot be enrolled', refusalHtml(err));
      }
      const refusal = isMooringError(err) ? REFUSALS[err.code] : undefined;
      if (!refusal) throw err;
      await deps.gate.recordTokenRefusal({ platform: 'apple', method: 'apple_profile', ownershipClaim: 'unknown', final: false }, err);
      deps.logger.info({ code: (err as { code: string }).code }, 'Apple enrollment profile refused');
      return void page(res, 403, refusal.title, refusal.text);
    }
    const profile = buildEnrollmentProfile({
      baseUrl: deps.publicUrl.origin + deps.publicUrl.pathname,
      topic,
      challenge,
      rootCertDer: deps.rootPayload ? caDer : undefined,
    });
    const signed = await signAttached(Buffer.from(profile.plist, 'utf8'), { certPem: deps.ca.certPem, privateKey: deps.ca.keys.privateKey });
    res
      .status(200)
      .type('application/x-apple-aspen-config')
      .set('Content-Disposition', 'attachment; filename="enroll.mobileconfig"')
      .set('Cache-Control', 'no-store')
      .send(signed);
  });

  // The terms form posts here; once everything is accepted the browser goes back for the profile.
  router.post('/enroll/apple', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const token = typeof body.token === 'string' ? body.token : '';
    const checked = await deps.apple.checkToken(token).catch(() => undefined);
    if (!checked?.user_ref) return void page(res, 400, 'This enrollment link is not valid', 'Open the enrollment link exactly as your administrator sent it.');
    const pending = await deps.gate.pendingTerms(checked.user_ref);
    const accepted = acceptedTerms(body);
    if (!acceptsAll(pending, accepted)) return void termsPage(res, token, pending, 'Tick every box to accept all of the terms, or close this page.');
    await deps.gate.acceptTerms(checked.user_ref, accepted);
    res.redirect(303, `/enroll/apple?token=${encodeURIComponent(token)}`);
  });
}

/** `/scep` as a plain Node handler, for a lane ahead of express: every enrolling device sends a PKIOperation. */
export function scepHandler(deps: AppleRoutesDeps): DeviceHandler {
  return async (req, res) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    switch (query.get('operation') ?? '') {
      case 'GetCACaps':
        return answer(res, 200, 'text/plain; charset=utf-8', caCapsText());
      case 'GetCACert': {
        const { contentType, body } = caCertResponse(deps.ca);
        // Exactly the type, no charset: some SCEP clients compare the whole header.
        return answer(res, 200, contentType, body);
      }
      case 'PKIOperation': {
        const der = req.method === 'GET' ? messageParam(query.get('message')) : await readRawBody(req, SCEP_BODY_LIMIT).catch(() => undefined);
        if (!der || der.length === 0) return answer(res, 400, 'text/plain; charset=utf-8', 'PKIOperation needs a pkiMessage');
        return pkiOperation(deps, der, res);
      }
      default:
        return answer(res, 400, 'text/plain; charset=utf-8', 'unknown or missing operation');
    }
  };
}

/** The facts of a profile download: the token's user and claim; the device is not known yet. */
function profileFacts(t: EnrollmentToken): EnrollmentFacts {
  return {
    platform: 'apple',
    method: 'apple_profile',
    userRef: t.user_ref ?? undefined,
    ownershipClaim: t.ownership,
    token: { id: t.id, expired: false, revoked: false, usedUp: false },
    final: false,
  };
}

function termsPage(res: Response, token: string, terms: PendingTerms[], error?: string): void {
  sendPage(res, 200, 'Terms of use', termsFormHtml({ action: '/enroll/apple', hidden: { token }, terms, error }));
}

function messageParam(m: string | null): Buffer | undefined {
  if (!m) return undefined;
  // base64 with '+' turned into ' ' by a client that did not escape it.
  return Buffer.from(m.replace(/ /g, '+'), 'base64');
}

async function pkiOperation(deps: AppleRoutesDeps, der: Buffer, res: ServerResponse): Promise<void> {
  const ca = { certPem: deps.ca.certPem, privateKeyPem: deps.ca.keyPem };
  let request: ScepRequest;
  try {
    request = await parsePkiMessage(der, ca);
  } catch (err) {
    if (!(err instanceof ScepError)) throw err;
    deps.logger.info({ reason: err.message, failInfo: err.failInfo }, 'SCEP request refused');
    if (!err.replyTo) return answer(res, 400, 'text/plain; charset=utf-8', 'not a SCEP pkiMessage');
    return sendCertRep(res, await failure(deps, err.replyTo, err.failInfo));
  }
  const refuse = async (failInfo: ScepFailInfo, reason: string) => {
    deps.logger.info({ reason, failInfo, transactionId: request.transactionId }, 'SCEP request refused');
    sendCertRep(res, await failure(deps, request, failInfo));
  };

  let csr: Awaited<ReturnType<typeof readCsr>>;
  try {
    csr = await readCsr(request.csrDer);
  } catch (err) {
    return refuse('badMessageCheck', (err as Error).message);
  }
  const issue = () =>
    issueClientCertificate(deps.ca, csr, { commonName: `Apple device ${request.transactionId.slice(0, 16)}`, days: deps.identityDays });
  let outcome;
  if (request.messageType === 'RenewalReq') {
    const signer = verifyClientCertificate(request.signerCertDer, deps.ca.certPem);
    if (!signer.ok) return refuse('badRequest', `renewal signer: ${signer.reason}`);
    outcome = await deps.apple.issueRenewal(signer.sha256, issue);
  } else {
    outcome = await deps.apple.issueForChallenge(request.challengePassword, issue);
  }
  if (!outcome.ok) return refuse('badRequest', outcome.reason);
  const reply = await buildCertRep({
    ca,
    transactionId: request.transactionId,
    recipientNonce: request.senderNonce,
    status: 'SUCCESS',
    issuedCertDer: outcome.certificate.der,
    recipientCertDer: request.signerCertDer,
    encryption: certRepEncryption(request.encryption),
  });
  sendCertRep(res, reply);
}

function failure(deps: AppleRoutesDeps, to: { transactionId: string; senderNonce: Buffer; signerCertDer: Buffer }, failInfo: ScepFailInfo): Promise<Buffer> {
  return buildCertRep({
    ca: { certPem: deps.ca.certPem, privateKeyPem: deps.ca.keyPem },
    transactionId: to.transactionId,
    recipientNonce: to.senderNonce,
    status: 'FAILURE',
    failInfo,
    recipientCertDer: to.signerCertDer,
    encryption: 'aes256',
  });
}

function sendCertRep(res: ServerResponse, der: Buffer): void {
  answer(res, 200, PKI_MESSAGE, der);
}

function page(res: Response, status: number, title: string, text: string): void {
  sendPage(res, status, title, `<p>${escapeHtml(text)}</p>`);
}
