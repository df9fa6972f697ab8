/**
 * Cursor pagination: lists answer `{ items, next_cursor }`; the cursor is an opaque base64url token
 * holding the sort key of the last item, so pages stay stable while rows are added.
 */
import { Errors } from './errors';

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface PageRequest {
  limit: number;
  cursor?: string;
}

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

export function encodeCursor(key: ReadonlyArray<string | number>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/** Decodes a cursor made by `encodeCursor` with `arity` parts; anything else is a validation error. */
export function decodeCursor(cursor: string, arity: number): Array<string | number> {
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(key) && key.length === arity && key.every((k) => typeof k === 'string' || typeof k === 'number')) {
      return key as Array<string | number>;
    }
  } catch {
    // fall through to the one error below
  }
  throw Errors.validation('cursor is not one this server issued', { errors: [{ path: 'cursor', message: 'invalid cursor' }] });
}

/**
 * Builds a page from `limit + 1` fetched rows: the extra row only says whether another page exists.
 */
export function toPage<T>(rows: T[], limit: number, keyOf: (row: T) => ReadonlyArray<string | number>): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: rows.length > limit && last !== undefined ? encodeCursor(keyOf(last)) : null };
}

/** The same page with each item transformed (e.g. rows to their API shape). */
export function mapPage<T, U>(page: Page<T>, fn: (item: T) => U): Page<U> {
  return { items: page.items.map(fn), next_cursor: page.next_cursor };
}
