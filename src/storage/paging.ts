/** Keyset pagination shared by the repositories, so every list pages the same way. */
import type { Knex } from 'knex';
import { decodeCursor, toPage, type Page, type PageRequest } from '../core/pagination';

/** Newest first on (created_at, id): stable while rows are added, and index-friendly. */
export async function newestFirst<T extends { created_at: Date; id: string }>(q: Knex.QueryBuilder, page: PageRequest): Promise<Page<T>> {
  q.orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]).limit(page.limit + 1);
  if (page.cursor) {
    const [at, id] = decodeCursor(page.cursor, 2);
    q.whereRaw('(created_at, id) < (?::timestamptz, ?::uuid)', [at, id]);
  }
  return toPage((await q) as T[], page.limit, (r) => [r.created_at.toISOString(), r.id]);
}

/** Descending on one numeric column (seq, event id). */
export async function byNumberDesc<T>(q: Knex.QueryBuilder, column: string, page: PageRequest, keyOf: (row: T) => number): Promise<Page<T>> {
  q.orderBy(column, 'desc').limit(page.limit + 1);
  if (page.cursor) q.where(column, '<', Number(decodeCursor(page.cursor, 1)[0]));
  return toPage((await q) as T[], page.limit, (r) => [keyOf(r)]);
}
