/**
 * The terms-of-use page any enrollment can send a person to (`/enroll/terms`): the Android DPC gets
 * its address in a `terms_not_accepted` refusal, a Windows enrollment fault names it, and admins can
 * hand it out. The person proves nothing more than an enrollment does: the enrollment token (in the
 * link, or typed as the enrollment code) and, when the token names no user, their work email.
 * Acceptance is per user and version, so one acceptance covers all of that user's devices.
 */
import express, { Router, type Request, type Response } from 'express';
import { isMooringError } from '../../src/core/errors';
import { acceptedTerms, acceptsAll, escapeHtml, sendPage, termsFormHtml } from '../../src/http/enrollment-pages';
import type { PgEnrollmentGate } from '../../src/storage/enrollment-gate';
import type { EnrollmentToken, PgTokenStore } from '../../src/storage/tokens';

export interface TermsRoutesDeps {
  gate: PgEnrollmentGate;
  tokens: PgTokenStore;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function termsRouter(deps: TermsRoutesDeps): Router {
  const router = Router();

  router.get('/enroll/terms', async (req, res) => {
    const secret = typeof req.query.token === 'string' ? req.query.token : '';
    if (!secret) return void askForCode(res);
    const token = await usableToken(deps, secret);
    if (!token) return void invalidToken(res);
    await showTerms(deps, res, secret, token.user_ref ?? undefined);
  });

  router.post('/enroll/terms', express.urlencoded({ extended: false, limit: '16kb' }), async (req: Request, res: Response) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const secret = typeof body.token === 'string' ? body.token.trim() : '';
    const token = secret ? await usableToken(deps, secret) : undefined;
    if (!token) return void invalidToken(res);
    const typed = typeof body.email === 'string' ? body.email.trim() : '';
    const user = token.user_ref ?? (EMAIL.test(typed) ? typed : undefined);
    if (!user) return void showTerms(deps, res, secret, undefined, typed, 'Enter your work email address.');
    const accepted = acceptedTerms(body);
    const pending = await deps.gate.pendingTerms(user);
    if (!pending.length) return void done(res);
    if (!acceptsAll(pending, accepted)) {
      return void showTerms(deps, res, secret, token.user_ref ?? undefined, typed, accepted.length ? 'The terms changed or not every box was ticked: read them again and tick every box.' : 'Tick every box to accept all of the terms.');
    }
    await deps.gate.acceptTerms(user, accepted);
    done(res);
  });

  return router;
}

async function usableToken(deps: TermsRoutesDeps, secret: string): Promise<EnrollmentToken | undefined> {
  try {
    return await deps.tokens.checkAnyEnrollmentToken(secret);
  } catch (err) {
    if (isMooringError(err)) return undefined;
    throw err;
  }
}

/** The pending terms for the user; without a named user, the terms everyone must accept, and an email field. */
async function showTerms(deps: TermsRoutesDeps, res: Response, secret: string, user: string | undefined, email?: string, error?: string): Promise<void> {
  const who = user ?? (email && EMAIL.test(email) ? email : '');
  const terms = await deps.gate.pendingTerms(who);
  if (!terms.length && !error) return done(res);
  sendPage(res, 200, 'Terms of use', termsFormHtml({ action: '/enroll/terms', hidden: { token: secret }, terms, askEmail: !user, email, error }));
}

function askForCode(res: Response): void {
  sendPage(
    res,
    200,
    'Terms of use',
    `<form method="get" action="/enroll/terms"><p><label for="token">Enrollment code from your IT department</label> ` +
      `<input id="token" name="token" autocomplete="one-time-code" required autofocus> <button type="submit">Continue</button></p></form>`,
  );
}

function invalidToken(res: Response): void {
  sendPage(res, 403, 'This enrollment code is not valid', `<p>${escapeHtml('Check the code or link, or ask your IT department for a new one.')}</p>`);
}

function done(res: Response): void {
  sendPage(res, 200, 'Terms accepted', '<p>Thank you. Go back to your device to finish enrolling it.</p>');
}
