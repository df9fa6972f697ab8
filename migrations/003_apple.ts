/**
 * Apple: the SCEP challenges an enrollment profile carries (one per profile download, bound to the
 * enrollment token, one use), the token each identity certificate was issued under (so Authenticate
 * knows the ownership and user to apply), and the secrets a device escrows, sealed at rest.
 */
import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('scep_challenges', (t) => {
    t.text('challenge_hash').primary(); // SHA-256 of the challenge; the challenge itself is only in the profile
    t.uuid('enrollment_token_id').notNullable().references('enrollment_tokens.id').onDelete('CASCADE');
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('used_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE INDEX scep_challenges_expiry ON scep_challenges (expires_at)');

  await knex.schema.alterTable('issued_certificates', (t) => {
    t.uuid('enrollment_token_id');
  });

  await knex.schema.createTable('apple_devices', (t) => {
    t.uuid('device_id').primary().references('devices.id').onDelete('CASCADE');
    t.text('unlock_token_sealed'); // AES-256-GCM (src/pki/sealed.ts)
    t.timestamp('unlock_token_at', { useTz: true });
    t.text('bootstrap_token_sealed');
    t.timestamp('bootstrap_token_at', { useTz: true });
    t.jsonb('ddm_status'); // the latest declarative-management status report
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('apple_devices');
  await knex.schema.alterTable('issued_certificates', (t) => {
    t.dropColumn('enrollment_token_id');
  });
  await knex.schema.dropTableIfExists('scep_challenges');
}
