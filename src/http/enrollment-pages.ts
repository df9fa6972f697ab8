/**
 * The few HTML pages a person sees while enrolling (refusals, terms of use, the Windows sign-in):
 * plain, accessible, working without scripts, never framed or cached. One renderer, so every page
 * escapes the same way and carries the same headers.
 */
import type { Response } from 'express';
import { REFUSAL_MESSAGES, type EnrollmentRefusal } from '../core/enrollment-policy';
import type { PendingTerms } from '../storage/enrollment-gate';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A whole page; `body` is trusted HTML (build it with escapeHtml). */
export function pageHtml(title: string, body: string): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${escapeHtml(title)}</title></head><body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`
  );
}

export function sendPage(res: Response, status: number, title: string, body: string): void {
  res
    .status(status)
    .type('html')
    .set('Cache-Control', 'no-store')
    .set('X-Frame-Options', 'DENY')
    .set('X-Content-Type-Options', 'nosniff')
    .set('Referrer-Policy', 'no-referrer')
    .send(pageHtml(title, body));
}

/** A refused enrollment as a person should see it: what happened, what to do, and the id to quote. */
export function refusalHtml(r: EnrollmentRefusal): string {
  return `<p>${escapeHtml(REFUSAL_MESSAGES[r.reason])}</p><p>If you contact support, give them this activity id: <code>${escapeHtml(r.activityId)}</code></p>`;
}

export interface TermsFormOptions {
  action: string;
  /** Hidden fields posted back with the acceptance (the token, where to go next...). */
  hidden: Record<string, string>;
  terms: PendingTerms[];
  /** Ask who is accepting (the token does not name a user). */
  askEmail?: boolean;
  email?: string;
  error?: string;
}

/**
 * The terms to accept, each with its title, summary and full text, and one checkbox per terms: the
 * browser will not submit until every box is ticked, and the server checks again. Each checkbox
 * carries `id:version`, so text changed while the page was open is shown again, not accepted unseen.
 */
export function termsFormHtml(o: TermsFormOptions): string {
  const hidden = Object.entries(o.hidden)
    .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
    .join('');
  const terms = o.terms
    .map(
      (t, i) =>
        `<section aria-labelledby="terms-${i}"><h2 id="terms-${i}">${escapeHtml(t.title)}</h2><p><strong>${escapeHtml(t.summary)}</strong></p>` +
        `<div role="document" tabindex="0" style="max-height:40vh;overflow:auto;border:1px solid #888;padding:0.5em;white-space:pre-wrap">${escapeHtml(t.text)}</div>` +
        `<p><input type="checkbox" id="accept-${i}" name="accept" value="${escapeHtml(`${t.id}:${t.version}`)}" required> ` +
        `<label for="accept-${i}">I accept "${escapeHtml(t.title)}" (version ${t.version})</label></p></section>`,
    )
    .join('');
  const email = o.askEmail
    ? `<p><label for="email">Your work email address</label> <input id="email" name="email" type="email" autocomplete="email" required value="${escapeHtml(o.email ?? '')}"></p>`
    : '';
  return (
    `${o.error ? `<p role="alert">${escapeHtml(o.error)}</p>` : ''}` +
    `<p>Before this device can be enrolled, read and accept your organization's terms of use.</p>` +
    `<form method="post" action="${escapeHtml(o.action)}">${hidden}${email}${terms}<p><button type="submit">Accept and continue</button></p></form>` +
    `<p>If you do not accept, close this page: the device will not be enrolled.</p>`
  );
}

/** The `accept` values of a posted terms form, as terms id and version. */
export function acceptedTerms(body: Record<string, unknown>): Array<{ id: string; version: number }> {
  const raw = body.accept;
  const values = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  const out: Array<{ id: string; version: number }> = [];
  for (const v of values) {
    const m = typeof v === 'string' ? /^([0-9a-f-]{36}):(\d{1,9})$/i.exec(v) : null;
    if (m) out.push({ id: m[1]!.toLowerCase(), version: Number(m[2]) });
  }
  return out;
}

/** True when every pending terms is among the accepted ones at its current version. */
export function acceptsAll(pending: PendingTerms[], accepted: Array<{ id: string; version: number }>): boolean {
  return pending.every((t) => accepted.some((a) => a.id === t.id && a.version === t.version));
}

export interface CategoryOption {
  id: string;
  name: string;
  description: string | null;
}

/**
 * The device category question (for tokens that let the user choose): one radio button each, and
 * "No category". `selected` is the token's own category, preselected.
 */
export function categoryFormHtml(o: { action: string; method: 'get' | 'post'; hidden: Record<string, string>; categories: CategoryOption[]; selected?: string | null; error?: string }): string {
  const hidden = Object.entries(o.hidden)
    .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
    .join('');
  const option = (value: string, label: string, description: string | null, i: number) =>
    `<p><input type="radio" id="category-${i}" name="category" value="${escapeHtml(value)}"${(o.selected ?? '') === value ? ' checked' : ''} required> ` +
    `<label for="category-${i}">${escapeHtml(label)}</label>${description ? ` <small>${escapeHtml(description)}</small>` : ''}</p>`;
  return (
    `${o.error ? `<p role="alert">${escapeHtml(o.error)}</p>` : ''}` +
    `<form method="${o.method}" action="${escapeHtml(o.action)}">${hidden}<fieldset><legend>What is this device used for?</legend>` +
    o.categories.map((c, i) => option(c.id, c.name, c.description, i)).join('') +
    option('', 'No category', null, o.categories.length) +
    `</fieldset><p><button type="submit">Continue</button></p></form>`
  );
}

/** The chosen category: null for "No category", undefined when the value names no offered category. */
export function chosenCategory(value: unknown, categories: CategoryOption[]): string | null | undefined {
  if (value === '') return null;
  return typeof value === 'string' ? categories.find((c) => c.id === value.toLowerCase())?.id : undefined;
}
