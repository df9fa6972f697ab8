/**
 * The ordered list of migrations. Knex reads it through a migration source (src/storage/db.ts) so the
 * same list works from TypeScript sources, the compiled build and the tests alike.
 */
import type { Knex } from 'knex';
import * as m001 from './001_foundation';
import * as m002 from './002_android';
import * as m003 from './003_apple';
import * as m004 from './004_governance';

export interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

export const migrations: ReadonlyArray<[name: string, migration: Migration]> = [
  ['001_foundation', m001],
  ['002_android', m002],
  ['003_apple', m003],
  ['004_governance', m004],
];
