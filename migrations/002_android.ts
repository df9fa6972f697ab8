/**
 * Android: policies, device credentials for the DPC, and what enrollment tokens need to be shown
 * again as a provisioning QR code (the token sealed, never in the clear) and to carry DPC data.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('policies', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.text('name').notNullable();
    t.text('platform').notNullable().defaultTo('android');
    t.integer('version').notNullable().defaultTo(1);
    t.jsonb('settings').notNullable().defaultTo('{}');
    t.timestamps(true, true);
  });
  await knex.raw('CREATE INDEX policies_list ON policies (created_at DESC, id DESC)');

  await knex.schema.alterTable('enrollment_tokens', (t) => {
    t.text('token_sealed'); // AES-256-GCM; lets the admin API rebuild the provisioning QR code
    t.text('additional_data');
  });
  await knex.schema.alterTable('devices', (t) => {
    t.uuid('policy_id');
    t.integer('api_level');
  });
  await knex.raw('CREATE INDEX devices_policy ON devices (policy_id) WHERE policy_id IS NOT NULL');

  // A DPC authenticates with a bearer secret issued at enrollment; only its digest is kept.
  await knex.schema.createTable('device_credentials', (t) => {
    t.uuid('id').primary().defaultTo(knex.raw('gen_random_uuid()'));
    t.uuid('device_id').notNullable().references('devices.id').onDelete('CASCADE');
    t.uuid('enrollment_id').notNullable().references('enrollments.id').onDelete('CASCADE');
    t.text('secret_hash').notNullable().unique();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('retired_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX device_credentials_device ON device_credentials (device_id) WHERE retired_at IS NULL');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('device_credentials');
  await knex.raw('DROP INDEX IF EXISTS devices_policy');
  await knex.schema.alterTable('devices', (t) => {
    t.dropColumn('policy_id');
    t.dropColumn('api_level');
  });
  await knex.schema.alterTable('enrollment_tokens', (t) => {
    t.dropColumn('token_sealed');
    t.dropColumn('additional_data');
  });
  await knex.schema.dropTableIfExists('policies');
}
